package admin

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/anyfront/anyfront/state"
)

// BackendView is one backend as GET /api/v1/backends shows it. The first
// nine fields are the DESIGN contract; the rest are additions.
type BackendView struct {
	Name        string  `json:"name"`
	Pool        string  `json:"pool"`
	Address     string  `json:"address"`
	Health      string  `json:"health"` // up | down
	Admin       string  `json:"admin"`  // auto | drain | up | down
	Weight      int     `json:"weight"`
	Outstanding int64   `json:"outstanding"`
	QPS         float64 `json:"qps"`
	LatencyMS   float64 `json:"latency_ms"`

	// Usable says whether new queries may go to it (health and admin
	// together), which is what an operator usually wants to know.
	Usable bool `json:"usable"`
	// Checked is false until a health check has given a verdict: until
	// then Health is the optimistic default.
	Checked bool `json:"checked"`
	// Reason says why Health last changed.
	Reason string `json:"reason"`
	// Since is when Health last changed (RFC 3339).
	Since time.Time `json:"since"`
	// Queries counts queries sent to it since the proxy set it up.
	Queries uint64 `json:"queries"`
	// RTOMS is the attempt timeout its queries get now: smoothed round
	// trip plus four mean deviations, within proxy.min_timeout..timeout.
	RTOMS float64 `json:"rto_ms"`
}

// ChangeResult answers a backend drain, undrain, up, down or weight call.
type ChangeResult struct {
	Name   string `json:"name"`
	Admin  string `json:"admin"`
	Weight int    `json:"weight"`
	// Changed is false when the backend was already in that state, so
	// scripts can tell a no-op from a change.
	Changed bool `json:"changed"`
}

// maxWeight bounds an operator-set weight: weighted policies sum weights,
// and a typo of a few extra digits should be refused, not skew a pool.
const maxWeight = 1000000

func (s *Server) view(b *state.Backend) BackendView {
	v := BackendView{
		Name: b.Name, Pool: b.Pool, Address: b.Address,
		Health: string(b.Health), Admin: string(b.Admin), Weight: b.Weight,
		Usable: b.Usable(), Checked: b.Checked, Reason: b.Reason, Since: b.Changed.UTC(),
	}
	if s.deps.Live != nil {
		if l, ok := s.deps.Live.BackendLive(b.Name); ok {
			v.Outstanding = l.Outstanding
			v.LatencyMS = float64(l.LatencyUS) / 1000
			v.Queries = l.Queries
			v.RTOMS = float64(l.RTOUS) / 1000
			v.QPS = s.rates.get(b.Name)
		}
	}
	return v
}

func (s *Server) listBackends(w http.ResponseWriter, _ *http.Request) {
	backends, err := s.deps.Store.Backends(nil)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "read state: "+err.Error())
		return
	}
	out := make([]BackendView, 0, len(backends))
	for _, b := range backends {
		out = append(out, s.view(b))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getBackend(w http.ResponseWriter, r *http.Request) {
	b, ok := s.backend(w, r.PathValue("name"))
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, s.view(b))
}

// backend looks a backend up, answering 404 or 500 itself on failure.
func (s *Server) backend(w http.ResponseWriter, name string) (*state.Backend, bool) {
	b, err := s.deps.Store.Backend(name)
	if err != nil {
		writeStateError(w, name, err)
		return nil, false
	}
	return b, true
}

func writeStateError(w http.ResponseWriter, name string, err error) {
	if errors.Is(err, state.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("backend %q not found", name))
		return
	}
	writeError(w, http.StatusInternalServerError, err.Error())
}

// setAdmin returns the handler that puts a backend in admin state a.
func (s *Server) setAdmin(a state.Admin) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		changed, err := s.deps.Store.SetAdmin(name, a)
		if err != nil {
			writeStateError(w, name, err)
			return
		}
		if changed {
			s.log.Info("backend admin state set", "backend", name, "admin", string(a), "remote", r.RemoteAddr)
		}
		s.writeChange(w, name, changed)
	}
}

// weightRequest is the body of POST /api/v1/backends/{name}/weight.
type weightRequest struct {
	Weight *int `json:"weight"`
}

func (s *Server) setWeight(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req weightRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Weight == nil {
		writeError(w, http.StatusBadRequest, `body must be {"weight": N}`)
		return
	}
	if *req.Weight < 1 || *req.Weight > maxWeight {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("weight %d: must be 1 to %d", *req.Weight, maxWeight))
		return
	}
	changed, err := s.deps.Store.SetWeight(name, *req.Weight)
	if err != nil {
		writeStateError(w, name, err)
		return
	}
	if changed {
		s.log.Info("backend weight set until the next reload", "backend", name, "weight", *req.Weight, "remote", r.RemoteAddr)
	}
	s.writeChange(w, name, changed)
}

func (s *Server) writeChange(w http.ResponseWriter, name string, changed bool) {
	b, ok := s.backend(w, name)
	if !ok {
		return // removed by a reload in between
	}
	writeJSON(w, http.StatusOK, ChangeResult{Name: b.Name, Admin: string(b.Admin), Weight: b.Weight, Changed: changed})
}
