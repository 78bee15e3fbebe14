package store_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/store"
	"gitlab-serverless-runner/pkg/store/dynamotest"
)

func TestClaimJobOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, store.Config{})

	var wg sync.WaitGroup
	var won, conflicts atomic.Int32
	for range 10 {
		wg.Go(func() {
			err := s.ClaimJob(ctx, &runner.Job{RunnerID: "r1", JobID: 1001, ProjectPath: "group/project"})
			switch runner.ErrorCode(err) {
			case "":
				won.Add(1)
			case runner.ECONFLICT:
				conflicts.Add(1)
			default:
				t.Errorf("ClaimJob: %v", err)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 || conflicts.Load() != 9 {
		t.Errorf("10 claims of one job: %d won, %d conflicts; want 1 and 9", won.Load(), conflicts.Load())
	}
	// The same job id on another runner is another job.
	if err := s.ClaimJob(ctx, &runner.Job{RunnerID: "r2", JobID: 1001}); err != nil {
		t.Errorf("ClaimJob on another runner: %v", err)
	}
}

func TestFinishJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	const retention = 7 * 24 * time.Hour
	s := newStore(t, store.Config{Now: clk.Now, JobRetention: retention})
	j := &runner.Job{
		RunnerID: "r1", JobID: 7, ProjectPath: "group/project", Ref: "main", Sha: "0123abcd", Name: "test",
		WebURL: "https://gitlab.example.com/group/project/-/jobs/7", LeaseExpiresAt: clk.Now().Add(time.Hour),
	}
	if err := s.ClaimJob(ctx, j); err != nil {
		t.Fatalf("ClaimJob: %v", err)
	}
	got, err := s.GetJob(ctx, "r1", 7)
	if err != nil {
		t.Fatalf("GetJob: %v", err)
	}
	if got.State != runner.JobRunning || !got.StartedAt.Equal(clk.Now()) || got.Ref != "main" || got.Name != "test" ||
		!got.LeaseExpiresAt.Equal(j.LeaseExpiresAt) || !got.ExpiresAt.Equal(clk.Now().Add(retention)) {
		t.Errorf("claimed job = %+v, want running, started now, expiring after the retention", got)
	}

	clk.Advance(3 * time.Minute)
	outcome := runner.JobOutcome{
		State: runner.JobFailed, FailureReason: "script_failure", Duration: 2*time.Minute + 500*time.Millisecond,
		MemoryMB: 2048, Arch: "x86_64", StorageMB: 4096, BilledDuration: 2*time.Minute + 501*time.Millisecond,
	}
	if err := s.FinishJob(ctx, "r1", 7, outcome); err != nil {
		t.Fatalf("FinishJob: %v", err)
	}
	got, err = s.GetJob(ctx, "r1", 7)
	if err != nil {
		t.Fatalf("GetJob: %v", err)
	}
	if got.State != runner.JobFailed || got.FailureReason != "script_failure" || got.Duration != outcome.Duration ||
		got.MemoryMB != 2048 || got.Arch != "x86_64" || got.StorageMB != 4096 || got.BilledDuration != outcome.BilledDuration ||
		got.FinishedAt == nil || !got.FinishedAt.Equal(clk.Now()) {
		t.Errorf("finished job = %+v, want the outcome %+v at %v", got, outcome, clk.Now())
	}

	tests := []struct {
		name    string
		runner  string
		job     int64
		outcome runner.JobOutcome
		code    string
	}{
		{"twice", "r1", 7, runner.JobOutcome{State: runner.JobSuccess}, runner.ECONFLICT},
		{"never claimed", "r1", 8, runner.JobOutcome{State: runner.JobSuccess}, runner.ENOTFOUND},
		{"not a final state", "r1", 7, runner.JobOutcome{State: runner.JobRunning}, runner.EINVALID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, "FinishJob", s.FinishJob(ctx, tt.runner, tt.job, tt.outcome), tt.code)
		})
	}
	again, _ := s.GetJob(ctx, "r1", 7)
	if again.State != runner.JobFailed {
		t.Errorf("state after a second finish = %q, want %q", again.State, runner.JobFailed)
	}
}

