package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	var samples []string
	for i := range 15 {
		// The first five (outside the window) would skew the average.
		q, sf := 100, 1
		if i < 5 {
			q, sf = 9999, 9999
		}
		samples = append(samples, fmt.Sprintf(`{"qps": %d, "servfail": %d}`, q, sf))
	}
	s, err := Summarize([]byte(`{"samples": [` + strings.Join(samples, ",") + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.QPS != 100 || s.ServfailPct == nil || *s.ServfailPct != 1 || s.Seconds != 10 {
		t.Errorf("%+v", s)
	}
	if s, _ := Summarize([]byte(`{"samples": []}`)); s.ServfailPct != nil || s.QPS != 0 {
		t.Errorf("no samples: %+v", s)
	}
}

// fakeAPI answers Query's four calls from canned JSON.
func fakeAPI(answers map[string]string) Getter {
	return func(_ context.Context, path string, v any) error {
		a, ok := answers[path]
		if !ok {
			return errors.New("GET " + path + ": HTTP 401")
		}
		return json.Unmarshal([]byte(a), v)
	}
}

func TestQuery(t *testing.T) {
	base := map[string]string{
		"/api/v1/node":     `{"name": "n1", "site": "s1", "version": "v1", "drained": false}`,
		"/api/v1/backends": `[{"usable": true}, {"usable": false}]`,
		"/api/v1/bgp":      `{"enabled": true, "prefixes": [{"announced": true}, {"announced": false}]}`,
		"/api/v1/stats":    `{"samples": [{"qps": 50, "servfail": 0}]}`,
	}
	for _, tc := range []struct {
		name    string
		change  map[string]string
		serving bool
	}{
		{"usable backend and a prefix announced: serving", nil, true},
		{"no prefix announced: not serving", map[string]string{"/api/v1/bgp": `{"enabled": true, "prefixes": [{"announced": false}]}`}, false},
		{"no BGP: serving on backends alone", map[string]string{"/api/v1/bgp": `{"enabled": false}`}, true},
		{"no usable backend: not serving", map[string]string{"/api/v1/backends": `[{"usable": false}]`}, false},
		{"shutting down: not serving", map[string]string{"/api/v1/node": `{"name": "n1", "shutting_down": true}`}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := map[string]string{}
			for k, v := range base {
				a[k] = v
			}
			for k, v := range tc.change {
				a[k] = v
			}
			got := Query(context.Background(), Node{Name: "n1", Admin: "http://x"}, fakeAPI(a))
			if got.Serving != tc.serving || got.Error != "" {
				t.Errorf("%+v", got)
			}
		})
	}
	t.Run("a refused call is the row's error", func(t *testing.T) {
		got := Query(context.Background(), Node{Name: "n1"}, fakeAPI(map[string]string{}))
		if !strings.Contains(got.Error, "401") {
			t.Errorf("%+v", got)
		}
	})
	t.Run("counts", func(t *testing.T) {
		got := Query(context.Background(), Node{Name: "n1"}, fakeAPI(base))
		if got.BackendsUsable != 1 || got.BackendsTotal != 2 || got.PrefixesAnnounced != 1 || got.PrefixesConfigured != 2 ||
			got.Site != "s1" || got.Version != "v1" || got.QPS != 50 {
			t.Errorf("%+v", got)
		}
	})
}
