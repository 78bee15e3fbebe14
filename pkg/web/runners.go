package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/templates"
)

// recentJobs is how many jobs the runner page shows.
const recentJobs = 25

type runnersPage struct {
	Runners []*runner.Runner
	Limit   int
	AtLimit bool
}

func (a *App) listRunners(c echo.Context) error {
	sess := session(c)
	rs, err := a.deps.Runners.ListRunnersByOwner(c.Request().Context(), sess.Identity.Sub)
	if err != nil {
		return fmt.Errorf("web: list runners: %w", err)
	}
	p := runnersPage{Runners: rs, Limit: a.cfg.MaxRunnersPerUser}
	p.AtLimit = p.Limit > 0 && len(rs) >= p.Limit
	return a.render(c, http.StatusOK, templates.Runners, "Runners", p)
}

// formPage is the data of the new and edit forms.
type formPage struct {
	Form           runnerForm
	Runner         *runner.Runner
	Runtimes       []string
	MaxConcurrency int
	MaxLongPoll    int
	MinTimeout     int
	MaxTimeout     int
	Margin         int
	LoginGitLab    string
	CanCreate      bool
	Projects       []gitlab.Project
	ProjectsNote   string
	// MaxOutputLimit and DefaultOutputLimit bound and fill the output
	// limit field, in KiB.
	MaxOutputLimit, DefaultOutputLimit int
}

func (a *App) formPage(f runnerForm) formPage {
	return formPage{
		Form: f, Runtimes: a.cfg.Runtimes, MaxConcurrency: a.cfg.MaxConcurrency,
		MaxLongPoll: a.cfg.MaxLongPollSeconds, MinTimeout: GitLabMinTimeout,
		MaxOutputLimit: maxOutputLimitKiB, DefaultOutputLimit: dispatch.DefaultOutputLimitKiB,
		MaxTimeout: a.cfg.MaxTimeout(), Margin: a.cfg.ExecutorMarginSeconds,
		LoginGitLab: a.cfg.GitLabURL, CanCreate: true,
	}
}

func (a *App) newRunner(c echo.Context) error {
	f := runnerForm{
		Mode: modeToken, GitLabURL: a.cfg.GitLabURL, RunUntagged: true,
		MaximumTimeout: strconv.Itoa(a.cfg.MaxTimeout()), Runtime: a.cfg.Runtimes[0],
		Concurrency: "1", LongPoll: "0",
	}
	return a.renderNew(c, http.StatusOK, f)
}

// renderNew shows the new-runner form with the user's projects for
// "create it for me". The token is never rendered back.
func (a *App) renderNew(c echo.Context, status int, f runnerForm) error {
	f.Token = ""
	p := a.formPage(f)
	p.Projects, p.ProjectsNote = a.projects(c)
	if len(p.Projects) == 0 {
		p.CanCreate = false
	}
	if a.atLimit(c) && p.Form.Errors["form"] == "" {
		p.Form.fail("form", a.limitMessage())
	}
	return a.render(c, status, templates.RunnerNew, "New runner", p)
}

func (a *App) limitMessage() string {
	return fmt.Sprintf("You have reached the limit of %d runners. Delete a runner before you register another.", a.cfg.MaxRunnersPerUser)
}

// atLimit reports whether the user already has the most runners allowed.
// The store enforces the limit; this only lets the form say so up front.
func (a *App) atLimit(c echo.Context) bool {
	if a.cfg.MaxRunnersPerUser <= 0 {
		return false
	}
	u, err := a.deps.Users.GetUser(c.Request().Context(), session(c).Identity.Sub)
	return err == nil && u.RunnerCount >= a.cfg.MaxRunnersPerUser
}

