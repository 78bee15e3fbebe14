// Package envvar reads configuration from environment variables, the one
// way every package's ConfigFromEnv parses them: values are trimmed, an
// unset or empty variable leaves the zero value (the default), and every
// value that does not parse becomes an error naming the variable. Values
// are never echoed for the variables a caller marks secret.
package envvar

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Lookup finds a variable, as os.LookupEnv does.
type Lookup func(string) (string, bool)

// Reader reads variables through a Lookup and collects the errors of
// those that do not parse. Use one Reader per ConfigFromEnv.
type Reader struct {
	lookup Lookup
	errs   []error
}

// New returns a Reader over lookup; nil means os.LookupEnv.
func New(lookup Lookup) *Reader {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	return &Reader{lookup: lookup}
}

// Set reports whether the variable is set, even to "".
func (r *Reader) Set(name string) bool {
	_, ok := r.lookup(name)
	return ok
}

// String returns the trimmed value, "" when unset.
func (r *Reader) String(name string) string {
	v, _ := r.lookup(name)
	return strings.TrimSpace(v)
}

// StringOr returns the value, or def when the variable is unset or empty.
func (r *Reader) StringOr(name, def string) string {
	if v := r.String(name); v != "" {
		return v
	}
	return def
}

// List returns the comma-separated values, trimmed, without empty ones.
func (r *Reader) List(name string) []string {
	var out []string
	for v := range strings.SplitSeq(r.String(name), ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// Int returns a whole number of at least min; 0 when unset.
func (r *Reader) Int(name string, min int) int {
	s := r.String(name)
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: want a whole number, %d or more", name, s, min))
		return 0
	}
	return n
}

// Seconds returns a positive whole number of seconds as a duration; 0 when
// unset.
func (r *Reader) Seconds(name string) time.Duration {
	s := r.String(name)
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: want a whole number of seconds above 0", name, s))
		return 0
	}
	return time.Duration(n) * time.Second
}

// Duration returns a positive Go duration such as 30s or 1m; 0 when unset.
func (r *Reader) Duration(name string) time.Duration {
	s := r.String(name)
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: want a positive duration such as 30s or 1m", name, s))
		return 0
	}
	return d
}

// Bool returns true or false; false when unset.
func (r *Reader) Bool(name string) bool {
	s := r.String(name)
	if s == "" {
		return false
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: want true or false", name, s))
	}
	return b
}

// Float returns a number of at least 0; 0 when unset.
func (r *Reader) Float(name string) float64 {
	s := r.String(name)
	if s == "" {
		return 0
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		r.errs = append(r.errs, fmt.Errorf("%s=%q: want a number, 0 or more", name, s))
		return 0
	}
	return f
}

// Fail records an error of the caller's own check.
func (r *Reader) Fail(err error) { r.errs = append(r.errs, err) }

// Err returns the errors so far, prefixed with what was read, or nil.
func (r *Reader) Err(what string) error {
	if len(r.errs) == 0 {
		return nil
	}
	return fmt.Errorf("%s: read configuration: %w", what, errors.Join(r.errs...))
}
