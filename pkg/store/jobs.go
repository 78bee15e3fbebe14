package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/guregu/dynamo/v2"

	"gitlab-serverless-runner/pkg/runner"
)

// jobItem is a job record as stored in the jobs table.
type jobItem struct {
	RunnerID       string     `dynamo:"runner_id,hash"`
	JobID          int64      `dynamo:"job_id,range"`
	State          string     `dynamo:"state"`
	ProjectPath    string     `dynamo:"project_path,omitempty"`
	Ref            string     `dynamo:"ref,omitempty"`
	Sha            string     `dynamo:"sha,omitempty"`
	Name           string     `dynamo:"name,omitempty"`
	WebURL         string     `dynamo:"web_url,omitempty"`
	StartedAt      time.Time  `dynamo:"started_at"`
	FinishedAt     *time.Time `dynamo:"finished_at,omitempty"`
	DurationMS     int64      `dynamo:"duration_ms,omitempty"`
	FailureReason  string     `dynamo:"failure_reason,omitempty"`
	MemoryMB       int        `dynamo:"memory_mb,omitempty"`
	Arch           string     `dynamo:"arch,omitempty"`
	StorageMB      int        `dynamo:"storage_mb,omitempty"`
	BilledMS       int64      `dynamo:"billed_ms,omitempty"`
	LeaseExpiresAt time.Time  `dynamo:"lease_expires_at"`
	ExpiresAt      int64      `dynamo:"expires_at"` // TTL: unix seconds
	// DispatchHash is the hex SHA-256 of the dispatch's secret, never the
	// secret itself.
	DispatchHash string `dynamo:"dispatch_token_sha256,omitempty"`
	SlotIndex    int    `dynamo:"slot_index"`
	// JobTokenHash is the hex SHA-256 of the GitLab job token of the
	// assignment, never the token itself.
	JobTokenHash string `dynamo:"job_token_sha256,omitempty"`
	// SealedJobToken is the job token sealed (package seal) for the
	// sweeper, which fails a job whose lease ran out without a record.
	SealedJobToken []byte `dynamo:"job_token_sealed,omitempty"`
	// Open and OpenLeaseMS exist only while the job runs: the keys of
	// OpenLeaseIndex.
	Open        string `dynamo:"open,omitempty"`
	OpenLeaseMS int64  `dynamo:"open_lease_ms,omitempty"`
}

func (it jobItem) domain() *runner.Job {
	return &runner.Job{
		RunnerID:       it.RunnerID,
		JobID:          it.JobID,
		State:          runner.JobState(it.State),
		ProjectPath:    it.ProjectPath,
		Ref:            it.Ref,
		Sha:            it.Sha,
		Name:           it.Name,
		WebURL:         it.WebURL,
		StartedAt:      it.StartedAt,
		FinishedAt:     it.FinishedAt,
		Duration:       time.Duration(it.DurationMS) * time.Millisecond,
		FailureReason:  it.FailureReason,
		MemoryMB:       it.MemoryMB,
		Arch:           it.Arch,
		StorageMB:      it.StorageMB,
		BilledDuration: time.Duration(it.BilledMS) * time.Millisecond,
		LeaseExpiresAt: it.LeaseExpiresAt,
		ExpiresAt:      time.Unix(it.ExpiresAt, 0).UTC(),

		DispatchTokenHash: it.DispatchHash,
		SlotIndex:         it.SlotIndex,
		JobTokenHash:      it.JobTokenHash,
		SealedJobToken:    it.SealedJobToken,
	}
}

// ClaimJob writes a new job record, only if none exists for the runner and
// job id: a second claim of the same job (an at-least-once redelivery) is
// ECONFLICT. An empty State is JobRunning, a zero StartedAt is now, and a
// zero ExpiresAt is now plus the retention; j is updated with them. The
// job's DispatchTokenHash, SlotIndex and JobTokenHash are kept as given:
// the finisher checks destination records against the first two, and the
// poller tells a re-queued job from a duplicate by the last.
func (s *Store) ClaimJob(ctx context.Context, j *runner.Job) error {
	item, err := s.newJobItem(j)
	if err != nil {
		return err
	}
	err = s.jobs.Put(item).If("attribute_not_exists('job_id')").Run(ctx)
	if dynamo.IsCondCheckFailed(err) {
		return fmt.Errorf("store: claim job %d: %w", j.JobID, runner.Errorf(runner.ECONFLICT, "Job %d was already claimed.", j.JobID))
	}
	if err != nil {
		return fmt.Errorf("store: claim job %d: %w", j.JobID, err)
	}
	return nil
}

