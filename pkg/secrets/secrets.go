// Package secrets owns resolving configuration values that name a secret
// instead of holding it. The deployment passes secrets to the functions as
// AWS Secrets Manager ARNs in environment variables, so the secret values
// never appear in a function's configuration; a function resolves them once
// at cold start with Resolve or LookupEnv. Any other value is returned as
// it is, so local development can set the secrets directly.
//
// Two forms name a secret:
//
//	arn:aws:secretsmanager:eu-west-1:123456789012:secret:name-AbCdEf
//	{{resolve:secretsmanager:secret-id[:SecretString[:json-key[:version-stage[:version-id]]]]}}
//
// The second is CloudFormation's dynamic reference syntax; secret-id is a
// name or an ARN, and json-key picks one field of a JSON secret.
package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// Client is the part of the Secrets Manager API a Resolver calls;
// *secretsmanager.Client implements it.
type Client interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

var _ Client = (*secretsmanager.Client)(nil)

// Resolver resolves secret references through a Secrets Manager client and
// remembers what it resolved. It is safe for concurrent use.
type Resolver struct {
	newClient func(context.Context) (Client, error)

	mu     sync.Mutex
	client Client
	cache  map[string]string
}

// New returns a Resolver using client.
func New(client Client) *Resolver {
	return &Resolver{client: client, cache: map[string]string{}}
}

// NewFromEnvironment returns a Resolver that creates its client from the
// default AWS configuration (the function's role on Lambda) the first time
// a value names a secret; values that name none never need AWS.
func NewFromEnvironment() *Resolver {
	return &Resolver{
		newClient: func(ctx context.Context) (Client, error) {
			cfg, err := config.LoadDefaultConfig(ctx)
			if err != nil {
				return nil, fmt.Errorf("secrets: load AWS configuration: %w", err)
			}
			return secretsmanager.NewFromConfig(cfg), nil
		},
		cache: map[string]string{},
	}
}

var defaultResolver = NewFromEnvironment()

// Resolve returns value itself unless it names a secret (see the package
// comment), in which case it returns the secret's value, fetched with the
// default AWS configuration.
func Resolve(ctx context.Context, value string) (string, error) {
	return defaultResolver.Resolve(ctx, value)
}

// IsReference reports whether value names a secret rather than holding a
// value.
func IsReference(value string) bool {
	_, ok, _ := parse(value)
	return ok
}

// Resolve returns value itself unless it names a secret, in which case it
// returns the secret's value. Errors name the secret, never its value.
func (r *Resolver) Resolve(ctx context.Context, value string) (string, error) {
	ref, ok, err := parse(value)
	if err != nil {
		return "", err
	}
	if !ok {
		return value, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.cache[value]; ok {
		return v, nil
	}
	if r.client == nil {
		if r.newClient == nil {
			return "", errors.New("secrets: resolve: no Secrets Manager client")
		}
		c, err := r.newClient(ctx)
		if err != nil {
			return "", err
		}
		r.client = c
	}
	in := &secretsmanager.GetSecretValueInput{SecretId: aws.String(ref.id)}
	if ref.versionStage != "" {
		in.VersionStage = aws.String(ref.versionStage)
	}
	if ref.versionID != "" {
		in.VersionId = aws.String(ref.versionID)
	}
	out, err := r.client.GetSecretValue(ctx, in)
	if err != nil {
		return "", fmt.Errorf("secrets: get secret %s: %w", ref.id, err)
	}
	if out.SecretString == nil {
		return "", fmt.Errorf("secrets: get secret %s: it holds binary data, not a string", ref.id)
	}
	v := *out.SecretString
	if ref.jsonKey != "" {
		var fields map[string]any
		if err := json.Unmarshal([]byte(v), &fields); err != nil {
			return "", fmt.Errorf("secrets: read key %q of secret %s: the secret is not a JSON object", ref.jsonKey, ref.id)
		}
		s, ok := fields[ref.jsonKey].(string)
		if !ok {
			return "", fmt.Errorf("secrets: read key %q of secret %s: no such string field", ref.jsonKey, ref.id)
		}
		v = s
	}
	r.cache[value] = v
	return v, nil
}

// LookupEnv resolves the environment variables names, read through lookup
// (os.LookupEnv when nil), and returns a lookup function that answers with
// the resolved values for those names and passes every other name through.
// Use it to feed a configuration loader that takes a lookup function. It
// fails on the first variable that cannot be resolved.
func (r *Resolver) LookupEnv(ctx context.Context, lookup func(string) (string, bool), names ...string) (func(string) (string, bool), error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	resolved := make(map[string]string, len(names))
	for _, name := range names {
		v, ok := lookup(name)
		if !ok {
			continue
		}
		s, err := r.Resolve(ctx, strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("secrets: resolve %s: %w", name, err)
		}
		resolved[name] = s
	}
	return func(name string) (string, bool) {
		if v, ok := resolved[name]; ok {
			return v, true
		}
		return lookup(name)
	}, nil
}

// LookupEnv is Resolver.LookupEnv with the default resolver.
func LookupEnv(ctx context.Context, lookup func(string) (string, bool), names ...string) (func(string) (string, bool), error) {
	return defaultResolver.LookupEnv(ctx, lookup, names...)
}

type reference struct {
	id, jsonKey, versionStage, versionID string
}

// parse reports whether value names a secret and how.
func parse(value string) (reference, bool, error) {
	v := strings.TrimSpace(value)
	if isSecretARN(v) {
		return reference{id: v}, true, nil
	}
	const opening, closing = "{{resolve:secretsmanager:", "}}"
	if !strings.HasPrefix(v, "{{resolve:") {
		return reference{}, false, nil
	}
	if !strings.HasPrefix(v, opening) || !strings.HasSuffix(v, closing) {
		return reference{}, false, errors.New("secrets: parse reference: only {{resolve:secretsmanager:...}} references are supported")
	}
	fields := strings.Split(strings.TrimSuffix(strings.TrimPrefix(v, opening), closing), ":")
	var ref reference
	if fields[0] == "arn" && len(fields) >= 7 {
		ref.id, fields = strings.Join(fields[:7], ":"), fields[7:]
	} else {
		ref.id, fields = fields[0], fields[1:]
	}
	if ref.id == "" {
		return reference{}, false, errors.New("secrets: parse reference: no secret id")
	}
	if len(fields) > 0 && fields[0] != "" && fields[0] != "SecretString" {
		return reference{}, false, fmt.Errorf("secrets: parse reference to %s: want SecretString after the secret id", ref.id)
	}
	if len(fields) > 1 {
		ref.jsonKey = fields[1]
	}
	if len(fields) > 2 {
		ref.versionStage = fields[2]
	}
	if len(fields) > 3 {
		ref.versionID = fields[3]
	}
	if len(fields) > 4 {
		return reference{}, false, fmt.Errorf("secrets: parse reference to %s: too many fields", ref.id)
	}
	return ref, true, nil
}

// isSecretARN reports whether v is exactly a Secrets Manager secret ARN:
// arn:<partition>:secretsmanager:<region>:<account>:secret:<name>.
func isSecretARN(v string) bool {
	f := strings.Split(v, ":")
	return len(f) == 7 && f[0] == "arn" && f[1] != "" && f[2] == "secretsmanager" && f[3] != "" && f[4] != "" && f[5] == "secret" && f[6] != ""
}
