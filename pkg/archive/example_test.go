package archive_test

import (
	"fmt"
	"os"
	"path/filepath"

	"gitlab-serverless-runner/pkg/archive"
)

// The files of an artifacts entry are selected, then written as a zip; the
// warnings go to the job trace (stdout here).
func ExampleSelect() {
	project, err := os.MkdirTemp("", "project-*")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(project)
	for _, name := range []string{"bin/app", "bin/app.debug", "README.md"} {
		p := filepath.Join(project, name)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		_ = os.WriteFile(p, []byte(name), 0o644)
	}

	files, err := archive.Select(project, archive.Spec{
		Paths:   []string{"bin/", "coverage/"},
		Exclude: []string{"**/*.debug"},
	}, os.Stdout)
	if err != nil {
		panic(err)
	}
	fmt.Println(files)
	if err := archive.WriteZip(new(countingWriter), project, files, os.Stdout); err != nil {
		panic(err)
	}
	// Output:
	// WARNING: coverage/: no matching files
	// [bin bin/app]
}
