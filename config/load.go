package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// maxFileSize bounds how much of a config file is read, so a path pointing
// at a device or a huge file fails fast instead of eating memory.
const maxFileSize = 16 << 20

// Load reads the YAML file at path, fills defaults and validates it. On
// failure the error is an *Errors listing every problem found.
func Load(path string) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		msg := err.Error()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			msg = pe.Err.Error()
		}
		return nil, &Errors{List: []Error{{File: path, Msg: "cannot read: " + msg, cause: err}}}
	}
	return Parse(path, data)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	return data, nil
}

// Parse decodes, defaults and validates config text held in memory; file
// names it in messages, and relative paths in the config (token_file, TLS
// files) are taken from file's directory. On failure the error is an
// *Errors listing every problem found.
func Parse(file string, data []byte) (*Config, error) {
	d := &decoder{file: file, dir: filepath.Dir(file)}
	var cfg *Config
	if root, ok := d.document(data); ok {
		cfg = d.config(root)
	}
	if len(d.errs) > 0 {
		slices.SortStableFunc(d.errs, func(a, b Error) int {
			if a.Line != b.Line {
				return a.Line - b.Line
			}
			return a.col - b.col
		})
		return nil, &Errors{List: d.errs}
	}
	return cfg, nil
}

// yamlLine pulls the line out of yaml.v3's syntax errors, which come as
// text ("yaml: line 3: did not find expected key").
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses the text into a node tree. An empty file is an empty
// mapping, so it gets the same "no pools" message as any other config.
func (d *decoder) document(data []byte) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) || (err == nil && len(doc.Content) == 0) {
		return &yaml.Node{Kind: yaml.MappingNode, Line: 1}, true
	}
	if err != nil {
		d.yamlError(err, data)
		return nil, false
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		d.errorAt(extra.Line, "only one YAML document is allowed; remove the second \"---\"")
	case !errors.Is(err, io.EOF):
		d.yamlError(err, data)
	}
	root := resolve(doc.Content[0])
	if isNull(root) {
		return &yaml.Node{Kind: yaml.MappingNode, Line: root.Line}, true
	}
	return root, true
}

func (d *decoder) yamlError(err error, data []byte) {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		d.errorAt(line, "invalid YAML: %s", m[2])
		return
	}
	// yaml.v3 gives no line for bad bytes (control characters, invalid
	// UTF-8): every error still carries one, that of the first such byte.
	d.errorAt(badByteLine(data), "invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))
}

// badByteLine returns the line of the first byte YAML does not allow, or 1.
func badByteLine(data []byte) int {
	line := 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == '\n':
			line++
		case r == utf8.RuneError && size == 1, r < 0x20 && r != '\t' && r != '\r', r == 0x7f:
			return line
		}
		i += size
	}
	return 1
}

