package plan_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// taxPolicy is twoSleeves with room for instruments, a tax block and an
// asset location: A and A2 fill stocks (60%), B and B2 bonds (40%).
const taxPolicy = `
policy: tax
currency: USD
targets: {stocks: 60%%, bonds: 40%%, cash: 0%%}
bands: {absolute: 5%%}
rebalance: {trigger: threshold, destination: target, min_trade: "0"}
instruments:
%s
accounts:
%s
%s
`

const taxPrices = stamp + `prices: {A: "100", A2: "40", B: "50", B2: "25"}`

var taxDate = tax.NewDate(2026, 11, 20)

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// taxPlan plans the documents with history h, checking the invariants of
// every plan and of tax-aware plans.
func taxPlan(t *testing.T, instruments, accounts, rules, holdings string, h tax.History) *plan.Plan {
	t.Helper()
	b := book(t, fmt.Sprintf(taxPolicy, instruments, accounts, rules), stamp+"accounts:\n"+holdings, taxPrices)
	p := plan.MakeWith(drift.Compute(b), plan.Options{History: h})
	checkInvariants(t, b, p)
	checkTax(t, b, p, h)
	return p
}

func wantOrders(t *testing.T, p *plan.Plan, want ...string) {
	t.Helper()
	var got []string
	for _, o := range p.Orders {
		got = append(got, orderLine(o)+" "+string(o.Rule))
	}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("orders:\n got %q\nwant %q", got, want)
	}
}

func wantGains(t *testing.T, g tax.Gains, stg, stl, ltg, ltl string) {
	t.Helper()
	if want := (tax.Gains{ShortTermGains: d(stg), ShortTermLosses: d(stl), LongTermGains: d(ltg), LongTermLosses: d(ltl)}); !sameGains(g, want) {
		t.Errorf("gains = %+v, want %+v", g, want)
	}
}

// sameGains reports whether g and h hold equal amounts, field by field.
func sameGains(g, h tax.Gains) bool {
	return g.ShortTermGains.Equal(h.ShortTermGains) && g.ShortTermLosses.Equal(h.ShortTermLosses) &&
		g.LongTermGains.Equal(h.LongTermGains) && g.LongTermLosses.Equal(h.LongTermLosses)
}

// TestLotOrder: losses first, then long-term gains, then short-term gains,
// whatever the unit costs. 70 A (7000) + 20 B (1000) = 8000; 60/40 wants
// 4800/3200: sell 22 A, buy 44 B. The lot at 120 (a loss of 20 a unit,
// long-term) goes whole: 20; then 2 of the long-term lot at 60 (a gain of
// 40 a unit), not the short-term lot at 95 that highest-cost-first would
// pick. Gains: long-term 2 x 40 = 80, losses 20 x 20 = 400, net -320.
func TestLotOrder(t *testing.T) {
	p := taxPlan(t, "  A: {sleeve: stocks}\n  B: {sleeve: bonds}", "  tx: {type: taxable}", "", `  tx:
    cash: "0"
    positions:
      B: "20"
      A:
        lots:
          - {quantity: "30", unit_cost: "95", acquired: 2026-06-01}
          - {quantity: "20", unit_cost: "60", acquired: 2023-01-01}
          - {quantity: "20", unit_cost: "120", acquired: 2024-01-01}
`, tax.History{})
	wantOrders(t, p, "tx sell 22 A to_target", "tx buy 44 B to_target")
	sell := p.Orders[0]
	if len(sell.Lots) != 2 || sell.Lots[0].Lot != 2 || !sell.Lots[0].Quantity.Equal(d("20")) ||
		sell.Lots[1].Lot != 1 || !sell.Lots[1].Quantity.Equal(d("2")) || !sell.Lots[1].Basis.Equal(d("120")) {
		t.Errorf("lots = %+v", sell.Lots)
	}
	wantGains(t, p.Tax.Gains, "0", "0", "80", "400")
	if !p.Tax.Net.Equal(d("-320")) || p.Tax.TradeDate != taxDate || len(p.Unresolved) != 0 {
		t.Errorf("tax = %+v, unresolved %+v", p.Tax, p.Unresolved)
	}
}

