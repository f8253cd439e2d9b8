package policy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

// spec describes one test backend; zero values are the common case.
type spec struct {
	weight, order int
	out, latUS    int64
}

// newBackends builds backends b0, b1, ... from specs.
func newBackends(specs ...spec) []*Backend {
	bs := make([]*Backend, len(specs))
	for i, s := range specs {
		bs[i] = &Backend{Name: fmt.Sprintf("b%d", i), Weight: max(s.weight, 1), Order: s.order, Stats: &Stats{}}
		bs[i].Stats.Outstanding.Store(s.out)
		bs[i].Stats.LatencyUS.Store(s.latUS)
	}
	return bs
}

// uniform is n backends of weight 1 and no load.
func uniform(n int) []*Backend { return newBackends(make([]spec, n)...) }

func mustNew(t testing.TB, name string, bs []*Backend) Policy {
	t.Helper()
	p, err := New(name, bs)
	if err != nil {
		t.Fatalf("New(%q): %v", name, err)
	}
	return p
}

// nameHash is the hash of a distinct test qname per i.
func nameHash(i int) uint64 { return HashName(fmt.Appendf(nil, "host%d.example.", i)) }

// tally picks picks times with random hashes and counts the picks per index.
func tally(t *testing.T, p Policy, n, picks int, skip uint64) []int {
	t.Helper()
	c := make([]int, n)
	for range picks {
		i := p.Pick(rand.Uint64(), skip)
		if i < 0 || i >= n {
			t.Fatalf("Pick = %d, want an index in [0, %d)", i, n)
		}
		c[i]++
	}
	return c
}

func TestNew(t *testing.T) {
	t.Run("every listed name builds a policy", func(t *testing.T) {
		for _, name := range Names() {
			mustNew(t, name, uniform(3))
		}
	})
	t.Run("names are the six documented ones", func(t *testing.T) {
		want := []string{"roundrobin", "wrandom", "leastoutstanding", "chashed", "firstavailable", "latency"}
		if got := Names(); !slices.Equal(got, want) {
			t.Errorf("Names() = %v, want %v", got, want)
		}
	})
	t.Run("unknown name is an error listing valid names", func(t *testing.T) {
		_, err := New("random", uniform(2))
		if !errors.Is(err, ErrUnknownPolicy) {
			t.Fatalf("err = %v, want ErrUnknownPolicy", err)
		}
		for _, name := range Names() {
			if !strings.Contains(err.Error(), name) {
				t.Errorf("error %q does not list %q", err, name)
			}
		}
	})
	t.Run("backend without stats is an error", func(t *testing.T) {
		bs := uniform(2)
		bs[1].Stats = nil
		if _, err := New(RoundRobin, bs); !errors.Is(err, ErrNilBackend) {
			t.Errorf("err = %v, want ErrNilBackend", err)
		}
		if _, err := New(RoundRobin, []*Backend{nil}); !errors.Is(err, ErrNilBackend) {
			t.Errorf("err = %v, want ErrNilBackend", err)
		}
	})
	t.Run("caller may reuse its slice after New", func(t *testing.T) {
		bs := newBackends(spec{order: 2}, spec{order: 1})
		p := mustNew(t, FirstAvailable, bs)
		bs[0], bs[1] = bs[1], bs[0]
		if got := p.Pick(0, 0); got != 1 {
			t.Errorf("Pick = %d, want 1 (indexes refer to the slice as given)", got)
		}
	})
}

// mixed is a pool whose stats make every policy's choice non-trivial.
func mixed() []*Backend {
	return newBackends(
		spec{weight: 1, order: 3, out: 5, latUS: 2000},
		spec{weight: 3, order: 1, out: 0, latUS: 0},
		spec{weight: 2, order: 2, out: 900, latUS: 500},
		spec{weight: 1, order: 1, out: 2, latUS: 20000},
		spec{weight: 5, order: 0, out: 1, latUS: 1000},
	)
}

