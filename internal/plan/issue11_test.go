package plan_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/plan"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// renderPlan writes what a reader checks in a plan: every order with its
// why, each sleeve before and after, and what is unresolved.
func renderPlan(p *plan.Plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "destination %s, total %s, total after %s\n", p.Destination, p.Total.StringFixed(2), p.TotalAfter.StringFixed(2))
	for _, o := range p.Orders {
		fmt.Fprintf(&b, "%s %s %s %s = %s (%s)\n  why: %s\n", o.Account, o.Side, o.Quantity, o.Instrument, o.Notional.StringFixed(2), o.Rule, o.Why)
	}
	if len(p.Orders) == 0 {
		b.WriteString("no orders\n")
	}
	for _, s := range p.Sleeves {
		fmt.Fprintf(&b, "%s: %s (breach %v) -> %s (breach %v), target %s, band %s-%s\n", s.Sleeve,
			s.Weight.Shift(2).StringFixed(2), s.Breach, s.WeightAfter.Shift(2).StringFixed(2), s.BreachAfter,
			s.Target.Shift(2).StringFixed(2), s.BandLow.Shift(2).StringFixed(2), s.BandHigh.Shift(2).StringFixed(2))
	}
	for _, u := range p.Unresolved {
		fmt.Fprintf(&b, "unresolved %s at %s: %s\n", u.Sleeve, u.WeightAfter.Shift(2).StringFixed(2), u.Reason)
	}
	return b.String()
}

// issue11Cases are the six faults of issue 11, rebuilt from their
// descriptions: prices and holdings are made up, the shape of each fault
// is the issue's.
var issue11Cases = []struct {
	name, why                string
	policy, holdings, prices string
	// baseline: the plan must be no worse than the simple planner's
	// (baselineAfter) on the largest deviation.
	baseline bool
}{
	{
		name: "1-target-no-repair",
		why: "destination target, one account, three whole-share instruments, all cash: equities (8%, band 6.40-9.60%) " +
			"rounds to one share, 6.18%, and was left out of band with nothing unresolved",
		policy: `policy: case1
currency: USD
targets: {equities: 8%, bonds: 82%, cash: 10%}
bands: {absolute: 5%, relative: 20%}
rebalance: {trigger: threshold, destination: target}
instruments:
  EQ: {sleeve: equities}
  B1: {sleeve: bonds, share: 50%}
  B2: {sleeve: bonds, share: 50%}
accounts:
  ira: {type: traditional_ira}
`,
		holdings: stamp + `accounts:
  ira: {cash: "10000"}
`,
		prices: stamp + `prices: {EQ: "618", B1: "97.30", B2: "410.15"}`,
	},
	{
		name: "2-band-edge-pushes-cash-out",
		why: "destination band_edge: stocks and bonds breach; the proceeds the rounded orders left pushed cash, " +
			"inside its band, out of it (6.08% to 8.88%), with nothing unresolved",
		policy: `policy: case2
currency: USD
targets: {stocks: 60%, bonds: 33%, cash: 7%}
bands: {absolute: 5%, relative: 25%}
rebalance: {trigger: threshold, destination: band_edge}
instruments:
  A: {sleeve: stocks}
  B: {sleeve: bonds}
accounts:
  ira: {type: roth_ira}
`,
		holdings: stamp + `accounts:
  ira: {cash: "609", positions: {A: "14", B: "10"}}
`,
		prices: stamp + `prices: {A: "500", B: "240"}`,
	},
	{
		name: "3-all-in-band-made-worse",
		why: "destination target, every sleeve inside its band: small orders to target, rounded, pushed cash out of " +
			"its band and made the largest deviation larger",
		policy: `policy: case3
currency: USD
targets: {s0: 40%, s1: 30%, s2: 25%, cash: 5%}
bands: {absolute: 5%, relative: 25%}
rebalance: {trigger: threshold, destination: target}
instruments:
  A: {sleeve: s0}
  B: {sleeve: s1}
  C: {sleeve: s2}
accounts:
  ira: {type: traditional_ira}
`,
		holdings: stamp + `accounts:
  ira: {cash: "99", positions: {A: "7", B: "8", C: "5"}}
`,
		prices: stamp + `prices: {A: "86", B: "63", C: "87"}`,
	},
	{
		name: "4-unbuyable-target",
		why: "destination target, 23.6k household, 10% crypto whose only fund costs 5,000 a share: crypto stayed at " +
			"0% and cash above its band, and nothing was unresolved",
		policy: `policy: case4
currency: USD
targets: {stocks: 55%, bonds: 35%, crypto: 10%, cash: 0%}
bands: {absolute: 5%}
rebalance: {trigger: threshold, destination: target}
instruments:
  VTI: {sleeve: stocks}
  BND: {sleeve: bonds}
  BTCF: {sleeve: crypto}
accounts:
  ira: {type: traditional_ira}
`,
		holdings: stamp + `accounts:
  ira: {cash: "2450", positions: {VTI: "45", BND: "110"}}
`,
		prices: stamp + `prices: {VTI: "285", BND: "72", BTCF: "5000"}`,
	},
	{
		name: "5-idle-cash",
		why: "three accounts, each holding less cash than one share of the missing equity fund: equities ended far " +
			"under target while the cash sat idle; a simple whole-share planner did better",
		policy: `policy: case5
currency: USD
targets: {equities: 40%, bonds: 60%, cash: 0%}
bands: {absolute: 5%}
rebalance: {trigger: threshold, destination: target}
instruments:
  EQ: {sleeve: equities}
  BD: {sleeve: bonds}
accounts:
  a: {type: traditional_ira}
  b: {type: roth_ira}
  c: {type: taxable}
`,
		holdings: stamp + `accounts:
  a: {cash: "667", positions: {EQ: "1", BD: "11"}}
  b: {cash: "503", positions: {EQ: "1", BD: "12"}}
  c: {cash: "383", positions: {EQ: "1", BD: "11"}}
`,
		prices:   stamp + `prices: {EQ: "831", BD: "64"}`,
		baseline: true,
	},
	{
		name: "6-split-before-sleeve",
		why: "the 70/30 split of two bond funds was restored by a large taxable sale while the IRA and the Roth held " +
			"most of the bonds, and the taxable account sold and bought real estate in the same plan",
		policy: `policy: case6
currency: USD
targets: {stocks: 50%, bonds: 40%, real_estate: 8%, cash: 2%}
bands: {absolute: 5%, relative: 25%}
rebalance: {trigger: threshold, destination: target}
instruments:
  VTI: {sleeve: stocks}
  BND: {sleeve: bonds, share: 70%}
  BNDX: {sleeve: bonds, share: 30%}
  VNQ: {sleeve: real_estate, share: 50%}
  RWO: {sleeve: real_estate, share: 50%}
accounts:
  taxable: {type: taxable}
  ira: {type: traditional_ira}
  roth: {type: roth_ira}
`,
		holdings: stamp + `accounts:
  taxable: {cash: "20000", positions: {VTI: "2000", BND: "4300", VNQ: "1400"}}
  ira: {cash: "0", positions: {BNDX: "6000", BND: "5500"}}
  roth: {cash: "0", positions: {BND: "3000", VTI: "1200", RWO: "400"}}
`,
		prices: stamp + `prices: {VTI: "280", BND: "72", BNDX: "49", VNQ: "89", RWO: "41"}`,
	},
}

