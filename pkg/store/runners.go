package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/guregu/dynamo/v2"

	"gitlab-serverless-runner/pkg/runner"
)

// runnerItem is a runner as stored in the runners table. Health is kept in
// top-level attributes so the poller can write it without touching the
// settings a user edits.
type runnerItem struct {
	ID                string     `dynamo:"id,hash"`
	Owner             string     `dynamo:"owner"`
	GitLabURL         string     `dynamo:"gitlab_url"`
	GitLabRunnerID    int64      `dynamo:"gitlab_runner_id"`
	SealedToken       []byte     `dynamo:"sealed_token,omitempty"`
	TokenObtainedAt   *time.Time `dynamo:"token_obtained_at,omitempty"`
	TokenExpiresAt    *time.Time `dynamo:"token_expires_at,omitempty"`
	Description       string     `dynamo:"description,omitempty"`
	Tags              []string   `dynamo:"tags,omitempty"`
	RunUntagged       bool       `dynamo:"run_untagged"`
	Locked            bool       `dynamo:"locked"`
	AccessLevel       string     `dynamo:"access_level,omitempty"`
	MaximumTimeout    int        `dynamo:"maximum_timeout"`
	Runtime           string     `dynamo:"runtime"`
	Concurrency       int        `dynamo:"concurrency"`
	Paused            bool       `dynamo:"paused"`
	LongPollSeconds   int        `dynamo:"long_poll_seconds"`
	CAPEM             string     `dynamo:"ca_pem,omitempty"`
	OutputLimitKiB    int        `dynamo:"output_limit_kib,omitempty"`
	WebhookSecretHash string     `dynamo:"webhook_secret_hash,omitempty"`
	SystemID          string     `dynamo:"system_id"`
	LastUpdate        string     `dynamo:"last_update,omitempty"`
	LastContactAt     *time.Time `dynamo:"last_contact_at,omitempty"`
	LastError         string     `dynamo:"last_error,omitempty"`
	LastErrorAt       *time.Time `dynamo:"last_error_at,omitempty"`
	CreatedAt         int64      `dynamo:"created_at"` // unix nanoseconds: the owner index's range key
	UpdatedAt         time.Time  `dynamo:"updated_at"`
	Version           int64      `dynamo:"version"`
	CreationMode      string     `dynamo:"creation_mode,omitempty"`
}

func toRunnerItem(r *runner.Runner) runnerItem {
	return runnerItem{
		ID:                r.ID,
		Owner:             r.Owner,
		GitLabURL:         r.GitLabURL,
		GitLabRunnerID:    r.GitLabRunnerID,
		SealedToken:       r.SealedToken,
		TokenObtainedAt:   utcPtr(r.TokenObtainedAt),
		TokenExpiresAt:    utcPtr(r.TokenExpiresAt),
		Description:       r.Description,
		Tags:              r.Tags,
		RunUntagged:       r.RunUntagged,
		Locked:            r.Locked,
		AccessLevel:       r.AccessLevel,
		MaximumTimeout:    r.MaximumTimeout,
		Runtime:           r.Runtime,
		Concurrency:       r.Concurrency,
		Paused:            r.Paused,
		LongPollSeconds:   r.LongPollSeconds,
		CAPEM:             r.CAPEM,
		OutputLimitKiB:    r.OutputLimitKiB,
		WebhookSecretHash: r.WebhookSecretHash,
		SystemID:          r.SystemID,
		LastUpdate:        r.LastUpdate,
		LastContactAt:     utcPtr(r.Health.LastContactAt),
		LastError:         r.Health.LastError,
		LastErrorAt:       utcPtr(r.Health.LastErrorAt),
		CreatedAt:         r.CreatedAt.UnixNano(),
		UpdatedAt:         r.UpdatedAt.UTC(),
		Version:           r.Version,
		CreationMode:      r.CreationMode,
	}
}

