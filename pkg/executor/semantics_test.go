package executor_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

// The .gitlab-ci.yml semantics gitlab-runner honours, each as a job a
// user would write, checked as the user would see it. They run in
// process here and under the emulator in TestUnderTheEmulator.

func vars(kv ...string) []gitlab.Variable {
	var vs []gitlab.Variable
	for i := 0; i+1 < len(kv); i += 2 {
		vs = append(vs, gitlab.Variable{Key: kv[i], Value: kv[i+1]})
	}
	return vs
}

// withCache gives ev a pre-signed URL in store for every key of its cache
// plans, as the poller does.
func withCache(ev dispatch.Event, store *s3) dispatch.Event {
	ev.Cache = map[string]dispatch.CacheURLs{}
	for _, c := range ev.Job.CachePlans() {
		for _, k := range c.Keys {
			ev.Cache[k] = store.urls(k)
		}
	}
	return ev
}

// cacheEntries lists the entries of the cache archive stored for key.
func cacheEntries(t *testing.T, store *s3, key string) []string {
	t.Helper()
	store.mu.Lock()
	b, ok := store.objects["/bucket/runner/x/project/1/"+key+"/cache.zip"]
	store.mu.Unlock()
	if !ok {
		t.Fatalf("no cache object for %s", key)
	}
	return zipEntries(t, b)
}

func TestVariablesInPathsAndNames(t *testing.T) { testVariablesInPathsAndNames(t, inProcess) }

// testVariablesInPathsAndNames: artifacts:name, artifacts:paths,
// artifacts:exclude, cache:paths and cache:policy written with variables.
func testVariablesInPathsAndNames(t *testing.T, mk envMaker) {
	e := mk(t)
	store := newS3(t)
	ev := withCache(e.take(project(e, nil), gitlabtest.JobSpec{
		Name:      "build",
		Variables: vars("APP", "web", "POLICY", "pull-push"),
		Script: []string{
			"mkdir -p web/dist web/node_modules/left-pad",
			"echo app > web/dist/app.js && echo map > web/dist/app.js.map && echo report > report.txt",
			"echo pad > web/node_modules/left-pad/index.js",
		},
		Artifacts: []gitlab.Artifact{{Name: "$CI_JOB_NAME-$APP", Paths: []string{"$APP/dist/", "$CI_PROJECT_DIR/report.txt"}, Exclude: []string{"$APP/dist/*.map"}}},
		Cache:     []gitlab.Cache{{Key: "modules", Paths: []string{"${APP}/node_modules/"}, Policy: "$POLICY"}},
	}), store)
	_, got := e.run(ev)
	if got.State != "success" {
		t.Fatalf("job = %s; trace:\n%s", got.State, got.Trace)
	}
	a, ok := got.Artifact("archive")
	if !ok || a.Filename != "build-web.zip" {
		t.Fatalf("artifact = %+v, %v; want build-web.zip", a, ok)
	}
	if names, want := zipNames(t, a), []string{"report.txt", "web/dist/", "web/dist/app.js"}; !slices.Equal(names, want) {
		t.Errorf("artifact entries = %q, want %q", names, want)
	}
	wantContains(t, got.Trace, "Creating cache modules-non_protected...", "Created cache")
	if names, want := cacheEntries(t, store, ev.Job.Cache[0].Key), []string{"web/node_modules/", "web/node_modules/left-pad/", "web/node_modules/left-pad/index.js"}; !slices.Equal(names, want) {
		t.Errorf("cache entries = %q, want %q", names, want)
	}
	e.srv.AssertNoViolations(t)
}

func TestUntrackedTakesIgnoredFiles(t *testing.T) { testUntrackedTakesIgnoredFiles(t, inProcess) }

