package plan_test

import (
	"fmt"
	"strings"
	"testing"

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

// TestWithdrawalAccountOrder: by default a withdrawal that names no
// account comes from the taxable account, then the tax-deferred ones,
// then the Roth; tax.withdrawals.order changes that; an account that
// cannot pay the amount is passed over.
func TestWithdrawalAccountOrder(t *testing.T) {
	for _, tc := range []struct{ order, amount, want string }{
		{"", "1000", "tx"},
		{"", "6000", "tx"}, // none can pay 6000: the one holding the most, the first in order on a tie
		{"order: [roth_ira]", "1000", "roth"},
		{"order: [gov, ira]", "1000", "gov"},
	} {
		b := book(t, fmt.Sprintf(withdrawPolicy, "1990-05-01", tc.order), withdrawHoldings, stamp+`prices: {A: "100", B: "50"}`)
		a := plan.WithdrawalAccount(drift.Compute(b), d(tc.amount))
		if got := b.Policy.Accounts[a].Name; got != tc.want {
			t.Errorf("order %q, %s: %s, want %s", tc.order, tc.amount, got, tc.want)
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
