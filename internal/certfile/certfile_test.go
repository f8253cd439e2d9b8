package certfile

import (
	"bytes"
	"crypto/sha256"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
)

// served returns the fingerprint of what a handshake would get now, after
// letting the store look at the files (as CheckInterval passing would).
func served(t *testing.T, s *Store) [32]byte {
	t.Helper()
	s.mu.Lock()
	s.checked = time.Time{}
	s.mu.Unlock()
	c, err := s.GetCertificate(nil)
	if err != nil || c == nil {
		t.Fatalf("GetCertificate: %v", err)
	}
	return sha256.Sum256(c.Certificate[0])
}

func TestFilesChangedAreServedAndBadOnesAreNot(t *testing.T) {
	dir := t.TempDir()
	first := testlab.SelfSignedCert(t, dir, "c")
	var logs bytes.Buffer
	s, err := New(first.CertFile, first.KeyFile, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if served(t, s) != first.SHA256 {
		t.Fatal("not serving the loaded certificate")
	}
	t.Run("a renewed pair is picked up without a reload", func(t *testing.T) {
		second := testlab.SelfSignedCert(t, dir, "c")
		if served(t, s) != second.SHA256 {
			t.Error("the renewed certificate is not served")
		}
		first = second
	})
	t.Run("a broken file keeps the old pair and warns once", func(t *testing.T) {
		if err := os.WriteFile(first.CertFile, []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if served(t, s) != first.SHA256 {
				t.Fatal("a broken file replaced the served certificate")
			}
		}
		if n := strings.Count(logs.String(), "not reloaded"); n != 1 {
			t.Errorf("%d warnings for one broken file, want 1:\n%s", n, logs.String())
		}
	})
	t.Run("an explicit reload of the broken file fails and keeps the old pair", func(t *testing.T) {
		if err := s.Reload(first.CertFile, first.KeyFile); err == nil {
			t.Fatal("Reload accepted a broken certificate")
		}
		if served(t, s) != first.SHA256 {
			t.Error("the old certificate is no longer served")
		}
	})
	t.Run("a reload to other paths switches to them", func(t *testing.T) {
		other := testlab.SelfSignedCert(t, dir, "other")
		if err := s.Reload(other.CertFile, other.KeyFile); err != nil {
			t.Fatal(err)
		}
		if served(t, s) != other.SHA256 {
			t.Error("the reloaded pair is not served")
		}
	})
}

func TestNewNamesTheFileNotItsContents(t *testing.T) {
	c := testlab.SelfSignedCert(t, t.TempDir(), "c")
	if err := os.WriteFile(c.KeyFile, []byte("SECRET-KEY-BYTES"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(c.CertFile, c.KeyFile, nil)
	if err == nil || !strings.Contains(err.Error(), c.KeyFile) || strings.Contains(err.Error(), "SECRET-KEY-BYTES") {
		t.Fatalf("New = %v", err)
	}
	if _, err := New(c.CertFile+".missing", c.KeyFile, nil); err == nil || !strings.Contains(err.Error(), "tls cert") {
		t.Fatalf("missing cert: %v", err)
	}
}
