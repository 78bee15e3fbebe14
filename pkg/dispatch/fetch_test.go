package dispatch_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/dispatch"
)

// TestOpenByReference: an event over Lambda's limit arrives as a
// payload_url, which Open follows once.
func TestOpenByReference(t *testing.T) {
	full := `{"gitlab_url":"https://gitlab.example.com","job":{"id":7,"token":"glcbt-x","git_info":{"repo_url":"https://gitlab.example.com/g/p.git"}},"dispatch":{"runner_id":"r","job_id":7}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/full":
			_, _ = w.Write([]byte(full))
		case "/nested":
			_, _ = w.Write([]byte(`{"payload_url":"https://bucket.example.com/again"}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ref := func(path string) []byte {
		return []byte(`{"payload_url":"` + srv.URL + path + `?X-Amz-Signature=secret-sig","dispatch":{"runner_id":"r","job_id":7}}`)
	}
	ctx := context.Background()

	ev, raw, err := dispatch.Open(ctx, srv.Client(), ref("/full"))
	if err != nil || ev.Job == nil || ev.Job.ID != 7 || string(raw) != full || ev.Validate() != nil {
		t.Fatalf("Open(reference) = job %+v, %q, %v; want job 7 and the fetched bytes", ev.Job, raw, err)
	}
	for _, tt := range []struct {
		path    string
		invalid bool
		want    string
	}{
		{"/nested", true, "has a payload_url itself"},
		{"/gone", false, "status 404"},
	} {
		_, _, err := dispatch.Open(ctx, srv.Client(), ref(tt.path))
		if err == nil || !strings.Contains(err.Error(), tt.want) || errors.Is(err, dispatch.ErrInvalidEvent) != tt.invalid {
			t.Errorf("Open(%s) error = %v; want one saying %q (invalid event: %v)", tt.path, err, tt.want, tt.invalid)
		}
		if err != nil && strings.Contains(err.Error(), "secret-sig") {
			t.Errorf("Open(%s) error quotes the URL's signature: %v", tt.path, err)
		}
	}
}

func TestDecodePoll(t *testing.T) {
	p, err := dispatch.DecodePoll(dispatch.Poll{RunnerID: "r1", Reason: dispatch.PollWebhook}.Marshal())
	if err != nil || p.RunnerID != "r1" || p.Reason != dispatch.PollWebhook {
		t.Errorf("round trip = %+v, %v", p, err)
	}
	if _, err := dispatch.DecodePoll([]byte(`{"reason":"schedule"}`)); err == nil || !strings.Contains(err.Error(), "runner_id is missing") {
		t.Errorf("DecodePoll without runner_id: error = %v", err)
	}
}
