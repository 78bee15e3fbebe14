package gitlab

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"runtime"
	"strings"
	"time"
)

// maxCredentialsBody bounds the answers of the runner lifecycle endpoints.
const maxCredentialsBody = 64 << 10

// Product identity sent in Info.
const (
	productName  = "gitlab-serverless-runner"
	executorName = "lambda"
	shellName    = "bash"
)

// NewInfo returns the runner description sent with register, verify and job
// requests: the product's name and the given version, this binary's
// platform and architecture, executor "lambda", shell "bash" and the given
// features.
func NewInfo(version string, features Features) Info {
	return Info{
		Name:         productName,
		Version:      version,
		Platform:     runtime.GOOS,
		Architecture: runtime.GOARCH,
		Executor:     executorName,
		Shell:        shellName,
		Features:     features,
	}
}

// TokenExpiringSoon reports whether a runner token obtained at obtained and
// expiring at expires should be reset now: from three quarters of its
// lifetime on (section 1.8). A token without expiry never needs a reset; a
// token whose expiry is not after the time it was obtained always does.
func TokenExpiringSoon(obtained time.Time, expires *time.Time, now time.Time) bool {
	if expires == nil {
		return false
	}
	life := expires.Sub(obtained)
	if life <= 0 {
		return true
	}
	return !now.Before(obtained.Add(life * 3 / 4))
}

// RegisterRunner registers a runner with a legacy registration token
// (POST /runners). When TagList is empty it is built from Tags. A 410 means
// registration tokens are disabled on the instance (ErrGone); a 403 an
// invalid registration token (ErrForbidden).
func (c *Client) RegisterRunner(ctx context.Context, req RegisterRequest) (RunnerCredentials, error) {
	if req.TagList == "" && len(req.Tags) > 0 {
		req.TagList = strings.Join(req.Tags, ",")
	}
	cl, resp, err := c.runnerCall(ctx, http.MethodPost, "runners", req, req.Token)
	if err != nil {
		return RunnerCredentials{}, err
	}
	switch resp.StatusCode {
	case http.StatusCreated:
		return c.credentials(cl, resp, "")
	default:
		return RunnerCredentials{}, c.fail(cl, resp)
	}
}

// VerifyRunner checks a runner authentication token and records the runner
// manager identified by SystemID (POST /runners/verify). A 403 means the
// token is unknown or expired. Old GitLab answers a plain "200": the
// credentials then hold the token verified and no id.
func (c *Client) VerifyRunner(ctx context.Context, req VerifyRequest) (RunnerCredentials, error) {
	cl, resp, err := c.runnerCall(ctx, http.MethodPost, "runners/verify", req, req.Token)
	if err != nil {
		return RunnerCredentials{}, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
			discard(resp.Response)
			return RunnerCredentials{Token: req.Token}, nil
		}
		return c.credentials(cl, resp, req.Token)
	default:
		return RunnerCredentials{}, c.fail(cl, resp)
	}
}

// CreateUserRunner creates a runner on behalf of a user (POST /user/runners)
// and returns its glrt- token. userToken is the user's OAuth access token,
// sent as a bearer token, or a personal access token ("glpat-"), sent as
// PRIVATE-TOKEN. When TagList is empty it is built from Tags.
func (c *Client) CreateUserRunner(ctx context.Context, userToken string, req CreateRunnerRequest) (RunnerCredentials, error) {
	if len(req.TagList) == 0 && len(req.Tags) > 0 {
		req.TagList = req.Tags
	}
	cl, err := jsonCall(http.MethodPost, "user/runners", req, userToken)
	if err != nil {
		return RunnerCredentials{}, err
	}
	if strings.HasPrefix(userToken, "glpat-") {
		cl.header.Set(headerPrivateToken, userToken)
	} else {
		cl.header.Set("Authorization", "Bearer "+userToken)
	}
	resp, err := c.do(ctx, cl)
	if err != nil {
		return RunnerCredentials{}, err
	}
	switch resp.StatusCode {
	case http.StatusCreated:
		return c.credentials(cl, resp, "")
	default:
		return RunnerCredentials{}, c.fail(cl, resp)
	}
}

// UnregisterRunner deletes the whole runner (DELETE /runners). Runners
// created with a glrt- token belong to their creator: delete only their
// manager with UnregisterRunnerManager.
func (c *Client) UnregisterRunner(ctx context.Context, token string) error {
	return c.unregister(ctx, "runners", TokenRequest{Token: token}, token)
}

// UnregisterRunnerManager deletes one runner manager (DELETE
// /runners/managers). A 404 means the system id is unknown.
func (c *Client) UnregisterRunnerManager(ctx context.Context, token, systemID string) error {
	return c.unregister(ctx, "runners/managers", ManagerRequest{Token: token, SystemID: systemID}, token)
}

// unregister sends one of the two DELETE endpoints, which answer alike:
// 204 or 200 when done, every other status an error.
func (c *Client) unregister(ctx context.Context, path string, v any, token string) error {
	cl, resp, err := c.runnerCall(ctx, http.MethodDelete, path, v, token)
	if err != nil {
		return err
	}
	switch resp.StatusCode {
	case http.StatusNoContent, http.StatusOK:
		discard(resp.Response)
		return nil
	default:
		return c.fail(cl, resp)
	}
}

// ResetRunnerToken replaces a runner authentication token (POST
// /runners/reset_authentication_token); the old one stops working. The
// credentials returned carry no id.
func (c *Client) ResetRunnerToken(ctx context.Context, token string) (RunnerCredentials, error) {
	cl, resp, err := c.runnerCall(ctx, http.MethodPost, "runners/reset_authentication_token", TokenRequest{Token: token}, token)
	if err != nil {
		return RunnerCredentials{}, err
	}
	switch resp.StatusCode {
	case http.StatusCreated, http.StatusOK:
		return c.credentials(cl, resp, "")
	default:
		return RunnerCredentials{}, c.fail(cl, resp)
	}
}

// credentials decodes a credentials answer and closes the body. An answer
// without token is unusable unless fallback (the token sent) is given.
func (c *Client) credentials(cl call, resp *response, fallback string) (RunnerCredentials, error) {
	defer discard(resp.Response)
	var creds RunnerCredentials
	if err := decodeJSON(resp.Response, maxCredentialsBody, &creds); err != nil {
		return RunnerCredentials{}, c.invalid(cl, resp, err)
	}
	if creds.Token == "" {
		creds.Token = fallback
	}
	if creds.Token == "" {
		return RunnerCredentials{}, c.invalid(cl, resp, errors.New("no token in answer"))
	}
	return creds, nil
}
