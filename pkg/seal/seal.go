// Package seal owns the product's symmetric encryption: one Keyring type,
// AES-256-GCM with keys from configuration and a key id in every sealed
// value so keys can rotate. Every value is sealed for a Purpose, which is
// authenticated as additional data: a runner token opens only as that
// runner's token, a job token only as that job's, a cookie only as the
// cookie it was made for. Runner and job tokens at rest use the keys of
// TOKEN_SEALING_KEY; the web app's cookies the keys of SESSION_KEY.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// format is the first byte of every sealed value; it names this layout:
// format(1) | key id(1) | nonce(12) | ciphertext and GCM tag.
const format byte = 1

const headerLen = 2

// KeySize is the length of a key: AES-256.
const KeySize = 32

// ErrOpen is returned when a sealed value cannot be opened: it was tampered
// with, sealed with another key, or sealed for another purpose. The reason
// is deliberately not told apart.
var ErrOpen = errors.New("seal: cannot open sealed value")

// Purpose names what a value is sealed for; it is authenticated with the
// value, so a value opens only for the purpose it was sealed for. Build
// one with the functions below.
type Purpose string

// RunnerToken is the purpose of a runner's authentication token at rest.
func RunnerToken(runnerID string) Purpose { return Purpose("runner:" + runnerID) }

// JobToken is the purpose of a job token kept, sealed, while the job runs.
func JobToken(runnerID string, jobID int64) Purpose {
	return Purpose("job-token:" + runnerID + "/" + strconv.FormatInt(jobID, 10))
}

// WebhookSecret is the purpose of a runner's new webhook secret on its way
// to the one page that shows it.
func WebhookSecret(runnerID string) Purpose { return Purpose("webhook-secret:" + runnerID) }

// Cookie is the purpose of a cookie's value.
func Cookie(name string) Purpose { return Purpose("cookie:" + name) }

// Key is one sealing key and the id written into values it seals.
type Key struct {
	ID     byte
	Secret []byte // KeySize bytes
}

// Keyring seals and opens values. It seals with its primary key and opens
// with any of its keys. The zero value is not usable; call New or
// ParseKeys. A Keyring is safe for concurrent use.
type Keyring struct {
	primary byte
	aeads   map[byte]cipher.AEAD
	// order lists the key ids newest first.
	order []byte
	// anyKey makes Open try every key when the value's key id names no
	// key or the wrong one: set when the ids were numbered by position
	// (ParseKeys without ids), so a key's id changes when keys are added
	// or dropped.
	anyKey bool
}

// New returns a Keyring that seals with primary and also opens values
// sealed with any of older. Key ids must be unique.
func New(primary Key, older ...Key) (*Keyring, error) {
	s := &Keyring{primary: primary.ID, aeads: map[byte]cipher.AEAD{}}
	for _, k := range append([]Key{primary}, older...) {
		if len(k.Secret) != KeySize {
			return nil, fmt.Errorf("seal: key %d is %d bytes, want %d", k.ID, len(k.Secret), KeySize)
		}
		if _, dup := s.aeads[k.ID]; dup {
			return nil, fmt.Errorf("seal: key id %d given twice", k.ID)
		}
		block, err := aes.NewCipher(k.Secret)
		if err != nil {
			return nil, fmt.Errorf("seal: create cipher for key %d: %w", k.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("seal: create GCM for key %d: %w", k.ID, err)
		}
		s.aeads[k.ID] = aead
		s.order = append(s.order, k.ID)
	}
	return s, nil
}

// ParseKeys parses a key configuration: a comma-separated list of keys in
// base64 (standard or URL, padded or not), newest first, the first one
// sealing and all of them opening. Either every entry is "id:base64" with
// ids of its own ("2:base64key2,1:base64key1"), or none has an id
// ("base64key2,base64key1", the form docs/deploy.md gives for a rotation):
// then the last key has id 1, the one before it 2, and so on, so a single
// key is id 1 and keeps that id when a newer key is put in front of it;
// and since a key's id changes when an older key is dropped, Open then
// tries every key when the value's id does not open it. Errors never
// contain key material.
func ParseKeys(spec string) (*Keyring, error) {
	entries := strings.Split(strings.TrimSpace(spec), ",")
	if len(entries) > 255 {
		return nil, fmt.Errorf("seal: parse keys: %d keys, at most 255", len(entries))
	}
	var keys []Key
	withID := 0
	for i, entry := range entries {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			return nil, fmt.Errorf("seal: parse keys: entry %d is empty", i+1)
		}
		n, b64 := uint64(len(entries)-i), entry
		if before, after, ok := strings.Cut(entry, ":"); ok {
			withID++
			var err error
			if n, err = strconv.ParseUint(before, 10, 8); err != nil {
				return nil, fmt.Errorf("seal: parse keys: entry %d: key id must be 0-255", i+1)
			}
			b64 = after
		}
		secret, err := decodeKey(b64)
		if err != nil {
			return nil, fmt.Errorf("seal: parse keys: entry %d (id %d): not base64", i+1, n)
		}
		keys = append(keys, Key{ID: byte(n), Secret: secret})
	}
	if withID != 0 && withID != len(keys) {
		return nil, errors.New("seal: parse keys: give every key an id (id:base64) or none")
	}
	s, err := New(keys[0], keys[1:]...)
	if err != nil {
		return nil, err
	}
	s.anyKey = withID == 0
	return s, nil
}

