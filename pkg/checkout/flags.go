package checkout

import (
	"fmt"
	"strconv"
	"strings"

	git "github.com/go-git/go-git/v5"
)

// DefaultFetchFlags are gitlab-runner's GIT_FETCH_EXTRA_FLAGS when the job
// sets none.
var DefaultFetchFlags = []string{"--prune", "--quiet"}

// fetchFlags are the GIT_FETCH_EXTRA_FLAGS that have a meaning for go-git.
type fetchFlags struct {
	prune    bool
	progress bool
	tags     git.TagMode
	depth    *int
}

// submoduleFlags are the GIT_SUBMODULE_UPDATE_FLAGS that have a meaning
// for go-git.
type submoduleFlags struct {
	remote    bool
	recursive bool
	noFetch   bool
	depth     *int
}

// flagValue splits "--name=value"; for a flag that takes a value and has
// none after "=", it takes the next argument.
func flagValue(args []string, i int, takesValue bool) (name, value string, next int, hasValue bool) {
	name, value, hasValue = strings.Cut(args[i], "=")
	next = i + 1
	if takesValue && !hasValue && next < len(args) {
		value, hasValue, next = args[next], true, next+1
	}
	return name, value, next, hasValue
}

// parseFetchFlags reads GIT_FETCH_EXTRA_FLAGS: the flags with a go-git
// meaning set fetchFlags, the others are returned as ignored, each as
// written. A flag whose value is malformed is an error.
func parseFetchFlags(args []string) (fetchFlags, []string, error) {
	f := fetchFlags{tags: git.NoTags}
	var ignored []string
	for i := 0; i < len(args); {
		takesValue := args[i] == "--depth" || args[i] == "--jobs" || args[i] == "-j" ||
			args[i] == "--shallow-since" || args[i] == "--shallow-exclude" || args[i] == "--deepen" ||
			args[i] == "--filter" || args[i] == "--negotiation-tip" || args[i] == "--server-option" || args[i] == "-o"
		name, value, next, hasValue := flagValue(args, i, takesValue)
		written := strings.Join(args[i:next], " ")
		i = next
		switch name {
		case "--prune", "-p":
			f.prune = true
		case "--no-prune":
			f.prune = false
		case "--quiet", "-q", "--no-progress", "--force", "-f", "--no-recurse-submodules":
			// What go-git does anyway: no progress unless asked, forced
			// updates of the refspecs', no submodules during the fetch.
		case "--verbose", "-v", "--progress":
			f.progress = true
		case "--tags", "-t":
			f.tags = git.AllTags
		case "--no-tags", "-n":
			f.tags = git.NoTags
		case "--depth":
			n, err := strconv.Atoi(value)
			if !hasValue || err != nil || n < 0 {
				return f, nil, fmt.Errorf("read GIT_FETCH_EXTRA_FLAGS: %q is not a depth", written)
			}
			f.depth = &n
		default:
			ignored = append(ignored, written)
		}
	}
	return f, ignored, nil
}

// parseSubmoduleFlags reads GIT_SUBMODULE_UPDATE_FLAGS like
// parseFetchFlags.
func parseSubmoduleFlags(args []string) (submoduleFlags, []string, error) {
	var f submoduleFlags
	var ignored []string
	for i := 0; i < len(args); {
		takesValue := args[i] == "--depth" || args[i] == "--jobs" || args[i] == "-j" ||
			args[i] == "--reference" || args[i] == "--filter"
		name, value, next, hasValue := flagValue(args, i, takesValue)
		written := strings.Join(args[i:next], " ")
		i = next
		switch name {
		case "--remote":
			f.remote = true
		case "--recursive":
			f.recursive = true
		case "--no-fetch", "-N":
			f.noFetch = true
		case "--init", "--force", "-f", "--checkout", "--quiet", "-q":
			// What the update does anyway: initialize, check out the
			// recorded (or --remote) commit over local changes.
		case "--depth":
			n, err := strconv.Atoi(value)
			if !hasValue || err != nil || n < 0 {
				return f, nil, fmt.Errorf("read GIT_SUBMODULE_UPDATE_FLAGS: %q is not a depth", written)
			}
			f.depth = &n
		default:
			ignored = append(ignored, written)
		}
	}
	return f, ignored, nil
}
