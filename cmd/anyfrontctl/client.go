package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
)

// maxAnswerBytes bounds how much of an answer is read: a backends list of
// thousands of entries fits, a misdirected -admin URL does not flood memory.
const maxAnswerBytes = 16 << 20

// maxTokenFileBytes matches the server's own bound on the token file.
const maxTokenFileBytes = 4 << 10

// client talks to one admin API.
type client struct {
	base      string
	tokenFile string
	json      bool
	http      *http.Client
}

func newClient(o options) (*client, error) {
	base := strings.TrimRight(o.admin, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base // "127.0.0.1:8053" is what people type
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("-admin %q: want a URL like %s", o.admin, defaultAdmin)
	}
	if o.timeout <= 0 {
		return nil, fmt.Errorf("-timeout %v: must be positive", o.timeout)
	}
	tlsCfg, err := clientTLS(u.Scheme, o)
	if err != nil {
		return nil, err
	}
	return &client{
		base:      base,
		tokenFile: o.tokenFile,
		json:      o.json,
		http: &http.Client{
			Timeout: o.timeout,
			// Straight to the admin API: no HTTP_PROXY, which would see
			// the bearer token; one request per run, so no keep-alive.
			Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, TLSClientConfig: tlsCfg},
			// A redirect would re-send the request elsewhere; the admin
			// API never redirects its own calls.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

func (c *client) close() { c.http.CloseIdleConnections() }

// do runs one command and returns the exit code.
func (c *client) do(cmd command, stdout, stderr io.Writer) int {
	var body io.Reader
	if cmd.body != "" {
		body = strings.NewReader(cmd.body)
	}
	req, err := http.NewRequest(cmd.method, c.base+cmd.path, body)
	if err != nil {
		fmt.Fprintf(stderr, "anyfrontctl: %v\n", err)
		return exitUsage
	}
	req.Header.Set("User-Agent", "anyfrontctl")
	req.Header.Set("Accept", "application/json")
	if cmd.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	// Once any token is configured reads need one too, so the token goes
	// with every call; the read token (admin.read_token_file) is enough
	// for what does not change anything.
	if c.tokenFile != "" {
		tok, err := readToken(c.tokenFile)
		if err != nil {
			fmt.Fprintf(stderr, "anyfrontctl: -token-file: %v\n", err)
			return exitFailed
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := c.http.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "anyfrontctl: cannot reach the admin API at %s: %v%s\n", c.base, unwrapURLError(err), tlsHint(err))
		return exitUnreachable
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes))
	if err != nil {
		fmt.Fprintf(stderr, "anyfrontctl: reading the answer from %s: %v\n", c.base, unwrapURLError(err))
		return exitUnreachable
	}
	if c.json {
		// The API's JSON, error answers included, for scripts; the
		// human message still goes to stderr below.
		stdout.Write(raw)
		if len(raw) > 0 && raw[len(raw)-1] != '\n' {
			fmt.Fprintln(stdout)
		}
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		c.explain(stderr, cmd, res.StatusCode, raw)
		return exitFailed
	}
	if c.json {
		return exitOK
	}
	if err := cmd.show(stdout, raw); err != nil {
		fmt.Fprintf(stderr, "anyfrontctl: unexpected answer from %s: %v\n", c.base, err)
		return exitFailed
	}
	return exitOK
}

// apiError is the admin API's error body.
type apiError struct {
	Error  string   `json:"error"`
	Errors []string `json:"errors"`
}

// explain prints a refused or failed call in words an operator acts on.
func (c *client) explain(stderr io.Writer, cmd command, code int, raw []byte) {
	var e apiError
	if json.Unmarshal(raw, &e) != nil || e.Error == "" {
		// Not the admin API (a proxy, another service on the port).
		snippet := strings.TrimSpace(string(raw))
		if len(snippet) > 200 {
			snippet = snippet[:200] + "..."
		}
		if code == http.StatusBadRequest && strings.Contains(snippet, "HTTP request to an HTTPS server") {
			fmt.Fprintf(stderr, "anyfrontctl: the admin API at %s speaks HTTPS (admin.tls): use -admin https://... with -cacert FILE\n", c.base)
			return
		}
		fmt.Fprintf(stderr, "anyfrontctl: %s %s: HTTP %d from %s (is that the anyfront admin API?): %s\n",
			cmd.method, cmd.path, code, c.base, snippet)
		return
	}
	switch {
	case code == http.StatusUnauthorized && c.tokenFile == "":
		fmt.Fprintln(stderr, "anyfrontctl: unauthorized: check -token-file (none given; this node needs a token: the read token for reads, the operate token for changes)")
	case code == http.StatusUnauthorized:
		fmt.Fprintf(stderr, "anyfrontctl: unauthorized: check -token-file (the token in %s was refused)\n", c.tokenFile)
	case code == http.StatusBadRequest && len(e.Errors) > 0:
		fmt.Fprintf(stderr, "anyfrontctl: reload rejected: %s; the running config stays:\n", e.Error)
		for _, line := range e.Errors {
			fmt.Fprintln(stderr, line)
		}
	case code == http.StatusForbidden && cmd.mutating:
		fmt.Fprintf(stderr, "anyfrontctl: forbidden: %s\n", e.Error)
	default:
		fmt.Fprintf(stderr, "anyfrontctl: %s\n", e.Error)
	}
}

// readToken reads and trims the token file.
func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFileBytes+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxTokenFileBytes {
		return "", fmt.Errorf("%s: larger than %d bytes", path, maxTokenFileBytes)
	}
	tok := string(bytes.TrimSpace(b))
	if tok == "" {
		return "", fmt.Errorf("%s: empty", path)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		// The server refuses such a file too; without this check the
		// header would be refused by net/http with a message about the
		// network, not the file.
		return "", fmt.Errorf("%s: the token must be a single word", path)
	}
	return tok, nil
}

// unwrapURLError drops net/http's `Get "URL": ` prefix: the message
// already names the URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

func pathEscape(s string) string  { return url.PathEscape(s) }
func queryEscape(s string) string { return url.QueryEscape(s) }

func parseWeight(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("weight %q: want a whole number of at least 1", s)
	}
	return n, nil
}
