package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/config"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/targets"
)

// TestTiltExpiryRebalances: a tactical tilt holds the stocks sleeve at 65%
// until its last day; the daemon plans nothing while the tilted targets
// are met, and on the first evaluation after that day it returns to the
// strategic 60%: the tilt shows as expired and the drift it now measures
// breaches the band, so the daemon publishes the orders the core plans on
// the strategic targets.
//
// Prices VTI 130, BND 100: stocks 60 x 130 = 7800, bonds 35 x 100 = 3500,
// cash 500, total 11800. Stocks 66.1%, bonds 29.7%, cash 4.2%. Tilted
// targets 65/30/5 (the 5 points from bonds): stocks +1.1, within 5 points.
// Strategic 60/35/5: stocks +6.1, out of band.
func TestTiltExpiryRebalances(t *testing.T) {
	pol := policyText("threshold", "") + `tilts:
  - {sleeve: stocks, tilt: +5%, until: 2026-11-23, from: [bonds], reason: "overweight stocks into year end"}
`
	d := startDaemon(t, pol, monday0959, nil) // Monday 2026-11-23, the tilt's last day
	w := d.watchOrders()

	d.prices("VTI", "130", "BND", "100")
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		st := d.policyStatus()
		if st.LastEvaluated.IsZero() || len(st.Blocked) > 0 || st.Targets == nil {
			return fmt.Errorf("not evaluated or blocked: %+v", st.Blocked)
		}
		return nil
	})
	st := d.policyStatus()
	if len(st.Targets.Active) != 1 || len(st.Targets.Expired) != 0 || st.EffectiveVersion == st.Version {
		t.Fatalf("on its last day the tilt should apply: %+v (version %s, effective %s)", st.Targets, st.Version, st.EffectiveVersion)
	}
	if len(st.Breaching) != 0 || st.LastPlanID != "" {
		t.Fatalf("tilted targets met, yet breaching %v, plan %q", st.Breaching, st.LastPlanID)
	}

	// The next day: fresh quotes at the same prices.
	d.clock.Set(time.Date(2026, 11, 24, 14, 30, 0, 0, time.UTC))
	at := d.clock.Now()
	d.prices("VTI", "130", "BND", "100")
	orders := w.waitOrders(t, 2)
	st = d.policyStatus()
	if st.Targets == nil || len(st.Targets.Active) != 0 || len(st.Targets.Expired) != 1 ||
		!strings.Contains(st.Targets.Expired[0].Reason, "year end") || st.EffectiveVersion != st.Version {
		t.Fatalf("after its last day the tilt should be expired: %+v (version %s, effective %s)", st.Targets, st.Version, st.EffectiveVersion)
	}
	// Without active tilts the effective policy is the file's: the core's
	// plan on it is what the daemon must have published.
	sameOrders(t, orders, expectedPlan(t, pol, at, "VTI", "130", "BND", "100"), "threshold")
	for _, o := range orders {
		if o.PolicyVersion != st.Version {
			t.Errorf("order %s carries policy version %s, want %s", o.OrderID, o.PolicyVersion, st.Version)
		}
	}
}