// projects lists the projects the user maintains on the sign-in GitLab,
// with the user's own OAuth token.
func (a *App) projects(c echo.Context) ([]gitlab.Project, string) {
	const unavailable = "Your projects could not be listed from GitLab, so \"create it for me\" is not available right now."
	tok, err := a.userToken(c)
	if err != nil {
		return nil, "Sign in again to let this app list your projects."
	}
	gl, err := a.deps.GitLab(a.cfg.GitLabURL)
	if err != nil {
		return nil, unavailable
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
	defer cancel()
	ps, err := gl.ListMaintainedProjects(ctx, tok)
	if err != nil {
		a.log.WarnContext(ctx, "list projects", "request_id", requestID(c), "error", err)
		return nil, unavailable
	}
	if len(ps) == 0 {
		return nil, "You maintain no project on " + a.cfg.GitLabURL + ", so \"create it for me\" is not available."
	}
	return ps, ""
}

// userToken returns the user's OAuth access token, renewed if it is about
// to expire (and then saved in the session cookie).
func (a *App) userToken(c echo.Context) (string, error) {
	sess := session(c)
	if sess == nil || sess.Identity.OAuthToken.AccessToken == "" {
		return "", errors.New("web: no OAuth token in the session")
	}
	fresh, err := a.deps.Login.FreshToken(c.Request().Context(), sess.Identity.OAuthToken)
	if err != nil {
		return "", fmt.Errorf("web: renew OAuth token: %w", err)
	}
	if fresh != sess.Identity.OAuthToken {
		sess.Identity.OAuthToken = fresh
		if err := a.deps.Sessions.Save(c.Response(), sess); err != nil {
			return "", fmt.Errorf("web: save renewed token: %w", err)
		}
	}
	return fresh.AccessToken, nil
}

func buildInfo() gitlab.Info {
	version := "dev"
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		version = bi.Main.Version
	}
	return gitlab.NewInfo(version, gitlab.Features{})
}

// createRunner checks the form, gets the runner's token from GitLab in the
// chosen way, seals it and stores the runner. Nothing is stored unless
// GitLab accepted; a runner GitLab made is removed again if it cannot be
// stored.
func (a *App) createRunner(c echo.Context) error {
	ctx := c.Request().Context()
	sess := session(c)
	form, err := c.FormParams()
	if err != nil {
		return &pageError{Status: http.StatusBadRequest, Heading: "Bad form", Message: "The form could not be read."}
	}
	f := readForm(form)
	gs, as := f.checkCreate(a.cfg)
	instance, err := a.policy.Check(ctx, f.GitLabURL)
	if err != nil {
		f.fail("gitlab_url", runner.ErrorMessage(err))
	} else if f.Mode == modeCreate && instance != a.cfg.GitLabURL {
		f.fail("gitlab_url", "\"Create it for me\" works only with "+a.cfg.GitLabURL+", the GitLab you signed in with.")
	}
	if len(f.Errors) > 0 {
		return a.renderNew(c, http.StatusUnprocessableEntity, f)
	}
	if a.atLimit(c) {
		f.fail("form", a.limitMessage())
		return a.renderNew(c, http.StatusConflict, f)
	}
	r := &runner.Runner{
		ID: runner.NewID(), Owner: sess.Identity.Sub, GitLabURL: instance,
		SystemID: runner.NewSystemID(), Description: gs.Description,
		Runtime: as.Runtime, Concurrency: as.Concurrency, Paused: as.Paused,
		LongPollSeconds: as.LongPoll, CreationMode: f.Mode,
		OutputLimitKiB: as.OutputLimitKiB, CAPEM: as.CAPEM,
	}
	reg := registration{Mode: f.Mode, Token: f.Token, Runner: r, Settings: gitlab.RunnerSettings{
		Description: gs.Description, Tags: gs.Tags, RunUntagged: gs.RunUntagged,
		Locked: gs.Locked, AccessLevel: gs.AccessLevel, MaximumTimeout: gs.MaximumTimeout,
	}}
	if f.Mode == modeCreate {
		if reg.UserToken, err = a.userToken(c); err != nil {
			a.log.WarnContext(ctx, "create runner: user token", "request_id", requestID(c), "error", err)
			f.fail("form", "Your GitLab authorization has expired. Sign out, sign in again and retry.")
			return a.renderNew(c, http.StatusUnauthorized, f)
		}
		reg.ProjectID, _ = strconv.ParseInt(f.ProjectID, 10, 64)
	}
	var rerr *registrationError
	switch err := a.registrar.Register(ctx, reg); {
	case errors.As(err, &rerr):
		a.log.WarnContext(ctx, "create runner: GitLab refused or failed", "mode", f.Mode,
			"gitlab_url", instance, "request_id", requestID(c), "error", rerr.Err)
		f.fail(rerr.Field, rerr.Message)
		return a.renderNew(c, rerr.Status, f)
	case runner.ErrorCode(err) == runner.ELIMIT:
		f.fail("form", a.limitMessage())
		return a.renderNew(c, http.StatusConflict, f)
	case err != nil:
		return err
	}
	a.log.InfoContext(ctx, "runner created", "runner_id", r.ID, "mode", r.CreationMode,
		"gitlab_url", r.GitLabURL, "gitlab_runner_id", r.GitLabRunnerID, "request_id", requestID(c))
	a.setFlash(c, "created")
	return c.Redirect(http.StatusSeeOther, "/runners/"+r.ID)
}

