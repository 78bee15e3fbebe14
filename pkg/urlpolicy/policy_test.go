package urlpolicy_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/urlpolicy"
)

// hosts is a resolver answering from a table, so host names need no DNS.
type hosts map[string][]string

func (h hosts) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	addrs, ok := h[host]
	if !ok {
		return nil, errors.New("no such host")
	}
	var out []netip.Addr
	for _, a := range addrs {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

func TestCheck(t *testing.T) {
	resolver := hosts{
		"gitlab.example.com":   {"203.0.113.10"},
		"rebind.example.com":   {"203.0.113.11", "127.0.0.1"},
		"internal.example.com": {"10.1.2.3"},
		"localhost":            {"127.0.0.1", "::1"},
	}
	strict := urlpolicy.Policy{Resolver: resolver}
	dev := urlpolicy.Policy{AllowHTTP: true, AllowPrivate: true, Resolver: resolver}
	tests := []struct {
		name    string
		policy  urlpolicy.Policy
		in      string
		want    string // normalised URL, or "" for an error containing wantErr
		wantErr string
	}{
		{"https", strict, "https://gitlab.example.com/", "https://gitlab.example.com", ""},
		{"relative path kept", strict, "https://gitlab.example.com/gitlab/", "https://gitlab.example.com/gitlab", ""},
		{"http refused", strict, "http://gitlab.example.com", "", "Use https://"},
		{"http allowed", dev, "http://gitlab.example.com", "http://gitlab.example.com", ""},
		{"other scheme", dev, "file:///etc/passwd", "", "not a URL"},
		{"credentials", strict, "https://u:p@gitlab.example.com", "", "user name or password"},
		{"query", strict, "https://gitlab.example.com/?x=1", "", "query"},
		{"unresolvable", strict, "https://nowhere.example.com", "", "cannot be resolved"},
		{"loopback", strict, "https://127.0.0.1", "", "loopback"},
		{"loopback name", strict, "https://localhost", "", "localhost is a loopback address; this app does not contact such addresses."},
		{"ipv6 loopback", strict, "https://[::1]", "", "loopback"},
		{"one address of several", strict, "https://rebind.example.com", "", "loopback"},
		{"private", strict, "https://internal.example.com", "", "private"},
		{"private allowed", dev, "https://internal.example.com", "https://internal.example.com", ""},
		{"loopback allowed", dev, "http://127.0.0.1:8080", "http://127.0.0.1:8080", ""},
		{"metadata", dev, "http://169.254.169.254", "", "metadata"},
		{"metadata v6", dev, "http://[fd00:ec2::254]", "", "metadata"},
		{"link-local", dev, "http://169.254.10.1", "", "link-local"},
		{"unspecified", dev, "http://0.0.0.0", "", "unspecified"},
		{"mapped metadata", dev, "http://[::ffff:169.254.169.254]", "", "metadata"},
		{"storage: private allowed", urlpolicy.Storage, "http://10.0.0.5:9000", "http://10.0.0.5:9000", ""},
		{"storage: metadata refused", urlpolicy.Storage, "http://169.254.169.254", "", "metadata"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.policy.Check(context.Background(), tt.in)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Errorf("Check(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check(%q) = %q, want an error", tt.in, got)
			}
			if runner.ErrorCode(err) != runner.EINVALID || !strings.Contains(runner.ErrorMessage(err), tt.wantErr) {
				t.Errorf("Check(%q) error = %v, want EINVALID containing %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestConfigFromEnv(t *testing.T) {
	tests := []struct {
		env     map[string]string
		want    urlpolicy.Policy
		wantErr string
	}{
		{nil, urlpolicy.Policy{}, ""},
		{map[string]string{"ALLOW_HTTP_GITLAB": "true"}, urlpolicy.Policy{AllowHTTP: true}, ""},
		{map[string]string{"ALLOW_HTTP_GITLAB": "false", "ALLOW_PRIVATE_GITLAB": " 1 "}, urlpolicy.Policy{AllowPrivate: true}, ""},
		{map[string]string{"ALLOW_PRIVATE_GITLAB": "yes"}, urlpolicy.Policy{}, `ALLOW_PRIVATE_GITLAB="yes": want true or false`},
	}
	for _, tt := range tests {
		got, err := urlpolicy.ConfigFromEnv(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ConfigFromEnv(%v) error = %v, want %q", tt.env, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ConfigFromEnv(%v) = %+v, %v; want %+v", tt.env, got, err, tt.want)
		}
	}
}

// server counts the requests it receives.
func server(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if h != nil {
			h(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// wantRefused checks that err is a refused dial saying why in plain words.
func wantRefused(t *testing.T, err error, why string) {
	t.Helper()
	var refused *urlpolicy.RefusedError
	if !errors.Is(err, urlpolicy.ErrRefused) || !errors.As(err, &refused) || !strings.Contains(err.Error(), why) {
		t.Errorf("error = %v, want a refused dial saying %q", err, why)
	}
}

// TestDialledAddressIsChecked: every client the policy builds checks the
// address it connects to, whatever Check was told: a name that passed
// Check (the resolver said a public address) but resolves to loopback at
// dial time (DNS rebinding) is refused before anything is sent.
func TestDialledAddressIsChecked(t *testing.T) {
	srv, hits := server(t, nil)
	u, _ := url.Parse(srv.URL)
	rebound := "http://localhost:" + u.Port() + "/api/v4/user"
	strict := urlpolicy.Policy{AllowHTTP: true, Resolver: hosts{"localhost": {"203.0.113.7"}}}
	if _, err := strict.Check(context.Background(), "http://localhost:"+u.Port()); err != nil {
		t.Fatalf("Check with a public answer: %v", err)
	}
	clients := map[string]*http.Client{
		"HTTPClient": strict.HTTPClient(),
		"Transport":  {Transport: strict.Transport()},
		"Dialer":     {Transport: &http.Transport{DialContext: strict.Dialer(0).DialContext}},
	}
	for name, c := range clients {
		t.Run(name, func(t *testing.T) {
			resp, err := c.Get(rebound)
			if err == nil {
				resp.Body.Close()
				t.Fatal("the guarded client reached a loopback address")
			}
			wantRefused(t, err, "127.0.0.1 is a loopback address, which this installation does not contact")
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the server received %d requests, want none", n)
	}

	dev := urlpolicy.Policy{AllowHTTP: true, AllowPrivate: true}
	resp, err := (&http.Client{Transport: dev.Transport()}).Get(rebound)
	if err != nil {
		t.Fatalf("with private addresses allowed: %v", err)
	}
	resp.Body.Close()
}

// TestRedirectToRefusedAddress: an allowed server that redirects to a
// refused address does not take the client there.
func TestRedirectToRefusedAddress(t *testing.T) {
	srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	})
	for _, p := range []urlpolicy.Policy{{AllowHTTP: true, AllowPrivate: true}, urlpolicy.Storage} {
		resp, err := (&http.Client{Transport: p.Transport()}).Get(srv.URL + "/artifact")
		if err == nil {
			resp.Body.Close()
			t.Fatalf("%+v: the redirect to the metadata address was followed (status %d)", p, resp.StatusCode)
		}
		wantRefused(t, err, "169.254.169.254 is a cloud metadata address")
	}
}
