package web_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"gitlab-serverless-runner/pkg/gitlab/gitlabtest"
	"gitlab-serverless-runner/pkg/runner"
)

const chromiumPath = "/usr/bin/chromium"

// screenshotDir is build/screenshots at the repository root.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
	out := filepath.Join(dir, "build", "screenshots")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBrowser walks through the app in headless Chromium: sign in, create
// a runner with a glrt- token, see it listed, see its jobs, edit it and
// delete it, saving a screenshot of every page.
func TestBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("headless Chromium is required at %s: %v", chromiumPath, err)
	}
	e := newEnv(t, withWebhooks)
	shots := screenshotDir(t)
	glr := e.gl.CreateRunner(gitlabtest.RunnerOptions{Tags: []string{"lambda"}})
	e.secret(glr.Token)

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	// Start the browser first: a timeout belongs on a context derived from
	// one that has run, or it would stop the whole browser.
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(browser, 2*time.Minute)
	defer cancel()

	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644)
		})
	}
	run := func(step string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	mainText := func() string {
		t.Helper()
		text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
		if err != nil {
			t.Fatalf("read the page: %v", err)
		}
		return text
	}

	run("sign in",
		chromedp.Navigate(e.srv.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS("button.primary")),
		shot("01-sign-in"),
		chromedp.Click(chromedp.CSS("button.primary")),
		chromedp.WaitVisible(`//h1[text()="Your runners"]`),
		shot("02-runners-empty"),
	)

	run("create a runner",
		chromedp.Click(chromedp.CSS("a.button.primary")),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), glr.Token),
		chromedp.SendKeys(chromedp.CSS("#description"), "docs builder"),
		chromedp.SendKeys(chromedp.CSS("#tags"), "lambda"),
		chromedp.SetValue(chromedp.CSS("#concurrency"), "2"),
		shot("03-runner-new"),
		chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(`//h2[text()="Recent jobs"]`),
	)
	text := mainText()
	if !strings.Contains(text, "Runner created") || !strings.Contains(text, "docs builder") {
		t.Errorf("runner page after create says:\n%s", text)
	}
	location, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	id := location[strings.LastIndex(location, "/")+1:]

	// Two jobs ran on the runner.
	now := time.Now().UTC()
	for i, outcome := range []runner.JobOutcome{
		{State: runner.JobSuccess, Duration: 95 * time.Second, MemoryMB: 2048, BilledDuration: 96 * time.Second},
		{State: runner.JobFailed, FailureReason: "script_failure", Duration: 12 * time.Second, MemoryMB: 2048, BilledDuration: 13 * time.Second},
	} {
		j := &runner.Job{RunnerID: id, JobID: int64(501 + i), ProjectPath: "ada/docs", Ref: "main", Name: []string{"build", "lint"}[i],
			WebURL: e.gl.URL() + "/ada/docs/-/jobs/" + itoa(int64(501+i)), LeaseExpiresAt: now.Add(time.Hour)}
		if err := e.store.ClaimJob(context.Background(), j); err != nil {
			t.Fatal(err)
		}
		if err := e.store.FinishJob(context.Background(), id, j.JobID, outcome); err != nil {
			t.Fatal(err)
		}
	}
	run("see the jobs",
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS("table.list")),
		shot("04-runner-jobs"),
	)
	text = mainText()
	for _, want := range []string{"#501", "#502", "script_failure", "ada/docs", "$0.002560"} {
		if !strings.Contains(text, want) {
			t.Errorf("runner page lacks %q", want)
		}
	}
	run("see the jobs on a phone",
		chromedp.EmulateViewport(390, 844),
		shot("05-runner-jobs-phone"),
		chromedp.EmulateViewport(1280, 900),
	)

	run("generate a webhook secret",
		chromedp.Click(chromedp.CSS("#webhook button")),
		chromedp.WaitVisible(chromedp.CSS("code.secret")),
		shot("05b-runner-webhook-secret"),
	)
	if text := mainText(); !strings.Contains(text, "shown only this once") || !strings.Contains(text, e.srv.URL+"/webhooks/gitlab/"+id) {
		t.Errorf("runner page after generating a webhook secret says:\n%s", text)
	}
	run("the secret is gone after a reload",
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS("#webhook")),
	)
	if text := mainText(); strings.Contains(text, "whsec_") || !strings.Contains(text, "cannot be shown again") {
		t.Errorf("runner page after a reload says:\n%s", text)
	}

	run("see it listed",
		chromedp.Navigate(e.srv.URL+"/runners"),
		chromedp.WaitVisible(chromedp.CSS("table.list")),
		shot("06-runners"),
	)
	if text := mainText(); !strings.Contains(text, "docs builder") {
		t.Errorf("runner list lacks the runner:\n%s", text)
	}

	run("edit it",
		chromedp.Navigate(e.srv.URL+"/runners/"+id+"/edit"),
		chromedp.WaitVisible(chromedp.CSS("#concurrency")),
		chromedp.SetValue(chromedp.CSS("#concurrency"), "3"),
		chromedp.SetValue(chromedp.CSS("#runtime"), "python3.14"),
		shot("07-runner-edit"),
		chromedp.Submit(chromedp.CSS("#concurrency")),
		chromedp.WaitVisible(`//h2[text()="Recent jobs"]`),
	)
	if text := mainText(); !strings.Contains(text, "Runner settings saved.") || !strings.Contains(text, "python3.14") {
		t.Errorf("runner page after edit says:\n%s", text)
	}

	run("delete it",
		chromedp.Click(chromedp.CSS("button.danger")),
		chromedp.WaitVisible(`//h1[text()="Your runners"]`),
		shot("08-runners-after-delete"),
	)
	if text := mainText(); !strings.Contains(text, "Runner deleted.") || strings.Contains(text, "docs builder") {
		t.Errorf("runner list after delete says:\n%s", text)
	}
	if snap, _ := e.gl.Runner(glr.ID); len(snap.Managers) != 0 {
		t.Errorf("GitLab still has %d runner managers", len(snap.Managers))
	}
	if n := len(e.storedRunners(e.idp.Issuer() + "|42")); n != 0 {
		t.Errorf("stored runners = %d, want 0", n)
	}
}
