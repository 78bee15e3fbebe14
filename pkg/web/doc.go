// Package web owns the web application people use: sign-in with GitLab,
// registering runners in three ways (a glrt- token, a legacy registration
// token, or "create it for me" with the user's own OAuth token), editing
// the settings this product owns, deleting runners, and each runner's
// health and recent jobs with their estimated Lambda cost, and GitLab's job
// webhooks: a per-runner secret generated on the runner page (stored as a
// hash, shown once) and POST /webhooks/gitlab/:runnerID, which starts a
// poll of that runner when Deps.Invoker and Config.PollerFunction are set.
//
// New builds an App from a Config and its dependencies (stores, token
// sealer, sessions, sign-in); the App is an http.Handler and exposes its
// Echo instance, so the Lambda function, the one-process local mode and the
// tests all mount the same thing. Pages are the templates package's, one
// template set per page, parsed once in New.
//
// Rules kept here: every runner route looks the runner up by owner (another
// user's runner is a 404 for every verb); every state-changing request
// carries the session's CSRF token (403 otherwise), except the webhook,
// which GitLab authenticates with the runner's secret; GitLab URLs pass
// pkg/urlpolicy (https only unless allowed, no loopback, private,
// link-local or metadata addresses, checked on the resolved and the
// dialled address);
// runner tokens are sealed before they are stored and never rendered or
// logged; errors shown to users never carry internal error text; a request
// body above its limit (64 KiB for forms, 1 MiB for a webhook's event) is
// refused with 413 before anything parses it, the method override
// included, having read at most one byte past the limit.
package web
