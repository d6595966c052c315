package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
)

// monday0959 is Monday 2026-11-23 09:59:30 in New York (14:59:30 UTC).
var monday0959 = time.Date(2026, 11, 23, 14, 59, 30, 0, time.UTC)

// expectedPlan computes, with the core alone, the plan the daemon should
// publish for the test holdings at the given prices, whose oldest quote is
// from at (the plan's as_of).
func expectedPlan(t *testing.T, policyYAML string, at time.Time, kv ...string) *plan.Plan {
	t.Helper()
	p, err := policy.Parse("test.yaml", []byte(policyYAML))
	if err != nil {
		t.Fatal(err)
	}
	return planOf(t, p, at, kv...)
}

// planOf is the plan of policy p on testHoldings at prices kv.
func planOf(t *testing.T, p *policy.Policy, at time.Time, kv ...string) *plan.Plan {
	t.Helper()
	h, err := portfolio.ParseHoldings("h.yaml", []byte(testHoldings))
	if err != nil {
		t.Fatal(err)
	}
	q := &portfolio.Prices{AsOf: at, Quotes: map[string]portfolio.Quote{}}
	for i := 0; i < len(kv); i += 2 {
		q.Quotes[kv[i]] = portfolio.Quote{Price: decimal.RequireFromString(kv[i+1]), At: at}
	}
	b, err := portfolio.Bind(p, h, q)
	if err != nil {
		t.Fatal(err)
	}
	return plan.Make(drift.Compute(b))
}

// sameOrders checks that the events carry exactly the plan's orders.
func sameOrders(t *testing.T, got []events.Order, want *plan.Plan, trigger string) {
	t.Helper()
	if len(got) != len(want.Orders) {
		t.Fatalf("%d order events, want %d: %+v", len(got), len(want.Orders), got)
	}
	slices.SortFunc(got, func(a, b events.Order) int { return strings.Compare(a.OrderID, b.OrderID) })
	for i, w := range want.Orders {
		g := got[i]
		if g.OrderID != w.ID || g.PlanID != want.ID || g.Account != w.Account || g.Instrument != w.Instrument ||
			g.Side != string(w.Side) || !g.Quantity.Equal(w.Quantity) || !g.Price.Equal(w.Price) ||
			g.Phase != w.Phase || g.Trigger != trigger || g.SchemaVersion != events.SchemaVersion ||
			g.PolicyVersion == "" || g.Sleeve != w.Sleeve || g.Rule != string(w.Rule) {
			t.Errorf("order %d = %+v, want %+v (trigger %s)", i, g, w, trigger)
		}
	}
}

// TestThresholdBreachPublishesOrders: prices on target give no orders; a
// move that breaches a band yields exactly the planned order events on the
// orders subjects, read by an independent subscriber, each once.
func TestThresholdBreachPublishesOrders(t *testing.T) {
	pol := policyText("threshold", "")
	d := startDaemon(t, pol, monday0959, nil)
	w := d.watchOrders()

	d.prices("VTI", "100", "BND", "100")
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if st := d.policyStatus(); st.LastEvaluated.IsZero() || len(st.Blocked) > 0 {
			return fmt.Errorf("not evaluated or blocked: %+v", st)
		}
		return nil
	})
	if st := d.policyStatus(); len(st.Breaching) != 0 || st.LastPlanID != "" {
		t.Fatalf("on target, want no breach and no plan: %+v", st)
	}

	// A minute later (check_every), VTI rallies 30%: stocks 7800 of 11800
	// is 66.1%, above the 65% band edge.
	d.clock.Advance(time.Minute)
	d.prices("VTI", "130")
	want := expectedPlan(t, pol, monday0959, "VTI", "130", "BND", "100")
	if len(want.Orders) == 0 {
		t.Fatal("test setup: the core plans no orders")
	}
	got := w.waitOrders(t, len(want.Orders))
	sameOrders(t, got, want, "threshold")

	// The orders are pending: further ticks do not plan again.
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if st := d.policyStatus(); len(st.PendingOrders) != len(want.Orders) || st.Unacked != 0 {
			return fmt.Errorf("pending %d unacked %d", len(st.PendingOrders), st.Unacked)
		}
		return nil
	})
	d.clock.Advance(2 * time.Minute)
	d.prices("VTI", "131", "BND", "100")
	d.Engine.EvaluateAll()
	if st := d.policyStatus(); !slices.ContainsFunc(st.Blocked, func(b engine.Block) bool { return b.Reason == "pending_orders" }) {
		t.Errorf("want pending_orders block, got %+v", st.Blocked)
	}
	// The stream holds each order exactly once.
	if n := d.streamOrders(); n != len(want.Orders) {
		t.Errorf("orders stream holds %d order messages, want %d", n, len(want.Orders))
	}
	for id, n := range w.ids {
		if n != 1 {
			t.Errorf("order %s received %d times", id, n)
		}
	}
}
