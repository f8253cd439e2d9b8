// Command anyfront is the anycast DNS load balancer daemon.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/anyfront/anyfront/config"
)

// version is set by the build (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("anyfront", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/anyfront/anyfront.yaml", "configuration file")
	check := fs.Bool("check", false, "validate the configuration and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error; overrides the config's log.level")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile to this file until exit (for bench/)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "anyfront %s\n", version)
		return 0
	}

	cfg, err := config.Load(*cfgPath)
	if err == nil {
		// The files the config names are checked here too, so that what
		// -check passes also starts (systemd's ExecStartPre relies on it).
		err = checkFiles(cfg)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *check {
		fmt.Fprintf(stdout, "%s: ok\n", *cfgPath)
		return 0
	}

	level, err := newLogLevel(fs, *logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "-log-level: %v\n", err)
		return 2
	}
	log := newLogger(stderr, cfg.Log, level)

	d, err := newDaemon(cfg, log)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	d.level = level
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Error("cpuprofile", "err", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Error("cpuprofile", "err", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := d.run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("stopped", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}
