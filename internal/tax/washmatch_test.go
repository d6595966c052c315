package tax_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// lossSale is a sale of q units of lot 0 (acquired on acquired, cost
// unit a unit) at price on 2026-11-20, in account tx.
func lossSale(t *testing.T, instrument, acquired, q, unit, price string) tax.LossSale {
	t.Helper()
	l, err := tax.NewLots([]tax.Lot{{Quantity: dec(q), Basis: dec(q).Mul(dec(unit)), Acquired: day(t, acquired)}})
	if err != nil {
		t.Fatal(err)
	}
	sel, err := l.Select(dec(q), dec(price), day(t, "2026-11-20"), tax.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return tax.LossSale{Account: "tx", Instrument: instrument, Class: "equity", Date: day(t, "2026-11-20"), Sales: sel.Sales}
}

// TestMatchKnownAnswers: the cases of issue 13, computed by hand. 16 VTI
// bought 2025-01-10 at 150 are sold on 2026-11-20 at 100: a long-term
// loss of 16 × 50 = 800.
func TestMatchKnownAnswers(t *testing.T) {
	buy := func(account, date, q string, advantaged bool) tax.Trade {
		return tax.Trade{Instrument: "VTI", Account: account, Date: day(t, date), Quantity: dec(q), TaxAdvantaged: advantaged}
	}
	tests := []struct {
		name      string
		purchases []tax.Trade
		// disallowed, basis added, permanent, allowed long-term loss
		dis, added, perm, allowed string
		// the replacements, as "account date quantity disallowed holding_from"
		repl []string
	}{
		// 10 shares × 50 = 500 disallowed and added to the basis of the 10
		// shares; the 16 sold were held 679 days (2025-01-10 to
		// 2026-11-20), so the 10 bought 2026-11-10 count from 2024-12-31.
		{"same account, 10 days before", []tax.Trade{buy("tx", "2026-11-10", "10", false)},
			"500", "500", "0", "300", []string{"tx 2026-11-10 10 500 2024-12-31"}},
		// A Roth purchase: the 500 is lost for good, no basis adjusted.
		{"roth, 10 days before", []tax.Trade{buy("roth", "2026-11-10", "10", true)},
			"500", "0", "500", "300", []string{"roth 2026-11-10 10 500 "}},
		// 30 days before and after are in; 31 are out.
		{"window ends", []tax.Trade{buy("tx", "2026-10-20", "3", false), buy("tx", "2026-10-21", "4", false),
			buy("ira", "2026-12-20", "5", true), buy("tx", "2026-12-21", "6", false)},
			"450", "200", "250", "350", []string{"tx 2026-10-21 4 200 2024-12-11", "ira 2026-12-20 5 250 "}},
		// Matched in order of purchase, whatever the order given; no more
		// than the 16 sold.
		{"order of purchase", []tax.Trade{buy("b", "2026-11-19", "10", false), buy("a", "2026-11-01", "10", false)},
			"800", "800", "0", "0", []string{"a 2026-11-01 10 500 2024-12-22", "b 2026-11-19 6 300 2025-01-09"}},
		// An unknown quantity replaces every share.
		{"unknown quantity", []tax.Trade{{Instrument: "VTI", Account: "roth", Date: day(t, "2026-11-10"), TaxAdvantaged: true}},
			"800", "0", "800", "0", []string{"roth 2026-11-10 16 800 "}},
		// A declared substitute is substantially identical; another
		// instrument is not.
		{"substitute group", []tax.Trade{{Instrument: "ITOT", Account: "tx", Date: day(t, "2026-11-10"), Quantity: dec("3")},
			{Instrument: "VXUS", Account: "tx", Date: day(t, "2026-11-10"), Quantity: dec("3")}},
			"150", "150", "0", "650", []string{"tx 2026-11-10 3 150 2024-12-31"}},
		// 1 share of 3 sold at a loss of 100 (33.333... a share): the
		// parts are rounded to cents on the running total.
	}
	w := tax.WashSale{SubstituteGroups: [][]string{{"VTI", "ITOT"}}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sales := []tax.LossSale{lossSale(t, "VTI", "2025-01-10", "16", "150", "100")}
			got := w.Match(tt.purchases, sales)[0]
			if !got.Disallowed.Equal(dec(tt.dis)) || !got.BasisAdded.Equal(dec(tt.added)) || !got.Permanent.Equal(dec(tt.perm)) {
				t.Errorf("wash = %s/%s/%s, want %s/%s/%s", got.Disallowed, got.BasisAdded, got.Permanent, tt.dis, tt.added, tt.perm)
			}
			var repl []string
			for _, r := range got.Replacements {
				repl = append(repl, fmt.Sprintf("%s %s %s %s %s", r.Account, r.Date, r.Quantity, r.Disallowed, r.HoldingFrom))
				if r.Permanent != r.HoldingFrom.IsZero() {
					t.Errorf("%+v: permanent and holding_from disagree", r)
				}
			}
			if fmt.Sprint(repl) != fmt.Sprint(tt.repl) {
				t.Errorf("replacements %q, want %q", repl, tt.repl)
			}
			g := tax.GainsOf(sales[0].Sales)
			if !g.LongTermLosses.Equal(dec(tt.allowed)) || !sales[0].Sales[0].Disallowed.Equal(dec(tt.dis)) {
				t.Errorf("allowed loss %s (lot disallowed %s), want %s", g.LongTermLosses, sales[0].Sales[0].Disallowed, tt.allowed)
			}
		})
	}
}

