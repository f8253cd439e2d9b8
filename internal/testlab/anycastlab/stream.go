package anycastlab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/miekg/dns"
)

// StreamOptions configures a QueryStream.
type StreamOptions struct {
	// Targets get the queries in turn (e.g. both VIPs on port 53).
	Targets []netip.AddrPort
	// Sockets is how many UDP sockets (source ports) send: ECMP hashes
	// flows by ports, so many sockets spread over every node. Default 16.
	Sockets int
	// Rate is queries per second over all sockets. Default 200.
	Rate float64
	// Timeout is how long a query may wait for its answer before it
	// counts as lost. Default 1s.
	Timeout time.Duration
}

// StreamQuery is the outcome of one query.
type StreamQuery struct {
	Sent   time.Time
	Target netip.AddrPort
	// Node names who answered ("n1"), from the WhoZone TXT; empty
	// when the query failed.
	Node string
	// Err is "" for a good answer, else "timeout", an rcode name, or what
	// was wrong with the answer.
	Err string
}

// QueryStream sends a steady stream of TXT queries for unique names under
// WhoZone from inside a namespace (the lab's client), so no cache can
// answer and every answer names the node that handled it.
type QueryStream struct {
	opts    StreamOptions
	conns   []net.PacketConn
	stop    chan struct{}
	wg      sync.WaitGroup
	started time.Time

	mu      sync.Mutex
	results []StreamQuery
	pending []map[uint16]int // per socket: DNS ID -> index in results
}

// StartQueryStream opens the sockets in ns and starts sending.
func StartQueryStream(ns *testlab.Netns, o StreamOptions) (*QueryStream, error) {
	if len(o.Targets) == 0 {
		return nil, errors.New("query stream: no targets")
	}
	if o.Sockets <= 0 {
		o.Sockets = 16
	}
	if o.Rate <= 0 {
		o.Rate = 200
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	s := &QueryStream{opts: o, stop: make(chan struct{}), started: time.Now()}
	// One socket family for every target: IPv4 only, IPv6 only, or
	// dual-stack when the targets mix both.
	var has4, has6 bool
	for _, t := range o.Targets {
		has4, has6 = has4 || t.Addr().Is4(), has6 || t.Addr().Is6()
	}
	network := "udp"
	switch {
	case !has6:
		network = "udp4"
	case !has4:
		network = "udp6"
	}
	for i := 0; i < o.Sockets; i++ {
		c, err := ns.ListenPacket(network, ":0")
		if err != nil {
			s.closeConns()
			return nil, fmt.Errorf("query stream: %w", err)
		}
		s.conns = append(s.conns, c)
		s.pending = append(s.pending, map[uint16]int{})
	}
	for i, c := range s.conns {
		s.wg.Add(1)
		go s.read(i, c)
	}
	s.wg.Add(2)
	go s.send()
	go s.expire()
	return s, nil
}

func (s *QueryStream) closeConns() {
	for _, c := range s.conns {
		c.Close()
	}
}

// send paces queries over the sockets in turn.
func (s *QueryStream) send() {
	defer s.wg.Done()
	interval := time.Duration(float64(time.Second) / s.opts.Rate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var seq uint64
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		seq++
		sock := int(seq % uint64(len(s.conns)))
		target := s.opts.Targets[int(seq/uint64(len(s.conns)))%len(s.opts.Targets)]
		q := new(dns.Msg).SetQuestion(fmt.Sprintf("q%d-%d.%s", s.started.UnixNano()%1e6, seq, WhoZone), dns.TypeTXT)
		q.Id = dns.Id()
		buf, err := q.Pack()
		if err != nil {
			continue
		}
		s.mu.Lock()
		idx := len(s.results)
		s.results = append(s.results, StreamQuery{Sent: time.Now(), Target: target})
		if old, dup := s.pending[sock][q.Id]; dup {
			s.results[old].Err = "timeout" // an ID reused while unanswered: count the old one lost
		}
		s.pending[sock][q.Id] = idx
		s.mu.Unlock()
		if _, err := s.conns[sock].WriteTo(buf, net.UDPAddrFromAddrPort(target)); err != nil {
			s.finish(sock, q.Id, "", "send: "+err.Error())
		}
	}
}

// read matches answers to pending queries.
func (s *QueryStream) read(sock int, c net.PacketConn) {
	defer s.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			return // closed by Stop
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:n]); err != nil {
			continue
		}
		node, bad := "", ""
		switch {
		case r.Rcode != dns.RcodeSuccess:
			bad = dns.RcodeToString[r.Rcode]
		case len(r.Answer) == 0:
			bad = "empty answer"
		default:
			if txt, ok := r.Answer[0].(*dns.TXT); ok && len(txt.Txt) == 1 {
				node, _, _ = strings.Cut(txt.Txt[0], "/")
			} else {
				bad = "unexpected answer " + r.Answer[0].String()
			}
		}
		s.finish(sock, r.Id, node, bad)
	}
}

