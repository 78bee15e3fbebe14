package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"gitlab-serverless-runner/pkg/archive"
	"gitlab-serverless-runner/pkg/checkout"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/retry"
)

// downloadArtifacts downloads and extracts the artifacts of the job's
// dependencies. Any failure fails the job.
func (j *jobRun) downloadArtifacts(ctx context.Context) (o outcome, ok bool) {
	var deps []gitlab.Dependency
	for _, d := range j.job.Dependencies {
		if d.ArtifactsFile != nil && d.ArtifactsFile.Filename != "" {
			deps = append(deps, d)
		}
	}
	if len(deps) == 0 {
		return outcome{}, true
	}
	ok = true
	j.section("download_artifacts", "Downloading artifacts", func() {
		for _, d := range deps {
			j.w.Printf("Downloading artifacts for %s (%d)...\n", d.Name, d.ID)
			var err error
			for attempt := 1; ; attempt++ {
				err = j.downloadOne(ctx, d)
				if err == nil || ctx.Err() != nil || attempt >= j.set.artifactAttempts || errors.Is(err, archive.ErrUnsafeEntry) {
					break
				}
				j.w.Warningf("Downloading artifacts from coordinator... failed (attempt %d of %d): %v", attempt, j.set.artifactAttempts, err)
				if retry.Sleep(ctx, attemptWait) != nil {
					break
				}
			}
			if err != nil {
				if ctx.Err() != nil {
					o, ok = outcome{reason: gitlab.ReasonScriptFailure}, false
					return
				}
				j.w.Errorf("Downloading artifacts from coordinator... failed: %v", err)
				o, ok = outcome{reason: gitlab.ReasonScriptFailure, message: fmt.Sprintf(": download artifacts of %s (%d): %v", d.Name, d.ID, err)}, false
				return
			}
			j.w.Printf("Downloading artifacts from coordinator... ok        id=%d\n", d.ID)
		}
	})
	return o, ok
}

func (j *jobRun) downloadOne(ctx context.Context, d gitlab.Dependency) error {
	f, err := os.CreateTemp(j.e.cfg.ScratchDir, "artifacts-*.zip")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	token := d.Token
	if token == "" {
		token = j.job.Token
	}
	n, err := j.client.DownloadArtifacts(ctx, d.ID, token, f)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if err := archive.ExtractZip(f, n, j.projectDir); err != nil {
		if errors.Is(err, archive.ErrUnsafeEntry) {
			return fmt.Errorf("refused to extract the archive, it would write outside the project directory: %w", err)
		}
		return fmt.Errorf("extract: %w", err)
	}
	return nil
}

// uploadArtifacts uploads the artifacts whose when matches the job's
// result. An upload failure fails the job.
func (j *jobRun) uploadArtifacts(ctx context.Context, success bool) outcome {
	var todo []gitlab.Artifact
	vars := j.sess.Variables()
	for _, a := range j.job.Artifacts {
		if whenMatches(a.When, success) {
			todo = append(todo, a.Expand(vars))
		}
	}
	if len(todo) == 0 || ctx.Err() != nil {
		return outcome{}
	}
	name, header := "upload_artifacts_on_success", "Uploading artifacts for successful job"
	if !success {
		name, header = "upload_artifacts_on_failure", "Uploading artifacts for failed job"
	}
	var o outcome
	j.section(name, header, func() {
		for _, a := range todo {
			if err := j.uploadOne(ctx, a); err != nil {
				j.w.Errorf("Uploading artifacts as %q to coordinator... failed: %v", artifactType(a), err)
				if !o.failed() {
					o = outcome{reason: gitlab.ReasonScriptFailure, message: fmt.Sprintf(": upload artifacts %q: %v", artifactType(a), err)}
				}
			}
		}
	})
	return o
}

func artifactType(a gitlab.Artifact) string {
	if a.ArtifactType == "" {
		return gitlab.ArtifactTypeArchive
	}
	return a.ArtifactType
}

// uploadOne streams one artifact archive into the upload: the archive is
// written into a pipe that the upload reads, never held whole.
func (j *jobRun) uploadOne(ctx context.Context, a gitlab.Artifact) error {
	spec := archive.Spec{Paths: a.Paths, Exclude: a.Exclude}
	if a.Untracked {
		spec.Untracked = checkout.Untracked(j.projectDir)
	}
	j.w.Printf("Uploading artifacts...\n")
	files, err := archive.Select(j.projectDir, spec, j.w)
	if err != nil {
		return fmt.Errorf("select files: %w", err)
	}
	for _, p := range a.Paths {
		j.w.Printf("%s: found %d matching artifact files and directories\n", p, countUnder(files, p))
	}
	if len(files) == 0 {
		j.w.Warningf("No files to upload")
		return nil
	}
	format := a.ArtifactFormat
	if format == "" {
		format = archive.FormatZip
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(archive.Write(pw, format, j.projectDir, files, j.w))
	}()
	err = j.client.UploadArtifacts(ctx, j.job.ID, j.job.Token, gitlab.ArtifactUpload{
		Name: a.Name, Type: artifactType(a), Format: a.ArtifactFormat, ExpireIn: a.ExpireIn,
	}, pr)
	pr.CloseWithError(errors.New("upload ended"))
	if err != nil {
		return err
	}
	j.w.Printf("Uploading artifacts as %q to coordinator... 201 Created\n", artifactType(a))
	return nil
}

// countUnder counts the selected files a path pattern stands for (for the
// trace only): those equal to it or below it, or all when it is a glob.
func countUnder(files []string, p string) int {
	p = strings.TrimSuffix(p, "/")
	if strings.ContainsAny(p, "*?[{") {
		return len(files)
	}
	n := 0
	for _, f := range files {
		if f == p || strings.HasPrefix(f, p+"/") {
			n++
		}
	}
	return n
}

// whenMatches reports whether a cache or artifact whose when is when
// applies to a job that succeeded (or not).
func whenMatches(when string, success bool) bool {
	switch when {
	case gitlab.WhenAlways:
		return true
	case gitlab.WhenOnFailure:
		return !success
	default:
		return success
	}
}