// TestMatchRounding: 3 units bought for 100 in all, sold at 0: a loss of
// 100, 33.333... a unit. Two purchases of 1 replace 2 units: 33.33 for
// the first (100 × 1/3 rounded), 33.34 for the second (100 × 2/3 = 66.67
// less 33.33); the third unit's 33.33 is allowed. Two sales share one
// purchase of 2: it replaces the first sale's unit and the second's
// first unit, in order.
func TestMatchRounding(t *testing.T) {
	sale := lossSale(t, "X", "2026-01-01", "3", "33.3333333333333333", "0.0000000001")
	sale.Sales[0].Basis, sale.Sales[0].Proceeds, sale.Sales[0].Gain = dec("100"), dec("0"), dec("-100")
	p := []tax.Trade{
		{Instrument: "X", Account: "a", Date: day(t, "2026-11-01"), Quantity: dec("1")},
		{Instrument: "X", Account: "a", Date: day(t, "2026-11-02"), Quantity: dec("1")},
	}
	got := tax.WashSale{}.Match(p, []tax.LossSale{sale})[0]
	if len(got.Replacements) != 2 || !got.Replacements[0].Disallowed.Equal(dec("33.33")) || !got.Replacements[1].Disallowed.Equal(dec("33.34")) {
		t.Errorf("replacements %+v", got.Replacements)
	}
	one := lossSale(t, "X", "2026-01-01", "1", "10", "5")
	two := lossSale(t, "X", "2026-02-01", "2", "10", "4")
	ws := tax.WashSale{}.Match([]tax.Trade{{Instrument: "X", Account: "a", Date: day(t, "2026-11-01"), Quantity: dec("2")}}, []tax.LossSale{one, two})
	if !ws[0].Disallowed.Equal(dec("5")) || !ws[1].Disallowed.Equal(dec("6")) {
		t.Errorf("two sales: %s and %s disallowed, want 5 and 6", ws[0].Disallowed, ws[1].Disallowed)
	}
	// Exempt classes and tax-advantaged sales are not checked.
	ex := lossSale(t, "X", "2026-01-01", "1", "10", "5")
	ex.Class = "crypto/btc"
	ira := lossSale(t, "X", "2026-01-01", "1", "10", "5")
	ira.TaxAdvantaged = true
	ws = tax.WashSale{Exempt: []string{"crypto"}}.Match(p, []tax.LossSale{ex, ira})
	if !ws[0].IsZero() || !ws[1].IsZero() {
		t.Errorf("exempt or tax-advantaged sale washed: %+v", ws)
	}
}

