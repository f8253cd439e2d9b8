package admin

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/anyfront/anyfront/proxy/top"
)

// fakeTop answers with the n it was asked for as the first client's count.
type fakeTop struct{}

func (fakeTop) Top(n int) top.List {
	return top.List{
		Enabled: true, Sample: 8, WindowSeconds: 60,
		Clients: []top.Client{{Client: "192.0.2.1", Queries: uint64(n)}, {Client: "2001:db8::53", Queries: 1}},
		Names:   []top.Name{{Name: "www.example.com.", Queries: 40112}},
		Dropped: 3,
	}
}

func TestTopEndpoint(t *testing.T) {
	_, url := start(t, writeToken(t, testToken), Deps{Top: fakeTop{}})
	_, none := start(t, writeToken(t, testToken), Deps{})
	type list struct {
		Enabled bool
		Clients []struct {
			Client  string
			Queries int
		}
		Names []any
	}
	t.Run("the proxy's list is served, 20 entries by default", func(t *testing.T) {
		var got list
		r := do(t, "GET", url+"/api/v1/top", testToken, "")
		r.json(t, &got)
		if r.code != http.StatusOK || !got.Enabled || len(got.Clients) != 2 || got.Clients[0].Queries != 20 {
			t.Errorf("%d %s", r.code, r.body)
		}
		do(t, "GET", url+"/api/v1/top?n=5", testToken, "").json(t, &got)
		if got.Clients[0].Queries != 5 {
			t.Errorf("?n=5 asked for %d", got.Clients[0].Queries)
		}
	})
	t.Run("the answer has the documented fields, and no others", func(t *testing.T) {
		r := do(t, "GET", url+"/api/v1/top?n=3", testToken, "")
		var got bytes.Buffer
		if err := json.Compact(&got, []byte(r.body)); err != nil {
			t.Fatalf("%d %s: %v", r.code, r.body, err)
		}
		want := `{"enabled":true,"sample":8,"window_seconds":60,` +
			`"clients":[{"client":"192.0.2.1","queries":3},{"client":"2001:db8::53","queries":1}],` +
			`"names":[{"name":"www.example.com.","queries":40112}],"dropped":3}`
		if got.String() != want {
			t.Errorf("got  %s\nwant %s", got.String(), want)
		}
	})
	t.Run("a bad n is a 400 that says why", func(t *testing.T) {
		for _, n := range []string{"0", "101", "ten", "-3"} {
			r := do(t, "GET", url+"/api/v1/top?n="+n, testToken, "")
			if msg := r.errorText(t); r.code != http.StatusBadRequest || !strings.Contains(msg, "n must be a whole number from 1 to 100") {
				t.Errorf("n=%s: %d %s", n, r.code, msg)
			}
		}
	})
	t.Run("without the tables the lists are empty and say so", func(t *testing.T) {
		var got list
		do(t, "GET", none+"/api/v1/top", testToken, "").json(t, &got)
		if got.Enabled || got.Clients == nil || len(got.Clients) != 0 || got.Names == nil {
			t.Errorf("%+v", got)
		}
	})
}
