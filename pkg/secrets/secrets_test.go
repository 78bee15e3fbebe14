package secrets_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"gitlab-serverless-runner/pkg/secrets"
)

const sessionARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:session-key-AbCdEf"

// fakeSecretsManager answers GetSecretValue over the AWS JSON protocol, as
// Secrets Manager does, from a map of secret id to value.
type fakeSecretsManager struct {
	values map[string]string
	calls  atomic.Int64
}

func (f *fakeSecretsManager) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if got, want := r.Header.Get("X-Amz-Target"), "secretsmanager.GetSecretValue"; got != want {
		http.Error(w, "unexpected target "+got, http.StatusBadRequest)
		return
	}
	f.calls.Add(1)
	var in struct{ SecretId, VersionStage string }
	body, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(body, &in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	v, ok := f.values[in.SecretId]
	if !ok {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": "ResourceNotFoundException", "message": "Secrets Manager can't find the specified secret."})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"ARN": in.SecretId, "Name": "n", "SecretString": v, "VersionId": "v1"})
}

func newResolver(t *testing.T, values map[string]string) (*secrets.Resolver, *fakeSecretsManager) {
	t.Helper()
	fake := &fakeSecretsManager{values: values}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	client := secretsmanager.New(secretsmanager.Options{
		Region:       "eu-west-1",
		BaseEndpoint: aws.String(srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
	})
	return secrets.New(client), fake
}

func TestResolve(t *testing.T) {
	r, _ := newResolver(t, map[string]string{
		sessionARN: "s3cr3t-session",
		"oidc":     `{"client_secret":"from-json","other":1}`,
	})
	tests := []struct {
		name, value, want string
	}{
		{"plain value stays", "not-a-secret", "not-a-secret"},
		{"empty value stays", "", ""},
		{"ARN of another service stays", "arn:aws:s3:::bucket", "arn:aws:s3:::bucket"},
		{"secret ARN", sessionARN, "s3cr3t-session"},
		{"secret ARN with spaces", "  " + sessionARN + "\n", "s3cr3t-session"},
		{"dynamic reference by ARN", "{{resolve:secretsmanager:" + sessionARN + "}}", "s3cr3t-session"},
		{"dynamic reference with SecretString", "{{resolve:secretsmanager:" + sessionARN + ":SecretString}}", "s3cr3t-session"},
		{"dynamic reference with JSON key", "{{resolve:secretsmanager:oidc:SecretString:client_secret}}", "from-json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Resolve(context.Background(), tt.value)
			if err != nil {
				t.Fatalf("Resolve(%q): %v", tt.value, err)
			}
			if got != tt.want {
				t.Errorf("Resolve(%q) = %q, want %q", tt.value, got, tt.want)
			}
		})
	}
}

func TestResolveErrorsNameTheSecretNotItsValue(t *testing.T) {
	r, _ := newResolver(t, map[string]string{"oidc": "plain-s3cr3t"})
	tests := []struct {
		name, value, wantInError string
	}{
		{"missing secret", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:gone-XyZ", "secret:gone-XyZ"},
		{"JSON key of a non-JSON secret", "{{resolve:secretsmanager:oidc:SecretString:key}}", "not a JSON object"},
		{"other dynamic reference", "{{resolve:ssm:/param}}", "only {{resolve:secretsmanager"},
		{"wrong value type", "{{resolve:secretsmanager:oidc:SecretBinary}}", "want SecretString"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Resolve(context.Background(), tt.value)
			if err == nil {
				t.Fatalf("Resolve(%q): got no error", tt.value)
			}
			if !strings.Contains(err.Error(), tt.wantInError) {
				t.Errorf("error %q: want it to contain %q", err, tt.wantInError)
			}
			if strings.Contains(err.Error(), "plain-s3cr3t") {
				t.Errorf("error %q contains the secret value", err)
			}
		})
	}
}

func TestResolveFetchesEachSecretOnce(t *testing.T) {
	r, fake := newResolver(t, map[string]string{sessionARN: "v"})
	for range 3 {
		if _, err := r.Resolve(context.Background(), sessionARN); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := fake.calls.Load(), int64(1); got != want {
		t.Errorf("GetSecretValue calls: got %d, want %d", got, want)
	}
}

func TestLookupEnv(t *testing.T) {
	r, _ := newResolver(t, map[string]string{sessionARN: "session-value"})
	env := map[string]string{
		"SESSION_KEY": sessionARN,
		"LOCAL_KEY":   "plain-local-key",
		"OTHER":       sessionARN, // not named: passed through unresolved
	}
	lookup, err := r.LookupEnv(context.Background(), func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		"SESSION_KEY", "LOCAL_KEY", "UNSET_KEY")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, want string
		wantSet    bool
	}{
		{"SESSION_KEY", "session-value", true},
		{"LOCAL_KEY", "plain-local-key", true},
		{"OTHER", sessionARN, true},
		{"UNSET_KEY", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, set := lookup(tt.name)
			if got != tt.want || set != tt.wantSet {
				t.Errorf("lookup(%q) = %q, %v; want %q, %v", tt.name, got, set, tt.want, tt.wantSet)
			}
		})
	}
}

func TestLookupEnvFailsOnAnUnresolvableSecret(t *testing.T) {
	r, _ := newResolver(t, nil)
	env := map[string]string{"TOKEN_SEALING_KEY": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:missing-AbC"}
	_, err := r.LookupEnv(context.Background(), func(k string) (string, bool) { v, ok := env[k]; return v, ok }, "TOKEN_SEALING_KEY")
	if err == nil || !strings.Contains(err.Error(), "TOKEN_SEALING_KEY") {
		t.Errorf("got error %v, want one naming TOKEN_SEALING_KEY", err)
	}
}

func TestIsReference(t *testing.T) {
	tests := []struct {
		value string
		want  bool
	}{
		{sessionARN, true},
		{"{{resolve:secretsmanager:name}}", true},
		{"arn:aws:secretsmanager:eu-west-1:123456789012:secret", false},
		{"base64key==", false},
	}
	for _, tt := range tests {
		if got := secrets.IsReference(tt.value); got != tt.want {
			t.Errorf("IsReference(%q) = %v, want %v", tt.value, got, tt.want)
		}
	}
}
