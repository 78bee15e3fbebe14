package runner

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
)

// HashDispatchToken returns the hex SHA-256 of a dispatch token, the form
// in which a job record keeps it (Job.DispatchTokenHash). The token itself
// is a random secret the poller puts in the executor event's dispatch data
// (the token of the slot the job was dispatched from); it never reaches the
// job, so a destination record that carries it was written for that
// dispatch.
func HashDispatchToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// HashJobToken returns the hex SHA-256 of a GitLab job token, the form in
// which a job record keeps it (Job.JobTokenHash).
func HashJobToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// DispatchedWith reports whether token is the job's dispatch token: its
// hash equals j.DispatchTokenHash, compared in constant time. It is false
// for an empty token and for a job that holds no hash.
func (j *Job) DispatchedWith(token string) bool {
	if token == "" || j.DispatchTokenHash == "" {
		return false
	}
	want := HashDispatchToken(token)
	return subtle.ConstantTimeCompare([]byte(want), []byte(j.DispatchTokenHash)) == 1
}
