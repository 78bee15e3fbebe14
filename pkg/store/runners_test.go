package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/store"
)

func TestRunnerLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	s := newStore(t, store.Config{Now: clk.Now})

	r := mustCreate(t, s, newRunner("alice", "first"))
	if r.ID == "" || !runner.ValidSystemID(r.SystemID) || r.Version != 1 || !r.CreatedAt.Equal(clk.Now()) {
		t.Fatalf("after CreateRunner: id %q, system id %q, version %d, created %v; want them set", r.ID, r.SystemID, r.Version, r.CreatedAt)
	}

	got, err := s.GetRunnerForOwner(ctx, "alice", r.ID)
	if err != nil {
		t.Fatalf("GetRunnerForOwner: %v", err)
	}
	if got.Description != "first" || got.GitLabURL != r.GitLabURL || got.GitLabRunnerID != 42 ||
		string(got.SealedToken) != string(r.SealedToken) || !slices.Equal(got.Tags, r.Tags) ||
		!got.RunUntagged || got.AccessLevel != runner.AccessNotProtected || got.MaximumTimeout != 900 ||
		got.Runtime != "provided.al2023" || got.Concurrency != 2 || got.SystemID != r.SystemID ||
		got.CreationMode != runner.CreationToken || !got.CreatedAt.Equal(r.CreatedAt) || got.Version != 1 {
		t.Errorf("GetRunnerForOwner = %+v, want the created runner %+v", got, r)
	}

	clk.Advance(time.Minute)
	got.Description = "renamed"
	got.Tags = nil
	got.Paused = true
	got.Concurrency = 5
	got.CAPEM, got.OutputLimitKiB = "-----BEGIN CERTIFICATE-----\n", 8192
	if err := s.UpdateRunner(ctx, got); err != nil {
		t.Fatalf("UpdateRunner: %v", err)
	}
	if got.Version != 2 || !got.UpdatedAt.Equal(clk.Now()) {
		t.Errorf("after UpdateRunner: version %d, updated %v; want 2, %v", got.Version, got.UpdatedAt, clk.Now())
	}
	again, err := s.GetRunner(ctx, r.ID)
	if err != nil {
		t.Fatalf("GetRunner: %v", err)
	}
	if again.Description != "renamed" || len(again.Tags) != 0 || !again.Paused || again.Concurrency != 5 || again.Version != 2 ||
		again.CAPEM != got.CAPEM || again.OutputLimitKiB != 8192 {
		t.Errorf("after update: description %q tags %v paused %v concurrency %d version %d CA %q limit %d; want renamed [] true 5 2, the CA, 8192",
			again.Description, again.Tags, again.Paused, again.Concurrency, again.Version, again.CAPEM, again.OutputLimitKiB)
	}
	// Clearing the CA and the limit is an update too.
	again.CAPEM, again.OutputLimitKiB = "", 0
	if err := s.UpdateRunner(ctx, again); err != nil {
		t.Fatalf("UpdateRunner clearing the CA: %v", err)
	}
	if cleared, err := s.GetRunner(ctx, r.ID); err != nil || cleared.CAPEM != "" || cleared.OutputLimitKiB != 0 {
		t.Errorf("after clearing: %+v, %v; want no CA and no limit", cleared, err)
	}

	if err := s.DeleteRunner(ctx, "alice", r.ID); err != nil {
		t.Fatalf("DeleteRunner: %v", err)
	}
	_, err = s.GetRunner(ctx, r.ID)
	wantCode(t, "GetRunner after delete", err, runner.ENOTFOUND)
	err = s.DeleteRunner(ctx, "alice", r.ID)
	wantCode(t, "DeleteRunner twice", err, runner.ENOTFOUND)
	u, err := s.GetUser(ctx, "alice")
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	if u.RunnerCount != 0 {
		t.Errorf("runner count after create and delete = %d, want 0", u.RunnerCount)
	}
}

