package samtemplate_test

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/samtemplate"
	"gitlab-serverless-runner/pkg/seal"
)

func TestEveryReferenceResolves(t *testing.T) {
	tpl := loadTemplate(t)
	if got := len(tpl.References()); got < 50 {
		t.Fatalf("found %d references; the walk over the template is broken", got)
	}
	for _, r := range tpl.Unresolved() {
		t.Errorf("%s: names no parameter, resource, pseudo parameter or condition", r)
	}
}

func TestUnresolvedReferencesAreFound(t *testing.T) {
	tpl, err := samtemplate.Parse([]byte(`
Transform: AWS::Serverless-2016-10-31
Parameters:
  Known: {Type: String}
Conditions:
  IsKnown: !Equals [!Ref Known, "x"]
Resources:
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Sub "${Known}-${AWS::Region}-${Missing1}-${Bucket.Arn}-${!Literal}"
      Tags:
        - Key: a
          Value: !Ref Missing2
        - Key: b
          Value: !GetAtt Missing3.Arn
        - Key: c
          Value: !If [MissingCondition, !Ref Known, !Ref AWS::NoValue]
        - Key: d
          Value: !Sub ["${Local}", {Local: !Ref Missing4}]
Outputs:
  Out:
    Value: !GetAtt Bucket.Arn
`))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range tpl.Unresolved() {
		got = append(got, r.Kind+" "+r.Name)
	}
	slices.Sort(got)
	want := []string{"Condition MissingCondition", "Fn::GetAtt Missing3", "Fn::Sub Missing1", "Ref Missing2", "Ref Missing4"}
	if !slices.Equal(got, want) {
		t.Errorf("unresolved: got %q, want %q", got, want)
	}
}

func TestTemplateHasExactlyTheKnownFunctions(t *testing.T) {
	tpl := loadTemplate(t)
	var got []string
	for _, r := range tpl.Resources("AWS::Serverless::Function") {
		got = append(got, r.ID)
	}
	want := sortedKeys(functionPackages)
	if !slices.Equal(got, want) {
		t.Errorf("functions: got %q, want %q (a new function needs its checks here)", got, want)
	}
	if typed := len(tpl.Typed.GetAllServerlessFunctionResources()); typed != len(want) {
		t.Errorf("goformation sees %d functions, want %d", typed, len(want))
	}
}

// validRuntimes are the Lambda runtime identifiers the executors may use.
var validRuntimes = []string{"provided.al2023", "python3.12", "python3.13", "python3.14", "nodejs22.x", "nodejs24.x"}

func TestRuntimes(t *testing.T) {
	tpl := loadTemplate(t)
	params := tpl.Section("Parameters")
	for _, id := range sortedKeys(functionPackages) {
		t.Run(id, func(t *testing.T) {
			fn := function(t, tpl, id)
			var runtimes []string
			var def string
			if p := samtemplate.RefName(fn.Properties["Runtime"]); p != "" {
				for _, v := range samtemplate.Path(params, p, "AllowedValues").([]any) {
					runtimes = append(runtimes, v.(string))
				}
				def, _ = samtemplate.Path(params, p, "Default").(string)
				if !slices.Contains(runtimes, def) {
					t.Errorf("Runtime parameter %s: default %q is not among its allowed values %q", p, def, runtimes)
				}
			} else {
				def, _ = fn.Properties["Runtime"].(string)
				runtimes = []string{def}
			}
			for _, r := range runtimes {
				if !slices.Contains(validRuntimes, r) {
					t.Errorf("runtime %q: not one of %q", r, validRuntimes)
				}
			}
			wrapper := samtemplate.Path(fn.Properties, "Environment", "Variables", "AWS_LAMBDA_EXEC_WRAPPER")
			layers, _ := fn.Properties["Layers"].([]any)
			if def == "provided.al2023" {
				if got := fn.Properties["Handler"]; got != "bootstrap" {
					t.Errorf("Handler: got %v, want bootstrap", got)
				}
				if wrapper != nil || len(layers) > 0 {
					t.Errorf("an OS-only runtime runs bootstrap itself: got AWS_LAMBDA_EXEC_WRAPPER %v and layers %v", wrapper, render(layers))
				}
				return
			}
			// A managed runtime: the executor comes from the layer.
			if !isExecutor(id) {
				t.Fatalf("only executors may use managed runtimes, got %s", def)
			}
			if got, want := wrapper, "/opt/gsr/exec-wrapper"; got != want {
				t.Errorf("AWS_LAMBDA_EXEC_WRAPPER: got %v, want %s", got, want)
			}
			if len(layers) != 1 || !samtemplate.IsRef(layers[0], "ExecutorLayer") {
				t.Errorf("Layers: got %s, want [!Ref ExecutorLayer]", render(layers))
			}
			layer, _ := tpl.Resource("ExecutorLayer")
			compatible := render(layer.Properties["CompatibleRuntimes"])
			if !strings.Contains(compatible, render(fn.Properties["Runtime"])) {
				t.Errorf("ExecutorLayer CompatibleRuntimes %s lacks %s", compatible, render(fn.Properties["Runtime"]))
			}
		})
	}
}

