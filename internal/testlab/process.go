package testlab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// ErrExited is returned when a signal is sent to a process that has already
// been reaped: its PID may belong to someone else by now, so nothing is sent.
var ErrExited = errors.New("process has exited")

// Proc is one child process the lab started. It is always stopped by PID
// (never by name), and only while it has not been reaped, so a recycled PID is
// never signalled by mistake.
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been reaped
	err  error         // Wait's result; read only after done is closed
}

// StartProc starts path with args, its stdout and stderr appended to out.
func StartProc(path string, args []string, out *os.File) (*Proc, error) {
	cmd := exec.Command(path, args...)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// A process group of its own: a Ctrl-C at the terminal reaches only
		// the demo, which then stops its children in order, instead of every
		// process receiving SIGINT at once.
		Setpgid: true,
		// When the test binary dies without running its cleanups (go test
		// -timeout panics, SIGKILL), the kernel kills the child too, so no
		// resolver is left holding a port. The kernel sends it when the
		// *thread* that started the child ends, so children are started
		// from one thread kept for the life of the process (StartCmd).
		Pdeathsig: syscall.SIGKILL,
	}
	if err := StartCmd(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	p := &Proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// spawnReqs feeds the spawner: one goroutine locked to its OS thread for
// the life of the process, in the namespace the process started in.
var (
	spawnOnce sync.Once
	spawnReqs chan spawnReq
)

type spawnReq struct {
	cmd  *exec.Cmd
	errc chan error
}

// StartCmd starts cmd from a thread that lives as long as the process, so
// a Pdeathsig in cmd.SysProcAttr fires only when the process itself dies,
// never because the goroutine that asked happened to run on a thread that
// a namespace helper later let end (Go ends a thread whose goroutine exits
// locked to it).
func StartCmd(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread stays
			for r := range spawnReqs {
				r.errc <- r.cmd.Start()
			}
		}()
	})
	errc := make(chan error, 1)
	spawnReqs <- spawnReq{cmd: cmd, errc: errc}
	return <-errc
}

// PID returns the process ID.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has been reaped.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process while it has not been reaped. Only the
// goroutine in StartProc reaps it, so the PID is still ours here.
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return ErrExited
	}
	if err := syscall.Kill(p.PID(), sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to pid %d: %w", sig, p.PID(), err)
	}
	return nil
}

// Done is closed once the process has been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit as exec.Cmd.Wait reported it: nil before
// Done is closed, and nil for an exit status of 0.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Kill sends SIGKILL (which also ends a SIGSTOPped process) and waits until
// the process has been reaped.
func (p *Proc) Kill() {
	_ = p.Signal(syscall.SIGKILL)
	<-p.done
}
