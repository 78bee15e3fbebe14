package seal_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/seal"
)

const token = "glrt-t1_Zx9yW8vU7tS6rQ5pO4nM"

func mustParse(t *testing.T, spec string) *seal.Sealer {
	t.Helper()
	s, err := seal.ParseKeys(spec)
	if err != nil {
		t.Fatalf("ParseKeys: %v", err)
	}
	return s
}

func TestSealOpenRoundTrip(t *testing.T) {
	s := mustParse(t, seal.GenerateKey())
	for _, plain := range []string{token, "", strings.Repeat("x", 4096)} {
		sealed, err := s.Seal("r1", plain)
		if err != nil {
			t.Fatalf("Seal: %v", err)
		}
		if plain != "" && bytes.Contains(sealed, []byte(plain)) {
			t.Fatalf("sealed value contains the token in clear")
		}
		got, err := s.Open("r1", sealed)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if got != plain {
			t.Errorf("Open() = %q, want %q", got, plain)
		}
	}
}

func TestSealUsesFreshNonce(t *testing.T) {
	s := mustParse(t, seal.GenerateKey())
	a, _ := s.Seal("r1", token)
	b, _ := s.Seal("r1", token)
	if bytes.Equal(a, b) {
		t.Errorf("two seals of the same token are equal; want different nonces")
	}
}

func TestOpenRefuses(t *testing.T) {
	key := seal.GenerateKey()
	s := mustParse(t, key)
	sealed, err := s.Seal("r1", token)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name     string
		sealer   *seal.Sealer
		runnerID string
		sealed   []byte
	}{
		{"another runner id", s, "r2", sealed},
		{"a runner id sharing a prefix", s, "r", sealed},
		{"wrong key with the same id", mustParse(t, seal.GenerateKey()), "r1", sealed},
		{"unknown key id", mustParse(t, "7:"+key), "r1", sealed},
		{"tampered format byte", s, "r1", flip(0)},
		{"tampered key id byte", s, "r1", flip(1)},
		{"tampered nonce", s, "r1", flip(5)},
		{"tampered ciphertext", s, "r1", flip(len(sealed) - 20)},
		{"tampered tag", s, "r1", flip(len(sealed) - 1)},
		{"truncated", s, "r1", sealed[:len(sealed)-1]},
		{"too short", s, "r1", sealed[:10]},
		{"empty", s, "r1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.sealer.Open(tt.runnerID, tt.sealed)
			if !errors.Is(err, seal.ErrOpen) {
				t.Fatalf("Open() error = %v, want ErrOpen", err)
			}
			if got != "" {
				t.Errorf("Open() = %q, want empty", got)
			}
			if strings.Contains(err.Error(), token) || strings.Contains(err.Error(), key) {
				t.Errorf("error %q contains secret material", err)
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	oldKey, newKey := seal.GenerateKey(), seal.GenerateKey()
	before := mustParse(t, "1:"+oldKey)
	sealedOld, err := before.Seal("r1", token)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	after := mustParse(t, "2:"+newKey+",1:"+oldKey)

	got, err := after.Open("r1", sealedOld)
	if err != nil || got != token {
		t.Fatalf("Open(old value) with rotated keys = %q, %v; want the token", got, err)
	}
	if !after.NeedsReseal(sealedOld) {
		t.Errorf("NeedsReseal(old value) = false, want true")
	}
	sealedNew, err := after.Seal("r1", token)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if after.NeedsReseal(sealedNew) {
		t.Errorf("NeedsReseal(new value) = true, want false")
	}
	if _, err := before.Open("r1", sealedNew); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("Open(new value) with only the old key: error = %v, want ErrOpen", err)
	}
	// The retired key, once dropped from configuration, no longer opens.
	if _, err := mustParse(t, "2:"+newKey).Open("r1", sealedOld); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("Open(old value) after dropping the old key: error = %v, want ErrOpen", err)
	}
}

func TestParseKeysRejects(t *testing.T) {
	key := seal.GenerateKey()
	short := "c2hvcnQ=" // "short"
	tests := []struct {
		name string
		spec string
	}{
		{"empty", ""},
		{"not base64", "not*base64!"},
		{"too short", short},
		{"bad id", "x:" + key},
		{"id out of range", "256:" + key},
		{"duplicate id", "1:" + key + ",1:" + seal.GenerateKey()},
		{"empty entry", key + ","},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := seal.ParseKeys(tt.spec)
			if err == nil {
				t.Fatalf("ParseKeys(%q) error = nil, want an error", tt.spec)
			}
			if strings.Contains(err.Error(), key) {
				t.Errorf("error %q contains the key", err)
			}
		})
	}
}

func TestSealRequiresRunnerID(t *testing.T) {
	s := mustParse(t, seal.GenerateKey())
	if _, err := s.Seal("", token); err == nil {
		t.Errorf("Seal with an empty runner id: error = nil, want an error")
	}
}

// Secrets Manager generates keys as 43 letters and digits: 32 bytes of
// unpadded standard base64. They must work as sealing keys.
func TestParseKeysAcceptsUnpaddedKeys(t *testing.T) {
	generated := "Zk9w3XqL0bT7yRm2VhC8aPn5JdE1sGu6KiW4oQf0Ny3" // 43 characters
	s := mustParse(t, generated)
	sealed, err := s.Seal("r1", "glrt-secret")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := mustParse(t, generated).Open("r1", sealed); err != nil || got != "glrt-secret" {
		t.Errorf("Open = %q, %v; want glrt-secret", got, err)
	}
	if _, err := seal.ParseKeys(generated[:42]); err == nil {
		t.Error("ParseKeys(42 characters) = nil error, want an error: not 32 bytes")
	}
}
