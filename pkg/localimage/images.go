package localimage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sync/singleflight"

	"gitlab-serverless-runner/pkg/executor"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/jobimage"
	"gitlab-serverless-runner/pkg/rootfs"
)

// Images runs jobs' images on this machine. Set Resolver, Cache and
// JobsDir before first use.
type Images struct {
	// Resolver finds an image's manifest; local mode sets
	// AllowPrivateRegistries, so jobs may name registries on this machine
	// or its network.
	Resolver *jobimage.Resolver
	// Cache holds the unpacked root file systems, one per digest.
	Cache *rootfs.Cache
	// JobsDir holds each job's directories while it runs. It must be an
	// absolute path under /tmp (see the package comment).
	JobsDir string
	// KillGrace is the time a stopped step has between SIGTERM and
	// SIGKILL; zero means shell.DefaultKillGrace.
	KillGrace time.Duration

	unpacks singleflight.Group
}

var _ executor.ImageRunner = (*Images)(nil)

// HostArch returns the Lambda architecture of this machine.
func HostArch() (jobimage.Arch, error) {
	a, err := jobimage.ParseArch(runtime.GOARCH)
	if err != nil {
		return "", fmt.Errorf("localimage: this machine's architecture %s has no Lambda equivalent: %w", runtime.GOARCH, err)
	}
	return a, nil
}

// unusable is an error the job's image causes.
type unusable struct {
	msg string
	err error
}

func (e *unusable) Error() string        { return e.msg }
func (e *unusable) Is(target error) bool { return target == executor.ErrImage }
func (e *unusable) Unwrap() error        { return e.err }

// pullFailed says why the image named ref could not be pulled.
func pullFailed(ref string, err error) error {
	detail := strings.TrimPrefix(err.Error(), "jobimage: ")
	var ie *jobimage.Error
	switch {
	case errors.As(err, &ie) && errors.Is(err, jobimage.ErrNoPlatform):
		offered := "no platform this machine runs"
		if len(ie.Platforms) > 0 {
			offered = strings.Join(ie.Platforms, ", ")
		}
		detail = fmt.Sprintf("no variant for linux/%s, this machine's architecture (the image offers %s); local mode runs images of this machine's architecture only",
			runtime.GOARCH, offered)
	case errors.As(err, &ie):
		detail = ie.Detail
	}
	return &unusable{msg: fmt.Sprintf("failed to pull image %q: %s", ref, detail), err: err}
}

