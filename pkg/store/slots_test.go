package store_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/runner"
	"gitlab-serverless-runner/pkg/store"
)

func TestAcquireSlotNeverExceedsConcurrency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const concurrency, callers, rounds = 3, 20, 5
	s := newStore(t, store.Config{})

	// All at once, nobody releasing: exactly concurrency callers win.
	var wg sync.WaitGroup
	slots := make(chan runner.Slot, callers)
	for range callers {
		wg.Go(func() {
			slot, ok, err := s.AcquireSlot(ctx, "r1", concurrency, time.Hour)
			if err != nil {
				t.Errorf("AcquireSlot: %v", err)
			}
			if ok {
				slots <- slot
			}
		})
	}
	wg.Wait()
	close(slots)
	indexes := map[int]bool{}
	for slot := range slots {
		if slot.Index < 0 || slot.Index >= concurrency || indexes[slot.Index] {
			t.Errorf("slot index %d out of range or given twice", slot.Index)
		}
		indexes[slot.Index] = true
		if err := s.ReleaseSlot(ctx, slot); err != nil {
			t.Fatalf("ReleaseSlot: %v", err)
		}
	}
	if len(indexes) != concurrency {
		t.Fatalf("%d callers at once took %d slots, want %d", callers, len(indexes), concurrency)
	}

	// Overlapping acquire and release: holders never exceed concurrency.
	var holding, most atomic.Int32
	var taken atomic.Int32
	for range callers {
		wg.Go(func() {
			for range rounds {
				slot, ok, err := s.AcquireSlot(ctx, "r1", concurrency, time.Hour)
				if err != nil {
					t.Errorf("AcquireSlot: %v", err)
					return
				}
				if !ok {
					continue
				}
				taken.Add(1)
				n := holding.Add(1)
				for {
					m := most.Load()
					if n <= m || most.CompareAndSwap(m, n) {
						break
					}
				}
				holding.Add(-1)
				if err := s.ReleaseSlot(ctx, slot); err != nil {
					t.Errorf("ReleaseSlot: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if most.Load() > concurrency {
		t.Errorf("at most %d slots were held at once, want at most %d", most.Load(), concurrency)
	}
	if taken.Load() == 0 {
		t.Errorf("no caller ever took a slot")
	}
}

func TestExpiredLeaseFreesSlot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	s := newStore(t, store.Config{Now: clk.Now})
	const lease = 15 * time.Minute

	crashed, ok, err := s.AcquireSlot(ctx, "r1", 1, lease)
	if err != nil || !ok {
		t.Fatalf("AcquireSlot = %v, %v; want a slot", ok, err)
	}
	if _, ok, _ := s.AcquireSlot(ctx, "r1", 1, lease); ok {
		t.Fatalf("AcquireSlot took a second slot of a runner with concurrency 1")
	}
	// Another runner's slots are separate.
	if _, ok, err := s.AcquireSlot(ctx, "r2", 1, lease); err != nil || !ok {
		t.Errorf("AcquireSlot(r2) = %v, %v; want a slot", ok, err)
	}

	clk.Advance(lease - time.Second)
	if _, ok, _ := s.AcquireSlot(ctx, "r1", 1, lease); ok {
		t.Fatalf("AcquireSlot took a slot whose lease has not expired")
	}

	clk.Advance(2 * time.Second) // the holder crashed; its lease is over
	next, ok, err := s.AcquireSlot(ctx, "r1", 1, lease)
	if err != nil || !ok {
		t.Fatalf("AcquireSlot after the lease expired = %v, %v; want the slot", ok, err)
	}

	// The crashed holder's late release or renewal must not touch the new
	// holder's slot.
	if err := s.ReleaseSlot(ctx, crashed); err != nil {
		t.Errorf("ReleaseSlot(stale): %v", err)
	}
	wantCode(t, "RenewSlot(stale)", s.RenewSlot(ctx, &crashed, 9, clk.Now().Add(time.Hour)), runner.ECONFLICT)
	if _, ok, _ := s.AcquireSlot(ctx, "r1", 1, lease); ok {
		t.Errorf("a stale release freed the new holder's slot")
	}

	// Renewing moves the lease: the slot stays taken past the old expiry.
	if err := s.RenewSlot(ctx, &next, 42, clk.Now().Add(time.Hour)); err != nil {
		t.Fatalf("RenewSlot: %v", err)
	}
	if next.JobID != 42 {
		t.Errorf("slot job id = %d, want 42", next.JobID)
	}
	clk.Advance(lease + time.Minute)
	if _, ok, _ := s.AcquireSlot(ctx, "r1", 1, lease); ok {
		t.Errorf("AcquireSlot took a slot whose lease was renewed")
	}
	if err := s.ReleaseSlot(ctx, next); err != nil {
		t.Fatalf("ReleaseSlot: %v", err)
	}
	if err := s.ReleaseSlot(ctx, next); err != nil {
		t.Errorf("ReleaseSlot twice: %v, want nil", err)
	}
	if _, ok, err := s.AcquireSlot(ctx, "r1", 1, lease); err != nil || !ok {
		t.Errorf("AcquireSlot after release = %v, %v; want the slot", ok, err)
	}
}

// TestPollDemand: a demand recorded (once or many times) is taken once, by
// exactly one of concurrent takers; it is no slot, so a runner with a
// demand still has all its slots; runners' demands are separate.
func TestPollDemand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, store.Config{})

	if ok, err := s.TakePollDemand(ctx, "r1"); err != nil || ok {
		t.Fatalf("TakePollDemand with none recorded = %v, %v; want false", ok, err)
	}
	for range 3 {
		if err := s.RecordPollDemand(ctx, "r1"); err != nil {
			t.Fatalf("RecordPollDemand: %v", err)
		}
	}
	// The demand item shares the slots' table and key: it takes no slot.
	var held []runner.Slot
	for {
		slot, ok, err := s.AcquireSlot(ctx, "r1", 2, time.Hour)
		if err != nil {
			t.Fatalf("AcquireSlot: %v", err)
		}
		if !ok {
			break
		}
		held = append(held, slot)
	}
	if len(held) != 2 {
		t.Errorf("slots taken beside a demand = %d, want 2", len(held))
	}
	if ok, err := s.TakePollDemand(ctx, "r2"); err != nil || ok {
		t.Errorf("TakePollDemand(r2) = %v, %v; want false: r1's demand is r1's", ok, err)
	}

	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			ok, err := s.TakePollDemand(ctx, "r1")
			if err != nil {
				t.Errorf("TakePollDemand: %v", err)
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if got := wins.Load(); got != 1 {
		t.Errorf("concurrent takers of one demand that got it: %d, want 1", got)
	}
	// Releasing slots leaves no demand behind, and taking the demand
	// released no slot.
	if _, ok, _ := s.AcquireSlot(ctx, "r1", 2, time.Hour); ok {
		t.Errorf("taking the demand freed a slot")
	}
	for _, slot := range held {
		if err := s.ReleaseSlot(ctx, slot); err != nil {
			t.Fatalf("ReleaseSlot: %v", err)
		}
	}
	if ok, err := s.TakePollDemand(ctx, "r1"); err != nil || ok {
		t.Errorf("TakePollDemand after it was taken = %v, %v; want false", ok, err)
	}
}
