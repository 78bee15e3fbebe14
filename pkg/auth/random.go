package auth

import (
	"crypto/rand"
	"encoding/base64"
)

// randomBytes returns n bytes from the system's secure random source, which
// never fails on supported platforms.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// randomToken returns 32 random bytes, base64url-encoded without padding.
func randomToken() string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(32))
}
