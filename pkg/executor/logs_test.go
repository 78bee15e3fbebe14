package executor_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/logging"
	"gitlab-serverless-runner/pkg/logtest"
)

// TestLogLinesNameEachAttributeOnce runs jobs down the executor's paths
// (success, script failure, a job GitLab cancels outright, an event that
// cannot run) with the JSON logger of the Lambda function, at debug
// level, and reads every line back: each is one JSON object that names no
// key twice, and every line about a job names it.
func TestLogLinesNameEachAttributeOnce(t *testing.T) {
	t.Parallel() // mostly waiting for a sleeping job
	e := newEnv(t)
	e.cfg.StatusInterval = 200 * time.Millisecond
	var logs logtest.Buffer
	e.cfg.Logger = logging.New(&logs, logging.Config{Level: slog.LevelDebug})
	p := project(e, nil)

	if _, got := e.run(e.take(p, gitlabtest.JobSpec{Script: []string{"echo hi"}, Artifacts: []gitlab.Artifact{{Paths: []string{"README.md"}, When: "on_success"}}})); got.State != "success" {
		t.Errorf("job = %s, want success", got.State)
	}
	if _, got := e.run(e.take(p, gitlabtest.JobSpec{Script: []string{"exit 2"}})); got.State != "failed" {
		t.Errorf("job = %s, want failed", got.State)
	}
	ev := e.take(p, gitlabtest.JobSpec{Script: []string{"sleep 300"}})
	done := e.start(context.Background(), ev)
	waitTrace(t, e, ev.Job.ID, "$ sleep 300")
	for range 2 {
		if err := e.srv.CancelJob(ev.Job.ID); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the canceled job did not end within a minute")
	}
	bad := e.take(p, gitlabtest.JobSpec{Script: []string{"true"}})
	bad.Job.GitInfo.RepoURL = ""
	e.handle(bad)

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) < 8 {
		t.Fatalf("only %d log lines:\n%s", len(lines), logs.String())
	}
	for _, line := range lines {
		repeated, err := logtest.RepeatedKeys([]byte(line))
		if err != nil {
			t.Errorf("log line is no JSON object: %v: %s", err, line)
			continue
		}
		if len(repeated) > 0 {
			t.Errorf("log line names %q more than once: %s", repeated, line)
		}
		var l struct {
			Msg   string `json:"msg"`
			JobID *int64 `json:"job_id"`
		}
		_ = json.Unmarshal([]byte(line), &l)
		if (strings.HasPrefix(l.Msg, "trace:") || strings.Contains(l.Msg, "job")) && l.JobID == nil {
			t.Errorf("log line about a job does not name it: %s", line)
		}
	}
}
