package checkout

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

// remote is the job's repository URL split into a URL without credentials,
// which is the only form ever written to disk or into messages, and the
// credentials that go with it.
type remote struct {
	url      *url.URL
	username string
	password string
}

// parseRemote splits a git_info.repo_url. Its error never quotes the URL,
// which carries the job token.
func parseRemote(raw string) (remote, error) {
	if raw == "" {
		return remote{}, errors.New("parse repository URL: the URL is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return remote{}, errors.New("parse repository URL: not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return remote{}, fmt.Errorf("parse repository URL: scheme %q is not supported, only http and https", u.Scheme)
	}
	if u.Host == "" {
		return remote{}, errors.New("parse repository URL: no host")
	}
	r := remote{}
	if u.User != nil {
		r.username = u.User.Username()
		r.password, _ = u.User.Password()
	}
	clean := *u
	clean.User = nil
	r.url = &clean
	return r, nil
}

// String returns the URL without credentials.
func (r remote) String() string { return r.url.String() }

// auth returns the credentials to send to rawURL: the job's own credentials
// when rawURL is on the repository's scheme and host (port included), and
// nothing otherwise, so the job token never reaches another server.
func (r remote) auth(rawURL string) transport.AuthMethod {
	if r.username == "" && r.password == "" {
		return nil
	}
	u, err := url.Parse(rawURL)
	if err != nil || !strings.EqualFold(u.Scheme, r.url.Scheme) || !strings.EqualFold(u.Host, r.url.Host) {
		return nil
	}
	return &githttp.BasicAuth{Username: r.username, Password: r.password}
}

// resolveSubmoduleURL turns a submodule URL from .gitmodules into an absolute URL the
// way git does: "./x" and "../x" are relative to base, the URL of the
// repository holding the .gitmodules. The result never carries credentials
// taken from base.
func resolveSubmoduleURL(base *url.URL, sub string) (string, error) {
	if strings.HasPrefix(sub, "./") || strings.HasPrefix(sub, "../") {
		u := *base
		u.User = nil
		u.Path = path.Join(strings.TrimSuffix(base.Path, "/"), sub)
		u.RawPath = ""
		return u.String(), nil
	}
	u, err := url.Parse(sub)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("URL %q is not supported: use a relative URL or an http(s) URL", redactURL(sub))
	}
	return sub, nil
}

// redactURL removes the password from a URL for display. Of what does not
// parse as a URL (such as scp-like "git@host:path"), only forms with no
// "user:password@" part are shown.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if at := strings.LastIndex(raw, "@"); at >= 0 && strings.Contains(raw[:at], ":") {
			return "[invalid URL]"
		}
		return raw
	}
	return u.Redacted()
}

// scrub removes secret from an error's text. When the text holds it, the
// chain is dropped too so that no wrapped error can print it later.
func scrub(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	dirty := false
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			msg = strings.ReplaceAll(msg, s, "[MASKED]")
			dirty = true
		}
	}
	if !dirty {
		return err
	}
	return errors.New(msg)
}
