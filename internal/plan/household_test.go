package plan_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
)

// households is how many random households TestRandomHouseholds plans
// when -cases is not given.
const households = 10_000

// genHousehold builds a random household for the plan-quality checks: all
// three destinations, one to six accounts, steps from 0.00000001 to 1,
// prices from 0.50 to 60,000, reserves above and below cash, holdings
// from all cash to inside every band.
func genHousehold(r *rand.Rand) (pol, hold, prices string) {
	return genHouseholdWith(r, "", 6)
}

// genHouseholdWith is genHousehold with destination dest (empty: drawn)
// and at most maxAccounts accounts.
func genHouseholdWith(r *rand.Rand, dest policy.Destination, maxAccounts int) (pol, hold, prices string) {
	var pb, hb, qb strings.Builder
	if drawn := pick(r, policy.DestinationTarget, policy.DestinationBandEdge, policy.DestinationMidway); dest == "" {
		dest = drawn
	}
	nTop := 2 + r.IntN(3)
	cashUnits := pick(r, 0, 4, 10, 20) // units of 0.5%
	// Every sleeve at least 0.5%: a 0% sleeve is another case.
	weights := split(r, nTop, 200-cashUnits-nTop)
	for k := range weights {
		weights[k]++
	}
	nested := r.IntN(nTop + 2) // a nested sleeve, or none
	fmt.Fprintf(&pb, "policy: hh\ncurrency: USD\ntargets:\n")
	var leaves []string
	for k := 0; k < nTop; k++ {
		name := fmt.Sprintf("s%d", k)
		if k == nested {
			fmt.Fprintf(&pb, "  %s:\n    weight: %s\n    sleeves:\n", name, percent(weights[k], 2))
			kids := split(r, 2, 100)
			if kids[0] == 0 || kids[1] == 0 {
				kids = []int{50, 50}
			}
			for c, u := range kids {
				fmt.Fprintf(&pb, "      c%d: %s\n", c, percent(u, 1))
				leaves = append(leaves, fmt.Sprintf("%s/c%d", name, c))
			}
			continue
		}
		fmt.Fprintf(&pb, "  %s: %s\n", name, percent(weights[k], 2))
		leaves = append(leaves, name)
	}
	fmt.Fprintf(&pb, "  cash: %s\n", percent(cashUnits, 2))
	fmt.Fprintf(&pb, "bands:\n  absolute: %s\n", pick(r, "1%", "2%", "5%", "10%"))
	if r.IntN(2) == 0 {
		fmt.Fprintf(&pb, "  relative: %s\n", pick(r, "10%", "20%", "25%"))
	}
	fmt.Fprintf(&pb, "rebalance:\n  trigger: threshold\n  destination: %s\n  min_trade: %q\n", dest, pick(r, "0", "0", "1", "50"))

	type instr struct {
		sym   string
		price decimal.Decimal
	}
	var instrs []instr
	pb.WriteString("instruments:\n")
	qb.WriteString(stamp + "prices:\n")
	for li, l := range leaves {
		n := 1 + r.IntN(3)
		for k := 0; k < n; k++ {
			sym := fmt.Sprintf("I%d_%d", li, k)
			step := pick(r, "1", "1", "1", "1", "0.1", "0.01", "0.001", "0.0001", "0.00000001")
			// Log-uniform from 0.50 to 60,000, in cents.
			cents := int64(50)
			for e := r.IntN(6); e > 0; e-- {
				cents *= 10
			}
			cents += r.Int64N(cents * 9)
			price := decimal.New(min(cents, 6_000_000), -2)
			fmt.Fprintf(&pb, "  %s: {sleeve: %s, step: %q}\n", sym, l, step)
			fmt.Fprintf(&qb, "  %s: %q\n", sym, price.String())
			instrs = append(instrs, instr{sym, price})
		}
	}
	if r.IntN(3) == 0 {
		pb.WriteString("  MM: {sleeve: cash, step: \"0.001\"}\n")
		qb.WriteString("  MM: \"1\"\n")
		instrs = append(instrs, instr{"MM", decimal.NewFromInt(1)})
	}
	nA := 1 + r.IntN(6)%maxAccounts
	pb.WriteString("accounts:\n")
	hb.WriteString(stamp + "accounts:\n")
	scale := int64(pick(r, 100, 1_000, 10_000, 100_000))
	inBand := r.IntN(4) == 0 // holdings near the targets
	for a := 0; a < nA; a++ {
		typ := pick(r, policy.AccountTaxable, policy.AccountRothIRA, policy.AccountTraditionalIRA, policy.AccountHSA)
		fmt.Fprintf(&pb, "  a%d: {type: %s", a, typ)
		reserve := int64(0)
		if r.IntN(3) == 0 {
			reserve = scale / 10 * int64(1+r.IntN(5))
			fmt.Fprintf(&pb, ", reserve: \"%d\"", reserve)
		}
		if a < nA-1 && r.IntN(4) == 0 {
			var allowed []string
			for _, in := range instrs {
				if r.IntN(2) == 0 {
					allowed = append(allowed, in.sym)
				}
			}
			fmt.Fprintf(&pb, ", may_hold: [%s]", strings.Join(allowed, ", "))
		}
		pb.WriteString("}\n")
		cash := decimal.New(r.Int64N(scale*100), -2)
		switch r.IntN(5) {
		case 0: // below the reserve
			cash = decimal.New(r.Int64N(reserve*100+1), -2)
		case 1: // all cash
			cash = decimal.NewFromInt(reserve + scale*int64(1+r.IntN(10)))
		}
		var positions []string
		for _, in := range instrs {
			if !inBand && r.IntN(3) == 0 {
				continue
			}
			value := decimal.NewFromInt(r.Int64N(scale*2) + 1)
			if inBand {
				value = decimal.NewFromInt(scale)
			}
			qty := value.DivRound(in.price, 8)
			qty = qty.Truncate(int32(r.IntN(4) * 3))
			if qty.Sign() > 0 {
				positions = append(positions, fmt.Sprintf("%s: %q", in.sym, qty.String()))
			}
		}
		fmt.Fprintf(&hb, "  a%d: {cash: %q, positions: {%s}}\n", a, cash.String(), strings.Join(positions, ", "))
	}
	return pb.String(), hb.String(), qb.String()
}