// heldBackHoldings: 10 A at a long-term loss and 60 at a short-term gain
// of 5 a unit, acquired 2025-12-01 (long-term from 2026-12-02).
const heldBackHoldings = `  tx:
    cash: "0"
    positions:
      B: "20"
      A:
        lots:
          - {quantity: "10", unit_cost: "120", acquired: 2024-01-01}
          - {quantity: "60", unit_cost: "95", acquired: 2025-12-01}
`

// TestShortTermBlocked: the plan wants to sell 22 A as above; only the 10
// at a loss may go, the other 12 would realize a short-term gain, which
// the policy blocks. Sell 10 A (1000), buy 20 B; stocks stays at
// 6000 / 8000 = 75% and the plan says why.
func TestShortTermBlocked(t *testing.T) {
	p := taxPlan(t, "  A: {sleeve: stocks}\n  B: {sleeve: bonds}", "  tx: {type: taxable}", "tax: {short_term_gains: block}", heldBackHoldings, tax.History{})
	wantOrders(t, p, "tx sell 10 A to_target", "tx buy 20 B to_target")
	wantGains(t, p.Tax.Gains, "0", "0", "0", "200")
	// bonds, short by what stocks could not sell, is listed too.
	wantUnresolved(t, p,
		"stocks 0.75: 1200.00 USD of A could not be sold: in tx, 12 of 22 not sold: 12 would realize short-term gains, which the policy blocks",
		// bonds, short by what stocks could not sell, is listed too.
		"bonds 0.25: no account that may hold B has free cash left above its reserve")
	if h := p.Tax.HeldBack; len(h) != 1 || h[0].Account != "tx" || h[0].Instrument != "A" || !h[0].Quantity.Equal(d("12")) {
		t.Errorf("held back = %+v", h)
	}
}

// TestWaitLongTerm: the same lots without the block but with a wait of 30
// days: the short-term lot turns long-term on 2026-12-02, 12 days after
// the trade date, so its 12 wait.
func TestWaitLongTerm(t *testing.T) {
	p := taxPlan(t, "  A: {sleeve: stocks}\n  B: {sleeve: bonds}", "  tx: {type: taxable}", "tax: {wait_long_term_days: 30}", heldBackHoldings, tax.History{})
	wantOrders(t, p, "tx sell 10 A to_target", "tx buy 20 B to_target")
	wantUnresolved(t, p,
		"stocks 0.75: 1200.00 USD of A could not be sold: in tx, 12 of 22 not sold: 12 waits until 2026-12-02, when the lots at a short-term gain that would sell it turn long-term",
		"bonds 0.25: no account that may hold B has free cash left above its reserve")
	// A wait of 12 days reaches 2026-12-02 too; 11 does not: the lot is
	// sold at its short-term gain, 12 x 5 = 60.
	p = taxPlan(t, "  A: {sleeve: stocks}\n  B: {sleeve: bonds}", "  tx: {type: taxable}", "tax: {wait_long_term_days: 11}", heldBackHoldings, tax.History{})
	wantOrders(t, p, "tx sell 22 A to_target", "tx buy 44 B to_target")
	wantGains(t, p.Tax.Gains, "60", "0", "0", "200")
}

