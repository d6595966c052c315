package plan_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// threeSleeves: stocks A (100), bonds B (50), gold G (10), 50/30/20, bands
// 5 points (bonds 2 points: %s), cash 0%.
const threeSleeves = `
policy: three
currency: USD
targets: {stocks: 50%%, bonds: 30%%, gold: 20%%, cash: 0%%}
bands: {absolute: 5%%%s}
rebalance: {trigger: threshold, destination: target, min_trade: "0"}
instruments: {A: {sleeve: stocks}, B: {sleeve: bonds}, G: {sleeve: gold}}
accounts: {ira: {type: traditional_ira}}
`

const threePrices = stamp + `prices: {A: "100", B: "50", G: "10"}`

// flowLines renders the orders of p with their rules.
func flowLines(p *plan.Plan) string {
	var out []string
	for _, o := range p.Orders {
		out = append(out, orderLine(o)+" "+string(o.Rule))
	}
	return strings.Join(out, "; ")
}

// invest plans the investment of b's free cash and checks the invariants.
func invest(t *testing.T, b *portfolio.Book) *plan.Plan {
	t.Helper()
	p := plan.Invest(drift.Compute(b), plan.Options{})
	checkInvariants(t, b, p)
	checkInvest(t, b, p)
	return p
}

// TestInvestKnownAnswers checks investments worked out by hand.
func TestInvestKnownAnswers(t *testing.T) {
	prices := stamp + `prices: {A: "100", B: "50"}`
	two := fmt.Sprintf(twoSleeves, "target", "0", "  ira: {type: traditional_ira}")
	tests := []struct {
		name, policy, holdings, prices string
		want                           string
		breachAfter                    []string
		deposit                        string // CashFlow.DepositToBands
	}{
		{
			// 60/40 at 70/30 (7000 A + 3000 B) and a deposit of 1000: the
			// total is 11000. Stocks (7000 <= 65% = 7150) need nothing;
			// bonds need 35% x 11000 - 3000 = 850 to reach their band,
			// and the 150 left goes to their deficit (40% = 4400, less
			// 3850): 1000 = 20 B. Stocks stay at 63.6%, bonds 36.4%.
			name: "deposit into 60/40 at 70/30", policy: two, prices: prices,
			holdings: `ira: {cash: "1000", positions: {A: "70", B: "60"}}`,
			want:     "ira buy 20 B invest", deposit: "0",
		},
		{
			// A deposit of 500: the total is 10500. Bonds need 35% x 10500
			// - 3000 = 675 > 500: all of it, 10 B. Stocks are above 65% of
			// 10500 (6825), bonds below: both stay out. Further deposit:
			// stocks need T >= 7000 / 0.65 = 10769.2307..., so D >=
			// 269.2307...; bonds need 0.35 x (10500 + D) - 3000 <= 500 + D,
			// D >= 175 / 0.65, the same bound: 269.24.
			name: "deposit too small", policy: two, prices: prices,
			holdings:    `ira: {cash: "500", positions: {A: "70", B: "60"}}`,
			want:        "ira buy 10 B invest",
			breachAfter: []string{"stocks", "bonds"}, deposit: "269.24",
		},
		{
			// 50/20/30 (5000 A, 2000 B, 3000 G), bonds band 2 points, and
			// a deposit of 3000: the total is 13000. Band needs: stocks
			// 45% x 13000 - 5000 = 850, bonds 28% x 13000 - 2000 = 1640,
			// gold (3000 > 20%) none: 2490. The 510 left goes toward the
			// targets: deficits left stocks 6500 - 5850 = 650, bonds 3900
			// - 3640 = 260. Stocks alone would stop at 140 < 260, so both
			// level at (650 + 260 - 510) / 2 = 200: stocks 450, bonds 60.
			// Stocks 1300 = 13 A, bonds 1700 = 34 B.
			name: "deposit larger than the bands need", policy: fmt.Sprintf(threeSleeves, ", sleeves: {bonds: {absolute: 2%}}"), prices: threePrices,
			holdings: `ira: {cash: "3000", positions: {A: "50", B: "40", G: "300"}}`,
			want:     "ira buy 13 A invest; ira buy 34 B invest", deposit: "0",
		},
		{
			// Asset location puts bonds in the IRA. IRA: 1000 cash, 60 B;
			// taxable: 2000 cash, 70 A; total 13000. Band needs: stocks
			// 7150 - 7000 = 150, bonds 4550 - 3000 = 1550; the 1300 left
			// levels the deficits (650 each): stocks 800 = 8 A, bonds
			// 2200 = 44 B. The IRA's 1000 buys B first (20 B); the
			// taxable account buys 8 A and the other 24 B.
			name: "deposit with asset location", prices: prices,
			policy:   fmt.Sprintf(twoSleeves, "target", "0", "  ira: {type: traditional_ira}\n  tax: {type: taxable}") + "asset_location: {bonds: [ira]}\n",
			holdings: `ira: {cash: "1000", positions: {B: "60"}}` + "\n  " + `tax: {cash: "2000", positions: {A: "70"}}`,
			want:     "ira buy 20 B invest; tax buy 8 A invest; tax buy 24 B invest", deposit: "0",
		},
		{
			// The same without asset location: the IRA, first in the
			// policy, buys A first (its 1000: 8 A and 4 B).
			name: "deposit without asset location", prices: prices,
			policy:   fmt.Sprintf(twoSleeves, "target", "0", "  ira: {type: traditional_ira}\n  tax: {type: taxable}"),
			holdings: `ira: {cash: "1000", positions: {B: "60"}}` + "\n  " + `tax: {cash: "2000", positions: {A: "70"}}`,
			want:     "ira buy 8 A invest; ira buy 4 B invest; tax buy 40 B invest", deposit: "0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := book(t, tt.policy, stamp+"accounts:\n  "+tt.holdings, tt.prices)
			p := invest(t, b)
			if got := flowLines(p); got != tt.want {
				t.Errorf("orders:\n got %q\nwant %q", got, tt.want)
			}
			var out []string
			for _, s := range p.Sleeves {
				if s.BreachAfter {
					out = append(out, s.Sleeve)
				}
			}
			if strings.Join(out, ",") != strings.Join(tt.breachAfter, ",") {
				t.Errorf("outside their bands after: %v, want %v", out, tt.breachAfter)
			}
			if len(p.Unresolved) != len(tt.breachAfter) {
				t.Errorf("unresolved = %+v, want the sleeves still out", p.Unresolved)
			}
			cf := p.CashFlow
			if cf == nil || cf.Kind != plan.CashFlowInvest || cf.DepositToBands == nil || cf.DepositToBands.String() != tt.deposit {
				t.Fatalf("cash flow = %+v, want deposit_to_bands %s", cf, tt.deposit)
			}
			if p.Destination != "target" {
				t.Errorf("destination %s", p.Destination)
			}
		})
	}
}

