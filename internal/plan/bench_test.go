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

// advisorBook builds an advisor-size household: 50 instruments in 12 leaf
// sleeves (two nested levels), 6 accounts of which two restrict what they
// may hold, and holdings far from target so that the plan trades.
func advisorBook(tb testing.TB) *portfolio.Book {
	var pol, hold, prices strings.Builder
	pol.WriteString(`policy: advisor
currency: USD
targets:
  us_equity:
    weight: 30%
    sleeves: {large: 60%, mid: 25%, small: 15%}
  intl_equity:
    weight: 20%
    sleeves: {developed: 75%, emerging: 25%}
  bonds:
    weight: 25%
    sleeves: {treasury: 50%, corporate: 30%, tips: 20%}
  real_estate: 8%
  crypto:
    weight: 7%
    sleeves: {large_cap: 60%, balanced: 30%, growth: 10%}
  cash: 10%
bands:
  absolute: 5%
  relative: 25%
  sleeves:
    crypto: {absolute: 2%}
rebalance: {trigger: threshold, destination: target, min_trade: "50"}
instruments:
`)
	leaves := []string{"us_equity/large", "us_equity/mid", "us_equity/small", "intl_equity/developed", "intl_equity/emerging",
		"bonds/treasury", "bonds/corporate", "bonds/tips", "real_estate", "crypto/large_cap", "crypto/balanced", "crypto/growth"}
	prices.WriteString("as_of: 2026-11-20T21:00:00Z\nprices:\n")
	var syms []string
	for n := 0; n < 49; n++ {
		leaf := leaves[n%len(leaves)]
		sym := fmt.Sprintf("S%02d", n)
		step := "1"
		price := fmt.Sprintf("%d.%02d", 20+n*7, n)
		if strings.HasPrefix(leaf, "crypto") {
			step, price = "0.0001", fmt.Sprintf("%d.25", 1000+n*900)
		}
		fmt.Fprintf(&pol, "  %s: {sleeve: %s, step: %q}\n", sym, leaf, step)
		fmt.Fprintf(&prices, "  %s: %q\n", sym, price)
		syms = append(syms, sym)
	}
	pol.WriteString("  MMF: {sleeve: cash, step: \"0.001\"}\n")
	prices.WriteString("  MMF: \"1\"\n")
	syms = append(syms, "MMF")
	fmt.Fprintf(&pol, `accounts:
  k401: {type: traditional_401k, may_hold: [%s]}
  ira: {type: traditional_ira}
  roth: {type: roth_ira}
  hsa: {type: hsa, may_hold: [%s]}
  taxable: {type: taxable, reserve: "25000"}
  joint: {type: taxable}
`, strings.Join(syms[:20], ", "), strings.Join(syms[10:30], ", "))
	hold.WriteString("as_of: 2026-11-20T21:00:00Z\naccounts:\n")
	for a, name := range []string{"k401", "ira", "roth", "hsa", "taxable", "joint"} {
		fmt.Fprintf(&hold, "  %s:\n    cash: \"%d\"\n    positions:\n", name, 1000+a*7000)
		for n := a; n < 50; n += 2 + a%3 {
			if name == "k401" && n >= 20 || name == "hsa" && (n < 10 || n >= 30) {
				continue
			}
			fmt.Fprintf(&hold, "      %s: \"%d\"\n", syms[n], 10+(n*13+a*7)%90)
		}
	}
	return book(tb, pol.String(), hold.String(), prices.String())
}

func TestAdvisorBook(t *testing.T) {
	b := advisorBook(t)
	if n, a := len(b.Policy.Instruments), len(b.Policy.Accounts); n != 50 || a != 6 {
		t.Fatalf("advisor book has %d instruments and %d accounts, want 50 and 6", n, a)
	}
	p := plan.Make(drift.Compute(b))
	if len(p.Orders) < 20 {
		t.Fatalf("advisor plan has only %d orders; the benchmark would not exercise planning", len(p.Orders))
	}
	checkInvariants(t, b, p)
}

// benchmark measures drift alone, or drift and the plan, of book.
func benchmark(b *testing.B, book *portfolio.Book, withPlan bool) {
	b.ReportAllocs()
	for b.Loop() {
		s := drift.Compute(book)
		if withPlan {
			plan.Make(s)
		}
	}
}

// lotsBook is the example household (exampleBook) with each position of
// its taxable account given as 200 tax lots of equal quantity, bought at
// unit costs from 50% to 99% of the example price over seven years: the
// same quantities, all at a gain, so the same orders as the example's
// (its relocation of BND out of the taxable account realizes no loss, so
// the wash-sale guard lets it be), each taxable sell choosing among 200
// lots.
func lotsBook(tb testing.TB) *portfolio.Book { return lotsBookCosts(tb, 50, false) }

// lossLotsBook is lotsBook with every lot at a loss (unit costs from 101%
// to 150% of the price) and the last ones bought within 30 days of the
// trade date (one every 12 days up to as_of), eight times the quantities
// and no cash in the taxable account: its sells realize losses that the
// recent lots partly wash (tax.WashSale.Match).
func lossLotsBook(tb testing.TB) *portfolio.Book { return lotsBookCosts(tb, 101, true) }

