package plan_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/plan"
)

// withdrawPolicy: A (stocks, 100) and B (bonds, 50), 60/40, in a taxable
// account, a traditional IRA, a governmental 457(b) and a Roth IRA, each
// holding 30 A and 40 B (3000 + 2000 = 5000); the investor, born
// 1990-05-01, is 36 on the trade date 2026-11-20. %s is the
// tax.withdrawals block.
const withdrawPolicy = `
policy: wd
currency: USD
investor: {birth_date: %s}
targets: {stocks: 60%%, bonds: 40%%, cash: 0%%}
bands: {absolute: 5%%}
rebalance: {trigger: threshold, destination: target, min_trade: "0"}
instruments: {A: {sleeve: stocks}, B: {sleeve: bonds}}
accounts:
  roth: {type: roth_ira}
  ira: {type: traditional_ira}
  gov: {type: 457b}
  tx: {type: taxable}
tax:
  withdrawals: {%s}
`

const withdrawHoldings = stamp + `accounts:
  roth: {cash: "0", positions: {A: "30", B: "40"}}
  ira: {cash: "0", positions: {A: "30", B: "40"}}
  gov: {cash: "0", positions: {A: "30", B: "40"}}
  tx:
    cash: "0"
    positions:
      B: "40"
      A:
        lots:
          - {quantity: "20", unit_cost: "70", acquired: 2020-01-10}
          - {quantity: "10", unit_cost: "90", acquired: 2026-06-01}
`

// TestWithdrawalTax: the estimated tax of withdrawing 5000, by hand, at
// ordinary 24%, long-term 15%, short-term 32%:
//   - traditional IRA at 36: 5000 x 24% = 1200 and 10% additional, 500:
//     1700 (it was reported as no tax before);
//   - the same at 60 (born 1966-05-01, 59½ on 2025-11-01): 1200;
//   - the 457(b), exempt from the additional tax: 1200;
//   - Roth: 0, taken to be a qualified distribution;
//
// 59½ is six months after the 59th birthday: born 1967-05-20, on
// 2026-11-20.
func TestWithdrawalTax(t *testing.T) {
	rates := "ordinary_income_rate: 24%, long_term_gains_rate: 15%, short_term_gains_rate: 32%"
	for _, tc := range []struct {
		name, birth, account string
		tax, ordinary, add   string
	}{
		{"traditional IRA before 59½", "1990-05-01", "ira", "1700", "1200", "500"},
		{"traditional IRA after 59½", "1966-05-01", "ira", "1200", "1200", "0"},
		{"traditional IRA the day before 59½", "1967-05-21", "ira", "1700", "1200", "500"},
		{"traditional IRA on the day of 59½", "1967-05-20", "ira", "1200", "1200", "0"},
		{"457(b), exempt", "1990-05-01", "gov", "1200", "1200", "0"},
		{"Roth", "1990-05-01", "roth", "0", "0", "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := book(t, fmt.Sprintf(withdrawPolicy, tc.birth, rates), withdrawHoldings, stamp+`prices: {A: "100", B: "50"}`)
			p := withdraw(t, b, plan.Options{}, tc.account, "5000")
			e := p.CashFlow.Tax
			if e == nil || e.Tax.String() != tc.tax || e.OrdinaryIncome.String() != tc.ordinary || e.Additional.String() != tc.add {
				t.Errorf("estimate %+v, want %s (%s + %s)", e, tc.tax, tc.ordinary, tc.add)
			}
		})
	}
	// No rate set: the estimate says so instead of reporting 0 as known.
	b := book(t, fmt.Sprintf(withdrawPolicy, "1990-05-01", ""), withdrawHoldings, stamp+`prices: {A: "100", B: "50"}`)
	p := withdraw(t, b, plan.Options{}, "ira", "5000")
	if e := p.CashFlow.Tax; e == nil || e.Tax.String() != "500" || !strings.Contains(strings.Join(e.Notes, "; "), "ordinary_income_rate is not set") {
		t.Errorf("without rates: %+v", e)
	}
}