// TestIssue11Cases plans the six households of issue 11 and compares each
// plan with its golden file (testdata/issue11/NAME.golden; -update
// rewrites them after a reader has checked them); each plan must also
// pass the plan-quality checks of checkQuality.
func TestIssue11Cases(t *testing.T) {
	for _, c := range issue11Cases {
		t.Run(c.name, func(t *testing.T) {
			b := book(t, c.policy, c.holdings, c.prices)
			before := drift.Compute(b)
			p := plan.Make(before)
			after := checkInvariants(t, b, p)
			var q quality
			checkQuality(&q, 0, b, before, after, p)
			for class, first := range q.first {
				t.Errorf("%s: %s", class, first)
			}
			if c.baseline {
				if ours, base := largestWeight(after), largestWeight(drift.Compute(baselineAfter(b, before))); ours.GreaterThan(base) {
					t.Errorf("largest deviation %s, the simple planner's %s", ours, base)
				}
			}
			got := "# " + c.why + "\n" + renderPlan(p)
			path := filepath.Join("testdata", "issue11", c.name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("plan differs from %s (run with -update after checking it):\n got:\n%s\nwant:\n%s", path, got, want)
			}
		})
	}
}

// TestTargetAfterReserveRefill: destination target where an account is
// short of its reserve (a0 holds 3,253.21 of cash against a reserve of
// 19,000). Its sales refill the reserve first, and the 15,746.79 that
// refill takes leaves the investable total: the plan aims each sleeve at
// its target share of the total after (422,975.25), not before
// (438,722.04), and lands on it. TestRandomPortfolios measured the
// distance to target against the total before and reported seeds 5588 and
// 37196 at -cases 100000 (this household) as invariant 7 failures, with
// s0 3,070 from "target" for a tolerance of 208; checkOnTarget now uses
// the total after.
func TestTargetAfterReserveRefill(t *testing.T) {
	b := book(t, `policy: refill
currency: USD
targets: {s0: 19.5%, s1: 70.5%, cash: 10%}
bands: {absolute: 5%}
rebalance: {trigger: threshold, destination: target, min_trade: "50"}
instruments:
  I0_0: {sleeve: s0, step: "0.001"}
  I1_0: {sleeve: s1, step: "0.0001", share: 66%}
  I1_1: {sleeve: s1, step: "0.001", share: 34%}
  MM: {sleeve: cash, step: "0.001"}
accounts:
  a0: {type: traditional_401k, reserve: "19000"}
  a1: {type: hsa}
`, stamp+`accounts:
  a0: {cash: "3253.21", positions: {I1_0: "1.634", I1_1: "21"}}
  a1: {cash: "29640.61", positions: {I1_0: "6", I1_1: "462.242"}}
`, stamp+`prices: {I0_0: "421.28", I1_0: "31005.94", I1_1: "356.72", MM: "1"}`)
	before := drift.Compute(b)
	p := plan.Make(before)
	after := checkInvariants(t, b, p)
	if refill := p.Total.Sub(p.TotalAfter); !refill.Equal(d("15746.79")) || len(p.Unresolved) != 0 {
		t.Fatalf("total %s -> %s (refill %s, want 15746.79), unresolved %+v", p.Total, p.TotalAfter, refill, p.Unresolved)
	}
	checkOnTarget(t, b, after)
	var q quality
	checkQuality(&q, 0, b, before, after, p)
	for class, first := range q.first {
		t.Errorf("%s: %s", class, first)
	}
}
