package executor_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"gitlab-serverless-runner/pkg/releasecli"
)

// TestMain lets the test binary act as release-cli, as the executor
// function's bootstrap does: the in-process executor offers it to jobs
// under that name (Config.ReleaseCLI).
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == releasecli.Name {
		os.Exit(releasecli.Main(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr, releasecli.Options{Version: "1.2.3"}))
	}
	os.Exit(m.Run())
}

// testRevision is CI_RUNNER_REVISION of the in-process executor.
const testRevision = "0123abcd"

// testBinary is this test binary, which acts as release-cli under that
// name.
func testBinary(t testing.TB) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return self
}
