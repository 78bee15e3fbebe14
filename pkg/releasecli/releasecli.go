// Package releasecli owns the release-cli command the executor offers its
// jobs. GitLab turns a job's `release:` keyword into a script step that
// runs `release-cli create --name "…" --tag-name "…" …` (after looking for
// glab, which no Lambda runtime has), and the Lambda runtimes have no
// release-cli either. The executor's own binary therefore answers to that
// name: the shell expands the step's arguments exactly as it would for the
// real release-cli (variables, quotes, command substitutions), and Main
// reads them with release-cli's flags and defaults (CI_SERVER_URL,
// CI_JOB_TOKEN, CI_PROJECT_ID, CI_COMMIT_TAG, CI_COMMIT_SHA), creates the
// release through GitLab's Releases API with the job token and prints
// release-cli's log lines. Only the create command is offered.
package releasecli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gitlab-serverless-runner/pkg/gitlab"
)

// Name is the command name jobs call.
const Name = "release-cli"

// DefaultTimeout is release-cli's --timeout.
const DefaultTimeout = 30 * time.Second

// Env is how Main reads the job's environment (os.Getenv in the binary).
type Env func(string) string

// Options are the settings of one run.
type Options struct {
	// Version is printed in each log line (version=…) and by --version.
	Version string
	// Now stamps the log lines; nil means time.Now.
	Now func() time.Time
}

// create is what `release-cli create` was asked to do.
type create struct {
	serverURL, jobToken, projectID string
	caBundle                       string // --additional-ca-cert-bundle: PEM or a file
	timeout                        time.Duration
	catalogPublish                 bool
	req                            gitlab.ReleaseRequest
	linkNames, linkURLs            []string
}

// errUsage marks a command line release-cli would refuse.
var errUsage = errors.New("incorrect usage")

// Main runs release-cli with args (without the program name) and returns
// its exit status: 0 when the release was created, 1 otherwise.
func Main(ctx context.Context, args []string, env Env, stdout, stderr io.Writer, opts Options) int {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := logger{w: stderr, now: opts.Now, version: opts.Version}
	c, cmd, err := parse(args, env)
	switch {
	case errors.Is(err, errHelp):
		fmt.Fprintf(stdout, "NAME:\n   %s - GitLab Release command-line tool, as this runner offers it\n\nUSAGE:\n   %s [global options] create [command options]\n\nOnly the create command is available.\n", Name, Name)
		return 0
	case errors.Is(err, errVersion):
		fmt.Fprintf(stdout, "%s version %s\n", Name, opts.Version)
		return 0
	case err != nil:
		log.fatal(cmd, nil, err)
		return 1
	}
	if cmd != "create" {
		log.fatal(cmd, nil, fmt.Errorf("command %q is not offered by this runner's %s: only create is", cmd, Name))
		return 1
	}
	fields := c.fields()
	log.info(cmd, "Creating Release...", fields)
	if c.catalogPublish {
		log.warn(cmd, "Publishing to the CI/CD Catalog is not offered by this runner's release-cli: the release is created without it", fields)
	}
	rel, err := c.run(ctx, env)
	if err != nil {
		log.fatal(cmd, fields, fmt.Errorf("failed to create release: %w", err))
		return 1
	}
	fields = append(fields, field{"released-at", rel.ReleasedAt.UTC().Format(time.RFC3339)})
	log.info(cmd, "Release created successfully!", fields)
	return 0
}

var (
	errHelp    = errors.New("help")
	errVersion = errors.New("version")
)

// globalFlags and createFlags are release-cli's flags, each with whether
// it takes a value.
var globalFlags = map[string]bool{
	"server-url": true, "job-token": true, "project-id": true, "private-token": true,
	"timeout": true, "additional-ca-cert-bundle": true, "insecure-https": false, "debug": false,
	"help": false, "h": false, "version": false, "v": false,
}

var createFlags = map[string]bool{
	"name": true, "description": true, "tag-name": true, "tag-message": true, "ref": true,
	"assets-link": true, "assets-links-name": true, "assets-links-url": true, "milestone": true,
	"released-at": true, "catalog-publish": false, "help": false, "h": false,
}

