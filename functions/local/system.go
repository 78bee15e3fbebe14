package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"gitlab-serverless-runner/pkg/auth/devoidc"
	"gitlab-serverless-runner/pkg/dynamolocal"
	"gitlab-serverless-runner/pkg/invoke"
	"gitlab-serverless-runner/pkg/jobimage"
	"gitlab-serverless-runner/pkg/localimage"
	"gitlab-serverless-runner/pkg/rootfs"
	"gitlab-serverless-runner/pkg/scheduler"
	"gitlab-serverless-runner/pkg/seal"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/sweeper"
	"gitlab-serverless-runner/pkg/web"
)

// Names of the in-process functions, as the deployed functions are named
// in the template.
const (
	pollerFunction   = "poller"
	finisherFunction = "finisher"
)

// Files kept in the data directory.
const (
	sessionKeyFile = "session.key"
	sealingKeyFile = "sealing.key"
	oidcAddrFile   = "dev-oidc.addr"
	dynamoDir      = "dynamodb"
	jobsDirName    = "jobs"
	cacheDirName   = "cache"
	imagesDirName  = "images"
)

// shutdownGrace bounds each step of the shutdown: the HTTP server's
// in-flight requests, and the jobs finishing after their cancellation.
const shutdownGrace = 30 * time.Second

// System is the whole product running in this process: DynamoDB Local,
// the web UI (with the development sign-in when no OIDC issuer is
// configured), the scheduler on a ticker, and the poller, executor and
// finisher as in-process functions.
type System struct {
	cfg   Config
	log   *slog.Logger
	url   string
	db    *dynamolocal.Server // nil when DYNAMODB_ENDPOINT names another server
	idp   *devoidc.Provider   // nil with a real OIDC issuer
	store *store.Store
	inv   *invoke.Local
	srv   *http.Server
	sched *scheduler.Scheduler
	sweep *sweeper.Sweeper
	cache *localCache

	workDir string // the data directory, or a temporary one
	jobsDir string
	images  *localimage.Images

	// stopping is cancelled when shutdown begins: in-process invocations
	// run without their caller's cancellation, as on Lambda, so they
	// watch this instead.
	stopping context.Context
	stop     context.CancelFunc

	done    chan struct{}
	errMu   sync.Mutex
	err     error
	cleanup []func()
}

// Start starts every part and returns once the UI answers. The system
// runs until ctx is cancelled (Ctrl-C in Main) or the HTTP server fails;
// Wait returns then, after everything Start started has stopped.
func Start(ctx context.Context, cfg Config) (_ *System, err error) {
	cfg = cfg.withDefaults()
	if cfg, err = cfg.absolute(); err != nil {
		return nil, err
	}
	s := &System{cfg: cfg, log: cfg.Logger, done: make(chan struct{})}
	s.stopping, s.stop = context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		if err != nil {
			s.stop()
			s.runCleanup()
		}
	}()
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("local: create data directory: %w", err)
		}
	}
	if cfg.DevSignIn {
		if err := checkLoopback(cfg.Addr); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("local: listen on %s (set LOCAL_ADDR to another address): %w", cfg.Addr, err)
	}
	s.cleanup = append(s.cleanup, func() { ln.Close() })
	s.url = "http://" + ln.Addr().String()
	if cfg.Web.BaseURL == "" {
		cfg.Web.BaseURL = s.url
	}

	db, err := s.startDynamoDB(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.openStore(ctx, db); err != nil {
		return nil, err
	}
	if err := s.configureKeys(&cfg.Web); err != nil {
		return nil, err
	}
	if cfg.DevSignIn {
		if err := s.startDevSignIn(&cfg.Web); err != nil {
			return nil, err
		}
	}
	sealer, err := seal.ParseKeys(cfg.Web.TokenSealingKeys)
	if err != nil {
		return nil, fmt.Errorf("local: parse TOKEN_SEALING_KEY: %w", err)
	}
	if err := s.prepareWorkDir(); err != nil {
		return nil, err
	}

	if s.cache, err = newLocalCache(filepath.Join(s.workDir, cacheDirName), s.url); err != nil {
		return nil, err
	}

	s.inv = invoke.NewLocal(invoke.LocalConfig{MaxConcurrent: cfg.MaxJobs, Logger: s.log.With("part", "invoke")})
	if err := s.registerFunctions(sealer); err != nil {
		return nil, err
	}
	scfg := cfg.Scheduler
	scfg.PollerFunction, scfg.Logger = pollerFunction, s.log.With("part", "scheduler")
	s.sched, err = scheduler.New(s.store, s.inv, scfg)
	if err != nil {
		return nil, fmt.Errorf("local: build scheduler: %w", err)
	}
	s.sweep = sweeper.New(s.store, s.store, sealer, sweeper.Config{URLPolicy: s.cfg.Poller.URLPolicy, Logger: s.log.With("part", "sweeper")})

	// GitLab's job webhooks start a poll at once, in process.
	cfg.Web.PollerFunction = pollerFunction
	weblog := s.log.With("part", "web")
	sessions, login, err := web.NewAuth(cfg.Web, weblog)
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	app, err := web.New(cfg.Web, web.Deps{
		Users: s.store, Runners: s.store, Jobs: s.store, Sealer: sealer,
		Sessions: sessions, Login: login, Invoker: s.inv, Logger: weblog,
	})
	if err != nil {
		return nil, fmt.Errorf("local: build web app: %w", err)
	}
	if s.idp != nil {
		app.Echo().Use(devBanner(devoidc.DefaultUser().Username))
	}
	mux := http.NewServeMux()
	mux.Handle(cachePath, s.cache)
	mux.Handle("/", app)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	serveErr := make(chan error, 1)
	go func() { serveErr <- s.srv.Serve(ln) }()
	schedDone := make(chan struct{})
	go func() { defer close(schedDone); s.scheduleLoop() }()
	go s.run(ctx, serveErr, schedDone)

	s.log.Info("local system ready", "url", s.url, "poll_interval", cfg.PollInterval.String(),
		"data_dir", cfg.DataDir, "dynamodb", s.dynamoEndpoint())
	if cfg.DataDir == "" {
		s.log.Info("no LOCAL_DATA_DIR: runners and jobs are kept in memory and lost when this process ends")
	}
	return s, nil
}

