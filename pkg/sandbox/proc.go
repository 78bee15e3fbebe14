package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
)

// pfKthread is the PF_KTHREAD bit of the flags field of /proc/<pid>/stat.
const pfKthread = 0x00200000

// Process is what the kill decision needs to know about one process.
type Process struct {
	PID  int
	PPID int
	PGID int
	// Comm is the command name (for logs only).
	Comm string
	// State is the one-letter state of /proc/<pid>/stat; "Z" is a zombie,
	// which is already dead and cannot be killed.
	State string
	// Kernel is true for kernel threads, which are never signalled.
	Kernel bool
	// StartTime is the start time in clock ticks since boot; with PID it
	// identifies a process even after its pid is reused.
	StartTime uint64
}

// Key identifies one process instance: a pid plus its start time.
type Key struct {
	PID       int
	StartTime uint64
}

// Key returns p's identity.
func (p Process) Key() Key { return Key{PID: p.PID, StartTime: p.StartTime} }

// maxListPasses bounds how often ListProcesses reads the proc directory.
const maxListPasses = 8

// ListProcesses reads every process of the proc file system mounted at root
// (normally "/proc"). Processes that exit while being read are skipped.
//
// A process that forks and exits while the list is read leaves a child
// that a single pass over the directory cannot see. So the directory is
// read again, and the pids that appeared meanwhile read too, until a pass
// brings no new pid (maxListPasses at most); each pass reads the newest
// pids first, as a child usually has a higher pid than its parent.
func ListProcesses(root string) ([]Process, error) {
	seen := map[int]bool{}
	var procs []Process
	for pass := 0; pass < maxListPasses; pass++ {
		pids, err := readPIDs(root)
		if err != nil {
			return nil, err
		}
		fresh := 0
		for _, pid := range slices.Backward(pids) {
			if seen[pid] {
				continue
			}
			seen[pid] = true
			fresh++
			p, err := readProcess(root, pid)
			if vanished(err) {
				continue
			}
			if err != nil {
				return nil, err
			}
			procs = append(procs, p)
		}
		if pass > 0 && fresh == 0 {
			break
		}
	}
	return procs, nil
}

// readPIDs returns the pids in the proc directory, in ascending order.
func readPIDs(root string) ([]int, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("sandbox: list processes: %w", err)
	}
	pids := make([]int, 0, len(entries))
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

var errVanished = errors.New("process vanished")

// vanished reports whether err says the process exited while it was being
// read: its /proc directory is gone (ENOENT), or it was still there when
// opened but gone by the read (ESRCH), or the read came back empty.
func vanished(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) || errors.Is(err, errVanished)
}

// readProcess parses /proc/<pid>/stat.
func readProcess(root string, pid int) (Process, error) {
	b, err := os.ReadFile(filepath.Join(root, strconv.Itoa(pid), "stat"))
	if err != nil {
		return Process{}, fmt.Errorf("sandbox: read process %d: %w", pid, err)
	}
	p, ok := parseStat(b)
	if !ok {
		// An empty read happens when the process exits mid-read.
		return Process{}, errVanished
	}
	return p, nil
}

// parseStat parses one /proc/<pid>/stat line. The command name sits in
// parentheses and may itself contain spaces and parentheses, so the fields
// are counted from the last ')'.
func parseStat(b []byte) (Process, bool) {
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return Process{}, false
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return Process{}, false
	}
	f := bytes.Fields(b[closing+1:])
	// f[0]=state f[1]=ppid f[2]=pgrp f[6]=flags f[19]=starttime
	if len(f) < 20 {
		return Process{}, false
	}
	ppid, err1 := strconv.Atoi(string(f[1]))
	pgid, err2 := strconv.Atoi(string(f[2]))
	flags, err3 := strconv.ParseUint(string(f[6]), 10, 64)
	start, err4 := strconv.ParseUint(string(f[19]), 10, 64)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return Process{}, false
	}
	return Process{
		PID:       pid,
		PPID:      ppid,
		PGID:      pgid,
		Comm:      string(b[open+1 : closing]),
		State:     string(f[0]),
		Kernel:    flags&pfKthread != 0 || pid == 2 || ppid == 2,
		StartTime: start,
	}, true
}