// TestWithdrawalTaxable: the household is on target (stocks 4 x 3000 =
// 12000, bonds 8000 of 20000); withdrawing 3000 from the taxable account
// leaves 17000, targets 10200 and 6800: sell 18 A and 24 B. The 18 A come
// from the long-term lot at 70 (the short-term lot at 90 is sold last): a
// long-term gain of 18 x 30 = 540, at 15%: 81. B is held without lots: its
// gain is unknown, and the estimate says so.
func TestWithdrawalTaxable(t *testing.T) {
	rates := "ordinary_income_rate: 24%, long_term_gains_rate: 15%, short_term_gains_rate: 32%"
	b := book(t, fmt.Sprintf(withdrawPolicy, "1990-05-01", rates), withdrawHoldings, stamp+`prices: {A: "100", B: "50"}`)
	p := withdraw(t, b, plan.Options{}, "tx", "3000")
	wantOrders(t, p, "tx sell 18 A withdraw", "tx sell 24 B withdraw")
	e := p.CashFlow.Tax
	if e == nil || e.CapitalGains.String() != "81" || e.Tax.String() != "81" || !strings.Contains(strings.Join(e.Notes, "; "), "no cost basis") {
		t.Errorf("estimate %+v, want 81 and a note on B's unknown basis", e)
	}
}

// TestWithdrawalSplit: a withdrawal that names no account is split in
// the order of withdrawals (by default taxable, then tax-deferred, then
// Roth; tax.withdrawals.order changes it), each account paying what it
// can. Every account holds 30 A + 40 B = 5000; the household 20000.
//
// 8000, by default: tx pays its 5000 and ira, the first tax-deferred
// account, 3000. The total after is 12000: stocks 7200, bonds 4800, a
// surplus of 4800 and 3200. tx gives all it holds (30 A, 40 B): its lots
// of A realize 20 x 30 = 600 long-term (15%: 90) and 10 x 10 = 100
// short-term (32%: 32), 122 of tax; B has no lots. That leaves surpluses
// of 1800 and 1200: ira's 3000 takes 600 of stocks first, then 1200 of
// each: 18 A and 24 B, a distribution at 36 of 3000 x 24% = 720 and 300
// of additional tax: 1020. In all 1142, and both sleeves end on target.
func TestWithdrawalSplit(t *testing.T) {
	rates := "ordinary_income_rate: 24%, long_term_gains_rate: 15%, short_term_gains_rate: 32%"
	for _, tc := range []struct {
		order, amount string
		parts, orders []string
		tax           string
	}{
		{rates, "8000", []string{"tx 5000 5000 122", "ira 3000 3000 1020"},
			[]string{"ira sell 18 A withdraw", "ira sell 24 B withdraw", "tx sell 30 A withdraw", "tx sell 40 B withdraw"}, "1142"},
		// tx can pay 1000 alone: 6 A and 8 B (surpluses 600 and 400 of
		// 19000's targets): 6 long-term units at a gain of 30: 27.
		{rates, "1000", []string{"tx 1000 1000 27"}, []string{"tx sell 6 A withdraw", "tx sell 8 B withdraw"}, "27"},
		{rates + ", order: [roth_ira]", "1000", []string{"roth 1000 1000 0"}, []string{"roth sell 6 A withdraw", "roth sell 8 B withdraw"}, "0"},
		// gov (457(b), no additional tax) then ira: 5000 x 24% = 1200,
		// then 1000 x 34% = 340.
		{rates + ", order: [gov, ira]", "6000", []string{"gov 5000 5000 1200", "ira 1000 1000 340"}, nil, "1540"},
		// More than the household holds: every account pays all it has,
		// the last asked is short.
		{rates, "21000", []string{"tx 5000 5000 122", "ira 5000 5000 1700", "gov 5000 5000 1200", "roth 6000 5000 0"}, nil, "3022"},
	} {
		b := book(t, fmt.Sprintf(withdrawPolicy, "1990-05-01", tc.order), withdrawHoldings, stamp+`prices: {A: "100", B: "50"}`)
		p, err := plan.Withdraw(drift.Compute(b), plan.Options{}, plan.Withdrawal{Amount: d(tc.amount)})
		if err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, b, p)
		checkSplit(t, b, p, d(tc.amount))
		cf := p.CashFlow
		var parts []string
		withdrawn := decimal.Zero
		for _, part := range cf.Accounts {
			parts = append(parts, fmt.Sprintf("%s %s %s %s", part.Account, part.Amount, part.Withdrawn, part.Tax.Tax))
			withdrawn = withdrawn.Add(part.Withdrawn)
			raised := decimal.Zero
			for _, o := range p.Orders {
				if o.Account == part.Account {
					raised = raised.Add(o.Notional)
				}
			}
			if !raised.Equal(part.Traded) {
				t.Errorf("%s %s: %s traded %s, its orders %s", tc.order, tc.amount, part.Account, part.Traded, raised)
			}
		}
		if fmt.Sprint(parts) != fmt.Sprint(tc.parts) {
			t.Errorf("%s %s: parts %q, want %q", tc.order, tc.amount, parts, tc.parts)
		}
		if tc.orders != nil {
			wantOrders(t, p, tc.orders...)
		}
		if cf.Account != "" || !cf.Withdrawn.Equal(withdrawn) || !cf.Shortfall.Equal(d(tc.amount).Sub(withdrawn)) || cf.Tax == nil || cf.Tax.Tax.String() != tc.tax {
			t.Errorf("%s %s: cash flow %+v, tax %+v, want %s", tc.order, tc.amount, cf, cf.Tax, tc.tax)
		}
		for _, o := range p.Orders {
			if o.Side != plan.Sell || o.Rule != plan.RuleWithdraw {
				t.Errorf("withdrawal has %s (%s)", orderLine(o), o.Rule)
			}
		}
	}
}

