package srctable

import (
	"net/netip"
	"testing"
)

func TestSrcTableBound(t *testing.T) {
	tab := New[int64](Shards * 4)
	for i := 0; i < 10000; i++ {
		k := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		sh := tab.Shard(k)
		sh.Lock()
		v, fresh := sh.Get(k)
		if !fresh {
			t.Fatalf("%s is not new", k)
		}
		*v = int64(i)
		sh.Unlock()
	}
	total := 0
	for i := range tab.shards {
		if n := tab.shards[i].len(); n > 4 {
			t.Fatalf("shard %d holds %d entries, bound 4", i, n)
		} else {
			total += n
		}
	}
	if total < Shards*3 {
		t.Errorf("only %d entries kept", total)
	}
	// The most recent entries survive.
	k := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 39, 15}), 32) // i = 9999
	sh := tab.Shard(k)
	sh.Lock()
	v, fresh := sh.Get(k)
	sh.Unlock()
	if fresh || *v != 9999 {
		t.Errorf("the newest entry was evicted (fresh %v, %d)", fresh, *v)
	}
}