// testUntrackedTakesIgnoredFiles: `untracked: true` takes build/ although
// .gitignore lists it.
func testUntrackedTakesIgnoredFiles(t *testing.T, mk envMaker) {
	e := mk(t)
	store := newS3(t)
	p := project(e, map[string]string{".gitignore": "build/\n*.log\n", "src/main.c": "int main(){}\n"})
	ev := withCache(e.take(p, gitlabtest.JobSpec{
		Script:    []string{"mkdir -p build && echo bin > build/app && echo log > test.log && echo new > notes.txt"},
		Artifacts: []gitlab.Artifact{{Name: "all", Untracked: true}},
		Cache:     []gitlab.Cache{{Key: "untracked", Untracked: true}},
	}), store)
	_, got := e.run(ev)
	if got.State != "success" {
		t.Fatalf("job = %s; trace:\n%s", got.State, got.Trace)
	}
	a, _ := got.Artifact("archive")
	want := []string{"build/app", "notes.txt", "test.log"}
	if names := zipNames(t, a); !slices.Equal(names, want) {
		t.Errorf("artifact entries = %q, want %q (ignored files included, tracked ones not)", names, want)
	}
	if names := cacheEntries(t, store, ev.Job.Cache[0].Key); !slices.Equal(names, want) {
		t.Errorf("cache entries = %q, want %q", names, want)
	}
}

// releaseScript is the release step GitLab sends for a job's release:
// keyword on a Linux runner (Gitlab::Ci::Build::Releaser): glab when the
// job has a recent one, release-cli otherwise, the values in double quotes
// so that the shell expands their variables.
func releaseScript(fields [][2]string, links []map[string]string) string {
	cmd := "release-cli create"
	for _, f := range fields {
		cmd += " --" + f[0] + " \"" + f[1] + "\""
	}
	for _, l := range links {
		inner, _ := json.Marshal(l)
		outer, _ := json.Marshal(string(inner))
		cmd += " --assets-link " + string(outer)
	}
	const warning = "Warning: release-cli will not be supported after 20.0. Please use glab version >= 1.58.0. Troubleshooting: https://gitlab.example.com/help/user/project/releases/_index.md#gitlab-cli-version-requirement"
	return "if command -v glab &> /dev/null; then\n" +
		"  if [ \"$(printf \"%s\\n%s\" \"1.58.0\" \"$(glab --version | grep -oE '[0-9]+\\.[0-9]+\\.[0-9]+')\" | sort -V | head -n1)\" = \"1.58.0\" ]; then\n" +
		"    export GITLAB_HOST=$CI_SERVER_URL\n" +
		"    glab auth login --job-token $CI_JOB_TOKEN --hostname \"$CI_SERVER_FQDN\" --api-protocol $CI_SERVER_PROTOCOL\n" +
		"    glab release create -R $CI_PROJECT_PATH \"$CI_COMMIT_TAG\"\n" +
		"  else\n" +
		"    echo \"" + warning + "\"\n\n" +
		"    " + cmd + "\n" +
		"  fi\n" +
		"else\n" +
		"  echo \"" + warning + "\"\n\n" +
		"  " + cmd + "\n" +
		"fi\n"
}

func TestReleaseKeyword(t *testing.T) { testReleaseKeyword(t, inProcess) }

