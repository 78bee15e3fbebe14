package executor_test

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

func TestAfterScript(t *testing.T) { testAfterScript(t, inProcess) }

func testAfterScript(t *testing.T, mk envMaker) {
	tests := []struct {
		name       string
		script     []string
		after      []string
		wantState  string
		wantExit   int
		wantStatus string
	}{
		{"after success, failing after_script keeps success", []string{"echo main"}, []string{"echo status=$CI_JOB_STATUS", "exit 7"}, "success", 0, "status=success"},
		{"after a script failure", []string{"exit 2"}, []string{"echo status=$CI_JOB_STATUS"}, "failed", 2, "status=failed"},
		{"AFTER_SCRIPT_IGNORE_ERRORS=false fails the job", nil, nil, "failed", 6, "status=success"},
		{"separate shell: no state from the script", []string{"export FROM_SCRIPT=leaked"}, []string{"echo from_script=${FROM_SCRIPT:-none} status=$CI_JOB_STATUS"}, "success", 0, "from_script=none status=success"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mk(t)
			spec := gitlabtest.JobSpec{Script: tt.script, AfterScript: tt.after}
			if tt.script == nil {
				spec.Script = []string{"true"}
				spec.AfterScript = []string{"echo status=$CI_JOB_STATUS", "exit 6"}
				spec.Variables = []gitlab.Variable{{Key: "AFTER_SCRIPT_IGNORE_ERRORS", Value: "false"}}
			}
			res, got := e.run(e.take(project(e, nil), spec))
			if got.State != tt.wantState || got.ExitCode != tt.wantExit || res.State != tt.wantState {
				t.Errorf("job = %s exit %d (result %+v), want %s exit %d", got.State, got.ExitCode, res, tt.wantState, tt.wantExit)
			}
			wantContains(t, got.Trace, ":after_script\r\x1b[0K", "Running after_script", tt.wantStatus)
			e.srv.AssertNoViolations(t)
		})
	}
}

func TestVariablesAndMasking(t *testing.T) { testVariablesAndMasking(t, inProcess) }

func testVariablesAndMasking(t *testing.T, mk envMaker) {
	e := mk(t)
	hostile := "quotes ' \" `backticks` $(touch pwned) ${HOME} \\ back\nnew line ünïcode"
	secret := "s3cr3t-v4lue-9a8b7c"
	pat := "glpat-abcdefghij0123456789"
	rt := "glrt-t1_runnerTokenValue0123"
	out := t.TempDir() // outside the builds directory, which a warm Lambda environment wipes
	ev := e.take(project(e, nil), gitlabtest.JobSpec{
		Variables: []gitlab.Variable{
			{Key: "OUT", Value: out},
			{Key: "HOSTILE", Value: hostile, Raw: true},
			{Key: "EXPANDED", Value: "home is ${HOME}"},
			{Key: "API_KEY", Value: secret, Masked: true},
			{Key: "KUBECONFIG", Value: "apiVersion: v1\nkind: Config\n", File: true},
			{Key: "LEAKY", Value: pat},
			{Key: "LEAKY_RUNNER", Value: rt},
		},
		Script: []string{
			`printf '%s' "$HOSTILE" > "$OUT/hostile.out"`,
			`echo "key=$API_KEY"`,
			`echo "token=$CI_JOB_TOKEN repo=$CI_REPOSITORY_URL"`,
			`echo "leaky=$LEAKY runner=$LEAKY_RUNNER"`,
			`echo "kubeconfig at $KUBECONFIG"; cat "$KUBECONFIG"`,
			`test ! -e pwned`,
			`echo "expanded=$EXPANDED"`,
			`echo "project=$CI_PROJECT_DIR builds=$CI_BUILDS_DIR home=$HOME short=$CI_RUNNER_SHORT_TOKEN"`,
			`env | grep -c '^AWS_SECRET_ACCESS_KEY=' || echo "no aws credentials"`,
		},
	})
	// The executor's own credentials must not reach the job: the emulated
	// function has Lambda's in its environment (startEmulator).
	credential := "executor-credential-never-in-a-job"
	if e.fn == nil {
		t.Setenv("AWS_SECRET_ACCESS_KEY", credential)
	} else {
		credential = lambdaCredentials["AWS_SECRET_ACCESS_KEY"]
	}
	res, got := e.run(ev)
	if got.State != "success" {
		t.Fatalf("job = %s (result %+v); trace:\n%s", got.State, res, got.Trace)
	}
	if got, want := readFile(t, filepath.Join(out, "hostile.out")), hostile; got != want {
		t.Errorf("hostile value in the job = %q, want %q", got, want)
	}
	projectDir := filepath.Join(e.cfg.BuildsDir, "group", "demo")
	wantContains(t, got.Trace,
		"key=[MASKED]", "leaky=glpat-[MASKED] runner=glrt-[MASKED]\n", "kind: Config",
		"kubeconfig at "+projectDir+".tmp/KUBECONFIG",
		"project="+projectDir+" builds="+e.cfg.BuildsDir+" home="+e.cfg.HomeDir+" short="+gitlab.ShortToken(e.runner.Token),
		"no aws credentials", "expanded=home is "+e.cfg.HomeDir+"\n")
	wantNotContains(t, got.Trace, secret, ev.Job.Token, pat, rt, credential)
	if _, err := os.Stat(projectDir + ".tmp/KUBECONFIG"); !os.IsNotExist(err) {
		t.Errorf("file variable left after the job: stat error %v, want not exist", err)
	}
	e.srv.AssertNoViolations(t)
}

