package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
)

// NodeView answers GET /api/v1/node and the node drain calls.
type NodeView struct {
	// Name, Site and Version identify the node in a fleet (node.name,
	// node.site, the build's git describe).
	Name    string `json:"name"`
	Site    string `json:"site"`
	Version string `json:"version"`
	// Fleet is true when admin.fleet_file is set: GET /api/v1/fleet
	// answers and the dashboard shows its fleet panel.
	Fleet        bool      `json:"fleet,omitempty"`
	Drained      bool      `json:"drained"`
	ShuttingDown bool      `json:"shutting_down"`
	Since        time.Time `json:"since,omitzero"`
	// Changed is set on drain and undrain: false when the node already
	// was in that state.
	Changed *bool `json:"changed,omitempty"`
	// Note explains, when BGP is not configured, that the flag is
	// recorded but nothing is announced or withdrawn.
	Note string `json:"note,omitempty"`
}

const noBGPNote = "bgp is not configured: the drain flag is recorded but no route is announced or withdrawn"

func (s *Server) nodeView() NodeView {
	n := s.deps.Store.Node(nil)
	v := NodeView{Name: s.deps.Node.Name, Site: s.deps.Node.Site, Version: s.deps.Version, Fleet: len(s.fleet) > 0, Drained: n.Drained, ShuttingDown: n.ShuttingDown, Since: n.Changed.UTC()}
	if s.deps.BGP == nil {
		v.Note = noBGPNote
	}
	return v
}

func (s *Server) getNode(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.nodeView())
}

// setNodeDrained records the operator's node drain flag; the BGP
// controller watches it and does the graceful drain (RFC 8326 community,
// grace, withdraw), so this call returns at once.
func (s *Server) setNodeDrained(drained bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		changed, err := s.deps.Store.SetNodeDrained(drained)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "node drain: "+err.Error())
			return
		}
		if changed {
			s.log.Info("node drain flag set", "drained", drained, "remote", r.RemoteAddr)
		}
		v := s.nodeView()
		v.Changed = &changed
		writeJSON(w, http.StatusOK, v)
	}
}

func (s *Server) getBGP(w http.ResponseWriter, _ *http.Request) {
	if s.deps.BGP == nil {
		writeJSON(w, http.StatusOK, map[string]bool{"enabled": false})
		return
	}
	// Marshal first so a status that cannot be encoded is a clean 500.
	raw, err := json.Marshal(s.deps.BGP.Status())
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encode bgp status: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, json.RawMessage(raw))
}

// reloadResult answers an applied reload; Warnings name the changes that
// only a restart applies.
type reloadResult struct {
	Status   string   `json:"status"`
	Warnings []string `json:"warnings"`
}

// reload runs Deps.Reload. A *config.Errors (the new file is invalid) is
// the operator's to fix: 400 with every FILE:LINE line. Anything else is
// ours: 500.
func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if s.deps.Reload == nil {
		writeError(w, http.StatusNotImplemented, "reload is not available in this process")
		return
	}
	s.log.Info("reload requested over the admin API", "remote", r.RemoteAddr)
	warnings, err := s.deps.Reload()
	var cerrs *config.Errors
	switch {
	case err == nil:
		if warnings == nil {
			warnings = []string{} // always a list, for scripts
		}
		writeJSON(w, http.StatusOK, reloadResult{Status: "reloaded", Warnings: warnings})
	case errors.As(err, &cerrs):
		lines := make([]string, len(cerrs.List))
		for i, e := range cerrs.List {
			lines[i] = e.Error()
		}
		writeJSON(w, http.StatusBadRequest, apiError{Error: "invalid config", Errors: lines})
	default:
		writeError(w, http.StatusInternalServerError, "reload failed: "+err.Error())
	}
}

// PurgeResult answers DELETE /api/v1/cache.
type PurgeResult struct {
	Purged int `json:"purged"`
	// Name is the normalised suffix purged, "" for everything.
	Name string `json:"name,omitempty"`
	Note string `json:"note,omitempty"`
}

func (s *Server) purgeCache(w http.ResponseWriter, r *http.Request) {
	suffix, err := normalizeSuffix(r.URL.Query().Get("name"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if s.deps.PurgeCache == nil {
		// 200, not 404: a script purging every node must not fail on the
		// nodes that cache nothing.
		writeJSON(w, http.StatusOK, PurgeResult{Name: suffix, Note: "no cache configured"})
		return
	}
	n, err := s.deps.PurgeCache(suffix)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "purge: "+err.Error())
		return
	}
	s.log.Info("cache purged", "suffix", suffix, "purged", n, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, PurgeResult{Purged: n, Name: suffix})
}

// normalizeSuffix turns ?name= into the form the config uses for names:
// lowercase, fully qualified. "" stays "" (purge everything).
func normalizeSuffix(name string) (string, error) {
	if name == "" {
		return "", nil
	}
	if _, ok := dns.IsDomainName(name); !ok || len(dns.Fqdn(name)) > 255 {
		return "", fmt.Errorf("name %q is not a domain name", name)
	}
	return strings.ToLower(dns.Fqdn(name)), nil
}
