package imagefn

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"gitlab-serverless-runner/pkg/retry"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

// ErrNotActive says a variant has no active function (none yet, or one
// being created or deleted).
var ErrNotActive = errors.New("imagefn: no active function for the variant")

// Defaults for the zero Config.
const (
	DefaultTimeout      = 15 * time.Minute
	DefaultCreateLease  = 10 * time.Minute
	DefaultPollInterval = 2 * time.Second
	DefaultActiveWait   = 10 * time.Minute
)

// LambdaAPI is the part of the Lambda client Functions uses;
// *lambda.Client implements it.
type LambdaAPI interface {
	CreateFunction(context.Context, *lambda.CreateFunctionInput, ...func(*lambda.Options)) (*lambda.CreateFunctionOutput, error)
	GetFunction(context.Context, *lambda.GetFunctionInput, ...func(*lambda.Options)) (*lambda.GetFunctionOutput, error)
	GetFunctionConfiguration(context.Context, *lambda.GetFunctionConfigurationInput, ...func(*lambda.Options)) (*lambda.GetFunctionConfigurationOutput, error)
	DeleteFunction(context.Context, *lambda.DeleteFunctionInput, ...func(*lambda.Options)) (*lambda.DeleteFunctionOutput, error)
	PutFunctionEventInvokeConfig(context.Context, *lambda.PutFunctionEventInvokeConfigInput, ...func(*lambda.Options)) (*lambda.PutFunctionEventInvokeConfigOutput, error)
}

var _ LambdaAPI = (*lambda.Client)(nil)

// Config configures Functions. RoleARN, FinisherARN, FunctionPrefix and
// Table are required; the zero value of every other field is a default.
type Config struct {
	// FunctionPrefix starts every function name (at most 39 characters,
	// so names fit Lambda's 64), e.g. the stack name.
	FunctionPrefix string
	// RoleARN is the executors' execution role.
	RoleARN string
	// FinisherARN receives every invocation's outcome (OnSuccess and
	// OnFailure destinations).
	FinisherARN string
	// Timeout is the functions' timeout (DefaultTimeout, Lambda's
	// maximum, when zero).
	Timeout time.Duration
	// Environment is the functions' environment.
	Environment map[string]string
	// LogGroup, when set, receives the functions' logs (JSON), as the
	// template's executors log to theirs.
	LogGroup string
	// Table is the records table (CreateTable).
	Table string
	// CreateLease is how long a preparation may hold a variant's claim
	// before another may take it over (DefaultCreateLease).
	CreateLease time.Duration
	// PollInterval is how often a waiting preparation looks at the record
	// and Lambda (DefaultPollInterval).
	PollInterval time.Duration
	// ActiveWait bounds the wait for a new function to become Active
	// (DefaultActiveWait).
	ActiveWait time.Duration
	// Now returns the time (time.Now); tests move it.
	Now func() time.Time
}

// Functions creates, finds and deletes image executor functions. It is safe
// for concurrent use.
type Functions struct {
	lambda LambdaAPI
	db     *dynamodb.Client
	cfg    Config
}

