package awsclients_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"gitlab-serverless-runner/pkg/awsclients"
)

// loadConfig loads the AWS configuration from test credentials only, so no
// file or metadata service of the machine running the test is consulted.
func loadConfig(t *testing.T) aws.Config {
	t.Helper()
	none := filepath.Join(t.TempDir(), "none")
	t.Setenv("AWS_CONFIG_FILE", none)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", none)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	cfg, err := awsclients.Config(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// recorder is a local endpoint that remembers the method and path of each
// request and answers with body.
type recorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *recorder) serve(t *testing.T, contentType, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.seen = append(r.seen, req.Method+" "+req.URL.Path)
		r.mu.Unlock()
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestClientsCallTheGivenEndpoint(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		body        string
		call        func(ctx context.Context, cfg aws.Config, endpoint string) error
		want        string
	}{{
		name:        "dynamodb",
		contentType: "application/x-amz-json-1.0",
		body:        `{"TableNames":[]}`,
		call: func(ctx context.Context, cfg aws.Config, endpoint string) error {
			_, err := awsclients.DynamoDB(cfg, endpoint).ListTables(ctx, &dynamodb.ListTablesInput{})
			return err
		},
		want: "POST /",
	}, {
		name:        "lambda",
		contentType: "application/json",
		body:        `{}`,
		call: func(ctx context.Context, cfg aws.Config, endpoint string) error {
			_, err := awsclients.Lambda(cfg, endpoint).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("gsr-poller")})
			return err
		},
		want: "POST /2015-03-31/functions/gsr-poller/invocations",
	}, {
		name:        "ecr",
		contentType: "application/x-amz-json-1.1",
		body:        `{"authorizationData":[]}`,
		call: func(ctx context.Context, cfg aws.Config, endpoint string) error {
			_, err := awsclients.ECR(cfg, endpoint).GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
			return err
		},
		want: "POST /",
	}, {
		name:        "s3 path-style",
		contentType: "application/xml",
		body:        "",
		call: func(ctx context.Context, cfg aws.Config, endpoint string) error {
			_, err := awsclients.S3(cfg, endpoint).HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("cache")})
			return err
		},
		want: "HEAD /cache",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := loadConfig(t)
			var rec recorder
			url := rec.serve(t, tt.contentType, tt.body)
			if err := tt.call(context.Background(), cfg, url); err != nil {
				t.Fatalf("call the local endpoint: %v", err)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if got := rec.seen; len(got) != 1 || got[0] != tt.want {
				t.Errorf("requests = %q, want [%q]", got, tt.want)
			}
		})
	}
}

func TestClientsKeepTheServiceEndpointWithoutOverride(t *testing.T) {
	cfg := loadConfig(t)
	if got := awsclients.DynamoDB(cfg, "").Options().BaseEndpoint; got != nil {
		t.Errorf("DynamoDB endpoint = %q, want the service's", *got)
	}
	if got := awsclients.Lambda(cfg, "").Options().BaseEndpoint; got != nil {
		t.Errorf("Lambda endpoint = %q, want the service's", *got)
	}
	o := awsclients.S3(cfg, "").Options()
	if o.BaseEndpoint != nil || o.UsePathStyle {
		t.Errorf("S3 endpoint = %v, path style %v; want the service's, virtual-hosted", o.BaseEndpoint, o.UsePathStyle)
	}
}
