package web

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/seal"
)

// registration is one runner a person asked for, already validated by the
// form: how to get its token from GitLab, and the runner to store.
type registration struct {
	// Mode is modeToken (a glrt- token pasted), modeRegistration (a legacy
	// registration token exchanged) or modeCreate (created through the
	// user's own OAuth token).
	Mode string
	// Token is the pasted runner or registration token (not modeCreate).
	Token string
	// UserToken is the person's OAuth access token (modeCreate only).
	UserToken string
	// ProjectID is the project to create the runner in (modeCreate only).
	ProjectID int64
	// Settings are the settings GitLab keeps (not for modeToken, whose
	// runner GitLab already has).
	Settings gitlab.RunnerSettings
	// Runner is the runner to store: owner, GitLab URL, ids, the product's
	// settings. Register fills in GitLab's id, the sealed token and the
	// token's dates, and, unless Mode is modeToken, Settings.
	Runner *runner.Runner
}

// registrationError is a registration GitLab refused or could not be
// asked for: the status to answer, the form field to show Message next
// to, and a message safe to show.
type registrationError struct {
	Status  int
	Field   string
	Message string
	// Err is GitLab's outcome, for the logs.
	Err error
}

func (e *registrationError) Error() string { return "web: register runner: " + e.Message }
func (e *registrationError) Unwrap() error { return e.Err }

// registrar registers runners: it asks GitLab for the runner's token,
// seals it, stores the runner, and removes the runner from GitLab again
// when it cannot be stored, so nothing is left half made. Safe for
// concurrent use.
type registrar struct {
	gitlab  func(instanceURL, caPEM string) (GitLab, error)
	sealer  *seal.Keyring
	runners runner.RunnerStore
	log     *slog.Logger
}

// Register makes reg's runner exist in GitLab and in the store. Its errors
// are a *registrationError when GitLab refused or failed (nothing was
// stored), a runner.Error with ELIMIT when the user reached the runner
// limit meanwhile (the runner was removed from GitLab again), or an
// internal error.
func (g *registrar) Register(ctx context.Context, reg registration) error {
	r := reg.Runner
	gl, err := g.gitlab(r.GitLabURL, r.CAPEM)
	if err != nil {
		return fmt.Errorf("web: build GitLab client: %w", err)
	}
	info := buildInfo()
	var creds gitlab.RunnerCredentials
	switch reg.Mode {
	case modeToken:
		creds, err = gl.VerifyRunner(ctx, gitlab.VerifyRequest{Token: reg.Token, SystemID: r.SystemID, Info: &info})
	case modeRegistration:
		creds, err = gl.RegisterRunner(ctx, gitlab.RegisterRequest{Token: reg.Token, RunnerSettings: reg.Settings, Info: info})
	case modeCreate:
		creds, err = gl.CreateUserRunner(ctx, reg.UserToken, gitlab.CreateRunnerRequest{
			RunnerType: gitlab.RunnerTypeProject, ProjectID: reg.ProjectID, RunnerSettings: reg.Settings})
	default:
		return fmt.Errorf("web: register runner: unknown mode %q", reg.Mode)
	}
	if err != nil {
		status, field, msg := gitlabFailure(reg.Mode, r.GitLabURL, err)
		return &registrationError{Status: status, Field: field, Message: msg, Err: err}
	}
	if reg.Mode != modeToken {
		// GitLab owns a pasted runner's settings; the others are ours.
		s := reg.Settings
		r.Tags, r.RunUntagged, r.Locked = s.Tags, s.RunUntagged, s.Locked
		r.AccessLevel, r.MaximumTimeout = s.AccessLevel, s.MaximumTimeout
	}
	now := time.Now().UTC()
	r.GitLabRunnerID, r.TokenObtainedAt, r.TokenExpiresAt = creds.ID, &now, creds.TokenExpiresAt
	r.SealedToken, err = g.sealer.Seal(seal.RunnerToken(r.ID), creds.Token)
	if err == nil {
		err = g.runners.CreateRunner(ctx, r)
	}
	if err != nil {
		g.undo(ctx, gl, r, creds.Token)
		if runner.ErrorCode(err) == runner.ELIMIT {
			return err
		}
		return fmt.Errorf("web: store new runner: %w", err)
	}
	return nil
}

// undo removes from GitLab what Register made there when the runner could
// not be stored.
func (g *registrar) undo(ctx context.Context, gl GitLab, r *runner.Runner, token string) {
	ctx = context.WithoutCancel(ctx)
	if err := unregister(ctx, gl, r, token); err != nil {
		g.log.ErrorContext(ctx, "undo runner in GitLab", "runner_id", r.ID, "gitlab_url", r.GitLabURL, "error", err)
	}
}

// unregister removes the runner from GitLab with its token: a pasted
// runner's GitLab runner is not ours, so only our runner manager goes;
// a runner we registered or created goes entirely.
func unregister(ctx context.Context, gl GitLab, r *runner.Runner, token string) error {
	if r.CreationMode == modeToken {
		return gl.UnregisterRunnerManager(ctx, token, r.SystemID)
	}
	return gl.UnregisterRunner(ctx, token)
}

// gitlabFailure turns a failed GitLab call into a status, the form field
// to show the message next to, and the message. This is the one place
// GitLab outcomes become words for the user.
func gitlabFailure(mode, instance string, err error) (status int, field, msg string) {
	var ge *gitlab.Error
	errors.As(err, &ge)
	var unknownCA x509.UnknownAuthorityError
	switch {
	case errors.As(err, &unknownCA):
		return http.StatusUnprocessableEntity, "ca_pem", "GitLab at " + instance + " has a certificate no trusted authority signed. If a private CA signed it, paste that CA's certificate under Custom CA certificates."
	case errors.Is(err, gitlab.ErrForbidden) && mode == modeCreate:
		return http.StatusUnprocessableEntity, "project_id", "GitLab refused to create the runner: you need the Maintainer role in this project, and your sign-in must allow creating runners."
	case errors.Is(err, gitlab.ErrForbidden):
		return http.StatusUnprocessableEntity, "token", "GitLab rejected this token: it is wrong, expired or was revoked. Copy it again from GitLab."
	case errors.Is(err, gitlab.ErrGone):
		return http.StatusUnprocessableEntity, "token", "Registration tokens are disabled on this GitLab. Create the runner in GitLab (Settings › CI/CD › Runners) and paste its glrt- token instead."
	case errors.Is(err, gitlab.ErrNotFound):
		return http.StatusUnprocessableEntity, "gitlab_url", "There is no GitLab API at this URL. Check the address of your GitLab instance."
	case errors.Is(err, gitlab.ErrBadRequest):
		detail := ""
		if ge != nil && ge.Message != "" {
			detail = " GitLab said: " + ge.Message
		}
		return http.StatusUnprocessableEntity, "form", "GitLab refused the runner's settings." + detail
	case ge != nil && ge.StatusCode == 0:
		return http.StatusBadGateway, "gitlab_url", "GitLab at " + instance + " could not be reached. Check the URL, or try again later."
	case ge != nil && ge.StatusCode >= 500:
		return http.StatusBadGateway, "form", fmt.Sprintf("GitLab answered with an error (%d %s). Nothing was saved; try again later.", ge.StatusCode, http.StatusText(ge.StatusCode))
	case ge != nil:
		return http.StatusBadGateway, "form", fmt.Sprintf("GitLab gave an unexpected answer (%d). Nothing was saved.", ge.StatusCode)
	}
	return http.StatusBadGateway, "form", "GitLab could not be asked. Nothing was saved; try again later."
}