// TestDepositToBands checks the smallest deposits worked out by hand, and
// that investing it (with steps fine enough not to matter) brings every
// sleeve inside its band, while a cent less does not.
func TestDepositToBands(t *testing.T) {
	fine := stamp + `prices: {A: "1", B: "1", G: "1"}`
	tests := []struct {
		name, policy, holdings, want string
	}{
		{
			// The worked example of DepositToBands: 60/40 at 7000/3000.
			// Stocks: T >= 7000 / 0.65 = 10769.2307...: 769.24.
			name:     "60/40 at 70/30",
			policy:   "targets: {stocks: 60%, bonds: 40%, cash: 0%}\nbands: {absolute: 5%}\ninstruments: {A: {sleeve: stocks, step: \"0.0001\"}, B: {sleeve: bonds, step: \"0.0001\"}}",
			holdings: `{A: "7000", B: "3000"}`,
			want:     "769.24",
		},
		{
			// 50/30/20 at 6000/2000/2000, bonds band 2 points. Stocks are
			// above 55%: T >= 6000 / 0.55 = 10909.0909..., D >= 909.10.
			// Bonds, below 28%, need 0.28 x (10000 + D) - 2000 <= D: D >=
			// 800 / 0.72 = 1111.1111..., which binds: 1111.12 (at 1111.11
			// bonds would need 1111.1108). Stocks and gold need nothing
			// below T = 13333.33.
			name:     "three sleeves, the lower edge binds",
			policy:   "targets: {stocks: 50%, bonds: 30%, gold: 20%, cash: 0%}\nbands: {absolute: 5%, sleeves: {bonds: {absolute: 2%}}}\ninstruments: {A: {sleeve: stocks, step: \"0.0001\"}, B: {sleeve: bonds, step: \"0.0001\"}, G: {sleeve: gold, step: \"0.0001\"}}",
			holdings: `{A: "6000", B: "2000", G: "2000"}`,
			want:     "1111.12",
		},
		{
			// 5/25 bands: gold's target 5% gives a half-width of 1.25
			// points. At 5500/4500/0 it needs 3.75% x T <= D: 0.0375 x
			// (10000 + D) <= D, D >= 375 / 0.9625 = 389.6103...: 389.62
			// (at 389.61 it would need 389.610375).
			name:     "relative band",
			policy:   "targets: {stocks: 50%, bonds: 45%, gold: 5%, cash: 0%}\nbands: {absolute: 5%, relative: 25%}\ninstruments: {A: {sleeve: stocks, step: \"0.0001\"}, B: {sleeve: bonds, step: \"0.0001\"}, G: {sleeve: gold, step: \"0.0001\"}}",
			holdings: `{A: "5500", B: "4500"}`,
			want:     "389.62",
		},
		{
			// Inside every band already: nothing.
			name:     "in band",
			policy:   "targets: {stocks: 60%, bonds: 40%, cash: 0%}\nbands: {absolute: 5%}\ninstruments: {A: {sleeve: stocks, step: \"0.0001\"}, B: {sleeve: bonds, step: \"0.0001\"}}",
			holdings: `{A: "6200", B: "3800"}`,
			want:     "0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := "policy: d\ncurrency: USD\n" + tt.policy + "\nrebalance: {trigger: threshold}\naccounts: {ira: {type: roth_ira}}\n"
			b := book(t, pol, stamp+`accounts: {ira: {cash: "0", positions: `+tt.holdings+`}}`, fine)
			got, ok := plan.DepositToBands(drift.Compute(b))
			if !ok || got.String() != tt.want {
				t.Fatalf("DepositToBands = %s, %v; want %s", got, ok, tt.want)
			}
			outAfter := func(amount decimal.Decimal) []string {
				p := invest(t, plan.AddCash(b, 0, amount))
				var out []string
				for _, s := range p.Sleeves {
					if s.BreachAfter {
						out = append(out, s.Sleeve)
					}
				}
				return out
			}
			if out := outAfter(got); len(out) != 0 {
				t.Errorf("investing %s leaves %v outside their bands", got, out)
			}
			if got.Sign() > 0 {
				if out := outAfter(got.Sub(decimal.New(1, -2))); len(out) == 0 {
					t.Errorf("investing a cent less than %s already brings every sleeve inside its band", got)
				}
			}
		})
	}
}

