package runner

import "time"

// JobState is where a job is in its life as this product sees it.
type JobState string

// Job states. A job enters as JobRunning when the poller claims it; the
// finisher moves it to one of the terminal states.
const (
	JobRunning  JobState = "running"
	JobSuccess  JobState = "success"
	JobFailed   JobState = "failed"
	JobCanceled JobState = "canceled"
)

// Terminal reports whether s is a final state.
func (s JobState) Terminal() bool {
	switch s {
	case JobSuccess, JobFailed, JobCanceled:
		return true
	}
	return false
}

// Job is the record of one GitLab job taken by a runner.
type Job struct {
	RunnerID string
	JobID    int64 // GitLab's job id
	State    JobState

	ProjectPath string
	Ref         string
	Sha         string
	Name        string
	WebURL      string

	StartedAt  time.Time
	FinishedAt *time.Time
	// Duration is the wall-clock time of the job, set when it finishes.
	Duration time.Duration
	// FailureReason is GitLab's failure reason (e.g. script_failure,
	// job_execution_timeout, runner_system_failure) when State is JobFailed.
	FailureReason string
	// MemoryMB is the memory of the executor function that ran the job.
	MemoryMB int
	// Arch ("arm64" or "x86_64") and StorageMB (its /tmp) describe that
	// function too, for the cost; empty or 0 when unknown.
	Arch      string
	StorageMB int
	// BilledDuration is the duration Lambda billed, for the cost shown.
	BilledDuration time.Duration
	// LeaseExpiresAt is when the job is considered lost if it has not
	// finished: its timeout plus a margin.
	LeaseExpiresAt time.Time
	// ExpiresAt is when the record is deleted (retention).
	ExpiresAt time.Time
	// DispatchTokenHash is HashDispatchToken of the secret the poller put
	// in the executor event's dispatch data when it handed the job over:
	// the finisher accepts a destination record for the job only if the
	// record carries that secret (see Job.DispatchedWith). Empty for a job
	// recorded without one.
	DispatchTokenHash string
	// SlotIndex is the concurrency slot the job was dispatched from.
	SlotIndex int
	// JobTokenHash is HashJobToken of the job token GitLab gave with the
	// assignment the record was claimed for, never the token itself.
	// GitLab gives a new token when it re-queues a job whose runner did
	// not acknowledge it (two-phase commit), so a job offered again with
	// another token is a new assignment, and with the same token a
	// duplicate delivery. Empty for a job recorded without one.
	JobTokenHash string
	// SealedJobToken is the job token sealed with the runner tokens' keys
	// (for the purpose seal.JobToken), kept while the job runs so that a
	// job whose executor and finisher both vanished can still be failed in
	// GitLab when its lease runs out; removed when the job finishes.
	SealedJobToken []byte
}

// JobOutcome is what the finisher records when a job ends.
type JobOutcome struct {
	State          JobState // a terminal state
	FailureReason  string
	FinishedAt     time.Time
	Duration       time.Duration
	MemoryMB       int
	Arch           string
	StorageMB      int
	BilledDuration time.Duration
	// DispatchTokenHash, when set, finishes the job only if its record is
	// still that dispatch's (Job.DispatchTokenHash): a record of an earlier
	// assignment of a job GitLab re-queued cannot close the new one.
	DispatchTokenHash string
}

// Slot is one of a runner's concurrency slots, held by one poll-and-run
// cycle until it is released or its lease expires.
type Slot struct {
	RunnerID string
	// Index is the slot number, 0 ≤ Index < the runner's concurrency.
	Index int
	// Token identifies the holder; only the holder can renew or release.
	Token string
	// JobID is the job running in the slot, 0 while the poller asks GitLab.
	JobID int64
	// ExpiresAt is when the slot frees itself if never released.
	ExpiresAt time.Time
}
