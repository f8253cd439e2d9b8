package proxy

import (
	"log/slog"
	"net/netip"
	"sync/atomic"

	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/rtt"
	"github.com/anyfront/anyfront/proxy/internal/tcppool"
	"github.com/anyfront/anyfront/proxy/internal/udpsock"
	"github.com/anyfront/anyfront/proxy/pcache"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/policy"
	"github.com/anyfront/anyfront/proxy/rules"
	"github.com/anyfront/anyfront/state"
)

// snapshot is everything the hot path routes with. It is immutable once
// published; the watcher builds a new one on every change of state or config
// and swaps it in atomically, so packets never take a lock or query go-memdb.
type snapshot struct {
	pools []*poolSnap
	def   *poolSnap // pool "default" or else the first one
	// rules are the config's, shared by every snapshot of that config;
	// ruleRoutes are their pools here, by rule index: empty when there
	// are no rules, nil while a rule's pool is not in the store yet (no
	// rule applies until it is).
	rules      *rules.Set
	ruleRoutes []ruleRoute
	acl        []netip.Prefix
	// A query's fate, in nanoseconds: its whole budget, and the floor and
	// ceiling of one attempt's timeout (each backend's RTO in between).
	deadline, rtoFloor, rtoCeil int64
	retries                     int
}

// poolSnap is one pool's usable backends and its policy over them.
type poolSnap struct {
	name  string
	ups   []*upstream // usable: up and not drained, indexes match the policy's
	pol   policy.Policy
	cache *pcache.Cache // nil: no cache
	ecs   dnswire.ECSPolicy
	// lat is the pool's recent answer latencies and hedging budget; it
	// outlives snapshots, like the cache.
	lat *rtt.Hist
	// hedge: first attempts not answered by the hedgePct percentile of
	// lat are hedged, within a budget of hedgeCredit thousandths of a
	// query per query.
	hedge       bool
	hedgePct    float64
	hedgeCredit int64
}

// upstream is one backend as the proxy talks to it. It outlives snapshots:
// its sockets and counters stay while its name and address do.
type upstream struct {
	name  string
	pool  string
	addr  netip.AddrPort
	stats *policy.Stats
	// sa is addr in the form the shards' backend sockets send to.
	sa  udpsock.Addr
	tcp *tcppool.Pool
	// pp: every query to this backend starts with a PROXY v2 header.
	pp  bool
	obs state.Observer // never nil
	// latency is observed on every valid answer: an atomic add, no lock.
	latency prometheus.Histogram
	// rtt times out attempts (see rttEstimator).
	rtt rtt.Estimator

	queries  atomic.Uint64
	answers  atomic.Uint64
	timeouts atomic.Uint64 // attempts unanswered when their query's deadline passed
	// retransmits counts attempts whose timeout passed, so the query went
	// again (elsewhere where it could); late answers to them still count.
	retransmits atomic.Uint64
	hedges      atomic.Uint64 // hedged copies sent to this backend
	refusals    atomic.Uint64
	badAnswer   atomic.Uint64
	closed      atomic.Bool
}

type nopObserver struct{}

func (nopObserver) Observe(state.Outcome, int64) {}

