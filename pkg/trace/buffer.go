package trace

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sync"
)

// Buffer holds the bytes that form the trace in a temporary file, so long
// output does not grow memory, and keeps their IEEE CRC-32 and size as they
// are written. Write, ReadAt, Checksum and Size are safe for concurrent use:
// the executor writes while the uploader reads.
type Buffer struct {
	mu     sync.Mutex
	f      *os.File
	size   int64
	crc    uint32
	closed bool
}

// NewBuffer creates a Buffer in a new temporary file in dir (os.TempDir()
// if dir is empty). Close removes the file.
func NewBuffer(dir string) (*Buffer, error) {
	f, err := os.CreateTemp(dir, "trace-*.log")
	if err != nil {
		return nil, fmt.Errorf("trace: create buffer file: %w", err)
	}
	return &Buffer{f: f}, nil
}

// Write appends p to the trace.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, ErrClosed
	}
	n, err := b.f.Write(p)
	b.crc = crc32.Update(b.crc, crc32.IEEETable, p[:n])
	b.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("trace: write buffer file: %w", err)
	}
	return n, nil
}

// ReadAt reads trace bytes at off; it returns io.EOF at the end of what has
// been written so far.
func (b *Buffer) ReadAt(p []byte, off int64) (int, error) {
	b.mu.Lock()
	size, closed := b.size, b.closed
	b.mu.Unlock()
	if closed {
		return 0, ErrClosed
	}
	if off >= size {
		return 0, io.EOF
	}
	short := false
	if int64(len(p)) > size-off {
		p = p[:size-off]
		short = true
	}
	n, err := b.f.ReadAt(p, off)
	if err != nil {
		return n, fmt.Errorf("trace: read buffer file: %w", err)
	}
	if short {
		return n, io.EOF
	}
	return n, nil
}

// Size returns the number of bytes written.
func (b *Buffer) Size() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.size
}

// Checksum returns the CRC-32 (IEEE) of the bytes written, as GitLab
// expects it in output.checksum: "crc32:" and 8 lowercase hex digits.
func (b *Buffer) Checksum() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return fmt.Sprintf("crc32:%08x", b.crc)
}

// Close removes the file. Further writes and reads fail with ErrClosed.
func (b *Buffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	err := errors.Join(b.f.Close(), os.Remove(b.f.Name()))
	if err != nil {
		return fmt.Errorf("trace: remove buffer file: %w", err)
	}
	return nil
}
