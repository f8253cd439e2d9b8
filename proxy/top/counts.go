package top

// spaceSaving counts the heaviest keys of a stream in fixed memory
// (Metwally, Agrawal and El Abbadi's space-saving algorithm): at most cap
// counters, kept in a min-heap so the smallest is found at once. A key not
// counted yet, with every counter taken, replaces the smallest and starts
// from its count: a key's count may be overestimated by at most that, and
// no key whose true count exceeds total/cap is ever lost.
type spaceSaving[K comparable] struct {
	cap  int
	heap []ssEntry[K]
	at   map[K]int // a key's position in heap
}

type ssEntry[K comparable] struct {
	key   K
	count uint64
}

func newSpaceSaving[K comparable](capacity int) *spaceSaving[K] {
	return &spaceSaving[K]{cap: capacity, heap: make([]ssEntry[K], 0, capacity), at: make(map[K]int, capacity)}
}

func (s *spaceSaving[K]) add(k K, n uint64) {
	if i, ok := s.at[k]; ok {
		s.heap[i].count += n
		s.down(i)
		return
	}
	if len(s.heap) < s.cap {
		s.heap = append(s.heap, ssEntry[K]{k, n})
		s.at[k] = len(s.heap) - 1
		s.up(len(s.heap) - 1)
		return
	}
	delete(s.at, s.heap[0].key)
	s.heap[0] = ssEntry[K]{k, s.heap[0].count + n}
	s.at[k] = 0
	s.down(0)
}

func (s *spaceSaving[K]) reset() {
	s.heap = s.heap[:0]
	clear(s.at)
}

// sumInto adds every counter to m.
func (s *spaceSaving[K]) sumInto(m map[K]uint64) {
	for _, e := range s.heap {
		m[e.key] += e.count
	}
}

func (s *spaceSaving[K]) swap(i, j int) {
	s.heap[i], s.heap[j] = s.heap[j], s.heap[i]
	s.at[s.heap[i].key] = i
	s.at[s.heap[j].key] = j
}

func (s *spaceSaving[K]) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if s.heap[parent].count <= s.heap[i].count {
			return
		}
		s.swap(i, parent)
		i = parent
	}
}

func (s *spaceSaving[K]) down(i int) {
	for {
		small, l, r := i, 2*i+1, 2*i+2
		if l < len(s.heap) && s.heap[l].count < s.heap[small].count {
			small = l
		}
		if r < len(s.heap) && s.heap[r].count < s.heap[small].count {
			small = r
		}
		if small == i {
			return
		}
		s.swap(i, small)
		i = small
	}
}
