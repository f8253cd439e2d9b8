package faultlab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
)

// A lossy farm is the issue-15 fault: backends whose network drops a share
// of the packets they receive. This kernel has no netem, so nftables does
// it, in a namespace of the farm's own:
//
//	test's namespace (root)             farm namespace PREFIX-farm
//	PREFIXfb 203.0.113.N+1/28  ------  PREFIXfa 203.0.113.N+2.. (one per backend)
//	                                    nft: iifname PREFIXfa, numgen random mod 100 < LOSS, drop
//
// The root end stays in the namespace of the test process, so anyfront,
// dnsdist and dnsperf started normally reach the backends. Only packets
// arriving over the veth are dropped: the readiness probes, sent from inside
// the namespace over its loopback route, always get through.
const (
	// farmNet is cut into /28 blocks; a farm takes the one its prefix
	// hashes to, or the next free one (another farm, or another
	// checkout's, may hold it).
	farmNet       = "203.0.113.0/24"
	farmBlockBits = 28
	farmBlocks    = 1 << (farmBlockBits - 24)
	// farmMaxBackends: a /28 less the network, broadcast and root-end
	// addresses.
	farmMaxBackends = 13
	// farmTable is the nftables table (family inet) in the farm's
	// namespace; farmCounter its named counter, which outlives the rule
	// that SetLoss replaces.
	farmTable   = "anyfront_lossy"
	farmCounter = "dropped"
	// nftTimeout bounds one nft command: local netlink calls that take
	// milliseconds; a hang means something is badly wrong.
	nftTimeout = 10 * time.Second
)

// LossyFarmOptions configures a lossy farm.
type LossyFarmOptions struct {
	// Backends is how many unbound resolvers (default 2, at most 13).
	Backends int
	// LossPercent is the share of packets dropped on their way to the
	// backends, 0 to 100.
	LossPercent int
	// Unbound configures every backend (zone data, threads, ...). Its
	// Netns, Address and Port are the farm's; an AccessControl line
	// admitting the farm's /28 (the root end, and the probes from inside)
	// is added.
	Unbound testlab.UnboundOptions
}

// LossyFarm is unbound backends in a namespace of their own, reached from
// the test's namespace over a veth, with nftables in that namespace dropping
// a share of the packets the backends receive.
type LossyFarm struct {
	// Addrs is each backend's address (port 53), reachable from the
	// namespace that made the farm.
	Addrs []netip.AddrPort
	// Backends are the resolvers, in the order of Addrs (Stats, Kill ...).
	Backends []*testlab.Unbound
	// NS is the farm's namespace.
	NS *testlab.Netns

	veth *testlab.Veth
	mu   sync.Mutex // serialises nft transactions
	loss int
}

// StartLossyFarm builds a farm for the test, named after it (LabPrefix),
// and tears it down when the test ends. It skips the test when not root
// or when nft is missing.
func StartLossyFarm(t testing.TB, o LossyFarmOptions) *LossyFarm {
	t.Helper()
	testlab.SkipShort(t, "the lossy backend farm (a namespace, nft, unbound)")
	testlab.RequireRoot(t)
	testlab.RequireBinary(t, "nft")
	f, err := NewLossyFarm(testlab.LabPrefix(t), o)
	if err != nil {
		t.Fatalf("start lossy farm: %v", err)
	}
	t.Cleanup(f.Close)
	return f
}

// NewLossyFarm builds a farm whose namespace and veth are named after
// prefix (at most 12 characters; a leftover of the same name is removed).
// It needs root and nft. The caller must Close it. On error everything
// started is torn down.
func NewLossyFarm(prefix string, o LossyFarmOptions) (f *LossyFarm, err error) {
	if o.Backends == 0 {
		o.Backends = 2
	}
	if o.Backends < 1 || o.Backends > farmMaxBackends {
		return nil, fmt.Errorf("lossy farm: %d backends, want 1 to %d", o.Backends, farmMaxBackends)
	}
	if err := checkLoss(o.LossPercent); err != nil {
		return nil, err
	}
	if len(prefix)+2 > testlab.MaxIfName {
		return nil, fmt.Errorf("lossy farm: prefix %q is too long for interface names", prefix)
	}
	if _, err := testlab.LookBinary("nft"); err != nil {
		return nil, err
	}
	f = &LossyFarm{}
	defer func() {
		if err != nil {
			f.Close()
			f = nil
		}
	}()
	if f.NS, err = testlab.CreateNetns(prefix + "-farm"); err != nil {
		return f, err
	}
	root, backends, err := f.link(prefix, o.Backends)
	if err != nil {
		return f, err
	}
	if err := f.nft(fmt.Sprintf("add table inet %s\nadd counter inet %s %s\nadd chain inet %[1]s input { type filter hook input priority 0; policy accept; }\n",
		farmTable, farmTable, farmCounter) + f.ruleScript(o.LossPercent)); err != nil {
		return f, err
	}
	f.loss = o.LossPercent
	for _, a := range backends {
		uo := o.Unbound
		uo.Netns, uo.Address, uo.Port = f.NS, a, 53
		uo.AccessControl = append(append([]string(nil), uo.AccessControl...), netip.PrefixFrom(root, farmBlockBits).Masked().String()+" allow")
		u, err := testlab.NewUnbound(uo)
		if err != nil {
			return f, fmt.Errorf("backend on %s: %w", a, err)
		}
		f.Backends = append(f.Backends, u)
		f.Addrs = append(f.Addrs, u.Addr)
	}
	return f, nil
}

