package samtemplate_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/samtemplate"
)

// The README's configuration table is the one list of variables people
// read: every variable a function's code reads is in it, with that function
// named in its "Read by" column, and it lists no variable nobody reads.
// Lambda's own variables, which the platform sets, are left out.
func TestReadmeConfigurationTableMatchesTheCode(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Configuration\n")
	if !ok {
		t.Fatal("README.md has no Configuration section")
	}
	row := regexp.MustCompile("(?m)^\\| (`[A-Z0-9_]+`(?:, `[A-Z0-9_]+`)*) \\| [^|]* \\| ([^|]*) \\|")
	name := regexp.MustCompile("`([A-Z0-9_]+)`")
	documented := map[string]string{} // variable → its "Read by" cell
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		for _, n := range name.FindAllStringSubmatch(m[1], -1) {
			documented[n[1]] = m[2]
		}
	}
	if len(documented) == 0 {
		t.Fatal("no rows found in the README's configuration table")
	}
	platform := []string{"AWS_LAMBDA_RUNTIME_API", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_EXECUTION_ENV", "LAMBDA_TASK_ROOT"}
	read := map[string]bool{}
	for _, fn := range []string{"web", "scheduler", "poller", "finisher", "preparer", "executor", "local"} {
		reads, err := samtemplate.EnvReads(root, "./functions/"+fn)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range reads {
			if slices.Contains(platform, r.Name) {
				continue
			}
			read[r.Name] = true
			cell, ok := documented[r.Name]
			if !ok {
				t.Errorf("%s is read by %s (%s) but not in the README's configuration table", r.Name, fn, r.Pos)
				continue
			}
			if !regexp.MustCompile(`\b` + fn + `\b`).MatchString(cell) {
				t.Errorf("%s is read by %s (%s) but its README row says %q", r.Name, fn, r.Pos, strings.TrimSpace(cell))
			}
		}
	}
	for n := range documented {
		if !read[n] {
			t.Errorf("the README documents %s, which no function reads", n)
		}
	}
}
