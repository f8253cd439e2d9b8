package udpsock

import (
	"runtime"
	"testing"
)

// TestWaitBudget: raw waits are claimed only while each leaves a P per
// CPU the program needs; a nil budget never claims one.
func TestWaitBudget(t *testing.T) {
	var none *WaitBudget
	if none.begin() {
		t.Fatal("a nil budget claimed a raw wait")
	}
	procs := runtime.GOMAXPROCS(0)
	w := &WaitBudget{Base: procs - 2}
	if !w.begin() || !w.begin() {
		t.Fatal("two spare Ps, but a raw wait was refused")
	}
	if w.begin() {
		t.Fatal("a third raw wait with two spare Ps")
	}
	w.waiters.Add(-1) // one wait ends
	if !w.begin() {
		t.Fatal("a P came free, but the wait was refused")
	}
	if (&WaitBudget{Base: procs}).begin() {
		t.Fatal("no spare P, but a raw wait was claimed")
	}
}
