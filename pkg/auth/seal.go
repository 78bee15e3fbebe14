package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the length in bytes of every cookie key: AES-256.
const KeySize = 32

// errUnsealable means a sealed value could not be opened with any key: it was
// tampered with, made with a foreign or retired key, or is not ours at all.
var errUnsealable = errors.New("value is not sealed with a known key")

// Keyring holds the keys that seal cookies. The first key seals; every key
// opens, so a key can be rotated by putting the new key first and keeping the
// old one until the longest-lived cookie it sealed has expired (12 hours by
// default). A Keyring is safe for concurrent use.
type Keyring struct {
	aeads []cipher.AEAD
}

// ParseKeys builds a Keyring from base64-encoded 32-byte keys (standard or URL
// encoding, padded or not). Each argument may itself be a comma- or
// space-separated list, so a single environment variable can hold them all.
// The first key seals.
func ParseKeys(encoded ...string) (*Keyring, error) {
	var keys [][]byte
	for _, list := range encoded {
		for _, field := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' }) {
			key, err := decodeKey(field)
			if err != nil {
				return nil, fmt.Errorf("auth: parse key %d: %w", len(keys)+1, err)
			}
			keys = append(keys, key)
		}
	}
	return NewKeyring(keys...)
}

func decodeKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err := enc.DecodeString(s); err == nil {
			if len(key) != KeySize {
				return nil, fmt.Errorf("decode key: got %d bytes, want %d", len(key), KeySize)
			}
			return key, nil
		}
	}
	return nil, errors.New("decode key: not valid base64")
}

// NewKeyring builds a Keyring from raw 32-byte keys; the first key seals.
func NewKeyring(keys ...[]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("auth: build keyring: no key configured")
	}
	k := &Keyring{}
	for i, key := range keys {
		if len(key) != KeySize {
			return nil, fmt.Errorf("auth: build keyring: key %d has %d bytes, want %d", i+1, len(key), KeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("auth: build keyring: key %d: %w", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("auth: build keyring: key %d: %w", i+1, err)
		}
		k.aeads = append(k.aeads, aead)
	}
	return k, nil
}

// GenerateKey returns a fresh random key, base64-encoded, ready for ParseKeys.
func GenerateKey() string {
	return base64.StdEncoding.EncodeToString(randomBytes(KeySize))
}

// seal encrypts and authenticates plaintext with the first key. purpose is
// authenticated too, so a value sealed for one cookie cannot be replayed as
// another.
func (k *Keyring) seal(purpose string, plaintext []byte) string {
	aead := k.aeads[0]
	nonce := randomBytes(aead.NonceSize())
	out := aead.Seal(nonce, nonce, plaintext, []byte(purpose))
	return base64.RawURLEncoding.EncodeToString(out)
}

// open reverses seal, trying every key.
func (k *Keyring) open(purpose, sealed string) ([]byte, error) {
	raw, err := base64.RawURLEncoding.DecodeString(sealed)
	if err != nil {
		return nil, errUnsealable
	}
	for _, aead := range k.aeads {
		n := aead.NonceSize()
		if len(raw) < n+aead.Overhead() {
			return nil, errUnsealable
		}
		if plain, err := aead.Open(nil, raw[:n], raw[n:], []byte(purpose)); err == nil {
			return plain, nil
		}
	}
	return nil, errUnsealable
}

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