// config decodes the top level. Pools are decoded before rules and bgp so
// that references to them can be checked whatever order the file uses.
func (d *decoder) config(root *yaml.Node) *Config {
	cfg := &Config{
		File:   d.file,
		Listen: defaultListeners(),
		ACL:    defaultACL(),
		Proxy:  defaultProxy(),
		Pools:  map[string]*Pool{},
		Admin:  Admin{Listen: defaultAdminListen},
		Log:    defaultLog(),
		Top:    defaultTop(),
		Node:   defaultNode(),
	}
	f, ok := d.fields(root, "", "listen", "acl", "proxy", "pools", "rules", "dynamic_blocks", "admin", "bgp", "xdp",
		"log", "query_log", "top", "node")
	if !ok {
		return cfg
	}
	if n := f.get("listen"); n != nil {
		cfg.Listen = d.listeners(n)
	}
	if acl, present := each(f, "acl", d.prefix); present {
		cfg.ACL = acl
	}
	if n := f.get("proxy"); n != nil {
		d.proxy(n, &cfg.Proxy)
	}
	d.pools(f, cfg)
	if n := f.get("rules"); n != nil {
		cfg.Rules = d.rules(n, cfg)
	}
	if n := f.get("dynamic_blocks"); n != nil {
		cfg.DynBlocks = d.dynBlocks(n, f.keyLine("dynamic_blocks"))
	}
	if n := f.get("admin"); n != nil {
		d.admin(n, &cfg.Admin)
	}
	if n := f.get("node"); n != nil {
		d.node(n, f.keyLine("node"), &cfg.Node)
	}
	if n := f.get("bgp"); n != nil {
		cfg.BGP = d.bgp(n, f.keyLine("bgp"), cfg)
	}
	if n := f.get("xdp"); n != nil {
		cfg.XDP = d.xdp(n, f.keyLine("xdp"))
	}
	// XDP answers only for the pool queries reach when no rule sends them
	// elsewhere (it runs no rules): another pool's xdp_entries would
	// silently do nothing.
	if def := cfg.DefaultPool(); def != nil {
		for _, name := range cfg.PoolNames {
			if p := cfg.Pools[name]; p != def && p.Cache.XDPEntries > 0 {
				d.errorAt(p.Line, "pools.%s.cache: xdp_entries only applies to the default pool (%s): XDP answers only the queries no rule sends to another pool", name, def.Name)
			}
		}
	}
	if n := f.get("log"); n != nil {
		d.logSection(n, &cfg.Log)
	}
	if n := f.get("query_log"); n != nil {
		cfg.QueryLog = d.queryLog(n, f.keyLine("query_log"))
	}
	if n := f.get("top"); n != nil {
		d.top(n, &cfg.Top)
	}
	return cfg
}

// enum stores key's value when it is one of valid; what names the kind of
// value in the message, which lists the valid ones.
func (f fieldSet) enum(key, what string, valid []string, dst *string) bool {
	var s string
	if !f.str(key, &s) {
		return false
	}
	if !slices.Contains(valid, s) {
		f.d.errorf(f.get(key), "%s: unknown %s %q (valid: %s)", f.at(key), what, s, strings.Join(valid, ", "))
		return false
	}
	*dst = s
	return true
}

// transports says which sockets a protocol binds, to tell a clash (two
// do53 on one address) from a legal pair (dot on TCP 853, doq on UDP 853).
var transports = map[string]struct{ udp, tcp bool }{
	"do53": {true, true}, "dot": {false, true}, "doh": {false, true}, "doq": {true, false},
}

func (d *decoder) listeners(n *yaml.Node) []Listen {
	items, ok := d.list(n, "listen")
	if !ok {
		return nil
	}
	if len(items) == 0 {
		d.errorf(n, "listen: needs at least one address (leave the key out to listen on %s)", defaultListen)
	}
	type bound struct {
		line     int
		udp, tcp bool
	}
	seen := map[string][]bound{}
	var out []Listen
	for i, it := range items {
		where := index("listen", i)
		f, ok := d.fields(it, where, "address", "protocol", "tls", "path", "proxy_protocol", "proxy_protocol_from")
		if !ok {
			continue
		}
		l := Listen{Protocol: defaultProtocol, Line: it.Line}
		addrOK := false
		if a := f.require("address"); a != nil {
			l.Address, addrOK = d.addrPort(a, f.at("address"), true)
		}
		protoOK := f.get("protocol") == nil || f.enum("protocol", "protocol", protocols, &l.Protocol)
		if t := f.get("tls"); t != nil {
			l.TLS = d.tls(t, f.at("tls"), true)
			if l.Protocol == "do53" {
				d.errorf(t, "%s: tls is only used by dot, doh and doq", f.at("tls"))
			}
		} else if protoOK && l.Protocol != "do53" {
			d.errorAt(f.line, "%s: protocol %s needs tls: {cert, key}", where, l.Protocol)
		}
		if protoOK {
			d.listenExtras(f, &l)
		}
		if addrOK && protoOK && l.Address.Port() != 0 {
			key, tr := l.Address.String(), transports[l.Protocol]
			for _, b := range seen[key] {
				if (b.udp && tr.udp) || (b.tcp && tr.tcp) {
					d.errorf(f.get("address"), "%s: duplicate listen address %s (first at line %d)", f.at("address"), key, b.line)
					break
				}
			}
			seen[key] = append(seen[key], bound{l.Line, tr.udp, tr.tcp})
		}
		out = append(out, l)
	}
	return out
}

