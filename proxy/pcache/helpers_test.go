package pcache

import (
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/proxy/dnswire"
)

// qview is a parsed query with its key, as the proxy core keeps them.
type qview struct {
	dnswire.View
	key Key
}

// wireName is name in lowercase wire format, as Purge takes it.
func wireName(t testing.TB, name string) []byte {
	t.Helper()
	buf := make([]byte, dnswire.MaxNameLen+1)
	n, err := dns.PackDomainName(dns.Fqdn(strings.ToLower(name)), buf, 0, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}
