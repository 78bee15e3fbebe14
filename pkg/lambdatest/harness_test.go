package lambdatest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/lambdatest"
)

// jobResult is the answer of testdata/jobs.
type jobResult struct {
	Count     int    `json:"count"`
	PID       int    `json:"pid"`
	TenantID  string `json:"tenant_id"`
	RequestID string `json:"request_id"`
	Exit      int    `json:"exit"`
	Output    string `json:"output"`
}

// jobsHarness runs testdata/jobs in tenant isolation mode.
func jobsHarness(t *testing.T, change func(*lambdatest.HarnessOptions)) *lambdatest.Harness {
	t.Helper()
	opts := lambdatest.HarnessOptions{
		Bootstrap:       lambdatest.Build(t, "./pkg/lambdatest/testdata/jobs"),
		TenantIsolation: true,
		Timeout:         30 * time.Second,
	}
	if change != nil {
		change(&opts)
	}
	return lambdatest.NewHarness(t, opts)
}

// call invokes and decodes a successful answer.
func call(t *testing.T, h *lambdatest.Harness, tenant string, event any) (*lambdatest.Invocation, jobResult) {
	t.Helper()
	payload, err := json.Marshal(event)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := h.Invoke(context.Background(), tenant, payload)
	if err != nil {
		t.Fatalf("Invoke(%s): %v", tenant, err)
	}
	if inv.Error != nil {
		t.Fatalf("Invoke(%s): function error %+v\nlogs:\n%s", tenant, inv.Error, inv.Environment.Logs())
	}
	var res jobResult
	if err := json.Unmarshal(inv.Payload, &res); err != nil {
		t.Fatalf("decode %s: %v", inv.Payload, err)
	}
	return inv, res
}

func TestHarnessRoutesByTenant(t *testing.T) {
	h := jobsHarness(t, nil)
	type seen struct {
		env   string
		pid   int
		count int
	}
	got := map[string][]seen{}
	for _, tenant := range []string{"tenant-a", "tenant-b", "tenant-a", "tenant-b", "tenant-a"} {
		inv, res := call(t, h, tenant, map[string]any{})
		if res.TenantID != tenant || res.RequestID != inv.RequestID {
			t.Errorf("the bootstrap saw tenant %q request %q, want %q %q", res.TenantID, res.RequestID, tenant, inv.RequestID)
		}
		if inv.Environment.TenantID != tenant {
			t.Errorf("invocation of %s served by %s of tenant %s", tenant, inv.Environment.ID, inv.Environment.TenantID)
		}
		if want := len(got[tenant]) == 0; inv.Cold != want {
			t.Errorf("invocation %d of %s: cold = %v, want %v", len(got[tenant])+1, tenant, inv.Cold, want)
		}
		got[tenant] = append(got[tenant], seen{inv.Environment.ID, res.PID, res.Count})
	}
	for tenant, s := range got {
		for i, x := range s {
			if x.env != s[0].env || x.pid != s[0].pid || x.count != i+1 {
				t.Errorf("%s invocation %d: environment %s, bootstrap %d, its invocation %d; want %s, %d, %d (one warm environment)",
					tenant, i+1, x.env, x.pid, x.count, s[0].env, s[0].pid, i+1)
			}
		}
	}
	if got["tenant-a"][0].env == got["tenant-b"][0].env {
		t.Errorf("both tenants were served by %s", got["tenant-a"][0].env)
	}
	for _, tenant := range []string{"tenant-a", "tenant-b"} {
		envs := h.EnvironmentsOf(tenant)
		if len(envs) != 1 {
			t.Fatalf("%s has %d environments, want 1", tenant, len(envs))
		}
		if st := envs[0].State(); st != lambdatest.EnvFrozen || !envs[0].Frozen() {
			t.Errorf("%s between invocations: state %s, kernel frozen %v; want frozen", envs[0].ID, st, envs[0].Frozen())
		}
	}
	if n := len(h.Invocations()); n != 5 {
		t.Errorf("%d invocations recorded, want 5", n)
	}
	if _, err := h.Invoke(context.Background(), "", []byte(`{}`)); err == nil {
		t.Errorf("an invocation without a tenant id was accepted in tenant isolation mode")
	}
}

