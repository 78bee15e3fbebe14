package main_test

import (
	"os"
	"testing"

	"gitlab-serverless-runner/pkg/rootfs"
)

// TestMain lets this test binary serve as the init of image jobs' steps,
// as the local binary's main does.
func TestMain(m *testing.M) {
	rootfs.InitMain()
	os.Exit(m.Run())
}
