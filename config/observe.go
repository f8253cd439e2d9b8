package config

import (
	"log/slog"

	"gopkg.in/yaml.v3"
)

// Log configures the daemon's own structured log.
type Log struct {
	// Level is the least severe level written; default info. The
	// -log-level flag, when given, overrides it.
	Level slog.Level
	// Format is text (default, logfmt-like) or json.
	Format string
}

// QueryLog configures the dnstap query log. Exactly one of Socket and File
// is set.
type QueryLog struct {
	// Socket is a dnstap reader's unix socket (Frame Streams,
	// bidirectional); anyfront connects to it and reconnects when it goes.
	Socket string
	// File is written anew at start (Frame Streams, unidirectional).
	File string
	// Sample logs one query in Sample (1: every one), with its response.
	Sample int
	// Queue bounds the messages waiting for the writer; when it is full
	// further messages are dropped and counted, never waited for.
	Queue int
	// Responses logs CLIENT_RESPONSE messages besides CLIENT_QUERY.
	Responses bool
	// Identity is the dnstap identity field; default the host name.
	Identity string
	Line     int
}

// Top configures the top clients and names kept for GET /api/v1/top.
type Top struct {
	// Sample counts one query in Sample; 0 turns the counting off.
	Sample int
}

// Defaults and bounds of log, query_log and top.
const (
	defaultLogFormat     = "text"
	defaultQueryLogQueue = 4096
	// maxQueryLogQueue: each slot may hold a message of up to 4 KiB, so
	// this caps the queue's memory near 256 MiB.
	maxQueryLogQueue = 65536
	maxSample        = 1 << 20
	// defaultTopSample keeps the cost of the top tables to a random number
	// per query and a queue write every eighth.
	defaultTopSample = 8
)

var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
)

func defaultLog() Log { return Log{Level: slog.LevelInfo, Format: defaultLogFormat} }

func defaultTop() Top { return Top{Sample: defaultTopSample} }

// logSection decodes log: {level, format}.
func (d *decoder) logSection(n *yaml.Node, l *Log) {
	f, ok := d.fields(n, "log", "level", "format")
	if !ok {
		return
	}
	var level string
	if f.enum("level", "log level", logLevels, &level) {
		_ = l.Level.UnmarshalText([]byte(level)) // one of logLevels: cannot fail
	}
	f.enum("format", "log format", logFormats, &l.Format)
}

// queryLog decodes query_log; line is that of its key.
func (d *decoder) queryLog(n *yaml.Node, line int) *QueryLog {
	q := &QueryLog{Sample: 1, Queue: defaultQueryLogQueue, Responses: true, Line: line}
	f, ok := d.fields(n, "query_log", "dnstap", "sample", "queue", "responses", "identity")
	if !ok {
		return q
	}
	f.line = line
	f.int("sample", 1, maxSample, &q.Sample)
	f.int("queue", 1, maxQueryLogQueue, &q.Queue)
	f.bool("responses", &q.Responses)
	f.str("identity", &q.Identity)
	t := f.require("dnstap")
	if t == nil {
		return q
	}
	tf, ok := d.fields(t, "query_log.dnstap", "socket", "file")
	if !ok {
		return q
	}
	sock, file := tf.get("socket"), tf.get("file")
	switch {
	case sock != nil && file != nil:
		d.errorf(file, "query_log.dnstap: socket and file are exclusive: give one")
	case sock != nil:
		q.Socket, _ = d.path(sock, tf.at("socket"))
	case file != nil:
		q.File, _ = d.path(file, tf.at("file"))
	default:
		d.errorAt(tf.line, "query_log.dnstap: needs socket: PATH (a dnstap reader's unix socket) or file: PATH")
	}
	return q
}

// top decodes top: {sample}.
func (d *decoder) top(n *yaml.Node, t *Top) {
	f, ok := d.fields(n, "top", "sample")
	if !ok {
		return
	}
	f.int("sample", 0, maxSample, &t.Sample)
}
