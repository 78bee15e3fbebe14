package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/urlpolicy"
)

// TestConfigFollowsTheURLPolicy: the finisher's GitLab clients dial only
// what ALLOW_HTTP_GITLAB and ALLOW_PRIVATE_GITLAB allow, and its fetches of
// events by reference never reach a metadata address.
func TestConfigFollowsTheURLPolicy(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	tests := []struct {
		name    string
		env     map[string]string
		refused bool
	}{
		{"defaults", nil, true},
		{"http only", map[string]string{"ALLOW_HTTP_GITLAB": "true"}, true},
		{"http and private", map[string]string{"ALLOW_HTTP_GITLAB": "true", "ALLOW_PRIVATE_GITLAB": "true"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := configFromEnv(func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			opts := cfg.GitLab
			opts.MaxAttempts = 1
			c, err := gitlab.New(srv.URL, opts)
			if err != nil {
				t.Fatal(err)
			}
			before := hits.Load()
			_, err = c.VerifyRunner(t.Context(), gitlab.VerifyRequest{Token: "glrt-test"})
			if got := errors.Is(err, urlpolicy.ErrRefused); got != tt.refused {
				t.Errorf("VerifyRunner error = %v; refused %v, want %v", err, got, tt.refused)
			}
			if reached := hits.Load() > before; reached == tt.refused {
				t.Errorf("GitLab reached = %v, want %v", reached, !tt.refused)
			}
			resp, err := cfg.HTTPClient.Get("http://169.254.169.254/latest/meta-data/")
			if err == nil {
				resp.Body.Close()
			}
			if !errors.Is(err, urlpolicy.ErrRefused) {
				t.Errorf("payload fetch from a metadata address: error %v, want it refused", err)
			}
		})
	}
	if _, err := configFromEnv(func(k string) string { return map[string]string{"ALLOW_PRIVATE_GITLAB": "maybe"}[k] }); err == nil {
		t.Error("ALLOW_PRIVATE_GITLAB=maybe: nil error, want one")
	}
}
