package sandbox_test

import (
	"fmt"
	"io/fs"
	"syscall"
	"testing"

	"gitlab-serverless-runner/pkg/sandbox"
)

// A process that exits while its stat file is read makes the read fail with
// ENOENT (directory gone) or ESRCH (opened, gone by the read): either way
// it is skipped, never an error that stops a clean-up.
func TestVanishedProcessReads(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&fs.PathError{Op: "open", Path: "/proc/7/stat", Err: syscall.ENOENT}, true},
		{&fs.PathError{Op: "read", Path: "/proc/7/stat", Err: syscall.ESRCH}, true},
		{fmt.Errorf("sandbox: read process 7: %w", &fs.PathError{Op: "read", Path: "/proc/7/stat", Err: syscall.ESRCH}), true},
		{&fs.PathError{Op: "open", Path: "/proc/7/stat", Err: syscall.EACCES}, false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := sandbox.Vanished(tt.err); got != tt.want {
			t.Errorf("vanished(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
