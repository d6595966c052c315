package tax_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// randomCase draws lots, a price, a quantity to sell, a sale date and
// options. Amounts have up to 4 decimals (quantities) and 2 (bases,
// prices); unit costs cluster around the price so that every category
// and ties occur; dates spread over three years before the sale, with
// some lots near their long-term boundary.
func randomCase(r *rand.Rand) ([]tax.Lot, decimal.Decimal, decimal.Decimal, tax.Date, tax.Options) {
	date := tax.NewDate(2026, 1, 1).AddDays(r.IntN(730))
	price := decimal.New(int64(1+r.IntN(20000)), -2)
	n := r.IntN(40)
	lots := make([]tax.Lot, n)
	held := decimal.Zero
	for i := range lots {
		q := decimal.New(int64(1+r.IntN(50000)), -int32(r.IntN(5)))
		var unit decimal.Decimal
		switch r.IntN(4) {
		case 0:
			unit = price // no gain
		case 1:
			unit = decimal.New(int64(r.IntN(3)), 0).Add(price) // ties
		default:
			unit = price.Mul(decimal.New(int64(r.IntN(200)), -2)).Round(2) // 0 to 2 × price
		}
		basis := unit.Mul(q).Round(2)
		if r.IntN(5) == 0 {
			basis = basis.Add(decimal.New(int64(r.IntN(100)), -4)) // sub-cent bases
		}
		acq := date.AddDays(-r.IntN(3 * 365))
		if r.IntN(4) == 0 { // near the long-term boundary
			acq = date.AddDays(-365 + r.IntN(30) - 15)
		}
		lots[i] = tax.Lot{Quantity: q, Basis: basis, Acquired: acq}
		held = held.Add(q)
	}
	qty := held.Mul(decimal.New(int64(r.IntN(130)), -2)).Truncate(4)
	var opts tax.Options
	if r.IntN(2) == 0 {
		opts.ShortTermGains = tax.ShortTermBlock
	}
	if r.IntN(2) == 0 {
		opts.WaitLongTermDays = r.IntN(60)
	}
	return lots, qty, price, date, opts
}

// oracleCategory ranks a lot as the documented order of sale does, from
// first principles: 0 loss or no gain, 1 long-term gain, 2 short-term gain
// that may be sold, 3 held back (waiting or blocked).
func oracleCategory(l tax.Lot, price decimal.Decimal, date tax.Date, opts tax.Options) int {
	switch {
	case l.Basis.GreaterThanOrEqual(l.Quantity.Mul(price)):
		return 0
	case tax.IsLongTerm(l.Acquired, date):
		return 1
	case opts.WaitLongTermDays > 0 && tax.IsLongTerm(l.Acquired, date.AddDays(opts.WaitLongTermDays)):
		return 3
	case opts.ShortTermGains == tax.ShortTermBlock:
		return 3
	}
	return 2
}

// cmpUnitCost compares the unit costs of a and b exactly.
func cmpUnitCost(a, b tax.Lot) int { return a.Basis.Mul(b.Quantity).Cmp(b.Basis.Mul(a.Quantity)) }

func TestSelectProperties(t *testing.T) {
	for seed := uint64(1); seed <= 3000; seed++ {
		r := rand.New(rand.NewPCG(seed, 0x7a8))
		lots, qty, price, date, opts := randomCase(r)
		l, err := tax.NewLots(lots)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		s, err := l.Select(qty, price, date, opts)
		if err == nil {
			err = checkSelection(lots, l, s, qty, price, date, opts)
		}
		if err == nil {
			err = checkSellable(l, price, date, opts)
		}
		if err != nil {
			t.Fatalf("seed %d: %v\nlots %+v\nsell %s at %s on %s, %+v", seed, err, lots, qty, price, date, opts)
		}
	}
}

// cent is the unit a split lot's basis is rounded to (tax.BasisPlaces).
var cent = decimal.New(1, -tax.BasisPlaces)

