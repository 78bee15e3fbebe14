package lambdatest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/logtest"
)

// Addresses inside every environment: the Runtime API where Lambda has it,
// and the emulator's invoke endpoint, which Lambda does not have inside.
const (
	RuntimeAPIAddr = "127.0.0.1:9001"
	invokeAddr     = "127.0.0.1:8080"
	invokePath     = "/2015-03-31/functions/function/invocations"
)

// DefaultHarnessTimeout is the function timeout when
// HarnessOptions.Timeout is zero: the emulator's own default.
const DefaultHarnessTimeout = 300 * time.Second

// HarnessOptions configures a Harness: one Lambda function.
type HarnessOptions struct {
	// Bootstrap is the function's bootstrap binary (see Build). Required.
	Bootstrap string
	// Name is the function's name (AWS_LAMBDA_FUNCTION_NAME); "function"
	// when empty.
	Name string
	// Env is the function's configuration: variables added to every
	// environment, over the test process's own environment.
	Env map[string]string
	// EnvFor adds variables for one environment, given its private
	// directory (Environment.Dir), e.g. builds and home directories of
	// its own.
	EnvFor func(dir string) map[string]string
	// Timeout is the function timeout, in whole seconds (rounded up);
	// zero means DefaultHarnessTimeout.
	Timeout time.Duration
	// TenantIsolation puts the function in tenant isolation mode: an
	// invocation without a tenant id is refused, and Register makes
	// invoke.Local refuse it at Invoke, as Lambda does. Without it the
	// tenant id still routes (environments are never shared between
	// tenant ids, "" being one), as a function that trusts its callers.
	TenantIsolation bool
	// Forward lists loopback addresses of this machine ("127.0.0.1:port",
	// such as the fake GitLab's) that every environment reaches at the
	// same address. Nothing else outside an environment is reachable from
	// it. The ports 8080 and 9001 are taken inside.
	Forward []string
}

// Harness runs one Lambda function the way Lambda runs it, in execution
// environments, for tests that need Lambda's isolation rules to hold, such
// as the adversarial tests of "one job, one environment".
//
// # What is like Lambda
//
//   - One environment is one Lambda Runtime Interface Emulator and
//     everything it starts, in a cgroup, a network namespace, a PID
//     namespace and a mount namespace of its own. The emulator is the
//     environment's PID 1, as Lambda's init is, and the bootstrap its
//     child. The Runtime API listens on 127.0.0.1:9001 (RuntimeAPIAddr)
//     in every environment, and /proc/net/tcp shows an environment only
//     its own sockets, so a job that looks for the Runtime API finds its
//     own environment's and no other.
//   - Invocations are routed by tenant id as in tenant isolation mode: an
//     idle environment of the tenant is reused (the most recently used
//     one); a tenant id never seen, or one whose environments are all
//     busy, gets a new environment; an invocation never goes to an
//     environment of another tenant id. Without TenantIsolation the
//     tenant id "" is one tenant like any other.
//   - Between invocations an environment is frozen (cgroup v2 freezer): from
//     the moment the emulator answers (which it does once the bootstrap
//     has asked for the next invocation, or has exited) until the next
//     invocation is routed to it, none of its processes gets any CPU,
//     whatever they did to detach (double fork, setsid, nohup, reparenting
//     to PID 1). They run again with the next invocation routed to that
//     environment.
//   - An environment whose bootstrap exited is discarded, every process of
//     it killed, and the next invocation gets a new one. So is one whose
//     invocation timed out: the invocation ends as Lambda ends it, with
//     "Task timed out after N.00 seconds" (ErrorType Sandbox.Timedout).
//   - The processes hold no capability (dropped for good before the
//     emulator starts), cannot see the cgroup file systems, and reach
//     nothing outside their environment but the Forward addresses.
//   - The invocation's request id and tenant id reach the bootstrap as
//     Lambda passes them (Lambda-Runtime-Aws-Request-Id,
//     Lambda-Runtime-Aws-Tenant-Id).
//   - The Runtime API is the emulator's, which is Lambda's own init code:
//     during an invocation any process of the environment that calls
//     GET /next receives that invocation's event again; the first response
//     (or error) posted for it, by whichever process, is the invocation's
//     result; a pending GET /next receives the next invocation routed to
//     the environment (TestHarnessIntruderSeesOnlyItsEnvironment shows
//     each).
//
// # What is not
//
//   - The environments share this machine's file system and run as user
//     id 0 (without capabilities); Lambda gives each its own /tmp and an
//     unprivileged user. Each environment gets a private directory
//     (Environment.Dir, its working directory, with TMPDIR inside it) and
//     EnvFor to point the function's directories there; a job could still
//     read another environment's files by their path.
//   - The emulator's invoke endpoint (127.0.0.1:8080) is inside the
//     environment, where a job could call it; on Lambda it is elsewhere.
//   - Lambda keeps idle environments for a while and then reclaims them;
//     the harness keeps them frozen until the test ends. There is no
//     concurrency limit, no throttling, no retry: an invocation runs once.
//   - The emulator does not mark a function error; the harness takes a
//     response in Lambda's error shape ({"errorMessage", "errorType"}) for
//     one. When a bootstrap posts its response and then exits, the
//     emulator answers 502 with that response; the harness, as Lambda,
//     returns the response (RuntimeExited tells it happened) and discards
//     the environment.
//
// # Use
//
// NewHarness makes the harness and stops every environment at test
// clean-up. Invoke runs one invocation synchronously. For asynchronous
// invocations with destinations, Register the harness with an
// invoke.Local as the function: Local queues invocations and delivers
// destination records, and the harness runs each invocation in the
// environment its tenant id (invoke.TenantID) routes it to, with the
// record's request id (invoke.RequestID). Environments, EnvironmentsOf,
// Invocations and Invocation tell which environment served which
// invocation; Environment.Logs has an environment's output.
//
// A Harness is safe for concurrent use. It needs root (it makes namespaces
// and cgroups) and a cgroup v2 hierarchy; without them NewHarness fails
// the test with the reason.
type Harness struct {
	t       testing.TB
	opts    HarnessOptions
	timeout time.Duration
	rie     string
	envinit string
	hide    []string
	dir     string
	cg      *cgroup

	mu          sync.Mutex
	envs        []*Environment
	invocations []*Invocation
	problems    []string // harness failures, reported at clean-up
	closed      bool
}