// loadRunner returns the signed-in user's runner named in the path; any
// other runner is ENOTFOUND, whatever the verb.
func (a *App) loadRunner(c echo.Context) (*runner.Runner, error) {
	r, err := a.deps.Runners.GetRunnerForOwner(c.Request().Context(), session(c).Identity.Sub, c.Param("id"))
	if err != nil {
		return nil, fmt.Errorf("web: load runner: %w", err)
	}
	return r, nil
}

type runnerPage struct {
	Runner *runner.Runner
	Jobs   []*runner.Job
	// Price, X86Price and StoragePrice are the configured USD per
	// GB-second, shown beside the estimates.
	Price, X86Price, StoragePrice string
	// DefaultOutputLimit is the output limit in KiB of a runner that has
	// none of its own.
	DefaultOutputLimit int
	// Webhooks is whether this deployment receives GitLab job webhooks;
	// WebhookURL is the runner's webhook address.
	Webhooks   bool
	WebhookURL string
	// WebhookSecret is a secret generated by the previous request, shown
	// on this page only.
	WebhookSecret string
}

func (a *App) showRunner(c echo.Context) error {
	r, err := a.loadRunner(c)
	if err != nil {
		return err
	}
	jobs, err := a.deps.Jobs.ListJobs(c.Request().Context(), r.ID, recentJobs)
	if err != nil {
		return fmt.Errorf("web: list jobs of runner %s: %w", r.ID, err)
	}
	p := runnerPage{Runner: r, Jobs: jobs, DefaultOutputLimit: dispatch.DefaultOutputLimitKiB,
		Price:        strconv.FormatFloat(a.cfg.PricePerGBSecond, 'f', -1, 64),
		X86Price:     strconv.FormatFloat(a.cfg.X86PricePerGBSecond, 'f', -1, 64),
		StoragePrice: strconv.FormatFloat(a.cfg.StoragePricePerGBSecond, 'f', -1, 64),
		Webhooks:     a.webhooksEnabled(), WebhookURL: a.cfg.BaseURL + runner.WebhookPath(r.ID)}
	p.WebhookSecret = a.takeWebhookSecret(c, r)
	return a.render(c, http.StatusOK, templates.Runner, "Runner", p)
}

func editForm(r *runner.Runner) runnerForm {
	f := runnerForm{
		Runtime: r.Runtime, Concurrency: strconv.Itoa(r.Concurrency),
		LongPoll: strconv.Itoa(r.LongPollSeconds), Paused: r.Paused,
		Version: strconv.FormatInt(r.Version, 10), CAPEM: r.CAPEM,
	}
	if r.OutputLimitKiB > 0 {
		f.OutputLimit = strconv.Itoa(r.OutputLimitKiB)
	}
	return f
}

func (a *App) editRunner(c echo.Context) error {
	r, err := a.loadRunner(c)
	if err != nil {
		return err
	}
	return a.renderEdit(c, http.StatusOK, r, editForm(r))
}

