package admin

import (
	"log/slog"
	"net/http"
)

// auditLogKey and auditLogValue tag every audit line, so a log pipeline
// can route them apart from the daemon's other lines: "logger=audit".
const (
	auditLogKey   = "logger"
	auditLogValue = "audit"
)

// auditResult names what became of a mutating call: "ok" (2xx),
// "refused" (401/403: the token did not allow it, nothing changed) or
// "failed" (the call was allowed and did not succeed).
func auditResult(code int) string {
	switch {
	case code < 300:
		return "ok"
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return "refused"
	}
	return "failed"
}

// audit writes one line per mutating call: who (token role and remote
// address), what (action, method, path) and the result, and counts it in
// anyfront_admin_audit_total. The token itself is never written.
func (s *Server) audit(r *http.Request, action string, who role, code int) {
	result := auditResult(code)
	level := slog.LevelInfo
	if result != "ok" {
		level = slog.LevelWarn
	}
	s.auditLog.LogAttrs(r.Context(), level, "admin call",
		slog.String("role", who.String()),
		slog.String("remote", r.RemoteAddr),
		slog.String("action", action),
		slog.String("method", r.Method),
		slog.String("path", r.URL.RequestURI()),
		slog.Int("status", code),
		slog.String("result", result))
	s.metrics.audited.WithLabelValues(action, result).Inc()
}
