package poller

import (
	"fmt"
	"strings"

	"gitlab-serverless-runner/pkg/envvar"
	"gitlab-serverless-runner/pkg/urlpolicy"
)

// ConfigFromEnv reads the poller's settings through lookup (os.LookupEnv
// when nil): EXECUTOR_FUNCTIONS (see ParseFunctions; New refuses a
// Config without executor functions),
// POLL_WINDOW_SECONDS, MAX_LONG_POLL_SECONDS, VERSION, CACHE_BUCKET and
// PAYLOAD_BUCKET (default CACHE_BUCKET), PREPARER_FUNCTION, and the URL policy's
// ALLOW_HTTP_GITLAB and ALLOW_PRIVATE_GITLAB (urlpolicy.Read).
// Unset values are the defaults.
func ConfigFromEnv(lookup envvar.Lookup) (Config, error) {
	r := envvar.New(lookup)
	cfg := Config{
		Version:          r.StringOr("VERSION", "dev"),
		Window:           r.Seconds("POLL_WINDOW_SECONDS"),
		MaxLongPoll:      r.Seconds("MAX_LONG_POLL_SECONDS"),
		CacheBucket:      r.String("CACHE_BUCKET"),
		S3Endpoint:       r.String("S3_ENDPOINT"),
		PayloadBucket:    r.StringOr("PAYLOAD_BUCKET", r.String("CACHE_BUCKET")),
		PreparerFunction: r.String("PREPARER_FUNCTION"),
	}
	if s := r.String("EXECUTOR_FUNCTIONS"); s != "" {
		fns, err := ParseFunctions(s)
		if err != nil {
			r.Fail(fmt.Errorf("EXECUTOR_FUNCTIONS: %w", err))
		}
		cfg.ExecutorFunctions = fns
	}
	cfg.URLPolicy = urlpolicy.Read(r)
	return cfg, r.Err("poller")
}

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