// withdraw plans a withdrawal from b and checks the invariants.
func withdraw(t *testing.T, b *portfolio.Book, o plan.Options, account, amount string) *plan.Plan {
	t.Helper()
	p, err := plan.Withdraw(drift.Compute(b), o, plan.Withdrawal{Account: account, Amount: d(amount)})
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, b, p)
	checkWithdraw(t, b, p, account, d(amount))
	return p
}

// TestWithdrawKnownAnswers checks withdrawals worked out by hand.
func TestWithdrawKnownAnswers(t *testing.T) {
	pol := fmt.Sprintf(threeSleeves, "")
	t.Run("most overweight first", func(t *testing.T) {
		// 6000 A, 2000 B, 2000 G (60/20/20); withdraw 2000: the total
		// after is 8000, targets 4000/2400/1600, surpluses stocks 2000,
		// bonds -400, gold 400. Stocks alone go down to gold's 400
		// (1600), then both by 200 each: stocks 1800 = 18 A, gold 200 =
		// 20 G. After: 52.5/25/22.5.
		b := book(t, pol, stamp+`accounts: {ira: {cash: "0", positions: {A: "60", B: "40", G: "200"}}}`, threePrices)
		p := withdraw(t, b, plan.Options{}, "ira", "2000")
		if got := flowLines(p); got != "ira sell 18 A withdraw; ira sell 20 G withdraw" {
			t.Errorf("orders = %s", got)
		}
		cf := p.CashFlow
		if cf.Kind != plan.CashFlowWithdraw || cf.Account != "ira" || !cf.Traded.Equal(d("2000")) || !cf.Withdrawn.Equal(d("2000")) ||
			!cf.Shortfall.IsZero() || !cf.FromCash.IsZero() || !p.TotalAfter.Equal(d("8000")) || len(p.Unresolved) != 0 {
			t.Errorf("cash flow %+v, total after %s, unresolved %+v", cf, p.TotalAfter, p.Unresolved)
		}
		if w := p.Sleeves[0].WeightAfter; !w.Equal(d("0.525")) {
			t.Errorf("stocks after %s, want 0.525", w)
		}
	})
	t.Run("too large", func(t *testing.T) {
		// 12000 from an account worth 10000: everything is sold, 2000
		// is missing.
		b := book(t, pol, stamp+`accounts: {ira: {cash: "0", positions: {A: "60", B: "40", G: "200"}}}`, threePrices)
		p := withdraw(t, b, plan.Options{}, "ira", "12000")
		if got := flowLines(p); got != "ira sell 60 A withdraw; ira sell 40 B withdraw; ira sell 200 G withdraw" {
			t.Errorf("orders = %s", got)
		}
		cf := p.CashFlow
		if !cf.Withdrawn.Equal(d("10000")) || !cf.Shortfall.Equal(d("2000")) || len(p.Unresolved) != 1 || p.Unresolved[0].Sleeve != "" ||
			!strings.Contains(p.Unresolved[0].Reason, "withdrawal of 12000.00 USD from ira: only 10000.00 can be raised") {
			t.Errorf("cash flow %+v, unresolved %+v", cf, p.Unresolved)
		}
	})
	t.Run("free cash of an overweight cash sleeve first", func(t *testing.T) {
		// 1000 of cash (0% target) and 6000/2000/2000: total 11000;
		// withdraw 1000: after 10000, surpluses stocks 1000, bonds -1000,
		// gold 0, cash 1000. Both level to 500 each: 500 from the cash,
		// 5 A sold.
		b := book(t, pol, stamp+`accounts: {ira: {cash: "1000", positions: {A: "60", B: "40", G: "200"}}}`, threePrices)
		p := withdraw(t, b, plan.Options{}, "ira", "1000")
		if got := flowLines(p); got != "ira sell 5 A withdraw" {
			t.Errorf("orders = %s", got)
		}
		if cf := p.CashFlow; !cf.FromCash.Equal(d("500")) || !cf.Withdrawn.Equal(d("1000")) {
			t.Errorf("cash flow %+v", cf)
		}
	})
	t.Run("min_trade made up", func(t *testing.T) {
		// As "most overweight first" with min_trade 250: the 200 of gold
		// would be dropped, so stocks sell 2 A more (20 A).
		pol := strings.Replace(pol, `min_trade: "0"`, `min_trade: "250"`, 1)
		b := book(t, pol, stamp+`accounts: {ira: {cash: "0", positions: {A: "60", B: "40", G: "200"}}}`, threePrices)
		p := withdraw(t, b, plan.Options{}, "ira", "2000")
		if got := flowLines(p); got != "ira sell 20 A withdraw" {
			t.Errorf("orders = %s", got)
		}
	})
}

