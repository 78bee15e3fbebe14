package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/sandbox"
)

// startDetached starts a command in a new session, as `setsid cmd &` in a
// job would, and returns it with a channel that yields its wait status.
// These tests only ever use Local mode: a system-wide kill on a shared
// machine would take down everyone's processes, the test runner included.
func startDetached(t *testing.T, name string, args ...string) (*exec.Cmd, <-chan syscall.WaitStatus) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan syscall.WaitStatus, 1)
	go func() {
		_ = cmd.Wait()
		done <- cmd.ProcessState.Sys().(syscall.WaitStatus)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	return cmd, done
}

func waitStatus(t *testing.T, done <-chan syscall.WaitStatus) syscall.WaitStatus {
	t.Helper()
	select {
	case ws := <-done:
		return ws
	case <-time.After(30 * time.Second):
		t.Fatal("process still running 30s after the clean-up")
		return 0
	}
}

func TestKillOthersLocalKillsOnlyTheJobsGroups(t *testing.T) {
	tests := []struct {
		name       string
		script     string
		wantSignal syscall.Signal
	}{
		{name: "polite process ends on SIGTERM", script: `: > "$1"; exec sleep 1000`, wantSignal: syscall.SIGTERM},
		{name: "process ignoring SIGTERM gets SIGKILL", script: `trap "" TERM; : > "$1"; while :; do sleep 1; done`, wantSignal: syscall.SIGKILL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The script marks itself ready once its signal handling is set,
			// so the clean-up never races the trap.
			ready := filepath.Join(t.TempDir(), "ready")
			job, jobDone := startDetached(t, "sh", "-c", tt.script, "sh", ready)
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				if _, err := os.Stat(ready); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("job script never became ready")
				}
			}
			bystander, bystanderDone := startDetached(t, "sleep", "1000")

			s := &sandbox.Sandbox{Cleanup: sandbox.CleanupLocal, Grace: 300 * time.Millisecond}
			killed, err := s.KillOthers(context.Background(), job.Process.Pid)
			if err != nil {
				t.Fatalf("KillOthers: %v", err)
			}
			if !slices.Contains(killed, job.Process.Pid) {
				t.Errorf("KillOthers() = %v, want it to contain the job's pid %d", killed, job.Process.Pid)
			}
			if slices.Contains(killed, bystander.Process.Pid) {
				t.Errorf("KillOthers() = %v, killed the bystander %d outside the scope", killed, bystander.Process.Pid)
			}
			ws := waitStatus(t, jobDone)
			if !ws.Signaled() || ws.Signal() != tt.wantSignal {
				t.Errorf("job process ended with %v, want signal %v", ws, tt.wantSignal)
			}
			select {
			case ws := <-bystanderDone:
				t.Errorf("bystander ended with %v, want it still running", ws)
			default:
			}
		})
	}
}

func TestKillOthersLocalWithoutGroupsKillsNothing(t *testing.T) {
	bystander, done := startDetached(t, "sleep", "1000")
	s := &sandbox.Sandbox{}
	killed, err := s.KillOthers(context.Background())
	if err != nil || len(killed) != 0 {
		t.Fatalf("KillOthers() = %v, %v; want nothing killed", killed, err)
	}
	select {
	case ws := <-done:
		t.Errorf("process %d ended with %v, want it still running", bystander.Process.Pid, ws)
	default:
	}
}

func TestStopGroupKillsBackgroundChildren(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "bg.pid")
	cmd, done := startDetached(t, "sh", "-c", `sleep 1000 & echo $! > "$1"; wait`, "sh", pidFile)
	var bg int
	for deadline := time.Now().Add(30 * time.Second); bg == 0; {
		if b, err := os.ReadFile(pidFile); err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
			if _, err := fmt.Sscan(string(b), &bg); err != nil {
				t.Fatalf("parse pid %q: %v", b, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("background pid never written")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := sandbox.StopGroup(context.Background(), cmd.Process.Pid, time.Second); err != nil {
		t.Fatalf("StopGroup: %v", err)
	}
	waitStatus(t, done)
	if alive(bg) {
		t.Errorf("background process %d still alive after StopGroup", bg)
	}
}

func TestStopGroupRefusesOwnGroup(t *testing.T) {
	for _, pgid := range []int{0, 1, syscall.Getpgrp()} {
		if err := sandbox.StopGroup(context.Background(), pgid, time.Millisecond); err == nil {
			t.Errorf("StopGroup(%d) = nil, want an error", pgid)
		}
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	procs, err := sandbox.ListProcesses("/proc")
	if err != nil {
		return true
	}
	for _, p := range procs {
		if p.PID == pid {
			return p.State != "Z"
		}
	}
	return false
}

func TestWipe(t *testing.T) {
	base := t.TempDir()
	build := filepath.Join(base, "builds")
	home := filepath.Join(base, "home")
	outside := filepath.Join(base, "outside.txt")
	mustWrite(t, outside, "keep me")
	mustWrite(t, filepath.Join(build, "project", "main.go"), "package main")
	mustWrite(t, filepath.Join(build, "gomod", "mod", "x.go"), "read-only")
	mustWrite(t, filepath.Join(home, ".bash_history"), "secret")
	if err := os.Symlink(outside, filepath.Join(home, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(base, filepath.Join(build, "dirlink")); err != nil {
		t.Fatal(err)
	}
	// Like the Go module cache: read-only files in read-only directories.
	for _, p := range []string{filepath.Join(build, "gomod", "mod", "x.go"), filepath.Join(build, "gomod", "mod"), filepath.Join(build, "gomod")} {
		if err := os.Chmod(p, 0o555); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(base, "missing")

	s := &sandbox.Sandbox{Cleanup: sandbox.CleanupLocal}
	if err := s.Wipe(build, home, missing); err != nil {
		t.Fatalf("Wipe: %v", err)
	}
	for _, dir := range []string{build, home, missing} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatalf("read %s after Wipe: %v", dir, err)
		}
		if len(entries) != 0 {
			t.Errorf("%s has %d entries after Wipe, want 0", dir, len(entries))
		}
	}
	if b, err := os.ReadFile(outside); err != nil || string(b) != "keep me" {
		t.Errorf("file outside the wiped dirs = %q, %v; want it intact", b, err)
	}
}

func TestWipeRefusesDangerousDirs(t *testing.T) {
	tests := []struct {
		name string
		mode sandbox.Cleanup
		dir  string
	}{
		{name: "empty", mode: sandbox.CleanupSystem, dir: ""},
		{name: "relative", mode: sandbox.CleanupSystem, dir: "builds"},
		{name: "root", mode: sandbox.CleanupSystem, dir: "/"},
		{name: "unclean", mode: sandbox.CleanupSystem, dir: "/nonexistent-wipe-test/../nonexistent-wipe-test"},
		{name: "top-level in local", mode: sandbox.CleanupLocal, dir: "/nonexistent-wipe-test"},
		{name: "top-level in descendants", mode: sandbox.CleanupDescendants, dir: "/nonexistent-wipe-test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &sandbox.Sandbox{Cleanup: tt.mode}
			if err := s.Wipe(tt.dir); err == nil {
				t.Errorf("Wipe(%q) in %v mode = nil, want an error", tt.dir, tt.mode)
			}
		})
	}
	if _, err := os.Stat("/nonexistent-wipe-test"); err == nil {
		t.Errorf("a refused Wipe created /nonexistent-wipe-test")
		_ = os.Remove("/nonexistent-wipe-test")
	}
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
