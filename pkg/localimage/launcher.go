package localimage

import (
	"context"
	"path"
	"path/filepath"
	"time"

	"gitlab-serverless-runner/pkg/rootfs"
	"gitlab-serverless-runner/pkg/shell"
)

// launcher runs a job's steps inside an unpacked image, each with
// rootfs.Run: its processes end with it, since they live in its PID
// namespace.
type launcher struct {
	root  string
	binds []rootfs.Bind
	grace time.Duration
}

var _ shell.Launcher = (*launcher)(nil)

// LookPath searches path inside the image.
func (l *launcher) LookPath(name, pathList string) string {
	for _, dir := range filepath.SplitList(pathList) {
		if !path.IsAbs(dir) {
			continue
		}
		if p := path.Join(dir, name); executable(l.root, p) {
			return p
		}
	}
	return ""
}

// Run runs c inside the image as the Lambda user.
func (l *launcher) Run(ctx context.Context, c shell.Command) error {
	grace := l.grace
	if grace <= 0 {
		grace = shell.DefaultKillGrace
	}
	return rootfs.Run(ctx, rootfs.Command{
		Root: l.root, Args: append([]string{c.Path}, c.Args...), Env: c.Env, Dir: c.Dir,
		Binds: l.binds, Stdin: c.Stdin, Stdout: c.Output, Stderr: c.Output, KillGrace: grace,
	})
}
