package plan_test

import (
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
)

// baselineAfter plans b with a simple whole-share planner and returns the
// book after its orders: each instrument over its target value is sold
// down to it, rounding sells up to whole steps (within what each account
// holds, accounts in order); then each account, in order, buys the
// instruments under their target values that it may hold, in order, up to
// their target values, rounding buys down, with its free cash and its
// proceeds. Orders below min_trade are left out; cash-sleeve funds are not
// traded.
func baselineAfter(b *portfolio.Book, s *drift.Snapshot) *portfolio.Book {
	p := b.Policy
	after := &portfolio.Book{Policy: p, PricesAsOf: b.PricesAsOf, HoldingsAsOf: b.HoldingsAsOf,
		Cash: append([]decimal.Decimal(nil), b.Cash...), Price: b.Price, Qty: make([][]decimal.Decimal, len(b.Qty))}
	for a := range b.Qty {
		after.Qty[a] = append([]decimal.Decimal(nil), b.Qty[a]...)
	}
	minTrade := p.Rebalance.MinTrade
	gap := make([]decimal.Decimal, len(p.Instruments)) // target value - held, per instrument
	for i, in := range p.Instruments {
		if in.Sleeve == p.Cash {
			continue
		}
		gap[i] = p.Sleeves[in.Sleeve].Target.Mul(in.Share).Mul(s.Total)
		for a := range p.Accounts {
			gap[i] = gap[i].Sub(s.Values[a][i])
		}
	}
	for i, in := range p.Instruments {
		unit := b.Price[i].Mul(in.Step)
		for a := range p.Accounts {
			if gap[i].Sign() >= 0 || unit.Sign() <= 0 {
				break
			}
			want, rem := gap[i].Neg().QuoRem(unit, 0)
			if rem.Sign() > 0 {
				want = want.Add(decimal.NewFromInt(1))
			}
			held, _ := after.Qty[a][i].QuoRem(in.Step, 0)
			steps := decimal.Min(want, held)
			if steps.Sign() <= 0 || steps.Mul(unit).LessThan(minTrade) {
				continue
			}
			after.Qty[a][i] = after.Qty[a][i].Sub(steps.Mul(in.Step))
			after.Cash[a] = after.Cash[a].Add(steps.Mul(unit))
			gap[i] = gap[i].Add(steps.Mul(unit))
		}
	}
	for a := range p.Accounts {
		budget := after.Cash[a].Sub(p.Accounts[a].Reserve)
		for i, in := range p.Instruments {
			unit := b.Price[i].Mul(in.Step)
			if budget.Sign() <= 0 || gap[i].Sign() <= 0 || unit.Sign() <= 0 || !p.Accounts[a].Allows(i) {
				continue
			}
			steps, _ := decimal.Min(gap[i], budget).QuoRem(unit, 0)
			if steps.Sign() <= 0 || steps.Mul(unit).LessThan(minTrade) {
				continue
			}
			after.Qty[a][i] = after.Qty[a][i].Add(steps.Mul(in.Step))
			after.Cash[a] = after.Cash[a].Sub(steps.Mul(unit))
			budget = budget.Sub(steps.Mul(unit))
			gap[i] = gap[i].Sub(steps.Mul(unit))
		}
	}
	return after
}

// baselineHarms reports whether the baseline's plan pushed a sleeve that
// was inside its band out of it.
func baselineHarms(p *policy.Policy, before, after *drift.Snapshot) bool {
	for k := range p.Sleeves {
		if !outOfBand(p, k, before.Sleeves[k].Value, before.Total) && outOfBand(p, k, after.Sleeves[k].Value, after.Total) {
			return true
		}
	}
	return false
}

// largestWeight returns the largest |weight - target| over sleeves of
// snapshot s, exactly: |value - target x total| / total, to 8 places for
// the averages.
func largestWeight(s *drift.Snapshot) decimal.Decimal {
	if s.Total.Sign() <= 0 {
		return decimal.Zero
	}
	p := s.Book.Policy
	values := make([]decimal.Decimal, len(s.Sleeves))
	for k := range s.Sleeves {
		values[k] = s.Sleeves[k].Value
	}
	return largest(p, values, s.Total).DivRound(s.Total, 8)
}

// freeCash returns the free cash of the book of s, all accounts.
func freeCash(s *drift.Snapshot) decimal.Decimal {
	return decimal.Sum(decimal.Zero, s.FreeCash...)
}