func TestHarnessGivesABusyTenantAnotherEnvironment(t *testing.T) {
	h := jobsHarness(t, nil)
	// Each job runs until the test lets it go, so the second invocation
	// comes while the first is busy.
	release := filepath.Join(t.TempDir(), "release")
	job, _ := json.Marshal(map[string]any{"script": `until [ -e "$RELEASE" ]; do sleep 0.01; done`, "env": map[string]string{"RELEASE": release}})
	var wg sync.WaitGroup
	invs := make([]*lambdatest.Invocation, 2)
	for i := range invs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inv, err := h.Invoke(context.Background(), "tenant-a", job)
			if err != nil || inv.Error != nil {
				t.Errorf("Invoke: %v %+v", err, inv)
				return
			}
			invs[i] = inv
		}()
		for deadline := time.Now().Add(time.Minute); len(h.EnvironmentsOf("tenant-a")) < i+1; {
			if time.Now().After(deadline) {
				t.Fatalf("invocation %d was never routed", i+1)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if invs[0].Environment == invs[1].Environment || !invs[0].Cold || !invs[1].Cold {
		t.Errorf("two invocations at once of one tenant: environments %s and %s (cold %v, %v), want two new ones",
			invs[0].Environment.ID, invs[1].Environment.ID, invs[0].Cold, invs[1].Cold)
	}
	inv, res := call(t, h, "tenant-a", map[string]any{})
	if inv.Cold || (inv.Environment != invs[0].Environment && inv.Environment != invs[1].Environment) || res.Count != 2 {
		t.Errorf("third invocation: %s (cold %v), its bootstrap's invocation %d; want one of the two warm environments, its second invocation",
			inv.Environment.ID, inv.Cold, res.Count)
	}
	if n := len(h.EnvironmentsOf("tenant-a")); n != 2 {
		t.Errorf("tenant-a has %d environments, want 2", n)
	}
	other, _ := call(t, h, "tenant-b", map[string]any{})
	if !other.Cold || other.Environment.TenantID != "tenant-b" {
		t.Errorf("another tenant, while tenant-a has idle environments: %s of %s (cold %v), want a new one of its own",
			other.Environment.ID, other.Environment.TenantID, other.Cold)
	}
}

// tickerScript appends, every 20 ms, the current parent process id of the
// ticker to the file it is given: the file grows only while the ticker
// gets CPU, and its last line shows who its parent is.
const tickerScript = `while :; do cut -d' ' -f4 /proc/$$/stat >> "$1"; sleep 0.02; done`

// lines counts the lines of a ticker's file.
func lines(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return strings.Count(string(b), "\n")
}

func TestHarnessFreezesLeftoverProcesses(t *testing.T) {
	h := jobsHarness(t, nil)
	dir := t.TempDir()
	ticker := filepath.Join(dir, "tick.sh")
	if err := os.WriteFile(ticker, []byte(tickerScript+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ways := map[string]string{
		"background":  `sh "$TICK" "$OUT/background" </dev/null >/dev/null 2>&1 &`,
		"setsid":      `setsid sh "$TICK" "$OUT/setsid" </dev/null >/dev/null 2>&1 &`,
		"nohup":       `nohup sh "$TICK" "$OUT/nohup" </dev/null >/dev/null 2>&1 &`,
		"double fork": `sh -c 'sh "$TICK" "$OUT/double-fork" </dev/null >/dev/null 2>&1 &' </dev/null >/dev/null 2>&1`,
	}
	files := map[string]string{}
	var script, wait []string
	for way, cmd := range ways {
		files[way] = filepath.Join(dir, strings.ReplaceAll(way, " ", "-"))
		script = append(script, cmd)
		wait = append(wait, files[way])
	}
	// The job ends once every ticker has ticked, the double-forked one as
	// a child of PID 1.
	script = append(script,
		`for f in `+strings.Join(wait, " ")+`; do until [ -s "$f" ]; do sleep 0.01; done; done`,
		`until [ "$(tail -n 1 "$OUT/double-fork")" = 1 ]; do sleep 0.01; done`)
	env := map[string]string{"TICK": ticker, "OUT": dir}
	first, _ := call(t, h, "tenant-a", map[string]any{"script": strings.Join(script, "\n"), "env": env})

	counts := func() map[string]int {
		m := map[string]int{}
		for way, f := range files {
			m[way] = lines(t, f)
		}
		return m
	}
	atEnd := counts()
	if n := len(first.Environment.PIDs()); n < 6 {
		t.Errorf("the environment has %d processes, want the emulator, the bootstrap and four tickers at least", n)
	}
	if !first.Environment.Frozen() {
		t.Fatalf("%s is not frozen after its invocation", first.Environment.ID)
	}
	time.Sleep(700 * time.Millisecond)
	frozen := counts()
	for way := range ways {
		if atEnd[way] == 0 {
			t.Errorf("%s: the ticker never ran", way)
		}
		if frozen[way] != atEnd[way] {
			t.Errorf("%s: the file grew from %d to %d lines while the environment was frozen", way, atEnd[way], frozen[way])
		}
	}
	if b, _ := os.ReadFile(files["double fork"]); lastLine(string(b)) != "1" {
		t.Errorf("the double-forked ticker's parent is not PID 1 (the emulator): %q", lastLine(string(b)))
	}

	// The next invocation of the tenant thaws the environment: the tickers
	// run while it runs (the job waits for each file to grow), and stop
	// again when it ends.
	second, _ := call(t, h, "tenant-a", map[string]any{"script": `for f in ` + strings.Join(wait, " ") +
		`; do n=$(wc -l < "$f"); until [ "$(wc -l < "$f")" -gt "$n" ]; do sleep 0.01; done; done`})
	if second.Environment != first.Environment {
		t.Fatalf("second invocation in %s, want %s", second.Environment.ID, first.Environment.ID)
	}
	resumed := counts()
	time.Sleep(500 * time.Millisecond)
	again := counts()
	for way := range ways {
		if resumed[way] <= frozen[way] {
			t.Errorf("%s: the file did not grow during the next invocation (%d lines, %d before)", way, resumed[way], frozen[way])
		}
		if again[way] != resumed[way] {
			t.Errorf("%s: the file grew from %d to %d lines after the second invocation", way, resumed[way], again[way])
		}
	}
	// Another tenant's invocation does not thaw the environment.
	call(t, h, "tenant-b", map[string]any{"script": "sleep 0.3"})
	for way, n := range counts() {
		if n != again[way] {
			t.Errorf("%s: the file grew from %d to %d lines during another tenant's invocation", way, again[way], n)
		}
	}
}

func lastLine(s string) string {
	s = strings.TrimSuffix(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}

func TestHarnessDiscardsAnEnvironmentWhoseBootstrapExited(t *testing.T) {
	h := jobsHarness(t, nil)
	first, _ := call(t, h, "tenant-a", map[string]any{"script": "sleep 1000 </dev/null >/dev/null 2>&1 &"})
	env := first.Environment

	// A handled error keeps the environment, as on Lambda.
	failed, err := h.Invoke(context.Background(), "tenant-a", []byte(`{"fail":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if failed.Error == nil || failed.Error.ErrorMessage != "asked to fail" || failed.Environment != env || failed.RuntimeExited {
		t.Errorf("handler error: %+v in %s (runtime exited %v), want errorMessage \"asked to fail\" in %s", failed.Error, failed.Environment.ID, failed.RuntimeExited, env.ID)
	}

	crashed, err := h.Invoke(context.Background(), "tenant-a", []byte(`{"crash":3}`))
	if err != nil {
		t.Fatal(err)
	}
	if crashed.Error == nil || crashed.Error.ErrorType != "Runtime.ExitError" || !crashed.RuntimeExited || crashed.Environment != env {
		t.Errorf("crash: error %+v, runtime exited %v, in %s; want a Runtime.ExitError in %s", crashed.Error, crashed.RuntimeExited, crashed.Environment.ID, env.ID)
	}
	if st := env.State(); st != lambdatest.EnvDiscarded {
		t.Errorf("%s after its bootstrap exited: %s, want discarded", env.ID, st)
	}
	if pids := env.PIDs(); len(pids) != 0 {
		t.Errorf("%s discarded, but processes %v are left (the job's sleep among them)", env.ID, pids)
	}
	next, res := call(t, h, "tenant-a", map[string]any{})
	if !next.Cold || next.Environment == env || res.Count != 1 {
		t.Errorf("after the crash: %s (cold %v), invocation %d of its bootstrap; want a new environment", next.Environment.ID, next.Cold, res.Count)
	}

	// A bootstrap that answers and then exits at once: the invocation
	// succeeds with its answer, and the environment is discarded.
	once, res := call(t, h, "tenant-once", map[string]any{"respond_and_exit": true})
	if !once.RuntimeExited || res.RequestID != once.RequestID {
		t.Errorf("respond and exit: runtime exited %v, answer for %q; want the answer of %s and the exit seen", once.RuntimeExited, res.RequestID, once.RequestID)
	}
	if st := once.Environment.State(); st != lambdatest.EnvDiscarded {
		t.Errorf("%s after its bootstrap exited: %s, want discarded", once.Environment.ID, st)
	}
	if again, _ := call(t, h, "tenant-once", map[string]any{}); !again.Cold {
		t.Errorf("after a bootstrap that exited: %s is warm, want a new environment", again.Environment.ID)
	}

	// A bootstrap that dies while its environment is idle: the next
	// invocation gets a new environment, and the dead one is discarded.
	idle := next.Environment
	killed := false
	for _, pid := range idle.PIDs() {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if argv0, _, _ := bytes.Cut(cmdline, []byte{0}); strings.HasSuffix(string(argv0), "/bootstrap") {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			waitDead(t, pid)
			killed = true
		}
	}
	if !killed {
		t.Fatalf("no bootstrap among the processes of %s", idle.ID)
	}
	after, res := call(t, h, "tenant-a", map[string]any{})
	if !after.Cold || after.Environment == idle || res.Count != 1 {
		t.Errorf("after the idle bootstrap died: %s (cold %v), invocation %d; want a new environment", after.Environment.ID, after.Cold, res.Count)
	}
	if st := idle.State(); st != lambdatest.EnvDiscarded {
		t.Errorf("%s whose bootstrap died while idle: %s, want discarded (%s)", idle.ID, st, idle.Reason())
	}
}

// waitDead waits until pid is a zombie (its parent, frozen, cannot reap it)
// or gone.
func waitDead(t *testing.T, pid int) {
	t.Helper()
	for range 500 {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if i := bytes.LastIndexByte(stat, ')'); err != nil || (i > 0 && i+2 < len(stat) && stat[i+2] == 'Z') {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d did not die", pid)
}

func TestHarnessTimesOutAsLambda(t *testing.T) {
	h := jobsHarness(t, func(o *lambdatest.HarnessOptions) { o.Timeout = 2 * time.Second })
	inv, err := h.Invoke(context.Background(), "tenant-a", []byte(`{"script":"sleep 1000 </dev/null >/dev/null 2>&1 & sleep 30"}`))
	if err != nil {
		t.Fatal(err)
	}
	if !inv.TimedOut || inv.Error == nil || inv.Error.ErrorType != "Sandbox.Timedout" ||
		!strings.Contains(inv.Error.ErrorMessage, inv.RequestID+" Task timed out after 2.00 seconds") {
		t.Errorf("invocation past the timeout: timed out %v, error %+v; want Sandbox.Timedout \"<time> %s Task timed out after 2.00 seconds\"", inv.TimedOut, inv.Error, inv.RequestID)
	}
	if d := inv.Ended.Sub(inv.Started); d > 10*time.Second {
		t.Errorf("the invocation took %s with a 2 s timeout", d)
	}
	env := inv.Environment
	if st := env.State(); st != lambdatest.EnvDiscarded || len(env.PIDs()) != 0 {
		t.Errorf("%s after a timeout: %s with processes %v, want discarded with none", env.ID, st, env.PIDs())
	}
	next, res := call(t, h, "tenant-a", map[string]any{})
	if !next.Cold || res.Count != 1 {
		t.Errorf("after the timeout: %s (cold %v), invocation %d; want a new environment", next.Environment.ID, next.Cold, res.Count)
	}
}

// TestHarnessIntruderSeesOnlyItsEnvironment runs the intruder as a job of
// tenant-a. It finds the Runtime API through /proc/net/tcp, reads its own
// event again, forges the invocation's response and waits on /next. An
// invocation of tenant-b never reaches it (another environment, another
// Runtime API it cannot see); the next invocation of tenant-a, routed to
// the same warm environment as Lambda would, does: that is the attack that
// one tenant id per job must defeat.
func TestHarnessIntruderSeesOnlyItsEnvironment(t *testing.T) {
	h := jobsHarness(t, nil)
	report := filepath.Join(t.TempDir(), "intruder.jsonl")
	job := map[string]any{
		"marker": "job-A",
		"script": `"$INTRUDER" -report "$REPORT" -next 1 -next-timeout 60s`,
		"env":    map[string]string{"INTRUDER": lambdatest.Intruder(t), "REPORT": report},
	}
	payload, _ := json.Marshal(job)
	a, err := h.Invoke(context.Background(), "tenant-a", payload)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(a.Payload); got != `{"state":"success","reported":true}` || a.Error != nil {
		t.Errorf("the intruder's invocation answered %s (error %+v), want the forged response", got, a.Error)
	}

	c, _ := call(t, h, "tenant-b", map[string]any{"marker": "job-C"})
	if c.Environment == a.Environment {
		t.Fatalf("tenant-b ran in the intruder's environment %s", a.Environment.ID)
	}
	b, err := h.Invoke(context.Background(), "tenant-a", []byte(`{"marker":"job-B"}`))
	if err != nil {
		t.Fatal(err)
	}
	if b.Environment != a.Environment {
		t.Fatalf("tenant-a's second invocation ran in %s, want the warm %s", b.Environment.ID, a.Environment.ID)
	}

	steps, err := lambdatest.ReadIntruderSteps(report)
	if err != nil {
		t.Fatal(err)
	}
	byStep := map[string]lambdatest.IntruderStep{}
	for _, s := range steps {
		byStep[s.Step] = s
		if s.RequestID == c.RequestID || strings.Contains(string(s.Event), "job-C") {
			t.Errorf("the intruder received tenant-b's invocation: %+v", s)
		}
		if s.RequestID != "" && s.RequestID != a.RequestID && s.RequestID != b.RequestID {
			t.Errorf("the intruder saw request %s, neither of its environment's two", s.RequestID)
		}
	}
	start, reread, forge, next := byStep["start"], byStep["reread"], byStep["forge"], byStep["next"]
	if start.EnvHasAPI {
		t.Errorf("the job's environment had AWS_LAMBDA_RUNTIME_API: the test would not show discovery")
	}
	if want := []string{lambdatest.RuntimeAPIAddr, "127.0.0.1:8080"}; strings.Join(start.Listeners, " ") != strings.Join(want, " ") {
		t.Errorf("the job saw listening sockets %v, want only its environment's %v", start.Listeners, want)
	}
	if reread.API != lambdatest.RuntimeAPIAddr || reread.RequestID != a.RequestID || reread.TenantID != "tenant-a" || !strings.Contains(string(reread.Event), "job-A") {
		t.Errorf("reread = %+v, want its own event at %s", reread, lambdatest.RuntimeAPIAddr)
	}
	if forge.Status != 202 {
		t.Errorf("forge = %+v, want the emulator to accept the forged response (202)", forge)
	}
	if next.RequestID != b.RequestID || next.TenantID != "tenant-a" || !strings.Contains(string(next.Event), "job-B") {
		t.Errorf("next = %+v, want tenant-a's next invocation %s", next, b.RequestID)
	}
	t.Logf("invocation B ended with status %d, error %+v, runtime exited %v", b.StatusCode, b.Error, b.RuntimeExited)
}

// TestHarnessAsAnAsynchronousFunction registers the harness with
// invoke.Local: invocations queued with a tenant id run in that tenant's
// environment, and Lambda's destination records reach the destination
// with the request id the bootstrap saw.
func TestHarnessAsAnAsynchronousFunction(t *testing.T) {
	h := jobsHarness(t, func(o *lambdatest.HarnessOptions) { o.Timeout = 2 * time.Second })
	local := invoke.NewLocal(invoke.LocalConfig{})
	var mu sync.Mutex
	records := map[string]invoke.Record{}
	local.Register("finisher", func(_ context.Context, payload []byte) ([]byte, error) {
		var r invoke.Record
		if err := json.Unmarshal(payload, &r); err != nil {
			t.Errorf("record %s: %v", payload, err)
		}
		var ev struct{ Marker string }
		_ = json.Unmarshal(r.RequestPayload, &ev)
		mu.Lock()
		records[ev.Marker] = r
		mu.Unlock()
		return nil, nil
	}, invoke.FunctionConfig{})
	h.Register(local, "executor", invoke.Destinations{OnSuccess: "finisher", OnFailure: "finisher"})

	ctx := context.Background()
	for _, c := range []struct{ tenant, event string }{
		{"tenant-a", `{"marker":"ok"}`},
		{"tenant-b", `{"marker":"crash","crash":2}`},
		{"tenant-c", `{"marker":"slow","sleep_ms":10000}`},
	} {
		if err := local.Invoke(ctx, "executor", []byte(c.event), invoke.Options{TenantID: c.tenant}); err != nil {
			t.Fatalf("Invoke(%s): %v", c.tenant, err)
		}
	}
	if err := local.Invoke(ctx, "executor", []byte(`{"marker":"none"}`), invoke.Options{}); !errors.Is(err, invoke.ErrTenantRequired) {
		t.Errorf("Invoke without a tenant id = %v, want ErrTenantRequired", err)
	}
	local.Wait()

	ok := records["ok"]
	inv, found := h.Invocation(ok.RequestContext.RequestID)
	if !found || ok.Failed() || inv.TenantID != "tenant-a" || inv.Environment.TenantID != "tenant-a" {
		t.Fatalf("record of the successful invocation: %+v (invocation found %v)", ok, found)
	}
	var res jobResult
	if err := json.Unmarshal(ok.ResponsePayload, &res); err != nil || res.RequestID != ok.RequestContext.RequestID || res.TenantID != "tenant-a" {
		t.Errorf("the bootstrap saw request %q tenant %q, the record says %q tenant-a", res.RequestID, res.TenantID, ok.RequestContext.RequestID)
	}
	if e, _ := records["crash"].Error(); !records["crash"].Failed() || e.ErrorType != "Runtime.ExitError" {
		t.Errorf("record of the crash: failed %v, error %+v; want a Runtime.ExitError", records["crash"].Failed(), e)
	}
	if e, _ := records["slow"].Error(); !records["slow"].Failed() || e.ErrorType != "Sandbox.Timedout" || !strings.Contains(e.ErrorMessage, "Task timed out after 2.00 seconds") {
		t.Errorf("record of the timeout: failed %v, error %+v; want Sandbox.Timedout", records["slow"].Failed(), e)
	}
	if _, ok := records["none"]; ok {
		t.Errorf("the invocation without a tenant id ran")
	}
}