// finish records the outcome of the pending query with this ID, if any.
func (s *QueryStream) finish(sock int, id uint16, node, bad string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, ok := s.pending[sock][id]
	if !ok {
		return // late answer to a query already counted lost
	}
	delete(s.pending[sock], id)
	s.results[idx].Node, s.results[idx].Err = node, bad
}

// expire counts queries unanswered for Timeout as lost.
func (s *QueryStream) expire() {
	defer s.wg.Done()
	tick := time.NewTicker(s.opts.Timeout / 10)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		s.expireOlder(time.Now().Add(-s.opts.Timeout))
	}
}

func (s *QueryStream) expireOlder(before time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pending {
		for id, idx := range p {
			if s.results[idx].Sent.Before(before) {
				s.results[idx].Err = "timeout"
				delete(p, id)
			}
		}
	}
}

// Results returns a copy of the outcomes so far, in sending order; queries
// still waiting for an answer have neither Node nor Err.
func (s *QueryStream) Results() []StreamQuery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]StreamQuery(nil), s.results...)
}

// Stop stops sending, waits Timeout for the last answers, counts what is
// still unanswered as lost, closes the sockets and returns every outcome.
func (s *QueryStream) Stop() []StreamQuery {
	select {
	case <-s.stop:
		return s.Results()
	default:
	}
	close(s.stop)
	time.Sleep(s.opts.Timeout) // answers to the last queries may still arrive
	s.expireOlder(time.Now().Add(time.Hour))
	s.closeConns()
	s.wg.Wait()
	return s.Results()
}

// StreamSummary counts outcomes of queries sent in [from, to).
type StreamSummary struct {
	Sent, Failed int
	ByNode       map[string]int
	Errors       map[string]int
	// FirstFail and LastFail are the send times of the first and last
	// failed query (zero when none failed).
	FirstFail, LastFail time.Time
}

// Window is how long clients saw failures: from the first failed query
// to the last one (by send time); 0 when none failed.
func (s StreamSummary) Window() time.Duration {
	if s.Failed == 0 {
		return 0
	}
	return s.LastFail.Sub(s.FirstFail)
}

func (s StreamSummary) String() string {
	nodes := make([]string, 0, len(s.ByNode))
	for n, c := range s.ByNode {
		nodes = append(nodes, fmt.Sprintf("%s=%d", n, c))
	}
	sort.Strings(nodes)
	return fmt.Sprintf("sent %d failed %d answered by %s errors %v", s.Sent, s.Failed, strings.Join(nodes, " "), s.Errors)
}

// Summarize counts the outcomes of queries sent in [from, to); a zero to
// means no end.
func Summarize(rs []StreamQuery, from, to time.Time) StreamSummary {
	sum := StreamSummary{ByNode: map[string]int{}, Errors: map[string]int{}}
	for _, r := range rs {
		if r.Sent.Before(from) || !to.IsZero() && !r.Sent.Before(to) {
			continue
		}
		if r.Node == "" && r.Err == "" {
			continue // still pending
		}
		sum.Sent++
		if r.Err != "" {
			sum.Failed++
			sum.Errors[r.Err]++
			if sum.FirstFail.IsZero() {
				sum.FirstFail = r.Sent
			}
			sum.LastFail = r.Sent
			continue
		}
		sum.ByNode[r.Node]++
	}
	return sum
}