// defaultDoHPath is RFC 8484's example path, which every client defaults to.
const defaultDoHPath = "/dns-query"

// listenExtras decodes the keys only some protocols use: the DoH path and
// PROXY protocol.
func (d *decoder) listenExtras(f fieldSet, l *Listen) {
	if l.Protocol == "doh" {
		l.Path = defaultDoHPath
	}
	if n := f.get("path"); n != nil {
		var s string
		switch {
		case l.Protocol != "doh":
			d.errorf(n, "%s: path is only used by doh", f.at("path"))
		case f.str("path", &s) && (!strings.HasPrefix(s, "/") || strings.ContainsAny(s, "?# \t")):
			d.errorf(n, "%s: expected an absolute URL path like /dns-query, got %q", f.at("path"), s)
		default:
			l.Path = s
		}
	}
	f.bool("proxy_protocol", &l.ProxyProtocol)
	from, fromSet := each(f, "proxy_protocol_from", d.prefix)
	l.ProxyProtocolFrom = from
	switch {
	case l.ProxyProtocol && l.Protocol == "doq":
		d.errorf(f.get("proxy_protocol"), "%s: PROXY protocol is only served on stream transports (do53's TCP side, dot, doh), not doq", f.at("proxy_protocol"))
	case l.ProxyProtocol && len(from) == 0 && !fromSet:
		d.errorf(f.get("proxy_protocol"), "%s: needs proxy_protocol_from: [CIDR, ...], the load balancers allowed to send the header", f.at("proxy_protocol"))
	case l.ProxyProtocol && len(from) == 0:
		d.errorf(f.get("proxy_protocol_from"), "%s: needs at least one CIDR", f.at("proxy_protocol_from"))
	case !l.ProxyProtocol && fromSet:
		d.errorf(f.get("proxy_protocol_from"), "%s: only used with proxy_protocol: true", f.at("proxy_protocol_from"))
	}
}

// maxCertPairs bounds a listener's certificates: every handshake looks
// through them, and an ECDSA and an RSA pair (per name) is all anyone needs.
const maxCertPairs = 8

// tls decodes {cert, key}; a listener's (listener set) may also have more
// pairs and a ticket key file, which the admin API has no use for.
func (d *decoder) tls(n *yaml.Node, where string, listener bool) *TLS {
	known := []string{"cert", "key"}
	if listener {
		known = append(known, "certs", "ticket_key_file")
	}
	f, ok := d.fields(n, where, known...)
	if !ok {
		return nil
	}
	t := &TLS{Line: n.Line}
	if c := f.require("cert"); c != nil {
		t.Cert, _ = d.path(c, f.at("cert"))
	}
	if k := f.require("key"); k != nil {
		t.Key, _ = d.path(k, f.at("key"))
	}
	if items, ok := f.list("certs"); ok {
		for i, it := range items {
			if p, ok := d.certPair(it, index(f.at("certs"), i)); ok {
				t.Certs = append(t.Certs, p)
			}
		}
	}
	if len(t.Certs)+1 > maxCertPairs {
		d.errorf(f.get("certs"), "%s: at most %d certificates per listener, cert/key included", f.at("certs"), maxCertPairs)
	}
	if k := f.get("ticket_key_file"); k != nil {
		t.TicketKeyFile, _ = d.path(k, f.at("ticket_key_file"))
	}
	return t
}

