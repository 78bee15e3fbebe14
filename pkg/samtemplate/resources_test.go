package samtemplate_test

import (
	"slices"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/imagefn"
	"gitlab-serverless-runner/pkg/samtemplate"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/web"
	"gitlab-serverless-runner/pkg/webhook"
)

// tableID is the logical id of the table with a store suffix: "runners"
// → RunnersTable.
func tableID(suffix string) string {
	return strings.ToUpper(suffix[:1]) + suffix[1:] + "Table"
}

func TestTablesMatchTheStore(t *testing.T) {
	tpl := loadTemplate(t)
	tables := tpl.Typed.GetAllDynamoDBTableResources()
	var want []string
	for _, spec := range store.Tables() {
		want = append(want, tableID(spec.Suffix))
	}
	slices.Sort(want)
	// The image functions' records belong to pkg/imagefn
	// (TestImageFunctionsTableMatchesImagefn).
	delete(tables, "ImageFunctionsTable")
	if got := sortedKeys(tables); !slices.Equal(got, want) {
		t.Fatalf("tables: got %q, want %q", got, want)
	}
	for _, spec := range store.Tables() {
		id := tableID(spec.Suffix)
		t.Run(id, func(t *testing.T) {
			tbl := tables[id]
			key := func(hash, rng store.Attribute) string {
				s := hash.Name + " HASH"
				if rng.Name != "" {
					s += ", " + rng.Name + " RANGE"
				}
				return s
			}
			wantAttrs := map[string]string{spec.HashKey.Name: spec.HashKey.Type}
			if spec.RangeKey.Name != "" {
				wantAttrs[spec.RangeKey.Name] = spec.RangeKey.Type
			}
			var gotKey []string
			for _, k := range tbl.KeySchema {
				gotKey = append(gotKey, k.AttributeName+" "+k.KeyType)
			}
			if got, want := strings.Join(gotKey, ", "), key(spec.HashKey, spec.RangeKey); got != want {
				t.Errorf("key schema: got %s, want %s", got, want)
			}
			wantIdx := map[string]string{}
			for _, idx := range spec.GlobalIndexes {
				wantIdx[idx.Name] = key(idx.HashKey, idx.RangeKey) + " projecting ALL"
				wantAttrs[idx.HashKey.Name] = idx.HashKey.Type
				if idx.RangeKey.Name != "" {
					wantAttrs[idx.RangeKey.Name] = idx.RangeKey.Type
				}
			}
			gotIdx := map[string]string{}
			for _, idx := range tbl.GlobalSecondaryIndexes {
				var ks []string
				for _, k := range idx.KeySchema {
					ks = append(ks, k.AttributeName+" "+k.KeyType)
				}
				proj := ""
				if idx.Projection != nil && idx.Projection.ProjectionType != nil {
					proj = *idx.Projection.ProjectionType
				}
				gotIdx[idx.IndexName] = strings.Join(ks, ", ") + " projecting " + proj
			}
			if got, want := render(gotIdx), render(wantIdx); got != want {
				t.Errorf("global indexes: got %s, want %s", got, want)
			}
			gotAttrs := map[string]string{}
			for _, a := range tbl.AttributeDefinitions {
				gotAttrs[a.AttributeName] = a.AttributeType
			}
			if got, want := render(gotAttrs), render(wantAttrs); got != want {
				t.Errorf("attribute definitions: got %s, want %s", got, want)
			}
			gotTTL := ""
			if tbl.TimeToLiveSpecification != nil && tbl.TimeToLiveSpecification.Enabled {
				gotTTL = *tbl.TimeToLiveSpecification.AttributeName
			}
			if gotTTL != spec.TTLAttribute {
				t.Errorf("TTL attribute: got %q, want %q", gotTTL, spec.TTLAttribute)
			}
			if tbl.BillingMode == nil || *tbl.BillingMode != "PAY_PER_REQUEST" {
				t.Errorf("billing mode: got %v, want PAY_PER_REQUEST (on demand)", render(tbl.BillingMode))
			}
			if p := tbl.PointInTimeRecoverySpecification; p == nil || p.PointInTimeRecoveryEnabled == nil || !*p.PointInTimeRecoveryEnabled {
				t.Error("point-in-time recovery is off")
			}
			raw, _ := tpl.Resource(id)
			if got, want := render(raw.Properties["DeletionProtectionEnabled"]), "map[Fn::If:[DeletionProtectionOn true false]]"; got != want {
				t.Errorf("deletion protection: got %s, want %s", got, want)
			}
			if tbl.DeletionProtectionEnabled == nil || !*tbl.DeletionProtectionEnabled {
				t.Error("deletion protection is off with the default parameters")
			}
		})
	}
	if got, want := render(samtemplate.Path(tpl.Section("Conditions"), "DeletionProtectionOn")), "map[Fn::Equals:[!Ref DeletionProtection true]]"; got != want {
		t.Errorf("condition DeletionProtectionOn: got %s, want %s", got, want)
	}
}