// decodeKey accepts standard or URL base64, with or without padding: keys
// generated by Secrets Manager (43 letters and digits) are 32 bytes
// unpadded.
func decodeKey(b64 string) ([]byte, error) {
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		var secret []byte
		if secret, err = enc.DecodeString(b64); err == nil {
			return secret, nil
		}
	}
	return nil, err
}

// GenerateKey returns a fresh random key, base64 encoded, for configuration.
func GenerateKey() string {
	b := make([]byte, KeySize)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.StdEncoding.EncodeToString(b)
}

// Seal encrypts plaintext for purpose p with the primary key.
func (s *Keyring) Seal(p Purpose, plaintext string) ([]byte, error) {
	if p == "" {
		return nil, errors.New("seal: seal: no purpose")
	}
	aead := s.aeads[s.primary]
	out := make([]byte, headerLen+aead.NonceSize(), headerLen+aead.NonceSize()+len(plaintext)+aead.Overhead())
	out[0], out[1] = format, s.primary
	if _, err := rand.Read(out[headerLen:]); err != nil {
		return nil, fmt.Errorf("seal: read nonce: %w", err)
	}
	return aead.Seal(out, out[headerLen:], []byte(plaintext), additionalData(out[:headerLen], p)), nil
}

// Open decrypts a value Seal returned for the same purpose. It returns
// ErrOpen (wrapped) if the value was altered, its key is unknown, or it was
// sealed for another purpose. With keys numbered by position (ParseKeys
// without ids) it tries every key, the value's own id first.
func (s *Keyring) Open(p Purpose, sealed []byte) (string, error) {
	if len(sealed) < headerLen || sealed[0] != format {
		return "", fmt.Errorf("%w: unknown format", ErrOpen)
	}
	aead, ok := s.aeads[sealed[1]]
	if !ok && !s.anyKey {
		return "", fmt.Errorf("%w: unknown key id %d", ErrOpen, sealed[1])
	}
	// Every key is AES-256-GCM: one nonce size and tag length.
	first := s.aeads[s.primary]
	if len(sealed) < headerLen+first.NonceSize()+first.Overhead() {
		return "", fmt.Errorf("%w: too short", ErrOpen)
	}
	nonce := sealed[headerLen : headerLen+first.NonceSize()]
	ciphertext := sealed[headerLen+first.NonceSize():]
	ad := additionalData(sealed[:headerLen], p)
	if ok {
		if plain, err := aead.Open(nil, nonce, ciphertext, ad); err == nil {
			return string(plain), nil
		}
	}
	if s.anyKey {
		for _, id := range s.order {
			if id == sealed[1] {
				continue
			}
			if plain, err := s.aeads[id].Open(nil, nonce, ciphertext, ad); err == nil {
				return string(plain), nil
			}
		}
	}
	return "", ErrOpen
}

// NeedsReseal reports whether sealed was made with a key other than the
// primary, so a caller can seal it again after a key rotation.
func (s *Keyring) NeedsReseal(sealed []byte) bool {
	return len(sealed) < headerLen || sealed[0] != format || sealed[1] != s.primary
}

// additionalData binds the header (format and key id) and the purpose to
// the ciphertext. A runner token's purpose, "runner:<id>", gives the
// additional data runner tokens have been sealed with from the start.
func additionalData(header []byte, p Purpose) []byte {
	ad := make([]byte, 0, len(header)+len(p))
	ad = append(ad, header...)
	return append(ad, p...)
}
