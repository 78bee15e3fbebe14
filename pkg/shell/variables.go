package shell

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gitlab-serverless-runner/pkg/gitlab"
)

// fileVar is a file variable's file to write.
type fileVar struct {
	key, path, content string
}

// resolved is the job's variables ready for the process environment.
type resolved struct {
	env   [][2]string // name, value; one entry per name
	files []fileVar
}

// resolve dedupes list (last occurrence wins), places file variables in
// tempDir and expands every value that is not raw once, against the
// variables and then base. Keys and values that cannot live in a process
// environment (an empty key, "=" or NUL in a key, NUL in a value) are an
// error naming the key only.
func resolve(list gitlab.Variables, base []string, tempDir string) (resolved, error) {
	last := map[string]int{}
	var order []string
	for i, v := range list {
		if v.Key == "" || strings.ContainsAny(v.Key, "=\x00") {
			return resolved{}, fmt.Errorf("shell: export variable %q: invalid name", v.Key)
		}
		if strings.ContainsRune(v.Value, 0) {
			return resolved{}, fmt.Errorf("shell: export variable %s: value contains a NUL byte", v.Key)
		}
		if _, seen := last[v.Key]; !seen {
			order = append(order, v.Key)
		}
		last[v.Key] = i
	}

	// What `$KEY` means: a file variable's path, any other variable's value
	// as sent (before expansion, so expansion happens exactly once).
	lookup := make(map[string]string, len(order))
	paths := map[string]string{}
	for _, k := range order {
		v := list[last[k]]
		if v.File {
			if k == "." || k == ".." || strings.ContainsRune(k, '/') {
				return resolved{}, fmt.Errorf("shell: write file variable %q: name is not a file name", k)
			}
			paths[k] = filepath.Join(tempDir, k)
			lookup[k] = paths[k]
			continue
		}
		lookup[k] = v.Value
	}
	mapping := func(name string) string {
		switch name {
		case "$":
			return "$" // "$$" is an escaped dollar
		case "*", "#", "@", "!", "?", "-", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9":
			return "$" + name // shell specials are left for the shell
		}
		if v, ok := lookup[name]; ok {
			return v
		}
		return lookupEnv(base, name)
	}

	var r resolved
	for _, k := range order {
		v := list[last[k]]
		value := v.Value
		if !v.Raw {
			value = os.Expand(value, mapping)
		}
		if v.File {
			r.files = append(r.files, fileVar{key: k, path: paths[k], content: value})
			value = paths[k]
		}
		r.env = append(r.env, [2]string{k, value})
	}
	return r, nil
}