func (it runnerItem) domain() *runner.Runner {
	return &runner.Runner{
		ID:                it.ID,
		Owner:             it.Owner,
		GitLabURL:         it.GitLabURL,
		GitLabRunnerID:    it.GitLabRunnerID,
		SealedToken:       it.SealedToken,
		TokenObtainedAt:   it.TokenObtainedAt,
		TokenExpiresAt:    it.TokenExpiresAt,
		Description:       it.Description,
		Tags:              it.Tags,
		RunUntagged:       it.RunUntagged,
		Locked:            it.Locked,
		AccessLevel:       it.AccessLevel,
		MaximumTimeout:    it.MaximumTimeout,
		Runtime:           it.Runtime,
		Concurrency:       it.Concurrency,
		Paused:            it.Paused,
		LongPollSeconds:   it.LongPollSeconds,
		CAPEM:             it.CAPEM,
		OutputLimitKiB:    it.OutputLimitKiB,
		WebhookSecretHash: it.WebhookSecretHash,
		SystemID:          it.SystemID,
		LastUpdate:        it.LastUpdate,
		Health: runner.Health{
			LastContactAt: it.LastContactAt,
			LastError:     it.LastError,
			LastErrorAt:   it.LastErrorAt,
		},
		CreatedAt:    time.Unix(0, it.CreatedAt).UTC(),
		UpdatedAt:    it.UpdatedAt,
		Version:      it.Version,
		CreationMode: it.CreationMode,
	}
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// CreateRunner stores r and counts it against its owner's runner limit in
// one transaction: the owner's runner_count is raised only while it is
// below the limit, and the runner is written only if its id is new. Under
// any number of concurrent calls, at most MaxRunnersPerUser succeed.
// An empty r.ID or r.SystemID is generated; r.CreatedAt, r.UpdatedAt and
// r.Version are set.
func (s *Store) CreateRunner(ctx context.Context, r *runner.Runner) error {
	if r.Owner == "" {
		return runner.Errorf(runner.EINVALID, "A runner needs an owner.")
	}
	if r.ID == "" {
		r.ID = runner.NewID()
	}
	if r.SystemID == "" {
		r.SystemID = runner.NewSystemID()
	}
	if r.Concurrency < 1 {
		r.Concurrency = 1
	}
	now := s.now().UTC()
	r.CreatedAt, r.UpdatedAt, r.Version = now, now, 1
	item := toRunnerItem(r)

	err := s.runTx(ctx, func() *dynamo.WriteTx {
		count := s.users.Update("sub", r.Owner).Add("runner_count", 1).Set("updated_at", now)
		if s.maxRunners > 0 {
			count = count.If("attribute_not_exists('runner_count') OR 'runner_count' < ?", s.maxRunners)
		}
		put := s.runners.Put(item).If("attribute_not_exists('id')")
		return s.db.WriteTx().Update(count).Put(put)
	})
	switch {
	case err == nil:
		return nil
	case txReason(err, 0) == "ConditionalCheckFailed":
		return fmt.Errorf("store: create runner: %w", runner.Errorf(runner.ELIMIT,
			"You have reached the limit of %d runners. Delete one to register another.", s.maxRunners))
	case txReason(err, 1) == "ConditionalCheckFailed":
		return fmt.Errorf("store: create runner %s: %w", r.ID, runner.Errorf(runner.ECONFLICT, "A runner with this id exists."))
	}
	return fmt.Errorf("store: create runner %s: %w", r.ID, err)
}

// DeleteRunner deletes the owner's runner and lowers the owner's runner
// count in one transaction. Another owner's runner is ENOTFOUND.
func (s *Store) DeleteRunner(ctx context.Context, owner, id string) error {
	err := s.runTx(ctx, func() *dynamo.WriteTx {
		del := s.runners.Delete("id", id).If("'owner' = ?", owner)
		count := s.users.Update("sub", owner).Add("runner_count", -1).Set("updated_at", s.now().UTC())
		return s.db.WriteTx().Delete(del).Update(count)
	})
	if txReason(err, 0) == "ConditionalCheckFailed" {
		return fmt.Errorf("store: delete runner %s: %w", id, notFound("Runner"))
	}
	if err != nil {
		return fmt.Errorf("store: delete runner %s: %w", id, err)
	}
	return nil
}

// GetRunner returns the runner with the given id, whoever owns it.
func (s *Store) GetRunner(ctx context.Context, id string) (*runner.Runner, error) {
	var item runnerItem
	err := s.runners.Get("id", id).Consistent(true).One(ctx, &item)
	if errors.Is(err, dynamo.ErrNotFound) {
		return nil, fmt.Errorf("store: get runner %s: %w", id, notFound("Runner"))
	}
	if err != nil {
		return nil, fmt.Errorf("store: get runner %s: %w", id, err)
	}
	return item.domain(), nil
}

// GetRunnerForOwner returns the runner if owner owns it. A runner of
// another owner is ENOTFOUND, exactly like a missing one.
func (s *Store) GetRunnerForOwner(ctx context.Context, owner, id string) (*runner.Runner, error) {
	r, err := s.GetRunner(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.Owner != owner {
		return nil, fmt.Errorf("store: get runner %s: %w", id, notFound("Runner"))
	}
	return r, nil
}

// ListRunnersByOwner returns the owner's runners, newest first, through
// the owner index.
func (s *Store) ListRunnersByOwner(ctx context.Context, owner string) ([]*runner.Runner, error) {
	var items []runnerItem
	err := s.runners.Get("owner", owner).Index(OwnerIndex).Order(dynamo.Descending).All(ctx, &items)
	if err != nil {
		return nil, fmt.Errorf("store: list runners: %w", err)
	}
	out := make([]*runner.Runner, len(items))
	for i, it := range items {
		out[i] = it.domain()
	}
	return out, nil
}

// UpdateRunner writes the settings a user may change (description, tags,
// run-untagged, locked, access level, maximum timeout, runtime,
// concurrency, paused, long polling, webhook secret) if r.Owner owns the
// runner and r.Version is the stored version; on success r.Version and
// r.UpdatedAt advance. A stale version is ECONFLICT; a missing runner or
// one of another owner is ENOTFOUND. Health, last update and the token are
// not written and do not change the version.
func (s *Store) UpdateRunner(ctx context.Context, r *runner.Runner) error {
	if r.Concurrency < 1 {
		return runner.Errorf(runner.EINVALID, "Concurrency must be at least 1.")
	}
	now := s.now().UTC()
	err := s.runners.Update("id", r.ID).
		Set("description", r.Description).
		Set("tags", r.Tags).
		Set("run_untagged", r.RunUntagged).
		Set("locked", r.Locked).
		Set("access_level", r.AccessLevel).
		Set("maximum_timeout", r.MaximumTimeout).
		Set("runtime", r.Runtime).
		Set("concurrency", r.Concurrency).
		Set("paused", r.Paused).
		Set("long_poll_seconds", r.LongPollSeconds).
		Set("ca_pem", r.CAPEM).
		Set("output_limit_kib", r.OutputLimitKiB).
		Set("webhook_secret_hash", r.WebhookSecretHash).
		Set("updated_at", now).
		Set("version", r.Version+1).
		If("attribute_exists('id') AND 'owner' = ? AND 'version' = ?", r.Owner, r.Version).
		Run(ctx)
	if dynamo.IsCondCheckFailed(err) {
		// Tell a stale version from a runner that is not there for this owner.
		if _, gerr := s.GetRunnerForOwner(ctx, r.Owner, r.ID); gerr != nil {
			return gerr
		}
		return fmt.Errorf("store: update runner %s: %w", r.ID, runner.Errorf(runner.ECONFLICT,
			"The runner was changed by someone else. Reload it and try again."))
	}
	if err != nil {
		return fmt.Errorf("store: update runner %s: %w", r.ID, err)
	}
	r.Version++
	r.UpdatedAt = now
	return nil
}

// UpdateHealth records the poller's last contact and last error.
func (s *Store) UpdateHealth(ctx context.Context, id string, h runner.Health) error {
	u := s.runners.Update("id", id).If("attribute_exists('id')")
	setTime(u, "last_contact_at", h.LastContactAt)
	setTime(u, "last_error_at", h.LastErrorAt)
	u.Set("last_error", h.LastError)
	return s.runUpdate(ctx, u, "update health of runner "+id)
}

// SetLastUpdate records GitLab's X-GitLab-Last-Update value for the runner.
func (s *Store) SetLastUpdate(ctx context.Context, id, lastUpdate string) error {
	u := s.runners.Update("id", id).Set("last_update", lastUpdate).If("attribute_exists('id')")
	return s.runUpdate(ctx, u, "set last update of runner "+id)
}

// RotateToken replaces the runner's sealed token and its validity times,
// but only while the stored sealed token is still oldSealed, the one the
// caller read before resetting the token in GitLab (an empty oldSealed
// means the runner had none). Two pollers that both rotate cannot both
// save: the later one gets ECONFLICT and should read the runner again. A
// missing runner is ENOTFOUND.
func (s *Store) RotateToken(ctx context.Context, id string, oldSealed, sealed []byte, obtainedAt, expiresAt *time.Time) error {
	if len(sealed) == 0 {
		return runner.Errorf(runner.EINVALID, "A runner token is required.")
	}
	u := s.runners.Update("id", id).Set("sealed_token", sealed)
	if len(oldSealed) == 0 {
		u.If("attribute_exists('id') AND attribute_not_exists('sealed_token')")
	} else {
		u.If("attribute_exists('id') AND 'sealed_token' = ?", oldSealed)
	}
	setTime(u, "token_obtained_at", obtainedAt)
	setTime(u, "token_expires_at", expiresAt)
	err := u.Run(ctx)
	if dynamo.IsCondCheckFailed(err) {
		// Tell a token changed since it was read from a missing runner.
		if _, gerr := s.GetRunner(ctx, id); gerr != nil {
			return fmt.Errorf("store: rotate token of runner %s: %w", id, gerr)
		}
		return fmt.Errorf("store: rotate token of runner %s: %w", id, runner.Errorf(runner.ECONFLICT,
			"The runner token was changed by someone else since it was read."))
	}
	if err != nil {
		return fmt.Errorf("store: rotate token of runner %s: %w", id, err)
	}
	return nil
}

func setTime(u *dynamo.Update, attr string, t *time.Time) {
	if t == nil {
		u.Remove(attr)
		return
	}
	u.Set(attr, t.UTC())
}

// runUpdate runs an update conditioned on the runner's existence.
func (s *Store) runUpdate(ctx context.Context, u *dynamo.Update, what string) error {
	err := u.Run(ctx)
	if dynamo.IsCondCheckFailed(err) {
		return fmt.Errorf("store: %s: %w", what, notFound("Runner"))
	}
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	return nil
}

// ScanEnabledRunners calls fn for every runner that is not paused. The
// table is read in ScanSegments parallel segments, page by page; fn is
// called from the calling goroutine, one runner at a time. An error from
// fn stops the scan and is returned as is.
func (s *Store) ScanEnabledRunners(ctx context.Context, fn func(*runner.Runner) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	it := s.runners.Scan().
		Filter("attribute_not_exists('paused') OR 'paused' = ?", false).
		IterParallel(ctx, s.scanSegments)
	var item runnerItem
	for it.Next(ctx, &item) {
		if err := fn(item.domain()); err != nil {
			return err
		}
		item = runnerItem{}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("store: scan runners: %w", err)
	}
	return nil
}
