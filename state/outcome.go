package state

// Outcome is what became of one query sent to a backend. The proxy reports
// outcomes; health checking consumes them (lazy mode, and live-traffic
// failures in active mode). It lives here because the two components meet
// in state and import nothing of each other.
type Outcome uint8

// Outcomes.
const (
	OutcomeAnswer      Outcome = iota // a valid answer (any rcode but SERVFAIL)
	OutcomeServFail                   // a SERVFAIL answer
	OutcomeTimeout                    // no answer in time
	OutcomeUnreachable                // refused (ICMP unreachable, connection refused or reset)
	OutcomeBadAnswer                  // an answer that failed validation
)

// Failure reports whether the outcome counts against the backend's health.
func (o Outcome) Failure() bool { return o != OutcomeAnswer }

// String names the outcome for logs and metrics.
func (o Outcome) String() string {
	switch o {
	case OutcomeAnswer:
		return "answer"
	case OutcomeServFail:
		return "servfail"
	case OutcomeTimeout:
		return "timeout"
	case OutcomeUnreachable:
		return "unreachable"
	case OutcomeBadAnswer:
		return "bad_answer"
	}
	return "unknown"
}

// Observer receives the outcomes of one backend's queries. Observe is called
// on the hot path: it must not block, lock for long or allocate.
type Observer interface {
	Observe(o Outcome, rttMicros int64)
}

// OutcomeSink hands out one Observer per backend. The proxy asks once, when
// it opens a backend's sockets, and keeps the Observer.
type OutcomeSink interface {
	Observer(backend string) Observer
}
