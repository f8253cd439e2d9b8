package ebpf

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/testlab"
)

// TestSyncAnswers checks the map follows the desired set: updates in
// place keep the hit count, removals stop the answers, a re-added answer
// counts from zero, and answers that break a bound are refused by name
// while the rest apply.
func TestSyncAnswers(t *testing.T) {
	o := loadTest(t, testConfig(config.RateLimit{}))
	exp := monoNow(t) + int64(time.Hour)
	mk := func(name, ip string, ttl uint32) Answer {
		return answerFrom(t, response(name, dns.TypeA, 0, false, false, []dns.RR{rrA(name, ttl, ip)}, nil), exp)
	}
	x1, y := mk("x.example.com.", "192.0.2.1", 60), mk("y.example.com.", "192.0.2.2", 60)
	fx := frame{src: client4, dst: vip4, payload: plainQuery("x.example.com.", dns.TypeA, nil)}
	fy := frame{src: client4, dst: vip4, payload: plainQuery("y.example.com.", dns.TypeA, nil)}
	publish(t, o, aclAll, x1, y)
	checkServed(t, o, fx, x1)
	checkServed(t, o, fy, y)

	x2 := mk("x.example.com.", "192.0.2.1", 59) // the TTL aged
	set, _ := buildAnswers([]Answer{x2, y})
	n, err := o.syncAnswers(set)
	if err != nil || n != 1 {
		t.Fatalf("syncAnswers wrote %d answers (%v); only x changed", n, err)
	}
	checkServed(t, o, fx, x2)
	hits, err := o.answerHits()
	if err != nil {
		t.Fatal(err)
	}
	if hits[x2.Key] != 2 || hits[y.Key] != 1 || len(hits) != 2 {
		t.Errorf("hits %v; want x 2 (across the update), y 1", hits)
	}

	set, _ = buildAnswers([]Answer{x2})
	if _, err := o.syncAnswers(set); err != nil {
		t.Fatal(err)
	}
	expect(t, o, "a removed answer", fy, xdpPass, vPass)
	set, _ = buildAnswers([]Answer{x2, y})
	if _, err := o.syncAnswers(set); err != nil {
		t.Fatal(err)
	}
	checkServed(t, o, fy, y)
	if hits, _ := o.answerHits(); hits[y.Key] != 1 {
		t.Errorf("a re-added answer has %d hits, want 1", hits[y.Key])
	}

	bad := []Answer{
		{Key: AnswerKey{Name: "\x03bad", Type: 1, Class: 1}},
		{Key: AnswerKey{Name: string(longLabels(256)), Type: 1, Class: 1}},
		{Key: AnswerKey{Name: "\x03big\x00", Type: 1, Class: 1}, Sections: make([]byte, MaxAnswerSections+1)},
		{Key: AnswerKey{Name: "\xc0\x0c", Type: 1, Class: 1}},
	}
	set, err = buildAnswers(append(bad, x2))
	if err == nil || len(set) != 1 {
		t.Fatalf("buildAnswers kept %d answers, error %v", len(set), err)
	}
	for _, want := range []string{"bad./1/1: name does not end", "256 bytes", "big./1/1: sections of 513 bytes", "compression pointers"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
	// Upper case in a published name is folded, as the program folds the
	// query's.
	upper := mk("x.example.com.", "192.0.2.1", 59)
	upper.Key.Name = "\x01X\x07EXAMPLE\x03com\x00"
	set, err = buildAnswers([]Answer{upper})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.syncAnswers(set); err != nil {
		t.Fatal(err)
	}
	checkServed(t, o, fx, x2)
}

// TestRunnerAPI drives the exported Runner as another package would.
func TestRunnerAPI(t *testing.T) {
	loadTest(t, testConfig(config.RateLimit{})) // skips without root
	r, err := NewRunner(testConfig(config.RateLimit{}))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a := answerFrom(t, response("r.example.com.", dns.TypeA, 0, false, false,
		[]dns.RR{rrA("r.example.com.", 60, "192.0.2.1")}, nil), monoNow(t)+int64(time.Hour))
	f := frame{src: client6, dst: vip6, payload: plainQuery("r.example.com.", dns.TypeA, nil)}
	if ret, out, err := r.Run(f.bytes()); err != nil || ret != XDP_PASS || !bytes.Equal(out, f.bytes()) {
		t.Fatalf("before publishing: %d, %v", ret, err)
	}
	if err := r.SyncAnswers([]Answer{a}); err != nil {
		t.Fatal(err)
	}
	if ret, _, _ := r.Run(f.bytes()); ret != XDP_PASS {
		t.Fatalf("with an empty ACL: %s", actionNames[ret])
	}
	if err := r.SetACL(aclAll); err != nil {
		t.Fatal(err)
	}
	ret, out, err := r.Run(f.bytes())
	if err != nil || ret != XDP_TX {
		t.Fatalf("published: %s, %v", actionNames[ret], err)
	}
	if want := expectedFrame(f, expectedDNS(f.payload, questionEnd(t, f.payload), a)); !bytes.Equal(out, want) {
		t.Errorf("the answer differs:\n got %x\nwant %x", out, want)
	}
	if hits, err := r.AnswerHits(); err != nil || hits[a.Key] != 1 {
		t.Errorf("hits %v, %v", hits, err)
	}
	if err := r.SetACL(nil); err != nil {
		t.Fatal(err)
	}
	if ret, _, _ := r.Run(f.bytes()); ret != XDP_PASS {
		t.Errorf("after the ACL was emptied: %s", actionNames[ret])
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Run(f.bytes()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v", err)
	}
}

// TestDataplaneKeepsAnswersForLoad: answers and the ACL given before the
// program is loaded are applied when Run loads it, and counted published.
func TestDataplaneKeepsAnswersForLoad(t *testing.T) {
	testlab.RequireRoot(t)
	d, err := New(testConfig(config.RateLimit{}), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	a := answerFrom(t, response("early.example.com.", dns.TypeA, 0, false, false,
		[]dns.RR{rrA("early.example.com.", 60, "192.0.2.1")}, nil), monoNow(t)+int64(time.Hour))
	if err := d.SyncAnswers([]Answer{a}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetACL(aclAll); err != nil {
		t.Fatal(err)
	}
	if hits, err := d.AnswerHits(); err != nil || len(hits) != 0 {
		t.Errorf("hits before load: %v, %v", hits, err)
	}
	if got := gather(t, d.Collector())["anyfront_xdp_answer_entries"][""]; got != 0 {
		t.Errorf("%v entries before load", got)
	}
	if _, err := d.load(); err != nil { // what Run does before attaching
		t.Fatal(err)
	}
	defer d.unload()
	f := frame{src: client4, dst: vip4, payload: plainQuery("early.example.com.", dns.TypeA, nil)}
	checkServed(t, d.objs, f, a)
	m := gather(t, d.Collector())
	if m["anyfront_xdp_answer_entries"][""] != 1 || m["anyfront_xdp_answer_publishes_total"][""] != 1 {
		t.Errorf("entries %v, publishes %v; want 1 and 1", m["anyfront_xdp_answer_entries"], m["anyfront_xdp_answer_publishes_total"])
	}
	if hits, err := d.AnswerHits(); err != nil || hits[a.Key] != 1 {
		t.Errorf("hits %v, %v", hits, err)
	}
}
