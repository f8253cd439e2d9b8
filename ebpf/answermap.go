package ebpf

import (
	"errors"
	"fmt"
	"net/netip"

	cebpf "github.com/cilium/ebpf"
)

// answerMirror is what this process wrote to the answer maps: per answer
// its hit-counter slot and the value written (shared with the desired set
// it came from, never modified), so that an unchanged answer is not
// rewritten.
type answerMirror struct {
	entries map[AnswerKey]*mirrored
	free    []uint32 // released slots, oldest first
	next    uint32   // slots below this have been handed out
	acl     aclSet
}

type mirrored struct {
	slot uint32
	key  xdpAnswerKey
	val  *xdpAnswerVal
}

func newAnswerMirror() answerMirror {
	return answerMirror{entries: map[AnswerKey]*mirrored{}, acl: aclSet{}}
}

// takeSlot hands out a hit-counter slot, the longest-free one first so
// that a counter an in-flight packet may still bump is reused last.
func (m *answerMirror) takeSlot() (uint32, bool) {
	if len(m.free) > 0 {
		s := m.free[0]
		m.free = m.free[1:]
		return s, true
	}
	if m.next >= MaxAnswers {
		return 0, false
	}
	m.next++
	return m.next - 1, true
}

// syncAnswers makes the answer map hold exactly want and returns how many
// answers it wrote. New and changed answers are written before stale ones
// are deleted: the kernel may reuse a deleted element's memory for the
// next insert, and the next insert then comes with the next publish, long
// after any CPU still reading the deleted one is done. Updates of an
// existing answer happen in place under its lock (BPF_F_LOCK).
func (o *objects) syncAnswers(want answerSet) (int, error) {
	m := &o.answerMirror
	written := 0
	// Make room first if the map would overflow in between.
	added := 0
	for k := range want {
		if m.entries[k] == nil {
			added++
		}
	}
	if len(m.entries)+added > MaxAnswers {
		if err := o.deleteStale(want); err != nil {
			return 0, err
		}
	}
	var errs []error
	var (
		keys    = make([]AnswerKey, 0, len(want))
		entries = make([]*mirrored, 0, len(want))
		mapKeys = make([]xdpAnswerKey, 0, len(want))
		vals    = make([]xdpAnswerVal, 0, len(want))
		fresh   []uint32 // slots of new answers, to zero
	)
	for k, v := range want {
		e := m.entries[k]
		if e != nil && *e.val == *v {
			continue
		}
		if e == nil {
			slot, ok := m.takeSlot()
			if !ok {
				errs = append(errs, fmt.Errorf("answer %v: %w", k, ErrAnswersFull))
				continue
			}
			e = &mirrored{slot: slot, key: v.D.Key}
			fresh = append(fresh, slot)
		}
		keys, entries = append(keys, k), append(entries, &mirrored{slot: e.slot, key: e.key, val: v})
		mapKeys, vals = append(mapKeys, e.key), append(vals, *v)
		vals[len(vals)-1].D.Slot = e.slot
	}
	// Two system calls for the lot: a publish rewrites every answer whose
	// TTLs aged, thousands a second.
	if len(fresh) > 0 {
		// A new answer counts from zero.
		if _, err := o.AnswerHits.BatchUpdate(fresh, make([]uint64, len(fresh)*o.cpus), nil); err != nil {
			for i, k := range keys {
				if m.entries[k] == nil {
					m.free = append(m.free, entries[i].slot)
				}
			}
			return 0, fmt.Errorf("xdp: reset hits of new answers: %w", err)
		}
	}
	if len(vals) > 0 {
		n, err := o.Answers.BatchUpdate(mapKeys, vals, &cebpf.BatchOptions{ElemFlags: uint64(cebpf.UpdateLock)})
		for i, k := range keys {
			switch {
			case i < n:
				m.entries[k] = entries[i]
			case m.entries[k] == nil:
				m.free = append(m.free, entries[i].slot)
			}
		}
		written = n
		if err != nil {
			return written, fmt.Errorf("xdp: publish answers (%d of %d written): %w", n, len(vals), err)
		}
	}
	return written, errors.Join(append(errs, o.deleteStale(want))...)
}

// deleteStale deletes the answers not in want.
func (o *objects) deleteStale(want answerSet) error {
	m := &o.answerMirror
	for k, e := range m.entries {
		if want[k] != nil {
			continue
		}
		if err := o.Answers.Delete(e.key); err != nil && !errors.Is(err, cebpf.ErrKeyNotExist) {
			return fmt.Errorf("xdp: remove answer %v: %w", k, err)
		}
		delete(m.entries, k)
		m.free = append(m.free, e.slot)
	}
	return nil
}

// answerHits reads every hit counter handed out so far in one batch and
// sums it over CPUs for each answer in the map.
func (o *objects) answerHits() (map[AnswerKey]uint64, error) {
	m := &o.answerMirror
	out := make(map[AnswerKey]uint64, len(m.entries))
	if m.next == 0 {
		return out, nil
	}
	keys := make([]uint32, m.next)
	vals := make([]uint64, int(m.next)*o.cpus)
	var cursor cebpf.MapBatchCursor
	n, err := o.AnswerHits.BatchLookup(&cursor, keys, vals, nil)
	if err != nil && !errors.Is(err, cebpf.ErrKeyNotExist) {
		return nil, fmt.Errorf("xdp: read answer hits: %w", err)
	}
	if n < int(m.next) {
		return nil, fmt.Errorf("xdp: read answer hits: %d of %d counters", n, m.next)
	}
	for k, e := range m.entries {
		var sum uint64
		for _, c := range vals[int(e.slot)*o.cpus : int(e.slot+1)*o.cpus] {
			sum += c
		}
		out[k] = sum
	}
	return out, nil
}

// syncACL makes the ACL tries hold exactly want; additions first, so that
// a prefix moving from a /24 to a /16 keeps being answered.
func (o *objects) syncACL(want aclSet) error {
	m := &o.answerMirror
	put := func(p netip.Prefix) error {
		if p.Addr().Is4() {
			return o.AclV4.Put(xdpLpmV4Key{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As4()}, uint8(1))
		}
		return o.AclV6.Put(xdpLpmV6Key{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()}, uint8(1))
	}
	del := func(p netip.Prefix) error {
		if p.Addr().Is4() {
			return o.AclV4.Delete(xdpLpmV4Key{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As4()})
		}
		return o.AclV6.Delete(xdpLpmV6Key{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()})
	}
	for p := range want {
		if !m.acl[p] {
			if err := put(p); err != nil {
				return fmt.Errorf("xdp: acl %v: %w", p, err)
			}
			m.acl[p] = true
		}
	}
	for p := range m.acl {
		if !want[p] {
			if err := del(p); err != nil && !errors.Is(err, cebpf.ErrKeyNotExist) {
				return fmt.Errorf("xdp: acl remove %v: %w", p, err)
			}
			delete(m.acl, p)
		}
	}
	return nil
}