// TestWithdrawalByTax: with tax.withdrawals.by: tax a taxable withdrawal
// sells the positions whose lots cost the least tax per dollar raised,
// across positions. tx holds 40 A bought 2026-06-01 at 60 (a short-term
// gain of 40 a unit at 100) and 20 B bought 2020-01-10 at 60 (a long-term
// loss of 10 a unit at 50): 4000 + 1000. Withdrawing 1000 by allocation
// sells 10 A, stocks being over their target: 400 of short-term gain at
// 32% = 128. By tax, B's lot costs -200 x 15% / 1000 = -0.03 a dollar, A's
// 1600 x 32% / 4000 = 0.128: B goes first, 20 B raise the 1000, a
// long-term loss of 200 and no tax.
func TestWithdrawalByTax(t *testing.T) {
	holdings := stamp + `accounts:
  roth: {cash: "0"}
  ira: {cash: "0"}
  gov: {cash: "0"}
  tx:
    cash: "0"
    positions:
      A:
        lots: [{quantity: "40", unit_cost: "60", acquired: 2026-06-01}]
      B:
        lots: [{quantity: "20", unit_cost: "60", acquired: 2020-01-10}]
`
	rates := "ordinary_income_rate: 24%, long_term_gains_rate: 15%, short_term_gains_rate: 32%"
	for _, tc := range []struct{ by, order, tax string }{
		{"", "tx sell 10 A withdraw", "128"},
		{", by: tax", "tx sell 20 B withdraw", "0"},
	} {
		b := book(t, fmt.Sprintf(withdrawPolicy, "1990-05-01", rates+tc.by), holdings, stamp+`prices: {A: "100", B: "50"}`)
		p := withdraw(t, b, plan.Options{}, "tx", "1000")
		wantOrders(t, p, tc.order)
		if e := p.CashFlow.Tax; e == nil || e.Tax.String() != tc.tax {
			t.Errorf("%q: estimate %+v, want %s", tc.by, e, tc.tax)
		}
		if tc.by != "" && !strings.Contains(strings.Join(p.CashFlow.Tax.Notes, "; "), "a net capital loss of 200") {
			t.Errorf("by tax: notes %q, want the net loss of 200", p.CashFlow.Tax.Notes)
		}
	}
}