func (a *App) renderEdit(c echo.Context, status int, r *runner.Runner, f runnerForm) error {
	p := a.formPage(f)
	p.Runner = r
	return a.render(c, status, templates.RunnerEdit, "Edit runner", p)
}

// updateRunner saves the settings this app owns; GitLab's stay as they are.
func (a *App) updateRunner(c echo.Context) error {
	r, err := a.loadRunner(c)
	if err != nil {
		return err
	}
	form, err := c.FormParams()
	if err != nil {
		return &pageError{Status: http.StatusBadRequest, Heading: "Bad form", Message: "The form could not be read."}
	}
	f := readForm(form)
	as := f.checkAppSettings(a.cfg)
	version, verr := strconv.ParseInt(f.Version, 10, 64)
	if verr != nil {
		f.fail("form", "The form is incomplete. Reload the page and try again.")
	}
	if len(f.Errors) > 0 {
		return a.renderEdit(c, http.StatusUnprocessableEntity, r, f)
	}
	r.Runtime, r.Concurrency, r.LongPollSeconds, r.Paused = as.Runtime, as.Concurrency, as.LongPoll, as.Paused
	r.OutputLimitKiB, r.CAPEM = as.OutputLimitKiB, as.CAPEM
	r.Version = version
	if err := a.deps.Runners.UpdateRunner(c.Request().Context(), r); err != nil {
		if runner.ErrorCode(err) == runner.ECONFLICT {
			fresh, gerr := a.loadRunner(c)
			if gerr != nil {
				return gerr
			}
			f.Version = strconv.FormatInt(fresh.Version, 10)
			f.fail("form", runner.ErrorMessage(err))
			return a.renderEdit(c, http.StatusConflict, fresh, f)
		}
		return fmt.Errorf("web: update runner %s: %w", r.ID, err)
	}
	a.log.InfoContext(c.Request().Context(), "runner updated", "runner_id", r.ID, "request_id", requestID(c))
	a.setFlash(c, "updated")
	return c.Redirect(http.StatusSeeOther, "/runners/"+r.ID)
}

// deleteRunner unregisters the runner from GitLab, then deletes it. A
// token GitLab no longer knows counts as unregistered; a GitLab that cannot
// be reached keeps the runner, so it is not left behind in GitLab.
func (a *App) deleteRunner(c echo.Context) error {
	ctx := c.Request().Context()
	r, err := a.loadRunner(c)
	if err != nil {
		return err
	}
	token, err := a.deps.Sealer.Open(seal.RunnerToken(r.ID), r.SealedToken)
	if err != nil {
		// Without its token the runner cannot be unregistered; it can still
		// be removed here, and GitLab forgets it after its token expires.
		a.log.ErrorContext(ctx, "delete runner: open token", "runner_id", r.ID, "request_id", requestID(c), "error", err)
	} else if gl, gerr := a.gitlabFor(r.GitLabURL, r.CAPEM); gerr != nil {
		return fmt.Errorf("web: build GitLab client: %w", gerr)
	} else if err := unregister(ctx, gl, r, token); err != nil && !errors.Is(err, gitlab.ErrForbidden) && !errors.Is(err, gitlab.ErrNotFound) {
		a.log.WarnContext(ctx, "delete runner: unregister", "runner_id", r.ID, "request_id", requestID(c), "error", err)
		return &pageError{Status: http.StatusBadGateway, Heading: "Not deleted",
			Message: "GitLab at " + r.GitLabURL + " could not be reached to unregister the runner, so it was not deleted. Try again later."}
	}
	if err := a.deps.Runners.DeleteRunner(ctx, r.Owner, r.ID); err != nil {
		return fmt.Errorf("web: delete runner %s: %w", r.ID, err)
	}
	a.log.InfoContext(ctx, "runner deleted", "runner_id", r.ID, "request_id", requestID(c))
	a.setFlash(c, "deleted")
	return c.Redirect(http.StatusSeeOther, "/runners")
}
