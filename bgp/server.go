package bgp

import (
	"context"
	"log/slog"
	"sort"
	"strings"
	"sync"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// The process's one GoBGP server. GoBGP v3's Serve never returns and every
// API call blocks unless it runs, so the server and its Serve goroutine live
// for the life of the process; a Controller's Run starts and stops BGP on it
// (StartBgp/StopBgp) instead of creating servers.
var process struct {
	once sync.Once
	srv  *server.BgpServer
}

// processServer returns the process's GoBGP server, creating it (and its
// Serve goroutine) on first use. The first caller's logger is kept.
func processServer(log *slog.Logger) *server.BgpServer {
	process.once.Do(func() { process.srv = newServer(log) })
	return process.srv
}

// newServer creates a GoBGP server with its Serve goroutine. Outside
// processServer only tests call it, to run two speakers in one process.
func newServer(log *slog.Logger) *server.BgpServer {
	srv := server.NewBgpServer(server.LoggerOption(&logAdapter{log: log.With("component", "gobgp")}))
	go srv.Serve()
	return srv
}

// logAdapter sends GoBGP's logs to slog. GoBGP's Info is chatty (every
// config step), so it becomes Debug; peer up/down is logged by the
// controller. Fatal and Panic are logged as errors: a library must not end
// the process.
type logAdapter struct {
	log *slog.Logger
}

var _ gobgplog.Logger = (*logAdapter)(nil)

func (l *logAdapter) emit(level slog.Level, msg string, fields gobgplog.Fields) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		// Never pass on anything that could hold a TCP-MD5 secret.
		if !strings.Contains(strings.ToLower(k), "password") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	args := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		args = append(args, strings.ToLower(k), fields[k])
	}
	l.log.Log(context.Background(), level, msg, args...)
}

func (l *logAdapter) Panic(msg string, f gobgplog.Fields) { l.emit(slog.LevelError, msg, f) }
func (l *logAdapter) Fatal(msg string, f gobgplog.Fields) { l.emit(slog.LevelError, msg, f) }
func (l *logAdapter) Error(msg string, f gobgplog.Fields) { l.emit(slog.LevelError, msg, f) }
func (l *logAdapter) Warn(msg string, f gobgplog.Fields)  { l.emit(slog.LevelWarn, msg, f) }
func (l *logAdapter) Info(msg string, f gobgplog.Fields)  { l.emit(slog.LevelDebug, msg, f) }
func (l *logAdapter) Debug(msg string, f gobgplog.Fields) { l.emit(slog.LevelDebug-4, msg, f) }

// SetLevel is ignored: the slog handler decides.
func (l *logAdapter) SetLevel(gobgplog.LogLevel) {}

// GetLevel tells GoBGP whether to build debug messages at all.
func (l *logAdapter) GetLevel() gobgplog.LogLevel {
	if l.log.Enabled(context.Background(), slog.LevelDebug-4) {
		return gobgplog.DebugLevel
	}
	return gobgplog.InfoLevel
}
