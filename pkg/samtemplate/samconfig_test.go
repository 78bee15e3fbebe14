package samtemplate_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/samtemplate"
)

// readSamconfig reads samconfig.toml's flat layout: [env.command.parameters]
// sections of key = value lines. Values keep their TOML spelling.
func readSamconfig(t testing.TB) (version string, sections map[string]map[string]string) {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "samconfig.toml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sections = map[string]map[string]string{}
	current := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			current = strings.Trim(line, "[]")
			sections[current] = map[string]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("samconfig.toml: cannot read %q", line)
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if current == "" && k == "version" {
				version = v
				continue
			}
			sections[current][k] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return version, sections
}

var override = regexp.MustCompile(`(\w+)=\\"([^"\\]*)\\"`)

func TestSamconfig(t *testing.T) {
	tpl := loadTemplate(t)
	params := tpl.Section("Parameters")
	version, sections := readSamconfig(t)
	if version != "0.1" {
		t.Errorf("version: got %s, want 0.1", version)
	}
	for _, env := range []string{"default", "dev", "prod"} {
		t.Run(env, func(t *testing.T) {
			want := map[string]map[string]string{
				"global": {"stack_name": ""},
				"build":  {"cached": "false", "parallel": "true", "build_in_source": "true", "parameter_overrides": ""},
				"deploy": {"capabilities": `"CAPABILITY_IAM"`, "resolve_s3": "true", "parameter_overrides": ""},
			}
			for cmd, keys := range want {
				sec, ok := sections[env+"."+cmd+".parameters"]
				if !ok {
					t.Errorf("no [%s.%s.parameters]", env, cmd)
					continue
				}
				for k, v := range keys {
					if got, ok := sec[k]; !ok || (v != "" && got != v) {
						t.Errorf("[%s.%s.parameters] %s: got %q, want %q", env, cmd, k, got, v)
					}
				}
			}
			if env != "dev" && sections[env+".deploy.parameters"]["confirm_changeset"] != "true" {
				t.Errorf("[%s.deploy.parameters] confirm_changeset is not true", env)
			}
			// The build compiles for the Architecture the deploy runs on.
			arch := func(cmd string) string {
				m := archOverride.FindStringSubmatch(sections[env+"."+cmd+".parameters"]["parameter_overrides"])
				if m == nil {
					return ""
				}
				return m[1]
			}
			if b, d := arch("build"), arch("deploy"); b == "" || b != d {
				t.Errorf("Architecture: build %q, deploy %q; want the same, set in both", b, d)
			}
			overrides := sections[env+".deploy.parameters"]["parameter_overrides"]
			matches := override.FindAllStringSubmatch(overrides, -1)
			if len(matches) == 0 {
				t.Errorf("parameter_overrides %s: none read", overrides)
			}
			for _, m := range matches {
				p, ok := params[m[1]]
				if !ok {
					t.Errorf("parameter_overrides sets %s, which the template does not have", m[1])
					continue
				}
				if samtemplate.Path(p, "NoEcho") == true {
					t.Errorf("parameter_overrides sets %s, a secret", m[1])
				}
				if allowed, ok := samtemplate.Path(p, "AllowedValues").([]any); ok && !strings.Contains(render(allowed), m[2]) {
					t.Errorf("parameter_overrides sets %s=%s, not one of %s", m[1], m[2], render(allowed))
				}
			}
		})
	}
	b, _ := os.ReadFile(filepath.Join(repoRoot(t), "samconfig.toml"))
	for _, secret := range []string{"OidcClientSecret", "SESSION_KEY", "TOKEN_SEALING_KEY", "aws_secret_access_key"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("samconfig.toml mentions %s", secret)
		}
	}
}

// sam local only overrides the variables a function declares in the
// template: every variable of functions/env.local.json must be declared.
func TestLocalEnvFileOnlySetsDeclaredVariables(t *testing.T) {
	tpl := loadTemplate(t)
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "functions", "env.local.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]map[string]string
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatalf("functions/env.local.json: %v", err)
	}
	declaredAnywhere := map[string]bool{}
	for _, id := range sortedKeys(functionPackages) {
		for k := range templateEnv(t, tpl, id) {
			declaredAnywhere[k] = true
		}
	}
	for _, key := range sortedKeys(file) {
		vars := file[key]
		if key == "Parameters" {
			for _, name := range sortedKeys(vars) {
				if !declaredAnywhere[name] {
					t.Errorf("Parameters.%s: no function declares it, sam local would ignore it", name)
				}
			}
			continue
		}
		if _, ok := functionPackages[key]; !ok {
			t.Errorf("%s is not a function of the template", key)
			continue
		}
		env := templateEnv(t, tpl, key)
		for _, name := range sortedKeys(vars) {
			if _, ok := env[name]; !ok {
				t.Errorf("%s.%s: the template does not declare it for %s, sam local would ignore it", key, name, key)
			}
		}
	}
}

// sam local's containers reach DynamoDB Local and start-lambda on this
// machine through Docker's host-gateway (SAM CLI ignores
// docker_network = "host" since 1.87), and start-lambda listens where the
// containers can reach it.
func TestSamLocalReachesTheHost(t *testing.T) {
	_, sections := readSamconfig(t)
	for _, cmd := range []string{"local_start_api", "local_start_lambda", "local_invoke"} {
		sec := sections["default."+cmd+".parameters"]
		if got, want := sec["add_host"], `["host.docker.internal:host-gateway"]`; got != want {
			t.Errorf("[default.%s.parameters] add_host: got %s, want %s", cmd, got, want)
		}
		if v, ok := sec["docker_network"]; ok {
			t.Errorf("[default.%s.parameters] docker_network = %s: SAM CLI ignores \"host\"", cmd, v)
		}
		if got := sec["env_vars"]; got != `"functions/env.local.json"` {
			t.Errorf("[default.%s.parameters] env_vars: got %s", cmd, got)
		}
	}
	lambda := sections["default.local_start_lambda.parameters"]
	if lambda["host"] != `"0.0.0.0"` {
		t.Errorf("start-lambda host: got %s, want \"0.0.0.0\" (containers reach it through the host gateway)", lambda["host"])
	}
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "functions", "env.local.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]map[string]string
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"DYNAMODB_ENDPOINT": "http://host.docker.internal:8000",
		"LAMBDA_ENDPOINT":   "http://host.docker.internal:" + lambda["port"],
	}
	for name, w := range want {
		if got := file["Parameters"][name]; got != w {
			t.Errorf("env.local.json Parameters.%s: got %q, want %q", name, got, w)
		}
	}
}
