package web_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
)

// TestRunnerCAAndOutputLimit: a runner for a GitLab whose certificate a
// private CA signed is created, edited and deleted with that CA, and the
// output limit is kept with the runner; bad input gets a clear error and
// saves nothing.
func TestRunnerCAAndOutputLimit(t *testing.T) {
	e := newEnv(t, nil)
	ada := e.signIn("sub-ada", "ada", "")
	private := gitlabtest.New(t, gitlabtest.WithTLS())
	ca := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: private.Certificate().Raw}))
	glr := private.CreateRunner(gitlabtest.RunnerOptions{})
	e.secret(glr.Token)
	form := func(change func(url.Values)) url.Values {
		f := e.tokenForm(glr.Token)
		f.Set("gitlab_url", private.URL())
		change(f)
		return f
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	privateKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	e.secret(strings.Split(privateKey, "\n")[1])

	for _, tt := range []struct {
		name, field, value, want string
		status                   int
	}{
		{"no CA for a private CA's GitLab", "ca_pem", "", "has a certificate no trusted authority signed", http.StatusUnprocessableEntity},
		{"not PEM", "ca_pem", "MIIBsomething", "This is not PEM", http.StatusUnprocessableEntity},
		{"a broken certificate", "ca_pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "Certificate 1 does not parse", http.StatusUnprocessableEntity},
		{"a private key", "ca_pem", privateKey, "This is a private key, not a certificate", http.StatusUnprocessableEntity},
		{"output limit zero", "output_limit", "0", "Enter a whole number of KiB from 1 to 102400", http.StatusUnprocessableEntity},
		{"output limit too large", "output_limit", "999999", "Enter a whole number of KiB from 1 to 102400", http.StatusUnprocessableEntity},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := ada.submit(http.MethodPost, "/runners", form(func(f url.Values) { f.Set(tt.field, tt.value) }))
			if got.status != tt.status || !strings.Contains(got.body, tt.want) {
				t.Errorf("status = %d, want %d with %q; body:\n%s", got.status, tt.status, tt.want, got.body)
			}
			if strings.Contains(got.body, "PRIVATE KEY") {
				t.Errorf("the pasted private key is shown back")
			}
			if n := len(e.storedRunners("sub-ada")); n != 0 {
				t.Errorf("stored runners = %d, want none", n)
			}
		})
	}

	id := created(t, ada.submit(http.MethodPost, "/runners", form(func(f url.Values) {
		f.Set("ca_pem", strings.ReplaceAll(ca, "\n", "\r\n")) // as a browser sends a textarea
		f.Set("output_limit", "8192")
	})))
	r, err := e.store.GetRunner(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if r.CAPEM != strings.TrimSpace(ca) || r.OutputLimitKiB != 8192 {
		t.Errorf("stored CA %q, output limit %d; want the CA and 8192", r.CAPEM, r.OutputLimitKiB)
	}
	if snap, _ := private.Runner(glr.ID); len(snap.Managers) != 1 {
		t.Errorf("GitLab managers = %d, want the runner verified over TLS with the CA", len(snap.Managers))
	}
	page := ada.get("/runners/" + id)
	for _, want := range []string{"Output limit", "8192 KiB", "Custom CA", "set"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("runner page lacks %q", want)
		}
	}
	edit := ada.get("/runners/" + id + "/edit")
	if !strings.Contains(edit.body, `value="8192"`) || !strings.Contains(edit.body, "-----BEGIN CERTIFICATE-----") {
		t.Errorf("edit form does not show the output limit and the CA")
	}

	upd := url.Values{"runtime": {"provided.al2023"}, "concurrency": {"1"}, "output_limit": {"-5"}, "ca_pem": {ca}, "version": {itoa(r.Version)}}
	if got := ada.submit(http.MethodPut, "/runners/"+id, cloneForm(upd)); got.status != http.StatusUnprocessableEntity || !strings.Contains(got.body, "from 1 to 102400") {
		t.Errorf("bad output limit on edit: status = %d", got.status)
	}
	upd.Set("output_limit", "")
	if got := ada.submit(http.MethodPut, "/runners/"+id, cloneForm(upd)); got.status != http.StatusSeeOther {
		t.Fatalf("edit: status = %d; body:\n%s", got.status, got.body)
	}
	if r, _ = e.store.GetRunner(context.Background(), id); r.OutputLimitKiB != 0 || r.CAPEM == "" {
		t.Errorf("after edit: output limit %d, CA set %v; want the default and the CA kept", r.OutputLimitKiB, r.CAPEM != "")
	}
	if got := ada.submit(http.MethodDelete, "/runners/"+id, nil); got.status != http.StatusSeeOther {
		t.Fatalf("delete: status = %d, want 303 (GitLab reached with the CA); body:\n%s", got.status, got.body)
	}
	if snap, _ := private.Runner(glr.ID); len(snap.Managers) != 0 {
		t.Errorf("GitLab still has the runner's manager")
	}
}
