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

// timestampLayout is the time at the head of each line when timestamps
// are on: UTC with microseconds, as gitlab-runner writes it (FF_TIMESTAMPS).
const timestampLayout = "2006-01-02T15:04:05.000000Z"

// timestamper starts every line with gitlab-runner's log-line header,
// "<time> <stream><O|E><' '|'+'>", which GitLab's log viewer turns into a
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
	for len(rest) > 0 {
		if !t.midLine {
			t.buf = t.header(t.buf)
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

func (t *timestamper) header(b []byte) []byte {
	const hex = "0123456789abcdef"
	b = t.now().UTC().AppendFormat(b, timestampLayout)
	return append(b, ' ', hex[t.stream>>4], hex[t.stream&0x0f], 'O', ' ')
}
