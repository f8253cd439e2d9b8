package anycastlab

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/internal/testlab/birdlab"
)

var update = flag.Bool("update", false, "rewrite the lab's golden files under testdata/")

// labDocDir stands for the lab's temp dir in the golden node config and in
// docs/lab.md.
const labDocDir = "/tmp/anyfront-lab-123456789"

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (create it with go test ./internal/testlab/anycastlab -run Lab -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (refresh with -update if intended); got:\n%s", path, got)
	}
}

// docLab is a lab as make lab builds it, not started: what the golden files
// and docs/lab.md show.
func docLab() *Lab {
	return &Lab{Dir: labDocDir, opts: Options{Prefix: "aflab", Nodes: 2, HealthCheck: DefaultHealthCheck,
		WithdrawAfter: 2 * time.Second, DrainGrace: 10 * time.Second}}
}

// TestLabGolden pins the router's BIRD config and a node's anyfront config,
// checks that the node config is valid and that docs/lab.md shows it as
// generated.
func TestLabGolden(t *testing.T) {
	bird, err := birdlab.Config(labBirdOptions(2))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "lab-bird.conf", bird)

	n1 := newNode(docLab(), 1)
	cfg := n1.config()
	golden(t, "lab-n1.yaml", cfg)

	dir := t.TempDir()
	path := filepath.Join(dir, "n1.yaml")
	tok := filepath.Join(dir, "n1.token")
	if err := os.WriteFile(tok, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(cfg, n1.TokenFile, tok)), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatalf("the lab's node config does not load: %v", err)
	}
	if c.BGP == nil || len(c.BGP.Announce) != 2 || c.BGP.Drain.Grace != 10*time.Second || len(c.Listen) != 2 {
		t.Errorf("loaded: listen %v bgp %+v", c.Listen, c.BGP)
	}

	doc, err := os.ReadFile("../../../docs/lab.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{strings.TrimSpace(cfg), "merge paths on;", "(65535, 0) ~ bgp_community then bgp_local_pref = 0;"} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/lab.md does not show, as generated:\n%s", want)
		}
	}
}

func TestLabAddresses(t *testing.T) {
	r4, n4, r6, n6 := labNodeNet(2)
	if r4.String() != "198.51.100.5/30" || n4.String() != "198.51.100.6/30" || r6.String() != "2001:db8:102::1/64" || n6.String() != "2001:db8:102::2/64" {
		t.Errorf("node 2: %v %v %v %v", r4, n4, r6, n6)
	}
	r4, n4, _, _ = labNodeNet(labMaxNodes)
	if !r4.Masked().Contains(n4.Addr()) || n4.Addr().As4()[3] >= 255 {
		t.Errorf("last node: %v %v", r4, n4)
	}
	if _, err := New(Options{Prefix: "x", Nodes: labMaxNodes + 1, Anyfront: "a"}); err == nil {
		t.Error("too many nodes accepted")
	}
	if _, err := New(Options{Prefix: "much-too-long", Anyfront: "a"}); err == nil {
		t.Error("long prefix accepted")
	}
}

func TestSummarize(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	rs := []StreamQuery{
		{Sent: at(0), Node: "n1"},
		{Sent: at(10), Node: "n2"},
		{Sent: at(20), Err: "SERVFAIL"},
		{Sent: at(30)}, // pending: not counted
		{Sent: at(500), Err: "timeout"},
		{Sent: at(600), Node: "n2"},
	}
	s := Summarize(rs, t0, time.Time{})
	if s.Sent != 5 || s.Failed != 2 || s.ByNode["n1"] != 1 || s.ByNode["n2"] != 2 || s.Window() != 480*time.Millisecond {
		t.Errorf("%s window %v", s, s.Window())
	}
	if s := Summarize(rs, at(10), at(500)); s.Sent != 2 || s.Failed != 1 {
		t.Errorf("window [10ms, 500ms): %s", s)
	}
	if s := Summarize(rs, at(550), time.Time{}); s.Window() != 0 || s.Failed != 0 {
		t.Errorf("no failures: %s", s)
	}
}

// TestLabTornDownOnError: a lab whose nodes cannot start leaves nothing
// behind (namespaces, links, processes), as make lab promises on error.
func TestLabTornDownOnError(t *testing.T) {
	testlab.RequireRoot(t)
	for _, b := range []string{"ip", "bird", "birdc", "unbound", "unbound-control"} {
		testlab.RequireBinary(t, b)
	}
	prefix := testlab.LabPrefix(t)
	_, err := New(Options{Prefix: prefix, Anyfront: "/bin/false", Dir: t.TempDir(), Logf: t.Logf})
	if err == nil || !strings.Contains(err.Error(), "anyfront exited during start") {
		t.Fatalf("want a start error, got %v", err)
	}
	var host *testlab.Netns // nil: the test's own namespace
	out, _ := host.IP("netns", "list")
	if regexp.MustCompile(`(?m)^` + prefix).MatchString(out) {
		t.Errorf("namespaces left behind:\n%s", out)
	}
	out, _ = host.IP("-o", "link", "show")
	if strings.Contains(out, prefix) {
		t.Errorf("links left behind:\n%s", out)
	}
	// TestMain fails the run if a bird or unbound is still running.
}
