package checkout_test

import (
	"reflect"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/checkout"
	"gitlab-serverless-runner/pkg/gitlab"
)

func TestFromJob(t *testing.T) {
	two := 2
	git := gitlab.GitInfo{RepoURL: "https://gitlab-ci-token:t@gitlab.example.com/g/p.git", Sha: strings.Repeat("a", 40), Depth: 20}
	tests := []struct {
		name    string
		fetch   bool
		vars    gitlab.Variables
		want    checkout.Options
		wantErr string
	}{
		{"defaults", true, nil,
			checkout.Options{Git: git, Dir: "/b/p", AllowGitFetch: true}, ""},
		{"all settings", false, gitlab.Variables{
			{Key: "GIT_STRATEGY", Value: "clone"},
			{Key: "GIT_CHECKOUT", Value: "false"},
			{Key: "GIT_CLEAN_FLAGS", Value: "-ffdx -e .cache/"},
			{Key: "GIT_SUBMODULE_STRATEGY", Value: "recursive"},
			{Key: "GIT_SUBMODULE_DEPTH", Value: "2"},
			{Key: "GIT_SUBMODULE_PATHS", Value: "libs/a :(exclude)libs/b"},
		}, checkout.Options{Git: git, Dir: "/b/p", Strategy: checkout.StrategyClone, SkipCheckout: true,
			CleanFlags: "-ffdx -e .cache/", Submodules: checkout.SubmodulesRecursive, SubmoduleDepth: &two,
			SubmodulePaths: []string{"libs/a", ":(exclude)libs/b"}}, ""},
		{"git extras", false, gitlab.Variables{
			{Key: "GIT_FETCH_EXTRA_FLAGS", Value: "--tags  --jobs=4"},
			{Key: "GIT_SUBMODULE_UPDATE_FLAGS", Value: "--remote --jobs 4"},
			{Key: "GIT_SUBMODULE_FORCE_HTTPS", Value: "true"},
			{Key: "GIT_LFS_SKIP_SMUDGE", Value: "1"},
			{Key: "CI_SERVER_URL", Value: "https://gitlab.example.com"},
			{Key: "CI_SERVER_HOST", Value: "gitlab.example.com"},
			{Key: "CI_SERVER_SHELL_SSH_HOST", Value: "ssh.example.com"},
			{Key: "CI_SERVER_SHELL_SSH_PORT", Value: "2222"},
		}, checkout.Options{Git: git, Dir: "/b/p", FetchFlags: []string{"--tags", "--jobs=4"},
			SubmoduleUpdateFlags: []string{"--remote", "--jobs", "4"}, SubmoduleForceHTTPS: true, LFSSkipSmudge: true,
			ServerURL: "https://gitlab.example.com", SSHHost: "ssh.example.com", SSHPort: "2222"}, ""},
		{"fetch flags none, SSH host from CI_SERVER_HOST", false, gitlab.Variables{
			{Key: "GIT_FETCH_EXTRA_FLAGS", Value: "none"},
			{Key: "CI_SERVER_HOST", Value: "gitlab.example.com"},
		}, checkout.Options{Git: git, Dir: "/b/p", FetchFlags: []string{}, SSHHost: "gitlab.example.com"}, ""},
		{"bad force https", false, gitlab.Variables{{Key: "GIT_SUBMODULE_FORCE_HTTPS", Value: "yes please"}}, checkout.Options{}, "GIT_SUBMODULE_FORCE_HTTPS"},
		{"bad skip smudge", false, gitlab.Variables{{Key: "GIT_LFS_SKIP_SMUDGE", Value: "2"}}, checkout.Options{}, "GIT_LFS_SKIP_SMUDGE"},
		{"last variable wins", false, gitlab.Variables{{Key: "GIT_STRATEGY", Value: "clone"}, {Key: "GIT_STRATEGY", Value: "none"}},
			checkout.Options{Git: git, Dir: "/b/p", Strategy: checkout.StrategyNone}, ""},
		{"bad strategy", false, gitlab.Variables{{Key: "GIT_STRATEGY", Value: "copy"}}, checkout.Options{}, "GIT_STRATEGY"},
		{"bad checkout", false, gitlab.Variables{{Key: "GIT_CHECKOUT", Value: "maybe"}}, checkout.Options{}, "GIT_CHECKOUT"},
		{"bad submodule strategy", false, gitlab.Variables{{Key: "GIT_SUBMODULE_STRATEGY", Value: "deep"}}, checkout.Options{}, "GIT_SUBMODULE_STRATEGY"},
		{"bad submodule depth", false, gitlab.Variables{{Key: "GIT_SUBMODULE_DEPTH", Value: "-3"}}, checkout.Options{}, "GIT_SUBMODULE_DEPTH"},
		{"bad clean flags", false, gitlab.Variables{{Key: "GIT_CLEAN_FLAGS", Value: "-i"}}, checkout.Options{}, "GIT_CLEAN_FLAGS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := checkout.FromJob(&gitlab.Job{AllowGitFetch: tt.fetch, GitInfo: git, Variables: tt.vars}, "/b/p")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error: got %v, want it to mention %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got.SubmodulePaths) == 0 {
				got.SubmodulePaths = nil
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v,\nwant %+v", got, tt.want)
			}
		})
	}
}
