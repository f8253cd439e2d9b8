package proxy

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anyfront/anyfront/internal/testlab"
)

// sClient runs openssl s_client against addr with args and returns its
// output; stdin is empty, so it ends once the handshake is done.
func sClient(t testing.TB, addr string, args ...string) string {
	t.Helper()
	cmd := exec.Command("openssl", append([]string{"s_client", "-connect", addr, "-servername", "localhost"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl s_client %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestLabTLSOpenSSL: openssl's client resumes with a saved session, on the
// node that made it and on another sharing its ticket keys, and gets RSA
// when it offers only RSA signatures in TLS 1.3.
func TestLabTLSOpenSSL(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	testlab.RequireBinary(t, "openssl")
	u := testlab.StartUnbound(t, testlab.UnboundOptions{})
	dir := t.TempDir()
	ec := testlab.SelfSignedCert(t, dir, "ecdsa")
	rsaCrt, rsaKey := rsaCert(t, dir, "rsa", ec.Pool)
	keys := filepath.Join(dir, "ticket.keys")
	writeKeys(t, keys, ticketKey(t))
	tlsYAML := fmt.Sprintf("{cert: %q, key: %q, certs: [{cert: %q, key: %q}], ticket_key_file: %q}", ec.CertFile, ec.KeyFile, rsaCrt, rsaKey, keys)
	addrs := addrPicker{}
	a := startTLSNode(t, addrs, u, tlsYAML)
	b := startTLSNode(t, addrs, u, tlsYAML)

	for _, v := range []string{"-tls1_3", "-tls1_2"} {
		t.Run("DoT "+v+": -sess_out, then -sess_in resumes, on the same node and the next", func(t *testing.T) {
			sess := filepath.Join(t.TempDir(), "session.pem")
			if out := sClient(t, a.dot, v, "-alpn", "dot", "-sess_out", sess); !strings.Contains(out, "New, TLSv1.") {
				t.Fatalf("first handshake not a new session:\n%s", out)
			}
			for name, n := range map[string]*tlsNode{"node A": a, "node B": b} {
				_, res0 := n.handshakes("dot")
				if out := sClient(t, n.dot, v, "-alpn", "dot", "-sess_in", sess); !strings.Contains(out, "Reused, TLSv1.") {
					t.Errorf("%s did not resume:\n%s", name, out)
				}
				if _, res := n.handshakes("dot"); res != res0+1 {
					t.Errorf("%s counted %d resumptions, want 1", name, res-res0)
				}
			}
		})
	}
	for _, tc := range []struct{ sigalgs, want string }{
		{"ecdsa_secp256r1_sha256:rsa_pss_rsae_sha256", "Server public key is 256 bit"},
		{"rsa_pss_rsae_sha256", "Server public key is 2048 bit"},
	} {
		t.Run("TLS 1.3 with signatures "+tc.sigalgs, func(t *testing.T) {
			if out := sClient(t, a.dot, "-tls1_3", "-alpn", "dot", "-sigalgs", tc.sigalgs); !strings.Contains(out, tc.want) {
				t.Errorf("want %q:\n%s", tc.want, out)
			}
		})
	}
}
