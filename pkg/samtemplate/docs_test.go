package samtemplate_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/samtemplate"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/store"
)

// The tables docs/sam-local.md tells people to create are the store's.
func TestSamLocalGuideCreatesTheStoresTables(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "sam-local.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	got := map[string]string{}
	attr := regexp.MustCompile(`AttributeName=(\w+),AttributeType=(\w)`)
	key := regexp.MustCompile(`AttributeName=(\w+),KeyType=(\w+)`)
	gsi := regexp.MustCompile(`IndexName=([\w-]+),KeySchema=\[\{AttributeName=(\w+),KeyType=HASH\}(?:,\{AttributeName=(\w+),KeyType=RANGE\})?\],Projection=\{ProjectionType=ALL\}`)
	name := regexp.MustCompile(`--table-name gsr-(\w+)`)
	for _, line := range strings.Split(text, "\n") {
		if !strings.Contains(line, "aws dynamodb create-table") {
			continue
		}
		m := name.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("create-table without a gsr- table name: %s", line)
			continue
		}
		var parts []string
		for _, a := range attr.FindAllStringSubmatch(line, -1) {
			parts = append(parts, "attr "+a[1]+" "+a[2])
		}
		keyPart, _, _ := strings.Cut(line, "--global-secondary-indexes")
		for _, k := range key.FindAllStringSubmatch(keyPart, -1) {
			parts = append(parts, "key "+k[1]+" "+k[2])
		}
		for _, g := range gsi.FindAllStringSubmatch(line, -1) {
			parts = append(parts, "index "+g[1]+" "+g[2]+" "+g[3])
		}
		slices.Sort(parts)
		got[m[1]] = strings.Join(parts, "; ")
	}
	want := map[string]string{}
	for _, spec := range store.Tables() {
		var parts []string
		attrs := map[string]string{spec.HashKey.Name: spec.HashKey.Type}
		parts = append(parts, "key "+spec.HashKey.Name+" HASH")
		if spec.RangeKey.Name != "" {
			attrs[spec.RangeKey.Name] = spec.RangeKey.Type
			parts = append(parts, "key "+spec.RangeKey.Name+" RANGE")
		}
		for _, idx := range spec.GlobalIndexes {
			attrs[idx.HashKey.Name] = idx.HashKey.Type
			attrs[idx.RangeKey.Name] = idx.RangeKey.Type
			parts = append(parts, "index "+idx.Name+" "+idx.HashKey.Name+" "+idx.RangeKey.Name)
		}
		for n, typ := range attrs {
			if n != "" {
				parts = append(parts, "attr "+n+" "+typ)
			}
		}
		slices.Sort(parts)
		want[spec.Suffix] = strings.Join(parts, "; ")
	}
	if render(got) != render(want) {
		t.Errorf("tables in docs/sam-local.md:\n got %s\nwant %s", render(got), render(want))
	}
}

// Every function keeps a sample event beside it for `sam local invoke`
// (docs/sam-local.md); the executor's is a well-formed executor event.
func TestEveryFunctionHasASampleEvent(t *testing.T) {
	root := repoRoot(t)
	seen := map[string]bool{}
	for _, id := range sortedKeys(functionPackages) {
		pkg := functionPackages[id]
		if seen[pkg] {
			continue
		}
		seen[pkg] = true
		b, err := os.ReadFile(filepath.Join(root, pkg, "testdata", "event.json"))
		if err != nil {
			t.Errorf("%s: %v", id, err)
			continue
		}
		if !json.Valid(b) {
			t.Errorf("%s/testdata/event.json is not JSON", pkg)
		}
	}
	b, err := os.ReadFile(filepath.Join(root, "functions", "executor", "testdata", "event.json"))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := dispatch.Decode(b)
	if err != nil {
		t.Fatalf("the executor's sample event does not decode: %v", err)
	}
	if ev.Job.ID == 0 || ev.Job.Token == "" || ev.GitLabURL == "" || len(ev.Job.Steps) == 0 {
		t.Errorf("sample executor event lacks a job id, token, GitLab URL or steps: %+v", ev)
	}
}

