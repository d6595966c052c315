package plan_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/targets"
)

// dcaPolicy is twoSleeves (60/40, bands 5 points) in one IRA, with new
// money invested over 180 days every 30 days: seven steps, at days 0,
// 30, ..., 180; deposits above 10000 are phased.
var dcaPolicy = fmt.Sprintf(twoSleeves, "target", "0", "  ira: {type: traditional_ira}") +
	`phase_in: {over: 180d, every: 30d, deposits_above: "10000"}` + "\n"

const dcaPrices = stamp + `prices: {A: "100", B: "50"}`

// TestFirstInvestmentInSteps: an all-cash household of 70000 invests it
// in seven equal steps of 10000, each to its step target whatever the
// bands say: 6000 of A (60) and 4000 of B (80) at each step, the rest
// waiting; the last step, at day 180 exactly, leaves nothing waiting.
// Before, the first plan invested all 70000 at once.
func TestFirstInvestmentInSteps(t *testing.T) {
	start := time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	cash := "70000"
	var a, b int
	var phases []targets.CashPhase
	for k, at := range []time.Duration{0, 30 * day, 60 * day, 90 * day, 120 * day, 150 * day, 180 * day} {
		bk := book(t, dcaPolicy, stamp+fmt.Sprintf("accounts:\n  ira: {cash: %q, positions: {A: \"%d\", B: \"%d\"}}\n", cash, a, b), dcaPrices)
		if k == 0 {
			phases = plan.FirstInvestment(drift.Compute(bk), bk.Policy.PhaseIn, start)
			if len(phases) != 1 || !phases[0].Amount.Equal(d("70000")) || phases[0].Account != "ira" {
				t.Fatalf("phases = %+v", phases)
			}
		} else if again := plan.FirstInvestment(drift.Compute(bk), bk.Policy.PhaseIn, start); again != nil {
			t.Fatalf("step %d: a household that holds A and B starts a first investment: %+v", k+1, again)
		}
		w := plan.WaitingAt(phases, start.Add(at))
		waiting := "0"
		if len(w) == 1 {
			waiting = w[0].Amount.String()
			if w[0].Step != k+1 || w[0].Steps != 7 || !w[0].Next.Equal(start.Add(at+30*day)) {
				t.Errorf("step %d: waiting %+v", k+1, w[0])
			}
		}
		if want := fmt.Sprint(60000 - 10000*k); waiting != want {
			t.Fatalf("step %d: %s waiting, want %s", k+1, waiting, want)
		}
		hb := plan.HoldBack(bk, w)
		p := plan.Invest(drift.Compute(hb), plan.Options{})
		checkInvariants(t, hb, p)
		if got := flowLines(p); got != "ira buy 60 A invest; ira buy 80 B invest" {
			t.Fatalf("step %d: orders %s", k+1, got)
		}
		a, b = a+60, b+80
		cash = fmt.Sprint(60000 - 10000*k)
	}
	if a != 420 || b != 560 || cash != "0" {
		t.Errorf("after the phase: %d A, %d B, %s cash", a, b, cash)
	}
}

// TestDepositInSteps: a deposit of 100000 above deposits_above (10000)
// invests 100000 / 7 = 14285.71 (cents rounded down) at once, and
// 85714.29 waits; step 7 releases the rest, so that the steps add up to
// the deposit exactly. A deposit of 10000 is not above: at once.
func TestDepositInSteps(t *testing.T) {
	bk := book(t, dcaPolicy, stamp+"accounts:\n  ira: {cash: \"0\", positions: {A: \"60\", B: \"80\"}}\n", dcaPrices)
	rule := bk.Policy.PhaseIn
	if rule.IsPhased(d("10000")) || !rule.IsPhased(d("100000")) {
		t.Fatalf("IsPhased: 10000 %v, 100000 %v", rule.IsPhased(d("10000")), rule.IsPhased(d("100000")))
	}
	start := time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC)
	c := targets.NewCashPhase("dep-1", "ira", d("100000"), start, rule)
	wantW := []string{"85714.29", "71428.58", "57142.86", "42857.15", "28571.43", "14285.72", "0"}
	for k := 1; k <= 7; k++ {
		if got := c.Waiting(k); got.String() != wantW[k-1] {
			t.Errorf("step %d: %s waiting, want %s", k, got, wantW[k-1])
		}
	}
	w := plan.WaitingAt([]targets.CashPhase{c}, start)
	p := plan.Invest(drift.Compute(plan.HoldBack(plan.AddCash(bk, 0, d("100000")), w)), plan.Options{})
	// 10000 held + 14285.71 = 24285.71: A wants 60% = 14571.426, 8571.426
	// more than held, 85.71 steps, rounded down (no spare cash): 85 A;
	// B wants 40% = 9714.284, 5714.284 more: 114.28 steps, 114 B.
	if got := flowLines(p); got != "ira buy 85 A invest; ira buy 114 B invest" {
		t.Errorf("orders %s", got)
	}
	if !p.CashFlow.Amount.Equal(d("14285.71")) {
		t.Errorf("invested budget %s, want 14285.71", p.CashFlow.Amount)
	}
}
