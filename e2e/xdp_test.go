package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/internal/testlab"
)

// Clients of the XDP lab: an ordinary one (IPv4 and IPv6) and one the xdp
// blocklist names. All are inside the acl, so whatever the blocked one
// misses, XDP took from it.
var (
	xdpClient4  = netip.MustParseAddr("198.51.100.10")
	xdpClient6  = netip.MustParseAddr("2001:db8:100::10")
	xdpBlocked4 = netip.MustParseAddr("198.51.100.66")
)

// xdpAdminPort is the admin API's port on the server namespace's loopback
// (a fresh namespace: nothing else holds it).
const xdpAdminPort = 8053

// xdpNode is bin/anyfront running inside the XDP lab's server namespace,
// with its xdp section on the server's veth.
type xdpNode struct {
	t      *testing.T
	lab    *testlab.XDPLab
	admin  *http.Client
	proc   *os.Process
	logs   *syncBuffer
	exited chan error
	// backend is the unbound the default pool forwards to.
	backend *testlab.Unbound
}

// startXDPNode starts the lab, an unbound backend and anyfront in the
// server namespace, and returns once the program is attached in mode and
// the backend is up.
func startXDPNode(t *testing.T, mode string) *xdpNode {
	t.Helper()
	return startXDPNodeWith(t, mode, "")
}