// TestWithdrawTaxable: a withdrawal from a taxable account sells lots at
// a loss first. 70 A + 60 B (7000/3000), withdraw 1500: after 8500,
// targets 5100/3400, stocks 1900 over: sell 15 A. Of A's lots (30 at 80
// long-term, 20 at 120 long-term, 20 at 90 short-term) the one at 120 is
// at a loss: 15 of it, basis 15 x 120 = 1800, proceeds 1500, a long-term
// loss of 300.
func TestWithdrawTaxable(t *testing.T) {
	b := book(t, fmt.Sprintf(taxPolicy, "  A: {sleeve: stocks}\n  B: {sleeve: bonds}", "  tx: {type: taxable}", ""), stamp+`accounts:
  tx:
    cash: "0"
    positions:
      B: "60"
      A:
        lots:
          - {quantity: "30", unit_cost: "80", acquired: 2020-01-10}
          - {quantity: "20", unit_cost: "120", acquired: 2025-01-10}
          - {quantity: "20", unit_cost: "90", acquired: 2026-06-01}
`, taxPrices)
	p := withdraw(t, b, plan.Options{}, "tx", "1500")
	checkTax(t, b, p, tax.History{})
	if got := flowLines(p); got != "tx sell 15 A withdraw" {
		t.Fatalf("orders = %s", got)
	}
	o := p.Orders[0]
	if len(o.Lots) != 1 || o.Lots[0].Lot != 1 || !o.Lots[0].Quantity.Equal(d("15")) {
		t.Errorf("lots = %+v, want 15 of lot 1 (at 120)", o.Lots)
	}
	wantGains(t, p.Tax.Gains, "0", "0", "0", "300")
}

