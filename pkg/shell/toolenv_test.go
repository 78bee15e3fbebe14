package shell_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/shell"
)

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

// The environment of images as their official builds set it.
func TestToolEnvPointsInstallsAtHome(t *testing.T) {
	const home = "/tmp/home"
	for _, tt := range []struct {
		name    string
		image   []string
		jobSets []string
		want    map[string]string // "" means unset
	}{
		{"golang", []string{"PATH=/go/bin:/usr/local/go/bin:/usr/bin:/bin", "GOPATH=/go"}, nil, map[string]string{
			"GOPATH": "/tmp/home/go", "GOMODCACHE": "/tmp/home/go/pkg/mod", "GOCACHE": "/tmp/home/.cache/go-build",
			"PATH": "/tmp/home/.local/bin:/tmp/home/.npm-global/bin:/tmp/home/.gem/bin:/tmp/home/.cargo/bin:/tmp/home/go/bin:/go/bin:/usr/local/go/bin:/usr/bin:/bin",
		}},
		{"ruby", []string{"PATH=/usr/local/bundle/bin:/usr/bin:/bin", "GEM_HOME=/usr/local/bundle", "BUNDLE_APP_CONFIG=/usr/local/bundle"}, nil, map[string]string{
			"GEM_HOME": "/tmp/home/.gem", "GEM_PATH": "/tmp/home/.gem:/usr/local/bundle:", "BUNDLE_APP_CONFIG": "/usr/local/bundle",
		}},
		{"rust", []string{"PATH=/usr/local/cargo/bin:/usr/bin", "CARGO_HOME=/usr/local/cargo", "RUSTUP_HOME=/usr/local/rustup"}, nil, map[string]string{
			"CARGO_HOME": "/tmp/home/.cargo", "RUSTUP_HOME": "/usr/local/rustup",
		}},
		{"python", []string{"PATH=/usr/local/bin:/usr/bin"}, nil, map[string]string{
			"PYTHONUSERBASE": "/tmp/home/.local", "XDG_CACHE_HOME": "/tmp/home/.cache", "PIP_USER": "",
		}},
		{"node with npm_config_prefix", []string{"PATH=/usr/local/bin", "npm_config_prefix=/usr/local"}, nil, map[string]string{
			"NPM_CONFIG_PREFIX": "/tmp/home/.npm-global", "npm_config_prefix": "",
		}},
		{"what the job sets stays", []string{"PATH=/usr/bin", "GOPATH=/go"}, []string{"GOPATH", "GEM_HOME", "XDG_CACHE_HOME"}, map[string]string{
			"GOPATH": "/go", "GEM_HOME": "", "XDG_CACHE_HOME": "", "CARGO_HOME": "/tmp/home/.cargo",
			"PATH": "/tmp/home/.local/bin:/tmp/home/.npm-global/bin:/tmp/home/.cargo/bin:/usr/bin",
		}},
		{"already writable stays", []string{"PATH=/usr/bin", "CARGO_HOME=/tmp/cargo"}, nil, map[string]string{"CARGO_HOME": "/tmp/cargo"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, changed := shell.ToolEnv(tt.image, home, "/tmp", func(n string) bool { return slices.Contains(tt.jobSets, n) })
			m := envMap(got)
			for k, want := range tt.want {
				if v, ok := m[k]; v != want || (want == "") == ok {
					t.Errorf("%s = %q (set %v), want %q", k, v, ok, want)
				}
			}
			for _, k := range tt.jobSets {
				if slices.Contains(changed, k) {
					t.Errorf("changed %s, which the job sets", k)
				}
			}
			if len(got) != len(m) {
				t.Errorf("a name appears twice: %q", got)
			}
		})
	}
}

// In a session, the tools' folders are under the job's home and their
// bin folders on PATH, ahead of the image's: a tool installed there runs
// by name.
func TestToolEnvInASession(t *testing.T) {
	cfg := testConfig(t)
	cfg.BaseEnv, _ = shell.ToolEnv(cfg.BaseEnv, cfg.HomeDir, filepath.Dir(cfg.HomeDir), nil)
	s := open(t, cfg, gitlab.Variables{{Key: "GOPATH", Value: "$CI_PROJECT_DIR/.go"}})
	trace := mustSucceed(t, s,
		`mkdir -p "$PYTHONUSERBASE/bin" && printf '#!/bin/sh\necho installed tool ran\n' > "$PYTHONUSERBASE/bin/mytool" && chmod +x "$PYTHONUSERBASE/bin/mytool"`,
		`mytool`, `echo "gopath=$GOPATH cargo=$CARGO_HOME"`)
	if !strings.Contains(trace, "installed tool ran") {
		t.Errorf("a tool installed for the user does not run by name:\n%s", trace)
	}
	if want := "gopath=" + cfg.ProjectDir + "/.go cargo=" + filepath.Join(cfg.HomeDir, ".cargo"); !strings.Contains(trace, want) {
		t.Errorf("trace lacks %q:\n%s", want, trace)
	}
}

// An image's entrypoint runs every step, as gitlab-runner runs scripts in
// such an image: a wrapper that ends with exec "$@", and a shell that reads
// its command from standard input.
func TestEntrypoint(t *testing.T) {
	dir := t.TempDir()
	wrapper := filepath.Join(dir, "entrypoint.sh")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\necho \"entrypoint ran with $# arguments\"\nexport FROM_ENTRYPOINT=yes\nexec \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name       string
		entrypoint []string
		want       []string
	}{
		{"wrapper", []string{wrapper}, []string{"entrypoint ran with", "from entrypoint: yes", "the script ran"}},
		{"a shell with -c", []string{"/bin/sh", "-c"}, []string{"the script ran"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Entrypoint = tt.entrypoint
			s := open(t, cfg, nil)
			trace := mustSucceed(t, s, `echo "from entrypoint: ${FROM_ENTRYPOINT:-no}"`, `echo the script ran`)
			for _, w := range tt.want {
				if !strings.Contains(trace, w) {
					t.Errorf("trace lacks %q:\n%s", w, trace)
				}
			}
			r, _ := runScript(t, s, "exit 3")
			if r.Outcome != shell.Failed || r.ExitCode != 3 {
				t.Errorf("a failing script through the entrypoint = %v %d, want failed with 3", r.Outcome, r.ExitCode)
			}
		})
	}
}
