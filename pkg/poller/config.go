package poller

import (
	"fmt"
	"strings"
)

// ParseFunctions parses the runtime → executor function map of the
// configuration: comma-separated "runtime=function" pairs, e.g.
// "provided.al2023=gsr-executor,python3.13=gsr-executor-python".
func ParseFunctions(s string) (map[string]string, error) {
	out := map[string]string{}
	for pair := range strings.SplitSeq(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		runtime, fn, ok := strings.Cut(pair, "=")
		runtime, fn = strings.TrimSpace(runtime), strings.TrimSpace(fn)
		if !ok || runtime == "" || fn == "" {
			return nil, fmt.Errorf("poller: parse executor functions: %q is not runtime=function", pair)
		}
		out[runtime] = fn
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("poller: parse executor functions: none given")
	}
	return out, nil
}
