package shell

import (
	"path/filepath"
	"strings"
)

// toolDir is one variable that tells a language tool where to install,
// and where that lands under the job's home.
type toolDir struct {
	name string
	rel  string // under home
	bin  string // under the value, added to PATH; "" for none
}

// toolDirs are the tools that install into an image's own folders unless
// told otherwise, in the order their bin folders go on PATH. pip needs no
// PIP_USER: it installs for the user by itself when site-packages cannot
// be written, and PIP_USER=1 would break a virtual environment the job
// makes.
var toolDirs = []toolDir{
	{"XDG_CACHE_HOME", ".cache", ""},
	{"PYTHONUSERBASE", ".local", "bin"},
	{"NPM_CONFIG_PREFIX", ".npm-global", "bin"},
	{"GEM_HOME", ".gem", "bin"},
	{"CARGO_HOME", ".cargo", "bin"},
	{"GOPATH", "go", "bin"},
	{"GOMODCACHE", "go/pkg/mod", ""},
	{"GOCACHE", ".cache/go-build", ""},
}

// ToolEnv points the tools that install into an image's own folders (pip,
// npm -g, gem, cargo, go) and the caches of XDG tools at home, the job's
// writable home, so that `pip install`, `npm i -g`, `gem install`,
// `cargo install` and `go install` work without root on an image whose
// root file system is read-only; what they install is put on PATH, first.
//
// env is the image's environment (as the job would get it, before its own
// variables). A variable the job sets itself (jobSets) is left alone, and
// so is one whose value already lies under writable (the one writable
// folder, such as /tmp). The gems of an image that set GEM_HOME stay
// visible through GEM_PATH. It returns the new environment and the names it
// changed, in order. It depends on the image's environment only, not on
// Lambda: local runs of images use it too.
func ToolEnv(env []string, home, writable string, jobSets func(name string) bool) (out []string, changed []string) {
	if jobSets == nil {
		jobSets = func(string) bool { return false }
	}
	set := map[string]string{}
	var bins []string
	for _, d := range toolDirs {
		if jobSets(d.name) || d.name == "NPM_CONFIG_PREFIX" && jobSets("npm_config_prefix") {
			continue
		}
		if v := lookupEnv(env, d.name); v != "" && under(v, writable) {
			continue
		}
		val := filepath.Join(home, filepath.FromSlash(d.rel))
		set[d.name] = val
		changed = append(changed, d.name)
		if d.bin != "" {
			bins = append(bins, filepath.Join(val, d.bin))
		}
	}
	if _, ok := set["GEM_HOME"]; ok && !jobSets("GEM_PATH") {
		old := lookupEnv(env, "GEM_HOME")
		path := lookupEnv(env, "GEM_PATH")
		switch {
		case path != "":
			set["GEM_PATH"] = joinList(set["GEM_HOME"], old, path)
			changed = append(changed, "GEM_PATH")
		case old != "":
			// A trailing separator keeps RubyGems' default folders.
			set["GEM_PATH"] = joinList(set["GEM_HOME"], old) + string(filepath.ListSeparator)
			changed = append(changed, "GEM_PATH")
		}
	}
	if len(bins) > 0 {
		path := lookupEnv(env, "PATH")
		if path == "" {
			path = DefaultPath
		}
		set["PATH"] = joinList(append(bins, path)...)
	}
	out = make([]string, 0, len(env)+len(set))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k == "npm_config_prefix" && set["NPM_CONFIG_PREFIX"] != "" {
			continue // npm reads both spellings
		}
		if _, ok := set[k]; !ok {
			out = append(out, kv)
		}
	}
	for _, d := range append(toolDirs, toolDir{name: "GEM_PATH"}, toolDir{name: "PATH"}) {
		if v, ok := set[d.name]; ok {
			out = append(out, d.name+"="+v)
		}
	}
	return out, changed
}

// under reports whether p is dir or lies below it.
func under(p, dir string) bool {
	if dir == "" {
		return false
	}
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

func joinList(parts ...string) string {
	var keep []string
	for _, p := range parts {
		if p != "" {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, string(filepath.ListSeparator))
}