// TestCashFlowErrors: a withdrawal names an account of the policy and a
// positive amount.
func TestCashFlowErrors(t *testing.T) {
	b := book(t, fmt.Sprintf(threeSleeves, ""), stamp+`accounts: {ira: {cash: "0", positions: {A: "60"}}}`, threePrices)
	s := drift.Compute(b)
	for _, w := range []plan.Withdrawal{{Account: "nope", Amount: d("1")}, {Account: "ira", Amount: d("0")}, {Account: "ira", Amount: d("-5")}} {
		if _, err := plan.Withdraw(s, plan.Options{}, w); err == nil {
			t.Errorf("%+v: no error", w)
		}
	}
}

// checkInvest checks what every investment guarantees: nothing sold,
// nothing bought past its target (beyond a step per account of each of
// its instruments) and no underweight sleeve further from its target.
func checkInvest(t testing.TB, b *portfolio.Book, p *plan.Plan) {
	t.Helper()
	for _, o := range p.Orders {
		if o.Side != plan.Buy || o.Rule != plan.RuleInvest {
			t.Errorf("investment has %s (%s)", orderLine(o), o.Rule)
		}
	}
	if !p.TotalAfter.Equal(p.Total) {
		t.Errorf("total %s -> %s", p.Total, p.TotalAfter)
	}
	pol := b.Policy
	tol := tolerances(b)
	spent := decimal.Zero
	for _, o := range p.Orders {
		spent = spent.Add(o.Notional)
	}
	if cf := p.CashFlow; cf == nil || !cf.Traded.Equal(spent) {
		t.Errorf("cash flow %+v, orders spend %s", cf, spent)
	}
	for k, s := range p.Sleeves {
		if k == pol.Cash {
			continue
		}
		target := s.Target.Mul(p.Total)
		after := s.WeightAfter.Mul(p.Total) // rounded weights: compare with slack
		slack := p.Total.Mul(decimal.New(1, -drift.WeightPlaces))
		before := s.Value
		if after.Add(slack).LessThan(before) {
			t.Errorf("%s: %s before, %s after an investment", s.Sleeve, before, after)
		}
		if over := after.Sub(decimal.Max(target, before)); over.GreaterThan(tol[k].Add(slack)) {
			t.Errorf("%s bought past its target %s: %s after (tolerance %s)", s.Sleeve, target, after, tol[k])
		}
	}
}

