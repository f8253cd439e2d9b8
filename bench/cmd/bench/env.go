package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
)

// env describes the machine and the software measured, for the report.
type env struct {
	nproc                            int
	cpuModel, kernel                 string
	dnsdist, unbound, dnsperf, goVer string
	anyfront                         string // git commit of the tree, and whether it had changes
}

// collectEnv reads what it can; a missing piece reads "unknown" rather than
// failing a run that has already taken minutes.
func collectEnv(dnsdistBin, anyfrontSum string) env {
	e := env{nproc: runtime.NumCPU(), goVer: runtime.Version(), cpuModel: "unknown", kernel: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := regexp.MustCompile(`(?m)^model name\s*:\s*(.+)$`).FindSubmatch(b); m != nil {
			e.cpuModel = strings.TrimSpace(string(m[1]))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.kernel = strings.TrimSpace(string(b))
	}
	e.dnsdist = versionOf(dnsdistBin, []string{"--version"}, `dnsdist (\S+)`)
	if p, err := testlab.LookBinary("unbound"); err == nil {
		e.unbound = versionOf(p, []string{"-V"}, `Version (\S+)`)
	}
	if p, err := testlab.LookBinary("dnsperf"); err == nil {
		e.dnsperf = versionOf(p, []string{"-h"}, `Version (\S+)`)
	}
	e.anyfront = "unknown"
	if rev := gitOutput("rev-parse", "--short", "HEAD"); rev != "" {
		e.anyfront = "commit " + rev
		if gitOutput("status", "--porcelain", "--untracked-files=no") != "" {
			e.anyfront += " with uncommitted changes"
		}
	}
	if anyfrontSum != "" {
		e.anyfront += ", binary sha256 " + anyfrontSum
	}
	return e
}

// copyBinary copies the executable src into dir and returns the copy's
// path and the first 12 hex digits of its SHA-256.
func copyBinary(src, dir string) (string, string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", "", err
	}
	defer in.Close()
	dst := filepath.Join(dir, filepath.Base(src))
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return "", "", err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h), in); err != nil {
		out.Close()
		return "", "", err
	}
	if err := out.Close(); err != nil {
		return "", "", err
	}
	return dst, hex.EncodeToString(h.Sum(nil))[:12], nil
}

// versionOf runs bin args and returns the first submatch of pattern in its
// output (stdout and stderr: dnsperf -h prints to stderr).
func versionOf(bin string, args []string, pattern string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if m := regexp.MustCompile(pattern).FindSubmatch(out); m != nil {
		return string(m[1])
	}
	return "unknown"
}

func gitOutput(args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", args...).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