// startXDPNodeWith is startXDPNode with poolExtra added to the default
// pool's config (YAML at its indentation).
func startXDPNodeWith(t *testing.T, mode, poolExtra string) *xdpNode {
	t.Helper()
	testlab.RequireRoot(t)
	testlab.RequireBinary(t, "unbound")
	lab := testlab.NewXDPLab(t, xdpClient4, xdpClient6, xdpBlocked4)
	server := lab.Netns(lab.Server)
	// Processes are started on a thread kept for the test: the lab's
	// namespace helpers end threads, which would fire Pdeathsig.
	var u *testlab.Unbound
	if err := testlab.OnLastingThread(t, func() (err error) {
		u, err = testlab.NewUnbound(testlab.UnboundOptions{Port: 5301, Netns: server})
		return err
	}); err != nil {
		t.Fatalf("unbound in namespace %s: %v", lab.Server, err)
	}
	t.Cleanup(u.Close)

	dir := t.TempDir()
	token := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(token, []byte("xdp-e2e-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`listen:
  - {address: "%[1]s:53"}
  - {address: "[%[2]s]:53"}
acl: ["198.51.100.0/24", "2001:db8:100::/64"]
admin: {listen: "127.0.0.1:%[3]d", token_file: %[4]q}
pools:
  default:
    backends: [{name: r1, address: %[5]q}]
    healthcheck: {qname: "health.anyfront.test.", qtype: SOA, interval: 1s, timeout: 500ms, rise: 1, fall: 2}
%[9]sxdp:
  interface: %[6]s
  mode: %[7]s
  vips: ["%[1]s:53", "[%[2]s]:53"]
  blocklist: ["%[8]s/32"]
`, lab.VIP4, lab.VIP6, xdpAdminPort, token, u.Addr, lab.ServerIf, mode, xdpBlocked4, poolExtra)
	cfgPath := filepath.Join(dir, "anyfront.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, err := server.Command(filepath.Join(binDir, "anyfront"), "-config", cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	n := &xdpNode{
		t: t, lab: lab, logs: &syncBuffer{}, exited: make(chan error, 1), backend: u,
		admin: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: server.DialContext}},
	}
	cmd.Stdout, cmd.Stderr = n.logs, n.logs
	// ip netns exec execs anyfront in place: the PID is anyfront's, and
	// the death signal reaches it if the test binary dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := testlab.OnLastingThread(t, cmd.Start); err != nil {
		t.Fatal(err)
	}
	n.proc = cmd.Process
	go func() { n.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // by PID; a no-op once it has exited
		<-n.exited
		if t.Failed() {
			t.Logf("anyfront logs:\n%s", n.logs.String())
		}
	})
	want := map[string]string{"generic": "xdpgeneric", "driver": "xdp"}[mode]
	n.waitFor("the program attached in "+mode+" mode", 10*time.Second, func() bool { return n.xdpState() == want })
	n.waitFor("the backend checked up", 10*time.Second, func() bool {
		body, code := n.get("/api/v1/backends")
		var list []backendView
		if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list) != 1 {
			return false
		}
		return list[0].Health == "up"
	})
	return n
}

// waitFor polls cond until it holds, failing the test after within or
// when anyfront exits.
func (n *xdpNode) waitFor(what string, within time.Duration, cond func() bool) {
	n.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		select {
		case err := <-n.exited:
			n.exited <- err
			n.t.Fatalf("anyfront exited (%v) while waiting for %s", err, what)
		default:
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// get fetches path from the admin API inside the server namespace.
func (n *xdpNode) get(path string) (string, int) {
	req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", xdpAdminPort, path), nil)
	if err != nil {
		return err.Error(), 0
	}
	req.Header.Set("Authorization", "Bearer xdp-e2e-secret")
	resp, err := n.admin.Do(req)
	if err != nil {
		return err.Error(), 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode
}

// xdpPackets returns anyfront_xdp_packets_total by verdict from /metrics.
func (n *xdpNode) xdpPackets() map[string]float64 {
	n.t.Helper()
	body, code := n.get("/metrics")
	if code != 200 {
		n.t.Fatalf("GET /metrics: %d %s", code, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), `anyfront_xdp_packets_total{verdict="`)
		if !ok {
			continue
		}
		verdict, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			n.t.Fatalf("metrics line %q: %v", sc.Text(), err)
		}
		out[verdict] = v
	}
	if len(out) == 0 {
		n.t.Fatalf("no anyfront_xdp_packets_total in /metrics:\n%s", body)
	}
	return out
}

// xdpState says how a program is attached to the server's veth, from the
// first line of `ip -d link`: "xdp" (native), "xdpgeneric", or "".
func (n *xdpNode) xdpState() string {
	first, _, _ := strings.Cut(n.lab.LinkDetails(n.t, n.lab.Server, n.lab.ServerIf), "\n")
	for _, f := range strings.Fields(first) {
		switch f {
		case "xdp", "xdpdrv":
			return "xdp"
		case "xdpgeneric", "xdpoffload":
			return f
		}
	}
	return ""
}

// exchange sends m from src in the client namespace to the VIP of src's
// family and returns the answer, or nil after a timeout.
func (n *xdpNode) exchange(src netip.Addr, m *dns.Msg, timeout time.Duration) *dns.Msg {
	n.t.Helper()
	vip := n.lab.VIP4
	if src.Is6() {
		vip = n.lab.VIP6
	}
	var conn net.PacketConn
	err := n.lab.Do(n.lab.Client, func() (err error) {
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
		return err
	})
	if err != nil {
		n.t.Fatalf("client socket on %v: %v", src, err)
	}
	defer conn.Close()
	b, err := m.Pack()
	if err != nil {
		n.t.Fatal(err)
	}
	if _, err := conn.WriteTo(b, net.UDPAddrFromAddrPort(netip.AddrPortFrom(vip, 53))); err != nil {
		n.t.Fatal(err)
	}
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		k, _, err := conn.ReadFrom(buf)
		if err != nil {
			return nil
		}
		var r dns.Msg
		if r.Unpack(buf[:k]) == nil && r.Id == m.Id {
			return &r
		}
	}
}