// TestGlidePathFollowsTheDate: with a glide path the daemon plans on the
// targets of the investor's age on the day of the evaluation: they, and
// the policy version order ids derive from, change from one day to the
// next without a reload.
func TestGlidePathFollowsTheDate(t *testing.T) {
	pol := policyText("threshold", "") + `investor: {birth_date: 1990-11-24}
glide_path:
  - age: 20
    targets: {stocks: 80%, bonds: 15%, cash: 5%}
  - age: 40
    targets: {stocks: 60%, bonds: 35%, cash: 5%}
`
	d := startDaemon(t, pol, monday0959, nil) // 2026-11-23: 35 years and 364 days
	glideOf := func() (*targets.GlideStep, string) {
		var g *targets.GlideStep
		var version string
		checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			st := d.policyStatus()
			if st.Targets == nil || st.Targets.Glide == nil || st.Targets.Date != d.clock.Now().UTC().Format(time.DateOnly) {
				return fmt.Errorf("no glide step for %s yet: %+v", d.clock.Now().UTC().Format(time.DateOnly), st.Targets)
			}
			g, version = st.Targets.Glide, st.EffectiveVersion
			return nil
		})
		return g, version
	}
	d.prices("VTI", "100", "BND", "100")
	g, v1 := glideOf()
	if g.Years != 35 || g.Days != 364 || g.FromAge != 20 || g.ToAge != 40 {
		t.Fatalf("glide step on 2026-11-23: %+v", g)
	}
	d.clock.Set(time.Date(2026, 11, 24, 14, 30, 0, 0, time.UTC)) // the 36th birthday
	d.prices("VTI", "100", "BND", "100")
	g, v2 := glideOf()
	if g.Years != 36 || g.Days != 0 || v1 == v2 || v2 == "" {
		t.Fatalf("glide step on 2026-11-24: %+v, versions %s then %s", g, v1, v2)
	}
}

// TestCorrelationAlert: prices that move together raise a correlation
// alert on the alerts subject once the correlation has stayed above the
// threshold for the policy's `for`; prices that then move apart clear it.
// One interval is one minute of the fake clock.
func TestCorrelationAlert(t *testing.T) {
	pol := policyText("threshold", "") + `correlation:
  window: 25m
  interval: 1m
  threshold: 0.8
  clear_below: 0.6
  for: 5m
  pairs: [[stocks, bonds]]
`
	d := startDaemon(t, pol, monday0959, nil)
	alerts := make(chan events.Alert, 16)
	sub, err := d.client().Subscribe("rebalance.alerts.>", func(m *natsgo.Msg) {
		var a events.Alert
		if err := json.Unmarshal(m.Data, &a); err != nil {
			t.Errorf("bad alert: %v", err)
			return
		}
		alerts <- a
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	// A deterministic walk: VTI's return each minute is r, BND's is r/2
	// (together) or -r/2 (apart), with r alternating in sign and size so
	// that prices stay near 100 and the drift within its bands.
	vti, bnd := decimal.NewFromInt(100), decimal.NewFromInt(100)
	steps := []string{"0.004", "-0.003", "0.005", "-0.006", "0.002", "-0.001", "0.003", "-0.004"}
	step := 0
	waitFor := func(kind string, together bool, maxSteps int) events.Alert {
		t.Helper()
		for ; maxSteps > 0; maxSteps-- {
			r := decimal.RequireFromString(steps[step%len(steps)])
			step++
			half := r.Div(decimal.NewFromInt(2))
			if !together {
				half = half.Neg()
			}
			vti = vti.Mul(decimal.NewFromInt(1).Add(r)).Round(4)
			bnd = bnd.Mul(decimal.NewFromInt(1).Add(half)).Round(4)
			d.clock.Advance(time.Minute)
			d.prices("VTI", vti.String(), "BND", bnd.String())
			select {
			case a := <-alerts:
				if a.Kind != kind {
					t.Fatalf("alert %s at step %d, want %s", a.Kind, step, kind)
				}
				return a
			case <-time.After(20 * time.Millisecond): // the evaluation is on the engine's tick: poll again
			}
		}
		t.Fatalf("no %s alert after %d steps", kind, step)
		return events.Alert{}
	}
	high := waitFor(events.AlertCorrelationHigh, true, 80)
	if len(high.Sleeves) != 2 || high.Sleeves[0] != "stocks" || high.Sleeves[1] != "bonds" ||
		!high.Correlation.GreaterThan(decimal.RequireFromString("0.8")) || high.Returns < 20 || high.Policy != "test-household" {
		t.Errorf("high alert: %+v", high)
	}
	// Not before 20 returns and 5 minutes above the threshold.
	if step < 25 {
		t.Errorf("raised at step %d: before 20 returns plus `for`", step)
	}
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if _, body := d.httpGet("/metrics"); !strings.Contains(body, `rebalancerd_correlation_alert{pair="stocks~bonds",policy="test-household"} 1`) {
			return fmt.Errorf("alert gauge not 1")
		}
		return nil
	})
	t.Logf("correlation_high at step %d: %s over %d returns", step, high.Correlation, high.Returns)
	normal := waitFor(events.AlertCorrelationNormal, false, 80)
	t.Logf("correlation_normal at step %d: %s", step, normal.Correlation)
	if !normal.Correlation.LessThan(decimal.RequireFromString("0.6")) || !normal.Since.Equal(high.Since) {
		t.Errorf("normal alert: %+v (high since %v)", normal, high.Since)
	}
}

