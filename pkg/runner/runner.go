// Package runner owns the domain of the product: runners, their owners and
// the jobs they ran, the application error type, and the small storage
// contracts the other packages program against. It uses the standard library
// only, so every other package may import it.
package runner

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"
)

// How a runner came to exist.
const (
	// CreationToken: the user pasted a runner authentication token (glrt-).
	CreationToken = "token"
	// CreationRegistration: a legacy registration token was exchanged once.
	CreationRegistration = "registration"
	// CreationCreated: the product created the runner through the user's
	// own OAuth token (POST /user/runners).
	CreationCreated = "created"
)

// Access levels GitLab knows for a runner.
const (
	AccessNotProtected = "not_protected"
	AccessRefProtected = "ref_protected"
)

// Runner is one GitLab runner registered by a user and executed on Lambda.
type Runner struct {
	// ID is the product's own identifier, stable and URL-safe.
	ID string
	// Owner is the Sub of the user who registered the runner.
	Owner string
	// GitLabURL is the instance URL, e.g. https://gitlab.example.com.
	GitLabURL string
	// GitLabRunnerID is GitLab's numeric id of the runner.
	GitLabRunnerID int64
	// SealedToken is the runner authentication token sealed with package
	// seal; it is never stored or shown in clear.
	SealedToken []byte
	// TokenObtainedAt is when the current token was issued, if known.
	TokenObtainedAt *time.Time
	// TokenExpiresAt is when the current token expires; nil if it does not.
	TokenExpiresAt *time.Time

	// Settings GitLab also knows.
	Description    string
	Tags           []string
	RunUntagged    bool
	Locked         bool
	AccessLevel    string // AccessNotProtected or AccessRefProtected; "" means GitLab's default
	MaximumTimeout int    // seconds; 0 means no runner-side limit

	// Settings of the product.
	Runtime         string // the executor runtime, e.g. "provided.al2023" or "python3.13"
	Concurrency     int    // jobs that may run at the same time, at least 1
	Paused          bool   // a paused runner is not polled
	LongPollSeconds int    // 0: short polls only; >0: opt-in long polling window
	// CAPEM holds PEM certificates trusted for the runner's GitLab besides
	// the system roots, for an instance with a private CA; sent with each
	// job.
	CAPEM string
	// OutputLimitKiB is the job trace limit (gitlab-runner's
	// output_limit); 0 means the executor's default.
	OutputLimitKiB int

	// WebhookSecretHash is the hash of the per-runner webhook secret.
	WebhookSecretHash string
	// SystemID identifies this runner's single "runner manager" to GitLab:
	// "s_" followed by 12 hex digits, fixed for the runner's life.
	SystemID string
	// LastUpdate is the last X-GitLab-Last-Update value GitLab sent, echoed
	// in the next job request.
	LastUpdate string
	// Health is what the poller last saw.
	Health Health

	CreatedAt time.Time
	UpdatedAt time.Time
	// Version increases with every settings update and makes UpdateRunner
	// optimistic: an update based on an older version fails with ECONFLICT.
	Version int64
	// CreationMode is one of the Creation* constants.
	CreationMode string
}

// WebhookPathPrefix is where the web app serves GitLab's job webhooks: a
// runner's hook is WebhookPathPrefix followed by its id (WebhookPath).
const WebhookPathPrefix = "/webhooks/gitlab/"

// WebhookPath is the path of the runner's job webhook.
func WebhookPath(runnerID string) string { return WebhookPathPrefix + runnerID }

// Health is the result of the poller's last contact with GitLab.
type Health struct {
	LastContactAt *time.Time
	LastError     string // safe to show; never contains a token
	LastErrorAt   *time.Time
}

// Healthy reports whether the last contact succeeded after the last error.
func (h Health) Healthy() bool {
	if h.LastErrorAt == nil {
		return true
	}
	return h.LastContactAt != nil && h.LastContactAt.After(*h.LastErrorAt)
}

// NewSystemID returns a fresh system id: "s_" and 12 random hex digits, the
// format gitlab-runner uses for its own.
func NewSystemID() string {
	return "s_" + randomHex(6)
}

// NewID returns a fresh random runner id: 20 hex digits.
func NewID() string {
	return randomHex(10)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// ValidSystemID reports whether s has the form NewSystemID produces.
func ValidSystemID(s string) bool {
	rest, ok := strings.CutPrefix(s, "s_")
	if !ok || len(rest) != 12 {
		return false
	}
	_, err := hex.DecodeString(rest)
	return err == nil
}

// User is a person who logged in with their GitLab account.
type User struct {
	// Sub identifies the user across logins: the OIDC issuer and subject.
	Sub      string
	Username string
	// RunnerCount is the number of runners the user has, kept in step with
	// the runners by the store, for the per-user limit.
	RunnerCount int
	CreatedAt   time.Time
	UpdatedAt   time.Time
}
