package ledger

import (
	"fmt"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// Lot is a tax lot of a position in the ledger. Its JSON form is
// {"id", "quantity", "cost_basis", "acquired"}, the date as YYYY-MM-DD.
type Lot struct {
	// ID names the lot within its position, for the lot selections of
	// sell orders (LotSale). IDs are positive and unique in a position.
	ID int `json:"id"`
	// Quantity is positive.
	Quantity decimal.Decimal `json:"quantity"`
	// Basis is the total cost basis of Quantity: not negative.
	Basis decimal.Decimal `json:"cost_basis"`
	// Acquired is the trade date of the purchase.
	Acquired tax.Date `json:"acquired"`
	// HoldingFrom, when set, is the date the lot's holding period counts
	// from: a wash sale's replacement in a taxable account counts from its
	// purchase moved back by the days the shares sold at a loss were held
	// (see bookWash).
	HoldingFrom tax.Date `json:"holding_from,omitzero"`
	// WashBasis is the part of Basis that is a loss the wash-sale rule
	// disallowed and added to this replacement lot.
	WashBasis decimal.Decimal `json:"wash_sale_basis,omitzero"`
	// Replacement says the lot's shares replace shares sold at a loss (a
	// booked wash sale): they replace no other.
	Replacement bool `json:"wash_sale_replacement,omitempty"`
}

// HeldFrom returns the date the lot's holding period counts from:
// HoldingFrom when set, else Acquired.
func (l Lot) HeldFrom() tax.Date {
	if !l.HoldingFrom.IsZero() {
		return l.HoldingFrom
	}
	return l.Acquired
}

// LotSale is one lot of a sell order's lot selection: the plan chose to
// sell Quantity of the lot with ID Lot, acquired on Acquired. Fills
// consume a selection in order; Quantity is what is still to sell.
type LotSale struct {
	Lot      int             `json:"lot"`
	Acquired tax.Date        `json:"acquired"`
	Quantity decimal.Decimal `json:"quantity"`
}

// toTax returns lots as tax lots, in the same order.
func toTax(lots []Lot) []tax.Lot {
	out := make([]tax.Lot, len(lots))
	for i, l := range lots {
		out[i] = tax.Lot{Quantity: l.Quantity, Basis: l.Basis, Acquired: l.Acquired, HoldingFrom: l.HoldingFrom, Replacement: l.Replacement}
	}
	return out
}

// fromTax returns tax lots as ledger lots numbered 1, 2, ... in order.
func fromTax(l tax.Lots) []Lot {
	out := make([]Lot, l.Len())
	for i := range out {
		t := l.Lot(i)
		out[i] = Lot{ID: i + 1, Quantity: t.Quantity, Basis: t.Basis, Acquired: t.Acquired, HoldingFrom: t.HoldingFrom, Replacement: t.Replacement}
	}
	return out
}

// sumLots returns the total quantity of lots.
func sumLots(lots []Lot) decimal.Decimal {
	sum := decimal.Zero
	for _, l := range lots {
		sum = sum.Add(l.Quantity)
	}
	return sum
}

// checkLots reports the first inconsistency of a position's lots: every
// lot needs a unique positive ID, a positive quantity, a basis that is not
// negative and a date, and the quantities must add up to quantity.
func checkLots(lots []Lot, quantity decimal.Decimal) error {
	ids := make(map[int]bool, len(lots))
	for i, l := range lots {
		switch {
		case l.ID <= 0 || ids[l.ID]:
			return fmt.Errorf("lot %d: id %d is not positive or not unique", i, l.ID)
		case l.Quantity.Sign() <= 0:
			return fmt.Errorf("lot %d: quantity must be positive, got %s", l.ID, l.Quantity)
		case l.Basis.Sign() < 0:
			return fmt.Errorf("lot %d: cost basis must not be negative, got %s", l.ID, l.Basis)
		case l.Acquired.IsZero():
			return fmt.Errorf("lot %d: acquisition date is missing", l.ID)
		case l.HoldingFrom.After(l.Acquired):
			return fmt.Errorf("lot %d: holding period from %s, after the acquisition on %s", l.ID, l.HoldingFrom, l.Acquired)
		case l.WashBasis.Sign() < 0 || l.WashBasis.GreaterThan(l.Basis):
			return fmt.Errorf("lot %d: wash-sale basis %s is negative or above the basis %s", l.ID, l.WashBasis, l.Basis)
		}
		ids[l.ID] = true
	}
	if sum := sumLots(lots); !sum.Equal(quantity) {
		return fmt.Errorf("the lots add up to %s, the position is %s", sum, quantity)
	}
	return nil
}

// SetLots records the plan's lot selection for the sell order id: sales
// are plan.Order.Lots, their Lot indices into the position's lots in the
// order Holdings returned them (so call it before the ledger changes,
// right after AddOrders). A fill of the order sells those lots in order,
// and what the selection does not cover in the tax package's order (see
// ApplyFill). It checks each sale against the lots (the acquisition date,
// a quantity within the lot's) and that the sales do not add up to more
// than the order's quantity; on an error nothing is recorded. No sales
// clears the selection.
func (l *Ledger) SetLots(id string, sales []tax.Sale) error {
	o, ok := l.Order(id)
	if !ok {
		return fmt.Errorf("lots for order %s: %w", id, ErrUnknownOrder)
	}
	if len(sales) == 0 {
		o.Lots = nil
		return nil
	}
	if o.Side != "sell" {
		return fmt.Errorf("lots for order %s: a %s order sells no lots", id, o.Side)
	}
	var lots []Lot
	if acc := l.Accounts[o.Account]; acc != nil {
		lots = acc.Lots[o.Instrument]
	}
	sel := make([]LotSale, len(sales))
	used := make(map[int]bool, len(sales))
	total := decimal.Zero
	for k, s := range sales {
		if s.Lot < 0 || s.Lot >= len(lots) {
			return fmt.Errorf("lots for order %s: lot %d of %s in %s does not exist (%d lots)", id, s.Lot, o.Instrument, o.Account, len(lots))
		}
		lot := lots[s.Lot]
		switch {
		case used[s.Lot]:
			return fmt.Errorf("lots for order %s: lot %d chosen twice", id, s.Lot)
		case lot.Acquired != s.Acquired:
			return fmt.Errorf("lots for order %s: lot %d of %s in %s was acquired on %s, the plan says %s", id, s.Lot, o.Instrument, o.Account, lot.Acquired, s.Acquired)
		case s.Quantity.Sign() <= 0 || s.Quantity.GreaterThan(lot.Quantity):
			return fmt.Errorf("lots for order %s: sells %s of lot %d of %s in %s, which holds %s", id, s.Quantity, s.Lot, o.Instrument, o.Account, lot.Quantity)
		}
		used[s.Lot] = true
		total = total.Add(s.Quantity)
		sel[k] = LotSale{Lot: lot.ID, Acquired: lot.Acquired, Quantity: s.Quantity}
	}
	if total.GreaterThan(o.Quantity) {
		return fmt.Errorf("lots for order %s: the lots sell %s, the order %s", id, total, o.Quantity)
	}
	o.Lots = sel
	return nil
}

// soldPart is the part of one lot that a sell fill sold.
type soldPart struct {
	quantity, basis decimal.Decimal
	lot             Lot // the lot it came from, as it was (ID, dates)
}

// sale is what a sell fill does to a position's lots.
type sale struct {
	lots  []Lot     // the lots left
	sel   []LotSale // the order's selection left
	parts []soldPart
}

// sellLots sells quantity (positive) at price (positive) on date from
// lots, whose quantities add up to at least quantity: first the lots of
// the selection sel, in order (an entry whose lot is gone or was acquired
// on another day is dropped), then the rest in the order of tax.Lots.Select
// with default options. A lot sold in part keeps its basis less the basis
// of the part sold, which Select computes (rounded to cents), so that
// the total basis is kept exactly. lots and sel are not modified.
func sellLots(lots []Lot, sel []LotSale, quantity, price decimal.Decimal, date tax.Date) (sale, error) {
	s := sale{lots: append([]Lot(nil), lots...)}
	need := quantity
	for _, c := range sel {
		if need.Sign() == 0 {
			s.sel = append(s.sel, c)
			continue
		}
		i := lotIndex(s.lots, c.Lot)
		if i < 0 || s.lots[i].Acquired != c.Acquired {
			continue // stale: sold otherwise, or replaced by a snapshot
		}
		q := decimal.Min(need, c.Quantity, s.lots[i].Quantity)
		part, err := s.take(i, q, price, date)
		if err != nil {
			return sale{}, err
		}
		s.parts = append(s.parts, part)
		need = need.Sub(q)
		if c.Quantity = c.Quantity.Sub(q); c.Quantity.Sign() > 0 {
			s.sel = append(s.sel, c)
		}
	}
	if need.Sign() == 0 {
		return s, nil
	}
	tl, err := tax.NewLots(toTax(s.lots))
	if err != nil {
		return sale{}, err
	}
	chosen, err := tl.Select(need, price, date, tax.Options{})
	if err != nil {
		return sale{}, err
	}
	if chosen.Missing.Sign() > 0 {
		return sale{}, fmt.Errorf("the lots hold %s less than the %s sold", chosen.Missing, quantity)
	}
	left := make([]Lot, 0, len(s.lots))
	sold := make(map[int]tax.Sale, len(chosen.Sales))
	for _, x := range chosen.Sales {
		sold[x.Lot] = x
		s.parts = append(s.parts, soldPart{x.Quantity, x.Basis, s.lots[x.Lot]})
	}
	for i, lot := range s.lots {
		if x, ok := sold[i]; ok {
			lot.shrink(x.Quantity, x.Basis)
		}
		if lot.Quantity.Sign() > 0 {
			left = append(left, lot)
		}
	}
	s.lots = left
	return s, nil
}

// take sells q of lot i (0 < q <= its quantity): the whole lot with its
// basis, or a part with the basis tax.Lots.Select gives it.
func (s *sale) take(i int, q, price decimal.Decimal, date tax.Date) (soldPart, error) {
	lot := s.lots[i]
	if q.Equal(lot.Quantity) {
		s.lots = append(s.lots[:i], s.lots[i+1:]...)
		return soldPart{q, lot.Basis, lot}, nil
	}
	one, err := tax.SelectLots(toTax([]Lot{lot}), q, price, date, tax.Options{})
	if err != nil {
		return soldPart{}, err
	}
	basis := one.Sales[0].Basis
	s.lots[i].shrink(q, basis)
	return soldPart{q, basis, lot}, nil
}

// shrink takes q (less than the lot's quantity) and its basis out of the
// lot. The part of the basis that is a disallowed loss (WashBasis) is
// prorated to what stays, rounded half to even to cents, at most the
// basis left.
func (l *Lot) shrink(q, basis decimal.Decimal) {
	was := l.Quantity
	l.Quantity, l.Basis = l.Quantity.Sub(q), l.Basis.Sub(basis)
	if l.WashBasis.Sign() > 0 && l.Quantity.Sign() > 0 {
		l.WashBasis = decimal.Min(tax.QuoHalfEven(l.WashBasis.Mul(l.Quantity), was, tax.BasisPlaces), l.Basis)
	}
}

// atLoss reports whether the sale realizes a loss on some lot: whether a
// part's basis exceeds its share of the proceeds, quantity × price less
// fees, shared by quantity. With the part's quantity p and basis b, the
// fill's quantity Q: b > p × (Q × price − fees) / Q, compared exactly as
// b × Q > p × (Q × price − fees).
func (s *sale) atLoss(quantity, price, fees decimal.Decimal) bool {
	net := quantity.Mul(price).Sub(fees)
	for _, p := range s.parts {
		if p.basis.Mul(quantity).GreaterThan(p.quantity.Mul(net)) {
			return true
		}
	}
	return false
}

// lotIndex returns the index of the lot with the given ID, or -1.
func lotIndex(lots []Lot, id int) int {
	for i := range lots {
		if lots[i].ID == id {
			return i
		}
	}
	return -1
}

// nextLotID returns an ID for a new lot: one more than the largest.
func nextLotID(lots []Lot) int {
	id := 0
	for _, l := range lots {
		id = max(id, l.ID)
	}
	return id + 1
}