func TestGitStrategies(t *testing.T) { testGitStrategies(t, inProcess) }

func testGitStrategies(t *testing.T, mk envMaker) {
	tests := []struct {
		name      string
		spec      gitlabtest.JobSpec
		check     string // runs in the job
		wantTrace []string
	}{
		{"clone with depth 1", gitlabtest.JobSpec{Depth: 1, Variables: []gitlab.Variable{{Key: "GIT_STRATEGY", Value: "clone"}}},
			`test -f .git/shallow && test "$(cat README.md)" = v2`, []string{"Fetching changes with git depth set to 1...", "Created fresh repository."}},
		{"full clone", gitlabtest.JobSpec{Depth: -1, Variables: []gitlab.Variable{{Key: "GIT_STRATEGY", Value: "clone"}}},
			// The payload's refspecs: the pipeline ref and, for a full
			// clone, every branch.
			`test ! -f .git/shallow && test "$(cat README.md)" = v2 && test -f .git/refs/pipelines/$CI_PIPELINE_ID && test -f .git/refs/remotes/origin/main`,
			[]string{"Fetching changes..."}},
		{"none", gitlabtest.JobSpec{Variables: []gitlab.Variable{{Key: "GIT_STRATEGY", Value: "none"}}},
			`test ! -e .git && test ! -e README.md`, []string{"Skipping Git repository setup"}},
		{"empty", gitlabtest.JobSpec{Variables: []gitlab.Variable{{Key: "GIT_STRATEGY", Value: "empty"}}},
			`test -z "$(ls -A)" && case "$CI_PROJECT_DIR" in *-empty) ;; *) exit 9;; esac`, []string{"creating an empty build directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mk(t)
			p := project(e, map[string]string{"README.md": "v1"})
			p.Commit("", map[string]string{"README.md": "v2"}, "second")
			tt.spec.Script = []string{tt.check}
			_, got := e.run(e.take(p, tt.spec))
			if got.State != "success" {
				t.Errorf("job = %s/%s, want success; trace:\n%s", got.State, got.FailureReason, got.Trace)
			}
			wantContains(t, got.Trace, tt.wantTrace...)
		})
	}
	t.Run("fetch after a previous job", func(t *testing.T) {
		e := mk(t)
		p := project(e, map[string]string{"README.md": "v1"})
		_, first := e.run(e.take(p, gitlabtest.JobSpec{Script: []string{"touch untracked"}}))
		p.Commit("", map[string]string{"README.md": "v2"}, "second")
		_, second := e.run(e.take(p, gitlabtest.JobSpec{Script: []string{`test "$(cat README.md)" = v2 && test ! -e untracked`}}))
		if first.State != "success" || second.State != "success" {
			t.Fatalf("jobs = %s, %s, want success; second trace:\n%s", first.State, second.State, second.Trace)
		}
		// Locally the builds directory stays and fetch reuses the
		// repository, as gitlab-runner's shell executor does; a warm Lambda
		// environment wipes it between jobs, so fetch starts afresh.
		want := "Reinitialized existing Git repository"
		if e.fn != nil {
			want = "Created fresh repository."
		}
		wantContains(t, second.Trace, want)
	})
	t.Run("submodules", func(t *testing.T) {
		e := mk(t)
		lib := e.srv.CreateProject("group/lib", map[string]string{"lib.txt": "library\n"})
		p := project(e, nil)
		p.AddSubmodule("vendor/lib", lib)
		_, got := e.run(e.take(p, gitlabtest.JobSpec{
			Variables: []gitlab.Variable{{Key: "GIT_SUBMODULE_STRATEGY", Value: "normal"}},
			Script:    []string{`test "$(cat vendor/lib/lib.txt)" = library`},
		}))
		if got.State != "success" {
			t.Errorf("job = %s/%s, want success; trace:\n%s", got.State, got.FailureReason, got.Trace)
		}
	})
	t.Run("GET_SOURCES_ATTEMPTS retries a failed fetch", func(t *testing.T) {
		e := mk(t)
		ev := e.take(project(e, nil), gitlabtest.JobSpec{Script: []string{"cat README.md"}, Variables: []gitlab.Variable{{Key: "GET_SOURCES_ATTEMPTS", Value: "2"}}})
		e.srv.Inject(gitlabtest.EndpointGit, gitlabtest.Fault{Status: http.StatusForbidden})
		_, got := e.run(ev)
		if got.State != "success" {
			t.Errorf("job = %s/%s, want success on the second attempt; trace:\n%s", got.State, got.FailureReason, got.Trace)
		}
		wantContains(t, got.Trace, "Getting source from Git repository failed (attempt 1 of 2)")
	})
	t.Run("bad GIT_STRATEGY", func(t *testing.T) {
		e := mk(t)
		_, got := e.run(e.take(project(e, nil), gitlabtest.JobSpec{Script: []string{"true"}, Variables: []gitlab.Variable{{Key: "GIT_STRATEGY", Value: "rsync"}}}))
		if got.State != "failed" || got.FailureReason != "runner_configuration_error" {
			t.Errorf("job = %s/%s, want failed/runner_configuration_error; trace:\n%s", got.State, got.FailureReason, got.Trace)
		}
	})
	t.Run("unreachable sha fails get_sources", func(t *testing.T) {
		e := mk(t)
		_, got := e.run(e.take(project(e, nil), gitlabtest.JobSpec{Script: []string{"true"}, Payload: func(j *gitlab.Job) {
			j.GitInfo.Sha = strings.Repeat("ab", 20)
		}}))
		if got.State != "failed" || got.FailureReason != "script_failure" {
			t.Errorf("job = %s/%s, want failed/script_failure; trace:\n%s", got.State, got.FailureReason, got.Trace)
		}
		wantContains(t, got.Trace, "Getting source from Git repository failed")
		wantNotContains(t, got.Trace, "Executing \"step_script\"")
	})
}

