package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/config"
	"github.com/rebalancerd/rebalancerd/internal/events"
)

// Issue 12, "an absurd price confirmed twice is traded": a move beyond
// max_move must persist for prices.confirm_after (or come from a second
// feed), a valuation that moved more than limits.max_value_change is held,
// and order limits are judged against the last accepted valuation.

// wantBlockDetail checks that /status, /readyz and the metrics show the
// block reason, with /status and /readyz naming want in its detail.
func (d *daemon) wantBlockDetail(reason, want string) {
	d.t.Helper()
	found := false
	for _, b := range d.policyStatus().Blocked {
		if b.Reason == reason && strings.Contains(b.Detail, want) {
			found = true
		}
	}
	if !found {
		d.t.Errorf("/status blocked %+v, want %s naming %q", d.policyStatus().Blocked, reason, want)
	}
	if code, body := d.httpGet("/readyz"); code != 503 || !strings.Contains(body, reason) || !strings.Contains(body, want) {
		d.t.Errorf("/readyz = %d %q, want 503 naming %s and %q", code, body, reason, want)
	}
	if _, body := d.httpGet("/metrics"); !strings.Contains(body, fmt.Sprintf(`rebalancerd_planning_blocked{policy="test-household",reason=%q} 1`, reason)) {
		d.t.Errorf("metrics do not show the %s block", reason)
	}
}

// noOrders evaluates the policy and checks that nothing was published.
func (d *daemon) noOrders(w *orderWatcher, when string) {
	d.t.Helper()
	d.Engine.EvaluateAll()
	if n, m := len(w.snapshot()), d.streamOrders(); n != 0 || m != 0 {
		d.t.Fatalf("%s: %d orders published (%d in the stream): %+v", when, n, m, w.snapshot())
	}
}

// startOnTarget starts a daemon on pol with the household valued on
// target (VTI and BND at 100: 10000, the first accepted valuation), and a
// watcher of its orders.
func startOnTarget(t *testing.T, pol string) (*daemon, *orderWatcher) {
	t.Helper()
	d := startDaemon(t, pol, monday0959, nil)
	w := d.watchOrders()
	d.prices("VTI", "100", "BND", "100")
	d.waitBlocked()
	d.waitArmed(0)
	return d, w
}

// jumpTwice sends the same quote of sym on the NATS feed a minute later
// and again 300 ms after that: the move stays quarantined, its detail
// naming want, and nothing is published.
func (d *daemon) jumpTwice(w *orderWatcher, sym, price, want string) {
	d.t.Helper()
	d.clock.Advance(time.Minute)
	d.prices(sym, price)
	d.waitBlocked("quarantined_price")
	d.clock.Advance(300 * time.Millisecond)
	d.prices(sym, price)
	d.waitBlocked("quarantined_price")
	d.wantBlockDetail("quarantined_price", want)
	d.noOrders(w, "after the same feed sent the move twice")
}

// TestAbsurdPriceNotTraded: a 1e39 quote and an identical one 300 ms
// later, on the NATS price feed, stay unconfirmed; when they persist for
// confirm_after the valuation they give (6e40 against 10000) is held;
// when that persists too, the plan's 41-digit notionals are refused. No
// order is ever published. (On the code before the fix the second quote
// confirmed the first and the plan was published, with max_order_share
// 100% as in the report.)
func TestAbsurdPriceNotTraded(t *testing.T) {
	d, w := startOnTarget(t, policyText("threshold", "")+"limits:\n  max_order_share: 100%\n")

	d.jumpTwice(w, "VTI", "1e39", "unconfirmed price 1000000000000000000000000000000000000000")
	d.wantBlockDetail("quarantined_price", "the accepted price stays in force until quotes agreeing within 40% persist for 5m0s")

	// The absurd price persists for confirm_after: the price is taken,
	// but the valuation it gives is held.
	d.clock.Advance(5 * time.Minute)
	d.prices("VTI", "1e39", "BND", "100")
	d.waitBlocked("value_change")
	d.wantBlockDetail("value_change", "from 10000.00, its value at the last accepted prices")
	d.noOrders(w, "on a held valuation")

	// It persists again: the plan it makes carries numbers no consumer
	// can read, and is refused (at the engine's next tick).
	d.waitArmed(0)
	d.clock.Advance(5 * time.Minute)
	d.waitBlocked("risk_limit")
	d.wantBlockDetail("risk_limit", "order_size: order ")
	d.noOrders(w, "on an absurd plan")
}

// TestValueChangeHeld: prices each within max_move that move the
// investable total by more than max_value_change (10000 to 12340, 23.4%)
// hold planning; the hold clears once the valuation persisted for
// confirm_after, and the policy trades.
func TestValueChangeHeld(t *testing.T) {
	d, w := startOnTarget(t, policyText("threshold", ""))

	d.clock.Advance(time.Minute)
	d.prices("VTI", "139", "BND", "100") // 39%: within max_move (40%)
	d.waitBlocked("value_change")
	d.wantBlockDetail("value_change", "investable total 12340.00 moved 23.4% from 10000.00, its value at the last accepted prices")
	d.noOrders(w, "on a held valuation")

	d.clock.Advance(4 * time.Minute)
	d.prices("VTI", "139", "BND", "100")
	d.waitBlocked("value_change")
	d.noOrders(w, "4 minutes into the hold")

	d.waitArmed(0)               // the tick re-armed after the last one
	d.clock.Advance(time.Minute) // confirm_after (5m) since the first held valuation
	w.waitOrders(t, 2)
	if v := d.policyStatus().AcceptedValuation; v == nil || !v.Total.Equal(decimalFrom("12340")) {
		t.Errorf("accepted valuation %+v, want 12340", v)
	}
}

