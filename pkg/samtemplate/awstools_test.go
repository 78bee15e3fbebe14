package samtemplate_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/samtemplate"
	"gitlab-serverless-runner/pkg/store"
)

// AWS's own tools (cfn-lint, the SAM CLI) come from .ci/venv, which
// .ci/install fills with pinned versions. They run without network: in a
// network namespace of their own, with Go module downloads off, so a build
// that would download anything fails.

// venvTool returns the path of a tool installed in .ci/venv.
func venvTool(t testing.TB, name string) string {
	t.Helper()
	path := filepath.Join(repoRoot(t), ".ci", "venv", "bin", name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s is not installed in .ci/venv: run .ci/install (make deps): %v", name, err)
	}
	return path
}

var goEnv struct {
	once sync.Once
	vars []string
	err  error
}

// goSettings returns this machine's Go caches and toolchain, which the
// tools' environment keeps although it has a HOME of its own.
func goSettings(t testing.TB) []string {
	t.Helper()
	goEnv.once.Do(func() {
		out, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE", "GOPATH", "GOROOT").Output()
		if err != nil {
			goEnv.err = fmt.Errorf("go env: %w", err)
			return
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 4 {
			goEnv.err = fmt.Errorf("go env: got %q", out)
			return
		}
		for i, name := range []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOROOT"} {
			goEnv.vars = append(goEnv.vars, name+"="+lines[i])
		}
	})
	if goEnv.err != nil {
		t.Fatal(goEnv.err)
	}
	return goEnv.vars
}

// toolEnv is the environment of AWS's tools: .ci/venv first on PATH, home
// as HOME (no AWS profile, credentials or SAM CLI settings of the user), SAM
// CLI's telemetry off, and Go building only from the module cache with the
// local toolchain.
func toolEnv(t testing.TB, home string) []string {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "AWS_"), strings.HasPrefix(name, "SAM_"), strings.HasPrefix(name, "__SAM_"),
			strings.HasPrefix(name, "GO"), name == "HOME", name == "PATH", strings.HasPrefix(name, "XDG_"):
			continue
		}
		env = append(env, kv)
	}
	env = append(env, goSettings(t)...)
	return append(env,
		"HOME="+home,
		"PATH="+filepath.Dir(venvTool(t, "sam"))+string(os.PathListSeparator)+os.Getenv("PATH"),
		"SAM_CLI_TELEMETRY=0",
		"GOPROXY=off",
		"GOTOOLCHAIN=local",
		"GOFLAGS=-mod=readonly",
	)
}

// toolHome makes a HOME for the tools in which SAM CLI's weekly check for a
// newer version (a request to its package registry) counts as just done.
func toolHome(t testing.TB, dir string) string {
	t.Helper()
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(filepath.Join(home, ".aws-sam"), 0o755); err != nil {
		t.Fatal(err)
	}
	meta := fmt.Sprintf(`{"lastVersionCheck": %d, "telemetryEnabled": false}`, time.Now().Unix())
	if err := os.WriteFile(filepath.Join(home, ".aws-sam", "metadata.json"), []byte(meta), 0o644); err != nil {
		t.Fatal(err)
	}
	return home
}