// defaultCases returns how many random households a test plans: -cases
// when given, else n, a tenth of it under -short or the race detector.
func defaultCases(n int) int {
	switch {
	case *cases > 0:
		return *cases
	case testing.Short() || raceEnabled:
		return n / 10
	}
	return n
}

// quality counts the plans that fail each plan-quality check.
type quality struct {
	unlisted, pushedOut, worse, accountSleeve, householdInstrument, unexplained int
	first                                                                       map[string]string
}

func (q *quality) fail(class, format string, args ...any) {
	if q.first == nil {
		q.first = map[string]string{}
	}
	if _, ok := q.first[class]; !ok {
		q.first[class] = fmt.Sprintf(format, args...)
	}
}

// deviation returns |value - target x total| of sleeve s, in currency.
func deviation(p *policy.Policy, s int, value, total decimal.Decimal) decimal.Decimal {
	return value.Sub(p.Sleeves[s].Target.Mul(total)).Abs()
}

// largest returns the largest |value - target x total| over sleeves.
func largest(p *policy.Policy, values []decimal.Decimal, total decimal.Decimal) decimal.Decimal {
	m := decimal.Zero
	for s := range p.Sleeves {
		m = decimal.Max(m, deviation(p, s, values[s], total))
	}
	return m
}

// outOfBand reports whether value lies outside sleeve s's band around
// target x total, exactly.
func outOfBand(p *policy.Policy, s int, value, total decimal.Decimal) bool {
	return deviation(p, s, value, total).GreaterThan(p.Sleeves[s].HalfWidth.Mul(total))
}

