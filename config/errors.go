package config

import (
	"fmt"
	"strings"
)

// Error is one problem in a configuration file. Its text is the
// "FILE:LINE: message" form that editors and CI logs turn into links.
type Error struct {
	File string
	// Line is 1-based; 0 when the problem belongs to no line (the file
	// cannot be read).
	Line int
	Msg  string
	// cause is kept so errors.Is(err, fs.ErrNotExist) works on a failed Load.
	cause error
	// col orders problems that share a line as they read left to right.
	col int
}

// Error formats the problem as "FILE:LINE: message".
func (e Error) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Unwrap returns the underlying cause, if any (an I/O error).
func (e Error) Unwrap() error { return e.cause }

// Errors is every problem found in one configuration, sorted by line.
// Load and Parse return it as *Errors so an operator fixes the file in
// one pass instead of one error per run.
type Errors struct {
	List []Error
}

// Error prints one "FILE:LINE: message" per line.
func (e *Errors) Error() string {
	lines := make([]string, len(e.List))
	for i, p := range e.List {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes each problem to errors.Is and errors.As.
func (e *Errors) Unwrap() []error {
	errs := make([]error, len(e.List))
	for i, p := range e.List {
		errs[i] = p
	}
	return errs
}