// parse reads release-cli's command line: global flags, the command, its
// flags, with each default from the environment as release-cli takes it.
func parse(args []string, env Env) (create, string, error) {
	c := create{
		serverURL: env("CI_SERVER_URL"), jobToken: env("CI_JOB_TOKEN"), projectID: env("CI_PROJECT_ID"),
		caBundle: env("ADDITIONAL_CA_CERT_BUNDLE"), timeout: DefaultTimeout,
		req: gitlab.ReleaseRequest{TagName: env("CI_COMMIT_TAG"), Ref: env("CI_COMMIT_SHA")},
	}
	i := 0
	next := func(spec map[string]bool) (name, value string, ok bool, err error) {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
			return "", "", false, nil
		}
		i++
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takes, known := spec[name]
		switch {
		case !known:
			return "", "", false, fmt.Errorf("%w: flag provided but not defined: -%s", errUsage, name)
		case takes && !hasValue:
			if i >= len(args) {
				return "", "", false, fmt.Errorf("%w: flag needs an argument: -%s", errUsage, name)
			}
			value = args[i]
			i++
		case !takes && hasValue:
			if _, err := strconv.ParseBool(value); err != nil {
				return "", "", false, fmt.Errorf("%w: invalid boolean value %q for -%s", errUsage, value, name)
			}
		}
		return name, value, true, nil
	}
	for i < len(args) {
		name, value, ok, err := next(globalFlags)
		if err != nil {
			return c, "", err
		}
		if !ok {
			break
		}
		switch name {
		case "help", "h":
			return c, "", errHelp
		case "version", "v":
			return c, "", errVersion
		case "server-url":
			c.serverURL = value
		case "job-token":
			c.jobToken = value
		case "project-id":
			c.projectID = value
		case "private-token":
			return c, "", fmt.Errorf("%w: --private-token is not offered by this runner's %s: the job token is used", errUsage, Name)
		case "additional-ca-cert-bundle":
			c.caBundle = value
		case "timeout":
			d, err := time.ParseDuration(value)
			if err != nil || d <= 0 {
				return c, "", fmt.Errorf("%w: invalid value %q for --timeout", errUsage, value)
			}
			c.timeout = d
		case "insecure-https":
			return c, "", fmt.Errorf("%w: --insecure-https is not offered by this runner's %s: give the CA with --additional-ca-cert-bundle", errUsage, Name)
		}
	}
	if i < len(args) && args[i] == "--" {
		i++
	}
	if i >= len(args) {
		return c, "", errHelp
	}
	cmd := args[i]
	i++
	if cmd != "create" {
		return c, cmd, nil
	}
	for i < len(args) {
		name, value, ok, err := next(createFlags)
		if err != nil {
			return c, cmd, err
		}
		if !ok {
			return c, cmd, fmt.Errorf("%w: unexpected argument %q", errUsage, args[i])
		}
		switch name {
		case "help", "h":
			return c, cmd, errHelp
		case "name":
			c.req.Name = value
		case "description":
			c.req.Description = value
		case "tag-name":
			c.req.TagName = value
		case "tag-message":
			c.req.TagMessage = value
		case "ref":
			c.req.Ref = value
		case "milestone":
			c.req.Milestones = append(c.req.Milestones, value)
		case "released-at":
			t, err := time.Parse(time.RFC3339, value)
			if err != nil {
				return c, cmd, fmt.Errorf("%w: --released-at %q is not an ISO 8601 time such as 2019-03-15T08:00:00Z", errUsage, value)
			}
			c.req.ReleasedAt = &t
		case "assets-link":
			var l gitlab.ReleaseLink
			if err := json.Unmarshal([]byte(value), &l); err != nil {
				return c, cmd, fmt.Errorf("%w: --assets-link: invalid JSON: %q", errUsage, value)
			}
			if c.req.Assets == nil {
				c.req.Assets = &gitlab.ReleaseAssets{}
			}
			c.req.Assets.Links = append(c.req.Assets.Links, l)
		case "assets-links-name":
			c.linkNames = append(c.linkNames, value)
		case "assets-links-url":
			c.linkURLs = append(c.linkURLs, value)
		case "catalog-publish":
			c.catalogPublish = value == "" || value == "true" || value == "1"
		}
	}
	if c.req.Assets == nil && len(c.linkNames)+len(c.linkURLs) > 0 {
		if len(c.linkNames) != len(c.linkURLs) {
			return c, cmd, fmt.Errorf("%w: mismatch length --assets-links-name (%d) and --assets-links-url (%d) should be equal", errUsage, len(c.linkNames), len(c.linkURLs))
		}
		c.req.Assets = &gitlab.ReleaseAssets{}
		for k := range c.linkNames {
			c.req.Assets.Links = append(c.req.Assets.Links, gitlab.ReleaseLink{Name: c.linkNames[k], URL: c.linkURLs[k]})
		}
	}
	if c.req.TagName == "" {
		return c, cmd, fmt.Errorf("%w: Required flag \"tag-name\" not set (nor CI_COMMIT_TAG)", errUsage)
	}
	return c, cmd, nil
}