func TestOtherOwnerSeesNotFound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, store.Config{})
	r := mustCreate(t, s, newRunner("alice", "mine"))

	tests := []struct {
		name string
		call func() error
	}{
		{"get", func() error { _, err := s.GetRunnerForOwner(ctx, "mallory", r.ID); return err }},
		{"update", func() error {
			stolen := *r
			stolen.Owner = "mallory"
			stolen.Description = "stolen"
			return s.UpdateRunner(ctx, &stolen)
		}},
		{"delete", func() error { return s.DeleteRunner(ctx, "mallory", r.ID) }},
		{"get missing", func() error { _, err := s.GetRunnerForOwner(ctx, "alice", "no-such-runner"); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, tt.name, tt.call(), runner.ENOTFOUND)
		})
	}
	got, err := s.GetRunnerForOwner(ctx, "alice", r.ID)
	if err != nil {
		t.Fatalf("GetRunnerForOwner(owner): %v", err)
	}
	if got.Description != "mine" {
		t.Errorf("description = %q, want %q: another owner changed the runner", got.Description, "mine")
	}
	list, err := s.ListRunnersByOwner(ctx, "mallory")
	if err != nil {
		t.Fatalf("ListRunnersByOwner: %v", err)
	}
	if len(list) != 0 {
		t.Errorf("other owner lists %d runners, want 0", len(list))
	}
}

func TestListRunnersByOwnerNewestFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	s := newStore(t, store.Config{Now: clk.Now})
	var want []string
	for i := range 5 {
		r := mustCreate(t, s, newRunner("alice", fmt.Sprintf("r%d", i)))
		want = append([]string{r.ID}, want...)
		mustCreate(t, s, newRunner("bob", fmt.Sprintf("b%d", i)))
		clk.Advance(time.Second)
	}
	list, err := s.ListRunnersByOwner(ctx, "alice")
	if err != nil {
		t.Fatalf("ListRunnersByOwner: %v", err)
	}
	var got []string
	for _, r := range list {
		got = append(got, r.ID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("ListRunnersByOwner ids = %v, want newest first %v", got, want)
	}
}

func TestRunnerLimitUnderConcurrentCreates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const max, callers = 5, 50
	s := newStore(t, store.Config{MaxRunnersPerUser: max})
	if _, err := s.UpsertUser(ctx, "alice", "alice"); err != nil {
		t.Fatalf("UpsertUser: %v", err)
	}

	var wg sync.WaitGroup
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() { errs[i] = s.CreateRunner(ctx, newRunner("alice", fmt.Sprint(i))) })
	}
	wg.Wait()
	created, limited := 0, 0
	for _, err := range errs {
		switch runner.ErrorCode(err) {
		case "":
			created++
		case runner.ELIMIT:
			limited++
		default:
			t.Errorf("CreateRunner: unexpected error %v", err)
		}
	}
	if created != max || limited != callers-max {
		t.Fatalf("created %d and limited %d, want %d and %d", created, limited, max, callers-max)
	}
	checkCount := func(want int) {
		t.Helper()
		u, err := s.GetUser(ctx, "alice")
		if err != nil {
			t.Fatalf("GetUser: %v", err)
		}
		list, err := s.ListRunnersByOwner(ctx, "alice")
		if err != nil {
			t.Fatalf("ListRunnersByOwner: %v", err)
		}
		if u.RunnerCount != want || len(list) != want {
			t.Errorf("runner count %d, runners listed %d; want %d and %d", u.RunnerCount, len(list), want, want)
		}
	}
	checkCount(max)

	// Another owner has their own room.
	mustCreate(t, s, newRunner("bob", "bob's"))

	// Deleting frees room for exactly as many.
	list, _ := s.ListRunnersByOwner(ctx, "alice")
	for _, r := range list[:2] {
		if err := s.DeleteRunner(ctx, "alice", r.ID); err != nil {
			t.Fatalf("DeleteRunner: %v", err)
		}
	}
	checkCount(max - 2)
	mustCreate(t, s, newRunner("alice", "again 1"))
	mustCreate(t, s, newRunner("alice", "again 2"))
	err := s.CreateRunner(ctx, newRunner("alice", "one too many"))
	wantCode(t, "CreateRunner over the limit", err, runner.ELIMIT)
	checkCount(max)
}

