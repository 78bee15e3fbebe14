package preparer

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"gitlab-serverless-runner/pkg/envvar"
	"gitlab-serverless-runner/pkg/jobimage"
	"gitlab-serverless-runner/pkg/urlpolicy"
)

// Settings is the preparation function's deployment: where derived images
// go, which registries are read through pull-through caches, what image
// functions are made with, and the bounds of a job's compute. The main
// reads it with SettingsFromEnv and builds the clients.
type Settings struct {
	// Config is the Preparer's configuration.
	Config Config
	// Repository is the ECR repository derived images are pushed to,
	// "<account>.dkr.ecr.<region>.amazonaws.com/<name>" (IMAGE_REPOSITORY).
	Repository string
	// PullThrough maps an upstream registry host ("index.docker.io",
	// "registry.gitlab.com") to its cache's repository prefix in
	// Repository's registry (IMAGE_PULL_THROUGH, "host=prefix,…").
	PullThrough map[string]string
	// Table is the image functions' records table
	// (IMAGE_FUNCTIONS_TABLE); FunctionPrefix starts their names
	// (IMAGE_FUNCTION_PREFIX).
	Table, FunctionPrefix string
	// RoleARN is the executors' role (EXECUTOR_ROLE_ARN); FinisherARN
	// receives the image functions' outcomes (FINISHER_ARN).
	RoleARN, FinisherARN string
	// LogGroup receives the image functions' logs (EXECUTOR_LOG_GROUP).
	LogGroup string
	// Timeout is the image functions' timeout (IMAGE_FUNCTION_TIMEOUT,
	// seconds; 900 by default).
	Timeout time.Duration
	// Environment is the image functions' environment: the executor's
	// settings this function passes on (EXECUTOR_MARGIN_SECONDS,
	// LOG_LEVEL, ALLOW_HTTP_GITLAB, ALLOW_PRIVATE_GITLAB) and
	// EXECUTOR_CLEANUP=system.
	Environment map[string]string
	// UnusedDays is how long an image function may go unused before the
	// sweep deletes it (IMAGE_FUNCTION_UNUSED_DAYS, 7 by default).
	UnusedDays int
	// ExecutorDir holds the executor binaries ($LAMBDA_TASK_ROOT/executors,
	// where `make build-PreparerFunction` puts them).
	ExecutorDir string
	// PayloadBucket holds events too large to send inline
	// (PAYLOAD_BUCKET).
	PayloadBucket string
	// S3Endpoint and ECREndpoint replace S3's and ECR's endpoints
	// (S3_ENDPOINT, ECR_ENDPOINT), e.g. local stand-ins; "" means AWS.
	S3Endpoint, ECREndpoint string
}

// imageFunctionEnv is what every image function's environment holds
// besides the settings passed on: every process but the executor is a
// job's, so the clean-up reaches them all.
var imageFunctionEnv = map[string]string{"EXECUTOR_CLEANUP": "system"}

// SettingsFromEnv reads the preparation function's settings through lookup
// (os.LookupEnv when nil): those of Settings, the bounds
// IMAGE_MEMORY_MIN, IMAGE_MEMORY_MAX, IMAGE_MEMORY_DEFAULT,
// IMAGE_STORAGE_MIN, IMAGE_STORAGE_MAX, IMAGE_STORAGE_DEFAULT (MB),
// IMAGE_ARCHITECTURES (comma-separated) and IMAGE_ARCHITECTURE_DEFAULT, and
// the URL policy's ALLOW_HTTP_GITLAB and ALLOW_PRIVATE_GITLAB.
func SettingsFromEnv(lookup envvar.Lookup) (Settings, error) {
	r := envvar.New(lookup)
	s := Settings{
		Repository:     r.String("IMAGE_REPOSITORY"),
		Table:          r.String("IMAGE_FUNCTIONS_TABLE"),
		FunctionPrefix: r.String("IMAGE_FUNCTION_PREFIX"),
		RoleARN:        r.String("EXECUTOR_ROLE_ARN"),
		FinisherARN:    r.String("FINISHER_ARN"),
		LogGroup:       r.String("EXECUTOR_LOG_GROUP"),
		Timeout:        r.Seconds("IMAGE_FUNCTION_TIMEOUT"),
		UnusedDays:     r.Int("IMAGE_FUNCTION_UNUSED_DAYS", 1),
		ExecutorDir:    filepath.Join(r.StringOr("LAMBDA_TASK_ROOT", "."), "executors"),
		PayloadBucket:  r.String("PAYLOAD_BUCKET"),
		S3Endpoint:     r.String("S3_ENDPOINT"),
		ECREndpoint:    r.String("ECR_ENDPOINT"),
		PullThrough:    map[string]string{},
		Environment:    map[string]string{},
	}
	for k, v := range imageFunctionEnv {
		s.Environment[k] = v
	}
	if s.UnusedDays == 0 {
		s.UnusedDays = 7
	}
	for _, k := range []string{"EXECUTOR_MARGIN_SECONDS", "LOG_LEVEL", "ALLOW_HTTP_GITLAB", "ALLOW_PRIVATE_GITLAB"} {
		if v := r.String(k); v != "" {
			s.Environment[k] = v
		}
	}
	for _, pair := range r.List("IMAGE_PULL_THROUGH") {
		host, prefix, ok := strings.Cut(pair, "=")
		host, prefix = strings.TrimSpace(host), strings.Trim(strings.TrimSpace(prefix), "/")
		if !ok || host == "" || prefix == "" {
			r.Fail(fmt.Errorf("IMAGE_PULL_THROUGH: %q is not host=prefix", pair))
			continue
		}
		s.PullThrough[host] = prefix
	}
	b := Bounds{
		MinMemory: r.Int("IMAGE_MEMORY_MIN", 1), MaxMemory: r.Int("IMAGE_MEMORY_MAX", 1), DefaultMemory: r.Int("IMAGE_MEMORY_DEFAULT", 1),
		MinStorage: r.Int("IMAGE_STORAGE_MIN", 1), MaxStorage: r.Int("IMAGE_STORAGE_MAX", 1), DefaultStorage: r.Int("IMAGE_STORAGE_DEFAULT", 1),
	}
	for _, a := range r.List("IMAGE_ARCHITECTURES") {
		arch, err := jobimage.ParseArch(a)
		if err != nil {
			r.Fail(fmt.Errorf("IMAGE_ARCHITECTURES: %w", err))
			continue
		}
		b.Archs = append(b.Archs, arch)
	}
	if a := r.String("IMAGE_ARCHITECTURE_DEFAULT"); a != "" {
		arch, err := jobimage.ParseArch(a)
		if err != nil {
			r.Fail(fmt.Errorf("IMAGE_ARCHITECTURE_DEFAULT: %w", err))
		}
		b.DefaultArch = arch
	}
	if err := b.Validate(); err != nil {
		r.Fail(err)
	}
	s.Config.Bounds = b
	var missing []string
	for _, v := range [][2]string{{"IMAGE_REPOSITORY", s.Repository}, {"IMAGE_FUNCTIONS_TABLE", s.Table},
		{"IMAGE_FUNCTION_PREFIX", s.FunctionPrefix}, {"EXECUTOR_ROLE_ARN", s.RoleARN}, {"FINISHER_ARN", s.FinisherARN}} {
		if v[1] == "" {
			missing = append(missing, v[0])
		}
	}
	if len(missing) > 0 {
		r.Fail(fmt.Errorf("%s must be set", strings.Join(missing, ", ")))
	}
	s.Config.URLPolicy = urlpolicy.Read(r)
	return s, r.Err("preparer")
}
