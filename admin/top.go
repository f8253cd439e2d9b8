package admin

import (
	"net/http"
	"strconv"

	"github.com/anyfront/anyfront/proxy/top"
)

// Top lists the busiest clients and query names over the last minute. Its
// Top(n) list, n entries of each at most, is GET /api/v1/top's answer; the
// JSON is top.List's (docs/admin-api.md).
type Top interface {
	Top(n int) top.List
}

// Bounds of GET /api/v1/top's ?n=: the proxy keeps more than this many per
// bucket, but a list longer than a screen helps nobody.
const (
	defaultTopN = 20
	maxTopN     = top.Max
)

func (s *Server) getTop(w http.ResponseWriter, r *http.Request) {
	n := defaultTopN
	if arg := r.URL.Query().Get("n"); arg != "" {
		v, err := strconv.Atoi(arg)
		if err != nil || v < 1 || v > maxTopN {
			writeError(w, http.StatusBadRequest, "n must be a whole number from 1 to "+strconv.Itoa(maxTopN)+", got "+strconv.Quote(arg))
			return
		}
		n = v
	}
	if s.deps.Top == nil {
		writeJSON(w, http.StatusOK, map[string]any{"enabled": false, "clients": []any{}, "names": []any{}})
		return
	}
	writeJSON(w, http.StatusOK, s.deps.Top.Top(n))
}