func TestArchitectureIsOneParameter(t *testing.T) {
	tpl := loadTemplate(t)
	p := samtemplate.Path(tpl.Section("Parameters"), "Architecture")
	if got := samtemplate.Path(p, "Default"); got != "arm64" {
		t.Errorf("Architecture default: got %v, want arm64", got)
	}
	if got, want := render(samtemplate.Path(p, "AllowedValues")), "[arm64 x86_64]"; got != want {
		t.Errorf("Architecture allowed values: got %s, want %s", got, want)
	}
	for _, id := range sortedKeys(functionPackages) {
		fn := function(t, tpl, id)
		if got, want := render(fn.Properties["Architectures"]), "[!Ref Architecture]"; got != want {
			t.Errorf("%s Architectures: got %s, want %s", id, got, want)
		}
	}
	if got, want := render(tpl.Unmodelled["ExecutorLayer"]["CompatibleArchitectures"]), "[!Ref Architecture]"; got != want {
		t.Errorf("ExecutorLayer CompatibleArchitectures: got %s, want %s", got, want)
	}
}

func TestExecutors(t *testing.T) {
	tpl := loadTemplate(t)
	params := tpl.Section("Parameters")
	if got := samtemplate.Path(params, "ExecutorTimeout", "Default"); got != 900.0 {
		t.Errorf("ExecutorTimeout default: got %v, want 900", got)
	}
	// 0 leaves the executors unreserved: a reservation fails the deploy on
	// an account whose concurrency limit is still 10.
	if got := samtemplate.Path(params, "ExecutorReservedConcurrency", "Default"); got != 0.0 {
		t.Errorf("ExecutorReservedConcurrency default: got %v, want 0 (unreserved)", got)
	}
	if got, want := render(samtemplate.Path(tpl.Section("Conditions"), "HasExecutorReservedConcurrency")), "map[Fn::Not:[map[Fn::Equals:[!Ref ExecutorReservedConcurrency 0]]]]"; got != want {
		t.Errorf("condition HasExecutorReservedConcurrency: got %s, want %s", got, want)
	}
	for _, id := range executors {
		t.Run(id, func(t *testing.T) {
			fn := function(t, tpl, id)
			tests := []struct{ name, got, want string }{
				{"TenancyConfig", render(tpl.Unmodelled[id]["TenancyConfig"]), "map[TenantIsolationMode:PER_TENANT]"},
				{"MemorySize", render(fn.Properties["MemorySize"]), "!Ref ExecutorMemorySize"},
				{"EphemeralStorage", render(samtemplate.Path(fn.Properties, "EphemeralStorage", "Size")), "!Ref ExecutorEphemeralStorage"},
				{"Timeout", render(fn.Properties["Timeout"]), "!Ref ExecutorTimeout"},
				{"ReservedConcurrentExecutions", render(fn.Properties["ReservedConcurrentExecutions"]), "map[Fn::If:[HasExecutorReservedConcurrency !Ref ExecutorReservedConcurrency !Ref AWS::NoValue]]"},
				{"MaximumRetryAttempts", render(samtemplate.Path(fn.Properties, "EventInvokeConfig", "MaximumRetryAttempts")), "0"},
				{"OnSuccess", render(samtemplate.Path(fn.Properties, "EventInvokeConfig", "DestinationConfig", "OnSuccess", "Destination")), "!GetAtt FinisherFunction.Arn"},
				{"OnSuccess type", render(samtemplate.Path(fn.Properties, "EventInvokeConfig", "DestinationConfig", "OnSuccess", "Type")), "Lambda"},
				{"OnFailure", render(samtemplate.Path(fn.Properties, "EventInvokeConfig", "DestinationConfig", "OnFailure", "Destination")), "!GetAtt FinisherFunction.Arn"},
				{"OnFailure type", render(samtemplate.Path(fn.Properties, "EventInvokeConfig", "DestinationConfig", "OnFailure", "Type")), "Lambda"},
			}
			for _, tt := range tests {
				if tt.got != tt.want {
					t.Errorf("%s: got %s, want %s", tt.name, tt.got, tt.want)
				}
			}
			// Tenant isolation does not work with these (Lambda's documentation).
			for _, prop := range []string{"ProvisionedConcurrencyConfig", "FunctionUrlConfig", "SnapStart", "AutoPublishAlias", "Events"} {
				if v, ok := fn.Properties[prop]; ok {
					t.Errorf("%s is set (%s): executors run in tenant isolation mode and are only invoked by the poller", prop, render(v))
				}
			}
		})
	}
	for _, r := range tpl.Resources("AWS::Serverless::Function") {
		if _, ok := tpl.Unmodelled[r.ID]["TenancyConfig"]; ok && !isExecutor(r.ID) {
			t.Errorf("%s: tenant isolation is for executors only (an HTTP API cannot pass a tenant id)", r.ID)
		}
	}
	// The typed model agrees on what goformation does model.
	for _, id := range executors {
		fn := tpl.Typed.GetAllServerlessFunctionResources()[id]
		if fn.EventInvokeConfig == nil || fn.EventInvokeConfig.MaximumRetryAttempts == nil || *fn.EventInvokeConfig.MaximumRetryAttempts != 0 {
			t.Errorf("%s: goformation reads no MaximumRetryAttempts of 0", id)
		}
		if fn.Timeout == nil || *fn.Timeout != 900 {
			t.Errorf("%s: goformation reads timeout %v, want 900", id, fn.Timeout)
		}
	}
}

