package tax_test

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"sort"
	"strings"
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

// oracleKey names the shares of one sold lot that one purchase replaces.
type oracleKey struct{ sale, lot, purchase int }

// oracleMatch is a brute-force wash-sale matcher, written apart from
// WashSale.Match to check it: it walks every share sold at a loss, one by
// one (sales in order, a sale's lots by acquisition date then lot index),
// and gives it the first share still free among the purchases sorted by
// date (then as given) that is of the same or a substantially identical
// instrument and within the window of the sale's class; a purchase of
// unknown quantity has shares without end. It returns the shares matched
// per (sale, lot, purchase) and the order in which the pairs were first
// matched.
func oracleMatch(w tax.WashSale, window func(class string) (int, bool), same func(a, b string) bool,
	purchases []tax.Trade, sales []tax.LossSale) (map[oracleKey]int64, []oracleKey) {
	free := make([]int64, len(purchases))
	byDate := make([]int, len(purchases))
	for k, p := range purchases {
		free[k], byDate[k] = p.Quantity.IntPart(), k
		if p.Quantity.Sign() == 0 {
			free[k] = -1 // unknown: never runs out
		}
	}
	sort.SliceStable(byDate, func(x, y int) bool { return purchases[byDate[x]].Date.Before(purchases[byDate[y]].Date) })
	got := map[oracleKey]int64{}
	var order []oracleKey
	for s, ls := range sales {
		days, exempt := window(ls.Class)
		if ls.TaxAdvantaged || exempt {
			continue
		}
		var lots []int
		for k, x := range ls.Sales {
			if x.Gain.Sign() < 0 && x.Quantity.Sign() > 0 {
				lots = append(lots, k)
			}
		}
		sort.SliceStable(lots, func(x, y int) bool {
			a, b := ls.Sales[lots[x]], ls.Sales[lots[y]]
			if a.Acquired != b.Acquired {
				return a.Acquired.Before(b.Acquired)
			}
			return a.Lot < b.Lot
		})
		for _, k := range lots {
			for share := int64(0); share < ls.Sales[k].Quantity.IntPart(); share++ {
				for _, x := range byDate {
					p := purchases[x]
					gap := ls.Date.DaysUntil(p.Date)
					if free[x] == 0 || gap < -days || gap > days || !same(p.Instrument, ls.Instrument) {
						continue
					}
					if free[x] > 0 {
						free[x]--
					}
					key := oracleKey{s, ls.Sales[k].Lot, x}
					if got[key] == 0 {
						order = append(order, key)
					}
					got[key]++
					break
				}
			}
		}
	}
	return got, order
}

// repl is a replacement as TestMatchRandom compares it.
type repl struct {
	qty, dis decimal.Decimal
	perm     bool
	from     tax.Date
}

func (r repl) String() string {
	return fmt.Sprintf("{%s shares, %s disallowed, permanent %t, from %s}", r.qty, r.dis, r.perm, r.from)
}

// centsHalfEven rounds the fraction n/d to cents, half to even, with
// math/big (not the decimal arithmetic Match uses).
func centsHalfEven(r *big.Rat) decimal.Decimal {
	c := new(big.Rat).Mul(r, big.NewRat(100, 1))
	q, m := new(big.Int).QuoRem(c.Num(), c.Denom(), new(big.Int)) // c >= 0
	switch twice := new(big.Int).Mul(m, big.NewInt(2)); twice.Cmp(c.Denom()) {
	case 1:
		q.Add(q, big.NewInt(1))
	case 0:
		if q.Bit(0) == 1 {
			q.Add(q, big.NewInt(1))
		}
	}
	return decimal.NewFromBigInt(q, -2)
}

