package ebpf

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/testlab"
)

// verifierBudget is how many instructions the verifier may process for
// the program before this test fails: a fifth of the kernel's limit of one
// million, so that growth shows long before older or stricter kernels
// refuse the program.
const verifierBudget = 200_000

func TestCommittedObjectsAreFresh(t *testing.T) {
	var files []string
	for _, pat := range []string{"*.c", "*.h", "*.o"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		switch want, ok := generatedFrom[f]; {
		case !ok:
			t.Errorf("%s is new since the objects were generated: run `make generate` and commit the result", f)
		case hex.EncodeToString(sum[:]) != want:
			t.Errorf("%s has changed since the objects were generated: run `make generate` and commit the result", f)
		}
	}
	for f := range generatedFrom {
		if !slices.Contains(files, f) {
			t.Errorf("%s is gone since the objects were generated: run `make generate` and commit the result", f)
		}
	}
	// The embedded object is one of those on disk (the one for this
	// machine's byte order).
	sum := hex.EncodeToString(func() []byte { s := sha256.Sum256(_XdpBytes); return s[:] }())
	if sum != generatedFrom["xdp_bpfel.o"] && sum != generatedFrom["xdp_bpfeb.o"] {
		t.Errorf("the embedded object is neither generated object")
	}
}

func TestVerifierInstructionCount(t *testing.T) {
	testlab.RequireRoot(t)
	o, err := loadObjects()
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	info, err := o.AnyfrontXdp.Info()
	if err != nil {
		t.Fatal(err)
	}
	n, ok := info.VerifiedInstructions()
	if !ok {
		t.Skip("this kernel does not report the verifier's instruction count (Linux 5.16 or later does)")
	}
	t.Logf("verifier processed %d instructions (limit 1000000, budget %d)", n, verifierBudget)
	if n > verifierBudget {
		t.Errorf("the verifier processed %d instructions, over the budget of %d: simplify xdp.c", n, verifierBudget)
	}
}

// withCaps runs fn on a thread of its own that has only the given
// capabilities, and returns fn's error.
func withCaps(caps []int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread with fewer capabilities ends with
		// this goroutine instead of running other tests.
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		for _, c := range caps {
			data[c/32].Effective |= 1 << (c % 32)
			data[c/32].Permitted |= 1 << (c % 32)
		}
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// TestRunWithoutPrivileges runs the Dataplane on a thread without
// capabilities: Run must fail with an error that says what is missing and
// wraps the kernel's refusal.
func TestRunWithoutPrivileges(t *testing.T) {
	d, err := New(testConfig(config.RateLimit{}), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	run := func() error { return d.Run(context.Background()) }
	if os.Geteuid() == 0 {
		err = withCaps(nil, run)
	} else {
		err = run()
	}
	if err == nil {
		t.Fatal("Run succeeded without capabilities")
	}
	t.Logf("Run without capabilities: %v", err)
	if !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "CAP_BPF") {
		t.Errorf("the error should wrap EPERM and name the capabilities: %v", err)
	}
}

// TestDocumentedCapabilitiesSuffice loads the program with only the
// capabilities docs/xdp.md lists (attaching needs CAP_NET_ADMIN, among
// them).
func TestDocumentedCapabilitiesSuffice(t *testing.T) {
	testlab.RequireRoot(t)
	err := withCaps([]int{unix.CAP_BPF, unix.CAP_NET_ADMIN, unix.CAP_PERFMON}, func() error {
		o, err := loadObjects()
		if err == nil {
			o.Close()
		}
		return err
	})
	if err != nil {
		t.Errorf("with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON: %v", err)
	}
}

func TestNewChecksTheConfig(t *testing.T) {
	many := make([]netip.AddrPort, maxVIPs+1)
	for i := range many {
		many[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 53)
	}
	bigList := make([]netip.Prefix, maxStaticBlocks+1)
	for i := range bigList {
		bigList[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	for _, c := range []struct {
		name string
		cfg  *config.XDP
		want string
	}{
		{"no section", nil, "no xdp section"},
		{"no vips", &config.XDP{Interface: "eth0", Mode: "auto"}, "0 vips"},
		{"too many vips", &config.XDP{Interface: "eth0", Mode: "auto", VIPs: many}, "257 vips"},
		{"unknown mode", &config.XDP{Interface: "eth0", Mode: "turbo", VIPs: many[:1]}, `unknown mode "turbo"`},
		{"blocklist too long", &config.XDP{Interface: "eth0", Mode: "auto", VIPs: many[:1], Blocklist: bigList}, "at most 114688"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("New: %v, want an error containing %q", err, c.want)
			}
		})
	}
	d, err := New(testConfig(config.RateLimit{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(&config.XDP{Interface: "eth0", Mode: "auto"}); err == nil {
		t.Error("Reload accepted a config without vips")
	}
	if err := d.Reload(nil); err == nil {
		t.Error("Reload accepted a nil config")
	}
}

// TestMapBoundsMatchGo checks the C bounds against their Go twins, from
// the object's spec (no kernel needed).
func TestMapBoundsMatchGo(t *testing.T) {
	spec, err := loadXdp()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]uint32{
		xdpMapVips:       maxVIPs,
		xdpMapBlockV4:    maxBlocksPerFamily,
		xdpMapBlockV6:    maxBlocksPerFamily,
		xdpMapCounters:   verdictCount,
		xdpMapBuckets:    maxBuckets,
		xdpMapAnswers:    MaxAnswers,
		xdpMapAnswerHits: MaxAnswers,
		xdpMapAclV4:      MaxACLPrefixes,
		xdpMapAclV6:      MaxACLPrefixes,
	} {
		if got := spec.Maps[name].MaxEntries; got != want {
			t.Errorf("map %s holds %d entries in xdp.h, %d in Go", name, got, want)
		}
	}
	var v xdpAnswerVal
	if len(v.D.Sections) != MaxAnswerSections || len(v.D.Name) != maxNameLen+1 {
		t.Errorf("answer_data holds %d bytes of sections and %d of name; Go says %d and %d",
			len(v.D.Sections), len(v.D.Name), MaxAnswerSections, maxNameLen+1)
	}
}