// policies renders a function's policies: "Template:Resource" for SAM
// policy templates, "Allow action,action on resource,resource" for inline
// statements, the name for managed policies.
func policies(t testing.TB, fn samtemplate.Resource) []string {
	t.Helper()
	var out []string
	list, _ := fn.Properties["Policies"].([]any)
	for _, p := range list {
		switch p := p.(type) {
		case string:
			out = append(out, "managed "+p)
		case map[string]any:
			if stmts, ok := p["Statement"].([]any); ok {
				for _, s := range stmts {
					var actions, resources []string
					for _, a := range asList(samtemplate.Path(s, "Action")) {
						actions = append(actions, render(a))
					}
					for _, r := range asList(samtemplate.Path(s, "Resource")) {
						resources = append(resources, render(r))
					}
					slices.Sort(actions)
					slices.Sort(resources)
					out = append(out, render(samtemplate.Path(s, "Effect"))+" "+strings.Join(actions, ",")+" on "+strings.Join(resources, ","))
				}
				continue
			}
			for name, arg := range p {
				m, _ := arg.(map[string]any)
				var targets []string
				for _, k := range sortedKeys(m) {
					targets = append(targets, strings.TrimPrefix(render(m[k]), "!Ref "))
				}
				out = append(out, name+":"+strings.Join(targets, ","))
			}
		}
	}
	slices.Sort(out)
	return out
}

func asList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

