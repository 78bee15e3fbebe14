package devoidc_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/auth"
	"gitlab-serverless-runner/pkg/auth/devoidc"
	"gitlab-serverless-runner/pkg/seal"
)

// signInAll signs a fresh browser in n times against a local app using p
// and returns the usernames /me reported.
func signInAll(t *testing.T, p *devoidc.Provider, n int) []string {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	ring, err := seal.ParseKeys(seal.GenerateKey())
	if err != nil {
		t.Fatal(err)
	}
	sessions, err := auth.NewSessions(auth.SessionConfig{Keys: ring, InsecureCookies: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := p.LoginConfig(srv.URL + "/auth/callback")
	cfg.Scopes = append(auth.DefaultScopes(), auth.ScopeCreateRunner)
	login, err := auth.NewLogin(cfg, sessions)
	if err != nil {
		t.Fatal(err)
	}
	mux.HandleFunc("/login", login.Begin)
	mux.Handle("/auth/callback", login.CallbackHandler(nil))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		sess, err := sessions.Get(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(sess.Identity)
	})
	var names []string
	for range n {
		jar, err := cookiejar.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
		resp, err := c.Get(srv.URL + "/login")
		if err != nil {
			t.Fatalf("sign in: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("sign in: got %d %q, want 200", resp.StatusCode, body)
		}
		var id auth.Identity
		if err := json.Unmarshal(body, &id); err != nil {
			t.Fatalf("decode identity %q: %v", body, err)
		}
		names = append(names, id.Username+"/"+id.Subject+"/"+id.Name+"/"+id.Email+"/"+id.AvatarURL)
	}
	return names
}

func TestChoosingTheUser(t *testing.T) {
	ada := devoidc.User{Subject: "7", Username: "ada", Name: "Ada", Email: "ada@example.com", AvatarURL: "https://example.com/a.png"}
	bob := devoidc.User{Subject: "8", Username: "bob", Name: "Bob", Email: "bob@example.com"}
	dev := devoidc.DefaultUser()
	line := func(u devoidc.User) string {
		return u.Username + "/" + u.Subject + "/" + u.Name + "/" + u.Email + "/" + u.AvatarURL
	}
	tests := []struct {
		name  string
		opts  devoidc.Options
		setup func(p *devoidc.Provider)
		want  []string
	}{
		{name: "default user", want: []string{line(dev), line(dev)}},
		{name: "configured user", opts: devoidc.Options{User: ada}, want: []string{line(ada), line(ada)}},
		{name: "sign in as another user", setup: func(p *devoidc.Provider) { p.SignInAs(bob) }, want: []string{line(bob), line(bob)}},
		{name: "queued user signs in once", opts: devoidc.Options{User: ada}, setup: func(p *devoidc.Provider) { p.QueueUser(bob) },
			want: []string{line(bob), line(ada), line(ada)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := devoidc.Start(tt.opts)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			defer p.Close()
			if tt.setup != nil {
				tt.setup(p)
			}
			got := signInAll(t, p, len(tt.want))
			for i := range tt.want {
				if got[i] != tt.want[i] {
					t.Errorf("sign-in %d: got %q, want %q", i+1, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestStartOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    devoidc.Options
		wantErr bool
	}{
		{name: "defaults", opts: devoidc.Options{}},
		{name: "fixed client", opts: devoidc.Options{ClientID: "local-app", ClientSecret: "local-secret"}},
		{name: "all interfaces refused", opts: devoidc.Options{Addr: "0.0.0.0:0"}, wantErr: true},
		{name: "non-loopback refused", opts: devoidc.Options{Addr: "192.0.2.1:0"}, wantErr: true},
		{name: "no port", opts: devoidc.Options{Addr: "127.0.0.1"}, wantErr: true},
		{name: "user without subject", opts: devoidc.Options{User: devoidc.User{Username: "x"}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := devoidc.Start(tt.opts)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Start: got error %v, want error %t", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			defer p.Close()
			if tt.opts.ClientID != "" && (p.ClientID() != tt.opts.ClientID || p.ClientSecret() != tt.opts.ClientSecret) {
				t.Errorf("client: got %q/%q, want %q/%q", p.ClientID(), p.ClientSecret(), tt.opts.ClientID, tt.opts.ClientSecret)
			}
			resp, err := http.Get(p.Issuer() + "/.well-known/openid-configuration")
			if err != nil {
				t.Fatalf("discovery: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("discovery: got %d, want 200", resp.StatusCode)
			}
		})
	}
}

// TestRevocationEndpoint checks that discovery names the revocation
// endpoint and that it revokes only for the client, recording every
// request.
func TestRevocationEndpoint(t *testing.T) {
	p, err := devoidc.Start(devoidc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	resp, err := http.Get(p.Issuer() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		RevocationEndpoint string `json:"revocation_endpoint"`
	}
	err = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if err != nil || doc.RevocationEndpoint != p.RevocationEndpoint() || !strings.HasSuffix(doc.RevocationEndpoint, devoidc.RevocationPath) {
		t.Fatalf("discovery names revocation endpoint %q (%v), want %q", doc.RevocationEndpoint, err, p.RevocationEndpoint())
	}
	revoke := func(secret, token string) int {
		resp, err := http.PostForm(p.RevocationEndpoint(), url.Values{"client_id": {p.ClientID()}, "client_secret": {secret}, "token": {token}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		secret, token string
		want          int
	}{
		{"wrong", "t1", http.StatusUnauthorized},
		{p.ClientSecret(), "", http.StatusBadRequest},
		{p.ClientSecret(), "t1", http.StatusOK},
		{p.ClientSecret(), "never-issued", http.StatusOK},
	} {
		if got := revoke(c.secret, c.token); got != c.want {
			t.Errorf("revoke %q with secret %q: %d, want %d", c.token, c.secret, got, c.want)
		}
	}
	if got := p.Revocations(); len(got) != 4 || got[0].Status != http.StatusUnauthorized || got[2].Token != "t1" || got[2].Status != http.StatusOK {
		t.Errorf("Revocations() = %+v, want the four requests with their answers", got)
	}
}
