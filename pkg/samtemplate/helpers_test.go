package samtemplate_test

import (
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/samtemplate"
)

// repoRoot is the module root, two directories above this package.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func loadTemplate(t testing.TB) *samtemplate.Template {
	t.Helper()
	tpl, err := samtemplate.Load(filepath.Join(repoRoot(t), "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

// The functions of the template and the Go package each one's code is in.
var functionPackages = map[string]string{
	"WebFunction":            "./functions/web",
	"SchedulerFunction":      "./functions/scheduler",
	"PollerFunction":         "./functions/poller",
	"FinisherFunction":       "./functions/finisher",
	"PreparerFunction":       "./functions/preparer",
	"ExecutorFunction":       "./functions/executor",
	"ExecutorPythonFunction": "./functions/executor", // from ExecutorLayer
	"ExecutorNodeFunction":   "./functions/executor", // from ExecutorLayer
}

// executors run jobs: one per offered runtime.
var executors = []string{"ExecutorFunction", "ExecutorPythonFunction", "ExecutorNodeFunction"}

func isExecutor(id string) bool {
	for _, e := range executors {
		if e == id {
			return true
		}
	}
	return false
}

func function(t testing.TB, tpl *samtemplate.Template, id string) samtemplate.Resource {
	t.Helper()
	r, ok := tpl.Resource(id)
	if !ok {
		t.Fatalf("template has no resource %s", id)
	}
	if r.Type != "AWS::Serverless::Function" {
		t.Fatalf("%s: got type %s, want AWS::Serverless::Function", id, r.Type)
	}
	return r
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// render writes a raw value compactly: intrinsic functions as !Ref X,
// !GetAtt X.Y and the !Sub string.
func render(v any) string {
	if name := samtemplate.RefName(v); name != "" {
		return "!Ref " + name
	}
	if r, a := samtemplate.GetAtt(v); r != "" {
		return "!GetAtt " + r + "." + a
	}
	if sub, ok := samtemplate.Path(v, "Fn::Sub").(string); ok {
		return sub
	}
	switch v := v.(type) {
	case string:
		return v
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = render(e)
		}
		return "[" + strings.Join(parts, " ") + "]"
	case map[string]any:
		parts := make([]string, 0, len(v))
		for _, k := range sortedKeys(v) {
			parts = append(parts, k+":"+render(v[k]))
		}
		return "map[" + strings.Join(parts, " ") + "]"
	case map[string]string:
		parts := make([]string, 0, len(v))
		for _, k := range sortedKeys(v) {
			parts = append(parts, k+":"+v[k])
		}
		return "map[" + strings.Join(parts, " ") + "]"
	case nil:
		return "<nil>"
	}
	return fmt.Sprint(v)
}