// guideSection returns the text of a "## " section of docs/deploy.md.
func guideSection(t *testing.T, title string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n## "+title+"\n")
	if !ok {
		t.Fatalf("docs/deploy.md has no section %q", title)
	}
	section, _, _ := strings.Cut(rest, "\n## ")
	return section
}

// What `sam delete` leaves behind is what the guide says it leaves: the
// retained resources are the tables, the token-sealing secret and the
// cache bucket (which CloudFormation could not delete while it holds
// objects), and every stateful resource says what happens to it both on
// deletion and on replacement.
func TestRetainedResourcesAreTheGuides(t *testing.T) {
	tpl := loadTemplate(t)
	var retained []string
	for id, r := range tpl.Section("Resources") {
		deletion, _ := samtemplate.Path(r, "DeletionPolicy").(string)
		replace, _ := samtemplate.Path(r, "UpdateReplacePolicy").(string)
		if deletion != replace {
			t.Errorf("%s: DeletionPolicy %q but UpdateReplacePolicy %q", id, deletion, replace)
		}
		if deletion == "Retain" {
			retained = append(retained, id)
		}
	}
	slices.Sort(retained)
	want := []string{"CacheBucket", "JobsTable", "RunnersTable", "SlotsTable", "TokenSealingKeySecret", "UsersTable"}
	if !slices.Equal(retained, want) {
		t.Errorf("retained: got %q, want %q", retained, want)
	}
	removing := guideSection(t, "Removing it")
	for _, says := range []string{"four tables", "token-sealing\nsecret", "cache bucket", "sam delete", "DeletionProtection=false"} {
		if !strings.Contains(removing, says) {
			t.Errorf("the guide's \"Removing it\" does not say %q", says)
		}
	}
	if !strings.Contains(guideSection(t, "Data"), "always\nretained") {
		t.Error("the guide's \"Data\" does not say the tables are always retained")
	}
}

// The key rotation the guide gives, followed literally with the forms it
// prints (`new,old`, then `new` alone), keeps every runner token and every
// session readable, starting from the key Secrets Manager generated.
func TestGuideKeyRotation(t *testing.T) {
	secrets := guideSection(t, "Secrets")
	forms := regexp.MustCompile("`((?:new|old)(?:,(?:new|old))*)`").FindAllStringSubmatch(secrets, -1)
	var steps []string
	for _, f := range forms {
		steps = append(steps, f[1])
	}
	if got, want := strings.Join(steps, " then "), "new,old then new"; got != want {
		t.Fatalf("the guide's rotation: got %q, want %q", got, want)
	}
	// Secrets Manager's generated key: 43 letters and digits.
	generated := strings.Repeat("Ab3", 14) + "x"
	keys := map[string]string{"old": generated, "new": seal.GenerateKey()}
	spell := func(form string) string {
		parts := strings.Split(form, ",")
		for i, p := range parts {
			parts[i] = keys[p]
		}
		return strings.Join(parts, ",")
	}
	sealer := func(spec string) *seal.Keyring {
		s, err := seal.ParseKeys(spec)
		if err != nil {
			t.Fatalf("seal.ParseKeys(the guide's %s): %v", spec, err)
		}
		return s
	}
	before := sealer(generated)
	tokenOld, _ := before.Seal("runner-1", "glrt-old")
	during := sealer(spell(steps[0]))
	if got, err := during.Open("runner-1", tokenOld); err != nil || got != "glrt-old" {
		t.Fatalf("during the rotation a token sealed before it: %q, %v", got, err)
	}
	if !during.NeedsReseal(tokenOld) {
		t.Error("during the rotation a token sealed before it is not to be resealed")
	}
	tokenNew, _ := during.Seal("runner-1", "glrt-new")
	after := sealer(spell(steps[1]))
	if got, err := after.Open("runner-1", tokenNew); err != nil || got != "glrt-new" {
		t.Errorf("after the rotation a token sealed during it: %q, %v", got, err)
	}
	// The session key (SESSION_KEY) takes the same forms: the web app
	// parses it with the same seal.ParseKeys, which sealer used above.
}
