package admin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/anyfront/anyfront/internal/fleet"
)

// Bounds on the fleet page's calls to other nodes.
const (
	// fleetNodeTimeout bounds all of one node's calls for a fleet row: a
	// dead node costs the page that, not a hung request.
	fleetNodeTimeout = 5 * time.Second
	// fleetParallel bounds how many nodes are asked at once.
	fleetParallel = 16
)

// fleetMember is one node of admin.fleet_file with its HTTP client.
type fleetMember struct {
	node   fleet.Node
	client *http.Client
}

// loadFleet reads admin.fleet_file; "" is no fleet page.
func loadFleet(path string) ([]fleetMember, error) {
	if path == "" {
		return nil, nil
	}
	nodes, err := fleet.Load(path)
	if err != nil {
		return nil, fmt.Errorf("admin.fleet_file: %w", err)
	}
	var out []fleetMember
	for _, n := range nodes {
		tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, IdleConnTimeout: idleTimeout}
		if n.CACert != "" {
			pem, err := os.ReadFile(n.CACert)
			if err != nil {
				return nil, fmt.Errorf("admin.fleet_file: node %s: %w", n.Name, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("admin.fleet_file: node %s: %s holds no PEM certificate", n.Name, n.CACert)
			}
			tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
		}
		out = append(out, fleetMember{node: n, client: &http.Client{
			Transport: tr, Timeout: fleetNodeTimeout,
			// The relay must not be bounced to an address outside the file.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}})
	}
	return out, nil
}

// fleetToken reads a node's token_file at each use, so a rotated token is
// picked up without a restart.
func fleetToken(path string) (string, error) {
	h, err := readTokenRaw(path)
	if err != nil {
		return "", err
	}
	return "Bearer " + h, nil
}

// getFleet answers GET /api/v1/fleet: one row per node of the fleet file,
// read with each node's token_file, in parallel.
func (s *Server) getFleet(w http.ResponseWriter, r *http.Request) {
	if len(s.fleet) == 0 {
		writeError(w, http.StatusNotFound, "no fleet: set admin.fleet_file in the config")
		return
	}
	rows := make([]fleet.Status, len(s.fleet))
	sem := make(chan struct{}, fleetParallel)
	var wg sync.WaitGroup
	for i, m := range s.fleet {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(r.Context(), fleetNodeTimeout)
			defer cancel()
			rows[i] = fleet.Query(ctx, m.node, func(ctx context.Context, path string, v any) error {
				authz := ""
				if m.node.TokenFile != "" {
					var err error
					if authz, err = fleetToken(m.node.TokenFile); err != nil {
						return fmt.Errorf("token_file: %v", err)
					}
				}
				code, raw, err := fleet.Do(ctx, m.client, "GET", strings.TrimRight(m.node.Admin, "/"), path, authz)
				if err != nil {
					return err
				}
				return fleet.Decode(path, code, raw, v)
			})
		})
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, map[string]any{"nodes": rows})
}

// relayNode answers POST /api/v1/fleet/{node}/drain and /undrain: the call
// goes to that node's own API with the caller's Authorization header (the
// token the operator typed in the page), and its answer comes back as is.
// That node decides; this one only relays to nodes of the fleet file (no
// other address can be reached through it) and writes the call to its own
// audit log with the node's status.
func (s *Server) relayNode(action, verb string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		defer func() { s.audit(r, action, s.auth.roleOf(r), rec.code) }()
		var m *fleetMember
		for i := range s.fleet {
			if s.fleet[i].node.Name == r.PathValue("node") {
				m = &s.fleet[i]
			}
		}
		if m == nil {
			writeError(rec, http.StatusNotFound, fmt.Sprintf("node %q is not in admin.fleet_file", r.PathValue("node")))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), fleetNodeTimeout)
		defer cancel()
		code, raw, err := fleet.Do(ctx, m.client, "POST", strings.TrimRight(m.node.Admin, "/"), "/api/v1/node/"+verb, r.Header.Get("Authorization"))
		if err != nil {
			writeError(rec, http.StatusBadGateway, fmt.Sprintf("node %s: %v", m.node.Name, err))
			return
		}
		rec.Header().Set("Content-Type", "application/json")
		rec.WriteHeader(code)
		_, _ = rec.Write(raw)
	}
}
