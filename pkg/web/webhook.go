package web

import (
	"encoding/base64"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/webhook"
)

// webhookPath is the Echo route of GitLab's job webhooks (runner.WebhookPath).
const webhookPath = runner.WebhookPathPrefix + ":runnerID"

// secretCookie carries a freshly generated webhook secret, sealed, from
// the POST that made it to the one page that shows it.
const secretCookie = "gsr_webhook_secret"

// webhooksEnabled reports whether the app was given what it needs to start
// polls: an invoker and the poller's function name.
func (a *App) webhooksEnabled() bool {
	return a.deps.Invoker != nil && a.cfg.PollerFunction != ""
}

// receiveWebhook serves GitLab's job events. It runs without session and
// CSRF: GitLab authenticates with the runner's secret in X-Gitlab-Token,
// which the webhook handler checks.
func (a *App) receiveWebhook(c echo.Context) error {
	if a.hook == nil {
		return c.String(http.StatusServiceUnavailable,
			"GitLab webhooks are not enabled on this deployment (no poller function is configured); jobs start at the next scheduled poll.\n")
	}
	a.hook.ServeRunner(c.Response(), c.Request(), c.Param("runnerID"))
	return nil
}

// secretCookieFor is the cookie that carries the runner's new secret,
// scoped to that runner's pages. An empty value and maxAge -1 clear it.
func (a *App) secretCookieFor(runnerID, value string, maxAge int) *http.Cookie {
	ck := a.cookie(secretCookie, value, maxAge)
	ck.Path = "/runners/" + runnerID
	return ck
}

// newWebhookSecret replaces the runner's webhook secret: it stores only
// the hash and hands the secret, sealed, to the next page, which shows it
// once. The old secret stops working at once.
func (a *App) newWebhookSecret(c echo.Context) error {
	ctx := c.Request().Context()
	r, err := a.loadRunner(c)
	if err != nil {
		return err
	}
	if !a.webhooksEnabled() {
		return &pageError{Status: http.StatusNotFound, Heading: "Webhooks are off",
			Message: "GitLab webhooks are not enabled on this deployment; jobs start at the next scheduled poll."}
	}
	secret, hash := webhook.NewSecret()
	r.WebhookSecretHash = hash
	if err := a.deps.Runners.UpdateRunner(ctx, r); err != nil {
		return fmt.Errorf("web: store webhook secret of runner %s: %w", r.ID, err)
	}
	sealed, err := a.deps.Sealer.Seal(seal.WebhookSecret(r.ID), secret)
	if err != nil {
		return fmt.Errorf("web: seal webhook secret of runner %s: %w", r.ID, err)
	}
	c.SetCookie(a.secretCookieFor(r.ID, base64.RawURLEncoding.EncodeToString(sealed), 120))
	a.log.InfoContext(ctx, "webhook secret generated", "runner_id", r.ID, "request_id", requestID(c))
	return c.Redirect(http.StatusSeeOther, "/runners/"+r.ID)
}

// takeWebhookSecret returns the secret the previous request generated for
// r, and clears it so it is shown once. A cookie that does not open, or
// holds a secret that is no longer r's, shows nothing.
func (a *App) takeWebhookSecret(c echo.Context, r *runner.Runner) string {
	ck, err := c.Cookie(secretCookie)
	if err != nil {
		return ""
	}
	c.SetCookie(a.secretCookieFor(r.ID, "", -1))
	sealed, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil {
		return ""
	}
	secret, err := a.deps.Sealer.Open(seal.WebhookSecret(r.ID), sealed)
	if err != nil || r.WebhookSecretHash == "" || webhook.HashSecret(secret) != r.WebhookSecretHash {
		return ""
	}
	return secret
}