// TestXDPDaemon runs the built anyfront in a network namespace with its
// xdp section on a veth, in generic and in driver mode, against clients in
// another namespace: served, blocklisted and counted, NOTIMP and FORMERR
// answered through XDP (RFC 8906), detached after SIGTERM.
func TestXDPDaemon(t *testing.T) {
	testlab.RequireRoot(t)
	for _, mode := range []string{"generic", "driver"} {
		t.Run(mode, func(t *testing.T) {
			n := startXDPNode(t, mode)
			t.Logf("attached:\n%s", n.lab.LinkDetails(t, n.lab.Server, n.lab.ServerIf))

			t.Run("clients get answers over IPv4 and IPv6", func(t *testing.T) {
				before := n.xdpPackets()
				for _, src := range []netip.Addr{xdpClient4, xdpClient6} {
					q := new(dns.Msg).SetQuestion("www."+testlab.DemoZone, dns.TypeA)
					r := n.exchange(src, q, 2*time.Second)
					if r == nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
						t.Fatalf("%v: answer %v", src, r)
					}
					if a, ok := r.Answer[0].(*dns.A); !ok || a.A.String() != "192.0.2.11" {
						t.Errorf("%v: answer %v", src, r.Answer[0])
					}
				}
				if d := n.xdpPackets()["pass"] - before["pass"]; d < 2 {
					t.Errorf("pass rose by %v for 2 answered queries", d)
				}
			})

			t.Run("a blocklisted source gets nothing and is counted", func(t *testing.T) {
				before := n.xdpPackets()
				for i := range 5 {
					q := new(dns.Msg).SetQuestion(testlab.DemoZone, dns.TypeA)
					if r := n.exchange(xdpBlocked4, q, 200*time.Millisecond); r != nil {
						t.Fatalf("query %d from the blocklisted %v answered: %v", i, xdpBlocked4, r)
					}
				}
				n.waitFor("blocked to rise by 5", 2*time.Second, func() bool {
					return n.xdpPackets()["blocked"]-before["blocked"] >= 5
				})
			})

			t.Run("NOTIFY gets NOTIMP and QDCOUNT 0 gets FORMERR through XDP", func(t *testing.T) {
				before := n.xdpPackets()
				notify := new(dns.Msg).SetNotify(testlab.DemoZone)
				r := n.exchange(xdpClient4, notify, 2*time.Second)
				if r == nil || r.Rcode != dns.RcodeNotImplemented || r.Opcode != dns.OpcodeNotify {
					t.Errorf("NOTIFY: answer %v, want NOTIMP", r)
				}
				empty := new(dns.Msg)
				empty.Id = dns.Id()
				empty.SetEdns0(1232, false)
				r = n.exchange(xdpClient6, empty, 2*time.Second)
				if r == nil || r.Rcode != dns.RcodeFormatError {
					t.Errorf("QDCOUNT 0: answer %v, want FORMERR", r)
				}
				after := n.xdpPackets()
				if d := after["pass"] - before["pass"]; d < 2 {
					t.Errorf("pass rose by %v for the NOTIFY and the empty query", d)
				}
				if d := after["malformed"] - before["malformed"]; d != 0 {
					t.Errorf("malformed rose by %v", d)
				}
			})

			t.Run("a response aimed at the VIP is malformed", func(t *testing.T) {
				before := n.xdpPackets()
				resp := new(dns.Msg).SetQuestion(testlab.DemoZone, dns.TypeA)
				resp.Response = true
				if r := n.exchange(xdpClient4, resp, 200*time.Millisecond); r != nil {
					t.Errorf("a response got an answer: %v", r)
				}
				n.waitFor("malformed to rise", 2*time.Second, func() bool {
					return n.xdpPackets()["malformed"]-before["malformed"] >= 1
				})
			})

			t.Run("SIGTERM: exits 0 and the program is detached", func(t *testing.T) {
				if err := n.proc.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				select {
				case err := <-n.exited:
					n.exited <- err // for the cleanup
					if err != nil {
						t.Errorf("exit after SIGTERM: %v", err)
					}
				case <-time.After(15 * time.Second):
					t.Fatal("no exit within 15s of SIGTERM")
				}
				details := n.lab.LinkDetails(t, n.lab.Server, n.lab.ServerIf)
				if s := n.xdpState(); s != "" || strings.Contains(details, "prog/xdp") {
					t.Errorf("still attached after exit:\n%s", details)
				}
			})
		})
	}
}
