// Command jobs is a Lambda function for lambdatest's tests that runs each
// event's script as a job, the way the executor runs one: sh -c script in
// the working directory, with the event's variables and without
// AWS_LAMBDA_RUNTIME_API. It waits for the script, not for what the script
// leaves running, and answers with the script's exit code and output, the
// count of invocations this process has served, its process id and the
// invocation's tenant id.
//
// Event fields: "script" (run it), "env" (variables for it), "sleep_ms"
// (sleep first), "fail" (answer with an error), "crash" (exit the process
// with that code instead of answering), "respond_and_exit" (post the answer
// to the Runtime API itself, then exit at once, as a bootstrap that serves
// one invocation only).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	Script  string            `json:"script"`
	Env     map[string]string `json:"env"`
	SleepMS int               `json:"sleep_ms"`
	Fail    bool              `json:"fail"`
	Crash   int               `json:"crash"`
	Exit    bool              `json:"respond_and_exit"`
}

type result struct {
	Count     int    `json:"count"`
	PID       int    `json:"pid"`
	TenantID  string `json:"tenant_id"`
	RequestID string `json:"request_id"`
	Exit      int    `json:"exit"`
	Output    string `json:"output"`
}

var count int

func handle(ctx context.Context, ev event) (result, error) {
	count++
	res := result{Count: count, PID: os.Getpid()}
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		res.TenantID, res.RequestID = lc.TenantID, lc.AwsRequestID
	}
	if ev.SleepMS > 0 {
		time.Sleep(time.Duration(ev.SleepMS) * time.Millisecond)
	}
	if ev.Crash != 0 {
		os.Exit(ev.Crash)
	}
	if ev.Fail {
		return result{}, errors.New("asked to fail")
	}
	if ev.Script != "" {
		res.Exit, res.Output = run(ev)
	}
	if ev.Exit {
		respondAndExit(res)
	}
	return res, nil
}

// respondAndExit posts res as the invocation's response and exits before
// asking for the next invocation.
func respondAndExit(res result) {
	body, _ := json.Marshal(res)
	url := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/invocation/" + res.RequestID + "/response"
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		os.Exit(3)
	}
	resp.Body.Close()
	os.Exit(0)
}

// run runs the script with its output in a file, not a pipe: a process the
// script leaves behind keeps its descriptors, and a pipe would hold Wait
// until that process ends.
func run(ev event) (int, string) {
	out, err := os.CreateTemp("", "job-output-*")
	if err != nil {
		return -1, err.Error()
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd := exec.Command("/bin/sh", "-c", ev.Script)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_LAMBDA_RUNTIME_API=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range ev.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Run()
	b, _ := os.ReadFile(out.Name())
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		return exitErr.ExitCode(), string(b)
	case err != nil:
		return -1, string(bytes.TrimSpace(b)) + err.Error()
	}
	return 0, string(b)
}

func main() {
	lambda.Start(handle)
}
