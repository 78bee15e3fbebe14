package gitlab_test

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/urlpolicy"
)

// TestDialContextGuardsEveryConnection: a client built with a URL
// policy's DialContext checks every address it connects to, the
// instance's and a redirect's.
func TestDialContextGuardsEveryConnection(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		// Artifacts live in object storage, here on a metadata address.
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/iam", http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)

	t.Run("instance on a refused address", func(t *testing.T) {
		strict := urlpolicy.Policy{AllowHTTP: true}
		c, err := gitlab.New("http://localhost:"+u.Port(), gitlab.Options{DialContext: strict.DialContext, MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.VerifyRunner(t.Context(), gitlab.VerifyRequest{Token: runnerToken})
		if !errors.Is(err, urlpolicy.ErrRefused) || !errors.Is(err, gitlab.ErrUnavailable) ||
			!strings.Contains(err.Error(), "is a loopback address, which this installation does not contact") {
			t.Errorf("VerifyRunner error = %v, want a refused dial saying why", err)
		}
		if n := hits.Load(); n != 0 {
			t.Errorf("the instance received %d requests, want none", n)
		}
	})

	t.Run("redirect to a refused address", func(t *testing.T) {
		dev := urlpolicy.Policy{AllowHTTP: true, AllowPrivate: true}
		c, err := gitlab.New(srv.URL, gitlab.Options{DialContext: dev.DialContext, MaxAttempts: 1})
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		_, err = c.DownloadArtifacts(t.Context(), 7, "job-token-secret", &out)
		if !errors.Is(err, urlpolicy.ErrRefused) || !strings.Contains(err.Error(), "169.254.169.254 is a cloud metadata address") {
			t.Errorf("DownloadArtifacts error = %v, want the redirect refused", err)
		}
		if hits.Load() == 0 {
			t.Error("the instance was never asked; want the redirect to come from it")
		}
	})

	t.Run("not with a client of the caller's", func(t *testing.T) {
		_, err := gitlab.New(srv.URL, gitlab.Options{DialContext: urlpolicy.Storage.DialContext, HTTPClient: &http.Client{}})
		if err == nil {
			t.Error("New with both DialContext and HTTPClient: nil error, want one (the dialer would be ignored)")
		}
	})
}