// checkWithdraw checks what every withdrawal guarantees: only sells, in
// its account; the account pays the amount or, short, has nothing more
// it may sell; the proceeds exceed what is needed by less than a step
// (or min_trade) per order.
func checkWithdraw(t testing.TB, b *portfolio.Book, p *plan.Plan, account string, amount decimal.Decimal) {
	t.Helper()
	pol := b.Policy
	a, _ := pol.AccountIndex(account)
	cf := p.CashFlow
	if cf == nil || cf.Kind != plan.CashFlowWithdraw || cf.Account != account || !cf.Amount.Equal(amount) {
		t.Fatalf("cash flow %+v", cf)
	}
	proceeds, slack := decimal.Zero, decimal.Zero
	sold := map[int]decimal.Decimal{}
	for _, o := range p.Orders {
		if o.Side != plan.Sell || o.Account != account || o.Rule != plan.RuleWithdraw {
			t.Errorf("withdrawal has %s (%s)", orderLine(o), o.Rule)
		}
		i, _ := pol.InstrumentIndex(o.Instrument)
		sold[i] = o.Quantity
		proceeds = proceeds.Add(o.Notional)
		slack = slack.Add(decimal.Max(b.Price[i].Mul(pol.Instruments[i].Step), pol.Rebalance.MinTrade))
	}
	if !cf.Traded.Equal(proceeds) {
		t.Errorf("traded %s, orders raise %s", cf.Traded, proceeds)
	}
	reserve := pol.Accounts[a].Reserve
	free := b.Cash[a].Sub(reserve).Add(proceeds) // free cash after the orders
	if want := decimal.Max(decimal.Zero, decimal.Min(amount, free)); !cf.Withdrawn.Equal(want) || !cf.Shortfall.Equal(amount.Sub(want)) {
		t.Errorf("withdrawn %s, shortfall %s; free cash after the orders %s", cf.Withdrawn, cf.Shortfall, free)
	}
	if cf.Shortfall.Sign() > 0 {
		if len(p.Unresolved) == 0 || p.Unresolved[len(p.Unresolved)-1].Sleeve != "" {
			t.Errorf("shortfall %s not unresolved: %+v", cf.Shortfall, p.Unresolved)
		}
		for i, in := range pol.Instruments {
			left := b.Qty[a][i].Sub(sold[i])
			taxCapped := pol.Tax != nil || b.Lots != nil
			if !taxCapped && left.GreaterThanOrEqual(in.Step) && left.Mul(b.Price[i]).GreaterThanOrEqual(pol.Rebalance.MinTrade) {
				t.Errorf("short by %s, yet %s %s is left to sell", cf.Shortfall, left, in.Symbol)
			}
		}
	}
	// The sells raise at most the amount and what refills the reserve,
	// to the rounding of each order.
	short := decimal.Max(decimal.Zero, reserve.Sub(b.Cash[a]))
	if excess := proceeds.Sub(amount).Sub(short); proceeds.Sign() > 0 && excess.GreaterThanOrEqual(slack) {
		t.Errorf("sells raise %s more than needed (slack %s)", excess, slack)
	}
}

// TestWithdrawalSplitMinTrade: a split withdrawal asks each account for
// what it can pay, and a position worth less than min_trade is not part
// of it: no order may sell it. first holds 1,000 of cash, 10 A (1,000)
// and 0.5 B (30, under min_trade 50); a withdrawal of 2,030 asked first
// for all 2,030, first raised 2,000, and 30 was short while second held
// 5,000 of cash (TestRandomPortfolios seed 147245, -cases 400000). first
// now pays 2,000 and second 30.
func TestWithdrawalSplitMinTrade(t *testing.T) {
	b := book(t, `policy: split-min-trade
currency: USD
targets: {stocks: 60%, bonds: 30%, cash: 10%}
bands: {absolute: 5%}
rebalance: {trigger: threshold, destination: target, min_trade: "50"}
instruments:
  A: {sleeve: stocks}
  B: {sleeve: bonds, step: "0.1"}
accounts:
  first: {type: roth_ira}
  second: {type: roth_ira}
`, stamp+`accounts:
  first: {cash: "1000", positions: {A: "10", B: "0.5"}}
  second: {cash: "5000"}
`, stamp+`prices: {A: "100", B: "60"}`)
	amount := d("2030")
	p, err := plan.Withdraw(drift.Compute(b), plan.Options{}, plan.Withdrawal{Amount: amount})
	if err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, b, p)
	checkSplit(t, b, p, amount)
	wantOrders(t, p, "first sell 10 A withdraw")
	if cf := p.CashFlow; !cf.Shortfall.IsZero() || len(cf.Accounts) != 2 || !cf.Accounts[1].Withdrawn.Equal(d("30")) {
		t.Errorf("cash flow %+v", cf)
	}
}
