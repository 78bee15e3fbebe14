package seal_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/seal"
)

const token = "glrt-t1_Zx9yW8vU7tS6rQ5pO4nM"

func mustParse(t *testing.T, spec string) *seal.Keyring {
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
		sealer   *seal.Keyring
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
			got, err := tt.sealer.Open(seal.RunnerToken(tt.runnerID), tt.sealed)
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
		{"ids on some keys only", "2:" + key + "," + seal.GenerateKey()},
		{"the same key twice with the same id", "1:" + key + ",1:" + key},
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

// The rotation docs/deploy.md gives: the secret holds one key, then
// "new,old" (newest first, no ids), then "new" alone. Every value sealed
// on the way opens at each later step, and NeedsReseal says which to seal
// again. Without ids the keys are numbered by position, the last one 1.
func TestKeyRotationWithoutIDs(t *testing.T) {
	oldKey, newKey, newerKey := seal.GenerateKey(), seal.GenerateKey(), seal.GenerateKey()
	steps := []string{oldKey, newKey + "," + oldKey, newKey, newerKey + "," + newKey, newerKey}
	type value struct {
		step   int
		sealed []byte
	}
	var values []value
	for i, spec := range steps {
		s := mustParse(t, spec)
		// Values sealed at an earlier step whose key is still configured.
		for _, v := range values {
			if !strings.Contains(spec, strings.Split(steps[v.step], ",")[0]) {
				continue
			}
			got, err := s.Open("r1", v.sealed)
			if err != nil || got != token {
				t.Errorf("step %d: Open(value sealed at step %d) = %q, %v; want the token", i, v.step, got, err)
			}
		}
		sealed, err := s.Seal("r1", token)
		if err != nil {
			t.Fatal(err)
		}
		if s.NeedsReseal(sealed) {
			t.Errorf("step %d: NeedsReseal(fresh value) = true", i)
		}
		values = append(values, value{i, sealed})
	}
	// "new,old": the old key keeps id 1, the new one seals with id 2, and
	// values of the old key need resealing.
	rotating := mustParse(t, newKey+","+oldKey)
	if !rotating.NeedsReseal(values[0].sealed) {
		t.Error("NeedsReseal(value of the old key) = false during the rotation, want true")
	}
	if got := values[1].sealed[1]; got != 2 {
		t.Errorf("key id of a value sealed with \"new,old\": %d, want 2", got)
	}
	if got := values[0].sealed[1]; got != 1 {
		t.Errorf("key id of a value sealed with a single key: %d, want 1", got)
	}
	// "new" alone: values sealed as id 2 during the rotation open, and are
	// to be resealed as id 1.
	after := mustParse(t, newKey)
	if !after.NeedsReseal(values[1].sealed) {
		t.Error("NeedsReseal(value sealed during the rotation) = false after it, want true")
	}
	// A dropped key opens nothing, whatever the id says.
	if _, err := after.Open("r1", values[0].sealed); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("Open(value of the dropped key): error = %v, want ErrOpen", err)
	}
	if _, err := after.Open("r2", values[2].sealed); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("Open(value of another runner): error = %v, want ErrOpen", err)
	}
}

// With explicit ids, an id names exactly one key: a value whose id is not
// configured does not open, even if a key of another id would open it.
func TestExplicitIDsAreStrict(t *testing.T) {
	key := seal.GenerateKey()
	sealed, err := mustParse(t, "1:"+key).Seal("r1", token)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mustParse(t, "2:"+key).Open("r1", sealed); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("Open with the key under another id: error = %v, want ErrOpen", err)
	}
	// The id:base64 form and the bare form agree on a single key.
	if got, err := mustParse(t, key).Open("r1", sealed); err != nil || got != token {
		t.Errorf("Open with the bare key = %q, %v; want the token", got, err)
	}
}

// TestRunnerTokensSealedBeforeStillOpen: a runner token sealed by an
// earlier release (format 1, key id 1, additional data header + "runner:"
// + runner id) opens as that runner's token.
func TestRunnerTokensSealedBeforeStillOpen(t *testing.T) {
	const key = "1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	const sealedB64 = "AQEAAQIDBAUGBwgJCgsgbqRv6Iatdv0g4zHgSObo7HNi1vcbq1tza4M="
	keys := mustParse(t, key)
	sealed, _ := base64.StdEncoding.DecodeString(sealedB64)
	if got, err := keys.Open(seal.RunnerToken("0123456789abcdef0123"), sealed); err != nil || got != "glrt-compat" {
		t.Errorf("Open(a token sealed before) = %q, %v; want glrt-compat", got, err)
	}
}

// TestPurposesDoNotCross: a value sealed for one purpose opens for no
// other, not even one of the same kind for another runner or job.
func TestPurposesDoNotCross(t *testing.T) {
	keys := mustParse(t, seal.GenerateKey())
	purposes := []seal.Purpose{
		seal.RunnerToken("r1"), seal.RunnerToken("r2"), seal.JobToken("r1", 7), seal.JobToken("r1", 8),
		seal.JobToken("r2", 7), seal.WebhookSecret("r1"), seal.Cookie("gsr_session"), seal.Cookie("gsr_login"),
	}
	for _, from := range purposes {
		sealed, err := keys.Seal(from, "secret")
		if err != nil {
			t.Fatal(err)
		}
		for _, to := range purposes {
			got, err := keys.Open(to, sealed)
			if to == from && (err != nil || got != "secret") {
				t.Errorf("sealed for %s, opened for itself: %q, %v", from, got, err)
			}
			if to != from && !errors.Is(err, seal.ErrOpen) {
				t.Errorf("sealed for %s, opened for %s: %q, %v; want ErrOpen", from, to, got, err)
			}
		}
	}
}
