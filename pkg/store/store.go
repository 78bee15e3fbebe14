// Package store owns the persistence of users, runners, jobs and runner
// concurrency slots in DynamoDB, through guregu/dynamo. It implements the
// runner package's UserStore, RunnerStore and JobStore contracts; every
// conditional write that fails maps to a coded runner.Error.
package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/guregu/dynamo/v2"

	"gitlab-serverless-runner/pkg/envvar"
	"gitlab-serverless-runner/pkg/retry"
	"gitlab-serverless-runner/pkg/runner"
)

// Defaults for the zero Config.
const (
	DefaultJobRetention = 90 * 24 * time.Hour
	DefaultScanSegments = 4
	// DefaultTablePrefix prefixes the table names when neither
	// TABLE_PREFIX nor a table's own variable is set.
	DefaultTablePrefix = "gsr-"
)

// Config configures a Store. The zero value of every field but Tables is a
// usable default.
type Config struct {
	// Tables names the tables; see Prefixed.
	Tables TableNames
	// Endpoint replaces DynamoDB's endpoint (DYNAMODB_ENDPOINT), e.g.
	// DynamoDB Local's address. New does not read it: the caller builds
	// the client New takes with it.
	Endpoint string
	// MaxRunnersPerUser is MAX_REGISTABLE_RUNNER_COUNT; 0 means no limit.
	MaxRunnersPerUser int
	// JobRetention is how long job records are kept (DefaultJobRetention).
	JobRetention time.Duration
	// ScanSegments is the number of parallel scan segments for
	// ScanEnabledRunners (DefaultScanSegments).
	ScanSegments int
	// Now returns the current time (time.Now); tests move it to expire
	// leases without waiting.
	Now func() time.Time
}

// Store is the DynamoDB implementation of the runner package's storage
// contracts. It is safe for concurrent use.
type Store struct {
	client  *dynamodb.Client
	db      *dynamo.DB
	tables  TableNames
	users   dynamo.Table
	runners dynamo.Table
	jobs    dynamo.Table
	slots   dynamo.Table

	maxRunners   int
	retention    time.Duration
	scanSegments int
	now          func() time.Time
}

var (
	_ runner.UserStore   = (*Store)(nil)
	_ runner.RunnerStore = (*Store)(nil)
	_ runner.JobStore    = (*Store)(nil)
)

// ConfigFromEnv reads the tables' names and the endpoint through lookup
// (os.LookupEnv when nil): TABLE_PREFIX (DefaultTablePrefix), then
// USERS_TABLE, RUNNERS_TABLE, JOBS_TABLE and SLOTS_TABLE, each defaulting
// to the prefix and its suffix, and DYNAMODB_ENDPOINT.
func ConfigFromEnv(lookup envvar.Lookup) (Config, error) {
	r := envvar.New(lookup)
	t := Prefixed(r.StringOr("TABLE_PREFIX", DefaultTablePrefix))
	t.Users = r.StringOr("USERS_TABLE", t.Users)
	t.Runners = r.StringOr("RUNNERS_TABLE", t.Runners)
	t.Jobs = r.StringOr("JOBS_TABLE", t.Jobs)
	t.Slots = r.StringOr("SLOTS_TABLE", t.Slots)
	return Config{Tables: t, Endpoint: r.String("DYNAMODB_ENDPOINT")}, r.Err("store")
}

// New returns a Store using client and the tables named in cfg.
func New(client *dynamodb.Client, cfg Config) (*Store, error) {
	if client == nil {
		return nil, errors.New("store: no DynamoDB client")
	}
	if err := cfg.Tables.validate(); err != nil {
		return nil, err
	}
	if cfg.MaxRunnersPerUser < 0 {
		return nil, fmt.Errorf("store: max runners per user is %d, want 0 (no limit) or more", cfg.MaxRunnersPerUser)
	}
	s := &Store{
		client:       client,
		db:           dynamo.NewFromIface(client),
		tables:       cfg.Tables,
		maxRunners:   cfg.MaxRunnersPerUser,
		retention:    cfg.JobRetention,
		scanSegments: cfg.ScanSegments,
		now:          cfg.Now,
	}
	if s.retention <= 0 {
		s.retention = DefaultJobRetention
	}
	if s.scanSegments <= 0 {
		s.scanSegments = DefaultScanSegments
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.users = s.db.Table(cfg.Tables.Users)
	s.runners = s.db.Table(cfg.Tables.Runners)
	s.jobs = s.db.Table(cfg.Tables.Jobs)
	s.slots = s.db.Table(cfg.Tables.Slots)
	return s, nil
}

// TableNames returns the names of the tables the store uses.
func (s *Store) TableNames() TableNames { return s.tables }

// notFound returns the ENOTFOUND error for a kind of thing.
func notFound(what string) error {
	return runner.Errorf(runner.ENOTFOUND, "%s not found.", what)
}

// txReason returns the cancellation reason code of item i of a cancelled
// transaction, or "".
func txReason(err error, i int) string {
	var txe *types.TransactionCanceledException
	if !errors.As(err, &txe) || i >= len(txe.CancellationReasons) {
		return ""
	}
	if c := txe.CancellationReasons[i].Code; c != nil {
		return *c
	}
	return ""
}

// isTxConflict reports whether a transaction was cancelled only because
// another transaction touched the same items; such a transaction is worth
// running again.
func isTxConflict(err error) bool {
	var txe *types.TransactionCanceledException
	if !errors.As(err, &txe) {
		var ipe *types.TransactionInProgressException
		return errors.As(err, &ipe)
	}
	conflict := false
	for _, r := range txe.CancellationReasons {
		if r.Code == nil {
			continue
		}
		switch *r.Code {
		case "TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded":
			conflict = true
		case "None", "":
		default:
			return false
		}
	}
	return conflict
}

// runTx runs a write transaction built by build, again after a short
// random pause while it conflicts with concurrent transactions.
func (s *Store) runTx(ctx context.Context, build func() *dynamo.WriteTx) error {
	const attempts = 12
	var err error
	for attempt := range attempts {
		err = build().Run(ctx)
		if err == nil || !isTxConflict(err) {
			return err
		}
		pause := time.Duration(5+rand.IntN(20*(attempt+1))) * time.Millisecond
		if err := retry.Sleep(ctx, pause); err != nil {
			return err
		}
	}
	return err
}