// TestWithdrawalTaxAt59HalfMonthEnd: born 31 May 1967, the investor is 59½
// on 30 November 2026 (six months after the 59th birthday, the day capped
// at the month's end), when a withdrawal owes no additional tax. Adding
// six months with time.AddDate gave 1 December and charged 500 (from a
// review).
func TestWithdrawalTaxAt59HalfMonthEnd(t *testing.T) {
	at := "2026-11-30T15:00:00Z"
	hold := strings.Replace(withdrawHoldings, stamp, "as_of: "+at+"\n", 1)
	if hold == withdrawHoldings {
		t.Fatal("stamp not found in withdrawHoldings")
	}
	b := book(t, fmt.Sprintf(withdrawPolicy, "1967-05-31, time_zone: UTC", "ordinary_income_rate: 24%"), hold,
		"as_of: "+at+"\n"+`prices: {A: "100", B: "50"}`)
	p := withdraw(t, b, plan.Options{}, "ira", "5000")
	if e := p.CashFlow.Tax; e == nil || !e.Additional.IsZero() {
		t.Errorf("estimate %+v: additional tax charged on the day of 59½", e)
	}
}

// TestWithdrawalByTaxFollowsLots: the sale follows the lots least tax
// ranked, not the tax order of Select. tx holds 10 A bought 2020-01-10
// at 20 (long-term, a gain of 80 a unit at 100: 800 x 15% / 1000 = 0.12
// of tax a dollar) and 10 A bought 2026-06-01 at 95 (short-term, a gain
// of 5 a unit: 50 x 32% / 1000 = 0.016 a dollar). 1000 by tax sells the
// 10 short-term units: 16 of tax. Select's order (long-term gains before
// short-term ones) sold the long-term lot: 120.
func TestWithdrawalByTaxFollowsLots(t *testing.T) {
	holdings := stamp + `accounts:
  roth: {cash: "0"}
  ira: {cash: "0"}
  gov: {cash: "0"}
  tx:
    cash: "0"
    positions:
      A:
        lots:
          - {quantity: "10", unit_cost: "20", acquired: 2020-01-10}
          - {quantity: "10", unit_cost: "95", acquired: 2026-06-01}
`
	rates := "ordinary_income_rate: 24%, long_term_gains_rate: 15%, short_term_gains_rate: 32%, by: tax"
	b := book(t, fmt.Sprintf(withdrawPolicy, "1990-05-01", rates), holdings, stamp+`prices: {A: "100", B: "50"}`)
	p := withdraw(t, b, plan.Options{}, "tx", "1000")
	wantOrders(t, p, "tx sell 10 A withdraw")
	if lots := p.Orders[0].Lots; len(lots) != 1 || lots[0].Lot != 1 || lots[0].LongTerm {
		t.Errorf("lots sold %+v, want the short-term lot 1", lots)
	}
	if e := p.CashFlow.Tax; e == nil || e.Tax.String() != "16" {
		t.Errorf("estimate %+v, want 16", e)
	}
	// With short-term gains blocked, the short-term lot is held back: the
	// long-term one is sold, 120.
	b = book(t, fmt.Sprintf(withdrawPolicy, "1990-05-01", rates)+"  short_term_gains: block\n", holdings, stamp+`prices: {A: "100", B: "50"}`)
	p = withdraw(t, b, plan.Options{}, "tx", "1000")
	if e := p.CashFlow.Tax; len(p.Orders) != 1 || p.Orders[0].Lots[0].Lot != 0 || e == nil || e.Tax.String() != "120" {
		t.Errorf("short-term gains blocked: orders %+v, estimate %+v, want lot 0 and 120", p.Orders, e)
	}
}