func TestLeastPrivilege(t *testing.T) {
	tpl := loadTemplate(t)
	secret := "AWSSecretsManagerGetSecretValuePolicy:"
	want := map[string][]string{
		"WebFunction": {
			secret + "OidcClientSecretSecret", secret + "SessionKeySecret", secret + "TokenSealingKeySecret",
			"DynamoDBCrudPolicy:RunnersTable", "DynamoDBCrudPolicy:UsersTable", "DynamoDBReadPolicy:JobsTable",
			"LambdaInvokePolicy:PollerFunction",
		},
		"SchedulerFunction": {
			secret + "TokenSealingKeySecret",
			"DynamoDBCrudPolicy:JobsTable", "DynamoDBCrudPolicy:SlotsTable", "DynamoDBReadPolicy:RunnersTable",
			"LambdaInvokePolicy:PollerFunction",
		},
		"PollerFunction": {
			secret + "TokenSealingKeySecret",
			"Allow s3:GetObject,s3:PutObject on ${CacheBucket.Arn}/payloads/*,${CacheBucket.Arn}/runner/*",
			"Allow s3:ListBucket on !GetAtt CacheBucket.Arn", // a missing cache is 404, not 403
			"DynamoDBCrudPolicy:JobsTable", "DynamoDBCrudPolicy:RunnersTable", "DynamoDBCrudPolicy:SlotsTable",
			"LambdaInvokePolicy:ExecutorFunction", "LambdaInvokePolicy:ExecutorNodeFunction", "LambdaInvokePolicy:ExecutorPythonFunction",
			"LambdaInvokePolicy:PreparerFunction",
		},
		// Image functions only: those named after the stack, the
		// executors' role passed to Lambda only, pushes to its own
		// repositories.
		"PreparerFunction": {
			"DynamoDBCrudPolicy:ImageFunctionsTable", "DynamoDBCrudPolicy:JobsTable", "DynamoDBCrudPolicy:SlotsTable",
			"Allow lambda:CreateFunction,lambda:DeleteFunction,lambda:GetFunction,lambda:GetFunctionConfiguration,lambda:InvokeFunction,lambda:PutFunctionEventInvokeConfig,lambda:TagResource on arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${AWS::StackName}-img-*",
			"Allow iam:PassRole on !GetAtt ExecutorFunctionRole.Arn",
			"Allow ecr:GetAuthorizationToken on *",
			"Allow ecr:BatchCheckLayerAvailability,ecr:BatchGetImage,ecr:CompleteLayerUpload,ecr:GetDownloadUrlForLayer,ecr:InitiateLayerUpload,ecr:PutImage,ecr:UploadLayerPart on !GetAtt ImageRepository.Arn,arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/${ImageCachePrefix}-*",
			"Allow ecr:BatchImportUpstreamImage,ecr:CreateRepository on arn:${AWS::Partition}:ecr:${AWS::Region}:${AWS::AccountId}:repository/${ImageCachePrefix}-*",
			"Allow s3:GetObject,s3:PutObject on ${CacheBucket.Arn}/payloads/*",
		},
		"FinisherFunction": {
			"DynamoDBCrudPolicy:JobsTable", "DynamoDBCrudPolicy:SlotsTable",
			"LambdaInvokePolicy:" + render(function(t, tpl, "PollerFunction").Properties["FunctionName"]),
		},
		"ExecutorFunction":       nil,
		"ExecutorPythonFunction": nil,
		"ExecutorNodeFunction":   nil,
	}
	for _, id := range sortedKeys(want) {
		t.Run(id, func(t *testing.T) {
			fn := function(t, tpl, id)
			w := want[id]
			slices.Sort(w)
			if got := policies(t, fn); !slices.Equal(got, w) {
				t.Errorf("policies:\n got %q\nwant %q", got, w)
			}
			// A role of our own would bypass the policies above.
			for _, prop := range []string{"Role", "PermissionsBoundary", "AssumeRolePolicyDocument"} {
				if v, ok := fn.Properties[prop]; ok {
					t.Errorf("%s is set (%s): functions use the role SAM makes from Policies", prop, render(v))
				}
			}
		})
	}
	// The executors' environment carries no name of anything they could
	// reach: no table, bucket, secret or function.
	for _, id := range executors {
		fn := function(t, tpl, id)
		vars, _ := samtemplate.Path(fn.Properties, "Environment", "Variables").(map[string]any)
		for k, v := range vars {
			for _, r := range tpl.References() {
				if strings.HasPrefix(r.Path, "Resources."+id+".Properties.Environment.Variables."+k) && r.Name != "AWS::NoValue" {
					if _, isParam := tpl.Section("Parameters")[r.Name]; !isParam {
						t.Errorf("%s: %s=%s refers to resource %s", id, k, render(v), r.Name)
					}
				}
			}
		}
	}
}

