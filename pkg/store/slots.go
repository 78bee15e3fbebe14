package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/guregu/dynamo/v2"

	"gitlab-serverless-runner/pkg/runner"
)

// slotRetention is how long after its lease a slot item stays before TTL
// removes it; expiry of the lease alone frees the slot.
const slotRetention = 24 * time.Hour

// slotItem is one concurrency slot of a runner in the slots table.
type slotItem struct {
	RunnerID string `dynamo:"runner_id,hash"`
	Slot     int    `dynamo:"slot,range"`
	Token    string `dynamo:"token"`
	JobID    int64  `dynamo:"job_id,omitempty"`
	LeaseMS  int64  `dynamo:"lease_expires_ms"` // unix milliseconds
	Expires  int64  `dynamo:"expires_at"`       // TTL: unix seconds
}

// AcquireSlot takes one of the runner's concurrency slots (numbers 0 to
// concurrency-1) for lease. It reads the runner's slots, then tries the
// free ones with a conditional put that succeeds only if the slot item is
// absent or its lease has expired, so overlapping callers never hold more
// than concurrency slots between them. ok is false when every slot is held.
func (s *Store) AcquireSlot(ctx context.Context, runnerID string, concurrency int, lease time.Duration) (runner.Slot, bool, error) {
	if concurrency < 1 || lease <= 0 {
		return runner.Slot{}, false, runner.Errorf(runner.EINVALID, "A slot needs a concurrency of at least 1 and a lease.")
	}
	now := s.now()
	var held []slotItem
	err := s.slots.Get("runner_id", runnerID).Consistent(true).All(ctx, &held)
	if err != nil {
		return runner.Slot{}, false, fmt.Errorf("store: read slots of runner %s: %w", runnerID, err)
	}
	busy := make(map[int]bool, len(held))
	for _, it := range held {
		if it.Slot >= 0 && it.LeaseMS > now.UnixMilli() {
			busy[it.Slot] = true
		}
	}
	// Start at a random slot so that overlapping callers spread out.
	start := mrand.IntN(concurrency)
	for i := range concurrency {
		n := (start + i) % concurrency
		if busy[n] {
			continue
		}
		expires := now.Add(lease)
		item := slotItem{
			RunnerID: runnerID,
			Slot:     n,
			Token:    newToken(),
			LeaseMS:  expires.UnixMilli(),
			Expires:  expires.Add(slotRetention).Unix(),
		}
		err := s.slots.Put(item).
			If("attribute_not_exists('runner_id') OR 'lease_expires_ms' <= ?", now.UnixMilli()).
			Run(ctx)
		if dynamo.IsCondCheckFailed(err) {
			continue // someone else took it since we looked
		}
		if err != nil {
			return runner.Slot{}, false, fmt.Errorf("store: take slot %d of runner %s: %w", n, runnerID, err)
		}
		return runner.Slot{RunnerID: runnerID, Index: n, Token: item.Token, ExpiresAt: time.UnixMilli(item.LeaseMS).UTC()}, true, nil
	}
	return runner.Slot{}, false, nil
}

// RenewSlot records the job in the slot and moves its lease to expiresAt,
// if slot.Token still holds the slot; otherwise ECONFLICT. On success slot
// is updated.
func (s *Store) RenewSlot(ctx context.Context, slot *runner.Slot, jobID int64, expiresAt time.Time) error {
	err := s.slots.Update("runner_id", slot.RunnerID).Range("slot", slot.Index).
		Set("job_id", jobID).
		Set("lease_expires_ms", expiresAt.UnixMilli()).
		Set("expires_at", expiresAt.Add(slotRetention).Unix()).
		If("'token' = ?", slot.Token).
		Run(ctx)
	if dynamo.IsCondCheckFailed(err) {
		return fmt.Errorf("store: renew slot %d of runner %s: %w", slot.Index, slot.RunnerID,
			runner.Errorf(runner.ECONFLICT, "The slot is no longer held."))
	}
	if err != nil {
		return fmt.Errorf("store: renew slot %d of runner %s: %w", slot.Index, slot.RunnerID, err)
	}
	slot.JobID = jobID
	slot.ExpiresAt = time.UnixMilli(expiresAt.UnixMilli()).UTC()
	return nil
}

// ReleaseSlot frees the slot if slot.Token still holds it. Releasing a slot
// that was released before, or that expired and was taken by another
// holder, does nothing and is not an error.
func (s *Store) ReleaseSlot(ctx context.Context, slot runner.Slot) error {
	err := s.slots.Delete("runner_id", slot.RunnerID).Range("slot", slot.Index).
		If("'token' = ?", slot.Token).
		Run(ctx)
	if err != nil && !dynamo.IsCondCheckFailed(err) {
		return fmt.Errorf("store: release slot %d of runner %s: %w", slot.Index, slot.RunnerID, err)
	}
	return nil
}

// ReleaseSlotOfJob frees the runner's slot index if it still holds jobID,
// whatever its token: the slot of a dispatch whose job was re-queued by
// GitLab and claimed again, or whose lease the sweeper closed. A slot that
// holds another job, or none, is left alone.
func (s *Store) ReleaseSlotOfJob(ctx context.Context, runnerID string, index int, jobID int64) error {
	err := s.slots.Delete("runner_id", runnerID).Range("slot", index).
		If("'job_id' = ?", jobID).
		Run(ctx)
	if err != nil && !dynamo.IsCondCheckFailed(err) {
		return fmt.Errorf("store: release slot %d of runner %s: %w", index, runnerID, err)
	}
	return nil
}

// demandSlot is the sort key of a runner's poll-demand item: it lives in
// the slots table beside the slots it waits for, where the poller and the
// finisher already read and write, and is no slot (AcquireSlot counts only
// slots 0 and up).
const demandSlot = -1

// demandItem records that a poll of the runner found every slot held.
type demandItem struct {
	RunnerID string `dynamo:"runner_id,hash"`
	Slot     int    `dynamo:"slot,range"`
	AtMS     int64  `dynamo:"demand_at_ms"` // unix milliseconds
	Expires  int64  `dynamo:"expires_at"`   // TTL: unix seconds
}

// RecordPollDemand notes that a poll of the runner found every slot held
// while jobs may be waiting in GitLab. The next freed slot takes it
// (TakePollDemand) and polls again. Recording it twice leaves one demand.
// After slotRetention the table's TTL drops a demand no freed slot took;
// the scheduled polls have long covered it by then.
func (s *Store) RecordPollDemand(ctx context.Context, runnerID string) error {
	now := s.now()
	item := demandItem{RunnerID: runnerID, Slot: demandSlot, AtMS: now.UnixMilli(), Expires: now.Add(slotRetention).Unix()}
	if err := s.slots.Put(item).Run(ctx); err != nil {
		return fmt.Errorf("store: record poll demand of runner %s: %w", runnerID, err)
	}
	return nil
}

// TakePollDemand removes the runner's poll demand and reports whether
// there was one. The removal is conditional, so of concurrent takers
// exactly one gets true.
func (s *Store) TakePollDemand(ctx context.Context, runnerID string) (bool, error) {
	err := s.slots.Delete("runner_id", runnerID).Range("slot", demandSlot).
		If("attribute_exists('runner_id')").
		Run(ctx)
	if dynamo.IsCondCheckFailed(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: take poll demand of runner %s: %w", runnerID, err)
	}
	return true, nil
}

func newToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
