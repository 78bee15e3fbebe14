package lambdatest_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/lambdatest"
)

func TestEmulatorRunsBootstrapWarm(t *testing.T) {
	bin := lambdatest.Build(t, "./pkg/lambdatest/testdata/echo")
	fn := lambdatest.Start(t, bin, lambdatest.Options{Env: map[string]string{"CUSTOM": "x y"}})
	ctx := context.Background()
	for i := 1; i <= 2; i++ {
		resp, err := fn.Invoke(ctx, []byte(`{"n":1}`))
		if err != nil {
			t.Fatal(err)
		}
		if resp.FunctionError != "" {
			t.Fatalf("function error: %s\nlogs:\n%s", resp.FunctionError, fn.Logs())
		}
		var got struct {
			Count  int    `json:"count"`
			Custom string `json:"custom"`
		}
		if err := json.Unmarshal(resp.Payload, &got); err != nil {
			t.Fatalf("decode %s: %v", resp.Payload, err)
		}
		if got.Count != i || got.Custom != "x y" {
			t.Errorf("invocation %d: got count %d custom %q, want %d %q", i, got.Count, got.Custom, i, "x y")
		}
	}
	resp, err := fn.Invoke(ctx, []byte(`{"fail":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if resp.FunctionError == "" {
		t.Errorf("a failing handler: got no function error, payload %s", resp.Payload)
	}
}

func TestEmulatorReportsATimeoutAsAFunctionError(t *testing.T) {
	fn := lambdatest.Start(t, lambdatest.Build(t, "./pkg/lambdatest/testdata/jobs"), lambdatest.Options{Env: map[string]string{"AWS_LAMBDA_FUNCTION_TIMEOUT": "1"}})
	resp, err := fn.Invoke(context.Background(), []byte(`{"sleep_ms":3000}`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.FunctionError, "Task timed out after 1.00 seconds") {
		t.Errorf("FunctionError = %q, payload %s; want the emulator's timeout", resp.FunctionError, resp.Payload)
	}
}
