package stream

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/certfile"
)

// The TLS every encrypted front end (DoT, DoH, DoQ) shares: which
// certificate a handshake gets, session ticket keys, and the count of full
// handshakes and resumptions. All of it runs once per connection, at its
// handshake; an established connection never comes here again.

// Certs is a listener's certificates and session ticket keys, each
// reloaded without a restart when its files change; a file that fails to
// load keeps the old one serving (internal/certfile, which the admin API's
// TLS shares).
type Certs struct {
	pairs []*certfile.Store
	keys  *certfile.TicketKeys // nil: Go's own rotating ticket keys

	// st is where handshakes are counted: the front end's counters once
	// CountInto is called, own until then.
	st  atomic.Pointer[Counters]
	own Counters

	// lives are the configs handshakes run with when keys is set, one per
	// tlsConfig call, so a reloaded key file reaches them all.
	mu    sync.Mutex
	lives []*tls.Config
}

// LoadCerts loads t's certificates and ticket key file; they must load now.
func LoadCerts(t *config.TLS, log *slog.Logger) (*Certs, error) {
	s := &Certs{}
	s.st.Store(&s.own)
	for _, p := range t.Pairs() {
		c, err := certfile.New(p.Cert, p.Key, log)
		if err != nil {
			return nil, err
		}
		s.pairs = append(s.pairs, c)
	}
	if t.TicketKeyFile != "" {
		k, err := certfile.NewTicketKeys(t.TicketKeyFile, log)
		if err != nil {
			return nil, err
		}
		s.keys = k
	}
	return s, nil
}

// CountInto makes handshakes count in c, the counters of the front end the
// certificates serve. Call it before the front end serves.
func (s *Certs) CountInto(c *Counters) { s.st.Store(c) }

// Certificate returns the first certificate (tls.cert) being served.
func (s *Certs) Certificate() *tls.Certificate { return s.pairs[0].Certificate() }

// tlsConfig is the server side for one protocol: TLS 1.2 at least (1.3 is
// negotiated when the client has it; QUIC requires it), ALPN as the
// protocol's RFC says, session tickets on for resumption, and every
// handshake counted, full or resumed.
func (s *Certs) tlsConfig(proto string) *tls.Config {
	c := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		GetCertificate:   s.GetCertificate,
		VerifyConnection: s.count,
	}
	switch proto {
	case "dot":
		c.NextProtos = []string{"dot"}
	case "doq":
		c.MinVersion = tls.VersionTLS13
		c.NextProtos = []string{"doq"}
	case "doh":
		c.NextProtos = []string{"h2", "http/1.1"}
	}
	if s.keys == nil {
		return c
	}
	// The keys go on a config of ours that every handshake is handed
	// (crypto/tls uses keys set on GetConfigForClient's config), not on c:
	// net/http and quic-go clone c, and a clone would keep the keys it
	// was made with.
	live := c.Clone()
	live.SetSessionTicketKeys(s.keys.Keys())
	s.mu.Lock()
	s.lives = append(s.lives, live)
	s.mu.Unlock()
	c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		s.refreshKeys()
		return live, nil
	}
	return c
}

// refreshKeys picks up a changed ticket key file (at most once per
// certfile.CheckInterval); one that does not parse is counted and the old
// keys stay.
func (s *Certs) refreshKeys() {
	changed, rejected := s.keys.Refresh()
	if rejected {
		s.st.Load().ticketKeysRejected.Add(1)
	}
	if !changed {
		return
	}
	keys := s.keys.Keys()
	s.mu.Lock()
	for _, l := range s.lives {
		l.SetSessionTicketKeys(keys)
	}
	s.mu.Unlock()
}

// count is VerifyConnection: crypto/tls calls it on every handshake,
// resumed ones too, on TLS over TCP and in QUIC alike.
func (s *Certs) count(cs tls.ConnectionState) error {
	st := s.st.Load()
	if cs.DidResume {
		st.tlsResumed.Add(1)
	} else {
		st.tlsFull.Add(1)
	}
	return nil
}

// GetCertificate fits tls.Config.GetCertificate. With one certificate it
// is that one. With more, it is the first ECDSA one the client supports
// (smaller, and cheaper to sign with than RSA), then Ed25519, then RSA, as
// tls.ClientHelloInfo.SupportsCertificate judges it; when none fits the
// name the client asked for, the same choice ignoring the name (DoT
// clients in opportunistic mode do not check it), and when none fits at
// all, the last in that order (an RSA one, what the oldest clients have).
func (s *Certs) GetCertificate(chi *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(s.pairs) == 1 {
		return s.pairs[0].GetCertificate(chi)
	}
	var certs [8]*tls.Certificate // config allows at most 8 pairs
	cands := certs[:0]
	for _, p := range s.pairs {
		c, err := p.GetCertificate(chi)
		if err != nil {
			return nil, err
		}
		cands = append(cands, c)
	}
	if c := pick(chi, cands); c != nil {
		return c, nil
	}
	if chi.ServerName != "" {
		anyName := *chi
		anyName.ServerName = ""
		if c := pick(&anyName, cands); c != nil {
			return c, nil
		}
	}
	var last *tls.Certificate
	for rank := range numKeyRanks {
		for _, c := range cands {
			if keyRank(c) == rank {
				last = c
			}
		}
	}
	return last, nil
}

// numKeyRanks are ECDSA, Ed25519 and RSA (and anything else).
const numKeyRanks = 3

func pick(chi *tls.ClientHelloInfo, cands []*tls.Certificate) *tls.Certificate {
	for rank := range numKeyRanks {
		for _, c := range cands {
			if keyRank(c) == rank && chi.SupportsCertificate(c) == nil {
				return c
			}
		}
	}
	return nil
}

func keyRank(c *tls.Certificate) int {
	if c.Leaf == nil {
		return numKeyRanks - 1
	}
	switch c.Leaf.PublicKeyAlgorithm {
	case x509.ECDSA:
		return 0
	case x509.Ed25519:
		return 1
	}
	return 2
}