// EnvState is where an environment is in its life.
type EnvState string

// Environment states.
const (
	// EnvBusy: the environment is starting or serving an invocation.
	EnvBusy EnvState = "busy"
	// EnvFrozen: idle between invocations, every process frozen.
	EnvFrozen EnvState = "frozen"
	// EnvDiscarded: gone, every process killed; see Environment.Reason.
	EnvDiscarded EnvState = "discarded"
)

// Environment is one execution environment of a Harness.
type Environment struct {
	// ID names the environment in creation order: "env-1", "env-2"…
	ID string
	// TenantID is the tenant id it serves, and only that one.
	TenantID string
	// Dir is its private directory: the bootstrap's working directory,
	// with TMPDIR at Dir/tmp (made when the environment starts).
	Dir string

	h *Harness
	// life is held while the environment starts and while it is torn
	// down; the fields below it are set under it, once.
	life   sync.Mutex
	pid    int           // the emulator's process id on this machine
	exited chan struct{} // closed when the emulator has exited
	ns     *netns
	cg     *cgroup
	client *http.Client
	logs   logtest.Buffer
	fwd    []net.Listener

	// guarded by h.mu
	state   EnvState
	reason  string
	runtime procID // the bootstrap, once known
}

// procID identifies a process over time: pid and start time.
type procID struct {
	pid   int
	start uint64
}

// Invocation is one finished invocation.
type Invocation struct {
	// RequestID is the invocation's request id, as the bootstrap saw it.
	RequestID string
	// TenantID is the tenant id it was routed by.
	TenantID string
	// Environment served it.
	Environment *Environment
	// Cold: the environment was made for this invocation.
	Cold bool
	// StatusCode is the emulator's HTTP status.
	StatusCode int
	// Payload is the function's response: its result, or the error
	// payload of a failure.
	Payload []byte
	// Error is the failure as Lambda reports it in a destination record;
	// nil when the function succeeded.
	Error *invoke.ErrorPayload
	// TimedOut: the function timeout ended the invocation.
	TimedOut bool
	// RuntimeExited: the bootstrap exited during the invocation (before or
	// after posting a response).
	RuntimeExited bool
	// Started and Ended bound the invocation, from routing to the answer.
	Started, Ended time.Time
}

