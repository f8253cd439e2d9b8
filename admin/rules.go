package admin

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"

	"github.com/anyfront/anyfront/proxy/dynblock"
	"github.com/anyfront/anyfront/proxy/rules"
)

// Rules lists the proxy's rules with their hit counters, in order, for
// GET /api/v1/rules (the JSON of rules.Status).
type Rules interface {
	RuleList() []rules.Status
}

// Blocks lists and lifts the proxy's dynamic blocks: BlockList for
// GET /api/v1/blocks (the JSON of dynblock.Status); Unblock returns an
// error only when the prefix is not blocked.
type Blocks interface {
	BlockList() []dynblock.Status
	Unblock(netip.Prefix) error
}

func (s *Server) getRules(w http.ResponseWriter, _ *http.Request) {
	var list []rules.Status
	if s.deps.Rules != nil {
		list = s.deps.Rules.RuleList()
	}
	if list == nil {
		list = []rules.Status{} // [], not null
	}
	writeRaw(w, "rules", list)
}

func (s *Server) getBlocks(w http.ResponseWriter, _ *http.Request) {
	var list []dynblock.Status
	if s.deps.Blocks != nil {
		list = s.deps.Blocks.BlockList()
	}
	if list == nil {
		list = []dynblock.Status{} // [], not null
	}
	writeRaw(w, "blocks", list)
}

// writeRaw marshals v first, so a value that cannot be encoded is a clean
// 500.
func writeRaw(w http.ResponseWriter, what string, v any) {
	raw, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encode "+what+": "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, json.RawMessage(raw))
}

// unblock lifts one dynamic block. The prefix is the rest of the path, as
// GET /api/v1/blocks lists it ("198.51.100.0/24", the slash raw or as
// %2F); a bare address means its host prefix.
func (s *Server) unblock(w http.ResponseWriter, r *http.Request) {
	arg := r.PathValue("prefix")
	var p netip.Prefix
	var err error
	if strings.Contains(arg, "/") {
		p, err = netip.ParsePrefix(arg)
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(arg); err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil || p.Addr().Zone() != "" {
		writeError(w, http.StatusBadRequest, "expected a prefix like 198.51.100.0/24 or 2001:db8::/64, got "+arg)
		return
	}
	p = p.Masked()
	if s.deps.Blocks == nil {
		writeError(w, http.StatusNotFound, "dynamic blocks are not configured")
		return
	}
	if err := s.deps.Blocks.Unblock(p); err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	s.log.Info("dynamic block lifted over the admin API", "prefix", p, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, map[string]string{"unblocked": p.String()})
}