// The image functions' records table is what imagefn.CreateTable makes:
// one string hash key, on demand.
func TestImageFunctionsTableMatchesImagefn(t *testing.T) {
	tpl := loadTemplate(t)
	tbl, ok := tpl.Typed.GetAllDynamoDBTableResources()["ImageFunctionsTable"]
	if !ok {
		t.Fatal("no ImageFunctionsTable")
	}
	var keys, attrs []string
	for _, k := range tbl.KeySchema {
		keys = append(keys, k.AttributeName+" "+k.KeyType)
	}
	for _, a := range tbl.AttributeDefinitions {
		attrs = append(attrs, a.AttributeName+" "+a.AttributeType)
	}
	if got, want := render(keys), "["+imagefn.KeyAttribute+" HASH]"; got != want {
		t.Errorf("key schema: got %s, want %s", got, want)
	}
	if got, want := render(attrs), "["+imagefn.KeyAttribute+" S]"; got != want {
		t.Errorf("attributes: got %s, want %s", got, want)
	}
	if tbl.BillingMode == nil || *tbl.BillingMode != "PAY_PER_REQUEST" {
		t.Error("billing mode is not on demand")
	}
	prep := function(t, tpl, "PreparerFunction")
	if got := render(samtemplate.Path(prep.Properties, "Environment", "Variables", "IMAGE_FUNCTIONS_TABLE")); got != "!Ref ImageFunctionsTable" {
		t.Errorf("the preparer's IMAGE_FUNCTIONS_TABLE = %s", got)
	}
}

// The preparer runs once per job (no retry), its death reaches the
// finisher (never its success: the job is then the image function's), and
// it sweeps unused image functions on a schedule; the poller names it.
func TestThePreparer(t *testing.T) {
	tpl := loadTemplate(t)
	fn := function(t, tpl, "PreparerFunction")
	cfg := samtemplate.Path(fn.Properties, "EventInvokeConfig")
	for _, tt := range []struct{ name, got, want string }{
		{"retries", render(samtemplate.Path(cfg, "MaximumRetryAttempts")), "0"},
		{"OnFailure", render(samtemplate.Path(cfg, "DestinationConfig", "OnFailure", "Destination")), "!GetAtt FinisherFunction.Arn"},
		{"OnSuccess", render(samtemplate.Path(cfg, "DestinationConfig", "OnSuccess")), "<nil>"},
		{"timeout", render(fn.Properties["Timeout"]), "900"},
		{"role of image functions", render(samtemplate.Path(fn.Properties, "Environment", "Variables", "EXECUTOR_ROLE_ARN")), "!GetAtt ExecutorFunctionRole.Arn"},
		{"finisher", render(samtemplate.Path(fn.Properties, "Environment", "Variables", "FINISHER_ARN")), "!GetAtt FinisherFunction.Arn"},
		{"prefix", render(samtemplate.Path(fn.Properties, "Environment", "Variables", "IMAGE_FUNCTION_PREFIX")), "!Ref AWS::StackName"},
		{"poller", render(samtemplate.Path(function(t, tpl, "PollerFunction").Properties, "Environment", "Variables", "PREPARER_FUNCTION")), "!Ref PreparerFunction"},
	} {
		if tt.got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, tt.got, tt.want)
		}
	}
	var sweep bool
	for _, e := range fn.Properties["Events"].(map[string]any) {
		if samtemplate.Path(e, "Type") == "Schedule" && samtemplate.Path(e, "Properties", "Input") == `{"sweep": true}` {
			sweep = true
		}
	}
	if !sweep {
		t.Error("no schedule sends the preparer {\"sweep\": true}")
	}
	// The executors' role: SAM's, with no policy of the template's.
	if _, ok := function(t, tpl, "ExecutorFunction").Properties["Role"]; ok {
		t.Error("ExecutorFunction names a role: image functions would not get the executors' own")
	}
}