// run creates the release.
func (c create) run(ctx context.Context, env Env) (gitlab.Release, error) {
	if c.jobToken == "" {
		return gitlab.Release{}, errors.New("access token not provided: CI_JOB_TOKEN is empty")
	}
	id, err := strconv.ParseInt(c.projectID, 10, 64)
	if err != nil || id <= 0 {
		return gitlab.Release{}, fmt.Errorf("project id %q is not a project's numeric id (CI_PROJECT_ID)", c.projectID)
	}
	req := c.req
	if req.Description, err = description(req.Description); err != nil {
		return gitlab.Release{}, err
	}
	opts := gitlab.Options{MaxAttempts: 3}
	if opts.RootCAs, err = rootCAs(env("CI_SERVER_TLS_CA_FILE"), c.caBundle); err != nil {
		return gitlab.Release{}, err
	}
	client, err := gitlab.New(c.serverURL, opts)
	if err != nil {
		return gitlab.Release{}, fmt.Errorf("server URL (CI_SERVER_URL): %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return client.CreateRelease(ctx, id, c.jobToken, req)
}

// description is the release's description: the contents of a file of
// the working directory when it names one and has no whitespace, as
// release-cli reads it; the text itself otherwise.
func description(d string) (string, error) {
	if d == "" || strings.ContainsAny(d, " \t\r\n") {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return d, nil
	}
	p := filepath.Clean(filepath.Join(wd, d))
	if filepath.IsAbs(d) {
		p = filepath.Clean(d)
	}
	rel, err := filepath.Rel(wd, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return d, nil
	}
	fi, err := os.Stat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return d, nil
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("read description file %s: %w", d, err)
	}
	return string(b), nil
}

// rootCAs is the system pool with the runner's CA (CI_SERVER_TLS_CA_FILE)
// and ADDITIONAL_CA_CERT_BUNDLE (PEM, or the path of a PEM file) added;
// nil when there is neither.
func rootCAs(caFile, bundle string) (*x509.CertPool, error) {
	var pems [][]byte
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CI_SERVER_TLS_CA_FILE: %w", err)
		}
		pems = append(pems, b)
	}
	if bundle != "" {
		if strings.Contains(bundle, "-----BEGIN") {
			pems = append(pems, []byte(bundle))
		} else {
			b, err := os.ReadFile(bundle)
			if err != nil {
				return nil, fmt.Errorf("read --additional-ca-cert-bundle: %w", err)
			}
			pems = append(pems, b)
		}
	}
	if len(pems) == 0 {
		return nil, nil
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, p := range pems {
		if !pool.AppendCertsFromPEM(p) {
			return nil, errors.New("the CA certificate bundle holds no PEM certificate")
		}
	}
	return pool, nil
}

// field is one key=value of a log line.
type field struct{ key, value string }

func (c create) fields() []field {
	fs := []field{
		{"name", c.req.Name}, {"project-id", c.projectID}, {"ref", c.req.Ref},
		{"server-url", c.serverURL}, {"tag-message", c.req.TagMessage}, {"tag-name", c.req.TagName},
	}
	if len(c.req.Milestones) > 0 {
		fs = append(fs, field{"milestones", strings.Join(c.req.Milestones, ",")})
	}
	if c.req.Assets != nil {
		fs = append(fs, field{"assets-links", strconv.Itoa(len(c.req.Assets.Links))})
	}
	return fs
}

// logger writes log lines in the text form release-cli's logger prints
// when its output is not a terminal:
// time="…" level=info msg="…" cli=release-cli command=create key=value….
type logger struct {
	w       io.Writer
	now     func() time.Time
	version string
}

func (l logger) line(level, cmd, msg string, fields []field) {
	all := append([]field{{"cli", Name}, {"command", cmd}, {"version", l.version}}, fields...)
	slices.SortStableFunc(all, func(a, b field) int { return strings.Compare(a.key, b.key) })
	var b strings.Builder
	fmt.Fprintf(&b, "time=%s level=%s msg=%s", quote(l.now().UTC().Format(time.RFC3339)), level, quote(msg))
	for _, f := range all {
		fmt.Fprintf(&b, " %s=%s", f.key, quote(f.value))
	}
	b.WriteByte('\n')
	_, _ = io.WriteString(l.w, b.String())
}

func (l logger) info(cmd, msg string, fields []field) { l.line("info", cmd, msg, fields) }
func (l logger) warn(cmd, msg string, fields []field) { l.line("warning", cmd, msg, fields) }
func (l logger) fatal(cmd string, fields []field, err error) {
	l.line("fatal", cmd, "run app", append(fields, field{"error", err.Error()}))
}

// quote quotes a value as the logger does: bare when it is made of
// letters, digits and -._/@^+ only, in Go's double quotes otherwise.
func quote(s string) string {
	if s == "" {
		return ""
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._/@^+", r)) {
			return strconv.Quote(s)
		}
	}
	return s
}
