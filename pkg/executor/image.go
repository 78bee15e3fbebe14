package executor

import (
	"context"
	"errors"
	"fmt"
	"io"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/shell"
)

// ImageRunner runs the jobs that name an `image:` inside that image on
// this machine: local mode's (package localimage). On Lambda a job's image
// is its function's own, the executor already runs inside it, and
// Config.Images is nil.
type ImageRunner interface {
	// PrepareImage makes job's image ready for the job's steps and says
	// how they run in it. It writes what it does to w as lines for the
	// job's trace (what the image resolved to, whether it was pulled or
	// found unpacked, how long that took). The error is ctx's when ctx
	// ended; it matches ErrImage, with a message fit for the trace, when
	// the job's image cannot be used (not found, not readable, no variant
	// for this machine, no /bin/sh); any other error is this machine's
	// failure.
	PrepareImage(ctx context.Context, job *gitlab.Job, w io.Writer) (*PreparedImage, error)
}

// PreparedImage says how a job's steps run in its image.
type PreparedImage struct {
	// Launcher starts each step's shell inside the image.
	Launcher shell.Launcher
	// Env is the steps' base environment (the image's own variables,
	// such as its PATH), in place of Config.BaseEnv.
	Env []string
	// Entrypoint is the image's own ENTRYPOINT: the steps run through it
	// unless the job sets image:entrypoint, as gitlab-runner runs them.
	Entrypoint []string
	// BuildsDir and HomeDir replace Config's for the job: directories of
	// this machine that the steps see at the same paths, so what the
	// executor checks out, restores and uploads is what the job sees.
	BuildsDir, HomeDir string
	// Release, when set, is called once the job is over, to remove what
	// PrepareImage made for it.
	Release func()
}

// ErrImage marks the errors of ImageRunner.PrepareImage that the job's
// image causes: the job fails with image_pull_failure.
var ErrImage = errors.New("the job's image cannot be used")

// prepareImage readies the job's image, in a prepare_image section, when
// the job names one and the executor runs images (Config.Images). It is
// done before anything is written to the job's directories, which the
// image's preparation chooses.
func (j *jobRun) prepareImage(ctx context.Context) (outcome, bool) {
	if !j.localImage() {
		return outcome{}, true
	}
	img := j.job.Image
	var (
		p   *PreparedImage
		err error
	)
	j.section("prepare_image", fmt.Sprintf("Preparing the image %s", img.Name), func() {
		p, err = j.e.cfg.Images.PrepareImage(ctx, j.job, j.w)
	})
	switch {
	case err == nil:
		j.image = p
		return outcome{}, true
	case errors.Is(err, ErrImage):
		return outcome{reason: gitlab.ReasonImagePullFailure, message: ": " + err.Error()}, false
	default:
		// classify turns it into a cancellation or timeout when ctx ended.
		j.log.Error("executor: prepare the job's image", "error", err)
		return outcome{reason: gitlab.ReasonRunnerSystemFailure, message: fmt.Sprintf(" (system failure): prepare the image %s: %v", img.Name, err)}, false
	}
}

// buildsDir is the job's CI_BUILDS_DIR: its image's, or Config's.
func (j *jobRun) buildsDir() string {
	if j.image != nil {
		return j.image.BuildsDir
	}
	return j.e.cfg.BuildsDir
}

// inImage returns cfg for a job whose steps run in its image on this
// machine: the image's directories and launcher (setup takes the image's
// environment and entrypoint). Without one it returns cfg as it is.
func (j *jobRun) inImage(cfg shell.Config) shell.Config {
	if j.image == nil {
		return cfg
	}
	cfg.BuildsDir, cfg.HomeDir, cfg.Launcher = j.image.BuildsDir, j.image.HomeDir, j.image.Launcher
	// The runner's tools (release-cli) are programs of this machine,
	// which the image does not contain.
	cfg.Tools = nil
	return cfg
}

// homeDir is the job's HOME: its image's, or Config's.
func (j *jobRun) homeDir() string {
	if j.image != nil {
		return j.image.HomeDir
	}
	return j.e.cfg.HomeDir
}

// localImage reports whether the job runs in its image on this machine
// (Config.Images), known before the image is prepared.
func (j *jobRun) localImage() bool {
	img := j.job.Image
	return j.e.cfg.Images != nil && img != nil && img.Name != ""
}

// releaseImage removes what the image's preparation made for the job.
func (j *jobRun) releaseImage() {
	if j.image != nil && j.image.Release != nil {
		j.image.Release()
	}
}
