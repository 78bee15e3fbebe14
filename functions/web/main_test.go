package main_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"gitlab-serverless-runner/pkg/lambdatest"
	"gitlab-serverless-runner/pkg/seal"
)

// functionEnv is the configuration Lambda would give the function. Nothing
// is contacted before the first request that needs it, so no DynamoDB or
// identity provider is needed to answer the start page.
func functionEnv() map[string]string {
	return map[string]string{
		"BASE_URL":              "https://runners.example.com",
		"OIDC_CLIENT_ID":        "client",
		"OIDC_CLIENT_SECRET":    "secret",
		"SESSION_KEY":           seal.GenerateKey(),
		"TOKEN_SEALING_KEY":     seal.GenerateKey(),
		"AWS_REGION":            "us-east-1",
		"AWS_ACCESS_KEY_ID":     "local",
		"AWS_SECRET_ACCESS_KEY": "local",
		"DYNAMODB_ENDPOINT":     "http://127.0.0.1:1",
	}
}

func sampleEvent(t testing.TB) []byte {
	b, err := os.ReadFile(filepath.Join("testdata", "event.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAnswersAPIGatewayV2Event(t *testing.T) {
	bootstrap := lambdatest.Build(t, "./functions/web")
	fn := lambdatest.Start(t, bootstrap, lambdatest.Options{Env: functionEnv()})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := fn.Invoke(ctx, sampleEvent(t))
	if err != nil {
		t.Fatal(err)
	}
	if resp.FunctionError != "" {
		t.Fatalf("function error: %s\nlogs:\n%s", resp.FunctionError, fn.Logs())
	}
	var out events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(resp.Payload, &out); err != nil {
		t.Fatalf("decode response: %v", err)
	}
	if out.StatusCode != 200 {
		t.Errorf("status = %d, want 200", out.StatusCode)
	}
	if !strings.Contains(out.Body, "Sign in with GitLab") {
		t.Errorf("body is not the sign-in page:\n%s", out.Body)
	}
	if got := header(out, "X-Frame-Options"); got != "DENY" {
		t.Errorf("X-Frame-Options = %q, want DENY", got)
	}
}

// header reads a response header whichever way the adapter set it.
func header(r events.APIGatewayV2HTTPResponse, name string) string {
	for k, v := range r.Headers {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// BenchmarkColdStart measures the time from starting the function under
// the Runtime Interface Emulator to its answer to the first API Gateway
// event, reported as init-ms. The emulator starts the bootstrap on the
// first invocation, so this is process start, wiring and the first request.
func BenchmarkColdStart(b *testing.B) {
	bootstrap := lambdatest.Build(b, "./functions/web")
	event := sampleEvent(b)
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		fn := lambdatest.Start(b, bootstrap, lambdatest.Options{Env: functionEnv()})
		resp, err := fn.Invoke(context.Background(), event)
		if err != nil || resp.FunctionError != "" {
			b.Fatalf("invoke: %v %s", err, resp.FunctionError)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "init-ms")
}