// TestWashSaleMovesBuy: bonds is B and B2 half and half. 70 A + 20 B in
// an IRA: sell 22 A; bonds wants 3200, 1600 each: buy 600 of B and 1600
// of B2. B was sold at a loss in the taxable account ten days ago, so the
// guard blocks it (through 2026-12-10) and its 600 go to B2: 2200 / 25 =
// 88 B2. With the bonds sleeve exempt, B is bought as usual.
func TestWashSaleMovesBuy(t *testing.T) {
	instruments := "  A: {sleeve: stocks}\n  B: {sleeve: bonds}\n  B2: {sleeve: bonds}"
	accounts := "  ira: {type: traditional_ira}\n  tx: {type: taxable}"
	holdings := `  ira: {cash: "0", positions: {A: "70", B: "20"}}` + "\n" + `  tx: {cash: "0"}`
	h := tax.History{LossSales: []tax.Trade{{Instrument: "B", Account: "tx", Date: tax.NewDate(2026, 11, 10)}}}
	p := taxPlan(t, instruments, accounts, "tax: {}", holdings, h)
	wantOrders(t, p, "ira sell 22 A to_target", "ira buy 88 B2 to_target")
	if w := p.Tax.WashSale; len(w) != 1 || w[0].Instrument != "B" || strings.Join(w[0].MovedTo, ",") != "B2" ||
		!strings.Contains(w[0].Reason, "blocked through 2026-12-10") {
		t.Errorf("wash sale = %+v", w)
	}
	p = taxPlan(t, instruments, accounts, "tax: {wash_sale: {exempt: [bonds]}}", holdings, h)
	wantOrders(t, p, "ira sell 22 A to_target", "ira buy 12 B to_target", "ira buy 64 B2 to_target")

	// With B alone in bonds, the sleeve stays short and says why.
	p = taxPlan(t, "  A: {sleeve: stocks}\n  B: {sleeve: bonds}", accounts, "tax: {}", holdings, h)
	wantUnresolved(t, p,
		"stocks 0.8375: selling more of A would push another sleeve out of its band, make the largest deviation larger, or trade against another order of the plan",
		"bonds 0.125: no instrument of the sleeve may be bought: wash-sale guard: B traded in account tx on 2026-11-10; blocked through 2026-12-10")
}

// TestHarvest: the household is on target (60 A = 6000, 80 B = 4000), so
// nothing rebalances. A's lot of 30 at 150 is at a loss of 30 x 50 = 1500,
// above min_loss 1000; the lot at 50 is at a gain. Harvest sells the 30 A
// (3000) and buys A2, A's substitute in stocks, with the proceeds: 3000 /
// 40 = 75 A2. Stocks keeps its 60%.
//
// The next plan, with the harvest's loss sale in the history and A2 held,
// keeps A2: buying A back is blocked, and A's share goes to its
// substitute, which the plan therefore does not sell.
func TestHarvest(t *testing.T) {
	instruments := "  A: {sleeve: stocks, share: 100%}\n  A2: {sleeve: stocks, share: 0%}\n  B: {sleeve: bonds}"
	rules := `tax: {harvest: {enabled: true, min_loss: "1000", substitutes: {A: A2}}}`
	p := taxPlan(t, instruments, "  tx: {type: taxable}", rules, `  tx:
    cash: "0"
    positions:
      B: "80"
      A:
        lots:
          - {quantity: "30", unit_cost: "150", acquired: 2024-01-01}
          - {quantity: "30", unit_cost: "50", acquired: 2024-01-01}
`, tax.History{})
	wantOrders(t, p, "tx sell 30 A harvest", "tx buy 75 A2 harvest")
	wantGains(t, p.Tax.Gains, "0", "0", "0", "1500")
	if !p.Sleeves[0].WeightAfter.Equal(d("0.6")) || len(p.Unresolved) != 0 {
		t.Errorf("stocks after = %s, unresolved %+v", p.Sleeves[0].WeightAfter, p.Unresolved)
	}

	h := tax.History{LossSales: []tax.Trade{{Instrument: "A", Account: "tx", Date: taxDate}}}
	p = taxPlan(t, instruments, "  tx: {type: taxable}", rules, `  tx:
    cash: "0"
    positions:
      B: "80"
      A2: "75"
      A:
        lots:
          - {quantity: "30", unit_cost: "50", acquired: 2024-01-01}
`, h)
	wantOrders(t, p)
	if w := p.Tax.WashSale; len(w) != 1 || strings.Join(w[0].MovedTo, ",") != "A2" {
		t.Errorf("wash sale = %+v", w)
	}
}