// URL returns the base URL the UI listens on, e.g. http://127.0.0.1:8080.
func (s *System) URL() string { return s.url }

// DynamoDBPID returns the process id of the DynamoDB Local this system
// started, or 0 when it uses a DynamoDB given by DYNAMODB_ENDPOINT.
func (s *System) DynamoDBPID() int {
	if s.db == nil {
		return 0
	}
	return s.db.PID()
}

// Wait blocks until the system has stopped and returns why it stopped
// abnormally; a stop through ctx's cancellation returns nil.
func (s *System) Wait() error {
	<-s.done
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// Run starts the system and runs it until ctx is cancelled.
func Run(ctx context.Context, cfg Config) error {
	s, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	return s.Wait()
}

// run waits for the end and shuts everything down in order: no new
// requests, no new polls, running jobs cancelled and their outcomes
// recorded, then the sign-in provider and DynamoDB.
func (s *System) run(ctx context.Context, serveErr <-chan error, schedDone <-chan struct{}) {
	defer close(s.done)
	var err error
	select {
	case <-ctx.Done():
		s.log.Info("stopping")
	case err = <-serveErr:
		err = fmt.Errorf("local: serve HTTP: %w", err)
		s.log.Error("web server failed; stopping", "error", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	if serr := s.srv.Shutdown(sctx); serr != nil {
		s.log.Warn("web server did not stop cleanly", "error", serr)
	}
	cancel()
	s.stop()
	<-schedDone
	invDone := make(chan struct{})
	go func() { s.inv.Wait(); close(invDone) }()
	select {
	case <-invDone:
	case <-time.After(shutdownGrace):
		s.log.Warn("some jobs did not finish after their cancellation; stopping anyway")
	}
	s.runCleanup()
	s.errMu.Lock()
	s.err = err
	s.errMu.Unlock()
	s.log.Info("stopped")
}

func (s *System) runCleanup() {
	for i := len(s.cleanup) - 1; i >= 0; i-- {
		s.cleanup[i]()
	}
	s.cleanup = nil
}

// scheduleLoop runs the scheduler now and then every PollInterval, as
// EventBridge would, until shutdown.
func (s *System) scheduleLoop() {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		if _, err := s.sweep.Sweep(s.stopping); err != nil && s.stopping.Err() == nil {
			s.log.Error("sweep failed", "part", "sweeper", "error", err)
		}
		sum, err := s.sched.Run(s.stopping)
		if err != nil && s.stopping.Err() == nil {
			s.log.Error("scheduler run failed", "part", "scheduler", "error", err)
		} else if sum.Runners > 0 {
			s.log.Debug("scheduler run", "part", "scheduler", "runners", sum.Runners, "invoked", sum.Invoked, "failed", sum.Failed)
		}
		select {
		case <-s.stopping.Done():
			return
		case <-t.C:
		}
	}
}

func (s *System) startDynamoDB(ctx context.Context) (*dynamodb.Client, error) {
	if s.cfg.Store.Endpoint != "" {
		if err := dynamolocal.WaitReady(ctx, s.cfg.Store.Endpoint, 10*time.Second); err != nil {
			return nil, fmt.Errorf("local: DYNAMODB_ENDPOINT does not answer: %w", err)
		}
		return dynamolocal.Client(s.cfg.Store.Endpoint), nil
	}
	opts := dynamolocal.Options{Jar: s.cfg.DynamoDBJar}
	if s.cfg.DataDir != "" {
		opts.DataDir = filepath.Join(s.cfg.DataDir, dynamoDir)
	}
	db, err := dynamolocal.Start(ctx, opts)
	if err != nil && opts.Jar != "" {
		return nil, fmt.Errorf("local: start DynamoDB Local from DYNAMODB_LOCAL_JAR: %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	s.db = db
	s.cleanup = append(s.cleanup, db.Stop)
	mode := "in memory"
	if opts.DataDir != "" {
		mode = opts.DataDir
	}
	s.log.Info("DynamoDB Local started", "endpoint", db.Endpoint(), "storage", mode, "pid", db.PID())
	return db.Client(), nil
}

// dynamoEndpoint is the DynamoDB in use, for the start-up log.
func (s *System) dynamoEndpoint() string {
	if s.db != nil {
		return s.db.Endpoint()
	}
	return s.cfg.Store.Endpoint
}

func (s *System) openStore(ctx context.Context, db *dynamodb.Client) error {
	st, err := store.New(db, s.cfg.Store)
	if err != nil {
		return fmt.Errorf("local: open store: %w", err)
	}
	if err := st.CreateTables(ctx); err != nil {
		return fmt.Errorf("local: create tables: %w", err)
	}
	s.store = st
	return nil
}

// configureKeys fills in the session and sealing keys that are not
// configured: kept in the data directory, so sessions and sealed runner
// tokens survive a restart, or generated for this run only.
func (s *System) configureKeys(w *web.Config) error {
	var err error
	if w.SessionKeys == "" {
		if w.SessionKeys, err = persisted(s.cfg.DataDir, sessionKeyFile, seal.GenerateKey); err != nil {
			return err
		}
	}
	if w.TokenSealingKeys == "" {
		if w.TokenSealingKeys, err = persisted(s.cfg.DataDir, sealingKeyFile, seal.GenerateKey); err != nil {
			return err
		}
	}
	return nil
}

// startDevSignIn starts the development OIDC provider and points the web
// app's sign-in at it. Its address is kept in the data directory: the
// issuer URL is part of every user's key, so a new port would make earlier
// users' runners someone else's.
func (s *System) startDevSignIn(w *web.Config) error {
	addr := s.cfg.OIDCAddr
	remembered := false
	if addr == "" && s.cfg.DataDir != "" {
		if b, err := os.ReadFile(filepath.Join(s.cfg.DataDir, oidcAddrFile)); err == nil {
			addr, remembered = strings.TrimSpace(string(b)), true
		}
	}
	p, err := devoidc.Start(devoidc.Options{Addr: addr})
	if err != nil && remembered {
		s.log.Warn("the development sign-in's previous address is taken; users get a new identity", "addr", addr, "error", err)
		p, err = devoidc.Start(devoidc.Options{})
	}
	if err != nil {
		return fmt.Errorf("local: start the development sign-in: %w", err)
	}
	s.idp = p
	s.cleanup = append(s.cleanup, func() { p.Close() })
	if s.cfg.DataDir != "" {
		if u, err := url.Parse(p.Issuer()); err == nil {
			if err := os.WriteFile(filepath.Join(s.cfg.DataDir, oidcAddrFile), []byte(u.Host+"\n"), 0o600); err != nil {
				s.log.Warn("cannot remember the development sign-in's address", "error", err)
			}
		}
	}
	w.OIDCIssuer, w.OIDCClientID, w.OIDCClientSecret = p.Issuer(), p.ClientID(), p.ClientSecret()
	s.log.Warn("DEVELOPMENT SIGN-IN: no OIDC_ISSUER is set, so a built-in test identity provider signs everyone in without a password",
		"issuer", p.Issuer(), "user", devoidc.DefaultUser().Username)
	return nil
}

// prepareWorkDir makes the directories of the jobs (each job gets its
// own under jobs/), of the cache and of the unpacked images: in the data
// directory, or in a temporary directory removed at shutdown. Image jobs
// get theirs under /tmp, removed at shutdown too.
func (s *System) prepareWorkDir() error {
	work := s.cfg.DataDir
	if work == "" {
		dir, err := os.MkdirTemp("", "gsr-local-")
		if err != nil {
			return fmt.Errorf("local: create work directory: %w", err)
		}
		work = dir
		s.cleanup = append(s.cleanup, func() { os.RemoveAll(dir) })
	}
	s.workDir = work
	s.jobsDir = filepath.Join(work, jobsDirName)
	if err := os.MkdirAll(s.jobsDir, 0o700); err != nil {
		return fmt.Errorf("local: create jobs directory: %w", err)
	}
	// Image jobs see their directories at the same paths as the executor,
	// which only /tmp allows (package localimage); their images are kept
	// with the rest of the data.
	imageJobs, err := os.MkdirTemp("/tmp", "gsr-local-jobs-")
	if err != nil {
		return fmt.Errorf("local: create image jobs directory: %w", err)
	}
	s.cleanup = append(s.cleanup, func() { os.RemoveAll(imageJobs) })
	s.images = &localimage.Images{
		// A developer's machine: jobs may name registries on it or on
		// its network, as docker would pull from them.
		Resolver:  &jobimage.Resolver{AllowPrivateRegistries: true},
		Cache:     &rootfs.Cache{Dir: filepath.Join(work, imagesDirName)},
		JobsDir:   imageJobs,
		KillGrace: s.cfg.Executor.KillGrace,
	}
	return nil
}