func TestCreateRunnerDuplicateID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, store.Config{MaxRunnersPerUser: 10})
	r := mustCreate(t, s, newRunner("alice", "first"))
	dup := newRunner("alice", "second")
	dup.ID = r.ID
	wantCode(t, "CreateRunner with an existing id", s.CreateRunner(ctx, dup), runner.ECONFLICT)
	u, err := s.GetUser(ctx, "alice")
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	if u.RunnerCount != 1 {
		t.Errorf("runner count = %d, want 1: a failed create must not count", u.RunnerCount)
	}
}

func TestUpdateRunnerStaleVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, store.Config{})
	r := mustCreate(t, s, newRunner("alice", "v1"))
	first, _ := s.GetRunnerForOwner(ctx, "alice", r.ID)
	second, _ := s.GetRunnerForOwner(ctx, "alice", r.ID)

	first.Description = "from tab one"
	if err := s.UpdateRunner(ctx, first); err != nil {
		t.Fatalf("UpdateRunner(first): %v", err)
	}
	second.Description = "from tab two"
	err := s.UpdateRunner(ctx, second)
	wantCode(t, "UpdateRunner with a stale version", err, runner.ECONFLICT)

	got, _ := s.GetRunner(ctx, r.ID)
	if got.Description != "from tab one" {
		t.Errorf("description = %q, want %q", got.Description, "from tab one")
	}
}

func TestPollerWritesKeepSettingsVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, store.Config{})
	r := mustCreate(t, s, newRunner("alice", "r"))
	contact := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	failed := contact.Add(-time.Minute)
	expires := contact.Add(30 * 24 * time.Hour)

	if err := s.UpdateHealth(ctx, r.ID, runner.Health{LastContactAt: &contact, LastError: "403 Forbidden", LastErrorAt: &failed}); err != nil {
		t.Fatalf("UpdateHealth: %v", err)
	}
	if err := s.SetLastUpdate(ctx, r.ID, "abc123"); err != nil {
		t.Fatalf("SetLastUpdate: %v", err)
	}
	if err := s.RotateToken(ctx, r.ID, r.SealedToken, []byte("new sealed"), &contact, &expires); err != nil {
		t.Fatalf("RotateToken: %v", err)
	}
	got, err := s.GetRunner(ctx, r.ID)
	if err != nil {
		t.Fatalf("GetRunner: %v", err)
	}
	if got.Health.LastContactAt == nil || !got.Health.LastContactAt.Equal(contact) ||
		got.Health.LastErrorAt == nil || !got.Health.LastErrorAt.Equal(failed) || got.Health.LastError != "403 Forbidden" {
		t.Errorf("health = %+v, want contact %v, error at %v", got.Health, contact, failed)
	}
	if !got.Health.Healthy() {
		t.Errorf("Healthy() = false after a contact later than the error, want true")
	}
	if got.LastUpdate != "abc123" {
		t.Errorf("LastUpdate = %q, want %q", got.LastUpdate, "abc123")
	}
	if string(got.SealedToken) != "new sealed" || got.TokenExpiresAt == nil || !got.TokenExpiresAt.Equal(expires) {
		t.Errorf("token = %q expiring %v, want %q expiring %v", got.SealedToken, got.TokenExpiresAt, "new sealed", expires)
	}
	if got.Version != r.Version {
		t.Errorf("version = %d, want %d: poller writes must not make a user's edit stale", got.Version, r.Version)
	}
	// A user's edit with the version they loaded still applies and keeps
	// what the poller wrote.
	got.Description = "edited"
	if err := s.UpdateRunner(ctx, got); err != nil {
		t.Fatalf("UpdateRunner after poller writes: %v", err)
	}
	after, _ := s.GetRunner(ctx, r.ID)
	if after.LastUpdate != "abc123" || string(after.SealedToken) != "new sealed" {
		t.Errorf("UpdateRunner lost the poller's writes: last update %q, token %q", after.LastUpdate, after.SealedToken)
	}

	for name, err := range map[string]error{
		"UpdateHealth":  s.UpdateHealth(ctx, "missing", runner.Health{LastContactAt: &contact}),
		"SetLastUpdate": s.SetLastUpdate(ctx, "missing", "x"),
		"RotateToken":   s.RotateToken(ctx, "missing", []byte("old"), []byte("x"), nil, nil),
	} {
		wantCode(t, name+" of a missing runner", err, runner.ENOTFOUND)
	}
	if _, err := s.GetRunner(ctx, "missing"); runner.ErrorCode(err) != runner.ENOTFOUND {
		t.Errorf("a write to a missing runner created it")
	}
}

