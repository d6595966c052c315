package engine

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/feeds"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
)

// TestAtPricesCountsUnreferencedPositions: a position whose instrument has
// no reference price (added since the last accepted valuation) is valued
// at nothing in the reference, so that its first quote is a move the
// valuation check weighs. Before, it kept its value on both sides, and a
// first quote 100 times the real price passed unchecked (from a review).
func TestAtPricesCountsUnreferencedPositions(t *testing.T) {
	now := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
	d := decimal.RequireFromString
	l := ledger.New("p")
	l.Accounts["tx"] = &ledger.Account{Cash: d("1000"), Positions: map[string]decimal.Decimal{"A": d("10"), "X": d("5")}}
	rt := &runtime{ledger: l, guard: &priceGuard{Guard: feeds.NewGuard(time.Hour, d("0.5"), 5*time.Minute)}}
	for sym, price := range map[string]string{"A": "110", "X": "9000"} { // X: 100 times its real 90
		if v := rt.guard.Offer(feeds.Quote{Symbol: sym, Price: d(price), At: now, Source: "test"}, now); v != feeds.Accepted {
			t.Fatalf("%s: %v", sym, v)
		}
	}
	total := d("1000").Add(d("1100")).Add(d("45000")) // cash, A, X at the quotes
	got := rt.atPrices(total, map[string]decimal.Decimal{"A": d("100")})
	// At the reference: cash 1000, A at 100 (1000), X at nothing.
	if want := d("2000"); !got.Equal(want) {
		t.Fatalf("at reference prices %s, want %s", got, want)
	}
}
