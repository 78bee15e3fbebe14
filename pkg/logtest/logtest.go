// Package logtest captures and checks the logs of code under test: a
// buffer that loggers shared by many goroutines write to while the test
// reads it, and RepeatedKeys, which finds an attribute written twice on
// one JSON log line.
package logtest

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer guarded by a mutex, so that a logger may write
// to it from many goroutines while a test reads what it holds so far. The
// zero value is an empty buffer ready to use.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p; it is safe to call from many goroutines.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
