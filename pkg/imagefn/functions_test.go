package imagefn_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"gitlab-serverless-runner/pkg/imagefn"
	"gitlab-serverless-runner/pkg/jobimage"
)

func TestEnsureCreatesTheImageFunction(t *testing.T) {
	e := newEnv(t)
	f := e.functions(t)
	ctx := context.Background()
	v := variant('a', jobimage.ARM64)

	fn, err := f.Ensure(ctx, v, imageURI)
	if err != nil {
		t.Fatal(err)
	}
	if fn.Name != v.FunctionName(e.cfg.FunctionPrefix) || fn.ARN == "" || fn.State != imagefn.StateActive {
		t.Errorf("Ensure = %+v; want the variant's name, an ARN, active", fn)
	}

	got, err := e.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(fn.Name)})
	if err != nil {
		t.Fatal(err)
	}
	c := got.Configuration
	if c.PackageType != lambdatypes.PackageTypeImage || aws.ToString(got.Code.ImageUri) != imageURI {
		t.Errorf("PackageType, ImageUri = %s, %s; want Image, %s", c.PackageType, aws.ToString(got.Code.ImageUri), imageURI)
	}
	if aws.ToString(c.Role) != roleARN || aws.ToInt32(c.MemorySize) != 2048 || aws.ToInt32(c.Timeout) != 900 ||
		aws.ToInt32(c.EphemeralStorage.Size) != 4096 {
		t.Errorf("role, memory, timeout, storage = %s, %d, %d, %d", aws.ToString(c.Role), aws.ToInt32(c.MemorySize),
			aws.ToInt32(c.Timeout), aws.ToInt32(c.EphemeralStorage.Size))
	}
	if len(c.Architectures) != 1 || c.Architectures[0] != lambdatypes.ArchitectureArm64 {
		t.Errorf("Architectures = %v; want [arm64]", c.Architectures)
	}
	if c.Environment == nil || c.Environment.Variables["GSR_MODE"] != "image" {
		t.Errorf("Environment = %+v; want GSR_MODE=image", c.Environment)
	}
	if c.State != lambdatypes.StateActive {
		t.Errorf("State = %s; want Active", c.State)
	}

	eic, err := e.lambda.GetFunctionEventInvokeConfig(ctx, &lambda.GetFunctionEventInvokeConfigInput{FunctionName: aws.String(fn.Name)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToInt32(eic.MaximumRetryAttempts) != 0 || eic.DestinationConfig == nil ||
		aws.ToString(eic.DestinationConfig.OnSuccess.Destination) != finisherARN ||
		aws.ToString(eic.DestinationConfig.OnFailure.Destination) != finisherARN {
		t.Errorf("event invoke config = retries %d, destinations %+v; want 0 and the finisher", aws.ToInt32(eic.MaximumRetryAttempts), eic.DestinationConfig)
	}

	// Tenant isolation: moto_server neither stores nor returns
	// TenancyConfig, so the request on the wire is what is checked.
	creates := e.wire.find("POST", "/2015-03-31/functions")
	if len(creates) != 1 {
		t.Fatalf("%d CreateFunction requests; want 1", len(creates))
	}
	var body struct {
		TenancyConfig struct{ TenantIsolationMode string }
	}
	if err := json.Unmarshal(creates[0].Body, &body); err != nil || body.TenancyConfig.TenantIsolationMode != "PER_TENANT" {
		t.Errorf("CreateFunction sent TenancyConfig %+v (%v); want PER_TENANT", body.TenancyConfig, err)
	}

	// The record.
	rec, found, err := f.Lookup(ctx, v)
	if err != nil || !found {
		t.Fatalf("Lookup = %v, %v; want the function", found, err)
	}
	if rec.Name != fn.Name || rec.ARN != fn.ARN || rec.Image != imageURI || rec.Variant != v ||
		!rec.CreatedAt.Equal(e.clock.Now()) || !rec.LastUsed.Equal(e.clock.Now()) {
		t.Errorf("record = %+v; want %+v", rec, fn)
	}

	// A second Ensure finds it and creates nothing.
	again, err := e.functions(t).Ensure(ctx, v, imageURI)
	if err != nil || again.Name != fn.Name {
		t.Fatalf("second Ensure = %+v, %v", again, err)
	}
	if n := len(e.wire.find("POST", "/2015-03-31/functions")); n != 1 {
		t.Errorf("%d CreateFunction requests after a second Ensure; want 1", n)
	}
}

// Two preparations of one variant at once make one function; both get it.
func TestEnsureConcurrentlyCreatesOneFunction(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	v := variant('b', jobimage.X8664)
	const n = 4
	var wg sync.WaitGroup
	fns := make([]imagefn.Function, n)
	errs := make([]error, n)
	for i := range n {
		f := e.functions(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fns[i], errs[i] = f.Ensure(ctx, v, imageURI)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Ensure %d: %v", i, errs[i])
		}
		if fns[i].ARN != fns[0].ARN {
			t.Errorf("Ensure %d gave %s; Ensure 0 %s", i, fns[i].ARN, fns[0].ARN)
		}
	}
	if got := len(e.wire.find("POST", "/2015-03-31/functions")); got != 1 {
		t.Errorf("%d CreateFunction requests; want 1", got)
	}
	list, err := e.lambda.ListFunctions(ctx, &lambda.ListFunctionsInput{})
	if err != nil {
		t.Fatal(err)
	}
	var ours int
	for _, fc := range list.Functions {
		if strings.HasPrefix(aws.ToString(fc.FunctionName), e.cfg.FunctionPrefix) {
			ours++
		}
	}
	if ours != 1 {
		t.Errorf("%d functions exist; want 1", ours)
	}
}

// A function left by a preparation that died (same name, same image) is
// adopted; one with another image is not.
func TestEnsureAdoptsAFunctionLeftBehind(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	v := variant('c', jobimage.X8664)
	name := v.FunctionName(e.cfg.FunctionPrefix)
	left, err := e.lambda.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(name),
		PackageType: lambdatypes.PackageTypeImage, Code: &lambdatypes.FunctionCode{ImageUri: aws.String(imageURI)},
		Role: aws.String(roleARN)})
	if err != nil {
		t.Fatal(err)
	}
	fn, err := e.functions(t).Ensure(ctx, v, imageURI)
	if err != nil {
		t.Fatal(err)
	}
	if fn.ARN != aws.ToString(left.FunctionArn) {
		t.Errorf("ARN = %s; want the existing %s", fn.ARN, aws.ToString(left.FunctionArn))
	}

	w := variant('d', jobimage.X8664)
	if _, err := e.lambda.CreateFunction(ctx, &lambda.CreateFunctionInput{FunctionName: aws.String(w.FunctionName(e.cfg.FunctionPrefix)),
		PackageType: lambdatypes.PackageTypeImage, Code: &lambdatypes.FunctionCode{ImageUri: aws.String(imageURI + "-other")},
		Role: aws.String(roleARN)}); err != nil {
		t.Fatal(err)
	}
	f := e.functions(t)
	if _, err := f.Ensure(ctx, w, imageURI); err == nil || !strings.Contains(err.Error(), "exists with image") {
		t.Errorf("Ensure over a function of another image = %v; want an error", err)
	}
	if _, found, _ := f.Lookup(ctx, w); found {
		t.Error("a failed Ensure left an active record")
	}
}

