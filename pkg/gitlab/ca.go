package gitlab

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// MaxCAPEM bounds a runner's custom CA bundle: a few certificates.
const MaxCAPEM = 64 << 10

// CheckCAPEM checks a runner's custom CA as a person pastes it: one or
// more PEM "CERTIFICATE" blocks, each a certificate that parses, and
// nothing else (a private key pasted by mistake is refused, so it is
// never stored). Its errors are sentences for the person.
func CheckCAPEM(data string) error {
	if len(data) > MaxCAPEM {
		return sentence(fmt.Sprintf("The CA certificates are larger than %d KiB.", MaxCAPEM>>10))
	}
	rest := []byte(strings.TrimSpace(data))
	if len(rest) == 0 {
		return sentence("Paste the CA certificate in PEM form (-----BEGIN CERTIFICATE----- …).")
	}
	n := 0
	for len(bytes.TrimSpace(rest)) > 0 {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		switch {
		case block == nil:
			if n == 0 {
				return sentence("This is not PEM: paste the CA certificate as it begins with -----BEGIN CERTIFICATE-----.")
			}
			return sentence(fmt.Sprintf("Certificate %d is followed by text that is not PEM.", n))
		case strings.Contains(block.Type, "PRIVATE KEY"):
			return sentence("This is a private key, not a certificate: paste only the CA certificate. Nothing was saved.")
		case block.Type != "CERTIFICATE":
			return sentence(fmt.Sprintf("A %q block is not a certificate: paste only CERTIFICATE blocks.", block.Type))
		}
		n++
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return sentence(fmt.Sprintf("Certificate %d does not parse: %v.", n, err))
		}
	}
	return nil
}

// CertPool returns the system's certificate pool with the PEM certificates
// of data added: what a runner with a custom CA trusts.
func CertPool(data string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM([]byte(data)) {
		return nil, errors.New("gitlab: custom CA: no PEM certificate found")
	}
	return pool, nil
}

// TrustCA returns o trusting a runner's custom CA (caPEM, PEM
// certificates) besides the system roots. An empty caPEM returns o as it
// is; one that holds no certificate is an error.
func (o Options) TrustCA(caPEM string) (Options, error) {
	if caPEM == "" {
		return o, nil
	}
	pool, err := CertPool(caPEM)
	if err != nil {
		return o, err
	}
	o.RootCAs = pool
	return o, nil
}

// WithRootCAs returns a copy of hc (nil: a client on the default
// transport) whose transport, a clone of hc's, trusts pool instead of its
// own roots; the rest of its TLS configuration stays. hc's transport must
// be an *http.Transport.
func WithRootCAs(hc *http.Client, pool *x509.CertPool) (*http.Client, error) {
	out := &http.Client{}
	if hc != nil {
		*out = *hc
	}
	rt := out.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	t, ok := rt.(*http.Transport)
	if !ok {
		return nil, fmt.Errorf("gitlab: trust custom CAs: the HTTP client's transport is a %T, not an *http.Transport", rt)
	}
	t = t.Clone()
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	} else {
		t.TLSClientConfig = t.TLSClientConfig.Clone()
	}
	t.TLSClientConfig.RootCAs = pool
	out.Transport = t
	return out, nil
}

// sentence is an error whose text is a whole sentence for a person, shown
// as it is in a form.
type sentence string

func (s sentence) Error() string { return string(s) }
