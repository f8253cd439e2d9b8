// Package proxy is the core of anyfront's hot path: the routing snapshot,
// the checks every front end shares (frontOn) and every answer goes
// through (acceptAnswer), the UDP shard loops, the in-flight table, and a
// query's fate (attempts, timeouts, hedging, deadline). Its rooms (wire
// parsing, cache, rules, blocks, observers, stream front ends, sockets)
// are packages below it; README.md has the data flow through them. The
// rooms never import proxy.
package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dynblock"
	"github.com/anyfront/anyfront/proxy/internal/rtt"
	"github.com/anyfront/anyfront/proxy/internal/udpsock"
	"github.com/anyfront/anyfront/proxy/pcache"
	"github.com/anyfront/anyfront/proxy/querylog"
	"github.com/anyfront/anyfront/proxy/stream"
	"github.com/anyfront/anyfront/proxy/top"
	"github.com/anyfront/anyfront/proxy/xdppublish"
	"github.com/anyfront/anyfront/state"
)

// Proxy serves DNS on the configured listen addresses and forwards queries to
// the backends the state store says are usable.
type Proxy struct {
	cfg      atomic.Pointer[config.Config]
	store    *state.Store
	log      *slog.Logger
	outcomes state.OutcomeSink
	epoch    time.Time

	snap      atomic.Pointer[snapshot]
	buildMu   sync.Mutex
	ups       map[string]*upstream     // guarded by buildMu
	caches    map[string]*pcache.Cache // by pool, guarded by buildMu
	lats      map[string]*rtt.Hist     // by pool, guarded by buildMu
	rebuildCh chan struct{}

	shards []*shard
	udpLns []*udpListener
	// backendV6 says the shards' backend sockets are dual-stack.
	backendV6 bool
	// fronts are the stream front ends (proxy/stream), conns the
	// connection bound the TCP, DoT and DoH ones share, transports their
	// counters by protocol (streams.go).
	fronts     []stream.Front
	conns      *stream.ConnLimit
	transports []transportSource
	// started publishes shards and the front ends once Run has set them all:
	// a scrape during start-up reads this, never the fields Run is still
	// assigning.
	started atomic.Pointer[running]
	wg      sync.WaitGroup // every goroutine Run starts
	// readers counts the UDP client readers: on stop, Run waits for them
	// before draining, as a reader may have read queries just before
	// stopping was set and not yet put them in flight.
	readers sync.WaitGroup
	// stopping is set when Run's context ends: readers stop taking queries.
	stopping atomic.Bool
	// waits is the UDP readers' budget of raw waits (udpsock.Recv).
	waits udpsock.WaitBudget

	// dyn holds the dynamic blocks and their detectors; Reload
	// reconfigures them.
	dyn *dynblock.Blocks
	// qlog is the dnstap query log and top the top clients and names
	// (observers.go); nil when off. Set by New, never changed.
	qlog *querylog.Log
	top  *top.Table
	// xdp publishes the hottest cached answers to XDP; nil without it.
	xdp *xdppublish.Publisher

	// stats are the proxy's counters, read by the metrics exporter; other
	// packages read them through Collector and Queries, never write them.
	stats counters
}

// Deps are what the proxy needs from the rest of the daemon.
type Deps struct {
	Store *state.Store
	Log   *slog.Logger
	// Outcomes, when set, receives every backend query's outcome (for
	// health checking from live traffic).
	Outcomes state.OutcomeSink
	// Answers, when set, is the XDP answer cache: the proxy publishes
	// its default pool's hottest cached answers there when that pool's
	// cache.xdp_entries is above 0.
	Answers xdppublish.Dataplane
	// Blocker, when set, receives every new dynamic block as well (the
	// XDP blocklist); see dynblock.Blocker.
	Blocker dynblock.Blocker
}

// New checks cfg and prepares a proxy; it opens no socket (Run does).
func New(cfg *config.Config, deps Deps) (*Proxy, error) {
	if len(cfg.Pools) == 0 {
		return nil, errors.New("proxy: no pools configured")
	}
	if deps.Store == nil {
		return nil, errors.New("proxy: no state store")
	}
	log := deps.Log
	if log == nil {
		log = slog.Default()
	}
	p := &Proxy{store: deps.Store, log: log, outcomes: deps.Outcomes, epoch: time.Now(), ups: map[string]*upstream{}, rebuildCh: make(chan struct{}, 1)}
	p.cfg.Store(cfg)
	p.waits.Base = cpus
	p.dyn = dynblock.New(log, p.epoch, deps.Blocker)
	p.dyn.Reconfigure(cfg.DynBlocks)
	p.qlog, p.top = querylog.New(cfg.QueryLog, log), top.New(cfg.Top)
	if deps.Answers != nil {
		p.xdp = xdppublish.New(deps.Answers, log, p.now)
	}
	return p, nil
}