func TestSecretsNeverInConfiguration(t *testing.T) {
	tpl := loadTemplate(t)
	if got := samtemplate.Path(tpl.Section("Parameters"), "OidcClientSecret", "NoEcho"); got != true {
		t.Errorf("OidcClientSecret NoEcho: got %v, want true", got)
	}
	secretVars := []string{"SESSION_KEY", "TOKEN_SEALING_KEY", "OIDC_CLIENT_SECRET"}
	for _, id := range sortedKeys(functionPackages) {
		fn := function(t, tpl, id)
		pols := policies(t, fn)
		for _, name := range secretVars {
			v := samtemplate.Path(fn.Properties, "Environment", "Variables", name)
			if v == nil {
				continue
			}
			ref := samtemplate.RefName(v)
			res, ok := tpl.Resource(ref)
			if !ok || res.Type != "AWS::SecretsManager::Secret" {
				t.Errorf("%s %s=%s: want the ARN of a Secrets Manager secret (!Ref of one)", id, name, render(v))
				continue
			}
			if !slices.Contains(pols, "AWSSecretsManagerGetSecretValuePolicy:"+ref) {
				t.Errorf("%s reads %s but may not get secret %s", id, name, ref)
			}
		}
	}
	for _, id := range []string{"SessionKeySecret", "TokenSealingKeySecret"} {
		r, _ := tpl.Resource(id)
		g := r.Properties["GenerateSecretString"]
		if got := samtemplate.Path(g, "PasswordLength"); got != 43.0 {
			t.Errorf("%s PasswordLength: got %v, want 43 (256 bits of [A-Za-z0-9], unpadded base64 of 32 bytes)", id, got)
		}
		if got := samtemplate.Path(g, "ExcludePunctuation"); got != true {
			t.Errorf("%s ExcludePunctuation: got %v, want true", id, got)
		}
	}
}

// The generated keys are 43 characters of [A-Za-z0-9]: the unpadded
// base64 of 32 bytes. The session key parser takes them as they are.
func TestGeneratedKeyShapeIsAcceptedBySessions(t *testing.T) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	tests := []string{
		strings.Repeat("A", 43),
		strings.Repeat("z9", 21) + "Q",
		(alphabet + alphabet)[:43],
	}
	for _, key := range tests {
		if _, err := seal.ParseKeys(key); err != nil {
			t.Errorf("seal.ParseKeys(%d generated characters): %v", len(key), err)
		}
	}
}

// sam deploy --guided and the console show parameters by group: every
// parameter belongs to exactly one. (cfn-lint reports a group naming no
// parameter, W4001.)
func TestEveryParameterIsInOneGroup(t *testing.T) {
	tpl := loadTemplate(t)
	groups := samtemplate.Path(tpl.Raw["Metadata"], "AWS::CloudFormation::Interface", "ParameterGroups")
	count := map[string]int{}
	for _, g := range asList(groups) {
		for _, p := range asList(samtemplate.Path(g, "Parameters")) {
			count[p.(string)]++
		}
	}
	for _, name := range sortedKeys(tpl.Section("Parameters")) {
		if count[name] != 1 {
			t.Errorf("parameter %s is in %d groups, want 1", name, count[name])
		}
	}
}

// evalName evaluates a function name made of Fn::Join, Fn::Select,
// Fn::Split and the pseudo parameters AWS::StackName and AWS::StackId, as
// CloudFormation would for a stack of that id.
func evalName(t *testing.T, v any, stackID string) string {
	t.Helper()
	var eval func(v any) any
	eval = func(v any) any {
		switch v := v.(type) {
		case string, int, float64:
			return v
		case []any:
			out := make([]any, len(v))
			for i, e := range v {
				out[i] = eval(e)
			}
			return out
		case map[string]any:
			if len(v) != 1 {
				break
			}
			for fn, arg := range v {
				args, _ := eval(arg).([]any)
				switch fn {
				case "Ref":
					switch arg {
					case "AWS::StackId":
						return stackID
					case "AWS::StackName":
						return strings.Split(stackID, "/")[1]
					}
				case "Fn::Join":
					if len(args) == 2 {
						var parts []string
						for _, p := range args[1].([]any) {
							parts = append(parts, p.(string))
						}
						return strings.Join(parts, args[0].(string))
					}
				case "Fn::Split":
					if len(args) == 2 {
						var out []any
						for _, p := range strings.Split(args[1].(string), args[0].(string)) {
							out = append(out, p)
						}
						return out
					}
				case "Fn::Select":
					if len(args) == 2 {
						i, _ := strconv.Atoi(fmt.Sprint(args[0]))
						return args[1].([]any)[i]
					}
				}
			}
		}
		t.Fatalf("cannot evaluate %s", render(v))
		return nil
	}
	s, ok := eval(v).(string)
	if !ok {
		t.Fatalf("%s is not a string", render(v))
	}
	return s
}

