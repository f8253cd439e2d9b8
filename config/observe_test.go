package config

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

func TestObservabilitySections(t *testing.T) {
	t.Run("absent sections get the defaults", func(t *testing.T) {
		cfg := mustParse(t, "/etc/t.yaml", withPool())
		check(t, "log level", cfg.Log.Level, slog.LevelInfo)
		check(t, "log format", cfg.Log.Format, "text")
		check(t, "query log", cfg.QueryLog == nil, true)
		check(t, "top sample", cfg.Top.Sample, 8)
	})
	t.Run("every key lands in its field", func(t *testing.T) {
		cfg := mustParse(t, "/etc/anyfront/t.yaml", withPool(
			"log: {level: debug, format: json}",
			"query_log:",
			"  dnstap: {socket: dnstap.sock}",
			"  sample: 10",
			"  queue: 128",
			"  responses: false",
			"  identity: node-1",
			"top: {sample: 0}",
		))
		check(t, "log level", cfg.Log.Level, slog.LevelDebug)
		check(t, "log format", cfg.Log.Format, "json")
		q := cfg.QueryLog
		check(t, "socket, relative to the config file", q.Socket, filepath.Join("/etc/anyfront", "dnstap.sock"))
		check(t, "file", q.File, "")
		check(t, "sample", q.Sample, 10)
		check(t, "queue", q.Queue, 128)
		check(t, "responses", q.Responses, false)
		check(t, "identity", q.Identity, "node-1")
		check(t, "line", q.Line, 5)
		check(t, "top off", cfg.Top.Sample, 0)
	})
	t.Run("a file query log gets its defaults", func(t *testing.T) {
		cfg := mustParse(t, "t.yaml", withPool("query_log: {dnstap: {file: /var/log/q.dnstap}}"))
		q := cfg.QueryLog
		check(t, "file", q.File, "/var/log/q.dnstap")
		check(t, "sample", q.Sample, 1)
		check(t, "queue", q.Queue, 4096)
		check(t, "responses", q.Responses, true)
	})
}

func TestObservabilityErrors(t *testing.T) {
	for _, tt := range []struct{ name, yaml, want string }{
		{"unknown log level", withPool("log: {level: verbose}"),
			`t.yaml:4: log.level: unknown log level "verbose" (valid: debug, info, warn, error)`},
		{"unknown log format", withPool("log:", "  format: xml"),
			`t.yaml:5: log.format: unknown log format "xml" (valid: text, json)`},
		{"query log without a destination", withPool("query_log: {sample: 2}"),
			`t.yaml:4: query_log: dnstap is required`},
		{"dnstap with neither socket nor file", withPool("query_log:", "  dnstap: {}"),
			`t.yaml:5: query_log.dnstap: needs socket: PATH`},
		{"dnstap with both", withPool("query_log:", "  dnstap:", "    socket: /run/d.sock", "    file: /var/log/d"),
			`t.yaml:7: query_log.dnstap: socket and file are exclusive: give one`},
		{"sample zero", withPool("query_log: {dnstap: {file: q}, sample: 0}"),
			`t.yaml:4: query_log.sample: must be between 1 and 1048576, got 0`},
		{"queue too large", withPool("query_log: {dnstap: {file: q}, queue: 1000000}"),
			`t.yaml:4: query_log.queue: must be between 1 and 65536, got 1000000`},
		{"unknown dnstap key", withPool("query_log: {dnstap: {tcp: '127.0.0.1:6000'}}"),
			`t.yaml:4: unknown key "tcp" in query_log.dnstap`},
		{"negative top sample", withPool("top: {sample: -1}"),
			`t.yaml:4: top.sample: must be between 0 and 1048576, got -1`},
		{"empty socket path", withPool("query_log: {dnstap: {socket: ''}}"),
			`t.yaml:4: query_log.dnstap.socket: must not be empty`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v\nwant %s", err, tt.want)
			}
		})
	}
}