func TestCacheBucket(t *testing.T) {
	tpl := loadTemplate(t)
	b, ok := tpl.Typed.GetAllS3BucketResources()["CacheBucket"]
	if !ok {
		t.Fatal("no CacheBucket")
	}
	if b.BucketEncryption == nil || len(b.BucketEncryption.ServerSideEncryptionConfiguration) == 0 ||
		b.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault == nil {
		t.Error("no default encryption")
	}
	pab := b.PublicAccessBlockConfiguration
	if pab == nil || pab.BlockPublicAcls == nil || !*pab.BlockPublicAcls || pab.BlockPublicPolicy == nil || !*pab.BlockPublicPolicy ||
		pab.IgnorePublicAcls == nil || !*pab.IgnorePublicAcls || pab.RestrictPublicBuckets == nil || !*pab.RestrictPublicBuckets {
		t.Errorf("public access is not fully blocked: %+v", pab)
	}
	raw, _ := tpl.Resource("CacheBucket")
	expiry := map[string]string{}
	for _, r := range asList(samtemplate.Path(raw.Properties, "LifecycleConfiguration", "Rules")) {
		if p, ok := samtemplate.Path(r, "Prefix").(string); ok {
			expiry[p] = render(samtemplate.Path(r, "ExpirationInDays"))
		}
	}
	// The poller writes caches under runner/ and payloads under payloads/.
	if got, want := render(expiry), "map[payloads/:1 runner/:!Ref CacheExpirationDays]"; got != want {
		t.Errorf("expiry by prefix: got %s, want %s", got, want)
	}
	pol, _ := tpl.Resource("CacheBucketPolicy")
	if got := render(pol.Properties["Bucket"]); got != "!Ref CacheBucket" {
		t.Errorf("bucket policy is on %s", got)
	}
	var tlsOnly bool
	for _, s := range asList(samtemplate.Path(pol.Properties, "PolicyDocument", "Statement")) {
		if samtemplate.Path(s, "Effect") == "Deny" && samtemplate.Path(s, "Condition", "Bool", "aws:SecureTransport") == "false" &&
			render(samtemplate.Path(s, "Resource")) == "[!GetAtt CacheBucket.Arn ${CacheBucket.Arn}/*]" {
			tlsOnly = true
		}
	}
	if !tlsOnly {
		t.Error("the bucket policy does not deny requests without TLS on the bucket and its objects")
	}
}

func TestSchedulerRunsEveryMinute(t *testing.T) {
	tpl := loadTemplate(t)
	fn := function(t, tpl, "SchedulerFunction")
	events, _ := fn.Properties["Events"].(map[string]any)
	var schedules []string
	for _, e := range events {
		if samtemplate.Path(e, "Type") == "Schedule" {
			schedules = append(schedules, render(samtemplate.Path(e, "Properties", "Schedule")))
		}
	}
	if got, want := render(schedules), "[rate(1 minute)]"; got != want {
		t.Errorf("schedules: got %s, want %s", got, want)
	}
	web := function(t, tpl, "WebFunction")
	var apis []string
	for _, e := range web.Properties["Events"].(map[string]any) {
		if samtemplate.Path(e, "Type") == "HttpApi" {
			apis = append(apis, render(samtemplate.Path(e, "Properties", "ApiId"))+" "+render(samtemplate.Path(e, "Properties", "Method"))+" "+render(samtemplate.Path(e, "Properties", "Path")))
		}
	}
	slices.Sort(apis)
	if got, want := render(apis), "[!Ref HttpApi ANY / !Ref HttpApi ANY /{proxy+}]"; got != want {
		t.Errorf("web routes: got %s, want %s", got, want)
	}
	if api, _ := tpl.Resource("HttpApi"); api.Type != "AWS::Serverless::HttpApi" {
		t.Errorf("HttpApi has type %q", api.Type)
	}
}

func TestLogsAreJSONWithRetention(t *testing.T) {
	tpl := loadTemplate(t)
	for _, id := range sortedKeys(functionPackages) {
		lc := tpl.Unmodelled[id]["LoggingConfig"]
		if got := samtemplate.Path(lc, "LogFormat"); got != "JSON" {
			t.Errorf("%s log format: got %v, want JSON", id, got)
		}
		group := samtemplate.RefName(samtemplate.Path(lc, "LogGroup"))
		g, ok := tpl.Resource(group)
		if !ok || g.Type != "AWS::Logs::LogGroup" {
			t.Errorf("%s log group: got %s, want a !Ref of an AWS::Logs::LogGroup", id, render(samtemplate.Path(lc, "LogGroup")))
			continue
		}
		if got := render(g.Properties["RetentionInDays"]); got != "!Ref LogRetentionDays" {
			t.Errorf("%s: retention of %s is %s, want !Ref LogRetentionDays", id, group, got)
		}
	}
}

