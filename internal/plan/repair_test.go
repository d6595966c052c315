package plan_test

import (
	"testing"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// repairCases are households where the polish left a sleeve out of its
// band (with no constraint in the way) that a move it did not try brings
// back, or sold what was not over its target: found by
// TestRandomPortfolios on seeds 100,000-400,000 (the name gives the seed),
// one or more per class of fault.
var repairCases = []struct {
	name, why                string
	policy, holdings, prices string
	// check: "band" requires every sleeve inside its band after the plan
	// and nothing unresolved; "nosell" requires no sale but of a cash-sleeve
	// fund paying for buys, a relocation or a harvest (invariant 6a: nothing
	// is over its target).
	check string
	// history is the trading history the plan is made with.
	history tax.History
}{
	{
		name: "step-paid-by-fewer-of-another-buy-252184",
		why:  "one account, all cash, destination target: s1/c1 rounds to 16 shares, 0.02 points under its band; the 17th costs 150.82 and the account has 139.56 left. Fewer steps of the buy of s0 (over its target) pay for it: the polish never tried a buy the cash alone could not pay for.",
		policy: `policy: gen
currency: USD
targets:
  s0: 51%
  s1:
    weight: 49%
    sleeves:
      c0: 27%
      c1: 73%
  cash: 0%
bands:
  absolute: 5%
  sleeves:
    s1: {absolute: 2%}
rebalance:
  trigger: threshold
  destination: target
  min_trade: "50"
instruments:
  I0_0: {sleeve: s0, step: "0.001", share: 100%}
  I1_0: {sleeve: s1/c0, step: "0.0001"}
  I1_1: {sleeve: s1/c0, step: "0.001"}
  I2_0: {sleeve: s1/c1, step: "1", share: 100%}
accounts:
  a0: {type: taxable}
`,
		holdings: stamp + `accounts:
  a0: {cash: "7149.35", positions: {}}
`,
		prices: stamp + `prices:
  I0_0: "261.88"
  I1_0: "47273.72"
  I1_1: "445.43"
  I2_0: "150.82"
`,
		check: "band",
	},
	{
		name: "step-paid-by-fewer-of-another-buy-2-391044",
		why:  "three accounts, destination target: s0 (0.5%) ends at 0.36% with 2 shares; a third costs 354.34 with 0.60 left in the account, which buys s1/c0 over its target: fewer steps of that buy pay for it.",
		policy: `policy: gen
currency: USD
targets:
  s0: 0.5%
  s1:
    weight: 99.5%
    sleeves:
      c0: 86%
      c1: 3%
      c2: 11%
  cash: 0%
bands:
  absolute: 5%
  relative: 20%
  sleeves:
    s1: {absolute: 2%}
rebalance:
  trigger: threshold
  destination: target
  min_trade: "50"
instruments:
  I0_0: {sleeve: s0, step: "1"}
  I1_0: {sleeve: s1/c0, step: "0.001", share: 100%}
  I2_0: {sleeve: s1/c1, step: "1", share: 100%}
  I3_0: {sleeve: s1/c2, step: "0.0001"}
accounts:
  a0: {type: hsa}
  a1: {type: traditional_401k}
  a2: {type: traditional_401k}
`,
		holdings: stamp + `accounts:
  a0: {cash: "5677.67", positions: {I2_0: "1387.748"}}
  a1: {cash: "12390.34", positions: {}}
  a2: {cash: "25398.01", positions: {I1_0: "57.633"}}
`,
		prices: stamp + `prices:
  I0_0: "354.34"
  I1_0: "402.84"
  I2_0: "95.66"
  I3_0: "31871.16"
`,
		check: "band",
	},
	{
		name: "fewer-sale-paid-by-fewer-of-another-buy-214357",
		why:  "three accounts, destination target: the sale of I3_0 leaves s2/c1 a hair under its band; one share fewer sold costs the account 168.67 it has not (114.88 left): fewer steps of its buy of s0 pay for it. The polish never tried fewer steps of an order the other way that the cash alone could not pay for.",
		policy: `policy: gen
currency: USD
targets:
  s0: 81.5%
  s1: 17%
  s2:
    weight: 0.5%
    sleeves:
      c0: 81%
      c1: 19%
  cash: 1%
bands:
  absolute: 5%
  relative: 25%
rebalance:
  trigger: threshold
  destination: target
  min_trade: "0"
instruments:
  I0_0: {sleeve: s0, step: "0.0001"}
  I0_1: {sleeve: s0, step: "0.001"}
  I1_0: {sleeve: s1, step: "0.001"}
  I1_1: {sleeve: s1, step: "1"}
  I1_2: {sleeve: s1, step: "1"}
  I2_0: {sleeve: s2/c0, step: "0.0001"}
  I2_1: {sleeve: s2/c0, step: "0.0001"}
  I3_0: {sleeve: s2/c1, step: "1"}
  MM: {sleeve: cash, step: "0.001"}
accounts:
  a0: {type: traditional_401k}
  a1: {type: traditional_401k}
  a2: {type: roth_ira}
`,
		holdings: stamp + `accounts:
  a0: {cash: "35979.63", positions: {I2_0: "8", MM: "39672"}}
  a1: {cash: "3321.73", positions: {MM: "20825"}}
  a2: {cash: "5144.98", positions: {I0_1: "12", I1_0: "428.059", I3_0: "442.058"}}
`,
		prices: stamp + `prices:
  I0_0: "56007.65"
  I0_1: "435.43"
  I1_0: "290.89"
  I1_1: "330.84"
  I1_2: "388.93"
  I2_0: "22488.55"
  I2_1: "44448.45"
  I3_0: "168.67"
  MM: "1"
`,
		check: "band",
	},
	{
		name: "cash-over-band-step-paid-by-fewer-of-another-buy-374662",
		why:  "one account, destination band_edge: cash ends 0.26 points over its band; one more share of I0_0 (373.87) would bring it in, paid for by one share fewer of the buy of I2_0.",
		policy: `policy: gen
currency: USD
targets:
  s0: 77%
  s1: 2%
  s2:
    weight: 20%
    sleeves:
      c0: 70%
      c1: 30%
  cash: 1%
bands:
  absolute: 5%
  relative: 20%
rebalance:
  trigger: threshold
  destination: band_edge
  min_trade: "0"
instruments:
  I0_0: {sleeve: s0, step: "1", share: 100%}
  I1_0: {sleeve: s1, step: "1"}
  I2_0: {sleeve: s2/c0, step: "1", share: 100%}
  I3_0: {sleeve: s2/c1, step: "1", share: 80%}
  I3_1: {sleeve: s2/c1, step: "1", share: 20%}
  MM: {sleeve: cash, step: "0.001"}
accounts:
  a0: {type: hsa, reserve: "13000"}
`,
		holdings: stamp + `accounts:
  a0: {cash: "30901.19", positions: {I3_1: "474.931", MM: "53705"}}
`,
		prices: stamp + `prices:
  I0_0: "373.87"
  I1_0: "210.13"
  I2_0: "369.82"
  I3_0: "291.79"
  I3_1: "154.89"
  MM: "1"
`,
		check: "band",
	},
	{
		name: "pair-buy-beyond-cash-356971",
		why:  "three accounts, destination band_edge: s2 ends a hair under its band edge in an account with no free cash; a pair (sell one more step of s0, over its target, and buy s2/c0 with the proceeds) brings it in, but the pair capped the buy at the cash before the sale: zero steps.",
		policy: `policy: gen
currency: USD
targets:
  s0: 6%
  s1: 13%
  s2:
    weight: 81%
    sleeves:
      c0: 10%
      c1: 46%
      c2: 44%
  cash: 0%
bands:
  absolute: 10%
  sleeves:
    s2: {absolute: 7%}
rebalance:
  trigger: threshold
  destination: band_edge
  min_trade: "0"
instruments:
  I0_0: {sleeve: s0, step: "0.0001", share: 26%}
  I0_1: {sleeve: s0, step: "1", share: 0%}
  I0_2: {sleeve: s0, step: "0.001", share: 74%}
  I1_0: {sleeve: s1, step: "0.001"}
  I2_0: {sleeve: s2/c0, step: "0.0001", share: 100%}
  I3_0: {sleeve: s2/c1, step: "0.0001"}
  I3_1: {sleeve: s2/c1, step: "0.001"}
  I4_0: {sleeve: s2/c2, step: "0.001", share: 88%}
  I4_1: {sleeve: s2/c2, step: "0.0001", share: 12%}
  MM: {sleeve: cash, step: "0.001"}
accounts:
  a0: {type: taxable, reserve: "13000"}
  a1: {type: traditional_401k}
  a2: {type: roth_ira, reserve: "13000"}
`,
		holdings: stamp + `accounts:
  a0: {cash: "3346108.19", positions: {}}
  a1: {cash: "2910018.74", positions: {I0_1: "149829.62", I0_2: "108752", I1_0: "32227.062", I3_1: "60399", I4_1: "418"}}
  a2: {cash: "3266035.02", positions: {I0_0: "196.163", I0_2: "722994", I1_0: "20459.957", I3_1: "440546.349"}}
`,
		prices: stamp + `prices:
  I0_0: "31186.23"
  I0_1: "70.83"
  I0_2: "26.78"
  I1_0: "369.23"
  I2_0: "35667.32"
  I3_0: "25137.67"
  I3_1: "40.26"
  I4_0: "491.99"
  I4_1: "31573.73"
  MM: "1"
`,
		check: "band",
	},
	{
		name: "fewer-steps-of-split-restoration-188419",
		why:  "one account, destination midway: s2 ends 0.06 points over its band because of a split restoration buying 204 USD of I2_0; fewer steps of it bring s2 in, but the polish never changed a split restoration.",
		policy: `policy: gen
currency: USD
targets:
  s0: 21.5%
  s1: 51.5%
  s2: 0.5%
  s3: 21.5%
  cash: 5%
bands:
  absolute: 10%
  relative: 20%
rebalance:
  trigger: threshold
  destination: midway
  min_trade: "0"
instruments:
  I0_0: {sleeve: s0, step: "1", share: 85%}
  I0_1: {sleeve: s0, step: "0.001", share: 15%}
  I1_0: {sleeve: s1, step: "0.001", share: 80%}
  I1_1: {sleeve: s1, step: "0.001", share: 20%}
  I2_0: {sleeve: s2, step: "0.0001"}
  I2_1: {sleeve: s2, step: "1"}
  I2_2: {sleeve: s2, step: "0.001"}
  I3_0: {sleeve: s3, step: "0.001"}
  I3_1: {sleeve: s3, step: "0.0001"}
  MM: {sleeve: cash, step: "0.001"}
accounts:
  a0: {type: hsa, reserve: "14000"}
`,
		holdings: stamp + `accounts:
  a0: {cash: "14000", positions: {I2_1: "346"}}
`,
		prices: stamp + `prices:
  I0_0: "40.83"
  I0_1: "274.1"
  I1_0: "501.75"
  I1_1: "196.12"
  I2_0: "36446.95"
  I2_1: "321.84"
  I2_2: "232.75"
  I3_0: "148.89"
  I3_1: "50336.28"
  MM: "1"
`,
		check: "band",
	},
	{
		name: "no-sale-of-a-sleeve-bought-elsewhere-196742",
		why:  "three accounts, destination target, nothing over its target: a pair sold 50.10 USD of I0_2 (s0) in one account to buy s1 there, while another account bought s0: s0 was over its target only because of the plan's own buys.",
		policy: `policy: gen
currency: USD
targets:
  s0: 53%
  s1: 42%
  cash: 5%
bands:
  absolute: 10%
  relative: 25%
rebalance:
  trigger: threshold
  destination: target
  min_trade: "50"
instruments:
  I0_0: {sleeve: s0, step: "0.001"}
  I0_1: {sleeve: s0, step: "1"}
  I0_2: {sleeve: s0, step: "0.001"}
  I1_0: {sleeve: s1, step: "0.0001", share: 57%}
  I1_1: {sleeve: s1, step: "1", share: 43%}
accounts:
  a0: {type: roth_ira}
  a1: {type: traditional_401k, reserve: "10000"}
  a2: {type: roth_ira}
tax:
  short_term_gains: block
  wait_long_term_days: 0
  wash_sale: {window: 30, exempt: [s1]}
  harvest: {enabled: true, min_loss: "1000", substitutes: {I0_0: I0_1, I0_1: I0_2, I1_0: I1_1}}
`,
		holdings: stamp + `accounts:
  a0: {cash: "0", positions: {I0_2: "10441.272"}}
  a1: {cash: "24186934.13", positions: {I1_0: "309.245"}}
  a2: {cash: "1277396.02", positions: {I0_1: "28141", I0_2: "10326", I1_1: "36859"}}
`,
		prices: stamp + `prices:
  I0_0: "489.23"
  I0_1: "230.95"
  I0_2: "400.76"
  I1_0: "37864.7"
  I1_1: "308.24"
`,
		check: "nosell",
		history: tax.History{LossSales: []tax.Trade{
			{Instrument: "I0_2", Account: "a1", Date: tax.NewDate(2026, 10, 26)},
			{Instrument: "I1_0", Account: "a0", Date: tax.NewDate(2026, 11, 1)},
		}},
	},
	{
		name: "rescue-sells-no-sleeve-bought-elsewhere-37867",
		why: "three accounts, destination target, nothing over its target: s0 ends at the edge of its band; a rescue pair " +
			"paid for a buy of s0 in a2 by selling 485,860 USD of I1_1 (s1) there while a0 bought s1: the sale rescue may make " +
			"must not undo the plan's own buys either",
		policy: `policy: gen
currency: USD
targets:
  s0: 56.5%
  s1: 43.5%
  cash: 0%
bands:
  absolute: 2%
  relative: 20%
rebalance:
  trigger: threshold
  destination: target
  min_trade: "50"
instruments:
  I0_0: {sleeve: s0, step: "1"}
  I0_1: {sleeve: s0, step: "1"}
  I1_0: {sleeve: s1, step: "0.001", share: 16%}
  I1_1: {sleeve: s1, step: "0.0001", share: 41%}
  I1_2: {sleeve: s1, step: "0.001", share: 43%}
  MM: {sleeve: cash, step: "0.001"}
accounts:
  a0: {type: roth_ira, may_hold: [I1_0, I1_2]}
  a1: {type: hsa, reserve: "10000"}
  a2: {type: roth_ira, reserve: "12000"}
`,
		holdings: stamp + `accounts:
  a0: {cash: "384671.72", positions: {I1_2: "777.291", MM: "1846298"}}
  a1: {cash: "296128.7", positions: {}}
  a2: {cash: "12000", positions: {I0_1: "6303.12", I1_1: "16.137", MM: "1863653"}}
`,
		prices: stamp + `prices:
  I0_0: "165.95"
  I0_1: "136.86"
  I1_0: "380.35"
  I1_1: "56640.24"
  I1_2: "336.08"
  MM: "1"
`,
		check: "nosell",
	},
	{
		name: "no-sale-of-a-sleeve-over-target-only-by-its-buys-223401",
		why: "three accounts, destination target, nothing over its target: after the plan's buys in a0 put s1/c0 over its " +
			"target, a pair sold 63,287 USD of I1_1 (s1/c0) in a1 to buy s1/c1 there; the sale of a sleeve the plan buys " +
			"elsewhere is refused for any move, not only for a pair's partner",
		policy: `policy: gen
currency: USD
targets:
  s0: 46%
  s1:
    weight: 53%
    sleeves:
      c0: 53%
      c1: 47%
  cash: 1%
bands:
  absolute: 10%
  relative: 20%
  sleeves:
    s1: {absolute: 1%}
rebalance:
  trigger: threshold
  destination: target
  min_trade: "0"
instruments:
  I0_0: {sleeve: s0, step: "0.0001"}
  I1_0: {sleeve: s1/c0, step: "0.001", share: 9%}
  I1_1: {sleeve: s1/c0, step: "0.0001", share: 91%}
  I2_0: {sleeve: s1/c1, step: "0.0001", share: 32%}
  I2_1: {sleeve: s1/c1, step: "0.0001", share: 68%}
  MM: {sleeve: cash, step: "0.001"}
accounts:
  a0: {type: roth_ira}
  a1: {type: hsa}
  a2: {type: roth_ira, reserve: "15000"}
  a3: {type: taxable, reserve: "16000"}
`,
		holdings: stamp + `accounts:
  a0: {cash: "0", positions: {I1_1: "8", MM: "1473722"}}
  a1: {cash: "2032244.9", positions: {I1_1: "17"}}
  a2: {cash: "470488.1", positions: {I1_0: "72.087", I2_1: "32"}}
  a3: {cash: "16000", positions: {}}
`,
		prices: stamp + `prices:
  I0_0: "44738.43"
  I1_0: "405.94"
  I1_1: "54817.93"
  I2_0: "27793.24"
  I2_1: "30235.01"
  MM: "1"
`,
		check: "nosell",
	},
}

// TestRepairMoves plans each of repairCases and checks its fault is gone
// and the hard invariants hold.
func TestRepairMoves(t *testing.T) {
	for _, c := range repairCases {
		t.Run(c.name, func(t *testing.T) {
			b := book(t, c.policy, c.holdings, c.prices)
			p := plan.MakeWith(drift.Compute(b), plan.Options{History: c.history})
			checkInvariants(t, b, p)
			switch c.check {
			case "band":
				for _, s := range p.Sleeves {
					if s.BreachAfter {
						t.Errorf("%s ends out of its band (%s, band %s-%s): %s", s.Sleeve, s.WeightAfter, s.BandLow, s.BandHigh, c.why)
					}
				}
				for _, u := range p.Unresolved {
					t.Errorf("unresolved %s: %s", u.Sleeve, u.Reason)
				}
			case "nosell":
				for _, o := range p.Orders {
					if o.Side == plan.Sell && o.Rule != plan.RuleFundBuys && o.Rule != plan.RuleRelocate && o.Rule != plan.RuleHarvest {
						t.Errorf("sold %s although nothing is over its target: %s", orderLine(o), c.why)
					}
				}
			}
			if t.Failed() {
				t.Logf("plan:\n%s", renderPlan(p))
			}
		})
	}
}
