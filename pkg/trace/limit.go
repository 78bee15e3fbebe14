package trace

import (
	"fmt"
	"io"
	"unicode/utf8"
)

// DefaultLimit is the runner-side output limit, 4 MiB as in gitlab-runner.
const DefaultLimit = 4 << 20

// Limit is an io.Writer that passes on valid UTF-8 (invalid bytes become
// U+FFFD) until Max bytes have been written, then writes a bold yellow
// notice once and drops everything after it. A multi-byte character is never
// split, neither across writes nor at the limit. A Limit is not safe for
// concurrent use.
type Limit struct {
	w        io.Writer
	max      int64
	written  int64
	exceeded bool
	partial  []byte // incomplete UTF-8 sequence at the end of the last write
	out      []byte
}

// NewLimit returns a Limit writing at most max bytes (DefaultLimit if
// max <= 0), plus the notice, to w.
func NewLimit(w io.Writer, max int64) *Limit {
	if max <= 0 {
		max = DefaultLimit
	}
	return &Limit{w: w, max: max}
}

// LimitNotice is written once when the limit is reached.
func LimitNotice(max int64) string {
	return fmt.Sprintf("\n%sJob's log exceeded limit of %d bytes.\nJob execution will continue but no more output will be collected.%s\n",
		ANSIBoldYellow, max, ANSIReset)
}

// Exceeded reports whether output has been dropped.
func (l *Limit) Exceeded() bool { return l.exceeded }

// Write always reports len(p) written unless the underlying writer fails:
// output beyond the limit is dropped, not refused, so the job carries on.
func (l *Limit) Write(p []byte) (int, error) {
	if l.exceeded {
		return len(p), nil
	}
	b := p
	if len(l.partial) > 0 {
		l.out = append(append(l.out[:0], l.partial...), p...)
		b = l.out
		l.partial = l.partial[:0]
	}
	// Hold back an incomplete sequence at the end for the next write.
	if cut := incompleteTail(b); cut < len(b) {
		l.partial = append(l.partial, b[cut:]...)
		b = b[:cut]
	}
	if err := l.emit(b); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes a held-back incomplete UTF-8 sequence as U+FFFD. Call it at
// the end of the output.
func (l *Limit) Flush() error {
	if len(l.partial) == 0 || l.exceeded {
		l.partial = l.partial[:0]
		return nil
	}
	b := append([]byte(nil), l.partial...)
	l.partial = l.partial[:0]
	return l.emit(b)
}

// emit writes b, which ends at a character boundary, after replacing
// invalid UTF-8, up to the limit.
func (l *Limit) emit(b []byte) error {
	if !utf8.Valid(b) {
		b = []byte(string(toValidUTF8(b)))
	}
	room := l.max - l.written
	if int64(len(b)) > room {
		cut := int(room)
		for cut > 0 && !utf8.RuneStart(b[cut]) {
			cut--
		}
		b = append(b[:cut:cut], LimitNotice(l.max)...)
		l.exceeded = true
		l.partial = l.partial[:0]
	}
	if len(b) == 0 {
		return nil
	}
	l.written += int64(len(b))
	if _, err := l.w.Write(b); err != nil {
		return fmt.Errorf("trace: write limited output: %w", err)
	}
	return nil
}

// incompleteTail returns where an incomplete but so far valid UTF-8
// sequence at the end of b starts, or len(b).
func incompleteTail(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}

// toValidUTF8 replaces every invalid byte with U+FFFD.
func toValidUTF8(b []byte) []byte {
	out := make([]byte, 0, len(b)+8)
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
		} else {
			out = append(out, b[:n]...)
		}
		b = b[n:]
	}
	return out
}
