package testlab

import "testing"

// Hooks for starters_test.go, which is an external test (package
// testlab_test) so that it can import the lab packages built on testlab
// (birdlab, anycastlab, faultlab) and check their starters too.

// Outcome is how a test body run by RunOutcome ended.
type Outcome struct {
	Skipped, Failed bool
	Msg             string
}

// RunOutcome runs fn as a test body would run and reports how it ended.
func RunOutcome(t *testing.T, fn func(testing.TB)) Outcome {
	o := outcome(t, fn)
	return Outcome{Skipped: o.skipped, Failed: o.failed, Msg: o.msg}
}

// SetShort and WithoutPrograms are setShort and withoutPrograms.
var (
	SetShort        = setShort
	WithoutPrograms = withoutPrograms
)
