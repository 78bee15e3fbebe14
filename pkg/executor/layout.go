package executor

import (
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"strings"

	"gitlab-serverless-runner/pkg/gitlab"
)

// ProjectDir returns CI_PROJECT_DIR for job under buildsDir the way
// gitlab-runner lays out a builds directory that is not shared:
// <buildsDir>/<namespace…>/<project>, taken from the path of the job's
// repository URL without ".git"; "project-<id>" when that path is unusable;
// with "-empty" appended for GIT_STRATEGY=empty.
func ProjectDir(buildsDir string, job *gitlab.Job) string {
	rel := fmt.Sprintf("project-%d", job.JobInfo.ProjectID)
	if u, err := url.Parse(job.GitInfo.RepoURL); err == nil && u.Path != "" {
		p := strings.TrimSuffix(strings.Trim(u.Path, "/"), ".git")
		if safeRelPath(p) {
			rel = p
		}
	} else if p := job.JobInfo.ProjectFullPath; safeRelPath(p) {
		rel = p
	}
	if job.Variables.Get("GIT_STRATEGY") == "empty" {
		rel += "-empty"
	}
	return filepath.Join(buildsDir, filepath.FromSlash(rel))
}

// safeRelPath accepts a clean relative slash path without "." or ".."
// components.
func safeRelPath(p string) bool {
	if p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || strings.Contains(p, `\`) {
		return false
	}
	for _, part := range strings.Split(p, "/") {
		if part == "" || part == "." || part == ".." {
			return false
		}
	}
	return true
}