// ReclaimJob replaces the whole record of a job claimed before with j (the
// same defaults as ClaimJob; a finished record becomes running again, its
// outcome cleared), for a new assignment of the job: only while the stored
// job token hash is oldJobTokenHash ("" matches a record that has none),
// ECONFLICT otherwise or if the job was never claimed. j.JobTokenHash must
// be set and differ from oldJobTokenHash (EINVALID).
func (s *Store) ReclaimJob(ctx context.Context, j *runner.Job, oldJobTokenHash string) error {
	if j.JobTokenHash == "" || j.JobTokenHash == oldJobTokenHash {
		return runner.Errorf(runner.EINVALID, "A re-claim needs the hash of a new job token.")
	}
	item, err := s.newJobItem(j)
	if err != nil {
		return err
	}
	put := s.jobs.Put(item)
	if oldJobTokenHash == "" {
		put = put.If("attribute_exists('job_id') AND attribute_not_exists('job_token_sha256')")
	} else {
		put = put.If("'job_token_sha256' = ?", oldJobTokenHash)
	}
	err = put.Run(ctx)
	if dynamo.IsCondCheckFailed(err) {
		return fmt.Errorf("store: re-claim job %d: %w", j.JobID, runner.Errorf(runner.ECONFLICT, "Job %d was re-claimed by another poll or never claimed.", j.JobID))
	}
	if err != nil {
		return fmt.Errorf("store: re-claim job %d: %w", j.JobID, err)
	}
	return nil
}

// newJobItem fills j's defaults (see ClaimJob) and returns its item.
func (s *Store) newJobItem(j *runner.Job) (jobItem, error) {
	if j.RunnerID == "" || j.JobID <= 0 {
		return jobItem{}, runner.Errorf(runner.EINVALID, "A job needs a runner and a job id.")
	}
	now := s.now().UTC()
	if j.State == "" {
		j.State = runner.JobRunning
	}
	if j.StartedAt.IsZero() {
		j.StartedAt = now
	}
	if j.ExpiresAt.IsZero() {
		j.ExpiresAt = now.Add(s.retention)
	}
	item := jobItem{
		RunnerID:       j.RunnerID,
		JobID:          j.JobID,
		State:          string(j.State),
		ProjectPath:    j.ProjectPath,
		Ref:            j.Ref,
		Sha:            j.Sha,
		Name:           j.Name,
		WebURL:         j.WebURL,
		StartedAt:      j.StartedAt.UTC(),
		FinishedAt:     utcPtr(j.FinishedAt),
		DurationMS:     j.Duration.Milliseconds(),
		FailureReason:  j.FailureReason,
		MemoryMB:       j.MemoryMB,
		Arch:           j.Arch,
		StorageMB:      j.StorageMB,
		BilledMS:       j.BilledDuration.Milliseconds(),
		LeaseExpiresAt: j.LeaseExpiresAt.UTC(),
		ExpiresAt:      j.ExpiresAt.Unix(),
		DispatchHash:   j.DispatchTokenHash,
		SlotIndex:      j.SlotIndex,
		JobTokenHash:   j.JobTokenHash,
		SealedJobToken: j.SealedJobToken,
	}
	if j.State == runner.JobRunning {
		item.Open, item.OpenLeaseMS = openMark, j.LeaseExpiresAt.UnixMilli()
	}
	return item, nil
}

// openMark is the value of the open attribute of a running job.
const openMark = "1"

