package imagefn_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"gitlab-serverless-runner/pkg/awsclients"
	"gitlab-serverless-runner/pkg/imagefn"
	"gitlab-serverless-runner/pkg/jobimage"
	"gitlab-serverless-runner/pkg/mototest"
	"gitlab-serverless-runner/pkg/store/dynamotest"
)

func TestMain(m *testing.M) {
	code := dynamotest.Main(m)
	mototest.StopShared()
	os.Exit(code)
}

const (
	roleARN     = "arn:aws:iam::" + mototest.AccountID + ":role/gsr-executor"
	finisherARN = "arn:aws:lambda:" + mototest.Region + ":" + mototest.AccountID + ":function:gsr-finisher"
)

// wire records the Lambda API requests that went over HTTP to moto_server.
type wire struct {
	mu   sync.Mutex
	reqs []wireRequest
}

type wireRequest struct {
	Method, Path string
	Body         []byte
}

func (w *wire) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body.Close()
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	w.mu.Lock()
	w.reqs = append(w.reqs, wireRequest{r.Method, r.URL.Path, body})
	w.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

// find returns the recorded requests whose method and path prefix match.
func (w *wire) find(method, pathPrefix string) []wireRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []wireRequest
	for _, r := range w.reqs {
		if r.Method == method && strings.HasPrefix(r.Path, pathPrefix) {
			out = append(out, r)
		}
	}
	return out
}

// clock is a settable time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// env is one test's Lambda (moto_server), records table (DynamoDB Local)
// and the wire log of the Lambda calls.
type env struct {
	lambda *lambda.Client
	wire   *wire
	clock  *clock
	cfg    imagefn.Config
	moto   *mototest.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	moto := mototest.Start(t)
	db := dynamotest.Start(t)
	w := &wire{}
	awsCfg := moto.Config()
	awsCfg.HTTPClient = &http.Client{Transport: w}
	e := &env{
		lambda: awsclients.Lambda(awsCfg, moto.Endpoint), wire: w, moto: moto,
		clock: &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)},
	}
	moto.CreateRole(t, "gsr-executor")
	prefix := dynamotest.Prefix(t)
	e.cfg = imagefn.Config{
		FunctionPrefix: strings.ToLower(strings.ReplaceAll(prefix, "_", "-"))[:20],
		RoleARN:        roleARN, FinisherARN: finisherARN,
		Timeout:      15 * time.Minute,
		Environment:  map[string]string{"GSR_MODE": "image"},
		Table:        prefix + "image-functions",
		PollInterval: 20 * time.Millisecond,
		Now:          e.clock.Now,
	}
	if err := imagefn.CreateTable(context.Background(), db.Client(), e.cfg.Table); err != nil {
		t.Fatal(err)
	}
	return e
}

// functions returns a Functions on the test's clients (each call a new
// one, as another preparation function would have).
func (e *env) functions(t *testing.T) *imagefn.Functions {
	t.Helper()
	f, err := imagefn.New(e.lambda, dynamotest.Start(t).Client(), e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func variant(base byte, arch jobimage.Arch) imagefn.Variant {
	return imagefn.Variant{
		Base: "sha256:" + strings.Repeat(string([]byte{base}), 64), Arch: arch,
		MemoryMB: 2048, StorageMB: 4096, Executor: "sha256:" + strings.Repeat("e", 64),
	}
}

const imageURI = mototest.AccountID + ".dkr.ecr." + mototest.Region + ".amazonaws.com/gsr-executors@sha256:" +
	"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

var _ = aws.String
