package testlab

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BIND 9 from Debian is the lab's authoritative server for what unbound
// 1.17 does not do: DNS cookies, NSID, EXPIRE and TSIG.

const (
	// ConfZone is the zone a lab named serves.
	ConfZone = "conf.test."
	// NamedServerID is the NSID the lab named answers with (server-id).
	NamedServerID = "bind-lab"
	// NamedTSIGName and NamedTSIGSecret are the TSIG key (hmac-sha256)
	// named knows; queries signed with it get signed answers.
	NamedTSIGName = "k."
)

// NamedTSIGSecret is the lab key's secret, base64 as dig -y and miekg take it.
var NamedTSIGSecret = base64.StdEncoding.EncodeToString([]byte("anyfront-lab-tsig-secret-32bytes"))

// Named is one running BIND 9 authoritative server on 127.0.0.1.
type Named struct {
	// Addr is where it answers, over UDP and TCP.
	Addr netip.AddrPort
	dir  string
	log  string
	proc *Proc
}

const namedZone = `$TTL 300
@	IN SOA ns.conf.test. hostmaster.conf.test. 1 3600 600 86400 300
	IN NS ns.conf.test.
ns	IN A 192.0.2.53
s1	IN A 192.0.2.1
s2	IN A 192.0.2.2
`

func namedConf(dir string, port int) string {
	return fmt.Sprintf(`options {
	directory %q;
	pid-file %q;
	listen-on port %d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	server-id %q;
	answer-cookie yes;
	notify no;
	allow-transfer { none; };
};
key "k" { algorithm hmac-sha256; secret %q; };
controls { };
zone "conf.test" { type primary; file %q; };
`, dir, filepath.Join(dir, "named.pid"), port, NamedServerID, NamedTSIGSecret, filepath.Join(dir, "conf.test.zone"))
}

// StartNamed starts named for a test, serving ConfZone with cookies, NSID
// and the TSIG key on, and stops it and removes its files when the test
// ends. It returns once named answers the zone's SOA.
func StartNamed(t testing.TB) *Named {
	t.Helper()
	SkipShort(t, "named")
	n, err := NewNamed()
	if err != nil {
		if errors.Is(err, ErrNotInstalled) {
			SkipMissing(t, err)
		}
		t.Fatalf("start named: %v", err)
	}
	t.Cleanup(n.Close)
	return n
}

// NewNamed is StartNamed without a test; the caller must Close it.
func NewNamed() (*Named, error) {
	bin, err := LookBinary("named")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "anyfront-named-")
	if err != nil {
		return nil, err
	}
	n := &Named{dir: dir, log: filepath.Join(dir, "named.log")}
	for attempt := 1; ; attempt++ {
		port, err := FreePort()
		if err == nil {
			err = n.start(bin, port)
		}
		if err == nil {
			return n, nil
		}
		if attempt == startAttempts {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

func (n *Named) start(bin string, port int) error {
	conf := filepath.Join(n.dir, "named.conf")
	if err := os.WriteFile(filepath.Join(n.dir, "conf.test.zone"), []byte(namedZone), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(conf, []byte(namedConf(n.dir, port)), 0o644); err != nil {
		return err
	}
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	// -g: foreground, logging to stderr; -n 1: one worker (2-core CI).
	p, err := StartProc(bin, []string{"-g", "-n", "1", "-c", conf}, logf)
	logf.Close()
	if err != nil {
		return err
	}
	n.Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port))
	c := &dns.Client{Net: "udp", Timeout: probeTimeout}
	q := new(dns.Msg).SetQuestion(ConfZone, dns.TypeSOA)
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		if p.Exited() {
			break
		}
		if r, _, err := c.Exchange(q, n.Addr.String()); err == nil && r.Rcode == dns.RcodeSuccess {
			n.proc = p
			return nil
		}
		select {
		case <-p.done:
		case <-time.After(20 * time.Millisecond): // poll interval, not a settle delay
		}
	}
	p.Kill()
	b, _ := os.ReadFile(n.log)
	return fmt.Errorf("named on %s did not answer within %v:\n%s", n.Addr, readyTimeout, tail(string(b)))
}

func tail(s string) string {
	if len(s) > 2000 {
		return s[len(s)-2000:]
	}
	return s
}

// PID is named's process ID, 0 once closed.
func (n *Named) PID() int {
	if n.proc == nil {
		return 0
	}
	return n.proc.PID()
}

// Close kills named and removes its files; it is idempotent.
func (n *Named) Close() {
	if n.proc != nil {
		n.proc.Kill()
		n.proc = nil
	}
	os.RemoveAll(n.dir)
}