// NewHarness returns a Harness for the function opts describes. It starts
// no environment: the first invocation of each tenant does.
func NewHarness(t testing.TB, opts HarnessOptions) *Harness {
	t.Helper()
	if opts.Bootstrap == "" {
		t.Fatal("lambdatest: NewHarness: no bootstrap")
	}
	if os.Geteuid() != 0 {
		t.Fatal("lambdatest: the harness needs root: it makes a cgroup and network, PID and mount namespaces for each environment")
	}
	for _, a := range opts.Forward {
		host, port, err := net.SplitHostPort(a)
		ip := net.ParseIP(host)
		if err != nil || ip == nil || !ip.IsLoopback() || port == "0" {
			t.Fatalf("lambdatest: NewHarness: forward %q: want a loopback address with a port, such as 127.0.0.1:8443", a)
		}
		if p := net.JoinHostPort("127.0.0.1", port); p == RuntimeAPIAddr || p == invokeAddr {
			t.Fatalf("lambdatest: NewHarness: forward %q: that port is taken inside every environment", a)
		}
	}
	rie, err := EmulatorPath()
	if err != nil {
		t.Fatalf("lambdatest: %v", err)
	}
	base, err := cgroupBase()
	if err != nil {
		t.Fatalf("lambdatest: the harness freezes environments with the cgroup v2 freezer: %v", err)
	}
	removeStaleCgroups(base)
	cg, err := newCgroup(filepath.Join(base, fmt.Sprintf("lambdatest-%d-%s", os.Getpid(), randomHex(4))))
	if err != nil {
		t.Fatalf("lambdatest: the harness needs a cgroup v2 hierarchy it can write: %v", err)
	}
	hide, err := cgroupMountDirs()
	if err != nil {
		t.Fatalf("lambdatest: %v", err)
	}
	h := &Harness{
		t: t, opts: opts, rie: rie, hide: hide, cg: cg, dir: t.TempDir(),
		envinit: Build(t, "./pkg/lambdatest/internal/envinit"),
		timeout: opts.Timeout.Round(time.Second),
	}
	if h.timeout < opts.Timeout {
		h.timeout += time.Second
	}
	if h.timeout <= 0 {
		h.timeout = DefaultHarnessTimeout
	}
	if h.opts.Name == "" {
		h.opts.Name = "function"
	}
	t.Cleanup(h.close)
	return h
}

// Invoke runs one invocation with the tenant id and waits for its end.
// The error is the harness's (no environment could be made, ctx ended,
// the tenant id is missing in tenant isolation mode); the function's own
// failures are in Invocation.Error.
func (h *Harness) Invoke(ctx context.Context, tenantID string, payload []byte) (*Invocation, error) {
	return h.invoke(ctx, tenantID, "", payload)
}

// Register makes the harness the function name of l: invocations queued
// on l for name run in the harness's environments, and their records go
// to dest. Each is routed by invoke.TenantID(ctx), with
// invoke.RequestID(ctx) as its request id; a failed one returns an
// *invoke.FunctionError with Lambda's error payload. l sets no timeout:
// the harness times invocations out itself. With TenantIsolation, l
// refuses an invocation without a tenant id at Invoke.
func (h *Harness) Register(l *invoke.Local, name string, dest invoke.Destinations) {
	fn := func(ctx context.Context, payload []byte) ([]byte, error) {
		inv, err := h.invoke(ctx, invoke.TenantID(ctx), invoke.RequestID(ctx), payload)
		if err != nil {
			return nil, err
		}
		if inv.Error != nil {
			return nil, &invoke.FunctionError{Payload: *inv.Error}
		}
		return inv.Payload, nil
	}
	l.Register(name, fn, invoke.FunctionConfig{Destinations: dest, TenantIsolation: h.opts.TenantIsolation})
}

// Environments returns every environment made so far, discarded ones
// included, in creation order.
func (h *Harness) Environments() []*Environment {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.envs)
}

// EnvironmentsOf returns the environments made for tenantID, discarded
// ones included, in creation order.
func (h *Harness) EnvironmentsOf(tenantID string) []*Environment {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*Environment
	for _, e := range h.envs {
		if e.TenantID == tenantID {
			out = append(out, e)
		}
	}
	return out
}

// Invocations returns the finished invocations in the order they ended.
func (h *Harness) Invocations() []*Invocation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.invocations)
}

// Invocation returns the finished invocation with the request id.
func (h *Harness) Invocation(requestID string) (*Invocation, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, inv := range h.invocations {
		if inv.RequestID == requestID {
			return inv, true
		}
	}
	return nil, false
}

// State returns where the environment is in its life.
func (e *Environment) State() EnvState {
	e.h.mu.Lock()
	defer e.h.mu.Unlock()
	return e.state
}