// The finisher invokes the poller, whose !Ref would close the cycle
// finisher → poller → executors → their destination, the finisher
// (TestCfnLintAfterSAMTransform shows it): the poller's name is set, built
// from the stack's id, and the finisher's variable and policy build the
// same name without referring to the poller. Lambda takes names of up to
// 64 characters of letters, digits, - and _: the name is one whatever the
// stack's name (up to 128 characters), and two stacks get two names.
func TestFinisherNamesThePollerWithoutACycle(t *testing.T) {
	tpl := loadTemplate(t)
	name := function(t, tpl, "PollerFunction").Properties["FunctionName"]
	fin := function(t, tpl, "FinisherFunction")
	if got := samtemplate.Path(fin.Properties, "Environment", "Variables", "POLLER_FUNCTION"); !reflect.DeepEqual(got, name) {
		t.Errorf("finisher POLLER_FUNCTION = %s, want the poller's FunctionName %s", render(got), render(name))
	}
	if got := policies(t, fin); !slices.Contains(got, "LambdaInvokePolicy:"+render(name)) {
		t.Errorf("finisher policies %q do not allow invoking %s", got, render(name))
	}
	for _, r := range tpl.References() {
		if strings.HasPrefix(r.Path, "Resources.FinisherFunction.") && r.Name == "PollerFunction" {
			t.Errorf("%s refers to PollerFunction", r.Path)
		}
	}
	lambdaName := regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	seen := map[string]bool{}
	long := strings.Repeat("a-very-long-stack-name-", 5) + "12345678" // 123 characters
	for _, stack := range []struct{ name, id string }{
		{"sam-app", "6e4f5f30-0f6c-11ef-9f5a-0a1b2c3d4e5f"},
		{"sam-app", "0b0e7e10-0f6d-11ef-8a3b-06f1e2d3c4b5"}, // deleted and created again
		{long, "9c1d2e30-0f6d-11ef-b1c2-0e9f8a7b6c5d"},
	} {
		got := evalName(t, name, "arn:aws:cloudformation:eu-west-1:123456789012:stack/"+stack.name+"/"+stack.id)
		if !lambdaName.MatchString(got) {
			t.Errorf("stack %s (%d characters): poller name %q (%d characters) is no Lambda function name", stack.name, len(stack.name), got, len(got))
		}
		if seen[got] {
			t.Errorf("two stacks get the poller name %q", got)
		}
		seen[got] = true
	}
}

// TestFinisherRecordsNeverVanish: a destination record the finisher fails
// to process after its retries goes to a dead-letter queue, with an alarm
// on it, rather than being dropped.
func TestFinisherRecordsNeverVanish(t *testing.T) {
	tpl := loadTemplate(t)
	fin := function(t, tpl, "FinisherFunction")
	cfg := samtemplate.Path(fin.Properties, "EventInvokeConfig")
	if got := render(samtemplate.Path(cfg, "DestinationConfig", "OnFailure", "Type")); got != "SQS" {
		t.Fatalf("finisher's OnFailure destination type = %s, want SQS", got)
	}
	dest := render(samtemplate.Path(cfg, "DestinationConfig", "OnFailure", "Destination"))
	q, ok := tpl.Resource("FinisherDeadLetterQueue")
	if !ok || q.Type != "AWS::SQS::Queue" || !strings.Contains(dest, "FinisherDeadLetterQueue") {
		t.Fatalf("finisher's OnFailure destination = %s; want the FinisherDeadLetterQueue queue", dest)
	}
	alarmed := false
	for _, a := range tpl.Resources("AWS::CloudWatch::Alarm") {
		if strings.Contains(render(a.Properties["Dimensions"]), "FinisherDeadLetterQueue") {
			alarmed = true
		}
	}
	if !alarmed {
		t.Error("no alarm watches the finisher's dead-letter queue")
	}
}