// certPair decodes one item of tls.certs: {cert, key}.
func (d *decoder) certPair(n *yaml.Node, where string) (CertPair, bool) {
	f, ok := d.fields(n, where, "cert", "key")
	if !ok {
		return CertPair{}, false
	}
	p := CertPair{Line: n.Line}
	c, k := f.require("cert"), f.require("key")
	if c == nil || k == nil {
		return p, false
	}
	var okC, okK bool
	p.Cert, okC = d.path(c, f.at("cert"))
	p.Key, okK = d.path(k, f.at("key"))
	return p, okC && okK
}

func (d *decoder) proxy(n *yaml.Node, p *Proxy) {
	f, ok := d.fields(n, "proxy", "deadline", "timeout", "min_timeout", "retries", "workers", "max_inflight", "tcp")
	if !ok {
		return
	}
	f.duration("deadline", true, &p.Deadline)
	f.duration("timeout", true, &p.Timeout)
	f.duration("min_timeout", true, &p.MinTimeout)
	f.int("retries", 0, maxRetries, &p.Retries)
	switch {
	case p.MinTimeout > p.Timeout:
		d.errorAt(f.keyLine("min_timeout"), "proxy: min_timeout (%s) must not exceed timeout (%s)", p.MinTimeout, p.Timeout)
	case p.Timeout > p.Deadline && f.get("deadline") != nil:
		// Without an explicit deadline an older file's longer timeout
		// is kept: the deadline then cuts its attempts short.
		d.errorAt(f.keyLine("timeout"), "proxy: timeout (%s), one attempt's ceiling, must not exceed deadline (%s), the whole query's budget", p.Timeout, p.Deadline)
	}
	f.int("workers", 0, noMax, &p.Workers)
	f.int("max_inflight", 1, maxInflight, &p.MaxInflight)
	t := f.get("tcp")
	if t == nil {
		return
	}
	tf, ok := d.fields(t, "proxy.tcp", "max_conns", "max_conns_per_client", "idle_timeout",
		"max_conn_time", "max_queries_per_conn", "max_inflight_per_conn", "backend_conns")
	if !ok {
		return
	}
	// Zero is refused rather than read as "unlimited": every bound is explicit.
	tf.int("max_conns", 1, noMax, &p.TCP.MaxConns)
	tf.int("max_conns_per_client", 1, noMax, &p.TCP.MaxConnsPerClient)
	tf.duration("idle_timeout", true, &p.TCP.IdleTimeout)
	tf.duration("max_conn_time", true, &p.TCP.MaxConnTime)
	tf.int("max_queries_per_conn", 1, noMax, &p.TCP.MaxQueriesPerConn)
	tf.int("max_inflight_per_conn", 1, noMax, &p.TCP.MaxInflightPerConn)
	tf.int("backend_conns", 1, noMax, &p.TCP.BackendConns)
}

func (d *decoder) admin(n *yaml.Node, a *Admin) {
	f, ok := d.fields(n, "admin", "listen", "token_file", "read_token_file", "fleet_file", "tls")
	if !ok {
		return
	}
	if l := f.get("listen"); l != nil {
		if ap, ok := d.addrPort(l, f.at("listen"), true); ok {
			a.Listen = ap.String()
		}
	}
	if t := f.get("token_file"); t != nil {
		a.TokenFile, _ = d.path(t, f.at("token_file"))
		a.TokenFileLine = t.Line
	}
	if t := f.get("read_token_file"); t != nil {
		a.ReadTokenFile, _ = d.path(t, f.at("read_token_file"))
		a.ReadTokenFileLine = t.Line
	}
	if t := f.get("fleet_file"); t != nil {
		a.FleetFile, _ = d.path(t, f.at("fleet_file"))
	}
	if t := f.get("tls"); t != nil {
		a.TLS = d.tls(t, f.at("tls"), false)
	}
}
