package certfile

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func key(b byte) [TicketKeyLen]byte {
	var k [TicketKeyLen]byte
	for i := range k {
		k[i] = b + byte(i)
	}
	return k
}

func TestParseTicketKeys(t *testing.T) {
	k1, k2, k3 := key(1), key(50), key(100)
	good := "# newest first\n" + hex.EncodeToString(k1[:]) + "\n\n  " +
		base64.StdEncoding.EncodeToString(k2[:]) + "  \r\n" + base64.RawURLEncoding.EncodeToString(k3[:]) + "\n"
	keys, err := ParseTicketKeys([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 || keys[0] != k1 || keys[1] != k2 || keys[2] != k3 {
		t.Fatalf("keys %x", keys)
	}
	secret := hex.EncodeToString(k1[:15]) // a short key: its bytes must not show
	for _, tc := range []struct{ name, text, want string }{
		{"empty", "", "no keys"},
		{"comments only", "# nothing\n\n", "no keys"},
		{"a short key", hex.EncodeToString(k1[:]) + "\n" + secret + "\n", "line 2: want a 32-byte key"},
		{"a long key", hex.EncodeToString(append(k1[:], 0)), "line 1: want a 32-byte key"},
		{"not hex nor base64", strings.Repeat("z", 64), "line 1:"},
		{"too many", strings.Repeat(hex.EncodeToString(k1[:])+"\n", MaxTicketKeys+1), "line 17: more than 16 keys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTicketKeys([]byte(tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), secret) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// look lets the next Refresh look at the file, as CheckInterval passing
// would.
func look(k *TicketKeys) (changed, rejected bool) {
	k.mu.Lock()
	k.checked = time.Time{}
	k.mu.Unlock()
	return k.Refresh()
}

func TestTicketKeysReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(path+".tmp", []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	k1, k2 := key(1), key(2)
	write(hex.EncodeToString(k1[:]) + "\n")
	var logs bytes.Buffer
	k, err := NewTicketKeys(path, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if got := k.Keys(); len(got) != 1 || got[0] != k1 {
		t.Fatalf("keys %x", got)
	}
	t.Run("an unchanged file is not read again", func(t *testing.T) {
		if changed, rejected := look(k); changed || rejected {
			t.Fatal("changed or rejected without a change")
		}
	})
	t.Run("a rolled file is used", func(t *testing.T) {
		write(hex.EncodeToString(k2[:]) + "\n" + hex.EncodeToString(k1[:]) + "\n")
		if changed, _ := look(k); !changed {
			t.Fatal("not picked up")
		}
		if got := k.Keys(); len(got) != 2 || got[0] != k2 || got[1] != k1 {
			t.Fatalf("keys %x", got)
		}
	})
	t.Run("a bad file keeps the keys, is reported once and warned once", func(t *testing.T) {
		write("garbage that is not a key\n")
		if changed, rejected := look(k); changed || !rejected {
			t.Fatalf("changed %v, rejected %v", changed, rejected)
		}
		for range 3 {
			if changed, rejected := look(k); changed || rejected {
				t.Fatal("the same bad file reported again")
			}
		}
		if got := k.Keys(); len(got) != 2 || got[0] != k2 {
			t.Fatalf("keys changed to %x", got)
		}
		if n := strings.Count(logs.String(), "not reloaded"); n != 1 || strings.Contains(logs.String(), "garbage") {
			t.Errorf("%d warnings, or the file's contents logged:\n%s", n, logs.String())
		}
	})
	t.Run("a missing file keeps the keys", func(t *testing.T) {
		os.Remove(path)
		look(k)
		if got := k.Keys(); len(got) != 2 {
			t.Fatalf("keys changed to %x", got)
		}
	})
	t.Run("a file that does not load fails at start, named", func(t *testing.T) {
		if _, err := NewTicketKeys(path, nil); err == nil || !strings.Contains(err.Error(), "ticket_key_file") {
			t.Fatalf("missing file: %v", err)
		}
		write("short\n")
		if _, err := NewTicketKeys(path, nil); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 1") {
			t.Fatalf("bad file: %v", err)
		}
	})
}