func TestJobTTLAttribute(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	const retention = 48 * time.Hour
	s := newStore(t, store.Config{Now: clk.Now, JobRetention: retention})
	if err := s.ClaimJob(ctx, &runner.Job{RunnerID: "r1", JobID: 3}); err != nil {
		t.Fatalf("ClaimJob: %v", err)
	}
	client := dynamotest.Start(t).Client()
	table := s.TableNames().Jobs

	ttl, err := client.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatalf("DescribeTimeToLive: %v", err)
	}
	if d := ttl.TimeToLiveDescription; d == nil || aws.ToString(d.AttributeName) != "expires_at" || d.TimeToLiveStatus != types.TimeToLiveStatusEnabled {
		t.Errorf("TTL of %s = %+v, want enabled on expires_at", table, d)
	}

	out, err := client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(table),
		Key: map[string]types.AttributeValue{
			"runner_id": &types.AttributeValueMemberS{Value: "r1"},
			"job_id":    &types.AttributeValueMemberN{Value: "3"},
		},
	})
	if err != nil {
		t.Fatalf("GetItem: %v", err)
	}
	n, ok := out.Item["expires_at"].(*types.AttributeValueMemberN)
	if !ok {
		t.Fatalf("expires_at = %#v, want a number (TTL needs epoch seconds)", out.Item["expires_at"])
	}
	if want := strconv.FormatInt(clk.Now().Add(retention).Unix(), 10); n.Value != want {
		t.Errorf("expires_at = %s, want %s (claim time plus retention)", n.Value, want)
	}
}

func TestListJobsNewestFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, store.Config{})
	for _, id := range []int64{5, 120, 9, 1000, 77, 3} {
		if err := s.ClaimJob(ctx, &runner.Job{RunnerID: "r1", JobID: id}); err != nil {
			t.Fatalf("ClaimJob(%d): %v", id, err)
		}
	}
	if err := s.ClaimJob(ctx, &runner.Job{RunnerID: "r2", JobID: 5000}); err != nil {
		t.Fatalf("ClaimJob: %v", err)
	}
	tests := []struct {
		limit int
		want  []int64
	}{
		{3, []int64{1000, 120, 77}},
		{0, []int64{1000, 120, 77, 9, 5, 3}},
		{100, []int64{1000, 120, 77, 9, 5, 3}},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.limit), func(t *testing.T) {
			jobs, err := s.ListJobs(ctx, "r1", tt.limit)
			if err != nil {
				t.Fatalf("ListJobs: %v", err)
			}
			var got []int64
			for _, j := range jobs {
				got = append(got, j.JobID)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ListJobs(limit %d) = %v, want %v", tt.limit, got, tt.want)
			}
		})
	}
}

// The finisher checks destination records against the dispatch proof the
// poller stores with the claim: it must come back as written, before and
// after the job finishes, and a job claimed without one has none.
func TestClaimJobKeepsDispatchProof(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, store.Config{})
	hash := runner.HashDispatchToken("0123456789abcdef0123456789abcdef")
	tests := []struct {
		name      string
		job       runner.Job
		wantHash  string
		wantIndex int
	}{
		{"with a proof", runner.Job{RunnerID: "r1", JobID: 1, DispatchTokenHash: hash, SlotIndex: 2}, hash, 2},
		{"slot 0", runner.Job{RunnerID: "r1", JobID: 2, DispatchTokenHash: hash}, hash, 0},
		{"without a proof", runner.Job{RunnerID: "r1", JobID: 3}, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := tt.job
			if err := s.ClaimJob(ctx, &j); err != nil {
				t.Fatalf("ClaimJob: %v", err)
			}
			check := func(when string) {
				t.Helper()
				got, err := s.GetJob(ctx, j.RunnerID, j.JobID)
				if err != nil {
					t.Fatalf("GetJob: %v", err)
				}
				if got.DispatchTokenHash != tt.wantHash || got.SlotIndex != tt.wantIndex {
					t.Errorf("%s: proof = %q, slot %d; want %q, slot %d", when, got.DispatchTokenHash, got.SlotIndex, tt.wantHash, tt.wantIndex)
				}
			}
			check("claimed")
			if err := s.FinishJob(ctx, j.RunnerID, j.JobID, runner.JobOutcome{State: runner.JobSuccess}); err != nil {
				t.Fatalf("FinishJob: %v", err)
			}
			check("finished")
		})
	}
}

func TestReclaimJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	s := newStore(t, store.Config{Now: clk.Now})
	first, second := runner.HashJobToken("glcbt-first"), runner.HashJobToken("glcbt-second")
	dispatch := runner.HashDispatchToken("slot-token-2")
	tests := []struct {
		name     string
		stored   *runner.Job // claimed first; nil for none
		finish   bool        // finish the stored job before the re-claim
		old      string
		job      runner.Job
		wantCode string
	}{
		{
			name:   "new assignment of a running job",
			stored: &runner.Job{JobID: 1, JobTokenHash: first, DispatchTokenHash: runner.HashDispatchToken("slot-token-1")},
			old:    first, job: runner.Job{JobID: 1, JobTokenHash: second, DispatchTokenHash: dispatch, SlotIndex: 1},
		},
		{
			name:   "new assignment of a finished job",
			stored: &runner.Job{JobID: 2, JobTokenHash: first}, finish: true,
			old: first, job: runner.Job{JobID: 2, JobTokenHash: second, DispatchTokenHash: dispatch, SlotIndex: 1},
		},
		{
			name:   "record without a job token hash",
			stored: &runner.Job{JobID: 3},
			old:    "", job: runner.Job{JobID: 3, JobTokenHash: second, DispatchTokenHash: dispatch, SlotIndex: 1},
		},
		{
			name:   "stale old hash",
			stored: &runner.Job{JobID: 4, JobTokenHash: second},
			old:    first, job: runner.Job{JobID: 4, JobTokenHash: runner.HashJobToken("glcbt-third")},
			wantCode: runner.ECONFLICT,
		},
		{
			name:   "old hash given for a record without one",
			stored: &runner.Job{JobID: 5},
			old:    first, job: runner.Job{JobID: 5, JobTokenHash: second},
			wantCode: runner.ECONFLICT,
		},
		{
			name: "never claimed", old: "", job: runner.Job{JobID: 6, JobTokenHash: second},
			wantCode: runner.ECONFLICT,
		},
		{
			name:   "same token",
			stored: &runner.Job{JobID: 7, JobTokenHash: first},
			old:    first, job: runner.Job{JobID: 7, JobTokenHash: first},
			wantCode: runner.EINVALID,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.stored != nil {
				tt.stored.RunnerID = "r1"
				if err := s.ClaimJob(ctx, tt.stored); err != nil {
					t.Fatalf("ClaimJob: %v", err)
				}
				if tt.finish {
					if err := s.FinishJob(ctx, "r1", tt.stored.JobID, runner.JobOutcome{State: runner.JobFailed, FailureReason: "runner_system_failure"}); err != nil {
						t.Fatalf("FinishJob: %v", err)
					}
				}
			}
			j := tt.job
			j.RunnerID = "r1"
			j.LeaseExpiresAt = clk.Now().Add(time.Hour)
			err := s.ReclaimJob(ctx, &j, tt.old)
			wantCode(t, "ReclaimJob", err, tt.wantCode)
			got, gerr := s.GetJob(ctx, "r1", j.JobID)
			if tt.wantCode != "" {
				if tt.stored == nil {
					wantCode(t, "GetJob after a refused re-claim", gerr, runner.ENOTFOUND)
				} else if gerr != nil || got.JobTokenHash != tt.stored.JobTokenHash {
					t.Errorf("record after a refused re-claim = %+v, %v; want job token hash %q kept", got, gerr, tt.stored.JobTokenHash)
				}
				return
			}
			if gerr != nil {
				t.Fatalf("GetJob: %v", gerr)
			}
			if got.State != runner.JobRunning || got.FinishedAt != nil || got.FailureReason != "" ||
				got.JobTokenHash != j.JobTokenHash || got.DispatchTokenHash != dispatch || got.SlotIndex != 1 ||
				!got.LeaseExpiresAt.Equal(j.LeaseExpiresAt) {
				t.Errorf("re-claimed job = %+v, want running with no outcome, the new job token hash, dispatch hash, slot 1 and lease", got)
			}
		})
	}
}

func TestReclaimJobOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, store.Config{})
	old := runner.HashJobToken("glcbt-first")
	if err := s.ClaimJob(ctx, &runner.Job{RunnerID: "r1", JobID: 9, JobTokenHash: old}); err != nil {
		t.Fatalf("ClaimJob: %v", err)
	}
	var wg sync.WaitGroup
	var won, conflicts atomic.Int32
	for i := range 10 {
		wg.Go(func() {
			j := &runner.Job{RunnerID: "r1", JobID: 9, JobTokenHash: runner.HashJobToken("glcbt-second"), SlotIndex: i}
			switch err := s.ReclaimJob(ctx, j, old); runner.ErrorCode(err) {
			case "":
				won.Add(1)
			case runner.ECONFLICT:
				conflicts.Add(1)
			default:
				t.Errorf("ReclaimJob: %v", err)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 || conflicts.Load() != 9 {
		t.Errorf("10 re-claims of one assignment: %d won, %d conflicts; want 1 and 9", won.Load(), conflicts.Load())
	}
}

// TestFinishJobOnlyForItsDispatch: a record of an earlier dispatch of a job
// GitLab re-queued and a poll claimed anew cannot close the new one.
func TestFinishJobOnlyForItsDispatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, store.Config{})
	j := &runner.Job{RunnerID: "r1", JobID: 7, DispatchTokenHash: runner.HashDispatchToken("new"), LeaseExpiresAt: time.Now().Add(time.Hour)}
	if err := s.ClaimJob(ctx, j); err != nil {
		t.Fatal(err)
	}
	err := s.FinishJob(ctx, "r1", 7, runner.JobOutcome{State: runner.JobSuccess, DispatchTokenHash: runner.HashDispatchToken("old")})
	wantCode(t, "FinishJob by another dispatch", err, runner.ECONFLICT)
	if got, _ := s.GetJob(ctx, "r1", 7); got.State != runner.JobRunning {
		t.Fatalf("job after another dispatch's finish = %s, want running", got.State)
	}
	if err := s.FinishJob(ctx, "r1", 7, runner.JobOutcome{State: runner.JobFailed, DispatchTokenHash: runner.HashDispatchToken("new")}); err != nil {
		t.Fatalf("FinishJob by its own dispatch: %v", err)
	}
}

// TestLeaseExpired lists the running jobs whose lease ended, from the
// sparse index only running jobs are in.
func TestLeaseExpired(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, store.Config{})
	now := time.Now()
	for id, lease := range map[int64]time.Duration{1: -time.Hour, 2: -time.Minute, 3: time.Hour, 4: -2 * time.Hour} {
		if err := s.ClaimJob(ctx, &runner.Job{RunnerID: "r1", JobID: id, LeaseExpiresAt: now.Add(lease), SealedJobToken: []byte("sealed")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.FinishJob(ctx, "r1", 4, runner.JobOutcome{State: runner.JobSuccess}); err != nil {
		t.Fatal(err)
	}
	got, err := s.LeaseExpired(ctx, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, j := range got {
		ids = append(ids, j.JobID)
		if string(j.SealedJobToken) != "sealed" {
			t.Errorf("job %d: sealed token %q, want it kept while running", j.JobID, j.SealedJobToken)
		}
	}
	if want := []int64{1, 2}; !slices.Equal(ids, want) {
		t.Errorf("LeaseExpired = jobs %v, want %v (oldest lease first; running ones only)", ids, want)
	}
	if done, _ := s.GetJob(ctx, "r1", 4); len(done.SealedJobToken) != 0 {
		t.Error("a finished job keeps its sealed job token")
	}
}

func TestReleaseSlotOfJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, store.Config{})
	slot, ok, err := s.AcquireSlot(ctx, "r1", 1, time.Hour)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := s.RenewSlot(ctx, &slot, 42, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseSlotOfJob(ctx, "r1", slot.Index, 41); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.AcquireSlot(ctx, "r1", 1, time.Hour); ok {
		t.Fatal("the slot of job 42 was freed for job 41")
	}
	if err := s.ReleaseSlotOfJob(ctx, "r1", slot.Index, 42); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.AcquireSlot(ctx, "r1", 1, time.Hour); !ok {
		t.Error("the slot of job 42 is still held after ReleaseSlotOfJob(42)")
	}
}