// testReleaseKeyword: a tag pipeline's job with release: creates the
// release through the Releases API with the job token.
func testReleaseKeyword(t *testing.T, mk envMaker) {
	e := mk(t)
	p := project(e, map[string]string{"README.md": "v1\n"})
	p.Tag("v1.0.0", "main")
	p.AddMilestone("1.0")
	release := releaseScript([][2]string{
		{"name", "Release $CI_COMMIT_TAG"},
		{"description", "Created using the release-cli $EXTRA_DESCRIPTION"},
		{"tag-name", "$CI_COMMIT_TAG"},
		{"ref", "$CI_COMMIT_SHA"},
		{"milestone", "1.0"},
	}, []map[string]string{{"name": "asset1", "url": "https://example.com/assets/1", "link_type": "other"}})
	ev := e.take(p, gitlabtest.JobSpec{
		Name: "release_job", Stage: "deploy", Ref: "v1.0.0",
		Variables: vars("EXTRA_DESCRIPTION", "for the first version"),
		Script:    []string{"echo running release_job"},
		Release:   []string{release},
	})
	_, got := e.run(ev)
	if got.State != "success" {
		t.Fatalf("job = %s/%s; trace:\n%s", got.State, got.FailureReason, got.Trace)
	}
	rels := e.srv.Releases(p)
	if len(rels) != 1 {
		t.Fatalf("releases = %+v, want one", rels)
	}
	r := rels[0]
	if r.TagName != "v1.0.0" || r.Name != "Release v1.0.0" || r.Description != "Created using the release-cli for the first version" ||
		r.SHA != ev.Job.GitInfo.Sha || r.JobID != ev.Job.ID || !slices.Equal(r.Milestones, []string{"1.0"}) ||
		len(r.Links) != 1 || r.Links[0].Name != "asset1" || r.Links[0].URL != "https://example.com/assets/1" {
		t.Errorf("release = %+v", r)
	}
	wantContains(t, got.Trace, ":step_release\r\x1b[0K", `Executing "step_release" stage of the job script`,
		`level=info msg="Creating Release..."`, `name="Release v1.0.0"`, `tag-name=v1.0.0`,
		`level=info msg="Release created successfully!"`, "Job succeeded")
	wantNotContains(t, got.Trace, "command not found", ev.Job.Token)

	t.Run("a second release of the tag fails the job", func(t *testing.T) {
		ev := e.take(p, gitlabtest.JobSpec{Ref: "v1.0.0", Script: []string{"true"}, Release: []string{release}})
		_, got := e.run(ev)
		if got.State != "failed" || got.FailureReason != "script_failure" || got.ExitCode != 1 {
			t.Errorf("job = %s/%s/exit %d, want failed/script_failure/exit 1; trace:\n%s", got.State, got.FailureReason, got.ExitCode, got.Trace)
		}
		wantContains(t, got.Trace, `level=fatal msg="run app"`, "Release already exists")
		if n := len(e.srv.Releases(p)); n != 1 {
			t.Errorf("releases = %d, want still 1", n)
		}
	})
	e.srv.AssertNoViolations(t)
}

func TestDebugTrace(t *testing.T) { testDebugTrace(t, inProcess) }

// testDebugTrace: CI_DEBUG_TRACE traces the script's commands, masked.
func testDebugTrace(t *testing.T, mk envMaker) {
	e := mk(t)
	secret := "debug-s3cr3t-v4lue"
	_, got := e.run(e.take(project(e, nil), gitlabtest.JobSpec{
		Variables: []gitlab.Variable{{Key: "CI_DEBUG_TRACE", Value: "true"}, {Key: "API_KEY", Value: secret, Masked: true}, {Key: "GREETING", Value: "hi"}},
		Script:    []string{`echo "$GREETING" > /dev/null`, `test -n "$API_KEY"`},
	}))
	if got.State != "success" {
		t.Fatalf("job = %s; trace:\n%s", got.State, got.Trace)
	}
	wantContains(t, got.Trace, "+ echo hi\n", "+ test -n [MASKED]\n")
	wantNotContains(t, got.Trace, secret)
	if !got.DebugTrace {
		t.Errorf("the trace was not sent as a debug trace (debug_trace=true)")
	}
	_, plain := e.run(e.take(project2(e), gitlabtest.JobSpec{Script: []string{`echo "quiet"`}}))
	wantNotContains(t, plain.Trace, "+ echo")
}

// project2 is a second project of e.
func project2(e *env) *gitlabtest.Project {
	return e.srv.CreateProject("group/other-"+strconv.Itoa(len(e.srv.Jobs())), map[string]string{"README.md": "other\n"})
}