// New returns Functions for the given clients, or an error naming the
// missing configuration.
func New(l LambdaAPI, db *dynamodb.Client, cfg Config) (*Functions, error) {
	var missing []string
	for _, v := range [][2]string{{"RoleARN", cfg.RoleARN}, {"FinisherARN", cfg.FinisherARN},
		{"FunctionPrefix", cfg.FunctionPrefix}, {"Table", cfg.Table}} {
		if v[1] == "" {
			missing = append(missing, v[0])
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("imagefn: configuration lacks %s", strings.Join(missing, ", "))
	}
	if len(cfg.FunctionPrefix) > 39 {
		return nil, fmt.Errorf("imagefn: function prefix %q is longer than 39 characters", cfg.FunctionPrefix)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.CreateLease <= 0 {
		cfg.CreateLease = DefaultCreateLease
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.ActiveWait <= 0 {
		cfg.ActiveWait = DefaultActiveWait
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Functions{lambda: l, db: db, cfg: cfg}, nil
}

func (f *Functions) get(ctx context.Context, v Variant) (Function, bool, error) {
	out, err := f.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(f.cfg.Table), Key: key(v), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return Function{}, false, fmt.Errorf("imagefn: read record %s: %w", v.Key(), err)
	}
	if out.Item == nil {
		return Function{}, false, nil
	}
	fn, err := fromItem(out.Item)
	if err != nil {
		return Function{}, false, fmt.Errorf("imagefn: read record %s: %w", v.Key(), err)
	}
	return fn, true, nil
}

// Lookup returns the variant's function if it is active. found is false
// when there is none, or one being created or deleted.
func (f *Functions) Lookup(ctx context.Context, v Variant) (fn Function, found bool, err error) {
	fn, found, err = f.get(ctx, v)
	if err != nil || !found || fn.State != StateActive {
		return Function{}, false, err
	}
	return fn, true, nil
}

// Touch records that a job is using the variant's function now, so the
// sweeper keeps it, and returns the function. ErrNotActive means there is
// none, or it is being created or deleted: call Ensure.
func (f *Functions) Touch(ctx context.Context, v Variant) (Function, error) {
	out, err := f.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(f.cfg.Table), Key: key(v),
		UpdateExpression:          aws.String("SET last_used = :now"),
		ConditionExpression:       aws.String("#s = :active"),
		ExpressionAttributeNames:  map[string]string{"#s": "state"},
		ExpressionAttributeValues: item{":now": ts(f.cfg.Now()), ":active": s(StateActive)},
		ReturnValues:              ddbtypes.ReturnValueAllNew,
	})
	if isCondFailed(err) {
		return Function{}, fmt.Errorf("imagefn: touch %s: %w", v.Key(), ErrNotActive)
	}
	if err != nil {
		return Function{}, fmt.Errorf("imagefn: touch %s: %w", v.Key(), err)
	}
	fn, err := fromItem(out.Attributes)
	if err != nil {
		return Function{}, fmt.Errorf("imagefn: touch %s: %w", v.Key(), err)
	}
	return fn, nil
}

// Ensure returns the variant's active function, creating it from image (a
// derived image by digest, jobimage.Derived.Image) when there is none. Two
// Ensure calls for one variant, in one process or two, create one function:
// the second waits for the first (or takes over its claim once the claim's
// lease ran out). ctx bounds the whole wait.
func (f *Functions) Ensure(ctx context.Context, v Variant, image string) (Function, error) {
	if err := v.validate(); err != nil {
		return Function{}, fmt.Errorf("imagefn: ensure function: %w", err)
	}
	if !strings.Contains(image, "@sha256:") {
		return Function{}, fmt.Errorf("imagefn: ensure function for %s: image %q is not by digest", v.Key(), image)
	}
	owner := newOwner()
	waitingFor := "" // the state of another's claim this call waits for
	for {
		fn, found, err := f.get(ctx, v)
		if err != nil {
			if waitingFor != "" && ctx.Err() != nil {
				return Function{}, fmt.Errorf("imagefn: wait for %s (%s by another preparation): %w",
					v.FunctionName(f.cfg.FunctionPrefix), waitingFor, ctx.Err())
			}
			return Function{}, err
		}
		now := f.cfg.Now()
		switch {
		case found && fn.State == StateActive:
			if _, err := f.Touch(ctx, v); err != nil && !errors.Is(err, ErrNotActive) {
				return Function{}, err
			}
			return fn, nil
		case !found || now.After(fn.leaseUntil):
			claim := Function{Variant: v, Name: v.FunctionName(f.cfg.FunctionPrefix), Image: image, State: StateCreating,
				CreatedAt: now, LastUsed: now, owner: owner, leaseUntil: now.Add(f.cfg.CreateLease)}
			in := &dynamodb.PutItemInput{TableName: aws.String(f.cfg.Table), Item: claim.item(),
				ConditionExpression: aws.String("attribute_not_exists(" + KeyAttribute + ")")}
			verb := "claim"
			if found {
				// A claim (creating or deleting) whose holder died: take it.
				in.ConditionExpression = aws.String("#o = :old AND lease_until = :lease")
				in.ExpressionAttributeNames = map[string]string{"#o": "owner"}
				in.ExpressionAttributeValues = item{":old": s(fn.owner), ":lease": ts(fn.leaseUntil)}
				verb = "take over"
			}
			_, err := f.db.PutItem(ctx, in)
			if err == nil {
				return f.create(ctx, claim)
			}
			if !isCondFailed(err) {
				return Function{}, fmt.Errorf("imagefn: %s %s: %w", verb, v.Key(), err)
			}
			continue // someone else claimed or took it meanwhile
		}
		// Another preparation holds the claim: wait for it.
		waitingFor = fn.State
		if err := retry.Sleep(ctx, f.cfg.PollInterval); err != nil {
			return Function{}, fmt.Errorf("imagefn: wait for %s (%s by another preparation): %w", fn.Name, fn.State, err)
		}
	}
}

// create makes the claimed variant's function and records it active. On
// failure it gives up the claim, so the next Ensure tries again.
func (f *Functions) create(ctx context.Context, claim Function) (Function, error) {
	owner := claim.owner
	arn, err := f.createFunction(ctx, claim)
	if err == nil {
		claim.ARN = arn
		claim.State = StateActive
		claim.owner = ""
		_, err = f.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(f.cfg.Table), Item: claim.item(),
			ConditionExpression:       aws.String("#o = :me"),
			ExpressionAttributeNames:  map[string]string{"#o": "owner"},
			ExpressionAttributeValues: item{":me": s(owner)}})
		if err == nil {
			return claim, nil
		}
		err = fmt.Errorf("imagefn: record %s active: %w", claim.Name, err)
	}
	// Give the claim up (only if still ours).
	_, _ = f.db.DeleteItem(context.WithoutCancel(ctx), &dynamodb.DeleteItemInput{TableName: aws.String(f.cfg.Table), Key: key(claim.Variant),
		ConditionExpression:       aws.String("#o = :me"),
		ExpressionAttributeNames:  map[string]string{"#o": "owner"},
		ExpressionAttributeValues: item{":me": s(owner)}})
	return Function{}, err
}

