package sandbox_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/sandbox"
)

// A process table as Lambda might show it: init (1), the runtime interface
// emulator or bootstrap (7), the executor (10), an extension started before
// the first job (8), kernel threads, and what a job left behind.
var lambdaTable = []sandbox.Process{
	{PID: 1, PPID: 0, PGID: 1, Comm: "init", State: "S"},
	{PID: 2, PPID: 0, PGID: 0, Comm: "kthreadd", State: "S", Kernel: true},
	{PID: 3, PPID: 2, PGID: 0, Comm: "kworker/0:0", State: "I", Kernel: true},
	{PID: 7, PPID: 1, PGID: 7, Comm: "aws-lambda-rie", State: "S", StartTime: 70},
	{PID: 8, PPID: 1, PGID: 8, Comm: "extension", State: "S", StartTime: 80},
	{PID: 10, PPID: 7, PGID: 7, Comm: "bootstrap", State: "S", StartTime: 100},
	{PID: 20, PPID: 10, PGID: 20, Comm: "bash", State: "S", StartTime: 200},
	{PID: 21, PPID: 20, PGID: 20, Comm: "sleep", State: "S", StartTime: 210},
	{PID: 30, PPID: 1, PGID: 30, Comm: "daemon (setsid)", State: "S", StartTime: 300},
	{PID: 31, PPID: 1, PGID: 20, Comm: "orphan", State: "T", StartTime: 310},
	{PID: 40, PPID: 1, PGID: 40, Comm: "zombie", State: "Z", StartTime: 400},
	{PID: 50, PPID: 10, PGID: 7, Comm: "sibling-in-our-group", State: "S", StartTime: 500},
}

