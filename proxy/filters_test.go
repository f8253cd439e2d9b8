package proxy

import (
	"io"
	"log/slog"
	"testing"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/pcache"
	"github.com/anyfront/anyfront/proxy/rules"
	"github.com/anyfront/anyfront/state"
)

// compiledRules compiles cfg's rules and routes them to pools, as rebuild
// does.
func compiledRules(p *Proxy, cfg *config.Config, pools map[string]*poolSnap) (*rules.Set, []ruleRoute) {
	set := rules.Compile(cfg)
	return set, p.routeRules(set, pools)
}

func TestRuleRoutes(t *testing.T) {
	cfg, err := config.Parse("r.yaml", []byte(`
pools:
  default: {backends: [{name: a, address: "127.0.0.1:1"}], cache: {size: 100}}
  corp: {backends: [{name: c, address: "127.0.0.1:2"}]}
rules:
  - {match: {qname: [nc.test]}, action: {nocache: true}}
  - {match: {qname: [nc2.test]}, action: {pool: default, nocache: true}}
  - {match: {qname: [c.test]}, action: {pool: default}}
  - {match: {qname: [corp.test]}, action: {pool: corp}}
  - {match: {qname: [r.test]}, action: {refuse: true}}
`))
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	def, corp := &poolSnap{name: "default", cache: &pcache.Cache{}}, &poolSnap{name: "corp"}
	_, routes := compiledRules(p, cfg, map[string]*poolSnap{"default": def, "corp": corp})
	if len(routes) != 5 {
		t.Fatalf("%d routes for 5 rules", len(routes))
	}
	for i := 0; i < 2; i++ {
		if rt := routes[i]; rt.pool == def || rt.pool.cache != nil || rt.pool.name != "default" || rt.uncached != rt.pool {
			t.Errorf("rule %d: nocache must forward to a cache-less view of default, got %+v", i, rt.pool)
		}
	}
	if rt := routes[2]; rt.pool != def || rt.uncached.cache != nil || rt.uncached.name != "default" {
		t.Error("a plain pool rule lost its cache, or its uncached view has one")
	}
	if rt := routes[3]; rt.pool != corp || rt.uncached != corp {
		t.Error("a pool without a cache is its own uncached view")
	}
	if routes[4] != (ruleRoute{}) {
		t.Error("a rule that does not forward has a route")
	}
	t.Run("a rule whose pool is not in the store yet holds every rule back", func(t *testing.T) {
		if _, routes := compiledRules(p, cfg, map[string]*poolSnap{"default": def}); routes != nil {
			t.Errorf("routes %v", routes)
		}
	})
	t.Run("no rules: empty routes, not waiting", func(t *testing.T) {
		none := *cfg
		none.Rules = nil
		if _, routes := compiledRules(p, &none, nil); routes == nil || len(routes) != 0 {
			t.Errorf("routes %v", routes)
		}
	})
}

func TestRuleSetFollowsTheConfig(t *testing.T) {
	cfg, err := config.Parse("r.yaml", []byte(`
pools:
  default: {backends: [{name: a, address: "127.0.0.1:1"}]}
rules:
  - {action: {ratelimit: {qps: 10}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	first := p.ruleSetFor(cfg)
	p.snap.Store(&snapshot{rules: first})
	if p.ruleSetFor(cfg) != first {
		t.Error("a rebuild of the same config lost its rule set (counters, limiters)")
	}
	again := *cfg
	if p.ruleSetFor(&again) == first {
		t.Error("a new config kept the old rule set")
	}
}

func TestReloadReconfiguresDynamicBlocks(t *testing.T) {
	parse := func(extra string) *config.Config {
		t.Helper()
		cfg, err := config.Parse("d.yaml", []byte("pools:\n  default: {backends: [{name: a, address: \"127.0.0.1:1\"}]}\n"+extra))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	store, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(parse(""), Deps{Store: store, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if p.dyn.On() {
		t.Fatal("dynamic blocks on without a dynamic_blocks section")
	}
	// The reload itself turns them on, before any packet arrives.
	p.Reload(parse("dynamic_blocks:\n  detectors: [{kind: queries, rate: 1, window: 1s}]\n"))
	if !p.dyn.On() {
		t.Fatal("a reload with dynamic_blocks did not turn them on")
	}
	p.Reload(parse(""))
	if p.dyn.On() {
		t.Fatal("a reload without dynamic_blocks did not turn them off")
	}
}
