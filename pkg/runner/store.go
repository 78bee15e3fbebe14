package runner

import (
	"context"
	"time"
)

// UserStore keeps users. The web application calls it on login.
// Implementations are safe for concurrent use.
type UserStore interface {
	// UpsertUser creates the user on first login or updates the username,
	// and returns the stored user with its runner count.
	UpsertUser(ctx context.Context, sub, username string) (*User, error)
	// GetUser returns the user or an ENOTFOUND error.
	GetUser(ctx context.Context, sub string) (*User, error)
}

// RunnerStore keeps runners. The web application uses the owner-scoped
// methods; the scheduler scans; the poller reads one runner and records what
// it saw. Errors carry codes: ENOTFOUND for a runner that does not exist or
// belongs to someone else, ECONFLICT for a stale or duplicate write, ELIMIT
// when the owner has reached the runner limit. Implementations are safe for
// concurrent use, and the limit holds under concurrent CreateRunner calls.
type RunnerStore interface {
	// CreateRunner stores a new runner and counts it against its owner's
	// limit, atomically. r.ID, r.Owner and r.SystemID must be set;
	// CreatedAt, UpdatedAt and Version are set by the store.
	CreateRunner(ctx context.Context, r *Runner) error
	// GetRunner returns any runner by id; for internal callers only.
	GetRunner(ctx context.Context, id string) (*Runner, error)
	// GetRunnerForOwner returns the runner if owner owns it, else ENOTFOUND.
	GetRunnerForOwner(ctx context.Context, owner, id string) (*Runner, error)
	// ListRunnersByOwner returns the owner's runners, newest first.
	ListRunnersByOwner(ctx context.Context, owner string) ([]*Runner, error)
	// UpdateRunner writes the user-editable settings of r if r.Owner owns
	// it and r.Version is the stored version (ECONFLICT otherwise), then
	// advances r.Version and r.UpdatedAt.
	UpdateRunner(ctx context.Context, r *Runner) error
	// DeleteRunner removes the owner's runner and frees room in the limit.
	DeleteRunner(ctx context.Context, owner, id string) error
	// ScanEnabledRunners calls fn once for every runner that is not paused,
	// one call at a time. An error from fn stops the scan and is returned.
	ScanEnabledRunners(ctx context.Context, fn func(*Runner) error) error
	// UpdateHealth records the poller's last contact and error.
	UpdateHealth(ctx context.Context, id string, h Health) error
	// SetLastUpdate records GitLab's X-GitLab-Last-Update value.
	SetLastUpdate(ctx context.Context, id, lastUpdate string) error
	// RotateToken replaces the sealed token after GitLab reset it, only
	// while the stored sealed token is still oldSealed, the one the caller
	// read: ECONFLICT otherwise, so two concurrent rotations cannot both
	// be saved.
	RotateToken(ctx context.Context, id string, oldSealed, sealed []byte, obtainedAt, expiresAt *time.Time) error
}

// JobStore keeps job records and the runners' concurrency slots. The poller
// acquires a slot and claims jobs, the finisher finishes jobs and releases
// slots, the web application lists jobs. Implementations are safe for
// concurrent use; deliveries are at-least-once, so the writes are
// conditional: claiming a job twice is ECONFLICT, finishing it twice is
// ECONFLICT, releasing a slot twice is not an error.
type JobStore interface {
	// AcquireSlot takes a free slot of the runner, one of concurrency, for
	// lease. ok is false when all slots are held by unexpired leases. A slot
	// whose holder crashed frees itself when its lease expires.
	AcquireSlot(ctx context.Context, runnerID string, concurrency int, lease time.Duration) (slot Slot, ok bool, err error)
	// RenewSlot records the job running in the slot and extends its lease
	// to expiresAt; ECONFLICT if the slot is no longer held by slot.Token.
	RenewSlot(ctx context.Context, slot *Slot, jobID int64, expiresAt time.Time) error
	// ReleaseSlot frees the slot if slot.Token still holds it.
	ReleaseSlot(ctx context.Context, slot Slot) error
	// ClaimJob stores a new job record; ECONFLICT if the job was claimed
	// before.
	ClaimJob(ctx context.Context, j *Job) error
	// ReclaimJob replaces the record of a job claimed before with j, for a
	// new assignment of the same job (GitLab re-queued it and offered it
	// again with a new job token), only while the stored JobTokenHash is
	// still oldJobTokenHash: ECONFLICT otherwise, so two concurrent
	// re-claims of one assignment cannot both win. j.JobTokenHash must
	// be set and differ from oldJobTokenHash.
	ReclaimJob(ctx context.Context, j *Job, oldJobTokenHash string) error
	// GetJob returns one job record or ENOTFOUND.
	GetJob(ctx context.Context, runnerID string, jobID int64) (*Job, error)
	// FinishJob records the outcome of a running job; ECONFLICT if it was
	// already finished or, when o.DispatchTokenHash is set, runs under
	// another dispatch; ENOTFOUND if it was never claimed.
	FinishJob(ctx context.Context, runnerID string, jobID int64, o JobOutcome) error
	// LeaseExpired returns up to limit running jobs whose lease ended
	// before now, oldest first.
	LeaseExpired(ctx context.Context, now time.Time, limit int) ([]*Job, error)
	// ReleaseSlotOfJob frees the runner's slot index if it still holds
	// jobID, whoever holds its token.
	ReleaseSlotOfJob(ctx context.Context, runnerID string, index int, jobID int64) error
	// RecordPollDemand notes that a poll found every slot of the runner
	// held while jobs may wait in GitLab (a job event, or a poll that was
	// still getting jobs). Recording it again leaves one demand.
	RecordPollDemand(ctx context.Context, runnerID string) error
	// TakePollDemand removes the runner's poll demand and reports whether
	// there was one; of concurrent takers exactly one gets true. Whoever
	// frees a slot takes it and, if there was one, polls the runner.
	//
	// Together the two close the lost wake-up between a poll that finds
	// no slot and a finisher that frees one: the poll records the demand
	// and then looks for a slot once more; the finisher frees its slot and
	// then takes the demand. Both reads are strongly consistent, so at
	// least one of them sees the other's write: the poll finds the freed
	// slot, or the finisher finds the demand.
	TakePollDemand(ctx context.Context, runnerID string) (bool, error)
	// ListJobs returns up to limit of the runner's jobs, newest first.
	ListJobs(ctx context.Context, runnerID string, limit int) ([]*Job, error)
}
