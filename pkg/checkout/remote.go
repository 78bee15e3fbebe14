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

// resolveSubmoduleURL turns a submodule URL from .gitmodules into an
// absolute URL the way git does: "./x" and "../x" are relative to base, the
// URL of the repository holding the .gitmodules. An SSH URL to the GitLab
// server is rewritten to HTTPS when GIT_SUBMODULE_FORCE_HTTPS is set, as
// gitlab-runner's insteadOf rules do. The result never carries credentials
// taken from base.
func (g *getter) resolveSubmoduleURL(base *url.URL, sub string) (string, error) {
	if strings.HasPrefix(sub, "./") || strings.HasPrefix(sub, "../") {
		u := *base
		u.User = nil
		u.Path = path.Join(strings.TrimSuffix(base.Path, "/"), sub)
		u.RawPath = ""
		return u.String(), nil
	}
	if g.o.SubmoduleForceHTTPS {
		if rewritten, ok := g.forceHTTPS(sub); ok {
			return rewritten, nil
		}
	}
	u, err := url.Parse(sub)
	if err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" {
		return sub, nil
	}
	if isSSHURL(sub) {
		if g.o.SubmoduleForceHTTPS {
			return "", fmt.Errorf("URL %q uses SSH to a host other than the GitLab server's (%s): GIT_SUBMODULE_FORCE_HTTPS rewrites only URLs to %s; use a relative URL or an http(s) URL", redactURL(sub), g.sshHost(), g.sshHost())
		}
		return "", fmt.Errorf("URL %q uses SSH, which this runner cannot use: set GIT_SUBMODULE_FORCE_HTTPS=true to fetch it over HTTPS with the job token, or use a relative URL or an http(s) URL", redactURL(sub))
	}
	return "", fmt.Errorf("URL %q is not supported: use a relative URL or an http(s) URL", redactURL(sub))
}

// isSSHURL reports whether a git URL uses SSH: ssh://, git+ssh://,
// ssh+git:// or the scp-like user@host:path.
func isSSHURL(s string) bool {
	for _, p := range []string{"ssh://", "git+ssh://", "ssh+git://"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	if strings.Contains(s, "://") {
		return false
	}
	at, colon := strings.Index(s, "@"), strings.Index(s, ":")
	return colon > 0 && (at < 0 || at < colon) && !strings.Contains(s[:colon], "/")
}

// sshHost is the GitLab server's SSH host.
func (g *getter) sshHost() string {
	if g.o.SSHHost != "" {
		return g.o.SSHHost
	}
	if g.remote.url != nil {
		return g.remote.url.Hostname()
	}
	return ""
}

// forceHTTPS rewrites an SSH URL to the GitLab server into its HTTPS URL
// on the server's base URL, with gitlab-runner's rules: git@<host>:<path>
// and ssh://git@<host>/<path> when the SSH port is 22 or unset,
// ssh://git@<host>:<port>/<path> otherwise.
func (g *getter) forceHTTPS(sub string) (string, bool) {
	base := strings.TrimRight(g.o.ServerURL, "/")
	if u, err := url.Parse(base); base == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		if g.remote.url == nil {
			return "", false
		}
		base = g.remote.url.Scheme + "://" + g.remote.url.Host
	}
	host := g.sshHost()
	if host == "" {
		return "", false
	}
	var rules [][2]string // prefix, replacement
	if g.o.SSHPort == "" || g.o.SSHPort == "22" {
		rules = [][2]string{{"git@" + host + ":", base + "/"}, {"ssh://git@" + host, base}}
	} else {
		rules = [][2]string{{"ssh://git@" + host + ":" + g.o.SSHPort, base}}
	}
	for _, r := range rules {
		rest, ok := strings.CutPrefix(sub, r[0])
		if ok && (strings.HasSuffix(r[0], ":") || strings.HasPrefix(rest, "/")) {
			return r[1] + rest, true
		}
	}
	return "", false
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
