package plan_test

import (
	"fmt"
	"testing"

	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// washHoldings: tx holds 36 A bought 2025-01-10 at 150 and 8 B; 46 A and
// 8 B make 4600 + 400 = 5000, so 60/40 wants 3000 of A: sell 16 A (1600),
// buy 32 B. The lot at 150 goes first: a long-term loss of 16 × 50 = 800.
// extra are the other 10 A and where they are.
func washHoldings(extra string) string {
	return `  tx:
    cash: "0"
    positions:
      B: "8"
      A:
        lots:
          - {quantity: "36", unit_cost: "150", acquired: 2025-01-10}
` + extra
}

// TestWashSaleBothWays: the cases of issue 13, by hand. The 16 A sold
// were held 679 days (2025-01-10 to 2026-11-20).
func TestWashSaleBothWays(t *testing.T) {
	instruments := "  A: {sleeve: stocks}\n  B: {sleeve: bonds}"
	accounts := "  tx: {type: taxable}\n  roth: {type: roth_ira, may_hold: [A]}"
	t.Run("taxable bought 10 days before", func(t *testing.T) {
		// The same account bought 10 A on 2026-11-10 at 95 (a lot the
		// plan does not sell: it is at a gain). 10 × 50 = 500 is
		// disallowed and added to those shares' basis, whose holding
		// period counts from 2026-11-10 less 679 days = 2024-12-31; 300
		// is allowed. Reported before: 800 allowed.
		p := taxPlan(t, instruments, accounts, "tax: {}", washHoldings(`          - {quantity: "10", unit_cost: "95", acquired: 2026-11-10}
  roth: {cash: "0"}
`), tax.History{})
		wantOrders(t, p, "tx sell 16 A to_target", "tx buy 32 B to_target")
		wantGains(t, p.Tax.Gains, "0", "0", "0", "300")
		wantWash(t, p.Orders[0].WashSale, "500", "500", "0", "tx 2026-11-10 10 500 2024-12-31")
		wantWash(t, p.Tax.Disallowed, "500", "500", "0")
	})
	t.Run("roth bought 10 days before", func(t *testing.T) {
		// The Roth bought the 10 A (its holdings give no lots; the trade
		// is in the history): the 500 is lost for good (Rev. Rul.
		// 2008-5). Reported before: 800 allowed.
		h := tax.History{Buys: []tax.Trade{{Instrument: "A", Account: "roth", Date: tax.NewDate(2026, 11, 10), Quantity: d("10")}}}
		p := taxPlan(t, instruments, accounts, "tax: {}", washHoldings(`  roth: {cash: "0", positions: {A: "10"}}
`), h)
		wantOrders(t, p, "tx sell 16 A to_target", "tx buy 32 B to_target")
		wantGains(t, p.Tax.Gains, "0", "0", "0", "300")
		wantWash(t, p.Orders[0].WashSale, "500", "0", "500", "roth 2026-11-10 10 500 ")
		wantWash(t, p.Tax.Disallowed, "500", "0", "500")
	})
	t.Run("withdrawal of a loss the harvester refused", func(t *testing.T) {
		// tx holds 30 A at 150 (2025-01-10) and 30 bought 2026-11-05
		// at 95: harvesting refuses the lot at a loss, since the recent
		// buy would make it a wash sale. Withdrawing 3000 sells 30 A, the
		// lot at 150 first: a loss of 1500, all of it replaced by the 30
		// bought 2026-11-05, which count from 2026-11-05 less 679 days =
		// 2024-12-26. Reported before: 1500 allowed.
		rules := `tax: {harvest: {enabled: true, min_loss: "100", substitutes: {A: A2}}}`
		instruments := "  A: {sleeve: stocks, share: 100%}\n  A2: {sleeve: stocks, share: 0%}\n  B: {sleeve: bonds}"
		holdings := `  tx:
    cash: "0"
    positions:
      A:
        lots:
          - {quantity: "30", unit_cost: "150", acquired: 2025-01-10}
          - {quantity: "30", unit_cost: "95", acquired: 2026-11-05}
`
		b := book(t, fmt.Sprintf(taxPolicy, instruments, "  tx: {type: taxable}", rules), stamp+"accounts:\n"+holdings, taxPrices)
		l := b.Lots[0][0]
		cands, block := tax.HarvestCandidates(l, "A", "stocks", d("100"), taxDate, b.Policy.Tax.Options,
			tax.History{Buys: l.Buys("tx", "A", taxDate.AddDays(-30))})
		if len(cands) != 0 || !block.Blocked {
			t.Fatalf("the harvester sells %+v (block %+v)", cands, block)
		}
		p := withdraw(t, b, plan.Options{}, "tx", "3000")
		wantOrders(t, p, "tx sell 30 A withdraw")
		wantGains(t, p.Tax.Gains, "0", "0", "0", "0")
		wantWash(t, p.Orders[0].WashSale, "1500", "1500", "0", "tx 2026-11-05 30 1500 2024-12-26")
		checkTax(t, b, p, tax.History{})
	})
}

// TestWashSalePrefersAllowed: tx holds A at a loss (30 at 150) and at no
// gain (30 at 100), the Roth 10 A it bought ten days ago: 70 A and 28 B
// make 7000 + 1400 = 8400, of which stocks wants 5040: sell 19.6 A,
// rounded up to 20, and buy 40 B with the 2000 (39 to target; the polish
// spends the 50 left: 5000 / 3400 / 0 is nearer 60/40 than
// 5000 / 3350 / 50). Selling the 20 from the
// lot at a loss would lose 10 × 50 = 500 for good (the Roth's 10 replace
// them); the lot at no gain sells the same 20 A with no loss to
// disallow, and the plan picks it.
func TestWashSalePrefersAllowed(t *testing.T) {
	instruments := "  A: {sleeve: stocks}\n  B: {sleeve: bonds}"
	accounts := "  tx: {type: taxable}\n  roth: {type: roth_ira, may_hold: [A]}"
	h := tax.History{Buys: []tax.Trade{{Instrument: "A", Account: "roth", Date: tax.NewDate(2026, 11, 10), Quantity: d("10")}}}
	p := taxPlan(t, instruments, accounts, "tax: {}", `  tx:
    cash: "0"
    positions:
      B: "28"
      A:
        lots:
          - {quantity: "30", unit_cost: "150", acquired: 2025-01-10}
          - {quantity: "30", unit_cost: "100", acquired: 2025-01-10}
  roth: {cash: "0", positions: {A: "10"}}
`, h)
	wantOrders(t, p, "tx sell 20 A to_target", "tx buy 40 B to_target")
	if o := p.Orders[0]; o.WashSale != nil || len(o.Lots) != 1 || o.Lots[0].Lot != 1 {
		t.Errorf("sell: lots %+v, wash sale %+v; want lot 1 (no gain) and no wash sale", o.Lots, o.WashSale)
	}
	wantGains(t, p.Tax.Gains, "0", "0", "0", "0")
}

// wantWash checks a wash sale's amounts and replacements, written
// "account date quantity disallowed holding_from".
func wantWash(t *testing.T, w *tax.Wash, dis, added, perm string, repl ...string) {
	t.Helper()
	if w == nil {
		t.Fatalf("no wash sale, want %s disallowed", dis)
	}
	if !w.Disallowed.Equal(d(dis)) || !w.BasisAdded.Equal(d(added)) || !w.Permanent.Equal(d(perm)) {
		t.Errorf("wash sale %s/%s/%s, want %s/%s/%s", w.Disallowed, w.BasisAdded, w.Permanent, dis, added, perm)
	}
	if repl == nil {
		return
	}
	var got []string
	for _, r := range w.Replacements {
		got = append(got, fmt.Sprintf("%s %s %s %s %s", r.Account, r.Date, r.Quantity, r.Disallowed, r.HoldingFrom))
	}
	if fmt.Sprint(got) != fmt.Sprint(repl) {
		t.Errorf("replacements %q, want %q", got, repl)
	}
}