// TestPhaseInAcrossReloadAndRestart: with phase_in over 60 days every 30,
// an edit from 60/35/5 to 40/55/5 moves the targets in three steps, at
// days 0, 30 and 60; the phase survives a restart of the daemon, and a later
// edit starts a new phase from the targets in effect.
//
//	step 1: stocks 60x2/3 + 40/3 = 53.33333333..., bonds 35x2/3 + 55/3 = 41.66666666...
//	        rounded down to 8 places, the residue 0.00000001 to the largest (stocks):
//	        0.53333334, 0.41666666, 0.05
//	step 2: stocks 60/3 + 40x2/3 = 46.66666666..., bonds 35/3 + 55x2/3 = 48.33333333...:
//	        0.46666666, 0.48333334 (the residue to bonds, now the largest), 0.05
//	step 3: 0.4, 0.55, 0.05, and the phase is over.
func TestPhaseInAcrossReloadAndRestart(t *testing.T) {
	pol := policyText("threshold", "") + "phase_in: {over: 60d, every: 30d}\n"
	d := startDaemon(t, pol, monday0959, nil)
	d.prices("VTI", "100", "BND", "100")
	targetsNow := func(d *daemon, want string, step int) {
		t.Helper()
		checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			st := d.policyStatus()
			if st.Targets == nil || st.LastEvaluated.IsZero() {
				return errors.New("not evaluated")
			}
			var got []string
			for _, sl := range st.EffectiveTargets {
				got = append(got, sl.Sleeve+"="+sl.Target)
			}
			gotStep := 0
			if st.Phase != nil {
				gotStep = st.Phase.Step
			}
			if strings.Join(got, " ") != want || gotStep != step {
				return fmt.Errorf("targets %v at phase step %d, want %s at step %d", got, gotStep, want, step)
			}
			return nil
		})
	}
	targetsNow(d, "stocks=0.6 bonds=0.35 cash=0.05", 0)

	// The edit: phased from the targets in effect.
	edited := strings.Replace(strings.Replace(pol, "stocks: 60%", "stocks: 40%", 1), "bonds: 35%", "bonds: 55%", 1)
	writeFile(t, d.policy, edited)
	targetsNow(d, "stocks=0.53333334 bonds=0.41666666 cash=0.05", 1)

	d.clock.Advance(30 * 24 * time.Hour)
	d.prices("VTI", "100", "BND", "100")
	targetsNow(d, "stocks=0.46666666 bonds=0.48333334 cash=0.05", 2)

	// A restart mid-way resumes the phase where it stands.
	at := d.clock.Now().Add(time.Hour)
	if err := d.Main.Close(); err != nil {
		t.Fatal(err)
	}
	second := startDaemon(t, edited, at, func(c *config.Config, m *Main) {
		c.StateDir = d.Config.StateDir
		c.Policies = d.Config.Policies
	})
	second.prices("VTI", "100", "BND", "100")
	targetsNow(second, "stocks=0.46666666 bonds=0.48333334 cash=0.05", 2)

	// A further edit mid-way, to 50/45/5, restarts the phase from where
	// the targets stand (step 2 above). Its step 1 is 2/3 of the way back
	// plus 1/3 of the new: stocks 0.46666666x2/3 + 0.5/3 = 0.47777777...,
	// bonds 0.48333334x2/3 + 0.45/3 = 0.47222222..., rounded down, the
	// residue to stocks (the largest): 0.47777778, 0.47222222, 0.05.
	third := strings.Replace(strings.Replace(pol, "stocks: 60%", "stocks: 50%", 1), "bonds: 35%", "bonds: 45%", 1)
	writeFile(t, d.policy, third) // the file both daemons were configured with
	targetsNow(second, "stocks=0.47777778 bonds=0.47222222 cash=0.05", 1)
	second.clock.Advance(60 * 24 * time.Hour)
	second.prices("VTI", "100", "BND", "100")
	targetsNow(second, "stocks=0.5 bonds=0.45 cash=0.05", 0)
}

