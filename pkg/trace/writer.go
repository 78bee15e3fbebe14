package trace

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// WriterOptions configure a Writer. The zero value masks only the default
// token formats and URL parameters and limits output to DefaultLimit.
type WriterOptions struct {
	Mask MaskOptions
	// Limit is the output limit in bytes (DefaultLimit if <= 0).
	Limit int64
	// Now is the clock for section markers and timestamps (time.Now if
	// nil).
	Now func() time.Time
	// Timestamps starts every line with its time, as gitlab-runner does
	// when the job sets FF_TIMESTAMPS (see Writer.Stream).
	Timestamps bool
}

// Writer is what the executor writes job output to: a Masker feeding a
// Limit feeding a Buffer. It is safe for concurrent use, so stdout and
// stderr copiers may share it.
type Writer struct {
	mu     sync.Mutex
	masker *Masker
	stamp  *timestamper // nil without timestamps
	limit  *Limit
	buf    *Buffer
	now    func() time.Time
}

// NewWriter returns a Writer appending to buf: a Masker, then (with
// Timestamps) the line timestamps, then the Limit, then buf.
func NewWriter(buf *Buffer, opts WriterOptions) *Writer {
	l := NewLimit(buf, opts.Limit)
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	w := &Writer{limit: l, buf: buf, now: now}
	var next io.Writer = l
	if opts.Timestamps {
		w.stamp = newTimestamper(l, now)
		next = w.stamp
	}
	w.masker = NewMasker(next, opts.Mask)
	return w
}

// Stream returns a writer into the trace whose lines are marked as stream
// id (StreamWork for a script's output) when timestamps are on; without
// them it is the Writer itself. A line that another stream's write
// completes keeps the stream it started with.
func (w *Writer) Stream(id int) io.Writer {
	if w.stamp == nil || id == StreamExecutor {
		return w
	}
	return streamWriter{w: w, id: byte(id)}
}

type streamWriter struct {
	w  *Writer
	id byte
}

func (s streamWriter) Write(p []byte) (int, error) {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	s.w.stamp.stream = s.id
	defer func() { s.w.stamp.stream = StreamExecutor }()
	return s.w.masker.Write(p)
}

// Write masks p and appends it to the trace, up to the output limit. It
// reports len(p) written even when output is dropped at the limit.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.masker.Write(p)
}

// WriteString writes s.
func (w *Writer) WriteString(s string) (int, error) {
	return w.Write([]byte(s))
}

// Printf writes formatted text.
func (w *Writer) Printf(format string, args ...any) {
	_, _ = fmt.Fprintf(w, format, args...)
}

// Notef writes a line in bold green, as gitlab-runner echoes commands.
func (w *Writer) Notef(format string, args ...any) {
	w.Printf("%s%s%s\n", ANSIBoldGreen, fmt.Sprintf(format, args...), ANSIReset)
}

// Warningf writes a line in yellow prefixed with "WARNING: ".
func (w *Writer) Warningf(format string, args ...any) {
	w.Printf("%sWARNING: %s%s\n", ANSIYellow, fmt.Sprintf(format, args...), ANSIReset)
}

// Errorf writes a line in bold red prefixed with "ERROR: ".
func (w *Writer) Errorf(format string, args ...any) {
	w.Printf("%sERROR: %s%s\n", ANSIBoldRed, fmt.Sprintf(format, args...), ANSIReset)
}

// SectionStart opens a collapsible section with a bold cyan header line.
func (w *Writer) SectionStart(name, header string) {
	_, _ = w.WriteString(SectionStartLine(w.now(), name, header))
}

// SectionEnd closes the section opened with the same name.
func (w *Writer) SectionEnd(name string) {
	_, _ = w.WriteString(SectionEndLine(w.now(), name))
}

// LimitExceeded reports whether output was dropped at the limit.
func (w *Writer) LimitExceeded() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.limit.Exceeded()
}

// Close releases the bytes the Masker and the Limit hold back into the
// Buffer; later writes fail. It does not close the Buffer, whose contents
// are still to be uploaded.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.masker.Close()
	return errors.Join(err, w.limit.Flush())
}
