// Package urlpolicy owns which addresses the product contacts on a user's
// behalf. A user's GitLab URL is checked when it is entered (Check), the
// runner's URL again at every poll, and the address of every connection
// made to that GitLab (API calls, git, artifacts) at every dial, so that a
// host name that later resolves to a refused address (DNS rebinding) is
// still refused. The operator widens the policy with ALLOW_HTTP_GITLAB and
// ALLOW_PRIVATE_GITLAB (ConfigFromEnv); link-local and cloud metadata addresses
// are refused whatever they say.
package urlpolicy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"gitlab-serverless-runner/pkg/envvar"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/runner"
)

// Resolver looks up a host's addresses; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Policy decides which GitLab URLs and addresses may be contacted. The
// zero value accepts https URLs on public addresses only.
type Policy struct {
	// AllowHTTP accepts plain http:// URLs (ALLOW_HTTP_GITLAB).
	AllowHTTP bool
	// AllowPrivate accepts loopback and private addresses (RFC 1918,
	// carrier-grade NAT, unique local IPv6) (ALLOW_PRIVATE_GITLAB).
	AllowPrivate bool
	// Resolver resolves host names for Check; nil means
	// net.DefaultResolver. Dials always use the system resolver, and the
	// address they connect to is checked.
	Resolver Resolver
}

// Storage is the policy for the operator's own object storage: the
// pre-signed S3 URLs the poller makes for a job's cache and for events
// passed by reference. No user chooses those hosts, so the operator's
// switches for GitLab do not apply (a private S3 endpoint or the local
// stand-in on loopback works), but a link-local or metadata address is
// still never dialled.
var Storage = Policy{AllowHTTP: true, AllowPrivate: true}

// ConfigFromEnv reads the operator's settings through lookup
// (os.LookupEnv when nil): ALLOW_HTTP_GITLAB and ALLOW_PRIVATE_GITLAB, each
// true or false (unset means false). Every function that contacts a
// user's GitLab reads them, through its own package's ConfigFromEnv.
func ConfigFromEnv(lookup envvar.Lookup) (Policy, error) {
	r := envvar.New(lookup)
	p := Read(r)
	return *p, r.Err("urlpolicy")
}

// Read reads ALLOW_HTTP_GITLAB and ALLOW_PRIVATE_GITLAB with r, the
// Reader of a package's own ConfigFromEnv: a value that does not parse is
// among r's errors.
func Read(r *envvar.Reader) *Policy {
	return &Policy{AllowHTTP: r.Bool("ALLOW_HTTP_GITLAB"), AllowPrivate: r.Bool("ALLOW_PRIVATE_GITLAB")}
}

var (
	// Cloud metadata services: never reachable through a user's URL.
	metadataAddrs   = []netip.Addr{netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("fd00:ec2::254")}
	privatePrefixes = []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("100.64.0.0/10"),
		netip.MustParsePrefix("fc00::/7"),
	}
)

// Refusal says why addr may not be contacted, "" if it may: "is a
// loopback address", "is a cloud metadata address"…
func (p Policy) Refusal(addr netip.Addr) string {
	addr = addr.Unmap()
	for _, m := range metadataAddrs {
		if addr == m {
			return "is a cloud metadata address"
		}
	}
	switch {
	case addr.IsUnspecified():
		return "is an unspecified address"
	case addr.IsLinkLocalUnicast(), addr.IsLinkLocalMulticast():
		return "is a link-local address"
	case addr.IsMulticast(), addr.IsInterfaceLocalMulticast():
		return "is a multicast address"
	case addr.IsLoopback():
		if !p.AllowPrivate {
			return "is a loopback address"
		}
	default:
		for _, pre := range privatePrefixes {
			if pre.Contains(addr) && !p.AllowPrivate {
				return "is a private address"
			}
		}
	}
	return ""
}

func inputError(msg string) error { return runner.Errorf(runner.EINVALID, "%s", msg) }