// checkSelection checks selection s of lots (prepared as l), made to sell
// qty at price on date under opts, against the documented rules.
func checkSelection(lots []tax.Lot, l tax.Lots, s tax.Selection, qty, price decimal.Decimal, date tax.Date, opts tax.Options) error {
	// Quantities: requested = sold + waiting + blocked + missing, none
	// negative, and sold is the sum of the sales.
	if !s.Requested.Equal(qty) || !s.Sold.Add(s.Waiting).Add(s.Blocked).Add(s.Missing).Equal(qty) {
		return fmt.Errorf("requested %s != sold %s + waiting %s + blocked %s + missing %s", qty, s.Sold, s.Waiting, s.Blocked, s.Missing)
	}
	for _, d := range []decimal.Decimal{s.Sold, s.Waiting, s.Blocked, s.Missing} {
		if d.Sign() < 0 {
			return fmt.Errorf("negative figure in %+v", s)
		}
	}
	sum, basisSold := decimal.Zero, decimal.Zero
	seen := map[int]bool{}
	lastCat := -1
	var prev *tax.Sale
	for k, sale := range s.Sales {
		lot := lots[sale.Lot]
		if seen[sale.Lot] {
			return fmt.Errorf("lot %d sold twice", sale.Lot)
		}
		seen[sale.Lot] = true
		sum = sum.Add(sale.Quantity)
		basisSold = basisSold.Add(sale.Basis)
		whole := sale.Quantity.Equal(lot.Quantity)
		switch {
		case sale.Quantity.Sign() <= 0 || sale.Quantity.GreaterThan(lot.Quantity):
			return fmt.Errorf("sale %d: quantity %s of a lot of %s", k, sale.Quantity, lot.Quantity)
		case !whole && k != len(s.Sales)-1:
			return fmt.Errorf("sale %d splits lot %d but is not the last", k, sale.Lot)
		case whole && !sale.Basis.Equal(lot.Basis):
			return fmt.Errorf("sale %d: whole lot with basis %s, lot has %s", k, sale.Basis, lot.Basis)
		case !whole && (sale.Basis.Sign() < 0 || sale.Basis.GreaterThan(lot.Basis)):
			return fmt.Errorf("sale %d: split basis %s outside [0, %s]", k, sale.Basis, lot.Basis)
		// A split lot's basis is within a cent of its share of the lot's
		// (or the whole basis, its cap), and a lot at no gain at price
		// sells no part at a gain: rounding never makes a gain the order
		// of sale (and short_term_gains: block) did not see.
		case !whole && !sale.Basis.Equal(lot.Basis) &&
			sale.Basis.Mul(lot.Quantity).Sub(lot.Basis.Mul(sale.Quantity)).Abs().GreaterThanOrEqual(cent.Mul(lot.Quantity)):
			return fmt.Errorf("sale %d: split basis %s a cent or more from %s x %s / %s", k, sale.Basis, lot.Basis, sale.Quantity, lot.Quantity)
		case sale.Gain.Sign() > 0 && oracleCategory(lot, price, date, opts) == 0:
			return fmt.Errorf("sale %d: gain %s from lot %d, which is at no gain", k, sale.Gain, sale.Lot)
		case !sale.Proceeds.Equal(sale.Quantity.Mul(price)) || !sale.Gain.Equal(sale.Proceeds.Sub(sale.Basis)):
			return fmt.Errorf("sale %d: proceeds %s gain %s", k, sale.Proceeds, sale.Gain)
		case sale.LongTerm != tax.IsLongTerm(lot.Acquired, date) || sale.Acquired != lot.Acquired:
			return fmt.Errorf("sale %d: long-term %v", k, sale.LongTerm)
		}
		// Categories in order; within one, unit costs do not increase
		// (largest loss first, smallest gain first).
		cat := oracleCategory(lot, price, date, opts)
		if cat == 3 {
			return fmt.Errorf("sale %d sells lot %d, which the options hold back", k, sale.Lot)
		}
		if cat < lastCat || cat == lastCat && cmpUnitCost(lots[prev.Lot], lot) < 0 {
			return fmt.Errorf("sale %d (category %d) out of order after category %d", k, cat, lastCat)
		}
		lastCat, prev = cat, &s.Sales[k]
	}
	if !sum.Equal(s.Sold) {
		return fmt.Errorf("sales add up to %s, Sold is %s", sum, s.Sold)
	}
	if !equalGains(s.Gains, tax.GainsOf(s.Sales)) {
		return fmt.Errorf("gains %+v are not those of the sales", s.Gains)
	}
	// Greedy: a lot of a category before the last one sold, or of any
	// sellable category when something is left unsold, is sold whole.
	unsold := s.Unsold().Sign() > 0
	held := decimal.Zero
	for i, lot := range lots {
		cat := oracleCategory(lot, price, date, opts)
		if cat == 3 {
			held = held.Add(lot.Quantity)
			continue
		}
		if (cat < lastCat || unsold) && !seen[i] {
			return fmt.Errorf("lot %d (category %d) unsold while later lots sell or quantity is left", i, cat)
		}
	}
	// Nothing is missing while held-back lots could cover it.
	if s.Missing.Sign() > 0 && !s.Waiting.Add(s.Blocked).Equal(held) {
		return fmt.Errorf("missing %s while only %s of %s held back is counted", s.Missing, s.Waiting.Add(s.Blocked), held)
	}
	if s.Waiting.Sign() > 0 && (!s.WaitUntil.After(date) || s.WaitUntil.After(date.AddDays(opts.WaitLongTermDays))) {
		return fmt.Errorf("wait until %s, sale on %s with a %d-day wait", s.WaitUntil, date, opts.WaitLongTermDays)
	}
	// Conservation: what was sold and what remains make the lots again.
	totalQ, totalB := decimal.Zero, decimal.Zero
	for _, lot := range lots {
		totalQ, totalB = totalQ.Add(lot.Quantity), totalB.Add(lot.Basis)
	}
	restQ, restB := decimal.Zero, decimal.Zero
	for _, lot := range l.Remaining(&s) {
		if lot.Quantity.Sign() <= 0 || lot.Basis.Sign() < 0 {
			return fmt.Errorf("remaining lot %+v", lot)
		}
		restQ, restB = restQ.Add(lot.Quantity), restB.Add(lot.Basis)
	}
	if !restQ.Add(s.Sold).Equal(totalQ) || !restB.Add(basisSold).Equal(totalB) {
		return fmt.Errorf("remaining %s/%s + sold %s/%s != lots %s/%s", restQ, restB, s.Sold, basisSold, totalQ, totalB)
	}
	return nil
}

