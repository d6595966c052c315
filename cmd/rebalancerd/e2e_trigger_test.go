package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

const newYork = "CRON_TZ=America/New_York "

// TestCalendarFires: a calendar policy rebalances at its firing, driven by
// the fake clock, even with every sleeve inside its band.
func TestCalendarFires(t *testing.T) {
	pol := policyText("calendar", newYork+"0 10 * * MON-FRI")
	d := startDaemon(t, pol, monday0959, nil)
	w := d.watchOrders()
	// VTI at 105: stocks 6300 of 10300 is 61.2%, inside 55-65%.
	d.prices("VTI", "105", "BND", "100")
	d.Engine.EvaluateAll()
	if st := d.policyStatus(); len(st.Breaching) != 0 || len(st.Blocked) != 0 {
		t.Fatalf("want in band and unblocked: %+v", st)
	}
	d.waitArmed(1)
	d.clock.Advance(29 * time.Second) // 09:59:59: not yet
	d.Engine.EvaluateAll()
	if n := len(w.snapshot()); n != 0 || d.policyStatus().LastPlanID != "" {
		t.Fatalf("rebalanced before the firing: %d orders", n)
	}
	d.waitArmed(1)
	d.clock.Advance(time.Second) // 10:00:00 New York
	want := expectedPlan(t, pol, monday0959, "VTI", "105", "BND", "100")
	if len(want.Orders) == 0 {
		t.Fatal("test setup: no orders to target")
	}
	sameOrders(t, w.waitOrders(t, len(want.Orders)), want, "calendar")
}

// TestHybridFiresOnlyOnBreach: at a firing with no breach nothing happens;
// at the next firing, with a breach, the policy rebalances.
func TestHybridFiresOnlyOnBreach(t *testing.T) {
	pol := policyText("hybrid", newYork+"0 10 * * MON-FRI")
	d := startDaemon(t, pol, monday0959, nil)
	w := d.watchOrders()
	d.prices("VTI", "105", "BND", "100")
	d.waitArmed(1)
	d.clock.Advance(31 * time.Second) // Monday 10:00:01
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if st := d.policyStatus(); st.CalendarDue || st.LastEvaluated.Before(d.clock.Now()) {
			return fmt.Errorf("firing not handled yet: %+v", st)
		}
		return nil
	})
	if n := len(w.snapshot()); n != 0 || d.policyStatus().LastPlanID != "" {
		t.Fatalf("hybrid rebalanced without a breach: %d orders", n)
	}

	// Tuesday 09:59:30: VTI at 130 breaches; the firing at 10:00 acts.
	tuesday := monday0959.Add(24 * time.Hour)
	d.waitArmed(1)
	d.clock.Set(tuesday)
	d.prices("VTI", "130", "BND", "100")
	if n := len(w.snapshot()); n != 0 {
		t.Fatalf("hybrid rebalanced between firings: %d orders", n)
	}
	d.waitArmed(1)
	d.clock.Advance(31 * time.Second)
	want := expectedPlan(t, pol, tuesday, "VTI", "130", "BND", "100")
	sameOrders(t, w.waitOrders(t, len(want.Orders)), want, "hybrid")
}

// TestCalendarDSTFallBackFiresOnce: "30 1 * * *" in New York occurs twice
// on 2026-11-01 (01:30 EDT, then 01:30 EST an hour later); robfig/cron
// fires at both, and the daemon acts on the first only. The next day's
// 01:30 fires again.
func TestCalendarDSTFallBackFiresOnce(t *testing.T) {
	pol := policyText("calendar", newYork+"30 1 * * *")
	start := time.Date(2026, 11, 1, 5, 25, 0, 0, time.UTC) // 01:25 EDT
	d := startDaemon(t, pol, start, nil)
	w := d.watchOrders()
	d.prices("VTI", "105", "BND", "100")
	d.waitArmed(1)
	d.clock.Set(time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC)) // 01:30 EDT
	d.waitAcked()
	d.fillAll(w.waitOrders(t, len(d.policyStatus().PendingOrders)))
	plan1 := d.policyStatus().LastPlanID

	// 01:25 EST: fresh prices that would trade again.
	d.waitArmed(1)
	d.clock.Set(time.Date(2026, 11, 1, 6, 25, 0, 0, time.UTC))
	d.prices("VTI", "112", "BND", "100")
	d.waitArmed(1)
	d.clock.Set(time.Date(2026, 11, 1, 6, 31, 0, 0, time.UTC)) // 01:31 EST: the repeat has fired
	d.waitArmed(1)                                             // the calendar is waiting for the next day
	d.Engine.EvaluateAll()
	if st := d.policyStatus(); st.LastPlanID != plan1 || st.CalendarDue {
		t.Fatalf("the DST repeat of 01:30 rebalanced again: plan %s (was %s)", st.LastPlanID, plan1)
	}
	n := len(w.snapshot())

	// The next day's 01:30 EST fires.
	d.clock.Set(time.Date(2026, 11, 2, 6, 25, 0, 0, time.UTC))
	d.prices("VTI", "112", "BND", "100")
	d.waitArmed(1)
	d.clock.Set(time.Date(2026, 11, 2, 6, 30, 0, 0, time.UTC))
	w.waitOrders(t, n+1)
	if st := d.policyStatus(); st.LastPlanID == plan1 {
		t.Fatalf("no new plan at the next day's firing")
	}
}