// offline runs a shell command line in dir, in a network namespace with no
// network, and returns its combined output.
func offline(dir string, env []string, line string) (string, error) {
	cmd := exec.Command("unshare", "--user", "--map-root-user", "--net", "--", "sh", "-c", line)
	cmd.Dir = dir
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// ---- the guides' commands

// guideCommands returns the command lines of the ```sh blocks of a
// document under docs/, as a reader copies them: continuation lines
// joined, comment lines and trailing comments left out.
func guideCommands(t testing.TB, doc string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", doc))
	if err != nil {
		t.Fatal(err)
	}
	var cmds []string
	in := false
	pending := ""
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "```sh"):
			in = true
			continue
		case strings.HasPrefix(line, "```"):
			in = false
			continue
		case !in:
			continue
		}
		if i := strings.Index(line, "  #"); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			pending += strings.TrimSuffix(line, `\`)
			continue
		}
		cmds = append(cmds, pending+line)
		pending = ""
	}
	return cmds
}

// runsOffline reports whether a guide command needs neither an AWS account,
// Docker nor a server: it is run by the tests exactly as printed.
func runsOffline(cmd string) bool {
	for _, p := range []string{"sam build", "sam validate", "sam --version"} {
		if cmd == p || strings.HasPrefix(cmd, p+" ") {
			return true
		}
	}
	return false
}

// guideBuild is one `sam build` command of docs/deploy.md, run on a clean
// copy of the repository.
type guideBuild struct {
	Command string
	// Arch is the template's Architecture the command builds for.
	Arch string
	// Dir is the .aws-sam/build directory the command made.
	Dir    string
	Output string
	Err    error
}

var guide struct {
	once   sync.Once
	dir    string // removed by TestMain
	copy   string
	env    []string
	builds []guideBuild
	err    error
}

// guideBuilds runs, once per test binary, every distinct `sam build`
// command of docs/deploy.md in order on one clean copy of the repository,
// as a reader of the guide would, and keeps each build's .aws-sam/build.
func guideBuilds(t testing.TB) []guideBuild {
	t.Helper()
	guide.once.Do(func() {
		dir, err := os.MkdirTemp("", "samtemplate-guide-")
		if err != nil {
			guide.err = err
			return
		}
		guide.dir = dir
		guide.copy = filepath.Join(dir, "repo")
		if err := samtemplate.CleanCopy(repoRoot(t), guide.copy); err != nil {
			guide.err = err
			return
		}
		guide.env = toolEnv(t, toolHome(t, dir))
		ran := map[string]bool{}
		for i, cmd := range guideCommands(t, "deploy.md") {
			// The same command twice builds the same.
			if !strings.HasPrefix(cmd, "sam build") || ran[cmd] {
				continue
			}
			ran[cmd] = true
			b := guideBuild{Command: cmd, Arch: buildArchitecture(t, cmd)}
			b.Output, b.Err = offline(guide.copy, guide.env, cmd)
			if b.Err == nil {
				b.Dir = filepath.Join(dir, fmt.Sprintf("build-%d-%s", i, b.Arch))
				b.Err = os.Rename(filepath.Join(guide.copy, ".aws-sam", "build"), b.Dir)
			}
			guide.builds = append(guide.builds, b)
		}
	})
	if guide.err != nil {
		t.Fatalf("prepare the guide's builds: %v", guide.err)
	}
	return guide.builds
}

func removeGuideBuilds() {
	if guide.dir != "" {
		_ = os.RemoveAll(guide.dir)
	}
}

var archOverride = regexp.MustCompile(`Architecture=\\?"?(\w+)`)

// buildArchitecture is the Architecture a `sam build` command line builds
// for: its own --parameter-overrides, else its samconfig.toml
// environment's build parameter_overrides, else the template's default.
func buildArchitecture(t testing.TB, cmd string) string {
	t.Helper()
	if m := archOverride.FindStringSubmatch(cmd); m != nil {
		return m[1]
	}
	env := "default"
	if _, after, ok := strings.Cut(cmd, "--config-env "); ok {
		env = strings.Fields(after)[0]
	}
	_, sections := readSamconfig(t)
	if m := archOverride.FindStringSubmatch(sections[env+".build.parameters"]["parameter_overrides"]); m != nil {
		return m[1]
	}
	return samtemplate.Path(loadTemplate(t).Section("Parameters"), "Architecture", "Default").(string)
}

// hostArchitecture is the template's Architecture value of this machine,
// whose binaries the emulator can run.
func hostArchitecture(t testing.TB) string {
	for arch, goarch := range goarchOf {
		if goarch == runtime.GOARCH {
			return arch
		}
	}
	t.Fatalf("Lambda has no architecture for %s", runtime.GOARCH)
	return ""
}

// goarchOf is the GOARCH of each of the template's Architecture values.
var goarchOf = map[string]string{"arm64": "arm64", "x86_64": "amd64"}

// builtArtifact returns .aws-sam/build/<id> of the guide's last build for
// this machine's architecture.
func builtArtifact(t testing.TB, id string) string {
	t.Helper()
	builds := guideBuilds(t)
	for i := len(builds) - 1; i >= 0; i-- {
		b := builds[i]
		if b.Arch != hostArchitecture(t) {
			continue
		}
		if b.Err != nil {
			t.Fatalf("%s failed: %v\n%s", b.Command, b.Err, b.Output)
		}
		return filepath.Join(b.Dir, id)
	}
	t.Fatalf("docs/deploy.md has no sam build command for %s, this machine's architecture", hostArchitecture(t))
	return ""
}

// ---- the tests

// brokenTemplate has a circular dependency, an unknown reference and a
// stateful resource without explicit deletion policies.
const brokenTemplate = `AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  A:
    Type: AWS::SNS::Topic
    Properties:
      TopicName: !GetAtt B.TopicName
  B:
    Type: AWS::SNS::Topic
    Properties:
      TopicName: !GetAtt A.TopicName
  Logs:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Ref Nowhere
`

// cfn-lint, with its informational rules too, finds nothing in the
// template (it runs AWS's SAM translator first) nor in the tenancy check
// of the deploy guide. No finding is ignored. The same run shows that it
// refuses a broken template, so the silence means something.
func TestCfnLint(t *testing.T) {
	root := repoRoot(t)
	if _, err := os.Stat(filepath.Join(root, ".cfnlintrc")); err == nil {
		t.Error(".cfnlintrc exists: the template is linted with every rule; a rule ignored there needs this test to say why")
	}
	venvTool(t, "cfn-lint")
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(broken, []byte(brokenTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := offline(root, toolEnv(t, toolHome(t, dir)), "cfn-lint --include-checks I -- template.yaml docs/tenancy-check.yaml "+broken)
	findings := lintFindings(out)
	for _, file := range []string{"template.yaml", "docs/tenancy-check.yaml"} {
		if len(findings[file]) > 0 {
			t.Errorf("cfn-lint %s:\n%s", file, strings.Join(findings[file], "\n"))
		}
	}
	got := strings.Join(findings[broken], "\n")
	for _, rule := range []string{"E3004", "E1020", "I3011"} {
		if !strings.Contains(got, rule) {
			t.Errorf("cfn-lint did not report %s for a broken template; its output:\n%s", rule, out)
		}
	}
}

// lintFindings groups cfn-lint's output by file: findings are "RULE
// message" lines followed by "file:line:column".
func lintFindings(out string) map[string][]string {
	findings := map[string][]string{}
	lines := strings.Split(out, "\n")
	for i := 0; i+1 < len(lines); i++ {
		file, _, ok := strings.Cut(lines[i+1], ":")
		if ok && lines[i] != "" {
			findings[file] = append(findings[file], lines[i])
		}
	}
	return findings
}

// samTransform expands a SAM template into plain CloudFormation with AWS's
// SAM translator (the one cfn-lint and sam deploy use), local code paths
// replaced by an S3 location as sam package would.
const samTransform = `import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class NoManagedPolicies:
    def load(self):
        return {}

tpl = yaml_parse(open(sys.argv[1]).read())
for res in tpl.get("Resources", {}).values():
    props = res.get("Properties") or {}
    for key in ("CodeUri", "ContentUri"):
        if key in props:
            props[key] = "s3://artifacts-bucket/code.zip"
json.dump(transform(tpl, {}, NoManagedPolicies()), open(sys.argv[2], "w"), indent=1)
`

// cfn-lint skips a circular dependency through a SAM resource (its rule
// E3004 says so: the transform may split it), and the template's likeliest
// cycle runs through roles SAM generates: the finisher invokes the poller,
// the poller the executors, and each executor's role may invoke its
// destination, the finisher. So the template is linted once more after
// AWS's SAM translator has expanded it, where every rule applies: nothing
// is reported. The same run shows that the finisher naming the poller by
// !Ref, the obvious way, is reported there as E3004.
func TestCfnLintAfterSAMTransform(t *testing.T) {
	root := repoRoot(t)
	venvTool(t, "cfn-lint")
	python := venvTool(t, "python")
	dir := t.TempDir()
	raw, err := os.ReadFile(filepath.Join(root, "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tpl := loadTemplate(t)
	name := samtemplate.Path(function(t, tpl, "FinisherFunction").Properties, "Environment", "Variables", "POLLER_FUNCTION")
	if samtemplate.RefName(name) == "PollerFunction" {
		t.Fatalf("the finisher's POLLER_FUNCTION is !Ref PollerFunction: a cycle through the executors' roles")
	}
	cyclic := regexp.MustCompile(`(?m)^(\s+POLLER_FUNCTION: ).*$`).ReplaceAll(raw, []byte("${1}!Ref PollerFunction"))
	script := filepath.Join(dir, "transform.py")
	for name, b := range map[string][]byte{"transform.py": []byte(samTransform), "template.yaml": raw, "cyclic.yaml": cyclic} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := append(toolEnv(t, toolHome(t, dir)), "AWS_DEFAULT_REGION=us-east-1")
	for _, name := range []string{"template", "cyclic"} {
		out, err := offline(dir, env, python+" "+script+" "+name+".yaml "+name+".json")
		if err != nil {
			t.Fatalf("SAM translator on %s.yaml: %v\n%s", name, err, out)
		}
	}
	out, _ := offline(dir, env, "cfn-lint --include-checks I -- template.json cyclic.json")
	findings := lintFindings(out)
	if f := findings["template.json"]; len(f) > 0 {
		t.Errorf("cfn-lint on the transformed template:\n%s", strings.Join(f, "\n"))
	}
	if got := strings.Join(findings["cyclic.json"], "\n"); !strings.Contains(got, "E3004") || !strings.Contains(got, "FinisherFunction") {
		t.Errorf("cfn-lint did not report the cycle of a finisher naming the poller by !Ref; its output:\n%s", out)
	}
}

// Every command of the guides that needs neither an AWS account, Docker
// nor a server runs as printed on a clean copy of the repository: the
// version check of the first step, sam validate --lint and every sam build.
func TestGuideCommandsRunWithoutAnAccount(t *testing.T) {
	builds := guideBuilds(t)
	var ran []string
	for _, doc := range []string{"deploy.md", "sam-local.md"} {
		for _, cmd := range guideCommands(t, doc) {
			if !runsOffline(cmd) {
				continue
			}
			ran = append(ran, cmd)
			t.Run(doc+": "+cmd, func(t *testing.T) {
				if strings.HasPrefix(cmd, "sam build") {
					// deploy.md's builds ran in guideBuilds; another
					// guide builds as deploy.md does.
					for _, b := range builds {
						if b.Command == cmd && b.Err != nil {
							t.Fatalf("failed: %v\n%s", b.Err, b.Output)
						}
						if b.Command == cmd {
							return
						}
					}
					t.Fatal("not among docs/deploy.md's sam build commands; a guide builds as the deploy guide does")
				}
				out, err := offline(guide.copy, guide.env, cmd)
				if err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
				if strings.HasPrefix(cmd, "sam --version") {
					checkSAMVersion(t, out)
				}
			})
		}
	}
	for _, want := range []string{"sam --version", "sam validate --lint", "sam build"} {
		found := false
		for _, cmd := range ran {
			found = found || cmd == want
		}
		if !found {
			t.Errorf("docs/deploy.md no longer says %q", want)
		}
	}
	arches := map[string]bool{}
	for _, b := range builds {
		arches[b.Arch] = true
	}
	for _, v := range asList(samtemplate.Path(loadTemplate(t).Section("Parameters"), "Architecture", "AllowedValues")) {
		if !arches[v.(string)] {
			t.Errorf("docs/deploy.md has no sam build command for Architecture %s", v)
		}
	}
}

var (
	minimumSAM   = regexp.MustCompile(`SAM CLI (\d+\.\d+\.\d+) or later`)
	installedSAM = regexp.MustCompile(`SAM CLI, version (\d+\.\d+\.\d+)`)
)

// checkSAMVersion holds `sam --version` to the minimum docs/deploy.md
// states, so the pinned SAM CLI is one the guide accepts.
func checkSAMVersion(t *testing.T, out string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	min := minimumSAM.FindStringSubmatch(string(b))
	got := installedSAM.FindStringSubmatch(out)
	if min == nil || got == nil {
		t.Fatalf("cannot read the minimum (%v) or the installed version (%q)", min, out)
	}
	if compareVersions(got[1], min[1]) < 0 {
		t.Errorf("installed SAM CLI %s is older than the %s docs/deploy.md requires", got[1], min[1])
	}
}

func compareVersions(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := range pa {
		x, _ := strconv.Atoi(pa[i])
		y, _ := strconv.Atoi(pb[i])
		if x != y {
			return x - y
		}
	}
	return 0
}

// Each sam build of the guide builds every function and the layer for the
// architecture it asks for, without a warning: switching Architecture
// switches the Go architecture, with no GOARCH setting and no stale cache.
func TestGuideBuildsAreOfTheirArchitecture(t *testing.T) {
	tpl := loadTemplate(t)
	machine := map[string]string{"arm64": "EM_AARCH64", "x86_64": "EM_X86_64"}
	for _, b := range guideBuilds(t) {
		t.Run(b.Command, func(t *testing.T) {
			if b.Err != nil {
				t.Fatalf("failed: %v\n%s", b.Err, b.Output)
			}
			for _, line := range strings.Split(b.Output, "\n") {
				if strings.Contains(strings.ToLower(line), "warning") {
					t.Errorf("sam build warns: %s", line)
				}
			}
			want := machine[b.Arch]
			for _, r := range makefileBuilt(t, tpl) {
				dir := filepath.Join(b.Dir, r.ID)
				handler, _ := r.Properties["Handler"].(string)
				switch {
				case r.Type == "AWS::Serverless::LayerVersion":
					if got := elfMachine(t, filepath.Join(dir, "gsr", "executor")).String(); got != want {
						t.Errorf("%s/gsr/executor: machine %s, want %s", r.ID, got, want)
					}
					b, err := os.ReadFile(filepath.Join(dir, "gsr", "exec-wrapper"))
					if err != nil || !strings.HasPrefix(string(b), "#!/bin/sh\n") {
						t.Errorf("%s/gsr/exec-wrapper: not a shell script (%v)", r.ID, err)
					}
					if st, err := os.Stat(filepath.Join(dir, "gsr", "exec-wrapper")); err != nil || st.Mode()&0o111 == 0 {
						t.Errorf("%s/gsr/exec-wrapper is not executable", r.ID)
					}
				case handler == "bootstrap":
					if got := elfMachine(t, filepath.Join(dir, "bootstrap")).String(); got != want {
						t.Errorf("%s/bootstrap: machine %s, want %s", r.ID, got, want)
					}
				default:
					// A managed runtime's handler file: index.handler is
					// index.py or index.mjs.
					module, _, _ := strings.Cut(handler, ".")
					matches, _ := filepath.Glob(filepath.Join(dir, module+".*"))
					if len(matches) != 1 {
						t.Errorf("%s handler %s: got files %q, want one %s.<ext>", r.ID, handler, matches, module)
					}
				}
			}
		})
	}
}

// The network namespace the tools run in has no network: nothing but a
// loopback interface, which is down.
func TestToolsRunWithoutNetwork(t *testing.T) {
	dir := t.TempDir()
	out, err := offline(dir, toolEnv(t, toolHome(t, dir)), "cat /proc/net/dev")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var ifaces []string
	for _, line := range strings.Split(out, "\n") {
		if name, _, ok := strings.Cut(line, ":"); ok {
			ifaces = append(ifaces, strings.TrimSpace(name))
		}
	}
	if strings.Join(ifaces, " ") != "lo" {
		t.Errorf("interfaces in the tools' namespace: %q, want only lo", ifaces)
	}
}

// TestSamLocalGuideStartsDynamoDBAndCreatesTheTables runs the DynamoDB
// steps of docs/sam-local.md as printed, as from the repository's root: it
// starts DynamoDB Local on port 8000 (in a network namespace of its own, so
// the port is free whatever else runs) and creates the tables with the AWS
// CLI. Each table must then have the keys and indexes of store.Tables().
func TestSamLocalGuideStartsDynamoDBAndCreatesTheTables(t *testing.T) {
	var start, tables []string
	for _, cmd := range guideCommands(t, "sam-local.md") {
		switch {
		case strings.HasPrefix(cmd, "jar=") || strings.HasPrefix(cmd, "java "):
			start = append(start, cmd)
		case strings.HasPrefix(cmd, "export AWS_") || strings.HasPrefix(cmd, "ep=") || strings.HasPrefix(cmd, "aws dynamodb create-table"):
			tables = append(tables, cmd)
		}
	}
	if len(start) != 2 || len(tables) < 2+len(store.Tables()) {
		t.Fatalf("docs/sam-local.md: DynamoDB Local commands %q, table commands %q; want jar= and java, then export, ep= and a create-table per table", start, tables)
	}
	var script strings.Builder
	script.WriteString("set -e\nip link set lo up\n")
	script.WriteString(start[0] + "\n" + start[1] + " >/dev/null 2>&1 &\n")
	script.WriteString("for i in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/8000) 2>/dev/null && break; sleep 0.1; done\n")
	for _, cmd := range tables {
		script.WriteString(cmd + " >/dev/null\n")
	}
	for _, spec := range store.Tables() {
		script.WriteString("aws dynamodb describe-table --endpoint-url $ep --table-name gsr-" + spec.Suffix + " --output json\n")
	}
	script.WriteString("kill %1\n")

	env := append(toolEnv(t, toolHome(t, t.TempDir())), "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	// A directory standing for the repository's root (DynamoDB Local writes
	// its metadata file there): the guide's commands find the jar under
	// .ci/node_modules.
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, ".ci"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(repoRoot(t), ".ci", "node_modules"), filepath.Join(dir, ".ci", "node_modules")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--user", "--map-root-user", "--net", "--", "bash", "-c", script.String())
	cmd.Dir, cmd.Env = dir, env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the guide's steps failed: %v\n%s", err, stderr.String())
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for _, spec := range store.Tables() {
		var d struct {
			Table struct {
				TableName string
				KeySchema []struct{ AttributeName, KeyType string }
				GSIs      []struct {
					IndexName string
					KeySchema []struct{ AttributeName, KeyType string }
				} `json:"GlobalSecondaryIndexes"`
			}
		}
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("describe-table gsr-%s: %v\n%s", spec.Suffix, err, out)
		}
		got := []string{}
		for _, k := range d.Table.KeySchema {
			got = append(got, k.KeyType+" "+k.AttributeName)
		}
		for _, g := range d.Table.GSIs {
			parts := []string{g.IndexName}
			for _, k := range g.KeySchema {
				parts = append(parts, k.KeyType+" "+k.AttributeName)
			}
			got = append(got, "index "+strings.Join(parts, " "))
		}
		want := []string{"HASH " + spec.HashKey.Name}
		if spec.RangeKey.Name != "" {
			want = append(want, "RANGE "+spec.RangeKey.Name)
		}
		for _, idx := range spec.GlobalIndexes {
			parts := []string{idx.Name, "HASH " + idx.HashKey.Name}
			if idx.RangeKey.Name != "" {
				parts = append(parts, "RANGE "+idx.RangeKey.Name)
			}
			want = append(want, "index "+strings.Join(parts, " "))
		}
		if strings.Join(got, "; ") != strings.Join(want, "; ") {
			t.Errorf("table gsr-%s made by the guide: %s; want %s", spec.Suffix, strings.Join(got, "; "), strings.Join(want, "; "))
		}
	}
}