// link creates the veth in the first free /28 block from the one prefix
// hashes to, and returns the root end's address and the backends'.
func (f *LossyFarm) link(prefix string, n int) (root netip.Addr, backends []netip.Addr, err error) {
	h := fnv.New32a()
	h.Write([]byte(prefix))
	start := int(h.Sum32() % farmBlocks)
	base := netip.MustParsePrefix(farmNet).Addr().As4()
	for i := range farmBlocks {
		b := base
		b[3] = byte(((start + i) % farmBlocks) << (32 - farmBlockBits))
		at := func(k int) netip.Addr { c := b; c[3] += byte(k); return netip.AddrFrom4(c) }
		root = at(1)
		backends = backends[:0]
		var nsAddrs []netip.Prefix
		for k := range n {
			backends = append(backends, at(2+k))
			nsAddrs = append(nsAddrs, netip.PrefixFrom(at(2+k), farmBlockBits))
		}
		f.veth, err = testlab.CreateVeth(prefix+"f", f.NS, nsAddrs, nil, []netip.Prefix{netip.PrefixFrom(root, farmBlockBits)})
		if err == nil {
			return root, backends, nil
		}
		if !strings.Contains(err.Error(), "already configured in the root namespace") {
			return root, nil, err
		}
	}
	return root, nil, fmt.Errorf("lossy farm: every /%d of %s is in use in the root namespace: %w", farmBlockBits, farmNet, err)
}

func checkLoss(p int) error {
	if p < 0 || p > 100 {
		return fmt.Errorf("lossy farm: loss %d%%, want 0 to 100", p)
	}
	return nil
}

// ruleScript replaces the input chain's one rule, in one transaction: no
// packet sees a chain without it. The named counter keeps its count.
func (f *LossyFarm) ruleScript(percent int) string {
	// numgen's values are 0-99, and nft refuses a comparison with 100.
	match := fmt.Sprintf("numgen random mod 100 < %d ", percent)
	if percent == 100 {
		match = ""
	}
	return fmt.Sprintf("flush chain inet %s input\nadd rule inet %s input iifname %q meta l4proto { tcp, udp } %scounter name %q drop\n",
		farmTable, farmTable, f.veth.A, match, farmCounter)
}

// SetLoss changes the share of packets dropped, at once.
func (f *LossyFarm) SetLoss(percent int) error {
	if err := checkLoss(percent); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.nft(f.ruleScript(percent)); err != nil {
		return err
	}
	f.loss = percent
	return nil
}

// Loss returns the share of packets being dropped, in percent.
func (f *LossyFarm) Loss() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loss
}

// Dropped returns how many packets the farm has dropped since it started.
func (f *LossyFarm) Dropped() (uint64, error) {
	out, err := f.nftOutput("-j", "list", "counter", "inet", farmTable, farmCounter)
	if err != nil {
		return 0, err
	}
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Name    string `json:"name"`
				Packets uint64 `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return 0, fmt.Errorf("nft counter: %w: %s", err, out)
	}
	for _, o := range doc.Nftables {
		if o.Counter != nil && o.Counter.Name == farmCounter {
			return o.Counter.Packets, nil
		}
	}
	return 0, fmt.Errorf("nft counter %s not in %s", farmCounter, out)
}

// Queries returns the queries the backends counted, summed
// (unbound-control stats_noreset: total.num.queries).
func (f *LossyFarm) Queries() (float64, error) {
	var sum float64
	for _, u := range f.Backends {
		s, err := u.Stats()
		if err != nil {
			return 0, err
		}
		sum += s["total.num.queries"]
	}
	return sum, nil
}

// nftCmd is nft with args, run inside the farm's namespace under ctx.
func (f *LossyFarm) nftCmd(ctx context.Context, args ...string) (*exec.Cmd, error) {
	nft, err := testlab.LookBinary("nft")
	if err != nil {
		return nil, err
	}
	ipBin, err := testlab.LookBinary("ip")
	if err != nil {
		return nil, err
	}
	return exec.CommandContext(ctx, ipBin, append([]string{"netns", "exec", f.NS.Name, nft}, args...)...), nil
}

// nft runs an nft script (one transaction) inside the farm's namespace.
func (f *LossyFarm) nft(script string) error {
	ctx, cancel := context.WithTimeout(context.Background(), nftTimeout)
	defer cancel()
	cmd, err := f.nftCmd(ctx, "-f", "-")
	if err != nil {
		return err
	}
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft -f: %w: %s\n%s", err, bytes.TrimSpace(out), script)
	}
	return nil
}

func (f *LossyFarm) nftOutput(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), nftTimeout)
	defer cancel()
	cmd, err := f.nftCmd(ctx, args...)
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// Close stops the backends and deletes the namespace, and with it the
// veth and the nftables rules. It is idempotent.
func (f *LossyFarm) Close() {
	for _, u := range f.Backends {
		u.Close()
	}
	f.Backends = nil
	if f.veth != nil {
		f.veth.Close()
		f.veth = nil
	}
	if f.NS != nil {
		if err := f.NS.Close(); err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(os.Stderr, "testlab: delete namespace %s: %v\n", f.NS.Name, err)
		}
		f.NS = nil
	}
}