// now is monotonic nanoseconds since the proxy started; it does not allocate.
func (p *Proxy) now() int64 { return int64(time.Since(p.epoch)) }

// Reload hands the proxy a new validated config: ACL, timeouts and policies
// apply to the next packet; pools and backends arrive through the state store.
func (p *Proxy) Reload(cfg *config.Config) {
	configChanged(p.cfg.Load(), cfg, p.log)
	p.reloadObservers(cfg)
	p.dyn.Reconfigure(cfg.DynBlocks)
	p.cfg.Store(cfg)
	select {
	case p.rebuildCh <- struct{}{}:
	default:
	}
}

// Run opens the listeners, serves until ctx is done, then stops accepting,
// lets in-flight queries finish (bounded by the retry budget) and returns.
func (p *Proxy) Run(ctx context.Context) error {
	cfg := p.cfg.Load()
	// The observers outlive the listeners, so the last answers are logged.
	stopObservers, err := p.startObservers()
	if err != nil {
		return err
	}
	defer stopObservers()
	workers := workers(cfg)
	for i := 0; i < workers; i++ {
		s, err := newShard(p, i, cfg.Proxy.MaxInflight)
		if err != nil {
			p.stopAll()
			return err
		}
		p.shards = append(p.shards, s)
		p.backendV6 = s.bv6
	}
	// The first snapshot is built before any socket opens, so the first
	// query already has somewhere to go.
	pools, backends, err := p.readStore()
	if err != nil {
		p.stopAll()
		return err
	}
	p.rebuild(pools, backends)

	p.conns = stream.NewConnLimit(cfg.Proxy.TCP)
	if err := p.listen(cfg); err != nil {
		p.stopAll()
		return err
	}
	for _, s := range p.shards {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			s.backendLoop()
		}()
	}
	for _, l := range p.udpLns {
		s := p.shards[l.idx%len(p.shards)]
		p.wg.Add(1)
		p.readers.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.readers.Done()
			s.clientLoop(l)
		}()
	}
	p.started.Store(&running{shards: p.shards, conns: p.conns, transports: p.transports})
	frontsCtx, stopFronts := context.WithCancel(context.Background())
	defer stopFronts()
	for _, f := range p.fronts {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := f.Serve(frontsCtx); err != nil {
				p.log.Error("front end stopped", "address", f.Addr().String(), "err", err)
			}
		}()
	}
	stopTimeouts := make(chan struct{})
	var timeoutsWG sync.WaitGroup
	for _, s := range p.shards {
		timeoutsWG.Add(1)
		go func() {
			defer timeoutsWG.Done()
			s.timeoutLoop(stopTimeouts)
		}()
	}
	xdpCtx, stopXDP := context.WithCancel(context.Background())
	xdpDone := make(chan struct{})
	go func() {
		defer close(xdpDone)
		if p.xdp != nil {
			_ = p.xdp.Run(xdpCtx) // it returns only once ctx ends
		}
	}()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		p.watch(watchCtx)
	}()
	p.log.Info("proxy serving", "listen", len(cfg.Listen), "workers", workers)
	if _, err := p.store.SetServing(true); err != nil {
		p.log.Error("state", "err", err)
	}

	<-ctx.Done()
	if _, err := p.store.SetServing(false); err != nil {
		p.log.Error("state", "err", err)
	}
	// XDP stops answering for a proxy that stops.
	stopXDP()
	<-xdpDone
	// Stop taking queries but keep the UDP sockets open: answers to the
	// queries in flight still leave through them. Client readers notice
	// within their read timeout.
	p.stopping.Store(true)
	// Stream connections stop reading; what they read is still answered.
	stopFronts()
	for _, f := range p.fronts {
		f.Close() // at once, not when each Serve notices
	}
	// Only once no reader can add to the in-flight tables does an empty
	// table mean every query taken in was answered (readers notice
	// stopping within readTimeout).
	p.readers.Wait()
	// Every query in flight ends by its deadline.
	p.drain(cfg.Proxy.Deadline + 100*time.Millisecond)
	close(stopTimeouts)
	timeoutsWG.Wait()
	stopWatch()
	<-watchDone
	p.stopAll()
	return nil
}

