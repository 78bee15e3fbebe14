package shell

import "strings"

// The executor's environment is split into three classes by name:
//
//   - always denied: credentials and the Lambda runtime's control plane,
//     plus whatever the caller names as secret;
//   - the AWS_ namespace: denied unless the name is on awsAllowed, because
//     AWS keeps adding credential-bearing variables there and a job has no
//     business with the executor's;
//   - everything else is allowed (PATH, LANG, TZ, LAMBDA_TASK_ROOT,
//     LAMBDA_RUNTIME_DIR, and the language runtime's own variables such as
//     NODE_PATH, PYTHONPATH or JAVA_HOME, so the job finds its language).
//
// Deny wins over allow. Entries without "=" are dropped.

// deniedNames are never passed to a job.
var deniedNames = map[string]bool{
	"AWS_ACCESS_KEY_ID":                      true,
	"AWS_SECRET_ACCESS_KEY":                  true,
	"AWS_SESSION_TOKEN":                      true,
	"AWS_SECURITY_TOKEN":                     true,
	"AWS_LAMBDA_RUNTIME_API":                 true,
	"AWS_LAMBDA_EXEC_WRAPPER":                true,
	"AWS_WEB_IDENTITY_TOKEN_FILE":            true,
	"AWS_ROLE_ARN":                           true,
	"AWS_CONTAINER_AUTHORIZATION_TOKEN":      true,
	"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": true,
}

// deniedPrefixes are never passed to a job.
var deniedPrefixes = []string{
	"AWS_CONTAINER_CREDENTIALS_",
	"_LAMBDA_",
}

// awsAllowed are the harmless names of the AWS_ namespace: where and what
// the function is, never how to act as it.
var awsAllowed = map[string]bool{
	"AWS_REGION":                      true,
	"AWS_DEFAULT_REGION":              true,
	"AWS_EXECUTION_ENV":               true,
	"AWS_LAMBDA_FUNCTION_NAME":        true,
	"AWS_LAMBDA_FUNCTION_VERSION":     true,
	"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": true,
	"AWS_LAMBDA_INITIALIZATION_TYPE":  true,
	"AWS_LAMBDA_LOG_GROUP_NAME":       true,
	"AWS_LAMBDA_LOG_STREAM_NAME":      true,
	"AWS_LAMBDA_LOG_FORMAT":           true,
	"AWS_LAMBDA_LOG_LEVEL":            true,
}

// SanitizedBaseEnv returns the entries of environ (in "KEY=value" form, as
// from os.Environ) that may reach a job: the executor's credentials and the
// Lambda runtime's control variables are removed, as is every name listed in
// extraSecret (the executor's own configuration secrets). The AWS_ namespace
// is deny-by-default with a small allow list (AWS_REGION and the function's
// name, version, memory size and log destinations); every other name is
// allowed, so PATH, LANG and the language runtime's variables stay. Order is
// kept.
func SanitizedBaseEnv(environ []string, extraSecret ...string) []string {
	extra := make(map[string]bool, len(extraSecret))
	for _, k := range extraSecret {
		extra[k] = true
	}
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || extra[k] || !allowedName(k) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func allowedName(k string) bool {
	if deniedNames[k] {
		return false
	}
	for _, p := range deniedPrefixes {
		if strings.HasPrefix(k, p) {
			return false
		}
	}
	if strings.HasPrefix(k, "AWS_") {
		return awsAllowed[k]
	}
	return true
}
