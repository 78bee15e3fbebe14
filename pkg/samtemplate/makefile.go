package samtemplate

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
)

var makeTarget = regexp.MustCompile(`(?m)^([A-Za-z0-9_.-]+)\s*:([^=]|$)`)

// MakeTargets returns the explicit targets of the makefile at path, sorted.
func MakeTargets(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("samtemplate: read makefile: %w", err)
	}
	seen := map[string]bool{}
	for _, m := range makeTarget.FindAllSubmatch(data, -1) {
		seen[string(m[1])] = true
	}
	targets := make([]string, 0, len(seen))
	for t := range seen {
		targets = append(targets, t)
	}
	sort.Strings(targets)
	return targets, nil
}

// DryRun returns the commands `make -n target vars...` would run in dir.
func DryRun(dir, target string, vars ...string) (string, error) {
	cmd := exec.Command("make", append([]string{"--no-print-directory", "-n", target}, vars...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("samtemplate: make -n %s: %w: %s", target, err, stderr.String())
	}
	return string(out), nil
}

var repoPath = regexp.MustCompile(`(?:^|[\s"'=])(\./)?((?:functions|pkg|cmd)/[A-Za-z0-9_./-]*[A-Za-z0-9_])`)

// RepoPaths returns the repository paths (under functions/, pkg/ or cmd/)
// named in commands, without a leading "./", in order of appearance.
func RepoPaths(commands string) []string {
	var paths []string
	seen := map[string]bool{}
	for _, m := range repoPath.FindAllStringSubmatch(commands, -1) {
		if !seen[m[2]] {
			seen[m[2]] = true
			paths = append(paths, m[2])
		}
	}
	return paths
}