// Reason says why a discarded environment was discarded.
func (e *Environment) Reason() string {
	e.h.mu.Lock()
	defer e.h.mu.Unlock()
	return e.reason
}

// Logs returns what the emulator and every process of the environment
// printed so far.
func (e *Environment) Logs() string { return e.logs.String() }

// PIDs returns the process ids (as this machine numbers them) of the
// environment's processes now; none once it is discarded.
func (e *Environment) PIDs() []int {
	e.life.Lock()
	defer e.life.Unlock()
	if e.cg == nil {
		return nil
	}
	return e.cg.procs()
}

// Frozen reports whether the kernel has every process of the environment
// frozen.
func (e *Environment) Frozen() bool {
	e.life.Lock()
	defer e.life.Unlock()
	return e.cg != nil && e.cg.frozen()
}

// invoke routes one invocation, runs it and freezes or discards its
// environment.
func (h *Harness) invoke(ctx context.Context, tenantID, requestID string, payload []byte) (*Invocation, error) {
	if h.opts.TenantIsolation && tenantID == "" {
		return nil, fmt.Errorf("lambdatest: invoke %s: %w", h.opts.Name, invoke.ErrTenantRequired)
	}
	if requestID == "" {
		requestID = newRequestID()
	}
	inv := &Invocation{RequestID: requestID, TenantID: tenantID, Started: time.Now()}
	env, cold, err := h.route(tenantID)
	if err != nil {
		return nil, err
	}
	inv.Environment, inv.Cold = env, cold
	if cold {
		err = env.start()
	} else {
		err = env.cg.thaw()
	}
	if err != nil {
		h.discard(env, "could not be started or thawed: "+err.Error())
		return nil, h.problem("invoke %s in %s: %v", requestID, env.ID, err)
	}
	keep, err := env.run(ctx, inv, payload)
	inv.Ended = time.Now()
	if err == nil && keep {
		if ferr := env.cg.freeze(); ferr != nil {
			err = h.problem("freeze %s after %s: %v", env.ID, requestID, ferr)
			keep = false
		}
	}
	if keep {
		h.mu.Lock()
		if env.state == EnvBusy {
			env.state = EnvFrozen
		}
		h.mu.Unlock()
	} else {
		reason := "its invocation failed in the harness"
		switch {
		case inv.TimedOut:
			reason = "its invocation " + requestID + " timed out"
		case inv.RuntimeExited:
			reason = "its bootstrap exited during " + requestID
		}
		h.discard(env, reason)
	}
	h.mu.Lock()
	h.invocations = append(h.invocations, inv)
	h.mu.Unlock()
	return inv, err
}

// route picks the environment for an invocation of tenantID: the most
// recently used idle one of the tenant whose bootstrap is still alive,
// else a new one (cold). The environment is busy when route returns.
func (h *Harness) route(tenantID string) (*Environment, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, false, errors.New("lambdatest: the harness is closed")
	}
	var dead []*Environment
	var env *Environment
	for i := len(h.envs) - 1; i >= 0 && env == nil; i-- {
		e := h.envs[i]
		if e.TenantID != tenantID || e.state != EnvFrozen {
			continue
		}
		if !e.runtime.alive() {
			dead = append(dead, e)
			e.state = EnvDiscarded
			e.reason = "its bootstrap exited while it was idle"
			continue
		}
		env = e
	}
	for _, e := range dead {
		go e.teardown()
	}
	cold := env == nil
	if cold {
		id := fmt.Sprintf("env-%d", len(h.envs)+1)
		env = &Environment{ID: id, TenantID: tenantID, Dir: filepath.Join(h.dir, id), h: h}
		h.envs = append(h.envs, env)
	}
	env.state = EnvBusy
	return env, cold, nil
}

