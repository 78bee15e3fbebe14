package shell_test

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/shell"
)

var hostileValues = []struct {
	name, value string
}{
	{"quotes", `it's "double" and 'single'`},
	{"spaces and tabs", "  leading, inner  \t tabs, trailing  "},
	{"dollar and substitutions", "$HOME ${PATH} $(id) `id` $$ $1 $"},
	{"newlines", "line one\nline two\n\n"},
	{"backslashes", `C:\new\table \\ \n \`},
	{"unicode", "unicode ✓ 日本語 🚀 é"},
	{"empty", ""},
	{"option-like", "-n"},
	{"glob", "* ? [a-z]"},
	{"control characters", "\x01\x1b[31mred\x1b[0m\r\x7f"},
	{"equals", "a=b=c"},
	{"semicolons and pipes", "; exit 1 | true && false || rm -rf /nonexistent"},
	{"invalid utf-8", "\xff\xfe"},
}

func TestHostileValuesArriveByteIdentical(t *testing.T) {
	for _, sh := range shells {
		for _, hv := range hostileValues {
			t.Run(sh+"/"+hv.name, func(t *testing.T) {
				cfg := testConfig(t)
				cfg.Shell = sh
				// Raw, so that `$` is not expanded: every byte must arrive.
				s := open(t, cfg, gitlab.Variables{
					{Key: "HOSTILE", Value: "overridden"},
					{Key: "HOSTILE", Value: hv.value, Raw: true},
				})
				out := filepath.Join(cfg.BuildsDir, "value.out")
				mustSucceed(t, s, `printf '%s' "$HOSTILE" > "`+out+`"`)
				got, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != hv.value {
					t.Errorf("job saw %q, want %q", got, hv.value)
				}
			})
		}
	}
}

func TestExpansion(t *testing.T) {
	tests := []struct {
		name string
		vars gitlab.Variables
		key  string
		want string
	}{
		{"plain reference", gitlab.Variables{{Key: "A", Value: "a"}, {Key: "X", Value: "<$A>"}}, "X", "<a>"},
		{"braced reference", gitlab.Variables{{Key: "A", Value: "a"}, {Key: "X", Value: "${A}b"}}, "X", "ab"},
		{"reference to a later variable", gitlab.Variables{{Key: "X", Value: "$A"}, {Key: "A", Value: "a"}}, "X", "a"},
		{"last occurrence wins", gitlab.Variables{{Key: "A", Value: "first"}, {Key: "A", Value: "last"}, {Key: "X", Value: "$A"}}, "X", "last"},
		{"escaped dollar", gitlab.Variables{{Key: "A", Value: "a"}, {Key: "X", Value: "$$A costs $$5"}}, "X", "$A costs $5"},
		{"unknown name is empty", gitlab.Variables{{Key: "X", Value: "[$NOPE_NOT_SET]"}}, "X", "[]"},
		{"lone dollar stays", gitlab.Variables{{Key: "X", Value: "cost: 5 $"}}, "X", "cost: 5 $"},
		{"raw is not expanded", gitlab.Variables{{Key: "A", Value: "a"}, {Key: "X", Value: "$A ${A}", Raw: true}}, "X", "$A ${A}"},
		{"raw value is inserted literally", gitlab.Variables{{Key: "A", Value: "$B", Raw: true}, {Key: "B", Value: "b"}, {Key: "X", Value: "$A"}}, "X", "$B"},
		{"expanded only once", gitlab.Variables{{Key: "C", Value: "$D"}, {Key: "D", Value: "d"}, {Key: "X", Value: "$C"}}, "X", "$D"},
		{"runner variable", gitlab.Variables{{Key: "X", Value: "$CI_SERVER"}}, "X", "yes"},
		{"job variable beats base environment", gitlab.Variables{{Key: "LANG", Value: "job"}, {Key: "X", Value: "$LANG"}}, "X", "job"},
		{"shell specials are kept", gitlab.Variables{{Key: "X", Value: "$1 $? $#"}}, "X", "$1 $? $#"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			s := open(t, cfg, tt.vars)
			if got := envOf(t, s, cfg)[tt.key]; got != tt.want {
				t.Errorf("%s = %q, want %q", tt.key, got, tt.want)
			}
		})
	}
}

func TestExpansionFallsBackToBaseEnvironment(t *testing.T) {
	cfg := testConfig(t)
	cfg.BaseEnv = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8"}
	s := open(t, cfg, gitlab.Variables{{Key: "X", Value: "$PATH:/opt/bin $LANG $HOME"}})
	want := "/usr/bin:/bin:/opt/bin C.UTF-8 " + cfg.HomeDir
	if got := envOf(t, s, cfg)["X"]; got != want {
		t.Errorf("X = %q, want %q", got, want)
	}
}

func TestFileVariables(t *testing.T) {
	const kube = "apiVersion: v1\nkind: Config\n# $HOME stays when raw, 'quotes' \"too\"\n"
	cfg := testConfig(t)
	s := open(t, cfg, gitlab.Variables{
		{Key: "A", Value: "a"},
		{Key: "KUBECONFIG", Value: kube, File: true, Raw: true},
		{Key: "EXPANDED_FILE", Value: "value=$A", File: true},
		{Key: "REF", Value: "path=$KUBECONFIG"},
	})
	tmp := cfg.ProjectDir + ".tmp"
	env := envOf(t, s, cfg)

	tests := []struct {
		key, content string
	}{
		{"KUBECONFIG", kube},
		{"EXPANDED_FILE", "value=a"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			wantPath := filepath.Join(tmp, tt.key)
			if got := env[tt.key]; got != wantPath {
				t.Errorf("%s = %q, want the file path %q", tt.key, got, wantPath)
			}
			b, err := os.ReadFile(wantPath)
			if err != nil {
				t.Fatalf("read file variable: %v", err)
			}
			if string(b) != tt.content {
				t.Errorf("file content = %q, want %q", b, tt.content)
			}
			fi, err := os.Stat(wantPath)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != 0o600 {
				t.Errorf("file mode = %v, want 0600", got)
			}
		})
	}
	if got, want := env["REF"], "path="+filepath.Join(tmp, "KUBECONFIG"); got != want {
		t.Errorf("REF = %q, want %q (a file variable expands to its path)", got, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tmp, "KUBECONFIG")); !os.IsNotExist(err) {
		t.Errorf("file variable still present after Close: %v", err)
	}
}

func TestRunnerVariables(t *testing.T) {
	for _, disposable := range []bool{false, true} {
		name := "shared"
		if disposable {
			name = "disposable"
		}
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Disposable = disposable
			cfg.JobTimeout = 3600e9
			cfg.ConcurrentID = 3
			cfg.ConcurrentProjectID = 4
			cfg.RunnerVersion = "18.0.0"
			cfg.RunnerRevision = "abc123"
			cfg.ServerCA = []byte("-----BEGIN CERTIFICATE-----\nMIIB$x\n-----END CERTIFICATE-----\n")
			s := open(t, cfg, gitlab.Variables{{Key: "CI_JOB_ID", Value: "8123"}})
			env := envOf(t, s, cfg)
			tmp := cfg.ProjectDir + ".tmp"
			want := map[string]string{
				"CI_JOB_ID":                 "8123",
				"CI_BUILDS_DIR":             cfg.BuildsDir,
				"CI_PROJECT_DIR":            cfg.ProjectDir,
				"CI_SERVER":                 "yes",
				"CI_JOB_STATUS":             "running",
				"CI_JOB_TIMEOUT":            "3600",
				"CI_CONCURRENT_ID":          "3",
				"CI_CONCURRENT_PROJECT_ID":  "4",
				"CI_RUNNER_VERSION":         "18.0.0",
				"CI_RUNNER_REVISION":        "abc123",
				"CI_RUNNER_EXECUTABLE_ARCH": runtime.GOOS + "/" + runtime.GOARCH,
				"RUNNER_TEMP_PROJECT_DIR":   tmp,
				"GITLAB_ENV":                filepath.Join(tmp, "gitlab_env"),
				"CI_SERVER_TLS_CA_FILE":     filepath.Join(tmp, "CI_SERVER_TLS_CA_FILE"),
				"HOME":                      cfg.HomeDir,
				"PWD":                       cfg.ProjectDir,
			}
			if disposable {
				want["CI_DISPOSABLE_ENVIRONMENT"] = "true"
			} else {
				want["CI_SHARED_ENVIRONMENT"] = "true"
			}
			for k, v := range want {
				if got := env[k]; got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			ca, err := os.ReadFile(env["CI_SERVER_TLS_CA_FILE"])
			if err != nil || string(ca) != string(cfg.ServerCA) {
				t.Errorf("CA file = %q, %v; want %q", ca, err, cfg.ServerCA)
			}
		})
	}
}

func TestSecretsDoNotReachTheJob(t *testing.T) {
	secrets := map[string]string{
		"AWS_ACCESS_KEY_ID":                  "AKIAEXECUTORKEY",
		"AWS_SECRET_ACCESS_KEY":              "executor-secret-access-key",
		"AWS_SESSION_TOKEN":                  "executor-session-token",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:9999/creds",
		"AWS_LAMBDA_RUNTIME_API":             "127.0.0.1:9001",
		"_LAMBDA_SERVER_PORT":                "54321",
		"RUNNER_SEALING_KEY":                 "executor-sealing-key",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("LAMBDA_TASK_ROOT", "/var/task")

	cfg := testConfig(t)
	cfg.BaseEnv = shell.SanitizedBaseEnv(os.Environ(), "RUNNER_SEALING_KEY")
	s := open(t, cfg, nil)
	trace := mustSucceed(t, s, "env")
	for k, v := range secrets {
		if strings.Contains(trace, k) || strings.Contains(trace, v) {
			t.Errorf("job's env output shows %s", k)
		}
	}
	for _, kv := range []string{"AWS_REGION=eu-west-1", "LAMBDA_TASK_ROOT=/var/task", "PATH=" + os.Getenv("PATH")} {
		if !strings.Contains(trace, kv+"\n") {
			t.Errorf("job's env output lacks %s", kv)
		}
	}
}

func TestSanitizedBaseEnv(t *testing.T) {
	in := []string{
		"PATH=/usr/bin:/bin",
		"LANG=en_US.UTF-8",
		"AWS_REGION=us-east-1",
		"AWS_DEFAULT_REGION=us-east-1",
		"AWS_LAMBDA_FUNCTION_NAME=executor",
		"AWS_ACCESS_KEY_ID=AKIA",
		"AWS_SECRET_ACCESS_KEY=secret",
		"AWS_SESSION_TOKEN=token",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1/",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=/v2/creds",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN=auth",
		"AWS_LAMBDA_RUNTIME_API=127.0.0.1:9001",
		"AWS_SOME_FUTURE_CREDENTIAL=x",
		"_LAMBDA_CONTROL_SOCKET=3",
		"_HANDLER=bootstrap",
		"LAMBDA_TASK_ROOT=/var/task",
		"NODE_PATH=/opt/nodejs",
		"MY_SECRET=s",
		"NOT_AN_ENTRY",
		"EMPTY=",
	}
	got := shell.SanitizedBaseEnv(in, "MY_SECRET")
	want := []string{
		"PATH=/usr/bin:/bin",
		"LANG=en_US.UTF-8",
		"AWS_REGION=us-east-1",
		"AWS_DEFAULT_REGION=us-east-1",
		"AWS_LAMBDA_FUNCTION_NAME=executor",
		"_HANDLER=bootstrap",
		"LAMBDA_TASK_ROOT=/var/task",
		"NODE_PATH=/opt/nodejs",
		"EMPTY=",
	}
	if !slices.Equal(got, want) {
		t.Errorf("SanitizedBaseEnv() =\n%q\nwant\n%q", got, want)
	}
}

func TestOpenRejectsVariablesAProcessCannotHold(t *testing.T) {
	const secret = "very-secret-value"
	tests := []struct {
		name string
		v    gitlab.Variable
	}{
		{"empty name", gitlab.Variable{Key: "", Value: secret}},
		{"equals in name", gitlab.Variable{Key: "A=B", Value: secret}},
		{"NUL in value", gitlab.Variable{Key: "A", Value: secret + "\x00"}},
		{"file variable named like a path", gitlab.Variable{Key: "../escape", Value: secret, File: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := shell.Open(testConfig(t), gitlab.Variables{tt.v})
			if err == nil {
				s.Close()
				t.Fatal("Open() succeeded, want an error")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q reveals the value", err)
			}
		})
	}
}
