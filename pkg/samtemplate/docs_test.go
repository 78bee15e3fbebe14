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