// TestMatchRandom generates loss sales in several accounts and purchases
// on both sides of them, in every account, and checks Match against a
// plain count: every share sold at a loss that some purchase within the
// window could replace, up to the purchases' shares, is disallowed; no
// share is replaced twice; disallowed amounts never exceed the loss and
// add up; and what GainsOf counts as allowed is the loss less what is
// disallowed.
func TestMatchRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 13))
	base := day(t, "2026-06-01")
	for c := 0; c < 300; c++ {
		w := tax.WashSale{Window: 30}
		var sales []tax.LossSale
		saleDay := base.AddDays(rng.IntN(60))
		for s := 0; s < 1+rng.IntN(3); s++ {
			var lots []tax.Lot
			for k := 0; k < 1+rng.IntN(3); k++ {
				lots = append(lots, tax.Lot{Quantity: decimal.NewFromInt(int64(1 + rng.IntN(20))),
					Basis: decimal.NewFromInt(int64(100 + rng.IntN(900))), Acquired: base.AddDays(-rng.IntN(400) - 1)})
			}
			l, _ := tax.NewLots(lots)
			sel, err := l.Select(l.Quantity(), decimal.NewFromInt(int64(1+rng.IntN(40))), saleDay, tax.Options{})
			if err != nil {
				t.Fatal(err)
			}
			sales = append(sales, tax.LossSale{Account: fmt.Sprint("acct", rng.IntN(3)), Instrument: "X", Class: "equity",
				Date: saleDay, Sales: sel.Sales})
		}
		var purchases []tax.Trade
		for k := 0; k < rng.IntN(6); k++ {
			sym := "X"
			if rng.IntN(4) == 0 {
				sym = "Y"
			}
			purchases = append(purchases, tax.Trade{Instrument: sym, Account: fmt.Sprint("acct", rng.IntN(4)),
				Date: saleDay.AddDays(rng.IntN(81) - 40), Quantity: decimal.NewFromInt(int64(1 + rng.IntN(15))), TaxAdvantaged: rng.IntN(2) == 0})
		}
		washes := w.Match(purchases, sales)
		// Replaceable shares: purchases of X within 30 days of the sale day.
		avail := decimal.Zero
		for _, p := range purchases {
			if p.Instrument == "X" && !p.Date.Before(saleDay.AddDays(-30)) && !p.Date.After(saleDay.AddDays(30)) {
				avail = avail.Add(p.Quantity)
			}
		}
		lossShares, replaced := decimal.Zero, decimal.Zero
		for n, ls := range sales {
			wsh := washes[n]
			sum, lot := decimal.Zero, map[int]decimal.Decimal{}
			for _, r := range wsh.Replacements {
				sum = sum.Add(r.Disallowed)
				replaced = replaced.Add(r.Quantity)
				lot[r.Lot] = lot[r.Lot].Add(r.Disallowed)
				if r.Instrument != "X" || r.Date.Before(saleDay.AddDays(-30)) || r.Date.After(saleDay.AddDays(30)) {
					t.Fatalf("case %d: replacement outside the rule: %+v", c, r)
				}
			}
			if !sum.Equal(wsh.Disallowed) || !wsh.BasisAdded.Add(wsh.Permanent).Equal(wsh.Disallowed) {
				t.Fatalf("case %d: amounts do not add up: %+v", c, wsh)
			}
			var loss decimal.Decimal
			for _, s := range ls.Sales {
				if s.Gain.Sign() < 0 {
					lossShares = lossShares.Add(s.Quantity)
					loss = loss.Add(s.Gain.Neg())
				}
				if s.Disallowed.Sign() < 0 || s.Disallowed.GreaterThan(decimal.Max(decimal.Zero, s.Gain.Neg())) || !s.Disallowed.Equal(lot[s.Lot]) {
					t.Fatalf("case %d: lot %+v disallowed, replacements give %s", c, s, lot[s.Lot])
				}
			}
			g := tax.GainsOf(ls.Sales)
			if !g.ShortTermLosses.Add(g.LongTermLosses).Add(wsh.Disallowed).Equal(loss) {
				t.Fatalf("case %d: allowed %+v + disallowed %s != loss %s", c, g, wsh.Disallowed, loss)
			}
		}
		// Every loss share that a purchase can replace is replaced: none
		// is reported as allowed while replacement shares are left.
		if want := decimal.Min(lossShares, avail); !replaced.Equal(want) {
			t.Fatalf("case %d: %s shares replaced, want min(%s loss shares, %s replaceable)", c, replaced, lossShares, avail)
		}
	}
}