// lotsBookCosts builds the lots of lotsBook at unit costs from from% to
// from+49% of the price, bought from 2019-11-20 on, or up to the holdings'
// day when recent.
func lotsBookCosts(tb testing.TB, from int, recent bool) *portfolio.Book {
	var hold strings.Builder
	cash := "25000"
	if recent {
		cash = "0" // the taxable account then sells to fund its buys
	}
	fmt.Fprintf(&hold, `as_of: 2026-11-20T21:00:00Z
accounts:
  roth:    {cash: "1200.50", positions: {VTI: "120", TM-LARGE: "0.5"}}
  k401:    {cash: "0", positions: {VTI: "300", BND: "400"}}
  taxable:
    cash: "%s"
    positions:
`, cash)
	for _, pos := range []struct{ sym, each, price string }{{"BND", "1.5", "72.15"}, {"VNQ", "0.2", "88.90"}, {"VXUS", "0.25", "61.40"}} {
		fmt.Fprintf(&hold, "      %s:\n        lots:\n", pos.sym)
		price, each := decimal.RequireFromString(pos.price), pos.each
		if recent {
			each = decimal.RequireFromString(each).Mul(decimal.NewFromInt(8)).String() // overweight: the taxable account sells
		}
		for k := 0; k < 200; k++ {
			unit := price.Mul(decimal.New(int64(from+(k*37)%50), -2)).Round(2)
			acquired := tax.NewDate(2019, 11, 20).AddDays(k * 12)
			if recent {
				acquired = tax.NewDate(2026, 11, 20).AddDays(-(199 - k) * 12)
			}
			fmt.Fprintf(&hold, "          - {quantity: %q, unit_cost: %q, acquired: %s}\n", each, unit.String(), acquired)
		}
	}
	return book(tb, readConfig(tb, "policies/example.yaml"), hold.String(), readConfig(tb, "prices/example.yaml"))
}

// TestLotsBook: the lots book holds what the example holds, 200 lots per
// taxable position, and its plan is tax-aware and keeps the invariants.
func TestLotsBook(t *testing.T) {
	b, plain := lotsBook(t), exampleBook(t)
	for a := range b.Qty {
		for i := range b.Qty[a] {
			if !b.Qty[a][i].Equal(plain.Qty[a][i]) {
				t.Fatalf("quantity of %s in %s: %s, example %s", b.Policy.Instruments[i].Symbol, b.Policy.Accounts[a].Name, b.Qty[a][i], plain.Qty[a][i])
			}
		}
	}
	if n := b.Lots[2][3].Len(); n != 200 {
		t.Fatalf("taxable BND has %d lots", n)
	}
	p := plan.Make(drift.Compute(b))
	checkInvariants(t, b, p)
	checkTax(t, b, p, tax.History{})
	want := plan.Make(drift.Compute(plain))
	if strings.Join(orderLines(p), "; ") != strings.Join(orderLines(want), "; ") {
		t.Errorf("orders with lots:\n%q\nwithout:\n%q", orderLines(p), orderLines(want))
	}
	// Since issue 11 the example's plan sells nothing in the taxable
	// account (the simple start of the polish needs no relocation): every
	// taxable sell there is must name its lots.
	if p.Tax == nil {
		t.Fatal("the plan is not tax-aware")
	}
	for _, o := range p.Orders {
		if o.Account == "taxable" && o.Side == plan.Sell && len(o.Lots) == 0 {
			t.Errorf("taxable sell %s chose no lots", orderLine(o))
		}
	}
}

func BenchmarkDriftHousehold(b *testing.B) { benchmark(b, exampleBook(b), false) }
func BenchmarkPlanHousehold(b *testing.B)  { benchmark(b, exampleBook(b), true) }

// BenchmarkPlanHouseholdLots is BenchmarkPlanHousehold with 200 tax lots
// per instrument in the taxable account (lotsBook).
func BenchmarkPlanHouseholdLots(b *testing.B) { benchmark(b, lotsBook(b), true) }

// BenchmarkPlanHouseholdLossLots plans lossLotsBook: every taxable sell at
// a loss, partly washed by recent lots.
func BenchmarkPlanHouseholdLossLots(b *testing.B) { benchmark(b, lossLotsBook(b), true) }

// TestLossLotsBook: the loss-lots book's plan sells at a loss, reports
// wash sales and keeps the invariants.
func TestLossLotsBook(t *testing.T) {
	b := lossLotsBook(t)
	p := plan.Make(drift.Compute(b))
	checkInvariants(t, b, p)
	checkTax(t, b, p, tax.History{})
	if p.Tax == nil || p.Tax.Disallowed == nil || p.Tax.Disallowed.Disallowed.Sign() <= 0 {
		t.Errorf("no wash sale in the loss-lots plan: %+v", p.Tax)
	}
}
func BenchmarkDriftAdvisor(b *testing.B) { benchmark(b, advisorBook(b), false) }
func BenchmarkPlanAdvisor(b *testing.B)  { benchmark(b, advisorBook(b), true) }
