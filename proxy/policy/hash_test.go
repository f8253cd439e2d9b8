package policy

import "testing"

func TestHashName(t *testing.T) {
	// Pinned values: chashed nodes of different releases must agree on a
	// name's backend during a rolling upgrade, so HashName must never change.
	tests := []struct {
		name string
		in   string
		want uint64
	}{
		{"presentation name", "example.com.", 0x846b325e3eb70e8a},
		{"wire-format name", "\x07example\x03com\x00", 0x11d15729ca97ac3c},
		{"empty name", "", 0xefd01f60ba992926},
	}
	for _, tt := range tests {
		t.Run(tt.name+" hash is pinned", func(t *testing.T) {
			if got := HashName([]byte(tt.in)); got != tt.want {
				t.Errorf("HashName(%q) = %#x, want %#x", tt.in, got, tt.want)
			}
		})
	}
	t.Run("0x20 mixed case hashes like lowercase", func(t *testing.T) {
		if a, b := HashName([]byte("\x07ExAmPlE\x03CoM\x00")), HashName([]byte("\x07example\x03com\x00")); a != b {
			t.Errorf("mixed case %#x != lowercase %#x", a, b)
		}
	})
	t.Run("names differing in one byte differ in about half the bits", func(t *testing.T) {
		// The ring search uses the high bits; FNV alone leaves them weak.
		total := 0
		const n = 1000
		for i := range n {
			a := HashName([]byte{'a', byte(i), byte(i >> 8)})
			b := HashName([]byte{'b', byte(i), byte(i >> 8)})
			x := a ^ b
			for ; x != 0; x &= x - 1 {
				total++
			}
		}
		if avg := float64(total) / n; avg < 28 || avg > 36 {
			t.Errorf("average differing bits = %.1f, want about 32", avg)
		}
	})
	t.Run("does not allocate", func(t *testing.T) {
		name := []byte("\x03www\x07example\x03com\x00")
		if allocs := testing.AllocsPerRun(1000, func() { HashName(name) }); allocs != 0 {
			t.Errorf("HashName allocates %v times", allocs)
		}
	})
}