func TestAlarms(t *testing.T) {
	tpl := loadTemplate(t)
	errorsAlarmed := map[string]bool{}
	metrics := map[string]bool{}
	for _, a := range tpl.Resources("AWS::CloudWatch::Alarm") {
		ns, name := render(a.Properties["Namespace"]), render(a.Properties["MetricName"])
		metrics[ns+" "+name] = true
		if ns == "AWS/Lambda" && name == "Errors" {
			for _, d := range asList(a.Properties["Dimensions"]) {
				if samtemplate.Path(d, "Name") == "FunctionName" {
					errorsAlarmed[samtemplate.RefName(samtemplate.Path(d, "Value"))] = true
				}
			}
		}
		if got := render(a.Properties["AlarmActions"]); got != "map[Fn::If:[HasAlarmTopic [!Ref AlarmTopicArn] !Ref AWS::NoValue]]" {
			t.Errorf("%s alarm actions: got %s", a.ID, got)
		}
	}
	for _, id := range append([]string{"PollerFunction", "FinisherFunction"}, executors...) {
		if !errorsAlarmed[id] {
			t.Errorf("no alarm on the errors of %s", id)
		}
	}
	filters := tpl.Resources("AWS::Logs::MetricFilter")
	var finisherFilter bool
	for _, f := range filters {
		if samtemplate.RefName(f.Properties["LogGroupName"]) != "FinisherLogGroup" {
			continue
		}
		for _, m := range asList(f.Properties["MetricTransformations"]) {
			key := render(samtemplate.Path(m, "MetricNamespace")) + " " + render(samtemplate.Path(m, "MetricName"))
			if metrics[key] {
				finisherFilter = true
			}
		}
	}
	if !finisherFilter {
		t.Error("no alarm on a metric filter of the finisher's logs (jobs the finisher failed)")
	}
}

func TestOutputs(t *testing.T) {
	tpl := loadTemplate(t)
	out := tpl.Section("Outputs")
	base := render(samtemplate.Path(out, "WebUrl", "Value"))
	if !strings.HasPrefix(base, "https://${HttpApi}.execute-api.") {
		t.Errorf("WebUrl: got %s, want the HTTP API's https URL", base)
	}
	// The callback is where the web app expects it.
	cfg := web.Config{BaseURL: "https://example.org"}
	path := strings.TrimPrefix(cfg.RedirectURL(), cfg.BaseURL)
	if got, want := render(samtemplate.Path(out, "OidcCallbackUrl", "Value")), base+path; got != want {
		t.Errorf("OidcCallbackUrl: got %s, want %s", got, want)
	}
	// The webhook route is where the web app serves it.
	if got, want := render(samtemplate.Path(out, "WebhookUrlPattern", "Value")), base+strings.Replace(strings.TrimPrefix(webhook.Route, "POST "), "{runnerID}", "{runner-id}", 1); got != want {
		t.Errorf("WebhookUrlPattern: got %s, want %s", got, want)
	}
	// The poller's map of executors covers every runtime the web offers.
	poller := function(t, tpl, "PollerFunction")
	webFn := function(t, tpl, "WebFunction")
	execs := render(samtemplate.Path(poller.Properties, "Environment", "Variables", "EXECUTOR_FUNCTIONS"))
	var runtimes []string
	for _, pair := range strings.Split(execs, ",") {
		rt, fn, _ := strings.Cut(pair, "=")
		runtimes = append(runtimes, rt)
		id := strings.Trim(fn, "${}")
		if !isExecutor(id) {
			t.Errorf("EXECUTOR_FUNCTIONS maps %s to %s, not an executor", rt, fn)
			continue
		}
		r := function(t, tpl, id)
		if want := render(r.Properties["Runtime"]); want != rt && "${"+strings.TrimPrefix(want, "!Ref ")+"}" != rt {
			t.Errorf("EXECUTOR_FUNCTIONS maps %s to %s, whose runtime is %s", rt, id, want)
		}
	}
	if got, want := render(samtemplate.Path(webFn.Properties, "Environment", "Variables", "RUNTIMES")), strings.Join(runtimes, ","); got != want {
		t.Errorf("web RUNTIMES: got %s, want the poller's runtimes %s", got, want)
	}
	if len(runtimes) != len(executors) {
		t.Errorf("EXECUTOR_FUNCTIONS names %d runtimes, want %d", len(runtimes), len(executors))
	}
}