// TestWashSaleAcrossPlans: a sale of VTI at a loss (filled) is remembered
// by the daemon's ledger; while the wash-sale window runs, the next plan
// does not buy VTI back (the substitute-less sleeve stays short), and once
// it has passed, it does.
//
// Lots: 60 VTI bought at 150 (basis 9000), 35 BND at 100, cash 500.
// VTI at 130: stocks 7800 of 11800 = 66.1%, out of its 5-point band: the
// plan sells VTI at 130, below its 150 basis: a loss sale. VTI then at 80:
// stocks below its band, the plan would buy VTI: blocked for 30 days.
func TestWashSaleAcrossPlans(t *testing.T) {
	pol := strings.Replace(policyText("threshold", ""), "ira: {type: traditional_ira}", "ira: {type: taxable}", 1) +
		"tax: {wash_sale: {window: 30}}\n"
	pol = strings.Replace(pol, "cooldown: 1m", "cooldown: 1s", 1)
	d := startDaemon(t, pol, monday0959, func(c *config.Config, _ *Main) {
		writeFile(t, c.Policies[0].Holdings, `as_of: 2026-11-20T21:00:00Z
accounts:
  ira:
    cash: "500"
    positions:
      VTI: {lots: [{quantity: "60", cost_basis: "9000", acquired: 2024-01-02}]}
      BND: {lots: [{quantity: "35", cost_basis: "3500", acquired: 2024-01-02}]}
`)
	})
	w := d.watchOrders()
	d.prices("VTI", "130", "BND", "100")
	first := w.waitOrders(t, 2)
	var sold bool
	for _, o := range first {
		sold = sold || (o.Instrument == "VTI" && o.Side == "sell")
		// The sell names its lot (the only one, index 0, 2024-01-02), so
		// that the executor need not let the broker pick.
		if o.Side == "sell" && (len(o.Lots) != 1 || o.Lots[0].Lot != 0 || o.Lots[0].Acquired.String() != "2024-01-02" || !o.Lots[0].Quantity.Equal(o.Quantity)) {
			t.Errorf("sell %s %s names lots %+v, want all of lot 0", o.Quantity, o.Instrument, o.Lots)
		}
	}
	if !sold {
		t.Fatalf("first plan does not sell VTI: %+v", first)
	}
	d.waitAcked()
	d.fillAll(first)

	// Eleven days later VTI has fallen: stocks are under their band.
	d.clock.Advance(11 * 24 * time.Hour)
	d.prices("VTI", "80", "BND", "100")
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if st := d.policyStatus(); len(st.Breaching) == 0 || st.LastEvaluated.Before(d.clock.Now()) {
			return fmt.Errorf("not evaluated at the new prices yet: %+v", st.Breaching)
		}
		return nil
	})
	for _, o := range w.snapshot()[len(first):] {
		if o.Instrument == "VTI" && o.Side == "buy" {
			t.Fatalf("VTI bought back 11 days after a loss sale: %+v", o)
		}
	}
	if st := d.policyStatus(); len(st.PendingOrders) > 0 {
		// Selling BND to buy nothing would not help the sleeve: whatever
		// was planned must not buy VTI (checked above); fill it to go on.
		var pending []events.Order
		for _, o := range st.PendingOrders {
			pending = append(pending, o.Order)
		}
		d.waitAcked()
		d.fillAll(pending)
	}

	// After the window the buy is made.
	d.clock.Advance(20 * 24 * time.Hour)
	before := len(w.snapshot())
	d.prices("VTI", "80", "BND", "100")
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		for _, o := range w.snapshot()[before:] {
			if o.Instrument == "VTI" && o.Side == "buy" {
				return nil
			}
		}
		return fmt.Errorf("no VTI buy after the window: %+v", w.snapshot()[before:])
	})
}