// checkSellable checks that Sellable is what selling everything sells.
func checkSellable(l tax.Lots, price decimal.Decimal, date tax.Date, opts tax.Options) error {
	all, err := l.Select(l.Quantity(), price, date, opts)
	if err != nil {
		return err
	}
	sellable, err := l.Sellable(price, date, opts)
	if err != nil || !sellable.Equal(all.Sold) {
		return fmt.Errorf("Sellable = %s, %v; selling everything sells %s", sellable, err, all.Sold)
	}
	return nil
}

func equalGains(a, b tax.Gains) bool {
	return a.ShortTermGains.Equal(b.ShortTermGains) && a.ShortTermLosses.Equal(b.ShortTermLosses) &&
		a.LongTermGains.Equal(b.LongTermGains) && a.LongTermLosses.Equal(b.LongTermLosses)
}

// TestPropertyCheckFails makes sure checkSelection can fail: selections
// with two sales swapped, a basis moved by a cent, or a lot held back
// that could have been sold are refused.
func TestPropertyCheckFails(t *testing.T) {
	swapped, shifted, short := 0, 0, 0
	for seed := uint64(1); seed <= 300; seed++ {
		r := rand.New(rand.NewPCG(seed, 2))
		lots, _, price, date, _ := randomCase(r)
		l, err := tax.NewLots(lots)
		if err != nil {
			t.Fatal(err)
		}
		var opts tax.Options
		s, err := l.Select(l.Quantity(), price, date, opts)
		if err != nil || checkSelection(lots, l, s, l.Quantity(), price, date, opts) != nil {
			t.Fatalf("seed %d: the unmodified selection fails: %v", seed, err)
		}
		if len(s.Sales) < 2 {
			continue
		}
		bad := s
		bad.Sales = append([]tax.Sale(nil), s.Sales...)
		bad.Sales[0], bad.Sales[1] = bad.Sales[1], bad.Sales[0]
		if cmpUnitCost(lots[bad.Sales[0].Lot], lots[bad.Sales[1].Lot]) != 0 {
			swapped++
			if checkSelection(lots, l, bad, l.Quantity(), price, date, opts) == nil {
				t.Fatalf("seed %d: swapped sales pass", seed)
			}
		}
		bad.Sales = append([]tax.Sale(nil), s.Sales...)
		bad.Sales[0].Basis = bad.Sales[0].Basis.Add(decimal.New(1, -2))
		bad.Sales[0].Gain = bad.Sales[0].Proceeds.Sub(bad.Sales[0].Basis)
		bad.Gains = tax.GainsOf(bad.Sales)
		shifted++
		if checkSelection(lots, l, bad, l.Quantity(), price, date, opts) == nil {
			t.Fatalf("seed %d: a basis off by a cent passes", seed)
		}
		// Drop the last sale and call its quantity missing.
		bad = s
		last := s.Sales[len(s.Sales)-1]
		bad.Sales = s.Sales[:len(s.Sales)-1]
		bad.Sold, bad.Missing = s.Sold.Sub(last.Quantity), last.Quantity
		bad.Gains = tax.GainsOf(bad.Sales)
		short++
		if checkSelection(lots, l, bad, l.Quantity(), price, date, opts) == nil {
			t.Fatalf("seed %d: an unsold sellable lot passes", seed)
		}
	}
	if swapped < 50 || shifted < 50 || short < 50 {
		t.Fatalf("too few mutations tried: %d %d %d", swapped, shifted, short)
	}
}