// Delete deletes the variant's function and its record, whatever its use.
func (f *Functions) Delete(ctx context.Context, v Variant) error {
	_, err := f.retire(ctx, v, nil)
	return err
}

// SweepUnused deletes the functions no job used for unusedFor, and returns
// their names. A function a job touches while the sweep runs is kept.
func (f *Functions) SweepUnused(ctx context.Context, unusedFor time.Duration) ([]string, error) {
	cutoff := f.cfg.Now().Add(-unusedFor)
	var deleted []string
	p := dynamodb.NewScanPaginator(f.db, &dynamodb.ScanInput{
		TableName:                 aws.String(f.cfg.Table),
		FilterExpression:          aws.String("#s = :active AND last_used < :cutoff"),
		ExpressionAttributeNames:  map[string]string{"#s": "state"},
		ExpressionAttributeValues: item{":active": s(StateActive), ":cutoff": ts(cutoff)},
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return deleted, fmt.Errorf("imagefn: sweep: scan records: %w", err)
		}
		for _, it := range page.Items {
			fn, err := fromItem(it)
			if err != nil {
				continue
			}
			name, err := f.retire(ctx, fn.Variant, &cutoff)
			if errors.Is(err, ErrNotActive) {
				continue // used or retired meanwhile
			}
			if err != nil {
				return deleted, err
			}
			deleted = append(deleted, name)
		}
	}
	return deleted, nil
}

// retire marks the variant's record deleting (if unusedSince is set, only
// if it was not used since), deletes the function, then the record.
func (f *Functions) retire(ctx context.Context, v Variant, unusedSince *time.Time) (string, error) {
	owner := newOwner()
	now := f.cfg.Now()
	cond := "#s = :active"
	values := item{":active": s(StateActive), ":deleting": s(StateDeleting), ":me": s(owner), ":lease": ts(now.Add(f.cfg.CreateLease))}
	if unusedSince != nil {
		cond += " AND last_used < :cutoff"
		values[":cutoff"] = ts(*unusedSince)
	}
	out, err := f.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(f.cfg.Table), Key: key(v),
		UpdateExpression:          aws.String("SET #s = :deleting, #o = :me, lease_until = :lease"),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  map[string]string{"#s": "state", "#o": "owner"},
		ExpressionAttributeValues: values,
		ReturnValues:              ddbtypes.ReturnValueAllNew,
	})
	if isCondFailed(err) {
		return "", fmt.Errorf("imagefn: delete %s: %w", v.Key(), ErrNotActive)
	}
	if err != nil {
		return "", fmt.Errorf("imagefn: delete %s: mark record: %w", v.Key(), err)
	}
	fn, err := fromItem(out.Attributes)
	if err != nil {
		return "", fmt.Errorf("imagefn: delete %s: %w", v.Key(), err)
	}
	if err := f.deleteFunction(ctx, fn.Name); err != nil {
		return "", err
	}
	_, err = f.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(f.cfg.Table), Key: key(v),
		ConditionExpression:       aws.String("#o = :me"),
		ExpressionAttributeNames:  map[string]string{"#o": "owner"},
		ExpressionAttributeValues: item{":me": s(owner)}})
	if err != nil && !isCondFailed(err) {
		return "", fmt.Errorf("imagefn: delete record of %s: %w", fn.Name, err)
	}
	return fn.Name, nil
}

func newOwner() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