func TestArtifacts(t *testing.T) { testArtifacts(t, inProcess) }

func testArtifacts(t *testing.T, mk envMaker) {
	e := mk(t)
	p := project(e, nil)
	ev := e.take(p, gitlabtest.JobSpec{
		Script: []string{"mkdir -p bin/sub && echo app > bin/app && echo tmp > bin/sub/x.tmp && echo kept > bin/sub/y.txt", `echo '<testsuite/>' > report.xml`},
		Artifacts: []gitlab.Artifact{
			{Name: "bin", Paths: []string{"bin/"}, Exclude: []string{"bin/**/*.tmp"}, When: "on_success", ExpireIn: "1 week", ArtifactType: "archive", ArtifactFormat: "zip"},
			{Name: "junit.xml", Paths: []string{"report.xml"}, When: "always", ArtifactType: "junit", ArtifactFormat: "gzip"},
			{Name: "failure-only", Paths: []string{"bin/"}, When: "on_failure", ArtifactType: "archive", ArtifactFormat: "zip"},
		},
	})
	_, got := e.run(ev)
	if got.State != "success" {
		t.Fatalf("job = %s; trace:\n%s", got.State, got.Trace)
	}
	if len(got.Artifacts) != 2 {
		t.Fatalf("uploaded %d artifacts (%+v), want 2 (on_failure skipped)", len(got.Artifacts), got.Artifacts)
	}
	zipArt, ok := got.Artifact("archive")
	if !ok || zipArt.Filename != "bin.zip" || zipArt.ExpireIn != "1 week" {
		t.Fatalf("archive artifact = %+v, %v; want bin.zip expiring in 1 week", zipArt, ok)
	}
	if names, want := zipNames(t, zipArt), []string{"bin/", "bin/app", "bin/sub/", "bin/sub/y.txt"}; !slices.Equal(names, want) {
		t.Errorf("zip entries = %v, want %v", names, want)
	}
	junit, ok := got.Artifact("junit")
	if !ok || junit.Format != "gzip" || junit.Filename != "junit.xml.gz" {
		t.Fatalf("junit artifact = %+v, %v", junit, ok)
	}
	b, _ := junit.Bytes()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if content, _ := io.ReadAll(zr); string(content) != "<testsuite/>\n" {
		t.Errorf("junit content = %q", content)
	}
	wantContains(t, got.Trace, ":upload_artifacts_on_success\r\x1b[0K", `Uploading artifacts as "archive" to coordinator... 201 Created`)
	e.srv.AssertNoViolations(t)

	t.Run("on failure", func(t *testing.T) {
		ev := e.take(p, gitlabtest.JobSpec{
			Script: []string{"mkdir -p logs && echo boom > logs/out.log", "exit 1"},
			Artifacts: []gitlab.Artifact{
				{Name: "logs", Paths: []string{"logs/"}, When: "on_failure", ArtifactType: "archive", ArtifactFormat: "zip"},
				{Name: "bin", Paths: []string{"logs/"}, When: "on_success", ArtifactType: "archive", ArtifactFormat: "zip"},
			},
		})
		_, got := e.run(ev)
		if got.State != "failed" || got.FailureReason != "script_failure" || len(got.Artifacts) != 1 || got.Artifacts[0].Filename != "logs.zip" {
			t.Fatalf("job = %s/%s artifacts %+v, want failed with logs.zip; trace:\n%s", got.State, got.FailureReason, got.Artifacts, got.Trace)
		}
		wantContains(t, got.Trace, ":upload_artifacts_on_failure\r\x1b[0K")
	})
	t.Run("upload refused fails the job", func(t *testing.T) {
		e := mk(t, gitlabtest.WithMaxArtifactSize(10))
		ev := e.take(project(e, nil), gitlabtest.JobSpec{
			Script:    []string{"head -c 100000 /dev/urandom > big.bin"},
			Artifacts: []gitlab.Artifact{{Name: "big", Paths: []string{"big.bin"}, ArtifactType: "archive", ArtifactFormat: "zip"}},
		})
		_, got := e.run(ev)
		if got.State != "failed" || got.FailureReason != "script_failure" {
			t.Errorf("job = %s/%s, want failed/script_failure; trace:\n%s", got.State, got.FailureReason, got.Trace)
		}
		wantContains(t, got.Trace, `ERROR: Uploading artifacts as "archive" to coordinator... failed`)
	})
}

