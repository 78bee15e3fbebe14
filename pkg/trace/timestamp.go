package trace

import (
	"bytes"
	"io"
	"time"
)

// Streams of a trace, as gitlab-runner numbers them in timestamped lines.
const (
	// StreamExecutor is the runner's own lines (sections, notices).
	StreamExecutor = 0
	// StreamWork is the output of the job's scripts.
	StreamWork = 1
)

// timestamper starts every line with gitlab-runner's log-line header,
// "<time> <stream><O|E><' '|'+'>", the time in UTC with microseconds
// (2024-06-10T08:58:41.123456Z), which GitLab's log viewer turns into a
// timestamp per line: the time is when the line's first byte arrived, the
// stream two hex digits (StreamExecutor, StreamWork) followed by O
// (standard output; the job's standard error is merged into it to keep the
// order) and a space (a full line: nothing is ever split into
// continuations here). It is not safe for concurrent use.
type timestamper struct {
	w       io.Writer
	now     func() time.Time
	stream  byte
	midLine bool
	buf     []byte
	// sec and secText cache the formatted date and time up to the second:
	// lines of the same second only write their microseconds.
	sec     int64
	secText []byte
}

func newTimestamper(w io.Writer, now func() time.Time) *timestamper {
	return &timestamper{w: w, now: now}
}

// Write writes p with a header before each line that starts in it.
func (t *timestamper) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	t.buf = t.buf[:0]
	rest := p
	// Every line that starts in p arrived now: one clock reading each.
	var now time.Time
	for len(rest) > 0 {
		if !t.midLine {
			if now.IsZero() {
				now = t.now()
			}
			t.buf = t.header(t.buf, now)
			t.midLine = true
		}
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			t.buf = append(t.buf, rest...)
			break
		}
		t.buf = append(t.buf, rest[:i+1]...)
		rest = rest[i+1:]
		t.midLine = false
	}
	if _, err := t.w.Write(t.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (t *timestamper) header(b []byte, now time.Time) []byte {
	const hex = "0123456789abcdef"
	now = now.UTC()
	if sec := now.Unix(); sec != t.sec || t.secText == nil {
		t.sec, t.secText = sec, now.AppendFormat(t.secText[:0], "2006-01-02T15:04:05.")
	}
	b = append(b, t.secText...)
	us := now.Nanosecond() / 1000
	var digits [6]byte
	for i := 5; i >= 0; i-- {
		digits[i] = byte('0' + us%10)
		us /= 10
	}
	b = append(b, digits[:]...)
	return append(b, 'Z', ' ', hex[t.stream>>4], hex[t.stream&0x0f], 'O', ' ')
}
