// Package webhook owns GitLab's job webhooks for runners: a per-runner
// secret (generated here, stored only as a hash) and the HTTP handler that,
// when GitLab announces a pending job, starts a poll of that runner at once
// instead of waiting for the next scheduled one.
package webhook

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/logging"
	"gitlab-serverless-runner/pkg/runner"
)

// Route is the path pattern the handler serves; {runnerID} is the
// product's runner id.
const Route = "POST " + runner.WebhookPathPrefix + "{runnerID}"

// NewSecret returns a fresh webhook secret, to show the owner once and to
// configure in GitLab, and the hash to store as Runner.WebhookSecretHash.
func NewSecret() (secret, hash string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	secret = "whsec_" + base64.RawURLEncoding.EncodeToString(b)
	return secret, HashSecret(secret)
}

// HashSecret returns the stored form of a webhook secret. The secret is
// random and long, so a plain SHA-256 is enough to keep it unrecoverable
// from the table.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Runners is the part of the runner store the handler reads.
type Runners interface {
	GetRunner(ctx context.Context, id string) (*runner.Runner, error)
}

// Handler accepts GitLab job events for one runner each. It is safe for
// concurrent use.
type Handler struct {
	runners        Runners
	inv            invoke.Invoker
	pollerFunction string
	log            *slog.Logger
}

var _ http.Handler = (*Handler)(nil)

// MaxBody is the most of a job event the handler reads: GitLab's job
// events are a few KiB.
const MaxBody = 1 << 20

// New returns a handler that invokes pollerFunction for runners whose
// webhook reports a pending job.
func New(runners Runners, inv invoke.Invoker, pollerFunction string, logger *slog.Logger) *Handler {
	logger = logging.OrDiscard(logger)
	return &Handler{runners: runners, inv: inv, pollerFunction: pollerFunction, log: logger}
}

// ServeHTTP serves Route: the runner id is the path value "runnerID" when
// the request went through an http.ServeMux pattern, else the last path
// segment.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("runnerID")
	if id == "" {
		id = r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	}
	h.ServeRunner(w, r, id)
}

// jobEvent is the part of GitLab's "Job Hook" payload the handler reads.
type jobEvent struct {
	ObjectKind  string `json:"object_kind"`
	BuildID     int64  `json:"build_id"`
	BuildStatus string `json:"build_status"`
}

// ServeRunner handles one webhook delivery for runnerID (for routers that
// extract path parameters themselves, e.g. Echo's c.Param("runnerID")).
// A missing or wrong X-Gitlab-Token is 401 and nothing is started, whether
// or not the runner exists; an event other than a pending job is 204; a
// pending job starts a poll and is 202.
func (h *Handler) ServeRunner(w http.ResponseWriter, r *http.Request, runnerID string) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ctx := r.Context()
	log := h.log.With("runner_id", runnerID)
	rn, err := h.runners.GetRunner(ctx, runnerID)
	if err != nil && runner.ErrorCode(err) != runner.ENOTFOUND {
		log.ErrorContext(ctx, "cannot load runner for webhook", "error", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	if !authentic(rn, r.Header.Get("X-Gitlab-Token")) {
		log.WarnContext(ctx, "webhook refused: wrong or missing secret")
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if r.Header.Get("X-Gitlab-Event") != "Job Hook" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var ev jobEvent
	if err := json.NewDecoder(io.LimitReader(r.Body, MaxBody)).Decode(&ev); err != nil {
		http.Error(w, "invalid job event", http.StatusBadRequest)
		return
	}
	if ev.BuildStatus != "pending" || rn.Paused {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	pe := dispatch.Poll{RunnerID: rn.ID, Reason: dispatch.PollWebhook}
	if err := h.inv.Invoke(ctx, h.pollerFunction, pe.Marshal(), invoke.Options{}); err != nil {
		log.ErrorContext(ctx, "cannot start a poll from the webhook", "job_id", ev.BuildID, "error", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	log.InfoContext(ctx, "poll started by webhook", "job_id", ev.BuildID)
	w.WriteHeader(http.StatusAccepted)
}

// authentic compares the presented secret with the runner's stored hash in
// constant time. A runner that does not exist, or has no webhook secret,
// authenticates nothing.
func authentic(r *runner.Runner, presented string) bool {
	if r == nil || r.WebhookSecretHash == "" || presented == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(HashSecret(presented)), []byte(r.WebhookSecretHash)) == 1
}
