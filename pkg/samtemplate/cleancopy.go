package samtemplate

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// CleanCopy copies the git repository at root into dst as a fresh clone
// with the working tree's changes would have it: the files git tracks and
// the untracked files it does not ignore. Build outputs, installed tools
// (.ci/venv, .ci/node_modules) and local data are left out, so that a build
// in dst shows what a new machine's build would do. A tracked file deleted
// from the working tree is left out too.
func CleanCopy(root, dst string) error {
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("samtemplate: list the repository's files: %w: %s", err, stderr.String())
	}
	seen := map[string]bool{}
	for _, name := range strings.Split(string(out), "\x00") {
		if name == "" || seen[name] {
			continue
		}
		seen[name] = true
		if err := copyEntry(filepath.Join(root, name), filepath.Join(dst, name)); err != nil {
			return err
		}
	}
	return nil
}

func copyEntry(src, dst string) error {
	st, err := os.Lstat(src)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("samtemplate: copy %s: %w", src, err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("samtemplate: copy %s: %w", src, err)
	}
	switch {
	case st.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return fmt.Errorf("samtemplate: copy %s: %w", src, err)
		}
		if err := os.Symlink(target, dst); err != nil {
			return fmt.Errorf("samtemplate: copy %s: %w", src, err)
		}
		return nil
	case !st.Mode().IsRegular():
		// A submodule or other non-file entry: a clone would not hold it
		// as a file either.
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("samtemplate: copy %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return fmt.Errorf("samtemplate: copy %s: %w", src, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("samtemplate: copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("samtemplate: copy %s: %w", src, err)
	}
	return nil
}
