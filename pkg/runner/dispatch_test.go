package runner_test

import (
	"testing"

	"gitlab-serverless-runner/pkg/runner"
)

func TestHashDispatchToken(t *testing.T) {
	// The SHA-256 of "abc", as published in FIPS 180-2.
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := runner.HashDispatchToken("abc"); got != want {
		t.Errorf("HashDispatchToken(abc) = %s, want %s", got, want)
	}
}

func TestJobDispatchedWith(t *testing.T) {
	const token = "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name  string
		hash  string
		token string
		want  bool
	}{
		{"its own token", runner.HashDispatchToken(token), token, true},
		{"another token", runner.HashDispatchToken(token), "fedcba9876543210fedcba9876543210", false},
		{"the hash itself as the token", runner.HashDispatchToken(token), runner.HashDispatchToken(token), false},
		{"no token", runner.HashDispatchToken(token), "", false},
		{"no hash, no token", "", "", false},
		{"no hash", "", token, false},
		{"hash of the empty token, no token", runner.HashDispatchToken(""), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &runner.Job{DispatchTokenHash: tt.hash}
			if got := j.DispatchedWith(tt.token); got != tt.want {
				t.Errorf("DispatchedWith() = %v, want %v", got, tt.want)
			}
		})
	}
}
