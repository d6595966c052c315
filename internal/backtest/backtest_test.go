package backtest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/history"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
)

func loadPolicy(t testing.TB, path string) *policy.Policy {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse(path, data)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func loadHistory(t testing.TB, name string) *history.Series {
	t.Helper()
	path := filepath.Join("..", "..", "configs", "examples", "backtest", name)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := history.Read(path, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func cash(account string, amount string, at time.Time) *portfolio.Holdings {
	return &portfolio.Holdings{File: "initial", AsOf: at, Accounts: []portfolio.AccountHoldings{{Name: account, Cash: decimal.RequireFromString(amount)}}}
}

// TestAgainstPlainArithmetic replays 60/40 on the shipped 1975–2023
// history and checks buy-and-hold and annual rebalancing to target against
// the same strategies computed here by plain arithmetic on the prices,
// independently of the planner and the ledger.
func TestAgainstPlainArithmetic(t *testing.T) {
	pol := loadPolicy(t, "testdata/sixty-forty.yaml")
	h := loadHistory(t, "history-1975-2023.csv")
	start := h.Rows[0].Date
	cfg := Config{Policy: pol, Holdings: cash("taxable", "100000", start), History: h}
	col := map[string]int{}
	for i, n := range h.Instruments {
		col[n] = i
	}
	eq, bd := col["SPX-TR"], col["UST10-TR"]
	w := decimal.RequireFromString("0.6")

	// Buy and hold: 60,000 in equities and 40,000 in bonds at the first
	// prices, held to the end.
	first, last := h.Rows[0], h.Rows[len(h.Rows)-1]
	units := func(amount decimal.Decimal, price decimal.Decimal) decimal.Decimal { return amount.DivRound(price, 20) }
	qe, qb := units(decimal.NewFromInt(60000), first.Prices[eq]), units(decimal.NewFromInt(40000), first.Prices[bd])
	wantHold := qe.Mul(last.Prices[eq]).Add(qb.Mul(last.Prices[bd]))

	// Annual: back to 60/40 of the whole value every 1 January.
	for _, r := range h.Rows[1:] {
		if r.Date.Month() != time.January {
			continue
		}
		total := qe.Mul(r.Prices[eq]).Add(qb.Mul(r.Prices[bd]))
		qe = units(total.Mul(w), r.Prices[eq])
		qb = units(total.Sub(total.Mul(w)), r.Prices[bd])
	}
	wantAnnual := qe.Mul(last.Prices[eq]).Add(qb.Mul(last.Prices[bd]))

	for _, c := range []struct {
		v    Variant
		want decimal.Decimal
		reb  int
	}{
		{Compared[0], wantHold, 1},
		{AsWritten, wantAnnual, 1 + 48},
		{Compared[3], wantAnnual, 1 + 48},
	} {
		r, err := Run(cfg, c.v)
		if err != nil {
			t.Fatal(err)
		}
		got := r.Points[len(r.Points)-1].Value
		// Whole steps of 0.000001 units leave at most a few dollars of
		// cash uninvested at each rebalance: 0.01% allows for that.
		if diff := got.Sub(c.want).Abs().DivRound(c.want, 10); diff.GreaterThan(decimal.RequireFromString("0.0001")) {
			t.Errorf("%s: final value %s, plain arithmetic gives %s (off by %s)", c.v.Name, got.StringFixed(2), c.want.StringFixed(2), diff)
		}
		if r.Rebalances != c.reb {
			t.Errorf("%s: %d rebalances, want %d", c.v.Name, r.Rebalances, c.reb)
		}
		t.Logf("%s: final %s (arithmetic %s), %d rebalances, %d orders, %d rejected, %d unresolved", c.v.Name, got.StringFixed(2), c.want.StringFixed(2), r.Rebalances, r.Orders, r.Rejected, r.Unresolved)
	}
}
