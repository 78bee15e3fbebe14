package web_test

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/web"
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

func TestURLPolicy(t *testing.T) {
	resolver := hosts{
		"gitlab.example.com":   {"203.0.113.10"},
		"rebind.example.com":   {"203.0.113.11", "127.0.0.1"},
		"internal.example.com": {"10.1.2.3"},
		"localhost":            {"127.0.0.1", "::1"},
	}
	strict := web.URLPolicy{Resolver: resolver}
	dev := web.URLPolicy{AllowHTTP: true, AllowPrivate: true, Resolver: resolver}
	tests := []struct {
		name    string
		policy  web.URLPolicy
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
		{"loopback name", strict, "https://localhost", "", "loopback"},
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

func TestURLPolicyHTTPClientRefusesDialledAddress(t *testing.T) {
	e := newEnv(t, nil) // the fake GitLab listens on 127.0.0.1
	strict := web.URLPolicy{AllowHTTP: true}
	resp, err := strict.HTTPClient().Get(e.gl.URL() + "/api/v4/user")
	if err == nil {
		resp.Body.Close()
		t.Fatal("the guarded client reached a loopback address")
	}
	dev := web.URLPolicy{AllowHTTP: true, AllowPrivate: true}
	resp, err = dev.HTTPClient().Get(e.gl.URL() + "/api/v4/user")
	if err != nil {
		t.Fatalf("with private addresses allowed: %v", err)
	}
	resp.Body.Close()
}