// TestBaseline plans random households of one to three accounts with
// destination target, with the planner and with the simple whole-share
// planner of baselineAfter: the planner's largest |deviation| is smaller
// on average, and the planner leaves no more free cash on average. In no
// household is its largest |deviation| larger than the simple plan's,
// unless the simple plan got there in a way the planner may not take
// (each excuse checked here on the two plans, independently of the
// planner): it pushed a sleeve that was inside its band out of it (no
// harm), it left more sleeves out of band than the planner (the first
// criterion of the planner's order, docs/PLANNING.md), it sold in a
// taxable account what a tax-advantaged account still holds (invariant
// 6), or one of its accounts bought and sold the same sleeve (issue 11).
// -cases N plans N households instead of 10,000.
func TestBaseline(t *testing.T) {
	n := defaultCases(households)
	var oursDev, baseDev, oursIdle, baseIdle decimal.Decimal
	worse, better := 0, 0
	excused := map[string]int{}
	for seed := 0; seed < n; seed++ {
		r := rand.New(rand.NewPCG(uint64(seed), 2222))
		pol, hold, prices := genHouseholdWith(r, policy.DestinationTarget, 3)
		b := book(t, pol, hold, prices)
		before := drift.Compute(b)
		p := plan.Make(before)
		ours := checkInvariants(t, b, p)
		baseBook := baselineAfter(b, before)
		base := drift.Compute(baseBook)
		od, bd := largestWeight(ours), largestWeight(base)
		// Exactly: largest(ours) / total(ours) > largest(base) / total(base).
		ov, bv := make([]decimal.Decimal, len(ours.Sleeves)), make([]decimal.Decimal, len(base.Sleeves))
		for k := range ov {
			ov[k], bv[k] = ours.Sleeves[k].Value, base.Sleeves[k].Value
		}
		pl := b.Policy
		c := largest(pl, ov, ours.Total).Mul(base.Total).Cmp(largest(pl, bv, base.Total).Mul(ours.Total))
		switch {
		case c < 0:
			better++
		case c > 0:
			switch {
			case baselineHarms(pl, before, base):
				excused["the simple plan pushes a sleeve out of its band"]++
			case outCount(pl, ov, ours.Total) < outCount(pl, bv, base.Total):
				excused["the planner leaves fewer sleeves out of band"]++
			case baselineSellsTaxableFirst(b, baseBook):
				excused["the simple plan sells in a taxable account first"]++
			case baselineBothWays(b, baseBook):
				excused["an account of the simple plan buys and sells a sleeve"]++
			default:
				worse++
				if worse <= 3 {
					t.Errorf("seed %d: largest deviation %s, the simple plan's %s, without an excuse\npolicy:\n%s\nholdings:\n%s\nprices:\n%s", seed, od, bd, pol, hold, prices)
				}
			}
		}
		oursDev, baseDev = oursDev.Add(od), baseDev.Add(bd)
		oursIdle, baseIdle = oursIdle.Add(freeCash(ours)), baseIdle.Add(freeCash(base))
	}
	count := decimal.NewFromInt(int64(n))
	avg := func(d decimal.Decimal, places int32) string { return d.DivRound(count, places).String() }
	t.Logf("%d households: largest deviation on average %s%% (simple plan %s%%); smaller in %d, larger without an excuse in %d, larger where %v; free cash after on average %s (simple plan %s)",
		n, avg(oursDev.Shift(2), 4), avg(baseDev.Shift(2), 4), better, worse, excused, avg(oursIdle, 2), avg(baseIdle, 2))
	if worse > 0 {
		t.Errorf("the planner's largest deviation is larger than the simple plan's, without an excuse, in %d of %d households", worse, n)
	}
	if !oursDev.LessThan(baseDev) {
		t.Errorf("the planner's largest deviation is not smaller on average: %s vs %s", avg(oursDev, 8), avg(baseDev, 8))
	}
	if oursIdle.GreaterThan(baseIdle) {
		t.Errorf("the planner leaves more free cash on average: %s vs %s", avg(oursIdle, 2), avg(baseIdle, 2))
	}
}

// outCount returns how many sleeves lie outside their bands with sleeve
// values values out of total.
func outCount(p *policy.Policy, values []decimal.Decimal, total decimal.Decimal) int {
	n := 0
	for k := range values {
		if outOfBand(p, k, values[k], total) {
			n++
		}
	}
	return n
}

// baselineSellsTaxableFirst reports whether the baseline's plan sells an
// instrument in a taxable account while a tax-advantaged account still
// holds a step of it after the plan: what invariant 6 forbids the planner.
func baselineSellsTaxableFirst(b, after *portfolio.Book) bool {
	p := b.Policy
	for i, in := range p.Instruments {
		sold := false
		for a := range p.Accounts {
			if !p.Accounts[a].Type.TaxAdvantaged() && after.Qty[a][i].LessThan(b.Qty[a][i]) {
				sold = true
			}
		}
		if !sold {
			continue
		}
		for a := range p.Accounts {
			if p.Accounts[a].Type.TaxAdvantaged() && !after.Qty[a][i].LessThan(in.Step) {
				return true
			}
		}
	}
	return false
}

// baselineBothWays reports whether the baseline's plan has an account buy
// and sell instruments of the same leaf sleeve, which issue 11 forbids
// the planner outside split restorations.
func baselineBothWays(b, after *portfolio.Book) bool {
	p := b.Policy
	for a := range p.Accounts {
		bought, sold := map[int]bool{}, map[int]bool{}
		for i, in := range p.Instruments {
			switch after.Qty[a][i].Cmp(b.Qty[a][i]) {
			case 1:
				bought[in.Sleeve] = true
			case -1:
				sold[in.Sleeve] = true
			}
		}
		for sl := range bought {
			if sold[sl] {
				return true
			}
		}
	}
	return false
}
