package web

import (
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gitlab-serverless-runner/pkg/dispatch"
	"gitlab-serverless-runner/pkg/gitlab"
	"gitlab-serverless-runner/pkg/runner"
)

// Creation modes of the new-runner form, matching runner.Creation*.
const (
	modeToken        = runner.CreationToken
	modeRegistration = runner.CreationRegistration
	modeCreate       = runner.CreationCreated
)

// Limits of the form's fields.
const (
	maxDescription = 255
	maxTags        = 50
	maxTagLength   = 50
	maxTokenLength = 255
	// maxOutputLimitKiB bounds a runner's output limit: the trace is kept
	// on the function's /tmp until the job ends, beside the job's files.
	maxOutputLimitKiB = 100 << 10
)

var (
	// A runner authentication token: "glrt-", then GitLab's characters
	// (an optional partition prefix such as "t1_" included).
	runnerTokenRE = regexp.MustCompile(`^glrt-[0-9A-Za-z_.-]{20,250}$`)
	// A legacy registration token ("GR1348941…" on current GitLab).
	registrationTokenRE = regexp.MustCompile(`^[0-9A-Za-z_-]{15,255}$`)
	tagRE               = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z_.:/+-]*$`)
)

// runnerForm is what the new and edit forms carry, as typed. Token is
// read from the request but never rendered back.
type runnerForm struct {
	Mode           string
	GitLabURL      string
	Token          string
	ProjectID      string
	Description    string
	Tags           string
	RunUntagged    bool
	Locked         bool
	Protected      bool
	MaximumTimeout string
	Runtime        string
	Concurrency    string
	LongPoll       string
	OutputLimit    string
	CAPEM          string
	Paused         bool
	Version        string
	// Errors maps a field name to the message shown next to it; "form"
	// is a message about the whole form.
	Errors map[string]string
}

func (f *runnerForm) fail(field, msg string) {
	if f.Errors == nil {
		f.Errors = map[string]string{}
	}
	if _, ok := f.Errors[field]; !ok {
		f.Errors[field] = msg
	}
}

func readForm(v url.Values) runnerForm {
	on := func(k string) bool { return v.Get(k) != "" }
	return runnerForm{
		Mode:           strings.TrimSpace(v.Get("mode")),
		GitLabURL:      strings.TrimSpace(v.Get("gitlab_url")),
		Token:          strings.TrimSpace(v.Get("token")),
		ProjectID:      strings.TrimSpace(v.Get("project_id")),
		Description:    strings.TrimSpace(v.Get("description")),
		Tags:           strings.TrimSpace(v.Get("tags")),
		RunUntagged:    on("run_untagged"),
		Locked:         on("locked"),
		Protected:      on("protected"),
		MaximumTimeout: strings.TrimSpace(v.Get("maximum_timeout")),
		Runtime:        strings.TrimSpace(v.Get("runtime")),
		Concurrency:    strings.TrimSpace(v.Get("concurrency")),
		LongPoll:       strings.TrimSpace(v.Get("long_poll")),
		OutputLimit:    strings.TrimSpace(v.Get("output_limit")),
		CAPEM:          strings.TrimSpace(strings.ReplaceAll(v.Get("ca_pem"), "\r\n", "\n")),
		Paused:         on("paused"),
		Version:        strings.TrimSpace(v.Get("version")),
	}
}

// appSettings are the settings this app owns, parsed.
type appSettings struct {
	Runtime     string
	Concurrency int
	LongPoll    int
	Paused      bool
	// OutputLimitKiB is gitlab-runner's output_limit; 0 is the default.
	OutputLimitKiB int
	// CAPEM are the certificates trusted for the runner's GitLab besides
	// the system's; "" for none.
	CAPEM string
}

// checkAppSettings validates the fields the app owns.
func (f *runnerForm) checkAppSettings(cfg Config) appSettings {
	s := appSettings{Runtime: f.Runtime, Paused: f.Paused}
	if !slices.Contains(cfg.Runtimes, f.Runtime) {
		f.fail("runtime", "Choose one of the offered runtimes.")
	}
	n, err := strconv.Atoi(f.Concurrency)
	if err != nil || n < 1 || n > cfg.MaxConcurrency {
		f.fail("concurrency", "Enter a whole number from 1 to "+strconv.Itoa(cfg.MaxConcurrency)+".")
	}
	s.Concurrency = n
	if f.LongPoll != "" {
		lp, err := strconv.Atoi(f.LongPoll)
		if err != nil || lp < 0 || lp > cfg.MaxLongPollSeconds {
			f.fail("long_poll", "Enter a whole number of seconds from 0 to "+strconv.Itoa(cfg.MaxLongPollSeconds)+".")
		}
		s.LongPoll = lp
	}
	if f.OutputLimit != "" {
		n, err := strconv.Atoi(f.OutputLimit)
		if err != nil || n < 1 || n > maxOutputLimitKiB {
			f.fail("output_limit", "Enter a whole number of KiB from 1 to "+strconv.Itoa(maxOutputLimitKiB)+", or leave it empty for GitLab Runner's "+strconv.Itoa(dispatch.DefaultOutputLimitKiB)+".")
		}
		s.OutputLimitKiB = n
	}
	if f.CAPEM != "" {
		if err := gitlab.CheckCAPEM(f.CAPEM); err != nil {
			f.fail("ca_pem", err.Error())
			// A private key pasted by mistake is not shown back.
			f.CAPEM = ""
		}
		s.CAPEM = f.CAPEM
	}
	return s
}

// gitlabSettings are the settings sent to GitLab at registration.
type gitlabSettings struct {
	Description    string
	Tags           []string
	RunUntagged    bool
	Locked         bool
	AccessLevel    string
	MaximumTimeout int
}

// checkCreate validates the new-runner form except the GitLab URL's
// reachability, which needs the network.
func (f *runnerForm) checkCreate(cfg Config) (gitlabSettings, appSettings) {
	switch f.Mode {
	case modeToken:
		if !runnerTokenRE.MatchString(f.Token) {
			f.fail("token", "Paste the runner authentication token GitLab showed when you created the runner: it starts with glrt-.")
		}
	case modeRegistration:
		switch {
		case strings.HasPrefix(f.Token, "glrt-"):
			f.fail("token", "This is a runner authentication token: choose the first option for it.")
		case !registrationTokenRE.MatchString(f.Token):
			f.fail("token", "Paste the registration token from GitLab's runner settings (letters, digits, - and _).")
		}
	case modeCreate:
		if id, err := strconv.ParseInt(f.ProjectID, 10, 64); err != nil || id <= 0 {
			f.fail("project_id", "Choose the project the runner is for.")
		}
	default:
		f.fail("mode", "Choose how to connect the runner.")
	}
	var g gitlabSettings
	g.Description = f.Description
	if utf8.RuneCountInString(f.Description) > maxDescription {
		f.fail("description", "Keep the description to "+strconv.Itoa(maxDescription)+" characters.")
	}
	if strings.ContainsAny(f.Description, "\r\n\t\x00") {
		f.fail("description", "The description must be one line of text.")
	}
	for _, t := range strings.Split(f.Tags, ",") {
		t = strings.TrimSpace(t)
		if t == "" || slices.Contains(g.Tags, t) {
			continue
		}
		if len(t) > maxTagLength || !tagRE.MatchString(t) {
			f.fail("tags", "Tag "+strconv.Quote(truncateRunes(t, 60))+" is not valid: use letters, digits and _ . : / + -, up to 50 characters, starting with a letter or digit.")
			continue
		}
		g.Tags = append(g.Tags, t)
	}
	if len(g.Tags) > maxTags {
		f.fail("tags", "Use at most "+strconv.Itoa(maxTags)+" tags.")
	}
	g.RunUntagged, g.Locked = f.RunUntagged, f.Locked
	if !g.RunUntagged && len(g.Tags) == 0 {
		f.fail("tags", "A runner that does not run untagged jobs needs at least one tag.")
	}
	g.AccessLevel = runner.AccessNotProtected
	if f.Protected {
		g.AccessLevel = runner.AccessRefProtected
	}
	g.MaximumTimeout = cfg.MaxTimeout()
	if f.MaximumTimeout != "" {
		n, err := strconv.Atoi(f.MaximumTimeout)
		if err != nil || n < GitLabMinTimeout || n > cfg.MaxTimeout() {
			f.fail("maximum_timeout", "Enter a number of seconds from "+strconv.Itoa(GitLabMinTimeout)+" to "+strconv.Itoa(cfg.MaxTimeout())+".")
		}
		g.MaximumTimeout = n
	}
	return g, f.checkAppSettings(cfg)
}

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}