// TestAssetLocation: 30 A + 20 B and 2000 of free cash in each of two
// IRAs, cash target 0%: 8000 in all wants 4800 A (buy 1800) and 3200 B
// (buy 2200). Without a location the first account's cash buys A first:
// ira 18 A and 4 B, roth 40 B. With stocks located in roth and bonds in
// ira, roth buys the A and ira 2000 of B; roth's last 200 buy B.
func TestAssetLocation(t *testing.T) {
	instruments := "  A: {sleeve: stocks}\n  B: {sleeve: bonds}"
	accounts := "  ira: {type: traditional_ira}\n  roth: {type: roth_ira}"
	holdings := `  ira: {cash: "2000", positions: {A: "30"}}` + "\n" + `  roth: {cash: "2000", positions: {B: "20"}}`
	p := taxPlan(t, instruments, accounts, "", holdings, tax.History{})
	wantOrders(t, p, "ira buy 18 A to_target", "ira buy 4 B to_target", "roth buy 40 B to_target")
	if p.Tax != nil {
		t.Errorf("a plan without tax block or lots has a tax report: %+v", p.Tax)
	}
	p = taxPlan(t, instruments, accounts, "asset_location: {stocks: [roth], bonds: [traditional_ira]}", holdings, tax.History{})
	wantOrders(t, p, "ira buy 40 B to_target", "roth buy 18 A to_target", "roth buy 4 B to_target")
}

// TestRelocationLoss: the IRA may hold only A and has the cash; the
// taxable account holds A at a loss and must buy B. Relocating A (IRA
// buys A, taxable sells it at a loss) would be a wash sale: the plan
// keeps A from relocating, B stays short, and both say why.
func TestRelocationLoss(t *testing.T) {
	p := taxPlan(t, "  A: {sleeve: stocks}\n  B: {sleeve: bonds}", "  ira: {type: traditional_ira, may_hold: [A]}\n  tx: {type: taxable}", "", `  ira: {cash: "4000"}
  tx:
    cash: "0"
    positions:
      A:
        lots:
          - {quantity: "60", unit_cost: "110", acquired: 2024-01-01}
`, tax.History{})
	wantOrders(t, p)
	if n := p.Tax.NotRelocated; len(n) != 1 || n[0].Instrument != "A" || !strings.Contains(n[0].Reason, "tx would sell A at a loss while ira buys A") {
		t.Errorf("not relocated = %+v", n)
	}
	wantUnresolved(t, p,
		"bonds 0: 4000.00 USD of B could not be bought: no account that may hold it has free cash or sale proceeds left",
		"cash 0.4: the free cash left (in ira) may not buy B (may_hold), and the accounts that may hold it have none above their reserve")
}