func (p *Proxy) aclAllows(snap *snapshot, a netip.Addr) bool {
	a = a.Unmap()
	for _, pfx := range snap.acl {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// rebuild makes a new snapshot from the store's rows and the current config,
// opening sockets for new backends and closing those of removed ones.
func (p *Proxy) rebuild(pools []*state.Pool, backends []*state.Backend) {
	p.buildMu.Lock()
	defer p.buildMu.Unlock()
	cfg := p.cfg.Load()

	seen := map[string]bool{}
	byPool := map[string][]*state.Backend{}
	for _, b := range backends {
		seen[b.Name] = true
		byPool[b.Pool] = append(byPool[b.Pool], b)
		u := p.ups[b.Name]
		if u != nil && (u.addr.String() != b.Address || u.pool != b.Pool || u.pp != backendPP(cfg, b)) {
			p.retire(u)
			u = nil
		}
		if u == nil {
			nu, err := p.newUpstream(b)
			if err != nil {
				p.log.Error("backend sockets", "backend", b.Name, "err", err)
				continue
			}
			p.ups[b.Name] = nu
		}
	}
	for name, u := range p.ups {
		if !seen[name] {
			p.retire(u)
			delete(p.ups, name)
		}
	}

	snap := &snapshot{
		acl:      cfg.ACL,
		deadline: int64(cfg.Proxy.Deadline),
		rtoFloor: int64(cfg.Proxy.MinTimeout),
		rtoCeil:  int64(min(cfg.Proxy.Timeout, cfg.Proxy.Deadline)),
		retries:  min(cfg.Proxy.Retries, maxAttempts-1),
	}
	caches := map[string]*pcache.Cache{}
	lats := map[string]*rtt.Hist{}
	for _, pr := range pools {
		ps := &poolSnap{name: pr.Name}
		if pc := cfg.Pools[pr.Name]; pc != nil {
			// A cache outlives snapshots; a reload that changes its
			// settings starts a new, empty one.
			ps.cache = p.caches[pr.Name]
			if ps.cache == nil || ps.cache.Config() != pc.Cache {
				ps.cache = pcache.New(pc.Cache)
			}
			if ps.cache != nil {
				caches[pr.Name] = ps.cache
			}
			ps.ecs = newECSPolicy(pc.ECS)
			ps.hedge, ps.hedgePct, ps.hedgeCredit = pc.Hedge.Enabled, pc.Hedge.Percentile, int64(pc.Hedge.Budget*10)
		}
		if ps.lat = p.lats[pr.Name]; ps.lat == nil {
			ps.lat = &rtt.Hist{}
		}
		lats[pr.Name] = ps.lat
		var pbs []*policy.Backend
		for _, b := range byPool[pr.Name] {
			u := p.ups[b.Name]
			if u == nil || !b.Usable() {
				continue
			}
			ps.ups = append(ps.ups, u)
			pbs = append(pbs, &policy.Backend{Name: b.Name, Weight: b.Weight, Order: b.Order, Stats: u.stats})
		}
		pol, err := policy.New(pr.Policy, pbs)
		if err != nil {
			p.log.Error("pool policy", "pool", pr.Name, "err", err)
			pol, _ = policy.New("roundrobin", pbs)
		}
		ps.pol = pol
		snap.pools = append(snap.pools, ps)
		if pr.Name == "default" || snap.def == nil {
			snap.def = ps
		}
	}
	p.caches, p.lats = caches, lats
	byName := map[string]*poolSnap{}
	for _, ps := range snap.pools {
		byName[ps.name] = ps
	}
	// Counters follow the rule list they count: a reload starts afresh.
	snap.rules = p.ruleSetFor(cfg)
	snap.ruleRoutes = p.routeRules(snap.rules, byName)
	if p.xdp != nil {
		// XDP publishes from this snapshot on; after a reload it forgets
		// everything before the new rules, ACL or cache apply.
		p.xdp.Set(xdpSource(cfg, snap))
	}
	p.snap.Store(snap)
	p.log.Debug("routing snapshot rebuilt", "pools", len(snap.pools), "backends", len(p.ups))
}

func (p *Proxy) newUpstream(b *state.Backend) (*upstream, error) {
	addr, err := netip.ParseAddrPort(b.Address)
	if err != nil {
		return nil, err
	}
	// Answers arrive with IPv4 sources unmapped; compare like with like.
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	u := &upstream{name: b.Name, pool: b.Pool, addr: addr, stats: &policy.Stats{}, obs: nopObserver{},
		latency: newLatencyHistogram(b.Name, b.Pool)}
	if p.outcomes != nil {
		if o := p.outcomes.Observer(b.Name); o != nil {
			u.obs = o
		}
	}
	u.sa = udpsock.AddrFrom(addr, p.backendV6)
	u.pp = backendPP(p.cfg.Load(), b)
	u.tcp = tcppool.NewPool(b.Name, addr, u.pp, p.cfg.Load().Proxy.TCP.BackendConns, &p.wg)
	return u, nil
}

// upstreamAt finds the backend at an address, for ICMP errors.
func (p *Proxy) upstreamAt(a netip.AddrPort) *upstream {
	p.buildMu.Lock()
	defer p.buildMu.Unlock()
	for _, u := range p.ups {
		if u.addr == a {
			return u
		}
	}
	return nil
}

// retire closes a backend that left the config. In-flight queries to it get
// no answer and are retried elsewhere when they time out.
func (p *Proxy) retire(u *upstream) {
	p.log.Info("backend removed", "backend", u.name, "address", u.addr)
	u.close()
}

func (u *upstream) close() {
	if u.closed.Swap(true) {
		return
	}
	u.tcp.Close()
}

// configChanged reports the parts of a new config a reload cannot apply.
func configChanged(old, nu *config.Config, log *slog.Logger) {
	if len(old.Listen) != len(nu.Listen) {
		log.Warn("listen addresses changed: restart to apply")
		return
	}
	for i := range old.Listen {
		if old.Listen[i].Address != nu.Listen[i].Address || old.Listen[i].Protocol != nu.Listen[i].Protocol {
			log.Warn("listen addresses changed: restart to apply")
			return
		}
	}
	if old.Proxy.Workers != nu.Proxy.Workers || old.Proxy.MaxInflight != nu.Proxy.MaxInflight {
		log.Warn("proxy.workers and proxy.max_inflight changes need a restart")
	}
}
