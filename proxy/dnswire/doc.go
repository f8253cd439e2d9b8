// Package dnswire reads and edits DNS messages in their wire bytes, as the
// hot path must: it never unpacks a whole message and never allocates.
//
// It owns the parsed view of a message (View: header, question, OPT record
// and the EDNS options that belong to one client), the checks a query and
// an answer must pass (ParseQuery, MatchResponse), the answers anyfront
// makes itself (AppendReply), truncation for UDP (TruncateTo, FitUDP), the
// EDNS Client Subnet edits (PlanECS, AppendForward, StripECS) and name
// presentation for logs and the admin API.
//
// It is a leaf: it imports nothing of anyfront, knows no config, socket or
// counter, and keeps no state between calls. View's fields are written only
// by this package's parsers; other packages read them.
package dnswire
