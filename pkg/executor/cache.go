package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"gitlab-serverless-runner/pkg/archive"
	"gitlab-serverless-runner/pkg/checkout"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/retry"
)

// displayKey is the key as the trace shows it: expanded and sanitized.
func (j *jobRun) displayKey(key string) string {
	key = j.job.CacheKey(key)
	if s, err := archive.SanitizeCacheKey(key); err == nil {
		return s
	}
	return key
}

// warnUnknownPolicies says in the trace which caches are neither restored
// nor saved because their policy, once expanded, is not one GitLab
// defines.
func (j *jobRun) warnUnknownPolicies() {
	for _, c := range j.job.CachePlans() {
		if !c.Pull && !c.Push {
			j.w.Warningf("Cache %s is neither restored nor saved: unknown cache policy %q (want pull, push or pull-push)", j.displayKey(c.Key), c.Policy)
		}
	}
}

// restoreCache downloads and extracts caches; failures only warn.
func (j *jobRun) restoreCache(ctx context.Context) {
	j.warnUnknownPolicies()
	var todo []gitlab.CachePlan
	for _, c := range j.job.CachePlans() {
		if c.Pull {
			todo = append(todo, c)
		}
	}
	if len(todo) == 0 {
		return
	}
	j.section("restore_cache", "Restoring cache", func() {
		for _, c := range todo {
			restored := false
			for _, k := range c.Keys {
				if urls, ok := j.ev.Cache[k]; ok && urls.GetURL != "" && j.restoreKey(ctx, k, urls.GetURL) {
					restored = true
					break
				}
			}
			if !restored {
				j.w.Warningf("No cache restored for key %s", j.displayKey(c.Key))
			}
		}
	})
}

// restoreKey downloads and extracts the cache of key k from url, with up
// to RESTORE_CACHE_ATTEMPTS attempts, and reports whether it was restored.
func (j *jobRun) restoreKey(ctx context.Context, k, url string) bool {
	j.w.Printf("Checking cache for %s...\n", j.displayKey(k))
	var found bool
	var err error
	for attempt := 1; ; attempt++ {
		found, err = j.getCache(ctx, url)
		if err == nil || ctx.Err() != nil || attempt >= j.set.cacheAttempts {
			break
		}
		j.w.Warningf("Failed to extract cache %s (attempt %d of %d): %v", j.displayKey(k), attempt, j.set.cacheAttempts, err)
		if retry.Sleep(ctx, attemptWait) != nil {
			break
		}
	}
	switch {
	case err != nil:
		j.w.Warningf("Failed to extract cache %s: %v", j.displayKey(k), err)
	case !found:
		j.w.Warningf("Cache %s does not exist yet", j.displayKey(k))
	default:
		j.w.Printf("Successfully extracted cache\n")
		return true
	}
	return false
}

// getCache downloads one cache archive; found is false on 404. (S3 answers
// 404 for a missing object only to a signer that may list the bucket, so
// the template lets the poller, whose permissions the URL carries, list
// it; a 403 stays an error, as for an expired URL.)
func (j *jobRun) getCache(ctx context.Context, url string) (found bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, errors.New("invalid cache URL")
	}
	resp, err := j.http.Do(req)
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
	var todo []gitlab.CachePlan
	vars := j.sess.Variables()
	for _, c := range j.job.CachePlans() {
		c = c.Expand(vars)
		if !c.Push {
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

// putCache writes the cache archive to a file and PUTs it: pre-signed S3
// uploads need the length up front.
func (j *jobRun) putCache(ctx context.Context, c gitlab.CachePlan, url string) error {
	spec := archive.Spec{Paths: c.Paths}
	if c.Untracked {
		spec.Untracked = checkout.Untracked(j.projectDir)
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
	resp, err := j.http.Do(req)
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
