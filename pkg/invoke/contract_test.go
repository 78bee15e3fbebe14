package invoke_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"gitlab-serverless-runner/pkg/invoke"
)

// lambdaService is a stand-in for the Lambda Invoke API over HTTP: it runs
// registered handlers for Event invocations, as Lambda would, after
// answering 202.
type lambdaService struct {
	t        *testing.T
	srv      *httptest.Server
	mu       sync.Mutex
	handlers map[string]invoke.Func
	requests []serviceRequest
	wg       sync.WaitGroup
}

type serviceRequest struct {
	Function, InvocationType, TenantID string
	Payload                            []byte
}

func newLambdaService(t *testing.T) *lambdaService {
	s := &lambdaService{t: t, handlers: map[string]invoke.Func{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2015-03-31/functions/{name}/invocations", s.serve)
	s.srv = httptest.NewServer(mux)
	t.Cleanup(func() { s.wg.Wait(); s.srv.Close() })
	return s
}

func (s *lambdaService) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	name := r.PathValue("name")
	s.mu.Lock()
	s.requests = append(s.requests, serviceRequest{Function: name, InvocationType: r.Header.Get("X-Amz-Invocation-Type"), TenantID: r.Header.Get("X-Amz-Tenant-Id"), Payload: body})
	h, ok := s.handlers[name]
	s.mu.Unlock()
	if !ok {
		w.Header().Set("X-Amzn-ErrorType", "ResourceNotFoundException")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"Type":"User","message":"Function not found: arn:aws:lambda:us-east-1:000000000000:function:%s"}`, name)
		return
	}
	if r.Header.Get("X-Amz-Invocation-Type") != "Event" {
		http.Error(w, "only Event invocations are served", http.StatusBadRequest)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_, _ = h(context.Background(), body)
	}()
	w.WriteHeader(http.StatusAccepted)
}

func (s *lambdaService) Register(name string, fn invoke.Func) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[name] = fn
}

func (s *lambdaService) Requests() []serviceRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]serviceRequest(nil), s.requests...)
}

func (s *lambdaService) client() *lambda.Client {
	return lambda.New(lambda.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(s.srv.URL),
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
	})
}

// implementation is one Invoker under the contract test, with a way to
// register a function.
type implementation struct {
	name string
	new  func(t *testing.T) (invoke.Invoker, func(name string, fn invoke.Func))
}

func implementations() []implementation {
	return []implementation{
		{"lambda", func(t *testing.T) (invoke.Invoker, func(string, invoke.Func)) {
			svc := newLambdaService(t)
			return invoke.NewLambda(svc.client(), invoke.LambdaConfig{}), svc.Register
		}},
		{"local", func(t *testing.T) (invoke.Invoker, func(string, invoke.Func)) {
			l := invoke.NewLocal(invoke.LocalConfig{})
			t.Cleanup(l.Wait)
			return l, func(name string, fn invoke.Func) { l.Register(name, fn, invoke.FunctionConfig{}) }
		}},
	}
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestInvokerContract runs the same expectations against every Invoker.
func TestInvokerContract(t *testing.T) {
	for _, impl := range implementations() {
		t.Run(impl.name, func(t *testing.T) {
			t.Run("delivers the payload without waiting for the function", func(t *testing.T) {
				inv, register := impl.new(t)
				release := make(chan struct{})
				got := make(chan string, 1)
				register("echo", func(ctx context.Context, payload []byte) ([]byte, error) {
					got <- string(payload)
					<-release
					return nil, nil
				})
				want := `{"runner_id":"r1","reason":"schedule"}`
				if err := inv.Invoke(context.Background(), "echo", []byte(want), invoke.Options{TenantID: "r1"}); err != nil {
					t.Fatalf("Invoke() error = %v", err)
				}
				// Invoke returned while the function is still blocked.
				select {
				case p := <-got:
					if p != want {
						t.Errorf("payload = %s, want %s", p, want)
					}
				case <-waitCtx(t).Done():
					t.Fatal("function never ran")
				}
				close(release)
			})
			t.Run("unknown function", func(t *testing.T) {
				inv, _ := impl.new(t)
				err := inv.Invoke(context.Background(), "missing", []byte(`{}`), invoke.Options{})
				if !errors.Is(err, invoke.ErrUnknownFunction) {
					t.Errorf("Invoke(missing) error = %v, want ErrUnknownFunction", err)
				}
			})
			t.Run("every invocation runs once", func(t *testing.T) {
				inv, register := impl.new(t)
				var mu sync.Mutex
				seen := map[string]int{}
				var wg sync.WaitGroup
				wg.Add(20)
				register("count", func(ctx context.Context, payload []byte) ([]byte, error) {
					mu.Lock()
					seen[string(payload)]++
					mu.Unlock()
					wg.Done()
					return nil, nil
				})
				for i := range 20 {
					if err := inv.Invoke(context.Background(), "count", fmt.Appendf(nil, `{"n":%d}`, i), invoke.Options{}); err != nil {
						t.Fatalf("Invoke(%d) error = %v", i, err)
					}
				}
				wg.Wait()
				mu.Lock()
				defer mu.Unlock()
				if got, want := len(seen), 20; got != want {
					t.Errorf("distinct payloads run = %d, want %d", got, want)
				}
				for p, n := range seen {
					if n != 1 {
						t.Errorf("payload %s ran %d times, want 1", p, n)
					}
				}
			})
		})
	}
}

func TestLambdaRequest(t *testing.T) {
	tests := []struct {
		name       string
		opts       invoke.Options
		wantTenant string
	}{
		{"with tenant", invoke.Options{TenantID: "runner-7"}, "runner-7"},
		{"without tenant", invoke.Options{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := newLambdaService(t)
			svc.Register("fn", func(context.Context, []byte) ([]byte, error) { return nil, nil })
			inv := invoke.NewLambda(svc.client(), invoke.LambdaConfig{})
			if err := inv.Invoke(context.Background(), "fn", []byte(`{"a":1}`), tt.opts); err != nil {
				t.Fatalf("Invoke() error = %v", err)
			}
			reqs := svc.Requests()
			if len(reqs) != 1 {
				t.Fatalf("requests = %d, want 1", len(reqs))
			}
			if got, want := reqs[0].InvocationType, "Event"; got != want {
				t.Errorf("X-Amz-Invocation-Type = %q, want %q", got, want)
			}
			if got := reqs[0].TenantID; got != tt.wantTenant {
				t.Errorf("X-Amz-Tenant-Id = %q, want %q", got, tt.wantTenant)
			}
		})
	}
}

// fakePayloads is a function-field PayloadStore.
type fakePayloads struct {
	put func(ctx context.Context, key string, body []byte) (string, error)
}

func (f fakePayloads) Put(ctx context.Context, key string, body []byte) (string, error) {
	return f.put(ctx, key, body)
}

func TestLambdaOversizedPayload(t *testing.T) {
	big := `{"dispatch":{"runner_id":"r1"},"job":{"log":"` + strings.Repeat("x", 300*1024) + `"}}`
	tests := []struct {
		name     string
		payloads invoke.PayloadStore
		payload  string
		wantErr  bool
		wantRef  bool
	}{
		{"small stays inline", nil, `{"a":1}`, false, false},
		{"large without a store is refused", nil, big, true, false},
		{"large goes by reference", fakePayloads{put: func(_ context.Context, key string, body []byte) (string, error) {
			if string(body) != big {
				return "", errors.New("stored body differs")
			}
			return "https://bucket.example/" + key + "?X-Amz-Signature=abc", nil
		}}, big, false, true},
		{"store failure is an error", fakePayloads{put: func(context.Context, string, []byte) (string, error) {
			return "", errors.New("access denied")
		}}, big, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := newLambdaService(t)
			svc.Register("fn", func(context.Context, []byte) ([]byte, error) { return nil, nil })
			inv := invoke.NewLambda(svc.client(), invoke.LambdaConfig{Payloads: tt.payloads, KeyPrefix: "payloads/"})
			err := inv.Invoke(context.Background(), "fn", []byte(tt.payload), invoke.Options{Keep: []string{"dispatch"}})
			if (err != nil) != tt.wantErr {
				t.Fatalf("Invoke() error = %v, want error %v", err, tt.wantErr)
			}
			reqs := svc.Requests()
			if tt.wantErr {
				if len(reqs) != 0 {
					t.Errorf("requests = %d, want none after an error", len(reqs))
				}
				return
			}
			if len(reqs) != 1 {
				t.Fatalf("requests = %d, want 1", len(reqs))
			}
			if !tt.wantRef {
				if got := string(reqs[0].Payload); got != tt.payload {
					t.Errorf("payload = %s, want %s", got, tt.payload)
				}
				return
			}
			var ref struct {
				PayloadURL string          `json:"payload_url"`
				Dispatch   json.RawMessage `json:"dispatch"`
				Job        json.RawMessage `json:"job"`
			}
			if err := json.Unmarshal(reqs[0].Payload, &ref); err != nil {
				t.Fatalf("reference event %s: %v", reqs[0].Payload, err)
			}
			if !strings.HasPrefix(ref.PayloadURL, "https://bucket.example/payloads/fn/") {
				t.Errorf("payload_url = %q, want a URL under payloads/fn/", ref.PayloadURL)
			}
			if got, want := string(ref.Dispatch), `{"runner_id":"r1"}`; got != want {
				t.Errorf("kept dispatch = %s, want %s", got, want)
			}
			if ref.Job != nil {
				t.Errorf("job = %.40s..., want it left out of the reference event", ref.Job)
			}
		})
	}
}
