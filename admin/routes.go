package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/anyfront/anyfront/state"
)

// route is one endpoint: a Go 1.22 mux pattern and its handler.
type route struct {
	pattern string
	handler http.Handler
}

// endpoints lists every endpoint; docs/admin-api.md documents each one (a
// test holds the two together). Mutating calls go through requireToken.
func (s *Server) endpoints() []route {
	// get needs a token (read or operate) once any is configured; op
	// needs the operate token and is audited under its pattern.
	get := func(p string, f http.Handler) route { return route{p, s.requireRead(f)} }
	op := func(p string, f http.HandlerFunc) route { return route{p, s.requireToken(p, f)} }
	return []route{
		get("GET /api/v1/backends", http.HandlerFunc(s.listBackends)),
		get("GET /api/v1/backends/{name}", http.HandlerFunc(s.getBackend)),
		op("POST /api/v1/backends/{name}/drain", s.setAdmin(state.AdminDrain)),
		op("POST /api/v1/backends/{name}/undrain", s.setAdmin(state.AdminAuto)),
		op("POST /api/v1/backends/{name}/up", s.setAdmin(state.AdminUp)),
		op("POST /api/v1/backends/{name}/down", s.setAdmin(state.AdminDown)),
		op("POST /api/v1/backends/{name}/weight", s.setWeight),
		get("GET /api/v1/node", http.HandlerFunc(s.getNode)),
		op("POST /api/v1/node/drain", s.setNodeDrained(true)),
		op("POST /api/v1/node/undrain", s.setNodeDrained(false)),
		get("GET /api/v1/bgp", http.HandlerFunc(s.getBGP)),
		get("GET /api/v1/stats", s.statsHandler()),
		op("POST /api/v1/reload", s.reload),
		op("DELETE /api/v1/cache", s.purgeCache),
		get("GET /api/v1/rules", http.HandlerFunc(s.getRules)),
		get("GET /api/v1/blocks", http.HandlerFunc(s.getBlocks)),
		{"GET /api/v1/top", s.requireReadAlways(s.getTop)},
		op("DELETE /api/v1/blocks/{prefix...}", s.unblock),
		get("GET /api/v1/fleet", http.HandlerFunc(s.getFleet)),
		{"POST /api/v1/fleet/{node}/drain", s.relayNode("POST /api/v1/fleet/{node}/drain", "drain")},
		{"POST /api/v1/fleet/{node}/undrain", s.relayNode("POST /api/v1/fleet/{node}/undrain", "undrain")},
		get("GET /metrics", s.metricsHandler()),
		{"GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		})},
		// The page holds no data, but every GET but /healthz needs a
		// token (DESIGN): a browser is asked for it by HTTP Basic. Its
		// script reads the API with the token the operator types in
		// (kept in memory only).
		{"GET /{$}", s.requirePage(serveDashboard)},
	}
}

// routes builds the mux. Method patterns make the mux answer 405 for a
// known path with the wrong method; api turns its text errors into JSON.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	for _, r := range s.endpoints() {
		mux.Handle(r.pattern, r.handler)
	}
	return &api{mux: mux, metrics: s.metrics}
}

// metricsHandler serves Deps.Gatherer, or the admin collector alone.
func (s *Server) metricsHandler() http.Handler {
	g := s.deps.Gatherer
	if g == nil {
		reg := prometheus.NewRegistry()
		reg.MustRegister(s.metrics)
		g = reg
	}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		// One broken collector must not blank every other series.
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      errorLogger{s},
		// Scrapes are cheap but not free; a runaway scraper gets 503s.
		MaxRequestsInFlight: 4,
	})
}

// errorLogger adapts slog to promhttp's Println logger.
type errorLogger struct{ s *Server }

func (l errorLogger) Println(v ...any) { l.s.log.Error("metrics: " + fmt.Sprint(v...)) }

// api wraps the mux: it bounds bodies, sets safe headers, counts requests,
// and answers unknown paths and wrong methods in JSON like every other
// error.
type api struct {
	mux     *http.ServeMux
	metrics *metrics
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	// The mux reports no pattern exactly when it would answer 404 or 405
	// (redirects carry one).
	h, pattern := a.mux.Handler(r)
	if pattern == "" {
		probe := &headerProbe{header: http.Header{}}
		h.ServeHTTP(probe, r)
		if allow := probe.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		msg := "no such endpoint: " + r.URL.Path
		if probe.code == http.StatusMethodNotAllowed {
			msg = fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path)
		}
		writeError(rec, probe.code, msg)
		a.metrics.request("unmatched", rec.code)
		return
	}
	a.mux.ServeHTTP(rec, r)
	a.metrics.request(pattern, rec.code)
}

// statusRecorder remembers the status code for the request metric.
type statusRecorder struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wroteHeader {
		s.code, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the real writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// headerProbe captures what the mux's own 404/405 handler would send.
type headerProbe struct {
	header http.Header
	code   int
}

func (p *headerProbe) Header() http.Header { return p.header }
func (p *headerProbe) Write(b []byte) (int, error) {
	if p.code == 0 {
		p.code = http.StatusOK
	}
	return len(b), nil
}
func (p *headerProbe) WriteHeader(code int) {
	if p.code == 0 {
		p.code = code
	}
}

// apiError is the body of every error answer.
type apiError struct {
	Error string `json:"error"`
	// Errors lists "FILE:LINE: message" for a rejected reload.
	Errors []string `json:"errors,omitempty"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code = http.StatusInternalServerError
		body = []byte(`{"error": "cannot encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}

// decodeBody reads a small JSON body into v, answering the error itself
// and returning false when the body is too large, malformed, or carries
// unknown fields (a typo must not be silently ignored).
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "body must be application/json")
		return false
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	if err == nil {
		if _, rerr := io.Copy(io.Discard, r.Body); rerr != nil {
			err = rerr
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return true
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", tooBig.Limit))
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "request body is empty: JSON expected")
	default:
		writeError(w, http.StatusBadRequest, "bad JSON body: "+err.Error())
	}
	return false
}