// TestCashFlows: a deposit on <prefix>.cashflows.<policy> is invested
// without selling; a withdrawal is raised without buying, and planning
// then waits for a positions snapshot that shows the money gone.
//
// The test household at prices of 100 is 6000 stocks, 3500 bonds, 500
// cash. A deposit of 2000 makes the total 12000: targets 7200/4200/600, so
// the free cash above the cash target, 2500 - 600 = 1900, fills the
// deficits 1200 (stocks) and 700 (bonds) exactly: buy 12 VTI and 7 BND.
func TestCashFlows(t *testing.T) {
	pol := strings.Replace(policyText("threshold", ""), "cooldown: 1m", "cooldown: 1h", 1)
	d := startDaemon(t, pol, monday0959, nil)
	w := d.watchOrders()
	d.prices("VTI", "100", "BND", "100")
	d.waitEvaluated()
	send := func(c events.CashFlow) {
		t.Helper()
		data, _ := json.Marshal(c)
		if err := d.client().Publish("rebalance.cashflows.test-household", data); err != nil {
			t.Fatal(err)
		}
	}
	deposit := events.CashFlow{SchemaVersion: 1, CashFlowID: "dep-1", Kind: events.CashFlowDeposit, Account: "ira",
		Amount: decimal.RequireFromString("2000"), At: d.clock.Now()}
	send(deposit)
	send(deposit) // a repeated delivery is taken in once
	buys := w.waitOrders(t, 2)
	got := map[string]string{}
	for _, o := range buys {
		if o.Side != "buy" || o.Trigger != "cashflow" || o.Rule != "invest" {
			t.Errorf("deposit order %+v: want buys with trigger cashflow, rule invest", o)
		}
		got[o.Instrument] = o.Quantity.String()
	}
	if got["VTI"] != "12" || got["BND"] != "7" {
		t.Fatalf("deposit bought %v, want VTI 12 and BND 7", got)
	}
	d.waitAcked()
	d.fillAll(buys)
	if c := d.policyStatus().Holdings["ira"].Cash; !c.Equal(decimal.RequireFromString("600")) {
		t.Fatalf("cash after the deposit's buys: %s, want 600 (2500 - 1900)", c)
	}

	// A withdrawal of 1000: sells only, covering the amount with the
	// account's free cash above its target.
	send(events.CashFlow{SchemaVersion: 1, CashFlowID: "wd-1", Kind: events.CashFlowWithdrawal, Account: "ira",
		Amount: decimal.RequireFromString("1000"), At: d.clock.Now()})
	sells := w.waitOrders(t, len(buys)+1)[len(buys):]
	raised := decimal.Zero
	for _, o := range sells {
		if o.Side != "sell" || o.Rule != "withdraw" {
			t.Errorf("withdrawal order %+v: want sells with rule withdraw", o)
		}
		raised = raised.Add(o.Notional)
	}
	if raised.LessThan(decimal.RequireFromString("900")) || raised.GreaterThan(decimal.RequireFromString("1100")) {
		t.Errorf("withdrawal sells raise %s for 1000", raised)
	}
	d.waitAcked()
	d.fillAll(sells)
	d.waitBlocked("unknown_order_state")

	// The broker's snapshot without the money releases the policy.
	st := d.policyStatus()
	h := st.Holdings["ira"]
	snap := events.Positions{SchemaVersion: 1, AsOf: d.clock.Now().Add(time.Second), Accounts: map[string]events.AccountPositions{
		"ira": {Cash: h.Cash.Sub(decimal.RequireFromString("1000")), Positions: h.Positions}}}
	data, _ := json.Marshal(snap)
	if err := d.client().Publish("rebalance.positions.test-household", data); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if r := d.blockedReasons(); len(r) > 0 {
			return fmt.Errorf("still blocked: %v", r)
		}
		return nil
	})
}