func TestVictims(t *testing.T) {
	tests := []struct {
		name  string
		procs []sandbox.Process
		self  int
		scope sandbox.Scope
		want  []int
	}{
		{
			name:  "system-wide spares init, ancestors, self, kernel threads and zombies",
			procs: lambdaTable,
			self:  10,
			scope: sandbox.Scope{SystemWide: true},
			want:  []int{8, 20, 21, 30, 31, 50},
		},
		{
			name:  "system-wide spares the baseline",
			procs: lambdaTable,
			self:  10,
			scope: sandbox.Scope{SystemWide: true, Keep: []sandbox.Key{{PID: 8, StartTime: 80}}},
			want:  []int{20, 21, 30, 31, 50},
		},
		{
			name:  "a reused pid is not protected by the baseline",
			procs: lambdaTable,
			self:  10,
			scope: sandbox.Scope{SystemWide: true, Keep: []sandbox.Key{{PID: 8, StartTime: 1}}},
			want:  []int{8, 20, 21, 30, 31, 50},
		},
		{
			name:  "scoped kills only members of the job's groups",
			procs: lambdaTable,
			self:  10,
			scope: sandbox.Scope{Groups: []int{20, 30}},
			want:  []int{20, 21, 30, 31},
		},
		{
			name:  "descendants: children and grandchildren, never the group's other members",
			procs: lambdaTable,
			self:  10,
			scope: sandbox.Scope{Descendants: true},
			want:  []int{20, 21, 50},
		},
		{
			name:  "descendants of an executor without children: nothing",
			procs: lambdaTable,
			self:  21,
			scope: sandbox.Scope{Descendants: true},
			want:  nil,
		},
		{
			name:  "scoped without groups kills nothing",
			procs: lambdaTable,
			self:  10,
			scope: sandbox.Scope{},
			want:  nil,
		},
		{
			name:  "scoped ignores our own group, group 0 and group 1",
			procs: lambdaTable,
			self:  10,
			scope: sandbox.Scope{Groups: []int{7, 0, 1}},
			want:  nil,
		},
		{
			name:  "the executor as pid 1 protects itself",
			procs: []sandbox.Process{{PID: 1, PGID: 1, State: "S"}, {PID: 5, PPID: 1, PGID: 5, State: "R"}},
			self:  1,
			scope: sandbox.Scope{SystemWide: true},
			want:  []int{5},
		},
		{
			name: "a parent cycle in a corrupt table terminates",
			procs: []sandbox.Process{
				{PID: 10, PPID: 11, PGID: 10, State: "S"},
				{PID: 11, PPID: 10, PGID: 11, State: "S"},
				{PID: 12, PPID: 1, PGID: 12, State: "S"},
			},
			self:  10,
			scope: sandbox.Scope{SystemWide: true},
			want:  []int{12},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := sandbox.Victims(tt.procs, tt.self, tt.scope)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Victims() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestListProcessesParsesStat(t *testing.T) {
	root := t.TempDir()
	write := func(pid int, stat string) {
		t.Helper()
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Field layout of proc(5): pid (comm) state ppid pgrp session tty tpgid
	// flags minflt cminflt majflt cmajflt utime stime cutime cstime priority
	// nice threads itrealvalue starttime ...
	write(42, "42 (we) ird (x) R 7 42 42 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0\n")
	write(2, "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n")
	write(9, "") // a process that exited while being read
	if err := os.MkdirAll(filepath.Join(root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}

	got, err := sandbox.ListProcesses(root)
	if err != nil {
		t.Fatalf("ListProcesses: %v", err)
	}
	slices.SortFunc(got, func(a, b sandbox.Process) int { return a.PID - b.PID })
	want := []sandbox.Process{
		{PID: 2, PPID: 0, PGID: 0, Comm: "kthreadd", State: "S", Kernel: true, StartTime: 5},
		{PID: 42, PPID: 7, PGID: 42, Comm: "we) ird (x", State: "R", StartTime: 12345},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ListProcesses() = %+v, want %+v", got, want)
	}
}

func TestChooseCleanup(t *testing.T) {
	lambda := map[string]string{"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"}
	tests := []struct {
		name     string
		setting  string
		env      map[string]string
		host     sandbox.Host
		want     sandbox.Cleanup
		wantRule string
	}{
		{"outside Lambda", "", nil, sandbox.Host{PID: 1}, sandbox.CleanupLocal, "AWS_LAMBDA_RUNTIME_API is not set"},
		{"set outside Lambda", "system", nil, sandbox.Host{PID: 40, PPID: 7}, sandbox.CleanupSystem, "set by the operator"},
		{"set beats PID 1", "descendants", lambda, sandbox.Host{PID: 1}, sandbox.CleanupDescendants, "set by the operator"},
		{"PID 1 of a namespace", "", lambda, sandbox.Host{PID: 1, OwnPIDNamespace: true}, sandbox.CleanupSystem, "PID 1"},
		{"child of init in a namespace of its own", "", lambda, sandbox.Host{PID: 9, PPID: 1, OwnPIDNamespace: true}, sandbox.CleanupSystem, "child of PID 1"},
		{"child of the machine's init: parent pid alone", "", lambda, sandbox.Host{PID: 4242, PPID: 1}, sandbox.CleanupDescendants, "machine's initial PID namespace"},
		{"emulator on a shared machine", "", lambda, sandbox.Host{PID: 4242, PPID: 4200}, sandbox.CleanupDescendants, "parent pid 4200"},
		{"emulator in a container", "", lambda, sandbox.Host{PID: 30, PPID: 20, OwnPIDNamespace: true}, sandbox.CleanupDescendants, "parent pid 20"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, rule, err := sandbox.DecideCleanup(tt.setting, func(k string) string { return tt.env[k] }, tt.host)
			if err != nil || got != tt.want || !strings.Contains(rule, tt.wantRule) {
				t.Errorf("ChooseCleanup() = %v, %q, %v; want %v by a rule saying %q", got, rule, err, tt.want, tt.wantRule)
			}
			if p, err := sandbox.ParseCleanup(got.String()); err != nil || p != got {
				t.Errorf("ParseCleanup(%q) = %v, %v; want %v", got.String(), p, err, got)
			}
		})
	}
	if _, _, err := sandbox.DecideCleanup("everything", func(string) string { return "" }, sandbox.Host{}); err == nil ||
		!strings.Contains(err.Error(), "want local, descendants or system") {
		t.Errorf("setting everything: error %v, want one listing the modes", err)
	}
}