// PrepareImage implements executor.ImageRunner: it resolves the job's
// image, unpacks it unless an earlier job did, checks that it has
// /bin/sh, and makes the job's directories.
func (im *Images) PrepareImage(ctx context.Context, job *gitlab.Job, w io.Writer) (*executor.PreparedImage, error) {
	if job.Image == nil || job.Image.Name == "" {
		return nil, errors.New("localimage: the job names no image")
	}
	if !filepath.IsAbs(im.JobsDir) || !underTmp(im.JobsDir) {
		return nil, fmt.Errorf("localimage: jobs directory %q is not an absolute path under /tmp", im.JobsDir)
	}
	ref := job.Image.Name
	arch, err := HostArch()
	if err != nil {
		return nil, err
	}
	if asked := job.Variables.Get("LAMBDA_ARCH"); asked != "" {
		if a, err := jobimage.ParseArch(asked); err != nil || a != arch {
			fmt.Fprintf(w, "LAMBDA_ARCH=%s is not followed in local mode: jobs run on this machine's architecture, %s\n", asked, arch)
		}
	}
	for _, k := range []string{"LAMBDA_MEMORY", "LAMBDA_EPHEMERAL_STORAGE"} {
		if job.Variables.Get(k) != "" {
			fmt.Fprintf(w, "%s is not applied in local mode: the job has this machine's memory and disk\n", k)
		}
	}
	creds, err := jobimage.JobCredentials(job.Variables)
	if err != nil {
		return nil, pullFailed(ref, err)
	}

	p := arch.Platform()
	fmt.Fprintf(w, "Resolving %s for %s/%s (Lambda architecture %s)...\n", ref, p.OS, p.Architecture, arch)
	start := time.Now()
	res, err := im.Resolver.Resolve(ctx, ref, arch, creds)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, pullFailed(ref, err)
	}
	fmt.Fprintf(w, "Resolved to %s (%d layers, %s) in %s\n", res.Digest, res.Layers, mebibytes(res.Size), since(start))

	start = time.Now()
	root, unpacked, err := im.unpack(ctx, res)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, pullFailed(ref, err)
	}
	if unpacked {
		fmt.Fprintf(w, "Pulled and unpacked %s in %s\n", res.Digest, since(start))
	} else {
		fmt.Fprintf(w, "Using the root file system of %s unpacked by an earlier job\n", res.Digest)
	}
	if !executable(root, "/bin/sh") {
		return nil, &unusable{msg: fmt.Sprintf(
			"image %q has no /bin/sh: a job's scripts run in a shell, so use an image that has one", ref)}
	}

	dir, err := im.jobDirs()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "The job runs as uid %d on the image's read-only root file system, as on AWS Lambda; only /tmp (which holds the builds directory and HOME) is writable\n", rootfs.DefaultUID)
	env := append([]string{}, res.Config.Config.Env...)
	return &executor.PreparedImage{
		Launcher: &launcher{root: root, grace: im.KillGrace, binds: []rootfs.Bind{
			{Source: filepath.Join(dir, "tmp"), Target: "/tmp"},
			{Source: filepath.Join(dir, "job"), Target: filepath.Join(dir, "job")},
		}},
		Env:        env,
		Entrypoint: res.Config.Config.Entrypoint,
		BuildsDir:  filepath.Join(dir, "job", "builds"),
		HomeDir:    filepath.Join(dir, "job", "home"),
		Release:    func() { _ = os.RemoveAll(dir) },
	}, nil
}

// unpack returns the image's root file system and whether this call
// unpacked it. Concurrent calls for one digest share one unpack.
func (im *Images) unpack(ctx context.Context, res *jobimage.Resolved) (string, bool, error) {
	final := im.Cache.Path(res.Digest)
	if fi, err := os.Stat(final); err == nil && fi.IsDir() {
		return final, false, nil
	}
	for {
		v, err, _ := im.unpacks.Do(res.Digest.String(), func() (any, error) {
			return im.Cache.Unpack(ctx, res.Image)
		})
		// The shared unpack ran under the first caller's context: when
		// that caller went away, try again under ours.
		if err != nil && ctx.Err() == nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			continue
		}
		if err != nil {
			return "", false, err
		}
		return v.(string), true, nil
	}
}

// jobDirs makes a job's directory: job/ (its builds directory and HOME,
// bound at their own paths) and tmp/ (its /tmp).
func (im *Images) jobDirs() (string, error) {
	if err := os.MkdirAll(im.JobsDir, 0o700); err != nil {
		return "", fmt.Errorf("localimage: create jobs directory: %w", err)
	}
	dir, err := os.MkdirTemp(im.JobsDir, "job-")
	if err != nil {
		return "", fmt.Errorf("localimage: create job directory: %w", err)
	}
	for _, d := range []string{"job/builds", "job/home", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("localimage: create job directory: %w", err)
		}
	}
	return dir, nil
}

// executable reports whether p is an executable file in root, symbolic
// links followed inside root.
func executable(root, p string) bool {
	host, err := securejoin.SecureJoin(root, p)
	if err != nil {
		return false
	}
	fi, err := os.Stat(host)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func underTmp(p string) bool {
	c := path.Clean(filepath.ToSlash(p))
	return strings.HasPrefix(c, "/tmp/")
}

func mebibytes(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func since(t time.Time) time.Duration {
	d := time.Since(t)
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Millisecond)
}
