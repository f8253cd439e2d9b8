package ebpf

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	cebpf "github.com/cilium/ebpf"

	"github.com/anyfront/anyfront/config"
)

// fuzzReader hands out the fuzzer's bytes as small choices; once they run
// out every choice is zero.
type fuzzReader struct{ b []byte }

func (r *fuzzReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *fuzzReader) u16() uint16   { return uint16(r.byte())<<8 | uint16(r.byte()) }
func (r *fuzzReader) int(n int) int { return int(r.u16()) % n }
func (r *fuzzReader) bool() bool    { return r.byte()&1 == 1 }

// fuzzNames are the wire names the fuzz target publishes and asks for:
// ordinary ones, the root, the longest, and labels with the bytes around
// 'A'..'Z' and their high-bit twins, which must not be folded.
var fuzzNames = [][]byte{
	[]byte("\x07example\x03com\x00"),
	[]byte("\x01a\x07example\x03com\x00"),
	[]byte("\x01b\x07example\x03com\x00"),
	[]byte("\x03WwW\x07ExAmple\x03ORG\x00"),
	[]byte("\x00"),
	[]byte("\x01x\x00"),
	[]byte("\x06@[`{Az\x00"),
	[]byte("\x04\xc1\xda\xe1\xfa\x00"),
	[]byte("\x05a.b\\c\x00"),
	longLabels(255),
	longLabels(200),
}

// fuzzTypes are the query types the target uses.
var fuzzTypes = []uint16{1, 28, 16}

// FuzzAnswerCache publishes random answers, asks a random query, and
// checks the program against a model of the rules written in Go: the
// same hit or pass, and on a hit the same bytes.
func FuzzAnswerCache(f *testing.F) {
	o := loadTest(f, testConfig(config.RateLimit{}))
	acl, err := buildACL(aclAll)
	if err != nil {
		f.Fatal(err)
	}
	if err := o.syncACL(acl); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{})
	f.Add(fuzzHitSeed)
	f.Fuzz(func(t *testing.T, data []byte) { answerOnce(t, o, data) })
}

// fuzzHitSeed publishes an A record for example.com and asks for it over
// IPv4 as eXaMpLe.CoM from inside the ACL: a hit.
var fuzzHitSeed = []byte{
	0, 1, // one answer
	0, 0, 0, 0, 0, 0, 0, // example.com, A, no EDNS, DO or CD
	0x81, 0x80, 0, 1, 0, 0, 0, 0, // flags; counts
	0, 16, 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0x3c, 0, 4, 192, 0, 2, 1, // sections
	0, 1, // not expired
	0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 0, // the name, case flipped; type A
	0, 0, 0, 1, // no EDNS, DO or CD; RD
	0, 1, 0, 1, 0, 1, 0, 0, // no version 1, option or trailing byte; payload
	0, 0, // IPv4, in the ACL
}