func TestEveryPolicy(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			t.Run("no backends gives -1", func(t *testing.T) {
				p := mustNew(t, name, nil)
				if got := p.Pick(nameHash(1), 0); got != -1 {
					t.Errorf("Pick = %d, want -1", got)
				}
			})
			t.Run("all skipped gives -1", func(t *testing.T) {
				p := mustNew(t, name, mixed())
				for _, skip := range []uint64{0b11111, ^uint64(0)} {
					if got := p.Pick(nameHash(1), skip); got != -1 {
						t.Errorf("Pick(skip %b) = %d, want -1", skip, got)
					}
				}
			})
			t.Run("only non-skipped backend is always picked", func(t *testing.T) {
				bs := mixed()
				p := mustNew(t, name, bs)
				for only := range bs {
					skip := uint64(0b11111) &^ (1 << only)
					for h := range 200 {
						if got := p.Pick(nameHash(h), skip); got != only {
							t.Fatalf("Pick(skip %05b) = %d, want %d", skip, got, only)
						}
					}
				}
			})
			t.Run("single backend is always picked however loaded", func(t *testing.T) {
				p := mustNew(t, name, newBackends(spec{out: 1 << 20, latUS: 1 << 20}))
				for h := range 200 {
					if got := p.Pick(nameHash(h), 0); got != 0 {
						t.Fatalf("Pick = %d, want 0", got)
					}
				}
			})
			t.Run("skipped backends are never picked", func(t *testing.T) {
				p := mustNew(t, name, mixed())
				for skip := range uint64(1<<5 - 1) { // all but the all-skipped mask
					for h := range 100 {
						got := p.Pick(nameHash(h), skip)
						if got < 0 || got >= 5 || skip&(1<<got) != 0 {
							t.Fatalf("Pick(skip %05b) = %d, want a non-skipped index", skip, got)
						}
					}
				}
			})
			t.Run("skip bits wrap at 64 backends", func(t *testing.T) {
				p := mustNew(t, name, uniform(70))
				skip := ^uint64(0) &^ (1 << 3) // leaves only indexes 3 and 67
				for h := range 200 {
					if got := p.Pick(nameHash(h), skip); got != 3 && got != 67 {
						t.Fatalf("Pick = %d, want 3 or 67", got)
					}
				}
			})
			t.Run("pick does not allocate", func(t *testing.T) {
				p := mustNew(t, name, mixed())
				var hashes [64]uint64
				for i := range hashes {
					hashes[i] = nameHash(i)
				}
				for _, skip := range []uint64{0, 0b00010, 0b10110} {
					h := 0
					allocs := testing.AllocsPerRun(1000, func() {
						h++
						p.Pick(hashes[h&63], skip)
					})
					if allocs != 0 {
						t.Errorf("Pick(skip %05b) allocates %v times", skip, allocs)
					}
				}
			})
			t.Run("concurrent picks while stats change stay valid", func(t *testing.T) {
				bs := mixed()
				p := mustNew(t, name, bs)
				var wg sync.WaitGroup
				stop := make(chan struct{})
				wg.Go(func() {
					for i := int64(0); ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						s := bs[i%5].Stats
						s.Outstanding.Add(1 - 2*(i&1))
						s.LatencyUS.Store(i % 3000)
					}
				})
				var pickers sync.WaitGroup
				for range 8 {
					pickers.Go(func() {
						for h := range 5000 {
							if got := p.Pick(uint64(h)*0x9e3779b97f4a7c15, 0b11); got < 2 || got >= 5 {
								t.Errorf("Pick = %d, want 2..4", got)
								return
							}
						}
					})
				}
				pickers.Wait()
				close(stop)
				wg.Wait()
			})
		})
	}
}

func BenchmarkPick(b *testing.B) {
	var hashes [1024]uint64
	for i := range hashes {
		hashes[i] = nameHash(i)
	}
	for _, name := range Names() {
		b.Run(name, func(b *testing.B) {
			bs := uniform(8)
			for i, bk := range bs {
				bk.Stats.Outstanding.Store(int64(i % 3))
				bk.Stats.LatencyUS.Store(int64(1000 + 100*i))
			}
			p := mustNew(b, name, bs)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p.Pick(hashes[i&1023], 0)
				i++
			}
		})
	}
}

func BenchmarkPickParallel(b *testing.B) {
	for _, name := range Names() {
		b.Run(name, func(b *testing.B) {
			p := mustNew(b, name, uniform(8))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				h := rand.Uint64()
				for pb.Next() {
					h += 0x9e3779b97f4a7c15
					p.Pick(h, 0)
				}
			})
		})
	}
}
