// Command anyfrontctl is the operator's CLI over anyfront's admin API: list
// backends, drain and undrain backends or the whole node, reload the
// config, purge the cache, show BGP status.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/anyfront/anyfront/internal/fleet"
)

// Exit codes, so scripts can tell "the API said no" from "no API".
const (
	exitOK          = 0
	exitFailed      = 1 // the API refused or failed the call (401, 404, invalid config, ...)
	exitUsage       = 2 // bad command line
	exitUnreachable = 3 // no admin API answered at the URL
)

const defaultAdmin = "http://127.0.0.1:8053"

// version is set by the build (-ldflags "-X main.version=...").
var version = "dev"

const usage = `usage: anyfrontctl [flags] COMMAND [ARGS]

commands:
  backends              list backends: health, admin state, load
  drain NAME            send no new queries to backend NAME (in-flight ones finish)
  undrain NAME          give NAME back to health checks (admin state auto)
  up NAME               force NAME in, whatever its health
  down NAME             force NAME out
  weight NAME N         set NAME's weight to N until the next reload
  node [status]         show the node's drain state
  node drain            graceful BGP drain of this node
  node undrain          announce again
  bgp                   BGP peers and prefixes
  reload                reload the config file (invalid files are rejected)
  cache purge [SUFFIX]  purge the cache, or only names under SUFFIX
  rules                 the rules with their hit counts
  blocks                dynamic blocks in force
  blocks lift PREFIX    lift a dynamic block now
  top [N]               the busiest clients and names (needs a token)
  stats                 queries/s, SERVFAIL and latency now
  status                with -fleet: one row per node of the fleet file
  completion bash       print the bash completion script

fleet (docs/deploy.md):
  -fleet FILE status              every node of the fleet file
  -fleet FILE -node NAME COMMAND  run COMMAND on that node

flags (before or after the command):
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the global flags.
type options struct {
	admin     string
	tokenFile string
	json      bool
	timeout   time.Duration
	// cacert and insecure are for an admin API served over HTTPS
	// (admin.tls): trust this certificate, or skip verification.
	cacert   string
	insecure bool
	// fleet and node aim the command at a fleet file's nodes.
	fleet string
	node  string
}

// run is the whole CLI; main only passes os.Args and exits with its code.
func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("anyfrontctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.admin, "admin", envOr("ANYFRONT_ADMIN", defaultAdmin), "admin API base URL (env ANYFRONT_ADMIN)")
	fs.StringVar(&o.tokenFile, "token-file", os.Getenv("ANYFRONT_TOKEN_FILE"), "file holding the admin bearer token, needed by changing commands (env ANYFRONT_TOKEN_FILE)")
	fs.BoolVar(&o.json, "json", false, "print the API's JSON instead of a table")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to wait for the admin API")
	fs.StringVar(&o.cacert, "cacert", os.Getenv("ANYFRONT_CACERT"), "PEM file of the certificate (or its CA) to trust for an https:// admin URL (env ANYFRONT_CACERT)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.StringVar(&o.fleet, "fleet", os.Getenv("ANYFRONT_FLEET"), "fleet file (nodes: [{name, admin, token_file, cacert}]) for status, or with -node (env ANYFRONT_FLEET)")
	fs.StringVar(&o.node, "node", "", "with -fleet: run the command on this node of the fleet file")
	fs.BoolVar(&o.insecure, "insecure", false, "https:// admin URL: do not verify the server's certificate (the token is still encrypted, but could go to an impostor)")
	printUsage := func(w io.Writer) {
		fs.SetOutput(w)
		fmt.Fprint(w, usage)
		fs.PrintDefaults()
	}
	// flag calls Usage itself on -h and on a bad flag; run prints it
	// below, once, to stdout for -h and to stderr for a mistake.
	fs.Usage = func() {}

	// Parse flags wherever they sit, so "anyfrontctl drain r1 -json" works
	// as well as "anyfrontctl -json drain r1".
	var words []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printUsage(stdout)
				return exitOK
			}
			printUsage(stderr)
			return exitUsage
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		words, rest = append(words, rest[0]), rest[1:]
	}
	if *showVersion {
		fmt.Fprintf(stdout, "anyfrontctl %s\n", version)
		return exitOK
	}
	if len(words) == 0 {
		fmt.Fprintln(stderr, "anyfrontctl: no command")
		printUsage(stderr)
		return exitUsage
	}
	if words[0] == "help" {
		printUsage(stdout)
		return exitOK
	}
	if words[0] == "completion" {
		return completion(words, stdout, stderr)
	}
	if o.fleet != "" {
		nodes, err := fleet.Load(o.fleet)
		if err != nil {
			fmt.Fprintf(stderr, "anyfrontctl: %v\n", err)
			return exitUsage
		}
		switch {
		case o.node != "":
			n, err := fleet.Find(nodes, o.node)
			if err != nil {
				fmt.Fprintf(stderr, "anyfrontctl: %v\n", err)
				return exitUsage
			}
			o = o.forNode(n)
		case len(words) == 1 && words[0] == "status":
			return fleetStatus(o, nodes, stdout, stderr)
		default:
			fmt.Fprintln(stderr, "anyfrontctl: with -fleet, run status, or give -node NAME for any other command")
			return exitUsage
		}
	} else if o.node != "" {
		fmt.Fprintln(stderr, "anyfrontctl: -node needs -fleet FILE")
		return exitUsage
	}
	cmd, err := parseCommand(words)
	if err != nil {
		fmt.Fprintf(stderr, "anyfrontctl: %v\n", err)
		fmt.Fprintln(stderr, "run 'anyfrontctl -h' for the list of commands")
		return exitUsage
	}
	c, err := newClient(o)
	if err != nil {
		fmt.Fprintf(stderr, "anyfrontctl: %v\n", err)
		return exitUsage
	}
	defer c.close()
	return c.do(cmd, stdout, stderr)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// command is one parsed command line: the request to send and how to show
// the answer.
type command struct {
	method string
	path   string
	body   string
	// mutating calls send the token.
	mutating bool
	// show prints a successful answer as text.
	show func(w io.Writer, body []byte) error
}

// parseCommand maps the words after the flags to an API call.
func parseCommand(w []string) (command, error) {
	want := func(n int, form string) error {
		if len(w) != n {
			return fmt.Errorf("usage: anyfrontctl %s", form)
		}
		return nil
	}
	backendCall := func(action string, show func(io.Writer, []byte) error) (command, error) {
		if err := want(2, w[0]+" NAME"); err != nil {
			return command{}, err
		}
		return command{method: "POST", path: "/api/v1/backends/" + pathEscape(w[1]) + "/" + action, mutating: true, show: show}, nil
	}
	if cmd, ok, err := parseMore(w); ok {
		return cmd, err
	}
	switch w[0] {
	case "backends":
		return command{method: "GET", path: "/api/v1/backends", show: showBackends}, want(1, "backends")
	case "drain", "undrain", "up", "down":
		return backendCall(w[0], showChange)
	case "weight":
		if err := want(3, "weight NAME N"); err != nil {
			return command{}, err
		}
		n, err := parseWeight(w[2])
		if err != nil {
			return command{}, err
		}
		return command{method: "POST", path: "/api/v1/backends/" + pathEscape(w[1]) + "/weight",
			body: fmt.Sprintf(`{"weight": %d}`, n), mutating: true, show: showChange}, nil
	case "node":
		if len(w) == 1 || (len(w) == 2 && w[1] == "status") {
			return command{method: "GET", path: "/api/v1/node", show: showNode}, nil
		}
		if len(w) == 2 && (w[1] == "drain" || w[1] == "undrain") {
			return command{method: "POST", path: "/api/v1/node/" + w[1], mutating: true, show: showNode}, nil
		}
		return command{}, errors.New("usage: anyfrontctl node [status|drain|undrain]")
	case "bgp":
		return command{method: "GET", path: "/api/v1/bgp", show: showBGP}, want(1, "bgp")
	case "reload":
		return command{method: "POST", path: "/api/v1/reload", mutating: true, show: showReload}, want(1, "reload")
	case "cache":
		if len(w) < 2 || w[1] != "purge" || len(w) > 3 {
			return command{}, errors.New("usage: anyfrontctl cache purge [SUFFIX]")
		}
		path := "/api/v1/cache"
		if len(w) == 3 {
			path += "?name=" + queryEscape(w[2])
		}
		return command{method: "DELETE", path: path, mutating: true, show: showPurge}, nil
	}
	return command{}, fmt.Errorf("unknown command %q", strings.Join(w, " "))
}

// forNode is o aimed at one fleet node.
func (o options) forNode(n fleet.Node) options {
	o.admin, o.tokenFile, o.cacert = n.Admin, n.TokenFile, n.CACert
	return o
}