func zipNames(t *testing.T, a gitlabtest.UploadedArtifact) []string {
	t.Helper()
	b, err := a.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return zipEntries(t, b)
}

// zipEntries lists the names in the zip archive b, sorted.
func zipEntries(t *testing.T, b []byte) []string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	slices.Sort(names)
	return names
}

func TestDependencies(t *testing.T) { testDependencies(t, inProcess) }

func testDependencies(t *testing.T, mk envMaker) {
	e := mk(t)
	p := project(e, nil)
	build := e.take(p, gitlabtest.JobSpec{
		Name:      "build",
		Script:    []string{"mkdir -p dist && echo built > dist/out.txt"},
		Artifacts: []gitlab.Artifact{{Name: "artifacts", Paths: []string{"dist/"}, ArtifactType: "archive", ArtifactFormat: "zip"}},
	})
	if _, got := e.run(build); got.State != "success" {
		t.Fatalf("build job = %s; trace:\n%s", got.State, got.Trace)
	}
	// A dependency whose archive tries to write outside the project.
	evil := e.take(p, gitlabtest.JobSpec{
		Name:      "evil",
		Variables: []gitlab.Variable{{Key: "EVIL_ZIP", Value: evilZip(t)}},
		Script:    []string{`printf '%s' "$EVIL_ZIP" | base64 -d > evil.zip`},
		Artifacts: []gitlab.Artifact{{Name: "artifacts", Paths: []string{"evil.zip"}, ArtifactType: "archive", ArtifactFormat: "raw"}},
	})
	if _, got := e.run(evil); got.State != "success" {
		t.Fatalf("evil job = %s; trace:\n%s", got.State, got.Trace)
	}
	t.Run("downloaded and extracted", func(t *testing.T) {
		_, got := e.run(e.take(p, gitlabtest.JobSpec{Dependencies: []int64{build.Job.ID}, Script: []string{`test "$(cat dist/out.txt)" = built`}}))
		if got.State != "success" {
			t.Errorf("job = %s/%s, want success; trace:\n%s", got.State, got.FailureReason, got.Trace)
		}
		wantContains(t, got.Trace, ":download_artifacts\r\x1b[0K", "Downloading artifacts for build (")
	})
	t.Run("archive escaping the project is refused", func(t *testing.T) {
		_, got := e.run(e.take(p, gitlabtest.JobSpec{Dependencies: []int64{evil.Job.ID}, Script: []string{"echo should not run"}}))
		if got.State != "failed" || got.FailureReason != "script_failure" {
			t.Errorf("job = %s/%s, want failed/script_failure; trace:\n%s", got.State, got.FailureReason, got.Trace)
		}
		wantContains(t, got.Trace, "refused to extract the archive, it would write outside the project directory", "../escaped.txt")
		wantNotContains(t, got.Trace, "should not run\n")
		if _, err := os.Stat(filepath.Join(e.cfg.BuildsDir, "group", "escaped.txt")); !os.IsNotExist(err) {
			t.Errorf("escaped file: stat error %v, want not exist", err)
		}
	})
	e.srv.AssertNoViolations(t)
}

