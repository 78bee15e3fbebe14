package invoke_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"gitlab-serverless-runner/pkg/invoke"
)

// objectServer is a minimal S3 over HTTP: path-style PUT and GET of
// objects, signatures not checked.
func objectServer(t *testing.T) *httptest.Server {
	var mu sync.Mutex
	objects := map[string][]byte{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.Method {
		case http.MethodPut:
			b, _ := io.ReadAll(r.Body)
			objects[r.URL.Path] = b
		case http.MethodGet:
			b, ok := objects[r.URL.Path]
			if !ok {
				http.NotFound(w, r)
				return
			}
			_, _ = w.Write(b)
		default:
			http.Error(w, "unsupported", http.StatusMethodNotAllowed)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestS3PayloadsPutAndRead(t *testing.T) {
	srv := objectServer(t)
	client := s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(srv.URL),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
	})
	store := invoke.NewS3Payloads(client, "payload-bucket", time.Hour)
	body := `{"job":{"id":1}}`
	got, err := store.Put(context.Background(), "payloads/executor/abc.json", []byte(body))
	if err != nil {
		t.Fatalf("Put() error = %v", err)
	}
	u, err := url.Parse(got)
	if err != nil {
		t.Fatalf("Put() URL %q: %v", got, err)
	}
	if want := "/payload-bucket/payloads/executor/abc.json"; u.Path != want {
		t.Errorf("URL path = %q, want %q", u.Path, want)
	}
	if u.Query().Get("X-Amz-Signature") == "" || u.Query().Get("X-Amz-Expires") != "3600" {
		t.Errorf("URL query = %q, want a signature valid for 3600 s", u.RawQuery)
	}
	res, err := http.Get(got)
	if err != nil {
		t.Fatalf("GET payload URL: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != body {
		t.Errorf("GET payload URL = %d %s, want 200 %s", res.StatusCode, b, body)
	}
}