// checkTax verifies what every tax-aware plan guarantees:
//   - each sell in a taxable account of a position with lots names lots
//     that sum to its quantity, with the gains they realize, and none of
//     them held back by the options; other sells name none;
//   - a taxable sell without lots is marked, and listed, basis unknown;
//   - the plan's gains are the sum of its orders';
//   - no buy lies within the wash-sale window of a loss sale of the
//     history or of the plan;
//   - a harvest sells at a loss and buys the substitute in the same
//     account for no more than the proceeds.
func checkTax(t testing.TB, b *portfolio.Book, p *plan.Plan, h tax.History) {
	t.Helper()
	pol := b.Policy
	if p.Tax == nil {
		if pol.Tax != nil || b.Lots != nil {
			t.Errorf("tax-aware plan without a tax report")
		}
		return
	}
	var opts tax.Options
	if pol.Tax != nil {
		opts = pol.Tax.Options
	}
	date := p.Tax.TradeDate
	total := tax.Gains{}
	unknown := map[string]bool{}
	losses := append([]tax.Trade(nil), h.LossSales...)
	for _, o := range p.Orders {
		a, _ := pol.AccountIndex(o.Account)
		i, _ := pol.InstrumentIndex(o.Instrument)
		taxable := !pol.Accounts[a].Type.TaxAdvantaged()
		hasLots := b.Lots != nil && b.Lots[a][i].Len() > 0
		if o.Side == plan.Buy || !taxable {
			if o.Lots != nil || !o.Gains.IsZero() || o.BasisUnknown {
				t.Errorf("%s: lots, gains or basis_unknown on a buy or a tax-advantaged sell", orderLine(o))
			}
			continue
		}
		if !hasLots {
			if !o.BasisUnknown {
				t.Errorf("%s: no lots, yet not basis_unknown", orderLine(o))
			}
			unknown[o.Account+"/"+o.Instrument] = true
			continue
		}
		sum := decimal.Zero
		for _, s := range o.Lots {
			sum = sum.Add(s.Quantity)
			lot := b.Lots[a][i].Lot(s.Lot)
			ltFrom := tax.LongTermFrom(lot.Acquired)
			stGain := !s.LongTerm && s.Gain.Sign() > 0
			if stGain && opts.ShortTermGains == tax.ShortTermBlock {
				t.Errorf("%s sells lot %d at a short-term gain, which the policy blocks", orderLine(o), s.Lot)
			}
			if stGain && opts.WaitLongTermDays > 0 && !date.AddDays(opts.WaitLongTermDays).Before(ltFrom) {
				t.Errorf("%s sells lot %d, long-term from %s, within the wait", orderLine(o), s.Lot, ltFrom)
			}
			if s.Quantity.GreaterThan(lot.Quantity) || s.LongTerm != tax.IsLongTerm(lot.Acquired, date) {
				t.Errorf("%s: sale %+v of lot %+v", orderLine(o), s, lot)
			}
		}
		if !sum.Equal(o.Quantity) {
			t.Errorf("%s: lots sum to %s", orderLine(o), sum)
		}
		if g := tax.GainsOf(o.Lots); !sameGains(g, o.Gains) {
			t.Errorf("%s: gains %+v, lots realize %+v", orderLine(o), o.Gains, g)
		}
		total = total.Add(o.Gains)
		if atLoss(o) {
			losses = append(losses, tax.Trade{Instrument: o.Instrument, Account: o.Account, Date: date})
		}
		if o.Rule == plan.RuleHarvest && o.Gains.Net().Sign() >= 0 {
			t.Errorf("%s: a harvest that realizes no loss", orderLine(o))
		}
	}
	if !sameGains(total, p.Tax.Gains) || !total.Net().Equal(p.Tax.Net) {
		t.Errorf("plan gains %+v, orders sum to %+v", p.Tax.Gains, total)
	}
	if len(unknown) != len(p.Tax.BasisUnknown) {
		t.Errorf("basis unknown %v, want %v", p.Tax.BasisUnknown, unknown)
	}
	all := tax.History{LossSales: losses}
	for _, o := range p.Orders {
		i, _ := pol.InstrumentIndex(o.Instrument)
		if o.Side != plan.Buy {
			continue
		}
		if wb := opts.WashSale.CheckBuy(all, tax.Buy{Instrument: o.Instrument, Class: pol.Sleeves[pol.Instruments[i].Sleeve].Path, Date: date}); wb.Blocked {
			t.Errorf("%s: %s", orderLine(o), wb.Reason())
		}
		if o.Rule == plan.RuleHarvest {
			var sold decimal.Decimal
			for _, s := range p.Orders {
				if s.Rule == plan.RuleHarvest && s.Side == plan.Sell && s.Account == o.Account && opts.Harvest.Substitutes[s.Instrument] == o.Instrument {
					sold = sold.Add(s.Notional)
				}
			}
			if o.Notional.GreaterThan(sold) {
				t.Errorf("%s: harvest buy of %s for proceeds of %s", orderLine(o), o.Notional, sold)
			}
		}
	}
}