func TestRotateTokenOnlyFromTheTokenRead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, store.Config{})
	obtained := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	expires := obtained.Add(30 * 24 * time.Hour)

	tests := []struct {
		name     string
		old      func(read *runner.Runner) []byte
		wantCode string
	}{
		{"the token read", func(read *runner.Runner) []byte { return read.SealedToken }, ""},
		{"another token", func(*runner.Runner) []byte { return []byte("sealed by someone else") }, runner.ECONFLICT},
		{"no token", func(*runner.Runner) []byte { return nil }, runner.ECONFLICT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustCreate(t, s, newRunner("alice", tt.name))
			err := s.RotateToken(ctx, r.ID, tt.old(r), []byte("rotated"), &obtained, &expires)
			wantCode(t, "RotateToken", err, tt.wantCode)
			got, gerr := s.GetRunner(ctx, r.ID)
			if gerr != nil {
				t.Fatal(gerr)
			}
			want := r.SealedToken
			if tt.wantCode == "" {
				want = []byte("rotated")
			}
			if !bytes.Equal(got.SealedToken, want) {
				t.Errorf("stored token = %q, want %q", got.SealedToken, want)
			}
			if tt.wantCode != "" && got.TokenExpiresAt != nil {
				t.Errorf("a refused rotation set the expiry to %v", got.TokenExpiresAt)
			}
		})
	}

	t.Run("concurrent rotations from one read", func(t *testing.T) {
		r := mustCreate(t, s, newRunner("alice", "raced"))
		const pollers = 8
		errs := make([]error, pollers)
		var wg sync.WaitGroup
		for i := range pollers {
			wg.Go(func() {
				errs[i] = s.RotateToken(ctx, r.ID, r.SealedToken, []byte(fmt.Sprintf("rotated by %d", i)), &obtained, &expires)
			})
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch runner.ErrorCode(err) {
			case "":
				if winner >= 0 {
					t.Errorf("pollers %d and %d both saved a rotated token", winner, i)
				}
				winner = i
			case runner.ECONFLICT:
			default:
				t.Errorf("poller %d: %v, want success or ECONFLICT", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("no rotation was saved")
		}
		got, err := s.GetRunner(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("rotated by %d", winner); string(got.SealedToken) != want {
			t.Errorf("stored token = %q, want the winner's %q", got.SealedToken, want)
		}
	})
}

func TestScanEnabledRunners(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const total = 300
	s := newStore(t, store.Config{ScanSegments: 4})
	want := createMany(t, s, total, func(i int) bool { return i%5 == 0 })

	seen := map[string]int{}
	err := s.ScanEnabledRunners(ctx, func(r *runner.Runner) error {
		seen[r.ID]++
		if r.Paused {
			t.Errorf("scan returned paused runner %s", r.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ScanEnabledRunners: %v", err)
	}
	if len(seen) != len(want) {
		t.Errorf("scan returned %d runners, want %d", len(seen), len(want))
	}
	for id := range want {
		if seen[id] != 1 {
			t.Errorf("runner %s seen %d times, want once", id, seen[id])
		}
	}

	stop := errors.New("stop here")
	calls := 0
	err = s.ScanEnabledRunners(ctx, func(*runner.Runner) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("scan with a failing callback: %d calls, error %v; want 1 call and the callback's error", calls, err)
	}
}

// createMany creates n runners over ten owners, pausing those for which
// paused returns true, and returns the ids of the others.
func createMany(t testing.TB, s *store.Store, n int, paused func(int) bool) map[string]bool {
	t.Helper()
	ctx := context.Background()
	var mu sync.Mutex
	enabled := map[string]bool{}
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range work {
				r := newRunner(fmt.Sprintf("owner-%d", i%10), fmt.Sprint(i))
				r.Paused = paused(i)
				if err := s.CreateRunner(ctx, r); err != nil {
					t.Errorf("CreateRunner: %v", err)
					continue
				}
				if !r.Paused {
					mu.Lock()
					enabled[r.ID] = true
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return enabled
}