// stopAll stops every reader, waits for them, then closes the sockets: a
// socket is closed only once nothing blocks on it, so its number cannot be
// reused under a reader's feet.
func (p *Proxy) stopAll() {
	p.stopping.Store(true)
	for _, s := range p.shards {
		s.closing.Store(true)
	}
	for _, f := range p.fronts {
		f.Close()
	}
	p.closeUpstreams()
	p.wg.Wait()
	for _, l := range p.udpLns {
		unix.Close(l.fd)
	}
	for _, s := range p.shards {
		s.close()
	}
}

// cpus is the CPUs the process may use, as the runtime saw them at start
// (cgroup limits included), before the program raised GOMAXPROCS for the
// readers (Procs): the default worker count and the readers' wait budget
// are figured from it, so neither feeds back on itself.
var cpus = runtime.GOMAXPROCS(0)

// workers is how many shards cfg asks for.
func workers(cfg *config.Config) int {
	if cfg.Proxy.Workers > 0 {
		return cfg.Proxy.Workers
	}
	// A shard keeps two threads busy under load, one reading clients
	// and one reading backends: half the CPUs fill them. More shards
	// only split the traffic thinner, so each wake-up carries fewer
	// packets (measured: 1 shard on 2 CPUs costs 16 µs per cache hit at
	// 20k q/s, 2 shards 26 µs).
	return max(1, cpus/2)
}

// Procs is the GOMAXPROCS a proxy serving cfg wants: one P per CPU and one
// for each reader blocked in a receive. A blocked reader holds its P; with
// none left over, a reader that wakes waits for the runtime's monitor to
// take one back from a sleeper, which can take milliseconds. Idle Ps cost
// nothing. The library never changes GOMAXPROCS itself (it is the whole
// process's): the program raises it before Run (cmd/anyfront does). Below
// Procs, readers wait in ordinary system calls: correct, a little slower.
func Procs(cfg *config.Config) int {
	do53 := 0
	for _, l := range cfg.Listen {
		if l.Protocol == "" || l.Protocol == "do53" {
			do53++
		}
	}
	w := workers(cfg)
	return cpus + w*do53 + w
}

func (p *Proxy) readStore() ([]*state.Pool, []*state.Backend, error) {
	pools, err := p.store.Pools(nil)
	if err != nil {
		return nil, nil, err
	}
	backends, err := p.store.Backends(nil)
	return pools, backends, err
}

// watch rebuilds the snapshot on every state change or config reload.
func (p *Proxy) watch(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-p.rebuildCh:
				if pools, backends, err := p.readStore(); err == nil {
					p.rebuild(pools, backends)
				}
			}
		}
	}()
	if err := p.store.Watch(ctx, p.rebuild); err != nil {
		p.log.Error("state watch", "err", err)
	}
}

// listen opens, for every do53 address, one SO_REUSEPORT UDP socket per shard
// (the kernel spreads clients across them) and one TCP listener.
func (p *Proxy) listen(cfg *config.Config) error {
	for _, l := range cfg.Listen {
		if l.Protocol != "" && l.Protocol != "do53" {
			if err := p.listenTransport(cfg, l); err != nil { // dot, doh, doq: streams.go
				return err
			}
			continue
		}
		addr := l.Address
		for range p.shards {
			fd, v6, err := udpsock.ListenUDP(addr)
			if err != nil {
				return err
			}
			p.udpLns = append(p.udpLns, &udpListener{fd: fd, v6: v6, idx: len(p.udpLns), addr: addr})
			// Port 0 asks for a free port: every shard's socket and the
			// TCP listener then share the one the first socket got.
			if addr.Port() == 0 {
				if sa, err := unix.Getsockname(fd); err == nil {
					addr = netip.AddrPortFrom(addr.Addr(), uint16(sockaddrPort(sa)))
				}
			}
		}
		ln, err := net.Listen("tcp", addr.String())
		if err != nil {
			return err // "listen tcp ADDR: bind: ..." says it all
		}
		p.tcpFront(cfg, l, ln)
	}
	return nil
}

func sockaddrPort(sa unix.Sockaddr) int {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return a.Port
	case *unix.SockaddrInet6:
		return a.Port
	}
	return 0
}

// drain waits until no query is in flight, at most max.
func (p *Proxy) drain(max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		n := 0
		for _, s := range p.shards {
			n += s.inflight()
		}
		if n == 0 && p.streamInflight() == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *Proxy) closeUpstreams() {
	p.buildMu.Lock()
	defer p.buildMu.Unlock()
	for _, u := range p.ups {
		u.close()
	}
}
