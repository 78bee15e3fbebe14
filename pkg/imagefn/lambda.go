package imagefn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gitlab-serverless-runner/pkg/retry"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// functionInput is the CreateFunction request of a claimed variant.
func (f *Functions) functionInput(fn Function) *lambda.CreateFunctionInput {
	env := map[string]string{}
	for k, v := range f.cfg.Environment {
		env[k] = v
	}
	in := &lambda.CreateFunctionInput{
		FunctionName:     aws.String(fn.Name),
		PackageType:      lambdatypes.PackageTypeImage,
		Code:             &lambdatypes.FunctionCode{ImageUri: aws.String(fn.Image)},
		Role:             aws.String(f.cfg.RoleARN),
		MemorySize:       aws.Int32(fn.MemoryMB),
		EphemeralStorage: &lambdatypes.EphemeralStorage{Size: aws.Int32(fn.StorageMB)},
		Timeout:          aws.Int32(int32(f.cfg.Timeout / time.Second)),
		Architectures:    []lambdatypes.Architecture{fn.architecture()},
		Environment:      &lambdatypes.Environment{Variables: env},
		// One execution environment serves one job: every dispatch
		// carries its own tenant id.
		TenancyConfig: &lambdatypes.TenancyConfig{TenantIsolationMode: lambdatypes.TenantIsolationModePerTenant},
		Description:   aws.String(fmt.Sprintf("gitlab-serverless-runner executor for image %s (%s)", fn.Base, fn.Arch)),
		Tags: map[string]string{
			"gitlab-serverless-runner:base":     fn.Base,
			"gitlab-serverless-runner:executor": fn.Executor,
		},
	}
	if f.cfg.LogGroup != "" {
		in.LoggingConfig = &lambdatypes.LoggingConfig{LogFormat: lambdatypes.LogFormatJson, LogGroup: aws.String(f.cfg.LogGroup)}
	}
	return in
}

// createFunction creates the claimed variant's function (or adopts one of
// the same name and image left by a preparation that died), routes its
// outcomes to the finisher with no retries, and waits until it is Active.
// A function it created but could not finish is deleted.
func (f *Functions) createFunction(ctx context.Context, fn Function) (string, error) {
	var arn string
	out, err := f.lambda.CreateFunction(ctx, f.functionInput(fn))
	switch {
	case err == nil:
		arn = aws.ToString(out.FunctionArn)
	case isConflict(err):
		got, gerr := f.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String(fn.Name)})
		if gerr != nil {
			return "", fmt.Errorf("imagefn: create function %s: it exists but cannot be read: %w", fn.Name, gerr)
		}
		if got.Code == nil || aws.ToString(got.Code.ImageUri) != fn.Image {
			have := ""
			if got.Code != nil {
				have = aws.ToString(got.Code.ImageUri)
			}
			return "", fmt.Errorf("imagefn: create function %s: it exists with image %q, not %q", fn.Name, have, fn.Image)
		}
		arn = aws.ToString(got.Configuration.FunctionArn)
	default:
		return "", fmt.Errorf("imagefn: create function %s: %w", fn.Name, err)
	}
	fail := func(err error) (string, error) {
		_ = f.deleteFunction(context.WithoutCancel(ctx), fn.Name)
		return "", err
	}
	_, err = f.lambda.PutFunctionEventInvokeConfig(ctx, &lambda.PutFunctionEventInvokeConfigInput{
		FunctionName:         aws.String(fn.Name),
		MaximumRetryAttempts: aws.Int32(0),
		DestinationConfig: &lambdatypes.DestinationConfig{
			OnSuccess: &lambdatypes.OnSuccess{Destination: aws.String(f.cfg.FinisherARN)},
			OnFailure: &lambdatypes.OnFailure{Destination: aws.String(f.cfg.FinisherARN)},
		},
	})
	if err != nil {
		return fail(fmt.Errorf("imagefn: route outcomes of %s to the finisher: %w", fn.Name, err))
	}
	if err := f.WaitActive(ctx, fn.Name); err != nil {
		return fail(err)
	}
	return arn, nil
}

// WaitActive waits until the function name is Active and not being
// updated, for at most Config.ActiveWait. A function that failed (its
// image cannot be pulled, say) is an error with Lambda's reason.
func (f *Functions) WaitActive(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.ActiveWait)
	defer cancel()
	for {
		out, err := f.lambda.GetFunctionConfiguration(ctx, &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(name)})
		if err != nil {
			return fmt.Errorf("imagefn: wait for %s to be active: %w", name, err)
		}
		switch out.State {
		case lambdatypes.StateActive:
			if out.LastUpdateStatus != lambdatypes.LastUpdateStatusInProgress {
				return nil
			}
		case lambdatypes.StateFailed, lambdatypes.StateInactive:
			return fmt.Errorf("imagefn: function %s is %s: %s (%s)", name, out.State,
				aws.ToString(out.StateReason), out.StateReasonCode)
		}
		if err := retry.Sleep(ctx, f.cfg.PollInterval); err != nil {
			return fmt.Errorf("imagefn: wait for %s to be active (state %s): %w", name, out.State, err)
		}
	}
}

// deleteFunction deletes name; a function already gone is no error.
func (f *Functions) deleteFunction(ctx context.Context, name string) error {
	_, err := f.lambda.DeleteFunction(ctx, &lambda.DeleteFunctionInput{FunctionName: aws.String(name)})
	var nf *lambdatypes.ResourceNotFoundException
	if err != nil && !errors.As(err, &nf) {
		return fmt.Errorf("imagefn: delete function %s: %w", name, err)
	}
	return nil
}

func isConflict(err error) bool {
	var c *lambdatypes.ResourceConflictException
	return errors.As(err, &c)
}
