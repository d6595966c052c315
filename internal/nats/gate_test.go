package nats

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/events"
)

// TestGateCheckedBeforeEachMessage: a gate that closes after the first
// order stops the rest of the batch from being sent (not only the next
// call), and refuses drift events.
func TestGateCheckedBeforeEachMessage(t *testing.T) {
	ts := newTestServer(t)
	cfg := fastConfig()
	cfg.MaxInFlight = 1 // one message at a time: the gate sits between them
	b := newBus(t, connect(t, ts.url()), cfg)
	var calls atomic.Int32
	lapsed := errors.New("the lease is not held")
	b.SetGate(func() error {
		if calls.Add(1) > 1 {
			return lapsed
		}
		return nil
	})
	orders := householdOrders("p1", 4)
	acks, err := b.PublishOrders(t.Context(), orders)
	var unacked *UnackedError
	if !errors.As(err, &unacked) || !errors.Is(err, lapsed) || len(acks) != 1 || len(unacked.IDs) != 3 {
		t.Fatalf("publish through a gate closing after one message: %d acks, %v", len(acks), err)
	}
	if n := len(streamMessages(t, ts.url(), b.OrdersStream())); n != 1 {
		t.Fatalf("%d messages stored, want the one sent before the gate closed", n)
	}
	if err := b.PublishDrift(events.Drift{Policy: "smith-family"}); !errors.Is(err, lapsed) {
		t.Fatalf("drift through a closed gate: %v", err)
	}
	b.SetGate(nil)
	if _, err := b.PublishOrders(t.Context(), orders); err != nil {
		t.Fatal(err)
	}
}

// TestGateStopsAnAtomicBatch: a gate that closes in the middle of a
// plan's atomic batch stores nothing of it.
func TestGateStopsAnAtomicBatch(t *testing.T) {
	ts := newTestServer(t)
	b := newBus(t, connect(t, ts.url()), fastConfig())
	var calls atomic.Int32
	lapsed := errors.New("the lease is not held")
	b.SetGate(func() error {
		if calls.Add(1) > 2 {
			return lapsed
		}
		return nil
	})
	orders := householdOrders("p3", 4)
	plan := testPlan("p3", orders)
	if _, _, err := b.PublishPlanOrders(t.Context(), orders, &plan); !errors.Is(err, lapsed) {
		t.Fatalf("atomic batch through a gate closing after two messages: %v", err)
	}
	if n := len(streamMessages(t, ts.url(), b.OrdersStream())); n != 0 {
		t.Fatalf("%d messages stored of a batch the gate stopped", n)
	}
}

// TestGateReadsTheClock: a publish whose context's deadline has passed is
// refused before its timer fires.
func TestGateReadsTheClock(t *testing.T) {
	ts := newTestServer(t)
	b := newBus(t, connect(t, ts.url()), fastConfig())
	ctx := expiredCtx{context.Background()}
	if _, err := b.PublishOrders(ctx, householdOrders("p2", 1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish under an expired context: %v", err)
	}
}

// expiredCtx has a deadline in the past and no error yet, like a context
// whose timer has not fired after the process was paused.
type expiredCtx struct{ context.Context }

func (expiredCtx) Deadline() (time.Time, bool) { return time.Now().Add(-time.Second), true }
