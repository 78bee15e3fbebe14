package samtemplate_test

import (
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/lambdatest"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/store/dynamotest"
)

func TestMain(m *testing.M) {
	code := dynamotest.Main(m)
	removeGuideBuilds()
	os.Exit(code)
}

func elfMachine(t *testing.T, path string) elf.Machine {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s is not an ELF binary: %v", path, err)
	}
	defer f.Close()
	if f.OSABI != elf.ELFOSABI_NONE && f.OSABI != elf.ELFOSABI_LINUX {
		t.Errorf("%s: OS ABI %v, want Linux", path, f.OSABI)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode()&0o111 == 0 {
		t.Errorf("%s is not executable", path)
	}
	return f.Machine
}

func invoke(t *testing.T, fn *lambdatest.Function, payload []byte) lambdatest.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := fn.Invoke(ctx, payload)
	if err != nil {
		t.Fatalf("invoke: %v\nlogs:\n%s", err, fn.Logs())
	}
	return resp
}

// A malformed event reaches the executor: it answers with a result that
// says so, which the finisher records.
func checkExecutorRejects(t *testing.T, fn *lambdatest.Function) {
	t.Helper()
	resp := invoke(t, fn, []byte(`{"gitlab_url": 42, "job": "not a job"}`))
	if resp.FunctionError != "" {
		t.Fatalf("function error: %s\nlogs:\n%s", resp.FunctionError, fn.Logs())
	}
	var res struct {
		State, Error string
		Reported     bool
	}
	if err := json.Unmarshal(resp.Payload, &res); err != nil {
		t.Fatalf("decode result %s: %v", resp.Payload, err)
	}
	if res.Error == "" || res.State != "" || res.Reported {
		t.Errorf("result: got %s, want an error, no state, not reported", resp.Payload)
	}
}

func executorEnv(t *testing.T) map[string]string {
	dirs := t.TempDir()
	return map[string]string{
		"EXECUTOR_BUILDS_DIR":         filepath.Join(dirs, "builds"),
		"EXECUTOR_HOME_DIR":           filepath.Join(dirs, "home"),
		"EXECUTOR_CLEANUP":            "descendants",
		"EXECUTOR_DEADLINE_MARGIN":    "60s",
		"AWS_LAMBDA_FUNCTION_TIMEOUT": "120",
		"AWS_REGION":                  "us-east-1",
	}
}

func TestExecutorBuiltBySAMRejectsAMalformedEvent(t *testing.T) {
	dir := builtArtifact(t, "ExecutorFunction")
	fn := lambdatest.Start(t, filepath.Join(dir, "bootstrap"), lambdatest.Options{Env: executorEnv(t)})
	checkExecutorRejects(t, fn)
}