var timestamped = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z ([0-9a-f]{2})O `)

func TestTimestamps(t *testing.T) { testTimestamps(t, inProcess) }

// testTimestamps: FF_TIMESTAMPS starts every trace line with its time, the
// script's output as stream 01.
func testTimestamps(t *testing.T, mk envMaker) {
	e := mk(t)
	_, got := e.run(e.take(project(e, nil), gitlabtest.JobSpec{
		Variables: vars("FF_TIMESTAMPS", "true"),
		Script:    []string{"echo first line", "printf 'no newline at the end'"},
	}))
	if got.State != "success" {
		t.Fatalf("job = %s; trace:\n%s", got.State, got.Trace)
	}
	lines := strings.Split(strings.TrimSuffix(string(got.Trace), "\n"), "\n")
	streams := map[string]bool{}
	for _, l := range lines {
		m := timestamped.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("line without a timestamp: %q", l)
			continue
		}
		streams[m[1]] = true
		if strings.HasSuffix(l, " first line") && m[1] != "01" {
			t.Errorf("script output on stream %s, want 01: %q", m[1], l)
		}
	}
	if !streams["00"] || !streams["01"] {
		t.Errorf("streams = %v, want the runner's 00 and the script's 01", streams)
	}
	_, plain := e.run(e.take(project2(e), gitlabtest.JobSpec{Script: []string{"echo x"}}))
	if timestamped.Match(plain.Trace) {
		t.Errorf("timestamps without FF_TIMESTAMPS:\n%s", plain.Trace)
	}
}

func TestStageTimeouts(t *testing.T) {
	t.Parallel() // waits for timeouts
	testStageTimeouts(t, inProcess)
}

// testStageTimeouts: RUNNER_SCRIPT_TIMEOUT and RUNNER_AFTER_SCRIPT_TIMEOUT.
func testStageTimeouts(t *testing.T, mk envMaker) {
	e := mk(t)
	p := project(e, nil)
	_, got := e.run(e.take(p, gitlabtest.JobSpec{
		Variables:   vars("RUNNER_SCRIPT_TIMEOUT", "2s"),
		Script:      []string{"sleep 60"},
		AfterScript: []string{"echo after status=$CI_JOB_STATUS"},
	}))
	if got.State != "failed" || got.FailureReason != "job_execution_timeout" {
		t.Errorf("script timeout: job = %s/%s, want failed/job_execution_timeout; trace:\n%s", got.State, got.FailureReason, got.Trace)
	}
	wantContains(t, got.Trace, "ERROR: Job failed: script timeout: the script ran longer than RUNNER_SCRIPT_TIMEOUT (2s)", "after status=timedout")

	_, got = e.run(e.take(p, gitlabtest.JobSpec{
		Variables:   vars("RUNNER_AFTER_SCRIPT_TIMEOUT", "2s"),
		Script:      []string{"true"},
		AfterScript: []string{"sleep 60"},
	}))
	if got.State != "success" {
		t.Errorf("after_script timeout: job = %s, want success (after_script's failure does not change it); trace:\n%s", got.State, got.Trace)
	}
	wantContains(t, got.Trace, "WARNING: after_script failed, but job will continue unaffected: timed out")

	_, got = e.run(e.take(p, gitlabtest.JobSpec{Variables: vars("RUNNER_SCRIPT_TIMEOUT", "soon"), Script: []string{"true"}}))
	if got.State != "success" {
		t.Errorf("malformed timeout: job = %s, want success", got.State)
	}
	wantContains(t, got.Trace, "WARNING: Ignoring malformed RUNNER_SCRIPT_TIMEOUT timeout: soon")
}

func TestAttempts(t *testing.T) { testAttempts(t, inProcess) }

// testAttempts: ARTIFACT_DOWNLOAD_ATTEMPTS and RESTORE_CACHE_ATTEMPTS
// retry what failed; a value out of range is refused.
func testAttempts(t *testing.T, mk envMaker) {
	e := mk(t)
	p := project(e, nil)
	build := e.take(p, gitlabtest.JobSpec{Name: "build", Script: []string{"echo built > out.txt"},
		Artifacts: []gitlab.Artifact{{Name: "out", Paths: []string{"out.txt"}}}})
	if _, got := e.run(build); got.State != "success" {
		t.Fatalf("build = %s", got.State)
	}
	t.Run("ARTIFACT_DOWNLOAD_ATTEMPTS", func(t *testing.T) {
		ev := e.take(p, gitlabtest.JobSpec{Dependencies: []int64{build.Job.ID}, Variables: vars("ARTIFACT_DOWNLOAD_ATTEMPTS", "2"),
			Script: []string{`test "$(cat out.txt)" = built`}})
		e.srv.Inject(gitlabtest.EndpointDownloadArtifact, gitlabtest.Fault{Status: http.StatusForbidden})
		_, got := e.run(ev)
		if got.State != "success" {
			t.Errorf("job = %s, want success on the second attempt; trace:\n%s", got.State, got.Trace)
		}
		wantContains(t, got.Trace, "Downloading artifacts from coordinator... failed (attempt 1 of 2)")
	})
	t.Run("RESTORE_CACHE_ATTEMPTS", func(t *testing.T) {
		store := newS3(t)
		spec := gitlabtest.JobSpec{Script: []string{"mkdir -p .c && echo cached > .c/f"}, Cache: []gitlab.Cache{{Key: "retry", Paths: []string{".c/"}}}}
		if _, got := e.run(withCache(e.take(p, spec), store)); got.State != "success" {
			t.Fatalf("first job = %s", got.State)
		}
		store.mu.Lock()
		store.failGets = 1
		store.mu.Unlock()
		spec.Script = []string{`test "$(cat .c/f)" = cached`}
		spec.Variables = vars("RESTORE_CACHE_ATTEMPTS", "3", "GIT_STRATEGY", "clone")
		_, got := e.run(withCache(e.take(p, spec), store))
		if got.State != "success" {
			t.Errorf("job = %s, want the cache restored on the second attempt; trace:\n%s", got.State, got.Trace)
		}
		wantContains(t, got.Trace, "WARNING: Failed to extract cache retry-non_protected (attempt 1 of 3)", "Successfully extracted cache")
	})
	t.Run("out of range", func(t *testing.T) {
		_, got := e.run(e.take(p, gitlabtest.JobSpec{Variables: vars("RESTORE_CACHE_ATTEMPTS", "11"), Script: []string{"echo should not run"}}))
		if got.State != "failed" || got.FailureReason != "runner_configuration_error" {
			t.Errorf("job = %s/%s, want failed/runner_configuration_error", got.State, got.FailureReason)
		}
		wantContains(t, got.Trace, `read RESTORE_CACHE_ATTEMPTS: "11" is not a number from 1 to 10`)
		wantNotContains(t, got.Trace, "should not run\n")
	})
	t.Run("EXECUTOR_JOB_SECTION_ATTEMPTS", func(t *testing.T) {
		// The hook is the session's first script (script-1-…) and
		// puts a directory where the second, step_script's first attempt,
		// is to be written: that attempt cannot start, the next (a new
		// script, script-3) can.
		ev := e.take(p, gitlabtest.JobSpec{
			Variables: vars("EXECUTOR_JOB_SECTION_ATTEMPTS", "2"),
			Hooks: []gitlab.Hook{{Name: "post_get_sources_script", Script: []string{
				`mkdir "$RUNNER_TEMP_PROJECT_DIR/script-2-script.sh"`,
			}}},
			Script: []string{"echo ran on the second attempt"},
		})
		_, got := e.run(ev)
		if got.State != "success" {
			t.Errorf("job = %s/%s, want success; trace:\n%s", got.State, got.FailureReason, got.Trace)
		}
		wantContains(t, got.Trace, `WARNING: Executing "step_script" stage of the job script failed (attempt 1 of 2)`, "ran on the second attempt\n")
	})
	e.srv.AssertNoViolations(t)
}

func TestPredefinedVariables(t *testing.T) { testPredefinedVariables(t, inProcess) }

// testPredefinedVariables: CI_CONCURRENT_ID, CI_CONCURRENT_PROJECT_ID,
// CI_RUNNER_REVISION, CI_JOB_IMAGE as the script prints them.
func testPredefinedVariables(t *testing.T, mk envMaker) {
	e := mk(t)
	ev := e.take(project(e, nil), gitlabtest.JobSpec{
		Variables: vars("NODE_VERSION", "20"),
		Image:     &gitlab.Image{Name: "node:$NODE_VERSION-alpine"},
		Script:    []string{`echo "concurrent=$CI_CONCURRENT_ID project=$CI_CONCURRENT_PROJECT_ID revision=$CI_RUNNER_REVISION image=$CI_JOB_IMAGE ca=${CI_SERVER_TLS_CA_FILE:-none}"`},
	})
	ev.Runner.ConcurrentID = 3
	_, got := e.run(ev)
	if got.State != "success" {
		t.Fatalf("job = %s; trace:\n%s", got.State, got.Trace)
	}
	wantContains(t, got.Trace, "concurrent=3 project=3 revision="+e.cfg.Revision+" image=node:20-alpine ca=none\n")
	if !regexp.MustCompile(`revision=([0-9a-f]{8}|unknown) `).Match(got.Trace) {
		t.Errorf("CI_RUNNER_REVISION is neither a commit's first 8 hex digits nor unknown:\n%s", got.Trace)
	}
}

func TestCustomCA(t *testing.T) { testCustomCA(t, inProcess) }

// testCustomCA: a GitLab whose certificate only the runner's CA vouches
// for: the API, git (with LFS), artifacts, the cache (on a server with the
// same certificate), release-cli and CI_SERVER_TLS_CA_FILE all work with
// it, and nothing works without it.
func testCustomCA(t *testing.T, mk envMaker) {
	e := mk(t, gitlabtest.WithTLS())
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.srv.Certificate().Raw}))
	store := startS3(t, httptest.NewTLSServer)
	p := project(e, map[string]string{"README.md": "tls\n"})
	p.CommitLFS(map[string]string{"big.bin": "large file content"}, "LFS")
	p.Tag("v1", "main")
	ev := withCache(e.take(p, gitlabtest.JobSpec{
		Ref:       "v1",
		Script:    []string{`test "$(cat big.bin)" = "large file content"`, `cmp "$CI_SERVER_TLS_CA_FILE" - <<'EOF'` + "\n" + ca + "EOF", "echo out > out.txt"},
		Release:   []string{`release-cli create --tag-name "$CI_COMMIT_TAG" --name "TLS release"`},
		Artifacts: []gitlab.Artifact{{Name: "out", Paths: []string{"out.txt"}}},
		Cache:     []gitlab.Cache{{Key: "tls", Paths: []string{"out.txt"}, Policy: "push"}},
	}), store)
	ev.CAPEM = ca
	_, got := e.run(ev)
	if got.State != "success" {
		t.Fatalf("job = %s/%s; trace:\n%s", got.State, got.FailureReason, got.Trace)
	}
	if _, ok := got.Artifact("archive"); !ok {
		t.Errorf("no artifact uploaded")
	}
	if names := cacheEntries(t, store, ev.Job.Cache[0].Key); !slices.Equal(names, []string{"out.txt"}) {
		t.Errorf("cache entries = %q", names)
	}
	if rels := e.srv.Releases(p); len(rels) != 1 || rels[0].Name != "TLS release" {
		t.Errorf("releases = %+v, want the TLS release", rels)
	}

	if e.fn == nil {
		// In process only: an executor that cannot tell GitLab anything
		// tries until its invocation's deadline, which under the emulator
		// is the function's whole timeout.
		t.Run("without the CA", func(t *testing.T) {
			ev := e.take(p, gitlabtest.JobSpec{Script: []string{"true"}})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			res := e.exec(ctx, ev)
			if res.Reported || !strings.Contains(res.Error, "certificate signed by unknown authority") {
				t.Errorf("result = %+v, want not reported with a certificate error", res)
			}
			if got := e.srv.Job(ev.Job.ID); len(got.Trace) != 0 || len(got.Updates) != 0 {
				t.Errorf("GitLab heard from the job without the CA: trace %q, %d updates", got.Trace, len(got.Updates))
			}
		})
	}
}

func TestGitSemantics(t *testing.T) { testGitSemantics(t, inProcess) }

// testGitSemantics: LFS files, GIT_LFS_SKIP_SMUDGE, an SSH submodule with
// GIT_SUBMODULE_FORCE_HTTPS, and the extra flags' trace lines.
func testGitSemantics(t *testing.T, mk envMaker) {
	e := mk(t)
	lib := e.srv.CreateProject("group/lib", map[string]string{"lib.txt": "library\n"})
	p := project(e, nil)
	p.CommitLFS(map[string]string{"assets/logo.png": "PNG image bytes"}, "Add the logo with LFS")
	p.AddSubmoduleURL("vendor/lib", lib, "git@127.0.0.1:group/lib.git")

	_, got := e.run(e.take(p, gitlabtest.JobSpec{
		Variables: vars("GIT_SUBMODULE_STRATEGY", "normal", "GIT_SUBMODULE_FORCE_HTTPS", "true",
			"GIT_FETCH_EXTRA_FLAGS", "--prune --jobs=4", "GIT_SUBMODULE_UPDATE_FLAGS", "--jobs 2",
			"GIT_CLONE_PATH", "$CI_BUILDS_DIR/custom"),
		Script: []string{`echo "logo=$(cat assets/logo.png) lib=$(cat vendor/lib/lib.txt)"`},
	}))
	if got.State != "success" {
		t.Fatalf("job = %s; trace:\n%s", got.State, got.Trace)
	}
	wantContains(t, got.Trace, "logo=PNG image bytes lib=library\n", "Downloading LFS objects: 100% (1/1)",
		"WARNING: GIT_FETCH_EXTRA_FLAGS: --jobs=4 is ignored", "WARNING: GIT_SUBMODULE_UPDATE_FLAGS: --jobs 2 is ignored",
		"WARNING: GIT_CLONE_PATH is ignored: this runner checks every project out in "+filepath.Join(e.cfg.BuildsDir, "group", "demo"))

	_, got = e.run(e.take(p, gitlabtest.JobSpec{
		Variables: vars("GIT_LFS_SKIP_SMUDGE", "1", "GIT_STRATEGY", "clone"),
		Script:    []string{`head -1 assets/logo.png`},
	}))
	if got.State != "success" {
		t.Fatalf("job = %s; trace:\n%s", got.State, got.Trace)
	}
	wantContains(t, got.Trace, "version https://git-lfs.github.com/spec/v1\n")

	_, got = e.run(e.take(p, gitlabtest.JobSpec{
		Variables: vars("GIT_SUBMODULE_STRATEGY", "normal", "GIT_STRATEGY", "clone"),
		Script:    []string{"echo should not run"},
	}))
	if got.State != "failed" || got.FailureReason != "script_failure" {
		t.Errorf("SSH submodule without GIT_SUBMODULE_FORCE_HTTPS: job = %s/%s, want failed", got.State, got.FailureReason)
	}
	wantContains(t, got.Trace, "set GIT_SUBMODULE_FORCE_HTTPS=true")
	e.srv.AssertNoViolations(t)
}