// TestValueChangeSurvivesRestart: the accepted valuation is kept in the
// state directory. After a restart every price is new to the guard (it
// takes the first quote of each symbol as it is), but a total far from the
// one accepted before the restart is still held.
func TestValueChangeSurvivesRestart(t *testing.T) {
	pol := policyText("threshold", "")
	first := startDaemon(t, pol, monday0959, nil)
	first.prices("VTI", "100", "BND", "100")
	first.waitBlocked()
	if v := first.policyStatus().AcceptedValuation; v == nil || !v.Total.Equal(decimalFrom("10000")) {
		t.Fatalf("accepted valuation %+v, want 10000", v)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	second := startDaemon(t, pol, monday0959.Add(time.Minute), func(c *config.Config, m *Main) {
		c.StateDir = first.Config.StateDir
		c.Policies = first.Config.Policies
	})
	w := second.watchOrders()
	second.prices("VTI", "139", "BND", "100")
	second.waitBlocked("value_change")
	second.noOrders(w, "after a restart, on a held valuation")
}

// TestOrderLimitsAgainstAcceptedValuation: a price within max_move and a
// total within max_value_change (10000 to 11800, 18%) do not widen the
// order limits: the sale of 5 VTI at 130 (650) is 6.5% of the holdings'
// value at the accepted prices (10000), above max_order_share 6%, though
// only 5.5% of the 11800 the new price gives.
func TestOrderLimitsAgainstAcceptedValuation(t *testing.T) {
	d, w := startOnTarget(t, policyText("threshold", "")+"limits:\n  max_order_share: 6%\n")

	d.clock.Advance(time.Minute)
	d.prices("VTI", "130", "BND", "100")
	d.waitBlocked("risk_limit")
	d.wantBlockDetail("risk_limit", "is 650, 6.5% of the portfolio's 10000.00 (last accepted valuation; the plan values it at 11800.00); limit 6%")
	d.noOrders(w, "above max_order_share of the accepted valuation")
}

// TestSecondFeedConfirms: a move beyond max_move repeated by the same feed
// (the NATS feed "bus") stays unconfirmed; the same move read from another
// configured feed (a prices file, polled) confirms it at once, and the
// policy trades at the confirmed price. Policy: max_move 10%; VTI 100 to
// 125 moves the total 15% (within max_value_change) and takes stocks out
// of their band.
func TestSecondFeedConfirms(t *testing.T) {
	pol := strings.Replace(policyText("threshold", ""), "max_move: 40%", "max_move: 10%", 1)
	var file string
	writePrices := func(at time.Time, vti string) {
		writeFile(t, file, fmt.Sprintf("as_of: %s\nprices: {VTI: %q, BND: \"100\"}\n", at.UTC().Format(time.RFC3339Nano), vti))
	}
	d := startDaemon(t, pol, monday0959, func(c *config.Config, m *Main) {
		file = filepath.Join(filepath.Dir(c.File), "prices.yaml")
		writePrices(monday0959, "100")
		c.Feeds = append(c.Feeds, config.Feed{Name: "file", Kind: config.FeedFile, Path: file,
			Interval: 20 * time.Millisecond, Timeout: time.Second, Retries: 0})
	})
	w := d.watchOrders()
	d.waitBlocked() // the file feed priced both
	d.jumpTwice(w, "VTI", "125", "unconfirmed price 125 at 2026-11-23T15:00:30Z from feed bus moved 25% from the accepted 100")

	d.clock.Advance(time.Second)
	writePrices(d.clock.Now(), "125")
	orders := w.waitOrders(t, 2)
	for _, o := range orders {
		if o.Instrument == "VTI" && !o.Price.Equal(decimalFrom("125")) {
			t.Errorf("order %s priced %s, want the confirmed 125", o.OrderID, o.Price)
		}
	}
}

// TestDepositIsNotAValueChange: a deposit larger than the portfolio
// (12000 into 10000) moves the investable total by 120% but not its value
// at the accepted prices: it is invested at once, without a value_change
// hold. (max_order_share 50%: its buy of 7200 VTI is 32.7% of 22000.)
func TestDepositIsNotAValueChange(t *testing.T) {
	d, w := startOnTarget(t, policyText("threshold", "")+"limits:\n  max_order_share: 50%\n")
	data, _ := json.Marshal(events.CashFlow{SchemaVersion: 1, CashFlowID: "dep-1", Kind: events.CashFlowDeposit, Account: "ira",
		Amount: decimalFrom("12000"), At: d.clock.Now()})
	if err := d.client().Publish("rebalance.cashflows.test-household", data); err != nil {
		t.Fatal(err)
	}
	for _, o := range w.waitOrders(t, 2) {
		if o.Side != "buy" || o.Trigger != "cashflow" {
			t.Errorf("order %+v: want buys of the deposit", o)
		}
	}
	if slices.Contains(d.blockedReasons(), "value_change") {
		t.Errorf("blocked %v after a deposit", d.blockedReasons())
	}
}
