package bgp

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

func TestGoBGPLogsNeverCarryPasswords(t *testing.T) {
	var buf bytes.Buffer
	l := &logAdapter{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	l.Warn("peer", gobgplog.Fields{"Key": "198.51.100.1", "AuthPassword": "s3cret", "password": "s3cret"})
	l.Fatal("fatal is only logged", nil)
	if out := buf.String(); strings.Contains(out, "s3cret") || !strings.Contains(out, "key=198.51.100.1") || !strings.Contains(out, "fatal is only logged") {
		t.Errorf("log: %s", out)
	}
	if l.GetLevel() != gobgplog.InfoLevel {
		t.Errorf("level %v: GoBGP would build debug messages nobody reads", l.GetLevel())
	}
}
