package jobimage

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// cgnat is the shared address space of RFC 6598, not reachable from the
// internet.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// publicAddr reports whether ip may be reached on a job's behalf: not
// loopback, link-local (the metadata service), private, shared, multicast
// or unspecified.
func publicAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsValid() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() &&
		!ip.IsLinkLocalMulticast() && !ip.IsInterfaceLocalMulticast() &&
		!ip.IsMulticast() && !ip.IsPrivate() && !ip.IsUnspecified() && !cgnat.Contains(ip)
}

// errPrivateAddr marks a dial refused by the address guard.
type errPrivateAddr struct{ addr string }

func (e *errPrivateAddr) Error() string {
	return fmt.Sprintf("address %s is not a public address", e.addr)
}

// newTransport returns an HTTP transport for registries. Unless
// allowPrivate is set, connections to hosts other than the trusted ones (the
// deployment's own registries, which may sit behind VPC endpoints) are
// refused when the address they resolve to is not public; the check runs on
// the address actually dialled, so a name that resolves differently later
// (DNS rebinding) gains nothing.
func newTransport(trusted []string, allowPrivate bool) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 60 * time.Second
	open := &net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}
	if allowPrivate {
		t.DialContext = open.DialContext
		return t
	}
	guarded := &net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !publicAddr(ap.Addr()) {
				return &errPrivateAddr{addr: address}
			}
			return nil
		}}
	trust := map[string]bool{}
	for _, h := range trusted {
		trust[strings.ToLower(h)] = true
	}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err == nil && (trust[strings.ToLower(host)] || trust[strings.ToLower(addr)]) {
			return open.DialContext(ctx, network, addr)
		}
		return guarded.DialContext(ctx, network, addr)
	}
	return t
}