// checkQuality checks what a careful advisor wants of plan p for book b,
// with exact arithmetic independent of the planner (after is the
// valuation of the holdings after the orders, from checkInvariants):
//   - every sleeve out of band after the plan is unresolved, with a
//     reason (invariant 7);
//   - no harm: no sleeve inside its band is pushed out, and the largest
//     |deviation| over sleeves does not grow;
//   - no account buys and sells one sleeve, and the household does not
//     buy and sell one instrument, relocations and split restorations
//     aside;
//   - every order says why: its sleeve's weights and its rule.
func checkQuality(q *quality, seed int, b *portfolio.Book, before, after *drift.Snapshot, p *plan.Plan) {
	pol := b.Policy
	listed := map[string]bool{}
	for _, u := range p.Unresolved {
		if u.Reason != "" {
			listed[u.Sleeve] = true
		}
	}
	values := func(s *drift.Snapshot) []decimal.Decimal {
		v := make([]decimal.Decimal, len(s.Sleeves))
		for k := range s.Sleeves {
			v[k] = s.Sleeves[k].Value
		}
		return v
	}
	vb, va := values(before), values(after)
	for s := range pol.Sleeves {
		out := outOfBand(pol, s, va[s], after.Total)
		if out && !listed[pol.Sleeves[s].Path] {
			q.unlisted++
			q.fail("unlisted", "seed %d: %s ends outside its band (weight %s, band %s-%s), not unresolved", seed,
				pol.Sleeves[s].Path, after.Sleeves[s].Weight, pol.Sleeves[s].BandLow, pol.Sleeves[s].BandHigh)
			break
		}
	}
	for s := range pol.Sleeves {
		if !outOfBand(pol, s, vb[s], before.Total) && outOfBand(pol, s, va[s], after.Total) {
			q.pushedOut++
			q.fail("pushed out", "seed %d: %s was inside its band (weight %s) and ends outside (%s)", seed,
				pol.Sleeves[s].Path, before.Sleeves[s].Weight, after.Sleeves[s].Weight)
			break
		}
	}
	// largest after / total after > largest before / total before.
	if before.Total.Sign() > 0 && after.Total.Sign() > 0 &&
		largest(pol, va, after.Total).Mul(before.Total).GreaterThan(largest(pol, vb, before.Total).Mul(after.Total)) {
		q.worse++
		q.fail("worse", "seed %d: the largest deviation grows from %s to %s of %s", seed,
			largest(pol, vb, before.Total).StringFixed(2), largest(pol, va, after.Total).StringFixed(2), after.Total.StringFixed(2))
	}
	type key struct{ who, what string }
	sides := map[key]plan.Side{}
	accountDone, householdDone := false, false
	for _, o := range p.Orders {
		if !strings.HasPrefix(o.Why, o.Sleeve+" from ") || !strings.Contains(o.Why, string(o.Rule)+": ") {
			q.unexplained++
			q.fail("why", "seed %d: order %s %s %s explains itself as %q", seed, o.Account, o.Side, o.Instrument, o.Why)
		}
		if o.Rule == plan.RuleRelocate {
			continue
		}
		if o.Rule != plan.RuleRestoreSplit && o.Rule != plan.RuleHarvest {
			if prev, ok := sides[key{o.Account, o.Sleeve}]; ok && prev != o.Side && !accountDone {
				accountDone = true
				q.accountSleeve++
				q.fail("account sleeve", "seed %d: %s buys and sells sleeve %s", seed, o.Account, o.Sleeve)
			}
			sides[key{o.Account, o.Sleeve}] = o.Side
		}
		if prev, ok := sides[key{"", o.Instrument}]; ok && prev != o.Side && !householdDone {
			householdDone = true
			q.householdInstrument++
			q.fail("household instrument", "seed %d: the household buys and sells %s", seed, o.Instrument)
		}
		sides[key{"", o.Instrument}] = o.Side
	}
}

// TestRandomHouseholds plans random households (genHousehold) and checks
// the hard invariants and the plan-quality checks of checkQuality on each.
// -cases N plans N households instead of 10,000.
func TestRandomHouseholds(t *testing.T) {
	n := defaultCases(households)
	var q quality
	perDest := map[policy.Destination]int{}
	for seed := 0; seed < n; seed++ {
		r := rand.New(rand.NewPCG(uint64(seed), 1111))
		pol, hold, prices := genHousehold(r)
		b := book(t, pol, hold, prices)
		before := drift.Compute(b)
		p := plan.Make(before)
		perDest[p.Destination]++
		ok := true
		after := func() *drift.Snapshot {
			var s *drift.Snapshot
			ok = t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { s = checkInvariants(t, b, p) })
			return s
		}()
		if !ok {
			t.Logf("policy:\n%s\nholdings:\n%s\nprices:\n%s", pol, hold, prices)
			break
		}
		checkQuality(&q, seed, b, before, after, p)
	}
	t.Logf("%d households (%v): %d with a sleeve out of band and not unresolved, %d with an in-band sleeve pushed out, %d with a larger largest deviation, %d with an account buying and selling a sleeve, %d with the household buying and selling an instrument",
		n, perDest, q.unlisted, q.pushedOut, q.worse, q.accountSleeve, q.householdInstrument)
	for class, first := range q.first {
		t.Errorf("%s: first: %s", class, first)
	}
}
