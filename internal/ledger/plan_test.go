package ledger

import (
	"strings"
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
)

const (
	planPolicy = `
policy: p
currency: USD
targets: {stocks: 60%, bonds: 40%, cash: 0%}
bands: {absolute: 5%}
rebalance: {trigger: threshold, destination: target, min_trade: "0"}
instruments:
  A: {sleeve: stocks}
  B: {sleeve: bonds}
accounts:
  tx: {type: taxable}
`
	// The holdings of plan's TestLotOrder, worked out there: 70 A (7000)
	// and 20 B (1000); 60/40 wants a sell of 22 A and a buy of 44 B.
	planHoldings = `as_of: 2026-11-20T21:00:00Z
accounts:
  tx:
    cash: "0"
    positions:
      B: "20"
      A:
        lots:
          - {quantity: "30", unit_cost: "95", acquired: 2026-06-01}
          - {quantity: "20", unit_cost: "60", acquired: 2023-01-01}
          - {quantity: "20", unit_cost: "120", acquired: 2024-01-01}
`
	planPrices = `as_of: 2026-11-20T21:00:00Z
prices: {A: "100", B: "50"}
`
)

// planFrom plans from the ledger's holdings as the daemon does: Holdings,
// Bind, drift, MakeWith with the ledger's trade history.
func planFrom(t *testing.T, l *Ledger, prices string, now time.Time) (*plan.Plan, *portfolio.Book) {
	t.Helper()
	p, err := policy.Parse("policy.yaml", []byte(planPolicy))
	if err != nil {
		t.Fatal(err)
	}
	q, err := portfolio.ParsePrices("prices.yaml", []byte(prices))
	if err != nil {
		t.Fatal(err)
	}
	b, err := portfolio.Bind(p, l.Holdings(), q)
	if err != nil {
		t.Fatal(err)
	}
	return plan.MakeWith(drift.Compute(b), plan.Options{History: l.TaxHistory(now)}), b
}

// TestPlanLotsThroughLedger: the lots of the holdings file reach the plan
// through the ledger; the plan's lot selection, recorded with SetLots, is
// what the fills sell; the loss sale it realizes reaches the next plan's
// wash-sale guard.
//
// The plan sells 22 A at 100: all of the lot at 120 (index 2, a loss),
// then 2 of the long-term lot at 60 (index 1, basis 120).
func TestPlanLotsThroughLedger(t *testing.T) {
	h, err := portfolio.ParseHoldings("holdings.yaml", []byte(planHoldings))
	if err != nil {
		t.Fatal(err)
	}
	l := New("p")
	l.SetBase(h.AsOf, "h", FromHoldings(h), h.AsOf)
	pl, b := planFrom(t, l, planPrices, t0)
	if b.Lots == nil || b.Lots[0][0].Len() != 3 {
		t.Fatalf("the book has no lots of A: %+v", b.Lots)
	}
	if len(pl.Orders) != 2 || pl.Orders[0].Side != plan.Sell || len(pl.Orders[0].Lots) != 2 {
		t.Fatalf("plan orders %+v", pl.Orders)
	}
	var orders []events.Order
	for _, o := range pl.Orders {
		orders = append(orders, events.Order{OrderID: o.ID, PlanID: pl.ID, Account: o.Account, Instrument: o.Instrument,
			Side: string(o.Side), Quantity: o.Quantity, Price: o.Price, ExpiresAt: t0.Add(time.Hour)})
	}
	l.AddOrders(orders, t0)
	for _, o := range pl.Orders {
		if err := l.SetLots(o.ID, o.Lots); err != nil {
			t.Fatal(err)
		}
	}
	l.MarkPublished([]string{orders[0].OrderID, orders[1].OrderID}, t0)
	at := t0.Add(time.Minute)
	sell, buy := orders[0].OrderID, orders[1].OrderID
	// The sell fills in two parts; the first ends inside the lot at 120.
	apply(t, l, fill("f1", sell, events.FillPartial, "15", "100", "0", at))
	wantLots(t, l, "A", "1:30/2850@2026-06-01 2:20/1200@2023-01-01 3:5/600@2024-01-01")
	apply(t, l, fill("f2", sell, events.FillFilled, "7", "100", "0", at))
	wantLots(t, l, "A", "1:30/2850@2026-06-01 2:18/1080@2023-01-01")
	apply(t, l, fill("f3", buy, events.FillFilled, "44", "50", "0", at))
	wantHistory(t, l.TaxHistory(at), "tx A 2026-11-20", "tx B 2026-11-20")

	// The sales' bases are the plan's: what the lots lost is what the
	// plan said it would sell.
	var planned []string
	for _, s := range pl.Orders[0].Lots {
		planned = append(planned, s.Quantity.String()+"/"+s.Basis.String())
	}
	if got := planned[0] + " " + planned[1]; got != "20/2400 2/120" {
		t.Errorf("planned sales %s", got)
	}

	// The loss sale of A is in the history the next plan gets. At 50 a
	// unit, A (48 x 50 = 2400) is under its 60% of 5600: the plan would
	// buy A back, but the wash-sale guard blocks it.
	next, _ := planFrom(t, l, strings.Replace(planPrices, `A: "100"`, `A: "50"`, 1), at)
	if next.Tax == nil || len(next.Tax.WashSale) != 1 || next.Tax.WashSale[0].Instrument != "A" {
		t.Fatalf("next plan: orders %+v, tax %+v", next.Orders, next.Tax)
	}
	for _, o := range next.Orders {
		if o.Instrument == "A" && o.Side == plan.Buy {
			t.Errorf("the next plan buys A back within the wash-sale window: %+v", o)
		}
	}
}
