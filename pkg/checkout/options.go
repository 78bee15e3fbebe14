package checkout

import (
	"fmt"
	"strconv"
	"strings"

	"gitlab-serverless-runner/pkg/gitlab"
)

// FromJob builds the Options for job in project directory dir from its
// git_info, allow_git_fetch and GIT_* variables (GIT_STRATEGY,
// GIT_CHECKOUT, GIT_CLEAN_FLAGS, GIT_FETCH_EXTRA_FLAGS,
// GIT_SUBMODULE_STRATEGY, GIT_SUBMODULE_DEPTH, GIT_SUBMODULE_PATHS,
// GIT_SUBMODULE_UPDATE_FLAGS, GIT_SUBMODULE_FORCE_HTTPS with CI_SERVER_URL,
// CI_SERVER_HOST, CI_SERVER_SHELL_SSH_HOST and CI_SERVER_SHELL_SSH_PORT,
// GIT_LFS_SKIP_SMUDGE). Trace, CAPEM and HTTPClient are left for the
// caller. It fails on a value GitLab Runner would reject.
func FromJob(job *gitlab.Job, dir string) (Options, error) {
	o := Options{
		Git:           job.GitInfo,
		Dir:           dir,
		AllowGitFetch: job.AllowGitFetch,
		CleanFlags:    job.Variables.Get("GIT_CLEAN_FLAGS"),
	}
	vars := job.Variables
	if s := strings.TrimSpace(vars.Get("GIT_STRATEGY")); s != "" {
		switch st := Strategy(s); st {
		case StrategyClone, StrategyFetch, StrategyNone, StrategyEmpty:
			o.Strategy = st
		default:
			return o, fmt.Errorf("read GIT_STRATEGY: %q is not one of clone, fetch, none, empty", s)
		}
	}
	if s := strings.TrimSpace(vars.Get("GIT_CHECKOUT")); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return o, fmt.Errorf("read GIT_CHECKOUT: %q is not a boolean", s)
		}
		o.SkipCheckout = !b
	}
	if s := strings.TrimSpace(vars.Get("GIT_SUBMODULE_STRATEGY")); s != "" {
		switch st := SubmoduleStrategy(s); st {
		case SubmodulesNone, SubmodulesNormal, SubmodulesRecursive:
			o.Submodules = st
		default:
			return o, fmt.Errorf("read GIT_SUBMODULE_STRATEGY: %q is not one of none, normal, recursive", s)
		}
	}
	if s := strings.TrimSpace(vars.Get("GIT_SUBMODULE_DEPTH")); s != "" {
		d, err := strconv.Atoi(s)
		if err != nil || d < 0 {
			return o, fmt.Errorf("read GIT_SUBMODULE_DEPTH: %q is not a depth", s)
		}
		o.SubmoduleDepth = &d
	}
	o.SubmodulePaths = strings.Fields(vars.Get("GIT_SUBMODULE_PATHS"))
	if v, set := vars.Lookup("GIT_FETCH_EXTRA_FLAGS"); set {
		o.FetchFlags = []string{}
		if strings.TrimSpace(v) != "none" {
			o.FetchFlags = strings.Fields(v)
		}
	}
	if v := strings.TrimSpace(vars.Get("GIT_SUBMODULE_UPDATE_FLAGS")); v != "" && v != "none" {
		o.SubmoduleUpdateFlags = strings.Fields(v)
	}
	for _, b := range []struct {
		name string
		dst  *bool
	}{{"GIT_SUBMODULE_FORCE_HTTPS", &o.SubmoduleForceHTTPS}, {"GIT_LFS_SKIP_SMUDGE", &o.LFSSkipSmudge}} {
		if s := strings.TrimSpace(vars.Get(b.name)); s != "" {
			v, err := strconv.ParseBool(s)
			if err != nil {
				return o, fmt.Errorf("read %s: %q is not a boolean", b.name, s)
			}
			*b.dst = v
		}
	}
	o.ServerURL = vars.Get("CI_SERVER_URL")
	o.SSHHost = vars.Get("CI_SERVER_SHELL_SSH_HOST")
	if o.SSHHost == "" {
		o.SSHHost = vars.Get("CI_SERVER_HOST")
	}
	o.SSHPort = vars.Get("CI_SERVER_SHELL_SSH_PORT")
	if _, _, err := parseCleanFlags(o.CleanFlags); err != nil {
		return o, err
	}
	return o, nil
}