// start makes the environment: its directory, cgroup, namespaces and
// emulator, and returns once the emulator accepts invocations.
func (e *Environment) start() error {
	e.life.Lock()
	defer e.life.Unlock()
	h := e.h
	if err := os.MkdirAll(filepath.Join(e.Dir, "tmp"), 0o755); err != nil {
		return err
	}
	cg, err := newCgroup(filepath.Join(h.cg.dir, e.ID))
	if err != nil {
		return err
	}
	e.cg = cg
	cgfd, err := os.Open(cg.dir)
	if err != nil {
		return err
	}
	defer cgfd.Close()

	args := []string{}
	for _, d := range h.hide {
		args = append(args, "-hide", d)
	}
	args = append(args, "--", h.rie, "--runtime-interface-emulator-address", invokeAddr,
		"--runtime-api-address", RuntimeAPIAddr, h.opts.Bootstrap)
	cmd := exec.Command(h.envinit, args...)
	cmd.Dir = e.Dir
	cmd.Env = h.environ(e.Dir)
	cmd.Stdout, cmd.Stderr = &e.logs, &e.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWNET | syscall.CLONE_NEWPID | syscall.CLONE_NEWNS,
		UseCgroupFD: true,
		CgroupFD:    int(cgfd.Fd()),
		Setsid:      true,
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start emulator: %w", err)
	}
	e.pid = cmd.Process.Pid
	e.exited = make(chan struct{})
	go func() { _ = cmd.Wait(); close(e.exited) }()
	if e.ns, err = openNetns(e.pid); err != nil {
		return err
	}
	e.client = &http.Client{Transport: &http.Transport{DialContext: e.ns.dial, DisableKeepAlives: true}}

	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := e.ns.dial(context.Background(), "tcp", invokeAddr)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-e.exited:
			return fmt.Errorf("the environment exited at start:\n%s", e.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the emulator did not listen on %s: %v\n%s", invokeAddr, err, e.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, a := range h.opts.Forward {
		l, err := e.ns.listen(a)
		if err != nil {
			return fmt.Errorf("forward %s: %w", a, err)
		}
		e.fwd = append(e.fwd, l)
		go forward(l, a)
	}
	return nil
}

// environ is the environment of one environment's processes: the test
// process's, then the function's configuration.
func (h *Harness) environ(dir string) []string {
	vars := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	delete(vars, "AWS_LAMBDA_RUNTIME_API")
	vars["AWS_LAMBDA_FUNCTION_NAME"] = h.opts.Name
	vars["TMPDIR"] = filepath.Join(dir, "tmp")
	for k, v := range h.opts.Env {
		vars[k] = v
	}
	if h.opts.EnvFor != nil {
		for k, v := range h.opts.EnvFor(dir) {
			vars[k] = v
		}
	}
	// The timeout is the harness's: it knows it to end invocations.
	vars["AWS_LAMBDA_FUNCTION_TIMEOUT"] = strconv.Itoa(int(h.timeout / time.Second))
	out := make([]string, 0, len(vars))
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// run sends the invocation to the emulator and reads its answer into inv.
// keep says whether the environment may serve another invocation.
func (e *Environment) run(ctx context.Context, inv *Invocation, payload []byte) (keep bool, err error) {
	h := e.h
	// The emulator ends the invocation at the timeout; this is the
	// backstop if it does not.
	rctx, cancel := context.WithTimeout(ctx, h.timeout+10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, "http://"+invokeAddr+invokePath, bytes.NewReader(payload))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Amzn-RequestId", inv.RequestID)
	if inv.TenantID != "" {
		req.Header.Set("X-Amz-Tenant-Id", inv.TenantID)
	}
	resp, err := e.client.Do(req)
	if err == nil {
		inv.StatusCode = resp.StatusCode
		inv.Payload, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err != nil {
		if ctx.Err() != nil {
			return false, fmt.Errorf("lambdatest: invoke %s: %w", inv.RequestID, ctx.Err())
		}
		if rctx.Err() != nil {
			inv.timedOut(fmt.Sprintf("Task timed out after %.2f seconds", h.timeout.Seconds()))
			return false, h.problem("the emulator did not end %s at the function timeout", inv.RequestID)
		}
		return false, h.problem("invoke %s in %s: %v", inv.RequestID, e.ID, err)
	}
	body := inv.Payload
	switch {
	case inv.StatusCode == http.StatusOK && bytes.HasPrefix(body, []byte("Task timed out after ")):
		inv.timedOut(string(body))
		return false, nil
	case inv.StatusCode == http.StatusOK:
		// The emulator answers once the bootstrap asked for the next
		// invocation; it may have exited right after.
		inv.Error = errorPayload(body)
		alive := e.identifyRuntime()
		inv.RuntimeExited = !alive
		return alive, nil
	case inv.StatusCode == http.StatusBadGateway:
		// The bootstrap exited: with an error payload if it had not
		// answered, with its answer if it had.
		inv.RuntimeExited = true
		inv.Error = errorPayload(body)
		return false, nil
	default:
		return false, h.problem("the emulator answered %s with %d: %s", inv.RequestID, inv.StatusCode, body)
	}
}

// identifyRuntime reports whether the bootstrap still runs. It finds the
// bootstrap after the environment's first answer: the emulator's child
// that started first (the processes a job leaves behind, even reparented
// to the emulator, started after it).
func (e *Environment) identifyRuntime() bool {
	e.h.mu.Lock()
	known := e.runtime
	e.h.mu.Unlock()
	if known.pid != 0 {
		return known.alive()
	}
	var best procID
	for _, pid := range e.cg.procs() {
		st, err := readStat(pid)
		if err != nil || st.ppid != e.pid || strings.ContainsAny(st.state, "ZX") {
			continue
		}
		if best.pid == 0 || st.start < best.start {
			best = procID{pid: pid, start: st.start}
		}
	}
	if best.pid == 0 {
		return false
	}
	e.h.mu.Lock()
	e.runtime = best
	e.h.mu.Unlock()
	return true
}

// alive reports whether the process still runs (a zombie does not).
func (p procID) alive() bool {
	if p.pid == 0 {
		return false
	}
	st, err := readStat(p.pid)
	return err == nil && st.start == p.start && !strings.ContainsAny(st.state, "ZX")
}

type procStat struct {
	state string
	ppid  int
	start uint64
}

// readStat reads state, parent and start time from /proc/<pid>/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	ppid, _ := strconv.Atoi(f[1])
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return procStat{state: f[0], ppid: ppid, start: start}, nil
}

// errorPayload returns body as an error payload when it has Lambda's error
// shape: a JSON object with errorMessage or errorType and nothing else
// but a stack trace.
func errorPayload(body []byte) *invoke.ErrorPayload {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return nil
	}
	_, msg := fields["errorMessage"]
	_, typ := fields["errorType"]
	if !msg && !typ {
		return nil
	}
	for k := range fields {
		switch k {
		case "errorMessage", "errorType", "stackTrace", "requestId", "cause":
		default:
			return nil
		}
	}
	var e invoke.ErrorPayload
	if json.Unmarshal(body, &e) != nil {
		return nil
	}
	return &e
}

