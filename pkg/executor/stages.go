package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5"

	"gitlab-serverless-runner/pkg/archive"
	"gitlab-serverless-runner/pkg/checkout"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/shell"
	"gitlab-serverless-runner/pkg/trace"
)

// Failures before the script are reported as gitlab-runner reports them:
// get_sources, download_artifacts and upload failures are the job's
// (script_failure, no exit code, since the user's script did not run), a bad
// GIT_* setting is runner_configuration_error, and the executor's own faults
// are runner_system_failure.

// hook runs the job's pre/post get-sources hook, if any.
func (j *jobRun) hook(ctx context.Context, name string) (outcome, bool) {
	for _, h := range j.job.Hooks {
		if h.Name != name || len(h.Script) == 0 {
			continue
		}
		r := j.sess.Run(ctx, gitlab.Step{Name: name, Script: h.Script}, j.w)
		if r.Outcome != shell.Succeeded {
			return outcome{reason: trace.ReasonScriptFailure, exitCode: r.ExitCode, message: fmt.Sprintf(": %s failed: %v", name, r.Err)}, false
		}
	}
	return outcome{}, true
}

// getSources checks out the job's commit.
func (j *jobRun) getSources(ctx context.Context) (o outcome, ok bool) {
	ok = true
	j.section("get_sources", "Getting source from Git repository", func() {
		opts, err := checkout.FromJob(j.job, j.projectDir)
		if err != nil {
			j.w.Errorf("%v", err)
			o, ok = outcome{reason: trace.ReasonConfigurationError, message: fmt.Sprintf(": %v", err)}, false
			return
		}
		if o, ok = j.hook(ctx, "pre_get_sources_script"); !ok {
			return
		}
		opts.Trace = j.w
		opts.CAPEM = []byte(j.ev.CAPEM)
		opts.HTTPClient = j.e.git
		attempts, err := attemptsVar(j.job.Variables, "GET_SOURCES_ATTEMPTS")
		if err != nil {
			j.w.Errorf("%v", err)
			o, ok = outcome{reason: trace.ReasonConfigurationError, message: fmt.Sprintf(": %v", err)}, false
			return
		}
		for attempt := 1; ; attempt++ {
			_, err = checkout.Get(ctx, opts)
			if err == nil || ctx.Err() != nil || attempt >= attempts {
				break
			}
			j.w.Warningf("Getting source from Git repository failed (attempt %d of %d): %v", attempt, attempts, err)
			// gitlab-runner's clear_worktree: start the next attempt afresh.
			if rerr := removeContents(j.projectDir); rerr != nil {
				j.log.Warn("executor: clear the worktree before another attempt", "error", rerr)
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				o, ok = outcome{reason: trace.ReasonScriptFailure}, false
				return
			}
			j.w.Errorf("Getting source from Git repository failed: %v", err)
			o, ok = outcome{reason: trace.ReasonScriptFailure, message: fmt.Sprintf(": get sources: %v", err)}, false
			return
		}
		if o, ok = j.hook(ctx, "post_get_sources_script"); !ok {
			return
		}
	})
	return o, ok
}

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
			if err := j.downloadOne(ctx, d); err != nil {
				if ctx.Err() != nil {
					o, ok = outcome{reason: trace.ReasonScriptFailure}, false
					return
				}
				j.w.Errorf("Downloading artifacts from coordinator... failed: %v", err)
				o, ok = outcome{reason: trace.ReasonScriptFailure, message: fmt.Sprintf(": download artifacts of %s (%d): %v", d.Name, d.ID, err)}, false
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

// cacheEntry is one cache of the job with its keys resolved.
type cacheEntry struct {
	gitlab.Cache
	// keys are the payload keys to try in order (key, fallback keys,
	// CACHE_FALLBACK_KEY), as the event's cache map names them.
	keys []string
}

func (j *jobRun) caches() []cacheEntry {
	var out []cacheEntry
	fallback := j.job.Variables.Get("CACHE_FALLBACK_KEY")
	for _, c := range j.job.Cache {
		e := cacheEntry{Cache: c, keys: []string{c.Key}}
		e.keys = append(e.keys, c.FallbackKeys...)
		if fallback != "" && !strings.HasSuffix(fallback, "-protected") {
			e.keys = append(e.keys, fallback)
		}
		out = append(out, e)
	}
	return out
}

// displayKey is the key as the trace shows it: expanded and sanitized.
func (j *jobRun) displayKey(key string) string {
	if key == "" {
		key = j.job.JobInfo.Name + "/" + j.job.GitInfo.Ref
	}
	key = os.Expand(key, func(k string) string { return j.job.Variables.Get(k) })
	if s, err := archive.SanitizeCacheKey(key); err == nil {
		return s
	}
	return key
}

func policy(c gitlab.Cache) string {
	if c.Policy == "" {
		return gitlab.CachePolicyPullPush
	}
	return c.Policy
}

// restoreCache downloads and extracts caches; failures only warn.
func (j *jobRun) restoreCache(ctx context.Context) {
	var todo []cacheEntry
	for _, c := range j.caches() {
		if p := policy(c.Cache); p == gitlab.CachePolicyPull || p == gitlab.CachePolicyPullPush {
			todo = append(todo, c)
		}
	}
	if len(todo) == 0 {
		return
	}
	j.section("restore_cache", "Restoring cache", func() {
		for _, c := range todo {
			restored := false
			for _, k := range c.keys {
				urls, ok := j.ev.Cache[k]
				if !ok || urls.GetURL == "" {
					continue
				}
				j.w.Printf("Checking cache for %s...\n", j.displayKey(k))
				found, err := j.getCache(ctx, urls.GetURL)
				switch {
				case err != nil:
					j.w.Warningf("Failed to extract cache %s: %v", j.displayKey(k), err)
				case !found:
					j.w.Warningf("Cache %s does not exist yet", j.displayKey(k))
				default:
					j.w.Printf("Successfully extracted cache\n")
					restored = true
				}
				if restored {
					break
				}
			}
			if !restored {
				j.w.Warningf("No cache restored for key %s", j.displayKey(c.Key))
			}
		}
	})
}

// getCache downloads one cache archive; found is false on 404 (or 403, which
// S3 answers for a missing object when listing is not allowed).
func (j *jobRun) getCache(ctx context.Context, url string) (found bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, errors.New("invalid cache URL")
	}
	resp, err := j.e.http.Do(req)
	if err != nil {
		return false, fmt.Errorf("download cache: %w", errors.Unwrap(err))
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return false, nil
	case resp.StatusCode != http.StatusOK:
		return false, fmt.Errorf("download cache: status %d", resp.StatusCode)
	}
	if err := archive.ExtractZipStream(resp.Body, j.projectDir); err != nil {
		return true, fmt.Errorf("extract cache: %w", err)
	}
	return true, nil
}