// TestFuzzAnswerCacheSeedHits keeps the fuzz target honest: the seeds
// meant to hit (fuzzHitSeed, testdata's hit-*) must be answered and the
// others not, or the target could be comparing passes only.
func TestFuzzAnswerCacheSeedHits(t *testing.T) {
	o := loadTest(t, testConfig(config.RateLimit{}))
	acl, _ := buildACL(aclAll)
	if err := o.syncACL(acl); err != nil {
		t.Fatal(err)
	}
	if !answerOnce(t, o, fuzzHitSeed) {
		t.Error("fuzzHitSeed passed")
	}
	files, err := filepath.Glob("testdata/fuzz/FuzzAnswerCache/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no seeds in testdata: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, lit, _ := strings.Cut(strings.TrimSpace(string(b)), "[]byte(")
		data, err := strconv.Unquote(strings.TrimSuffix(lit, ")"))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		want := strings.HasPrefix(filepath.Base(f), "hit-")
		if got := answerOnce(t, o, []byte(data)); got != want {
			t.Errorf("%s: answered %v, want %v", f, got, want)
		}
	}
}

// answerOnce is one execution of FuzzAnswerCache; it returns whether the
// model (and so the program) answered.
func answerOnce(t *testing.T, o *objects, data []byte) bool {
	t.Helper()
	{
		r := &fuzzReader{b: data}
		now := monoNow(t)
		var answers []Answer
		for range r.int(6) {
			a := Answer{Key: AnswerKey{
				Name: string(fuzzNames[r.int(len(fuzzNames))]), Type: fuzzTypes[r.int(len(fuzzTypes))], Class: 1,
				EDNS: r.bool(), DO: r.bool(), CD: r.bool(),
			}}
			a.Flags = r.u16()
			a.Counts = [3]uint16{r.u16(), r.u16(), r.u16()}
			a.Sections = make([]byte, r.int(MaxAnswerSections+40))
			for i := range a.Sections {
				a.Sections[i] = r.byte()
			}
			a.Expires = now + int64(time.Hour)
			if r.int(4) == 0 {
				a.Expires = now - int64(r.u16()) // expired
			}
			answers = append(answers, a)
		}
		// The model of what SyncAnswers keeps: valid answers, the last of
		// a key winning.
		model := map[AnswerKey]Answer{}
		for _, a := range answers {
			if len(a.Sections) <= MaxAnswerSections {
				a.Key.Name = string(lowerWire(a.Key.Name))
				model[a.Key] = a
			}
		}
		set, _ := buildAnswers(answers)
		if len(set) != len(model) {
			t.Fatalf("SyncAnswers kept %d answers, the model %d", len(set), len(model))
		}
		if _, err := o.syncAnswers(set); err != nil {
			t.Fatal(err)
		}

		// The query: a published name or not, in any case.
		name := append([]byte{}, fuzzNames[r.int(len(fuzzNames))]...)
		for i := 0; i < len(name); i += 1 + int(name[i]) {
			for j := i + 1; j <= i+int(name[i]); j++ {
				if c := name[j] | 0x20; c >= 'a' && c <= 'z' && r.bool() {
					name[j] ^= 0x20
				}
			}
		}
		qtype := fuzzTypes[r.int(len(fuzzTypes))]
		edns, do, cd, rd := r.bool(), r.bool(), r.bool(), r.bool()
		version, option, trailing := r.int(8) == 0, r.int(8) == 0, r.int(16) == 0
		payload := r.u16()
		q := []byte{0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}
		if rd {
			q[2] |= 1
		}
		if cd {
			q[3] |= 0x10
		}
		q = append(q, name...)
		q = binary.BigEndian.AppendUint16(q, qtype)
		q = append(q, 0, 1)
		qend := len(q)
		if edns {
			q[11] = 1
			q = append(q, 0, 0, 41)
			q = binary.BigEndian.AppendUint16(q, payload)
			v, flags := byte(0), byte(0)
			if version {
				v = 1
			}
			if do {
				flags = 0x80
			}
			q = append(q, 0, v, flags, 0)
			if option {
				q = append(q, 0, 8, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8) // a client cookie
			} else {
				q = append(q, 0, 0)
			}
		}
		if trailing {
			q = append(q, 0)
		}
		fr := frame{src: client4, dst: vip4, payload: q}
		inACL := true
		switch r.int(4) {
		case 1:
			fr.src, fr.dst = client6, vip6
		case 2:
			fr.src, inACL = client4c, false
		case 3:
			fr.src, fr.dst, inACL = client6c, vip6, false
		}

		// What the rules say.
		key := AnswerKey{Name: string(lowerWire(string(name))), Type: qtype, Class: 1, EDNS: edns, DO: edns && do, CD: cd}
		a, found := model[key]
		limit := 512
		if edns {
			limit = max(512, int(payload))
		}
		hit := found && inACL && !(edns && (version || option)) && !trailing &&
			a.Expires > now && qend+len(a.Sections) <= limit

		// Verdict counters are the unit tests' business: reading them
		// would triple the cost of an execution.
		in := fr.bytes()
		opts := &cebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+runSlack)}
		ret, err := o.AnyfrontXdp.Run(opts)
		if err != nil {
			t.Fatal(err)
		}
		out := opts.DataOut
		switch {
		case hit && ret != xdpTX:
			t.Fatalf("the model answers %v, the program says %s", key, actionNames[ret])
		case hit:
			if want := expectedFrame(fr, expectedDNS(q, qend, a)); !bytes.Equal(out, want) {
				t.Fatalf("answer to %v differs:\n got %x\nwant %x", key, out, want)
			}
		case !hit && (ret != xdpPass || !bytes.Equal(in, out)):
			t.Fatalf("the model passes %v (published %v, in ACL %v), the program says %s",
				key, found, inACL, actionNames[ret])
		}
		return hit
	}
}
