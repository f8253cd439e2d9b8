package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// errLine is the contract's error form: "FILE:LINE: message", LINE >= 1.
var errLine = regexp.MustCompile(`^fuzz\.yaml:([1-9][0-9]*): \S`)

// FuzzParse feeds arbitrary text to the config loader. Properties: it never
// panics; it returns either a config or an *Errors, never both or neither;
// every error names the file and a line inside it (or one past the end,
// where YAML reports an unexpected end of file) and has a message.
func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/full.yaml"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if (cfg == nil) == (err == nil) {
			t.Fatalf("config %v and error %v", cfg != nil, err)
		}
		if err == nil {
			return
		}
		var es *Errors
		if !errors.As(err, &es) || len(es.List) == 0 {
			t.Fatalf("error is not a non-empty *Errors: %T %v", err, err)
		}
		// YAML breaks lines at \r\n, \r, \n, NEL, LS and PS.
		norm := strings.NewReplacer("\r\n", "\n", "\r", "\n", "\u0085", "\n", "\u2028", "\n", "\u2029", "\n").Replace(string(data))
		lines := strings.Count(norm, "\n") + 2
		for _, e := range es.List {
			s := e.Error()
			if strings.Contains(s, "\n") {
				t.Fatalf("one error spans lines: %q", s)
			}
			if e.Line == 0 && strings.HasPrefix(e.Msg, "invalid YAML: ") {
				// BUG (see TestYAMLErrorsHaveLines): yaml.v3 errors
				// without "line N" come out without a line.
				continue
			}
			if !errLine.MatchString(s) {
				t.Fatalf("error not in FILE:LINE: message form: %q", s)
			}
			if e.Line > lines {
				t.Fatalf("error on line %d of a %d-line file: %q", e.Line, lines-1, s)
			}
		}
	})
}

// TestYAMLErrorsHaveLines: every error must be FILE:LINE: message, but
// yaml.v3 reports some syntax errors without a line ("yaml: control
// characters are not allowed", "yaml: invalid leading UTF-8 octet"), and
// decoder.yamlError (load.go) then uses line 0.
func TestYAMLErrorsHaveLines(t *testing.T) {
	for _, data := range []string{"\x00\x01", "pools: \xff\n", "a: b\n\x01\n"} {
		_, err := Parse("fuzz.yaml", []byte(data))
		var es *Errors
		if !errors.As(err, &es) {
			t.Fatalf("%q: %v", data, err)
		}
		for _, e := range es.List {
			if e.Line == 0 {
				t.Fatalf("regression (fixed bug): %q gives %q without a line: config/load.go yamlError uses line 0 when yaml.v3's message has no \"line N\"; fall back to the line of the first offending byte (or line 1)", data, e.Error())
			}
		}
	}
}

// fuzzSeeds are small configs, valid and not, that reach each decoder.
var fuzzSeeds = []string{
	"",
	"pools: {}\n",
	"pools:\n  default:\n    backends: [{name: a, address: \"127.0.0.1:1\"}]\n",
	"pools:\n  default:\n    backends: [{name: a, address: \"127.0.0.1:1\"}]\nrules:\n  - {match: {qname_suffix: [\"corp.example.\"]}, action: {refuse: true}}\n",
	"pools:\n  default:\n    backends: [{name: a, address: \"127.0.0.1:1\"}]\nproxy: {timeout: 1s, retries: 2, tcp: {max_conns: 10, idle_timeout: 2s}}\n",
	"listen: [{address: \"127.0.0.1:5300\", protocol: do53}]\nacl: [\"127.0.0.0/8\"]\n",
	"pools:\n  default:\n    backends: [{name: a, address: \"127.0.0.1:1\"}]\n    cache: {size: 100, serve_stale: 60s}\n    healthcheck: {qname: \"health.test.\", qtype: A, interval: 1s}\n",
	"a: &x [*x]\n",
	"a: &a [1,2]\nb: &b [*a,*a,*a,*a]\nc: [*b,*b,*b,*b]\n",
	"---\npools: {}\n---\npools: {}\n",
	"pools:\n\tdefault: {}\n",
	"\x00\x01",
	"pools: !!binary aGVsbG8=\n",
	"key: \"unterminated\n",
	"bgp: {asn: 65001, router_id: \"198.51.100.2\", peers: [{address: \"198.51.100.1\", asn: 65000}]}\n",
	"xdp: {interface: eth0, vips: [\"192.0.2.53:53\"], ratelimit: {qps: 1000}}\n",
}

// TestWriteFuzzSeeds writes fuzzSeeds as committed corpus files when
// ANYFRONT_WRITE_SEEDS=1; otherwise it does nothing.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("ANYFRONT_WRITE_SEEDS") != "1" {
		t.Skip("set ANYFRONT_WRITE_SEEDS=1 to rewrite testdata/fuzz seeds")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range fuzzSeeds {
		body := "go test fuzz v1\n[]byte(" + quote(s) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, "seed-"+itoa(i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range []byte(s) {
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c >= 0x7f:
			b.WriteString(`\x`)
			b.WriteByte("0123456789abcdef"[c>>4])
			b.WriteByte("0123456789abcdef"[c&15])
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
