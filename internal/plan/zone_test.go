package plan_test

import (
	"fmt"
	"testing"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/plan"
)

// TestTradeDateInvestorZone: a sale at 21:00 in New York on 2026-11-20
// (02:00 UTC on 2026-11-21) of a lot bought 2025-11-20 is short-term: the
// trade date is the investor's day, the anniversary, and the lot is
// long-term from 2026-11-21 (26 U.S.C. §1222: held more than one year).
// Counted in UTC, as before, it was called long-term. 70 A (7000) and 20 B
// (1000): 60/40 sells 22 A from the one lot, a gain of 22 x 40 = 880.
func TestTradeDateInvestorZone(t *testing.T) {
	for _, tc := range []struct {
		investor, want string
	}{
		{"investor: {time_zone: America/New_York}\n", "short"},
		{"investor: {time_zone: UTC}\n", "long"},
	} {
		pol := fmt.Sprintf(taxPolicy, "  A: {sleeve: stocks}\n  B: {sleeve: bonds}", "  tx: {type: taxable}", "") + tc.investor
		at := "as_of: 2026-11-21T02:00:00Z\n"
		b := book(t, pol, at+`accounts:
  tx:
    cash: "0"
    positions:
      B: "20"
      A:
        lots:
          - {quantity: "70", unit_cost: "60", acquired: 2025-11-20}
`, at+`prices: {A: "100", A2: "40", B: "50", B2: "25"}`)
		p := plan.MakeWith(drift.Compute(b), plan.Options{})
		wantOrders(t, p, "tx sell 22 A to_target", "tx buy 44 B to_target")
		g := p.Tax.Gains
		got := "long"
		if g.ShortTermGains.Sign() > 0 {
			got = "short"
		}
		if got != tc.want || !g.ShortTermGains.Add(g.LongTermGains).Equal(d("880")) {
			t.Errorf("%s: trade date %s, gains %+v; want %s-term 880", tc.investor, p.Tax.TradeDate, g, tc.want)
		}
	}
}
