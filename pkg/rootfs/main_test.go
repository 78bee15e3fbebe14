package rootfs_test

import (
	"os"
	"testing"

	"gitlab-serverless-runner/pkg/rootfs"
)

func TestMain(m *testing.M) {
	rootfs.InitMain()
	os.Exit(m.Run())
}
