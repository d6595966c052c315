package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/config"
	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/events"
)

// TestLateSnapshotKeepsLaterFills: a positions snapshot older than a fill
// already applied is ignored: applying it would undo the fill and let the
// policy buy the same thing again.
func TestLateSnapshotKeepsLaterFills(t *testing.T) {
	pol := policyText("threshold", "")
	d := startDaemon(t, pol, monday0959, nil)
	w := d.watchOrders()
	d.prices("VTI", "130", "BND", "100")
	d.waitAcked()
	d.fillAll(w.waitOrders(t, len(d.policyStatus().PendingOrders)))
	after := d.policyStatus().Holdings["ira"]
	// A snapshot taken before the fills (but after the holdings file).
	snap := events.Positions{SchemaVersion: 1, AsOf: monday0959.Add(-time.Hour), Accounts: map[string]events.AccountPositions{
		"ira": {Cash: decimalFrom("500"), Positions: map[string]decimal.Decimal{"VTI": decimalFrom("60"), "BND": decimalFrom("35")}}}}
	data, _ := json.Marshal(snap)
	if err := d.client().Publish("rebalance.positions.test-household", data); err != nil {
		t.Fatal(err)
	}
	// A newer snapshot after it, to know the older one was handled (a
	// snapshot dated after the clock would count as of now).
	d.clock.Advance(time.Second)
	snap.AsOf = d.clock.Now()
	snap.Accounts["ira"] = events.AccountPositions{Cash: after.Cash, Positions: after.Positions}
	data, _ = json.Marshal(snap)
	if err := d.client().Publish("rebalance.positions.test-household", data); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if st := d.policyStatus(); !st.HoldingsAsOf.Equal(snap.AsOf) {
			return fmt.Errorf("holdings as of %v, want %v", st.HoldingsAsOf, snap.AsOf)
		}
		return nil
	})
	if got := d.policyStatus().Holdings["ira"]; !got.Cash.Equal(after.Cash) || !got.Positions["VTI"].Equal(after.Positions["VTI"]) {
		t.Fatalf("holdings %+v, want the filled %+v: the late snapshot undid the fills", got, after)
	}
}

// switchablePublisher fails order publishes while down is set.
type switchablePublisher struct {
	engine.Publisher
	down atomic.Bool
}

func (p *switchablePublisher) PublishOrders(ctx context.Context, o []events.Order, pl *events.Plan) (bool, error) {
	if p.down.Load() {
		return false, errors.New("injected outage")
	}
	return p.Publisher.PublishOrders(ctx, o, pl)
}

// TestExpiredBatchNotSentLate: orders that could not be published before
// their expires_at are not sent once NATS is back; they are expired, and
// the policy plans afresh on current prices.
func TestExpiredBatchNotSentLate(t *testing.T) {
	pub := &switchablePublisher{}
	pub.down.Store(true)
	pol := policyText("threshold", "")
	d := startDaemon(t, pol, monday0959, func(_ *config.Config, m *Main) {
		m.WrapPublisher = func(p engine.Publisher) engine.Publisher { pub.Publisher = p; return pub }
	})
	w := d.watchOrders()
	d.prices("VTI", "130", "BND", "100")
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if d.policyStatus().Unacked == 0 {
			return fmt.Errorf("no journaled orders yet")
		}
		return nil
	})
	stale := d.policyStatus().LastPlanID
	// Three hours later (order_ttl 2h) NATS is back, with fresh prices.
	d.clock.Advance(3 * time.Hour)
	pub.down.Store(false)
	d.prices("VTI", "131", "BND", "100")
	orders := w.waitOrders(t, 1)
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if st := d.policyStatus(); st.LastPlanID == stale || st.Unacked > 0 {
			return fmt.Errorf("plan %s, %d unacknowledged", st.LastPlanID, st.Unacked)
		}
		return nil
	})
	for _, o := range w.snapshot() {
		if o.PlanID == stale {
			t.Fatalf("order %s of the expired plan was published late", o.OrderID)
		}
	}
	if len(orders) == 0 {
		t.Fatal("no new plan")
	}
}
