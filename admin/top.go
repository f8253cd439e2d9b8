package admin

import (
	"net/http"
	"strconv"
)

// Top lists the busiest clients and query names over the last minute. Its
// Top(n) value, n entries of each at most, is marshalled as-is under
// GET /api/v1/top.
type Top interface {
	Top(n int) any
}

// Bounds of GET /api/v1/top's ?n=: the proxy keeps more than this many per
// bucket, but a list longer than a screen helps nobody.
const (
	defaultTopN = 20
	maxTopN     = 100
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
	writeRaw(w, "top", s.deps.Top.Top(n))
}
