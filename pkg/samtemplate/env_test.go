package samtemplate_test

import (
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/samtemplate"
)

// localOnly variables point a function at local servers or serve it
// outside Lambda. The template may declare them empty, so that sam local's
// env-vars file can set them, but never give them a value.
var localOnly = map[string]string{
	"DYNAMODB_ENDPOINT": "DynamoDB Local",
	"LAMBDA_ENDPOINT":   "sam local start-lambda",
	"LISTEN_ADDR":       "plain HTTP outside Lambda",
	"TABLE_PREFIX":      "the template passes every table's name instead",
	"S3_ENDPOINT":       "a local S3-compatible server",
}

// keptDefault are variables a function reads whose default is right on
// Lambda, so the template leaves them unset.
var keptDefault = map[string]map[string]string{
	"./functions/executor": {
		"EXECUTOR_BUILDS_DIR":         "/tmp/builds, Lambda's only writable disk",
		"EXECUTOR_HOME_DIR":           "/tmp/home",
		"EXECUTOR_KEEPALIVE_INTERVAL": "30s",
		"EXECUTOR_STATUS_INTERVAL":    "5s",
	},
	"./functions/poller": {
		"POLL_WINDOW_SECONDS": "5 s of short polls per invocation",
		"PAYLOAD_BUCKET":      "CACHE_BUCKET, under payloads/",
		"VERSION":             "the version the runner reports to GitLab",
	},
}

// setAhead are variables the template sets for code that is on its way.
var setAhead = map[string]map[string]string{}

func templateEnv(t testing.TB, tpl *samtemplate.Template, id string) map[string]any {
	t.Helper()
	vars, _ := samtemplate.Path(function(t, tpl, id).Properties, "Environment", "Variables").(map[string]any)
	return vars
}

func TestEveryVariableTheCodeReadsIsSet(t *testing.T) {
	tpl := loadTemplate(t)
	root := repoRoot(t)
	for _, id := range sortedKeys(functionPackages) {
		t.Run(id, func(t *testing.T) {
			pkg := functionPackages[id]
			reads, err := samtemplate.EnvReads(root, pkg)
			if err != nil {
				t.Fatal(err)
			}
			env := templateEnv(t, tpl, id)
			read := map[string]bool{}
			for _, r := range reads {
				read[r.Name] = true
				_, set := env[r.Name]
				switch {
				case strings.HasPrefix(r.Name, "AWS_") || r.Name == "LAMBDA_TASK_ROOT" || r.Name == "_HANDLER":
					if set && r.Name != "AWS_LAMBDA_EXEC_WRAPPER" {
						t.Errorf("%s is set by Lambda; the template sets it too", r.Name)
					}
				case localOnly[r.Name] != "":
					if set && env[r.Name] != "" {
						t.Errorf("%s (%s) is for local runs only; the template sets it to %s", r.Name, localOnly[r.Name], render(env[r.Name]))
					}
				case keptDefault[pkg][r.Name] != "":
				case !set:
					t.Errorf("%s reads %s (%s), which the template does not set", pkg, r.Name, r.Pos)
				}
			}
			for _, name := range sortedKeys(env) {
				if !read[name] && name != "AWS_LAMBDA_EXEC_WRAPPER" && setAhead[id][name] == "" {
					t.Errorf("the template sets %s, which %s does not read", name, pkg)
				}
			}
		})
	}
}

func TestEnvReadsFollowsTheConvention(t *testing.T) {
	reads, err := samtemplate.EnvReads(repoRoot(t), "./pkg/samtemplate/testdata/envreads")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range reads {
		got = append(got, r.Name)
	}
	want := "A_LOOKUP ENV_OR FROM_READER FROM_TABLE GETENV GET_CLOSURE LOOKUPENV"
	if strings.Join(got, " ") != want {
		t.Errorf("got %q, want %s", got, want)
	}
}