// The managed runtimes start the layer's wrapper in place of their own
// bootstrap, with that bootstrap's command line; the wrapper must hand the
// Runtime API to the executor beside it.
func TestExecWrapperStartsTheLayersExecutor(t *testing.T) {
	layer := builtArtifact(t, "ExecutorLayer")
	wrapper := filepath.Join(layer, "gsr", "exec-wrapper")
	// What Lambda's managed runtime does with AWS_LAMBDA_EXEC_WRAPPER.
	runtimeBootstrap := filepath.Join(t.TempDir(), "bootstrap")
	script := "#!/bin/sh\nexec \"$AWS_LAMBDA_EXEC_WRAPPER\" /var/lang/bin/python3 /var/runtime/bootstrap.py\n"
	if err := os.WriteFile(runtimeBootstrap, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	env := executorEnv(t)
	env["AWS_LAMBDA_EXEC_WRAPPER"] = wrapper
	env["AWS_EXECUTION_ENV"] = "AWS_Lambda_python3.14"
	fn := lambdatest.Start(t, runtimeBootstrap, lambdatest.Options{Env: env})
	checkExecutorRejects(t, fn)
	if !strings.Contains(fn.Logs(), "python3.14") {
		t.Errorf("the executor did not log the runtime it replaced (python3.14):\n%s", fn.Logs())
	}
}

func TestExecWrapperFailsClearlyWithoutTheExecutor(t *testing.T) {
	dir := t.TempDir()
	wrapper := filepath.Join(dir, "exec-wrapper")
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "functions", "executor", "layer", "exec-wrapper"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wrapper, b, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(wrapper, "/var/lang/bin/node", "/var/runtime/index.mjs").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 127 {
		t.Errorf("exit: got %v, want status 127", err)
	}
	if !strings.Contains(string(out), "executor layer") {
		t.Errorf("message %q does not point at the executor layer", out)
	}
}

func TestSchedulerBuiltBySAMFindsNoRunners(t *testing.T) {
	srv := dynamotest.Start(t)
	prefix := dynamotest.Prefix(t)
	st, err := store.New(srv.Client(), store.Config{Tables: store.Prefixed(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateTables(context.Background()); err != nil {
		t.Fatal(err)
	}
	dir := builtArtifact(t, "SchedulerFunction")
	fn := lambdatest.Start(t, filepath.Join(dir, "bootstrap"), lambdatest.Options{Env: map[string]string{
		"TABLE_PREFIX":          prefix,
		"TOKEN_SEALING_KEY":     "1:" + seal.GenerateKey(),
		"POLLER_FUNCTION":       "poller",
		"SCHEDULER_PARALLELISM": "4",
		"DYNAMODB_ENDPOINT":     srv.Endpoint,
		"LAMBDA_ENDPOINT":       "http://127.0.0.1:1",
		"AWS_REGION":            "us-east-1",
		"AWS_ACCESS_KEY_ID":     "local",
		"AWS_SECRET_ACCESS_KEY": "local",
	}})
	event, err := os.ReadFile(filepath.Join(repoRoot(t), "functions", "scheduler", "testdata", "event.json"))
	if err != nil {
		t.Fatal(err)
	}
	resp := invoke(t, fn, event)
	if resp.FunctionError != "" {
		t.Fatalf("function error: %s\nlogs:\n%s", resp.FunctionError, fn.Logs())
	}
	var out struct {
		Sweep struct{ Swept, Failed *int }
		Polls struct{ Runners, Invoked, Failed *int }
	}
	if err := json.Unmarshal(resp.Payload, &out); err != nil {
		t.Fatalf("decode outcome %s: %v", resp.Payload, err)
	}
	sum, sw := out.Polls, out.Sweep
	if sum.Runners == nil || *sum.Runners != 0 || sum.Invoked == nil || *sum.Invoked != 0 || sum.Failed == nil || *sum.Failed != 0 ||
		sw.Swept == nil || *sw.Swept != 0 || sw.Failed == nil || *sw.Failed != 0 {
		t.Errorf("outcome: got %s, want nothing swept and 0 runners, 0 invoked, 0 failed", resp.Payload)
	}
	if strings.Contains(fn.Logs(), "sweep failed") {
		t.Errorf("the sweep failed:\n%s", fn.Logs())
	}
}

// The web function's secrets arrive as the template passes them, Secrets
// Manager ARNs (with keys shaped as Secrets Manager generates them), which
// the function resolves at start.
func TestWebBuiltBySAMAnswersTheSampleEvent(t *testing.T) {
	const arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:"
	generated := strings.Repeat("z9", 21) + "Q" // 43 letters and digits
	secretsEndpoint := fakeSecretsManager(t, map[string]string{
		arn + "SessionKeySecret-AbCdEf":       generated,
		arn + "TokenSealingKeySecret-AbCdEf":  generated,
		arn + "OidcClientSecretSecret-AbCdEf": "client-secret",
	})
	dir := builtArtifact(t, "WebFunction")
	fn := lambdatest.Start(t, filepath.Join(dir, "bootstrap"), lambdatest.Options{Env: withLocalAWS(map[string]string{
		"BASE_URL":                         "https://runners.example.com",
		"OIDC_CLIENT_ID":                   "client",
		"OIDC_CLIENT_SECRET":               arn + "OidcClientSecretSecret-AbCdEf",
		"SESSION_KEY":                      arn + "SessionKeySecret-AbCdEf",
		"TOKEN_SEALING_KEY":                arn + "TokenSealingKeySecret-AbCdEf",
		"AWS_ENDPOINT_URL_SECRETS_MANAGER": secretsEndpoint,
		"DYNAMODB_ENDPOINT":                "http://127.0.0.1:1",
	})})
	event, err := os.ReadFile(filepath.Join(repoRoot(t), "functions", "web", "testdata", "event.json"))
	if err != nil {
		t.Fatal(err)
	}
	resp := invoke(t, fn, event)
	if resp.FunctionError != "" {
		t.Fatalf("function error: %s\nlogs:\n%s", resp.FunctionError, fn.Logs())
	}
	var out struct {
		StatusCode int    `json:"statusCode"`
		Body       string `json:"body"`
	}
	if err := json.Unmarshal(resp.Payload, &out); err != nil {
		t.Fatalf("decode response: %v", err)
	}
	if out.StatusCode != 200 || !strings.Contains(out.Body, "Sign in with GitLab") {
		t.Errorf("got status %d and body %.200q, want 200 and the sign-in page", out.StatusCode, out.Body)
	}
}

// tables creates the store's tables in DynamoDB Local under a fresh prefix.
func tables(t *testing.T) (*dynamotest.Server, store.TableNames) {
	t.Helper()
	srv := dynamotest.Start(t)
	names := store.Prefixed(dynamotest.Prefix(t))
	st, err := store.New(srv.Client(), store.Config{Tables: names})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateTables(context.Background()); err != nil {
		t.Fatal(err)
	}
	return srv, names
}

var localAWS = map[string]string{
	"AWS_REGION":            "us-east-1",
	"AWS_ACCESS_KEY_ID":     "local",
	"AWS_SECRET_ACCESS_KEY": "local",
}

func withLocalAWS(env map[string]string) map[string]string {
	for k, v := range localAWS {
		env[k] = v
	}
	return env
}

// The sample destination record turned into the success of a job the
// executor reported: the finisher records it without calling GitLab.
func TestFinisherBuiltBySAMClosesAReportedJob(t *testing.T) {
	srv, names := tables(t)
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "functions", "finisher", "testdata", "event.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	// A GitLab where the job ran and its executor reported success: the
	// finisher confirms every outcome with GitLab.
	gl := gitlabtest.New(t)
	gr := gl.CreateRunner(gitlabtest.RunnerOptions{})
	queued := gl.EnqueueJob(gl.CreateProject("group/demo", map[string]string{"README.md": "hi\n"}), gitlabtest.JobSpec{Script: []string{"make"}})
	glc, err := gitlab.New(gl.URL(), gitlab.Options{HTTPClient: gl.Client()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	taken, err := glc.RequestJob(ctx, gitlab.JobRequest{Token: gr.Token, SystemID: "s_0123456789ab"})
	if err != nil || taken.Job == nil || taken.Job.ID != queued.ID {
		t.Fatalf("RequestJob() = %+v, %v; want the queued job", taken, err)
	}
	job := taken.Job
	if _, err := glc.UpdateJob(ctx, job.ID, gitlab.UpdateJobRequest{Token: job.Token, State: gitlab.StateSuccess}); err != nil {
		t.Fatalf("report success: %v", err)
	}
	payload := rec["requestPayload"].(map[string]any)
	payload["gitlab_url"] = gl.URL()
	payload["job"].(map[string]any)["id"], payload["job"].(map[string]any)["token"] = job.ID, job.Token
	rec["requestContext"].(map[string]any)["condition"] = "Success"
	rec["responseContext"] = map[string]any{"statusCode": 200, "executedVersion": "$LATEST"}
	rec["responsePayload"] = map[string]any{"job_id": job.ID, "state": "success", "duration_ms": 61000, "reported": true}
	// The store as the poller leaves it: the job claimed and running, in a
	// slot the record's token holds. The finisher ignores records that do
	// not match the store.
	st, err := store.New(srv.Client(), store.Config{Tables: names})
	if err != nil {
		t.Fatal(err)
	}
	// As the poller does: take a slot, then claim the job with the hash of
	// the slot's token, which the finisher checks the record against.
	slot, ok, err := st.AcquireSlot(ctx, "0123456789abcdef0123", 1, time.Hour)
	if err != nil || !ok {
		t.Fatalf("AcquireSlot() = %v, %v; want a slot", ok, err)
	}
	if err := st.ClaimJob(ctx, &runner.Job{
		RunnerID: "0123456789abcdef0123", JobID: job.ID, LeaseExpiresAt: time.Now().Add(time.Hour),
		DispatchTokenHash: runner.HashDispatchToken(slot.Token), SlotIndex: slot.Index,
	}); err != nil {
		t.Fatalf("ClaimJob: %v", err)
	}
	dispatch := payload["dispatch"].(map[string]any)
	dispatch["job_id"], dispatch["gitlab_url"] = job.ID, gl.URL()
	dispatch["slot_index"], dispatch["slot_token"] = slot.Index, slot.Token
	event, _ := json.Marshal(rec)

	dir := builtArtifact(t, "FinisherFunction")
	fn := lambdatest.Start(t, filepath.Join(dir, "bootstrap"), lambdatest.Options{Env: withLocalAWS(map[string]string{
		"JOBS_TABLE":         names.Jobs,
		"SLOTS_TABLE":        names.Slots,
		"EXECUTOR_MEMORY_MB": "2048",
		"DYNAMODB_ENDPOINT":  srv.Endpoint,
		// The fake GitLab listens on loopback over http.
		"ALLOW_HTTP_GITLAB":    "true",
		"ALLOW_PRIVATE_GITLAB": "true",
	})})
	resp := invoke(t, fn, event)
	if resp.FunctionError != "" {
		t.Fatalf("function error: %s\nlogs:\n%s", resp.FunctionError, fn.Logs())
	}
	var out struct {
		RunnerID       string `json:"runner_id"`
		JobID          int64  `json:"job_id"`
		State          string `json:"state"`
		FailedInGitLab bool   `json:"failed_in_gitlab"`
	}
	if err := json.Unmarshal(resp.Payload, &out); err != nil {
		t.Fatalf("decode outcome %s: %v", resp.Payload, err)
	}
	if out.RunnerID != "0123456789abcdef0123" || out.JobID != job.ID || out.State != "success" || out.FailedInGitLab {
		t.Errorf("outcome: got %s, want job %d of runner 0123456789abcdef0123 recorded as success", resp.Payload, job.ID)
	}
}

// fakeSecretsManager answers GetSecretValue for the secrets it is given
// (ARN → value), as AWS Secrets Manager does over its JSON protocol.
func fakeSecretsManager(t *testing.T, secrets map[string]string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ SecretId string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		value, ok := secrets[in.SecretId]
		arn := in.SecretId
		if r.Header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue" || !ok {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"__type":"ResourceNotFoundException","message":"no such secret"}`))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"ARN": arn, "Name": "key", "SecretString": value})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// The sample poller event names a runner that does not exist: the poller
// answers without polling anything. Its sealing key arrives as the template
// passes it, a Secrets Manager ARN that the poller resolves at start.
func TestPollerBuiltBySAMAnswersTheSampleEvent(t *testing.T) {
	const keyARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:TokenSealingKeySecret-AbCdEf"
	secretsEndpoint := fakeSecretsManager(t, map[string]string{keyARN: seal.GenerateKey()})
	srv, names := tables(t)
	event, err := os.ReadFile(filepath.Join(repoRoot(t), "functions", "poller", "testdata", "event.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := builtArtifact(t, "PollerFunction")
	fn := lambdatest.Start(t, filepath.Join(dir, "bootstrap"), lambdatest.Options{Env: withLocalAWS(map[string]string{
		"RUNNERS_TABLE":      names.Runners,
		"JOBS_TABLE":         names.Jobs,
		"SLOTS_TABLE":        names.Slots,
		"TOKEN_SEALING_KEY":  keyARN,
		"EXECUTOR_FUNCTIONS": "provided.al2023=executor",
		// The AWS SDK's endpoint of one service, as any AWS_ENDPOINT_URL_*.
		"AWS_ENDPOINT_URL_SECRETS_MANAGER": secretsEndpoint,
		"DYNAMODB_ENDPOINT":                srv.Endpoint,
		"LAMBDA_ENDPOINT":                  "http://127.0.0.1:1",
	})})
	resp := invoke(t, fn, event)
	if resp.FunctionError != "" {
		t.Fatalf("function error: %s\nlogs:\n%s", resp.FunctionError, fn.Logs())
	}
	var res struct {
		Jobs, Failed *int
		Stop         string
	}
	if err := json.Unmarshal(resp.Payload, &res); err != nil {
		t.Fatalf("decode result %s: %v", resp.Payload, err)
	}
	if res.Jobs == nil || *res.Jobs != 0 || res.Failed == nil || *res.Failed != 0 || res.Stop == "" {
		t.Errorf("result: got %s, want no job, no failure and why it stopped", resp.Payload)
	}
	// The function's output reaches the test through a pipe: the line may
	// come a moment after the response.
	named := func() bool { return strings.Contains(fn.Logs(), "0123456789abcdef0123") }
	for deadline := time.Now().Add(5 * time.Second); !named() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if !named() {
		t.Errorf("the poller's logs do not name the runner:\n%s", fn.Logs())
	}
}