// atLoss reports whether sell o sells some lot at a loss.
func atLoss(o plan.Order) bool {
	for _, s := range o.Lots {
		if s.Gain.Sign() < 0 {
			return true
		}
	}
	return false
}

// TestAssetLocationOfSales: buys paid for by sales follow the asset
// location too. ira and roth (both tax-advantaged, ira first in the order
// of sales) hold 40 A each (4000 + 4000) and roth 40 B (2000), no cash:
// 10000 in all wants 6000 A (sell 20 A) and 4000 B (buy 40 B). Without a
// location the first account sells: ira sells 20 A and buys 40 B with the
// proceeds. With bonds located in roth, roth sells the 20 A and buys the
// 40 B; the household trades the same, so the allocation is the same.
func TestAssetLocationOfSales(t *testing.T) {
	instruments := "  A: {sleeve: stocks}\n  B: {sleeve: bonds}"
	accounts := "  ira: {type: traditional_ira}\n  roth: {type: roth_ira}"
	holdings := `  ira: {cash: "0", positions: {A: "40"}}` + "\n" + `  roth: {cash: "0", positions: {A: "40", B: "40"}}`
	p := taxPlan(t, instruments, accounts, "", holdings, tax.History{})
	wantOrders(t, p, "ira sell 20 A to_target", "ira buy 40 B to_target")
	p = taxPlan(t, instruments, accounts, "asset_location: {bonds: [roth]}", holdings, tax.History{})
	wantOrders(t, p, "roth sell 20 A to_target", "roth buy 40 B to_target")
	// Located in ira, where the sale is already: nothing moves.
	p = taxPlan(t, instruments, accounts, "asset_location: {bonds: [ira]}", holdings, tax.History{})
	wantOrders(t, p, "ira sell 20 A to_target", "ira buy 40 B to_target")
	// A taxable account preferred for bonds does not take a sale from a
	// tax-advantaged one: sales stay tax-advantaged first.
	accounts = "  ira: {type: traditional_ira}\n  tx: {type: taxable}"
	holdings = `  ira: {cash: "0", positions: {A: "40"}}` + "\n" + `  tx: {cash: "0", positions: {A: "40", B: "40"}}`
	p = taxPlan(t, instruments, accounts, "asset_location: {bonds: [tx]}", holdings, tax.History{})
	wantOrders(t, p, "ira sell 20 A to_target", "ira buy 40 B to_target")
}

// TestLossKeptInOtherAccount: a sale whose loss the wash-sale rule would
// lose for good moves to another account holding the same instrument when
// the allocation stays the same. A and B at 100 and 50; tx1 holds 20 A
// bought 2025-01-10 at 150 and 10 B, tx2 20 A bought 2020-01-01 at 90
// and 10 B: 5000 in all wants 3000 A (sell 10) and 2000 B (buy 20). tx1,
// first in the order of sales, would sell 10 A at a loss of 500, which
// the Roth's purchase of 20 A ten days before disallows for good
// (Rev. Rul. 2008-5). tx2 sells them instead, at a long-term gain of 10 x
// 10 = 100, less than the 500 saved, and buys the 20 B with the proceeds;
// tx1's loss stays in its lots.
func TestLossKeptInOtherAccount(t *testing.T) {
	instruments := "  A: {sleeve: stocks}\n  B: {sleeve: bonds}"
	accounts := "  tx1: {type: taxable}\n  tx2: {type: taxable}\n  roth: {type: roth_ira, may_hold: [A]}"
	holdings := `  tx1:
    cash: "0"
    positions:
      A: {lots: [{quantity: "20", unit_cost: "150", acquired: 2025-01-10}]}
      B: {lots: [{quantity: "10", unit_cost: "50", acquired: 2025-01-10}]}
  tx2:
    cash: "0"
    positions:
      A: {lots: [{quantity: "20", unit_cost: "90", acquired: 2020-01-01}]}
      B: {lots: [{quantity: "10", unit_cost: "50", acquired: 2025-01-10}]}
  roth: {cash: "0"}`
	prices := stamp + `prices: {A: "100", A2: "40", B: "50", B2: "25"}`
	plan1 := func(h tax.History) *plan.Plan {
		b := book(t, fmt.Sprintf(taxPolicy, instruments, accounts, "tax: {}"), stamp+"accounts:\n"+holdings, prices)
		p := plan.MakeWith(drift.Compute(b), plan.Options{History: h})
		checkInvariants(t, b, p)
		checkTax(t, b, p, h)
		return p
	}
	// Without the Roth's purchase tx1 sells at an allowed loss.
	p := plan1(tax.History{})
	wantOrders(t, p, "tx1 sell 10 A to_target", "tx1 buy 20 B to_target")
	wantGains(t, p.Tax.Gains, "0", "0", "0", "500")
	h := tax.History{Buys: []tax.Trade{{Instrument: "A", Account: "roth", Date: taxDate.AddDays(-10), Quantity: d("20")}}}
	p = plan1(h)
	wantOrders(t, p, "tx2 sell 10 A to_target", "tx2 buy 20 B to_target")
	wantGains(t, p.Tax.Gains, "0", "0", "100", "0")
	if p.Tax.Disallowed != nil {
		t.Errorf("disallowed %+v, want none", p.Tax.Disallowed)
	}
}