// TestScheduledContribution: a contribution scheduled at 10:00 New York
// time invests the free cash without selling when it fires, with no breach
// and no calendar rebalance due. Holdings with 1500 cash at prices of 100:
// total 11000, targets 6600/3850/550: stocks need 600 (6 VTI), bonds 350.
func TestScheduledContribution(t *testing.T) {
	pol := strings.Replace(policyText("calendar", "0 0 1 1 *"), "instruments:",
		"contributions:\n  - {account: ira, amount: \"1000\", schedule: \"CRON_TZ=America/New_York 0 10 * * *\"}\ninstruments:", 1)
	d := startDaemon(t, pol, monday0959, func(c *config.Config, _ *Main) {
		writeFile(t, c.Policies[0].Holdings, strings.Replace(testHoldings, `cash: "500"`, `cash: "1500"`, 1))
	})
	w := d.watchOrders()
	d.prices("VTI", "100", "BND", "100")
	d.waitArmed(2) // the calendar and the contribution wait for their firings
	if n := len(w.snapshot()); n != 0 {
		t.Fatalf("%d orders before the contribution's firing", n)
	}
	d.clock.Advance(30 * time.Second) // 10:00 in New York
	d.prices("VTI", "100", "BND", "100")
	orders := w.waitOrders(t, 1)
	var vti string
	for _, o := range orders {
		if o.Side != "buy" || o.Trigger != "cashflow" || o.Rule != "invest" {
			t.Errorf("contribution order %+v: want buys, trigger cashflow, rule invest", o)
		}
		if o.Instrument == "VTI" {
			vti = o.Quantity.String()
		}
	}
	if vti != "6" {
		t.Errorf("bought %s VTI, want 6: %+v", vti, orders)
	}
}

// TestDepositPhasedIn: with phase_in over 60 days every 30 and
// deposits_above 10000, a deposit of 12000 is invested in three equal
// steps of 4000, at days 0, 30 and 60, each whatever the bands say; the
// cash waiting shows in /status and survives a restart.
//
// The test household at prices of 100 is 6000 stocks, 3500 bonds, 500
// cash (on target). Step 1 holds back 8000: the total is 14000, targets
// 8400/4900/700, so the free cash above the cash target buys 24 VTI and
// 14 BND. Step 2 releases 4000 more: 18000, targets 10800/6300/900, again
// 24 VTI and 14 BND. Step 3 the same: 22000, 13200/7700/1100. Before, the
// 12000 was invested at once.
func TestDepositPhasedIn(t *testing.T) {
	pol := policyText("threshold", "") + `phase_in: {over: 60d, every: 30d, deposits_above: "10000"}` + "\n"
	d := startDaemon(t, pol, monday0959, nil)
	w := d.watchOrders()
	d.prices("VTI", "100", "BND", "100")
	d.waitEvaluated()
	data, _ := json.Marshal(events.CashFlow{SchemaVersion: 1, CashFlowID: "dep-1", Kind: events.CashFlowDeposit, Account: "ira",
		Amount: decimal.RequireFromString("12000"), At: d.clock.Now()})
	if err := d.client().Publish("rebalance.cashflows.test-household", data); err != nil {
		t.Fatal(err)
	}
	var all []events.Order
	step := func(d *daemon, k int, waiting string) {
		t.Helper()
		orders := w.waitOrders(t, len(all)+2)[len(all):]
		got := map[string]string{}
		for _, o := range orders {
			if o.Side != "buy" || o.Trigger != "phase_in" || o.Rule != "invest" {
				t.Errorf("step %d order %+v: want buys with trigger phase_in, rule invest", k, o)
			}
			got[o.Instrument] = o.Quantity.String()
		}
		if got["VTI"] != "24" || got["BND"] != "14" {
			t.Fatalf("step %d bought %v, want VTI 24 and BND 14", k, got)
		}
		all = append(all, orders...)
		st := d.policyStatus()
		if waiting == "" {
			if len(st.Waiting) != 0 {
				t.Errorf("step %d: waiting %+v, want none", k, st.Waiting)
			}
		} else if len(st.Waiting) != 1 || st.Waiting[0].Amount.String() != waiting || st.Waiting[0].Step != k || st.Waiting[0].Steps != 3 {
			t.Errorf("step %d: waiting %+v, want %s", k, st.Waiting, waiting)
		}
		d.waitAcked()
		d.fillAll(orders)
	}
	step(d, 1, "8000")

	// A restart keeps the phase: nothing more is bought before day 30.
	at := d.clock.Now().Add(time.Hour)
	if err := d.Main.Close(); err != nil {
		t.Fatal(err)
	}
	second := startDaemon(t, pol, at, func(c *config.Config, m *Main) {
		c.StateDir = d.Config.StateDir
		c.Policies = d.Config.Policies
	})
	w = second.watchOrders()
	second.prices("VTI", "100", "BND", "100")
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		st := second.policyStatus()
		if len(st.Waiting) != 1 || st.Waiting[0].Amount.String() != "8000" {
			return fmt.Errorf("waiting after the restart: %+v", st.Waiting)
		}
		return nil
	})
	second.clock.Advance(30 * 24 * time.Hour)
	second.prices("VTI", "100", "BND", "100")
	step(second, 2, "4000") // the stream replays step 1's orders: all still counts them
	second.clock.Advance(30 * 24 * time.Hour)
	second.prices("VTI", "100", "BND", "100")
	step(second, 3, "")
}

