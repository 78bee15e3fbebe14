// Command rootfsboot is a Lambda bootstrap for tests: it runs the
// entrypoint of an image function (/opt/gsr/executor) inside the image's
// unpacked root file system, as Lambda runs a container image: as the
// Lambda user, with a read-only root and only /tmp writable
// (pkg/rootfs). The process's environment is the image's (GSR_IMAGE_ENV,
// one KEY=value a line) and what Lambda sets (AWS_*, LAMBDA_*, _*), plus
// the function's own variables named in GSR_PASS (comma-separated).
// GSR_ROOTFS is the unpacked root.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"gitlab-serverless-runner/pkg/rootfs"
)

func main() {
	rootfs.InitMain()
	pass := map[string]bool{}
	for _, k := range strings.Split(os.Getenv("GSR_PASS"), ",") {
		pass[strings.TrimSpace(k)] = true
	}
	var env []string
	for _, kv := range strings.Split(os.Getenv("GSR_IMAGE_ENV"), "\n") {
		if kv != "" {
			env = append(env, kv)
		}
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if pass[k] || strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "LAMBDA_") || strings.HasPrefix(k, "_") {
			env = append(env, kv)
		}
	}
	err := rootfs.Run(context.Background(), rootfs.Command{
		Root: os.Getenv("GSR_ROOTFS"), Args: []string{"/opt/gsr/executor"}, Env: env, Dir: "/tmp",
		Stdout: os.Stdout, Stderr: os.Stderr,
	})
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		os.Exit(exit.ExitCode())
	case err != nil:
		fmt.Fprintln(os.Stderr, "rootfsboot:", err)
		os.Exit(125)
	}
}