// Check validates a GitLab instance URL and returns it normalised (no
// trailing slash). The host name is resolved and every address it
// resolves to must be allowed. The error is a runner.EINVALID error whose
// message is plain words, safe to show next to a form field or in a
// runner's health.
func (p Policy) Check(ctx context.Context, raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", inputError("Enter the URL of your GitLab instance, e.g. https://gitlab.example.com.")
	}
	if len(raw) > 2048 {
		return "", inputError("The URL is too long.")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "", inputError("This is not a URL. Enter it like https://gitlab.example.com.")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !p.AllowHTTP {
			return "", inputError("Use https://. Plain http:// would send the runner's token unencrypted.")
		}
	default:
		return "", inputError("Use an https:// URL.")
	}
	if u.User != nil {
		return "", inputError("The URL must not contain a user name or password.")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return "", inputError("The URL must not have a query (?…) or fragment (#…).")
	}
	host := u.Hostname()
	addrs, err := p.resolve(ctx, host)
	if err != nil {
		return "", inputError(fmt.Sprintf("The host name %q cannot be resolved.", host))
	}
	for _, a := range addrs {
		if why := p.Refusal(a); why != "" {
			return "", inputError(fmt.Sprintf("%s %s; this app does not contact such addresses.", host, why))
		}
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}

func (p Policy) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{a}, nil
	}
	r := p.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, errors.New("no addresses")
	}
	return addrs, nil
}

// ErrRefused is matched (errors.Is) by the error of every dial the policy
// refuses.
var ErrRefused = errors.New("address refused by the GitLab URL policy")

// RefusedError is a dial the policy refused, before any byte was sent.
type RefusedError struct {
	// Addr is the address that was about to be dialled.
	Addr netip.Addr
	// Why is what Refusal said, e.g. "is a loopback address".
	Why string
}

// Error says, in plain words, which address was refused and why.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s %s, which this installation does not contact", e.Addr, e.Why)
}

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// control is a net.Dialer Control function: it runs once the address to
// connect to is known (after name resolution, for every address tried),
// before the connection is made.
func (p Policy) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dial %s: %w", address, ErrRefused)
	}
	if why := p.Refusal(ap.Addr()); why != "" {
		return &RefusedError{Addr: ap.Addr().Unmap(), Why: why}
	}
	return nil
}

// Dialer returns a net.Dialer with timeout and a 30 s keep-alive that
// refuses, at every dial, an address the policy refuses.
func (p Policy) Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: p.control}
}

// DialContext dials like a net.Dialer with a 30 s timeout, refusing an
// address the policy refuses; it fits http.Transport.DialContext.
func (p Policy) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return p.Dialer(30*time.Second).DialContext(ctx, network, address)
}

// Transport returns a copy of http.DefaultTransport whose connections are
// made with DialContext. Redirects are dialled by it too, so a redirect to
// a refused address is refused. Through a proxy (HTTPS_PROXY), the
// address checked is the proxy's.
func (p Policy) Transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = p.DialContext
	return t
}

// HTTPClient returns an HTTP client for calls a person waits for (the web
// app's calls to a user's GitLab): every dial is checked, and the
// timeouts are short.
func (p Policy) HTTPClient() *http.Client {
	return &http.Client{
		Timeout: 25 * time.Second,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           p.Dialer(10 * time.Second).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 20 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   4,
			ForceAttemptHTTP2:     true,
		},
	}
}

// GitLab returns the GitLab client options o that callers use by default:
// connections dialled through p unless o brings its own HTTP client or
// dialer (a nil p dials freely), and logs to log unless o has a logger.
func (p *Policy) GitLab(o gitlab.Options, log *slog.Logger) gitlab.Options {
	if p != nil && o.HTTPClient == nil && o.DialContext == nil {
		o.DialContext = p.DialContext
	}
	if o.Logger == nil {
		o.Logger = log
	}
	return o
}
