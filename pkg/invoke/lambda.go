package invoke

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"gitlab-serverless-runner/pkg/logging"
	"log/slog"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// DefaultMaxPayload is the largest payload sent inline by Lambda. Lambda
// now takes asynchronous payloads of up to 1 MB, but an executor's
// destination record, the finisher's own asynchronous payload, carries the
// whole event beside the result, so events stay at 256 KiB. Larger
// payloads go through the PayloadStore.
const DefaultMaxPayload = 256 * 1024

// LambdaAPI is the part of the Lambda client the Lambda invoker uses;
// *lambda.Client implements it.
type LambdaAPI interface {
	Invoke(ctx context.Context, in *lambda.InvokeInput, optFns ...func(*lambda.Options)) (*lambda.InvokeOutput, error)
}

var _ LambdaAPI = (*lambda.Client)(nil)

// PayloadStore keeps payloads too large to send inline and hands out a URL
// the invoked function can GET them from without credentials.
type PayloadStore interface {
	// Put stores body under key and returns a URL that reads it.
	Put(ctx context.Context, key string, body []byte) (url string, err error)
}

// LambdaConfig configures a Lambda invoker. The zero value is usable.
type LambdaConfig struct {
	// MaxPayload is the largest payload sent inline (DefaultMaxPayload).
	MaxPayload int
	// Payloads stores larger payloads; nil refuses them.
	Payloads PayloadStore
	// KeyPrefix prefixes the keys of stored payloads, e.g. "payloads/".
	KeyPrefix string
	// Logger receives one debug line per invocation; nil discards.
	Logger *slog.Logger
}

// Lambda invokes AWS Lambda functions asynchronously (InvocationType
// Event). It is safe for concurrent use.
type Lambda struct {
	client LambdaAPI
	cfg    LambdaConfig
	log    *slog.Logger
}

var _ Invoker = (*Lambda)(nil)

// NewLambda returns an invoker calling client.
func NewLambda(client LambdaAPI, cfg LambdaConfig) *Lambda {
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = DefaultMaxPayload
	}
	log := logging.OrDiscard(cfg.Logger)
	return &Lambda{client: client, cfg: cfg, log: log}
}

// Invoke queues one invocation of function. A payload above MaxPayload is
// stored with the PayloadStore and the function receives
// {"payload_url": ..., <opts.Keep fields>} instead.
func (l *Lambda) Invoke(ctx context.Context, function string, payload []byte, opts Options) error {
	if len(payload) > l.cfg.MaxPayload {
		ref, err := l.byReference(ctx, function, payload, opts.Keep)
		if err != nil {
			return err
		}
		payload = ref
	}
	in := &lambda.InvokeInput{
		FunctionName:   aws.String(function),
		InvocationType: lambdatypes.InvocationTypeEvent,
		Payload:        payload,
	}
	if opts.TenantID != "" {
		in.TenantId = aws.String(opts.TenantID)
	}
	out, err := l.client.Invoke(ctx, in)
	if err != nil {
		var nf *lambdatypes.ResourceNotFoundException
		if errors.As(err, &nf) {
			return fmt.Errorf("invoke: invoke %s: %w: %w", function, ErrUnknownFunction, err)
		}
		return fmt.Errorf("invoke: invoke %s: %w", function, err)
	}
	l.log.DebugContext(ctx, "invoked", "function", function, "status", out.StatusCode, "bytes", len(payload), "tenant_id", opts.TenantID)
	return nil
}

// byReference stores payload and returns the small event pointing at it.
func (l *Lambda) byReference(ctx context.Context, function string, payload []byte, keep []string) ([]byte, error) {
	if l.cfg.Payloads == nil {
		return nil, fmt.Errorf("invoke: invoke %s: payload of %d bytes is above %d and no payload store is configured", function, len(payload), l.cfg.MaxPayload)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil {
		return nil, fmt.Errorf("invoke: invoke %s: payload is not a JSON object: %w", function, err)
	}
	ref := map[string]json.RawMessage{}
	for _, k := range keep {
		if v, ok := fields[k]; ok {
			ref[k] = v
		}
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	key := l.cfg.KeyPrefix + function + "/" + hex.EncodeToString(b) + ".json"
	url, err := l.cfg.Payloads.Put(ctx, key, payload)
	if err != nil {
		return nil, fmt.Errorf("invoke: invoke %s: store payload: %w", function, err)
	}
	ref["payload_url"], _ = json.Marshal(url)
	out, err := json.Marshal(ref)
	if err != nil {
		return nil, fmt.Errorf("invoke: invoke %s: encode reference: %w", function, err)
	}
	if len(out) > l.cfg.MaxPayload {
		return nil, fmt.Errorf("invoke: invoke %s: kept fields alone are %d bytes, above %d", function, len(out), l.cfg.MaxPayload)
	}
	return out, nil
}