// timedOut ends inv as Lambda ends an invocation at the function timeout:
// a Sandbox.Timedout error whose message is the time, the request id and
// msg ("Task timed out after N.00 seconds").
func (inv *Invocation) timedOut(msg string) {
	inv.TimedOut = true
	inv.Error = &invoke.ErrorPayload{
		ErrorMessage: time.Now().UTC().Format("2006-01-02T15:04:05.000Z") + " " + inv.RequestID + " " + msg,
		ErrorType:    "Sandbox.Timedout",
	}
	inv.Payload, _ = json.Marshal(inv.Error)
}

// discard marks env discarded and kills it.
func (h *Harness) discard(env *Environment, reason string) {
	h.mu.Lock()
	if env.state == EnvDiscarded {
		h.mu.Unlock()
		return
	}
	env.state, env.reason = EnvDiscarded, reason
	h.mu.Unlock()
	env.teardown()
}

// teardown kills every process of the environment and frees what it held.
func (e *Environment) teardown() {
	e.life.Lock()
	defer e.life.Unlock()
	if e.cg != nil {
		if err := e.cg.kill(); err != nil {
			_ = e.h.problem("kill %s: %v", e.ID, err)
		}
	}
	if e.exited != nil {
		select {
		case <-e.exited:
		case <-time.After(10 * time.Second):
			_ = e.h.problem("%s: the emulator did not exit after the kill", e.ID)
		}
	}
	for _, l := range e.fwd {
		l.Close()
	}
	if e.ns != nil {
		e.ns.close()
	}
}

// problem records a failure of the harness itself, reported at clean-up,
// and returns it as an error.
func (h *Harness) problem(format string, args ...any) error {
	err := fmt.Errorf("lambdatest: "+format, args...)
	h.mu.Lock()
	h.problems = append(h.problems, err.Error())
	h.mu.Unlock()
	return err
}

// close discards every environment and reports the harness's failures.
func (h *Harness) close() {
	h.mu.Lock()
	h.closed = true
	envs := slices.Clone(h.envs)
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range envs {
		wg.Add(1)
		go func() { defer wg.Done(); h.discard(e, "the test ended") }()
	}
	wg.Wait()
	if err := h.cg.kill(); err != nil {
		h.t.Errorf("lambdatest: %v", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range h.problems {
		h.t.Errorf("%s", p)
	}
}

func newRequestID() string {
	h := randomHex(16)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