// wantUnresolved checks p's unresolved entries, exactly and in order, each
// written "SLEEVE WEIGHT_AFTER: REASON".
func wantUnresolved(t *testing.T, p *plan.Plan, want ...string) {
	t.Helper()
	got := make([]string, len(p.Unresolved))
	for k, u := range p.Unresolved {
		got[k] = fmt.Sprintf("%s %s: %s", u.Sleeve, u.WeightAfter, u.Reason)
	}
	if !slices.Equal(got, want) {
		t.Errorf("unresolved:\n got %q\nwant %q", got, want)
	}
}

// TestZeroGainLotPart: a lot bought at today's price (1092 X at 51.12 a
// unit, short-term) is at no gain, so short_term_gains: block does not
// hold it back, and the part the plan sells must not realize a gain
// either. 435.626 X raise 22,269.20112, whose share of the lot's basis,
// 22,269.20112 too, rounded half to even to cents, was 22,269.20: a
// short-term gain of 0.00112 that the policy blocks (TestRandomPortfolios
// seeds 41417 and 50996 at -cases 100000). The part's basis is now
// rounded up to 22,269.21: a loss of 0.00888.
func TestZeroGainLotPart(t *testing.T) {
	b := book(t, `policy: zero-gain
currency: USD
targets: {stocks: 60%, bonds: 40%, cash: 0%}
bands: {absolute: 5%}
rebalance: {trigger: threshold, destination: target, min_trade: "0"}
instruments:
  X: {sleeve: stocks, step: "0.001"}
  B: {sleeve: bonds, step: "0.001"}
accounts:
  tx: {type: taxable}
tax: {short_term_gains: block}
`, stamp+`accounts:
  tx:
    cash: "0"
    positions:
      B: "2"
      X: {lots: [{quantity: "1092", cost_basis: "55823.04", acquired: 2026-08-19}]}
`, stamp+`prices: {X: "51.12", B: "50"}`)
	p := plan.MakeWith(drift.Compute(b), plan.Options{})
	checkInvariants(t, b, p)
	checkTax(t, b, p, tax.History{})
	wantOrders(t, p, "tx sell 435.626 X to_target", "tx buy 445.384 B to_target")
	if sell := p.Orders[0]; len(sell.Lots) != 1 || !sell.Lots[0].Basis.Equal(d("22269.21")) || !sell.Lots[0].Gain.Equal(d("-0.00888")) {
		t.Errorf("lots = %+v", sell.Lots)
	}
	wantGains(t, p.Tax.Gains, "0", "0.00888", "0", "0")
}