// GetJob returns one job record, or ENOTFOUND.
func (s *Store) GetJob(ctx context.Context, runnerID string, jobID int64) (*runner.Job, error) {
	var item jobItem
	err := s.jobs.Get("runner_id", runnerID).Range("job_id", dynamo.Equal, jobID).Consistent(true).One(ctx, &item)
	if errors.Is(err, dynamo.ErrNotFound) {
		return nil, fmt.Errorf("store: get job %d: %w", jobID, notFound("Job"))
	}
	if err != nil {
		return nil, fmt.Errorf("store: get job %d: %w", jobID, err)
	}
	return item.domain(), nil
}

// FinishJob records the outcome of a running job and restarts its
// retention from the finish time. Finishing a job that already has a final
// state is ECONFLICT, so a redelivered outcome is recorded once; a job
// never claimed is ENOTFOUND.
func (s *Store) FinishJob(ctx context.Context, runnerID string, jobID int64, o runner.JobOutcome) error {
	if !o.State.Terminal() {
		return runner.Errorf(runner.EINVALID, "%q is not a final job state.", o.State)
	}
	if o.FinishedAt.IsZero() {
		o.FinishedAt = s.now()
	}
	up := s.jobs.Update("runner_id", runnerID).Range("job_id", jobID).
		Set("state", string(o.State)).
		Set("finished_at", o.FinishedAt.UTC()).
		Set("duration_ms", o.Duration.Milliseconds()).
		Set("failure_reason", o.FailureReason).
		Set("memory_mb", o.MemoryMB).
		Set("arch", o.Arch).
		Set("storage_mb", o.StorageMB).
		Set("billed_ms", o.BilledDuration.Milliseconds()).
		Set("expires_at", o.FinishedAt.Add(s.retention).Unix()).
		Remove("open", "open_lease_ms", "job_token_sealed").
		If("attribute_exists('job_id') AND 'state' = ?", string(runner.JobRunning))
	if o.DispatchTokenHash != "" {
		up = up.If("'dispatch_token_sha256' = ?", o.DispatchTokenHash)
	}
	err := up.Run(ctx)
	if dynamo.IsCondCheckFailed(err) {
		j, gerr := s.GetJob(ctx, runnerID, jobID)
		if gerr != nil {
			return gerr
		}
		if j.State == runner.JobRunning {
			return fmt.Errorf("store: finish job %d: %w", jobID, runner.Errorf(runner.ECONFLICT, "Job %d runs under another dispatch now.", jobID))
		}
		return fmt.Errorf("store: finish job %d: %w", jobID, runner.Errorf(runner.ECONFLICT, "Job %d has already finished.", jobID))
	}
	if err != nil {
		return fmt.Errorf("store: finish job %d: %w", jobID, err)
	}
	return nil
}

// LeaseExpired returns up to limit running jobs whose lease ended before
// now, oldest lease first, from OpenLeaseIndex. The index is eventually
// consistent: a job finished a moment ago may still be listed, so callers
// finish jobs with a conditional write.
func (s *Store) LeaseExpired(ctx context.Context, now time.Time, limit int) ([]*runner.Job, error) {
	q := s.jobs.Get("open", openMark).Index(OpenLeaseIndex).Range("open_lease_ms", dynamo.Less, now.UnixMilli())
	if limit > 0 {
		q = q.Limit(limit)
	}
	var items []jobItem
	if err := q.All(ctx, &items); err != nil {
		return nil, fmt.Errorf("store: list jobs whose lease ran out: %w", err)
	}
	out := make([]*runner.Job, len(items))
	for i, it := range items {
		out[i] = it.domain()
	}
	return out, nil
}

// ListJobs returns up to limit of the runner's jobs, highest (newest) job
// id first. A limit of 0 or less returns every job.
func (s *Store) ListJobs(ctx context.Context, runnerID string, limit int) ([]*runner.Job, error) {
	q := s.jobs.Get("runner_id", runnerID).Order(dynamo.Descending)
	if limit > 0 {
		q = q.Limit(limit)
	}
	var items []jobItem
	if err := q.All(ctx, &items); err != nil {
		return nil, fmt.Errorf("store: list jobs of runner %s: %w", runnerID, err)
	}
	out := make([]*runner.Job, len(items))
	for i, it := range items {
		out[i] = it.domain()
	}
	return out, nil
}
