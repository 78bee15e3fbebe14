package web

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Resolver looks up a host's addresses; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// URLPolicy decides which GitLab URLs a user may enter. The zero value
// accepts https URLs on public addresses only.
type URLPolicy struct {
	// AllowHTTP accepts plain http:// URLs.
	AllowHTTP bool
	// AllowPrivate accepts loopback and private addresses (RFC 1918,
	// carrier-grade NAT, unique local IPv6).
	AllowPrivate bool
	// Resolver resolves host names; nil means net.DefaultResolver.
	Resolver Resolver
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

// refusal says why addr may not be contacted, "" if it may.
func (p URLPolicy) refusal(addr netip.Addr) string {
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

// Check validates a GitLab instance URL typed by a user and returns it
// normalised (no trailing slash). The host name is resolved and every
// address it resolves to must be allowed. The error is a runner.EINVALID
// error whose message is safe to show next to the field.
func (p URLPolicy) Check(ctx context.Context, raw string) (string, error) {
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
		if why := p.refusal(a); why != "" {
			return "", inputError(fmt.Sprintf("%s %s; this app does not contact such addresses.", host, why))
		}
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}

func (p URLPolicy) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
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

// errRefusedAddr is returned by the guarded dialer.
var errRefusedAddr = errors.New("address refused by the GitLab URL policy")

// HTTPClient returns an HTTP client for calls to user-given GitLab URLs: the
// address actually dialled is checked again, so a name that resolves to a
// forbidden address after Check (DNS rebinding) is still refused. Timeouts
// are short: a person is waiting for the page.
func (p URLPolicy) HTTPClient() *http.Client {
	dialer := &net.Dialer{
		Timeout:   10 * time.Second,
		KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("dial %s: %w", address, errRefusedAddr)
			}
			if p.refusal(ap.Addr()) != "" {
				return fmt.Errorf("dial %s: %w", address, errRefusedAddr)
			}
			return nil
		},
	}
	return &http.Client{
		Timeout: 25 * time.Second,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 20 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   4,
			ForceAttemptHTTP2:     true,
		},
	}
}