// TestPhaseStepsTradeInsideBands: each step of a phased edit trades to
// the step's targets, though no band is breached. An edit from 60/35/5 to
// 56/39/5 over 60 days every 30 moves stocks 4/3 of a point a step, well
// inside the 5-point bands; before, no step traded. Step 1: stocks
// 0.6x2/3 + 0.56/3 = 0.58666666..., bonds 0.36333333..., rounded down,
// the residue to stocks: 0.58666667, 0.36333333. Of 10000, stocks want
// 5866.667: sell 133.33 of VTI, rounded up to 2 VTI; bonds want
// 3633.333: buy 133.33 of BND, 1 BND (the sale's 200 leaves 66.67). The
// polish then sells one VTI fewer: 5900 / 3600 / 500 is nearer the step's
// targets (largest deviation 33.33) than 5800 / 3600 / 600 (100).
func TestPhaseStepsTradeInsideBands(t *testing.T) {
	pol := policyText("threshold", "") + "phase_in: {over: 60d, every: 30d}\n"
	d := startDaemon(t, pol, monday0959, nil)
	w := d.watchOrders()
	d.prices("VTI", "100", "BND", "100")
	d.waitEvaluated()
	writeFile(t, d.policy, strings.Replace(strings.Replace(pol, "stocks: 60%", "stocks: 56%", 1), "bonds: 35%", "bonds: 39%", 1))
	orders := w.waitOrders(t, 2)
	got := map[string]string{}
	for _, o := range orders {
		if o.Trigger != "phase_in" {
			t.Errorf("order %+v: want trigger phase_in", o)
		}
		got[o.Side+" "+o.Instrument] = o.Quantity.String()
	}
	if got["sell VTI"] != "1" || got["buy BND"] != "1" {
		t.Fatalf("step 1 traded %v, want sell 1 VTI, buy 1 BND", got)
	}
	if st := d.policyStatus(); len(st.Breaching) != 0 {
		t.Errorf("breaching %v: the step was meant to be inside the bands", st.Breaching)
	}
	d.waitAcked()
	d.fillAll(orders)
	d.clock.Advance(30 * 24 * time.Hour)
	d.prices("VTI", "100", "BND", "100")
	more := w.waitOrders(t, 3)
	if o := more[2]; o.Trigger != "phase_in" {
		t.Errorf("step 2 order %+v: want trigger phase_in", o)
	}
}