// archiveCache saves caches whose policy allows pushing and whose when
// matches the job's result; failures only warn.
func (j *jobRun) archiveCache(ctx context.Context, success bool) {
	var todo []cacheEntry
	for _, c := range j.caches() {
		if p := policy(c.Cache); p != gitlab.CachePolicyPush && p != gitlab.CachePolicyPullPush {
			continue
		}
		if !whenMatches(c.When, success) {
			continue
		}
		todo = append(todo, c)
	}
	if len(todo) == 0 {
		return
	}
	name, header := "archive_cache", "Saving cache for successful job"
	if !success {
		name, header = "archive_cache_on_failure", "Saving cache for failed job"
	}
	j.section(name, header, func() {
		for _, c := range todo {
			key := j.displayKey(c.Key)
			urls := j.ev.Cache[c.Key]
			if urls.PutURL == "" {
				j.w.Warningf("Cache %s not saved: no upload URL was given for it", key)
				continue
			}
			j.w.Printf("Creating cache %s...\n", key)
			if err := j.putCache(ctx, c, urls.PutURL); err != nil {
				j.w.Warningf("Failed to create cache %s: %v", key, err)
				continue
			}
			j.w.Printf("Created cache\n")
		}
	})
}

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

// putCache writes the cache archive to a file and PUTs it: pre-signed S3
// uploads need the length up front.
func (j *jobRun) putCache(ctx context.Context, c cacheEntry, url string) error {
	spec := archive.Spec{Paths: c.Paths}
	if c.Untracked {
		spec.Untracked = untrackedFiles(j.projectDir)
	}
	files, err := archive.Select(j.projectDir, spec, j.w)
	if err != nil {
		return fmt.Errorf("select files: %w", err)
	}
	if len(files) == 0 {
		return errors.New("no files to cache")
	}
	f, err := os.CreateTemp(j.e.cfg.ScratchDir, "cache-*.zip")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := archive.WriteZip(f, j.projectDir, files, j.w); err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, f)
	if err != nil {
		return errors.New("invalid cache URL")
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := j.e.http.Do(req)
	if err != nil {
		return fmt.Errorf("upload cache: %w", errors.Unwrap(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("upload cache: status %d", resp.StatusCode)
	}
	return nil
}

// uploadArtifacts uploads the artifacts whose when matches the job's
// result. An upload failure fails the job.
func (j *jobRun) uploadArtifacts(ctx context.Context, success bool) outcome {
	var todo []gitlab.Artifact
	for _, a := range j.job.Artifacts {
		if whenMatches(a.When, success) {
			todo = append(todo, a)
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
					o = outcome{reason: trace.ReasonScriptFailure, message: fmt.Sprintf(": upload artifacts %q: %v", artifactType(a), err)}
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
		spec.Untracked = untrackedFiles(j.projectDir)
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
	return len(slices.DeleteFunc(slices.Clone(files), func(f string) bool {
		return f != p && !strings.HasPrefix(f, p+"/")
	}))
}

// untrackedFiles lists the files git does not track in dir (git ls-files
// -o); nil when dir is not a repository.
func untrackedFiles(dir string) []string {
	repo, err := git.PlainOpen(dir)
	if err != nil {
		return nil
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil
	}
	st, err := wt.Status()
	if err != nil {
		return nil
	}
	var out []string
	for f, s := range st {
		if s.Worktree == git.Untracked {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out
}

// attemptsVar reads an attempts variable such as GET_SOURCES_ATTEMPTS:
// 1 to 10, default 1.
func attemptsVar(vars gitlab.Variables, name string) (int, error) {
	v := strings.TrimSpace(vars.Get(name))
	if v == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 10 {
		return 0, fmt.Errorf("read %s: %q is not a number from 1 to 10", name, v)
	}
	return n, nil
}

// removeContents empties dir, keeping dir itself.
func removeContents(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, os.RemoveAll(filepath.Join(dir, e.Name())))
	}
	return errors.Join(errs...)
}
