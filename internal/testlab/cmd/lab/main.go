// Command lab is what `make lab` runs (as root): the anycast lab in network
// namespaces, built by the same code as the e2e test TestLab. A router
// (BIRD 2, ECMP over its BGP routes, graceful shutdown honoured), two
// anyfront nodes announcing 192.0.2.53/32 and 2001:db8:53::53/128, each with
// two unbound backends, and a client. It prints what to try, runs until
// SIGINT or SIGTERM, then stops everything it started (by PID) and deletes
// the namespaces. See docs/lab.md.
//
// Usage:
//
//	go run ./internal/testlab/cmd/lab -anyfront bin/anyfront -anyfrontctl bin/anyfrontctl
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/internal/testlab/anycastlab"
)

// prefix names the lab's namespaces (aflab-rtr, aflab-n1, aflab-n2,
// aflab-cli) and links: fixed, so the printed commands always work.
const prefix = "aflab"

func main() { os.Exit(run()) }

// run does the work and returns the exit code, so that every deferred
// cleanup runs before the process exits.
func run() int {
	anyfront := flag.String("anyfront", "bin/anyfront", "path of the anyfront binary (make build writes it)")
	anyfrontctl := flag.String("anyfrontctl", "bin/anyfrontctl", "path of the anyfrontctl binary")
	grace := flag.Duration("grace", 10*time.Second, "the nodes' BGP drain grace")
	withdrawAfter := flag.Duration("withdraw-after", 2*time.Second, "the nodes' BGP withdraw_after")
	flag.Parse()

	if os.Geteuid() != 0 {
		fail("the lab creates network namespaces: run it as root (sudo make lab)")
		return 1
	}
	var bins [2]string
	for i, p := range []string{*anyfront, *anyfrontctl} {
		abs, err := filepath.Abs(p)
		if err == nil {
			_, err = os.Stat(abs)
		}
		if err != nil {
			fail("%s: %v: run make build first", p, err)
			return 1
		}
		bins[i] = abs
	}
	if err := checkNotRunning(); err != nil {
		fail("%v", err)
		return 1
	}

	// From here on a Ctrl-C is a request to stop; it is acted on once the
	// lab is built (or has failed), and the deferred Close tears it down.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)

	say("building the lab (namespaces %s-*); this takes a few seconds", prefix)
	lab, err := anycastlab.New(anycastlab.Options{
		Prefix: prefix, Anyfront: bins[0], Anyfrontctl: bins[1],
		WithdrawAfter: *withdrawAfter, DrainGrace: *grace,
		Logf: say,
	})
	if err != nil {
		if errors.Is(err, testlab.ErrNotInstalled) {
			fail("%v (make lab installs it: scripts/install-deps.sh test)", err)
		} else {
			fail("%v", err)
		}
		return 1
	}
	defer func() {
		say("tearing down: stopping every process by PID, deleting the namespaces")
		lab.Close()
		say("done")
	}()
	select {
	case sig := <-sigs:
		say("%v: stopping", sig)
		return 0
	default:
	}
	printTryLines(lab)

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	reported := map[string]bool{}
	for {
		select {
		case sig := <-sigs:
			say("%v: stopping", sig)
			return 0
		case <-tick.C:
			for _, n := range lab.Nodes {
				if n.PID() == 0 && !reported[n.Name] {
					reported[n.Name] = true
					say("anyfront %s is no longer running; its log (%s) ends:\n%s", n.Name, n.LogFile, n.LogTail(10))
				}
			}
		}
	}
}

// checkNotRunning refuses to start while another lab's namespaces have
// processes in them: building would replace them under that lab's feet.
// Namespaces left by a lab that was killed outright are empty (their
// processes die with the lab) and are replaced.
func checkNotRunning() error {
	for _, s := range []string{"rtr", "cli", "n1", "n2"} {
		name := prefix + "-" + s
		if _, err := os.Stat("/run/netns/" + name); err != nil {
			continue
		}
		out, err := exec.Command("ip", "netns", "pids", name).Output()
		if err == nil && strings.TrimSpace(string(out)) != "" {
			return fmt.Errorf("namespace %s has processes running (another make lab?): stop that lab first", name)
		}
	}
	return nil
}

func printTryLines(l *anycastlab.Lab) {
	n1, n2 := l.Nodes[0], l.Nodes[1]
	cli := "ip netns exec " + l.Client.Name
	var pids []string
	for _, u := range n1.Backends {
		pids = append(pids, fmt.Sprint(u.PID()))
	}
	kill := strings.Join(pids, " ")
	birdc := "birdc -s " + l.Bird.Socket
	fmt.Printf(`
The anycast lab is up (docs/lab.md):

  client  %[1]s      203.0.113.2, 2001:db8:113::2
  router  %[2]s      BIRD 2, AS %[3]d, ECMP over both nodes
  node n1 %[4]s       198.51.100.2, admin %[5]s, backends 127.0.0.1:5301/5302
  node n2 %[6]s       198.51.100.6, admin %[7]s, backends 127.0.0.1:5301/5302
  VIPs    192.0.2.53/32 and 2001:db8:53::53/128 announced by both nodes (AS %[8]d)

Ask the VIP from the client; the TXT answer names the node and backend, and
each dig uses a new source port, so the router's ECMP spreads them:

  for i in $(seq 8); do %[9]s dig +short @192.0.2.53 q$i.%[10]s TXT; done
  for i in $(seq 8); do %[9]s dig +short @2001:db8:53::53 q$i.%[10]s TXT; done

Watch the router (routes with their communities; the kernel's ECMP route):

  watch -n1 %[11]s show route all
  watch -n1 ip -n %[2]s route show 192.0.2.53

Drain node n1 gracefully (routes get 65535:0, then go after the grace), and back:

  %[12]s
  %[13]s
  %[14]s

Make node n1's backends hang (all queries to it fail until its route is
withdrawn, about fall x interval + timeout + withdraw_after), then recover:

  kill -STOP %[15]s
  kill -CONT %[15]s

(kill -9 %[15]s works too, but they stay dead until the next lab.)

Status of node n2:  %[16]s

Configs, tokens and logs are in %[17]s. Ctrl-C tears everything down.
`, l.Client.Name, l.Router.Name, anycastlab.RouterASN, n1.NS.Name, n1.AdminURL, n2.NS.Name, n2.AdminURL,
		anycastlab.NodeASN, cli, strings.TrimSuffix(anycastlab.WhoZone, "."), birdc,
		n1.CtlCommand("node", "drain"), n1.CtlCommand("bgp"), n1.CtlCommand("node", "undrain"),
		kill, n2.CtlCommand("backends"), l.Dir)
}

// say prints a progress line, marked as the lab's.
func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "lab: "+strings.TrimPrefix(format, "lab: ")+"\n", args...)
}

// fail prints an error line.
func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "lab: error: "+format+"\n", args...)
}
