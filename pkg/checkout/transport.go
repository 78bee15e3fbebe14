package checkout

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
)

// go-git picks its HTTP transport from a process-wide table keyed by URL
// scheme. To give every checkout its own http.Client (a custom CA, a test
// server's transport) without a global lock, the table holds one client
// whose RoundTripper looks the real one up in the request's context; Get
// puts it there, and go-git passes that context to every request it makes.

type roundTripperKey struct{}

var installOnce sync.Once

func installTransport() {
	installOnce.Do(func() {
		c := githttp.NewClient(&http.Client{Transport: contextRoundTripper{}})
		client.InstallProtocol("http", c)
		client.InstallProtocol("https", c)
	})
}

// contextRoundTripper sends a request through the RoundTripper stored in its
// context, or http.DefaultTransport when there is none.
type contextRoundTripper struct{}

func (contextRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if rt, ok := req.Context().Value(roundTripperKey{}).(http.RoundTripper); ok && rt != nil {
		return rt.RoundTrip(req)
	}
	return http.DefaultTransport.RoundTrip(req)
}

// withRoundTripper returns a context whose git HTTP requests go through the
// transport of hc (nil: the default), trusting caPEM in addition to the
// system roots when it is not empty.
func withRoundTripper(ctx context.Context, hc *http.Client, caPEM []byte) (context.Context, error) {
	var rt http.RoundTripper = http.DefaultTransport
	if hc != nil && hc.Transport != nil {
		rt = hc.Transport
	}
	if len(caPEM) > 0 {
		base, ok := rt.(*http.Transport)
		if !ok {
			return nil, fmt.Errorf("add custom CA: the HTTP client's transport is a %T, not an *http.Transport", rt)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("add custom CA: no certificate found in the PEM data")
		}
		t := base.Clone()
		t.TLSClientConfig = t.TLSClientConfig.Clone()
		if t.TLSClientConfig == nil {
			t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		t.TLSClientConfig.RootCAs = pool
		rt = t
	}
	return context.WithValue(ctx, roundTripperKey{}, rt), nil
}