func evilZip(t *testing.T) string {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, name := range []string{"fine.txt", "../escaped.txt"} {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, "x")
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b.Bytes())
}

// s3 is a stand-in for S3 behind pre-signed URLs: it stores PUT bodies by
// path and refuses requests without a signature.
type s3 struct {
	mu      sync.Mutex
	objects map[string][]byte
	gets    []string
	// failGets is how many GETs of an existing object are answered 500
	// before it is served.
	failGets int
	srv      *httptest.Server
}

func newS3(t *testing.T) *s3 { return startS3(t, httptest.NewServer) }

// startS3 starts the stand-in with start (httptest.NewTLSServer for HTTPS
// with httptest's certificate).
func startS3(t *testing.T, start func(http.Handler) *httptest.Server) *s3 {
	s := &s3{objects: map[string][]byte{}}
	s.srv = start(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("X-Amz-Signature") == "" {
			http.Error(w, "missing signature", http.StatusForbidden)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		switch r.Method {
		case http.MethodGet:
			s.gets = append(s.gets, r.URL.Path)
			b, ok := s.objects[r.URL.Path]
			if !ok {
				http.Error(w, "NoSuchKey", http.StatusNotFound)
				return
			}
			if s.failGets > 0 {
				s.failGets--
				http.Error(w, "InternalError", http.StatusInternalServerError)
				return
			}
			w.Write(b)
		case http.MethodPut:
			if r.ContentLength <= 0 || r.Header.Get("Content-Type") != "application/octet-stream" {
				http.Error(w, "length and content type required", http.StatusBadRequest)
				return
			}
			b, _ := io.ReadAll(r.Body)
			s.objects[r.URL.Path] = b
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *s3) urls(key string) dispatch.CacheURLs {
	u := s.srv.URL + "/bucket/runner/x/project/1/" + key + "/cache.zip?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=deadbeef"
	return dispatch.CacheURLs{GetURL: u, PutURL: u}
}

func TestCache(t *testing.T) { testCache(t, inProcess) }

func testCache(t *testing.T, mk envMaker) {
	e := mk(t)
	store := newS3(t)
	p := project(e, nil)
	// GitLab suffixes cache keys (-non_protected); the poller presigns a
	// URL for each key as the payload spells it.
	cacheEv := func(spec gitlabtest.JobSpec) dispatch.Event {
		ev := e.take(p, spec)
		ev.Cache = map[string]dispatch.CacheURLs{}
		for _, c := range ev.Job.CachePlans() {
			for _, k := range c.Keys {
				ev.Cache[k] = store.urls(k)
			}
		}
		return ev
	}
	// First job: no cache yet (404 only warns), saves one.
	_, first := e.run(cacheEv(gitlabtest.JobSpec{
		Script: []string{"mkdir -p .cache && echo cached-data > .cache/data"},
		Cache:  []gitlab.Cache{{Key: "deps", Paths: []string{".cache/"}, Policy: "pull-push", When: "on_success"}},
	}))
	if first.State != "success" {
		t.Fatalf("first job = %s; trace:\n%s", first.State, first.Trace)
	}
	wantContains(t, first.Trace, ":restore_cache\r\x1b[0K", "Checking cache for deps-non_protected...", "Cache deps-non_protected does not exist yet", ":archive_cache\r\x1b[0K", "Creating cache deps-non_protected...", "Created cache")
	wantNotContains(t, first.Trace, "deadbeef", "AKIAEXAMPLE")
	if len(store.objects) != 1 {
		t.Fatalf("stored objects = %d, want 1", len(store.objects))
	}

	tests := []struct {
		name      string
		cache     gitlab.Cache
		vars      []gitlab.Variable
		wantPuts  int
		wantTrace string
	}{
		{"same key restores", gitlab.Cache{Key: "deps", Paths: []string{".cache/"}, Policy: "pull"}, nil, 1, "Successfully extracted cache"},
		{"fallback key restores", gitlab.Cache{Key: "feature", FallbackKeys: []string{"deps"}, Paths: []string{".cache/"}, Policy: "pull"}, nil, 1, "Checking cache for deps-non_protected..."},
		{"CACHE_FALLBACK_KEY restores", gitlab.Cache{Key: "other", Paths: []string{".cache/"}, Policy: "pull"}, []gitlab.Variable{{Key: "CACHE_FALLBACK_KEY", Value: "deps-non_protected"}}, 1, "Checking cache for deps-non_protected..."},
		{"policy from a variable restores", gitlab.Cache{Key: "deps", Paths: []string{".cache/"}, Policy: "$CACHE_POLICY"}, []gitlab.Variable{{Key: "CACHE_POLICY", Value: "pull"}}, 1, "Successfully extracted cache"},
		{"pull-push saves under its own key", gitlab.Cache{Key: "second", FallbackKeys: []string{"deps"}, Paths: []string{".cache/"}}, nil, 2, "Created cache"},
		{"policy from a variable saves", gitlab.Cache{Key: "third", FallbackKeys: []string{"deps"}, Paths: []string{".cache/"}, Policy: "${CACHE_POLICY}"}, []gitlab.Variable{{Key: "CACHE_POLICY", Value: "pull-push"}}, 3, "Created cache"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got := e.run(cacheEv(gitlabtest.JobSpec{
				Variables: append(tt.vars, gitlab.Variable{Key: "GIT_STRATEGY", Value: "clone"}),
				Script:    []string{`test "$(cat .cache/data)" = cached-data`},
				Cache:     []gitlab.Cache{tt.cache},
			}))
			if got.State != "success" {
				t.Errorf("job = %s; trace:\n%s", got.State, got.Trace)
			}
			wantContains(t, got.Trace, tt.wantTrace)
			store.mu.Lock()
			defer store.mu.Unlock()
			if len(store.objects) != tt.wantPuts {
				t.Errorf("stored objects = %d, want %d", len(store.objects), tt.wantPuts)
			}
		})
	}
	t.Run("when on_failure saves only after a failure", func(t *testing.T) {
		for _, tt := range []struct {
			script string
			want   bool
		}{{"true", false}, {"exit 1", true}} {
			ev := cacheEv(gitlabtest.JobSpec{
				Script: []string{"mkdir -p .failcache && echo x > .failcache/f", tt.script},
				Cache:  []gitlab.Cache{{Key: "failures-" + tt.script[:4], Paths: []string{".failcache/"}, Policy: "push", When: "on_failure"}},
			})
			_, got := e.run(ev)
			store.mu.Lock()
			_, saved := store.objects["/bucket/runner/x/project/1/"+ev.Job.Cache[0].Key+"/cache.zip"]
			store.mu.Unlock()
			if saved != tt.want {
				t.Errorf("script %q: cache saved = %v, want %v; trace:\n%s", tt.script, saved, tt.want, got.Trace)
			}
		}
	})
	t.Run("unreachable cache only warns", func(t *testing.T) {
		ev := e.take(p, gitlabtest.JobSpec{Script: []string{"true"}, Cache: []gitlab.Cache{{Key: "deps", Paths: []string{".cache/"}}}})
		ev.Cache = map[string]dispatch.CacheURLs{ev.Job.Cache[0].Key: {GetURL: "http://127.0.0.1:1/x?X-Amz-Signature=s", PutURL: "http://127.0.0.1:1/x?X-Amz-Signature=s"}}
		_, got := e.run(ev)
		if got.State != "success" {
			t.Errorf("job = %s, want success; trace:\n%s", got.State, got.Trace)
		}
		wantContains(t, got.Trace, "WARNING: Failed to extract cache deps-non_protected", "WARNING: Failed to create cache deps-non_protected")
	})
}