// TestFillUpdatesHoldings: fills move the ledger's positions and cash, the
// orders stop being pending, and the next evaluation values the new
// positions.
func TestFillUpdatesHoldings(t *testing.T) {
	pol := policyText("threshold", "")
	d := startDaemon(t, pol, monday0959, nil)
	w := d.watchOrders()
	d.prices("VTI", "130", "BND", "100")
	d.waitAcked()
	orders := w.waitOrders(t, len(d.policyStatus().PendingOrders))
	// Expected ledger: start from the holdings and apply each order in full.
	pos := map[string]decimal.Decimal{"VTI": decimal.NewFromInt(60), "BND": decimal.NewFromInt(35)}
	cash := decimal.NewFromInt(500)
	for _, o := range orders {
		v := o.Quantity.Mul(o.Price)
		if o.Side == "buy" {
			pos[o.Instrument] = pos[o.Instrument].Add(o.Quantity)
			cash = cash.Sub(v)
		} else {
			pos[o.Instrument] = pos[o.Instrument].Sub(o.Quantity)
			cash = cash.Add(v)
		}
	}
	d.fillAll(orders)
	st := d.policyStatus()
	ira := st.Holdings["ira"]
	if !ira.Cash.Equal(cash) || !ira.Positions["VTI"].Equal(pos["VTI"]) || !ira.Positions["BND"].Equal(pos["BND"]) {
		t.Fatalf("holdings after fills = %+v, want cash %s VTI %s BND %s", ira, cash, pos["VTI"], pos["BND"])
	}
	// The next evaluation sees the new positions: back inside the bands.
	d.clock.Advance(time.Minute)
	d.prices("VTI", "130", "BND", "100")
	d.Engine.EvaluateAll()
	st = d.policyStatus()
	total := pos["VTI"].Mul(decimal.NewFromInt(130)).Add(pos["BND"].Mul(decimal.NewFromInt(100))).Add(cash)
	if st.TotalValue != total.StringFixed(2) || len(st.Breaching) != 0 || len(st.Blocked) != 0 {
		t.Fatalf("after fills: total %s (want %s), breaching %v, blocked %v", st.TotalValue, total.StringFixed(2), st.Breaching, st.Blocked)
	}
}

// TestCalendarFiresAfterReload: a reload that keeps the schedule (here an
// edit of another field, then a SIGHUP-style reload) keeps the calendar
// firing.
func TestCalendarFiresAfterReload(t *testing.T) {
	pol := policyText("calendar", newYork+"0 10 * * MON-FRI")
	d := startDaemon(t, pol, monday0959, nil)
	w := d.watchOrders()
	before := d.policyStatus().Version
	edited := strings.Replace(pol, "cooldown: 1m", "cooldown: 2m", 1)
	writeFile(t, d.policy, edited)
	if err := d.Reload(reasonSIGHUP); err != nil {
		t.Fatal(err)
	}
	if d.policyStatus().Version == before {
		t.Fatal("the edit was not loaded")
	}
	d.prices("VTI", "105", "BND", "100")
	d.waitArmed(1)
	d.clock.Advance(31 * time.Second) // 10:00:01 New York
	want := expectedPlan(t, edited, monday0959, "VTI", "105", "BND", "100")
	sameOrders(t, w.waitOrders(t, len(want.Orders)), want, "calendar")
}
