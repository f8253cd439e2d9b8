package testlab

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// RunChildChecked runs the tests and fails the run when a test left a
// child process behind: the lab's promise is that everything it starts is
// killed by PID. name prefixes the message (the package). It returns the
// exit code for os.Exit.
func RunChildChecked(m *testing.M, name string) int {
	code := m.Run()
	if kids := childPIDs(); len(kids) > 0 {
		fmt.Fprintf(os.Stderr, "%s: child processes left running after the tests: %v\n", name, kids)
		code = 1
	}
	return code
}

// childPIDs lists this process's children from /proc.
func childPIDs() []string {
	self := strconv.Itoa(os.Getpid())
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var kids []string
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // exited meanwhile
		}
		// Fields after the parenthesised command: state, ppid, ...
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		fields := strings.Fields(rest)
		if len(fields) > 1 && fields[1] == self {
			kids = append(kids, filepath.Base(filepath.Dir(f)))
		}
	}
	return kids
}