func TestSweepDeletesOnlyUnusedFunctions(t *testing.T) {
	e := newEnv(t)
	f := e.functions(t)
	ctx := context.Background()
	used, unused := variant('1', jobimage.ARM64), variant('2', jobimage.ARM64)
	for _, v := range []imagefn.Variant{used, unused} {
		if _, err := f.Ensure(ctx, v, imageURI); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Add(8 * 24 * time.Hour)
	if _, err := f.Touch(ctx, used); err != nil {
		t.Fatal(err)
	}
	deleted, err := f.SweepUnused(ctx, 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(deleted) != 1 || deleted[0] != unused.FunctionName(e.cfg.FunctionPrefix) {
		t.Errorf("deleted %q; want only %s", deleted, unused.FunctionName(e.cfg.FunctionPrefix))
	}
	_, err = e.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(unused.FunctionName(e.cfg.FunctionPrefix))})
	var nf *lambdatypes.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Errorf("GetFunction of the swept function = %v; want ResourceNotFound", err)
	}
	if _, err := e.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(used.FunctionName(e.cfg.FunctionPrefix))}); err != nil {
		t.Errorf("the used function is gone: %v", err)
	}
	if _, found, _ := f.Lookup(ctx, unused); found {
		t.Error("the swept function's record remains")
	}
	if _, err := f.Touch(ctx, unused); !errors.Is(err, imagefn.ErrNotActive) {
		t.Errorf("Touch of a swept function = %v; want ErrNotActive", err)
	}
	// It is made anew on demand.
	if _, err := f.Ensure(ctx, unused, imageURI); err != nil {
		t.Errorf("Ensure after the sweep: %v", err)
	}
	if err := f.Delete(ctx, used); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := f.Lookup(ctx, used); found {
		t.Error("Delete left the record")
	}
}

func TestEnsureRejectsBadInput(t *testing.T) {
	e := newEnv(t)
	f := e.functions(t)
	good := variant('f', jobimage.ARM64)
	for name, v := range map[string]imagefn.Variant{
		"no base":       {Arch: good.Arch, MemoryMB: 1024, StorageMB: 512, Executor: good.Executor},
		"bad arch":      {Base: good.Base, Arch: "sparc", MemoryMB: 1024, StorageMB: 512, Executor: good.Executor},
		"small memory":  {Base: good.Base, Arch: good.Arch, MemoryMB: 64, StorageMB: 512, Executor: good.Executor},
		"large storage": {Base: good.Base, Arch: good.Arch, MemoryMB: 1024, StorageMB: 20000, Executor: good.Executor},
	} {
		if _, err := f.Ensure(context.Background(), v, imageURI); err == nil {
			t.Errorf("%s: Ensure accepted %+v", name, v)
		}
	}
	if _, err := f.Ensure(context.Background(), good, "repo:tag"); err == nil {
		t.Error("Ensure accepted an image by tag")
	}
	if n := len(e.wire.find("POST", "/2015-03-31/functions")); n != 0 {
		t.Errorf("%d CreateFunction requests for bad input", n)
	}
	if _, err := imagefn.New(e.lambda, nil, imagefn.Config{}); err == nil || !strings.Contains(err.Error(), "RoleARN") {
		t.Errorf("New with no configuration = %v; want the missing fields named", err)
	}
}

func TestWaitActiveOnMoto(t *testing.T) {
	e := newEnv(t)
	f := e.functions(t)
	if err := f.WaitActive(context.Background(), "no-such-function"); err == nil {
		t.Error("WaitActive of a missing function succeeded")
	}
}