// TestMatchRandom generates loss sales on several days, in several
// accounts (some tax-advantaged) and classes (one exempt, one with its own
// window), of instruments some of which are substantially identical, and
// purchases on both sides of them in every account, some of unknown
// quantity, and compares WashSale.Match exactly with oracleMatch: the
// shares each purchase replaces of each lot, the loss disallowed (the
// lot's loss x shares matched / shares sold, rounded half to even to cents
// on the running total), its treatment (permanent when the purchase is
// tax-advantaged, else basis added and the holding period moved back by
// the days the sold shares were held). It also checks, from Match's answer
// alone, that no loss is reported allowed while a purchase that could
// replace it has shares left, and that allowed plus disallowed is the
// loss.
func TestMatchRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 13))
	base := day(t, "2026-06-01")
	w := tax.WashSale{Window: 30, Windows: map[string]int{"equity/intl": 10}, Exempt: []string{"crypto"},
		SubstituteGroups: [][]string{{"X", "Z"}}}
	window := func(class string) (int, bool) {
		switch {
		case strings.HasPrefix(class, "crypto"):
			return 0, true
		case strings.HasPrefix(class, "equity/intl"):
			return 10, false
		}
		return 30, false
	}
	same := func(a, b string) bool { return a == b || (a == "X" || a == "Z") && (b == "X" || b == "Z") }
	syms := []string{"X", "Y", "Z"}
	classes := []string{"equity", "equity/intl", "crypto/btc"}
	disallowedSome := 0
	for c := 0; c < 3000; c++ {
		var sales []tax.LossSale
		for s := 0; s < 1+rng.IntN(4); s++ {
			saleDay := base.AddDays(rng.IntN(60))
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
			sales = append(sales, tax.LossSale{Account: fmt.Sprint("acct", rng.IntN(3)), Instrument: syms[rng.IntN(3)],
				Class: classes[rng.IntN(3)], Date: saleDay, TaxAdvantaged: rng.IntN(6) == 0, Sales: sel.Sales})
		}
		var purchases []tax.Trade
		for k := 0; k < rng.IntN(8); k++ {
			q := decimal.NewFromInt(int64(1 + rng.IntN(15)))
			if rng.IntN(15) == 0 {
				q = decimal.Decimal{} // unknown
			}
			near := sales[rng.IntN(len(sales))].Date
			purchases = append(purchases, tax.Trade{Instrument: syms[rng.IntN(3)], Account: fmt.Sprint("acct", rng.IntN(4)),
				Date: near.AddDays(rng.IntN(81) - 40), Quantity: q, TaxAdvantaged: rng.IntN(2) == 0})
		}
		washes := w.Match(purchases, sales)
		want, order := oracleMatch(w, window, same, purchases, sales)

		// The oracle's replacements, amounts included, in its order.
		wantR := map[oracleKey]repl{}
		matched := map[[2]int]int64{} // (sale, lot) -> shares so far
		done := map[[2]int]decimal.Decimal{}
		for _, key := range order {
			ls := sales[key.sale]
			var sale tax.Sale
			for _, x := range ls.Sales {
				if x.Lot == key.lot {
					sale = x
				}
			}
			sl := [2]int{key.sale, key.lot}
			matched[sl] += want[key]
			upTo := sale.Gain.Neg()
			if matched[sl] < sale.Quantity.IntPart() {
				upTo = centsHalfEven(new(big.Rat).Mul(new(big.Rat).SetFrac(sale.Gain.Neg().Coefficient(), big.NewInt(1)),
					big.NewRat(matched[sl], sale.Quantity.IntPart())))
				if sale.Gain.Exponent() != 0 {
					t.Fatalf("case %d: a loss with decimals: %s", c, sale.Gain)
				}
			}
			p := purchases[key.purchase]
			r := repl{qty: decimal.NewFromInt(want[key]), dis: upTo.Sub(done[sl]), perm: p.TaxAdvantaged}
			if !p.TaxAdvantaged {
				r.from = p.Date.AddDays(-sale.Acquired.DaysUntil(ls.Date))
			}
			done[sl] = upTo
			wantR[key] = r
		}
		gotR := map[oracleKey]repl{}
		used := make([]decimal.Decimal, len(purchases))
		for s, wsh := range washes {
			sum := decimal.Zero
			for _, r := range wsh.Replacements {
				key := oracleKey{s, r.Lot, r.Purchase}
				if _, dup := gotR[key]; dup {
					t.Fatalf("case %d: lot %d of sale %d replaced twice by purchase %d", c, r.Lot, s, r.Purchase)
				}
				gotR[key] = repl{qty: r.Quantity, dis: r.Disallowed, perm: r.Permanent, from: r.HoldingFrom}
				used[r.Purchase] = used[r.Purchase].Add(r.Quantity)
				sum = sum.Add(r.Disallowed)
				if p := purchases[r.Purchase]; p.Account != r.Account || p.Instrument != r.Instrument || p.Date != r.Date {
					t.Fatalf("case %d: replacement %+v names another purchase than %+v", c, r, p)
				}
			}
			if !sum.Equal(wsh.Disallowed) || !wsh.BasisAdded.Add(wsh.Permanent).Equal(wsh.Disallowed) {
				t.Fatalf("case %d: amounts do not add up: %+v", c, wsh)
			}
		}
		if len(gotR) != len(wantR) {
			t.Fatalf("case %d: Match gives %d replacements, the oracle %d:\n got %v\nwant %v", c, len(gotR), len(wantR), gotR, wantR)
		}
		for key, wr := range wantR {
			gr, ok := gotR[key]
			if !ok || !gr.qty.Equal(wr.qty) || !gr.dis.Equal(wr.dis) || gr.perm != wr.perm || gr.from != wr.from {
				t.Fatalf("case %d: %+v: Match %s, oracle %s", c, key, gr, wr)
			}
		}
		if len(wantR) > 0 {
			disallowedSome++
		}
		// No loss is reported allowed while a purchase that could
		// replace it has shares left, and allowed + disallowed = loss.
		for s, ls := range sales {
			days, exempt := window(ls.Class)
			var loss decimal.Decimal
			for _, x := range ls.Sales {
				if x.Gain.Sign() >= 0 {
					continue
				}
				loss = loss.Add(x.Gain.Neg())
				if !x.Disallowed.Equal(done[[2]int{s, x.Lot}]) {
					t.Fatalf("case %d: lot %d of sale %d: %s disallowed, the oracle %s", c, x.Lot, s, x.Disallowed, done[[2]int{s, x.Lot}])
				}
				if ls.TaxAdvantaged || exempt || x.Disallowed.Equal(x.Gain.Neg()) {
					continue
				}
				for k, p := range purchases {
					gap := ls.Date.DaysUntil(p.Date)
					if gap >= -days && gap <= days && same(p.Instrument, ls.Instrument) && (p.Quantity.Sign() == 0 || used[k].LessThan(p.Quantity)) {
						t.Fatalf("case %d: lot %+v of sale %d keeps a loss allowed while purchase %+v has shares left", c, x, s, p)
					}
				}
			}
			g := tax.GainsOf(ls.Sales)
			if !g.ShortTermLosses.Add(g.LongTermLosses).Add(washes[s].Disallowed).Equal(loss) {
				t.Fatalf("case %d: allowed %+v + disallowed %s != loss %s", c, g, washes[s].Disallowed, loss)
			}
		}
	}
	if disallowedSome < 500 {
		t.Errorf("only %d of 3000 cases disallow anything: the generator does not test the rule", disallowedSome)
	}
}
