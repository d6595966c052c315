// Package tax is the tax-aware core of rebalancing in taxable accounts:
// tax lots and their holding period, the choice of lots to sell, the gains
// and losses a sale realizes, the wash-sale guard on buys and tax-loss
// harvesting candidates.
//
// Everything here is a pure function of its arguments: no I/O and no clock
// (dates are passed in), and money is exact decimal arithmetic with the one
// rounding Lots.Select documents.
package tax

import (
	"fmt"
	"sort"
	"strings"

	"github.com/shopspring/decimal"
)

// BasisPlaces is the number of decimal places (cents) to which the cost
// basis of the sold part of a split lot is rounded.
const BasisPlaces = 2

// Lot is a quantity of one instrument bought on one day: a tax lot.
type Lot struct {
	// Quantity is positive.
	Quantity decimal.Decimal
	// Basis is the total cost basis of Quantity, in the policy currency:
	// not negative.
	Basis decimal.Decimal
	// Acquired is the trade date of the purchase.
	Acquired Date
	// HoldingFrom, when set, is the date the lot's holding period counts
	// from instead of Acquired: a wash sale's replacement shares in a
	// taxable account count from their purchase date moved back by the
	// days the shares sold at a loss were held (IRS Publication 550,
	// "Wash Sales"). It is not after Acquired.
	HoldingFrom Date
	// Replacement says the lot's shares already replace shares sold at a
	// loss (a wash sale booked by the ledger): they replace no others.
	Replacement bool
}

// HeldFrom returns the date the lot's holding period counts from:
// HoldingFrom when set, else Acquired.
func (l Lot) HeldFrom() Date {
	if !l.HoldingFrom.IsZero() {
		return l.HoldingFrom
	}
	return l.Acquired
}

// Lots is one position's tax lots, prepared for selection: sorted once by
// unit cost (Basis / Quantity), highest first, so that each selection only
// walks them. A Lots is immutable and safe for concurrent use; the zero
// value holds no lot.
type Lots struct {
	lots   []Lot
	order  []int  // indices into lots, by unit cost, highest first
	ltFrom []Date // LongTermFrom of each lot
	qty    decimal.Decimal
}

// NewLots checks and prepares lots, which it copies. Every lot needs a
// positive quantity, a basis that is not negative and a date.
func NewLots(lots []Lot) (Lots, error) {
	l := Lots{lots: append([]Lot(nil), lots...), order: make([]int, len(lots)), ltFrom: make([]Date, len(lots))}
	qty := make([]decimal.Decimal, 0, len(lots))
	for i, lot := range l.lots {
		switch {
		case lot.Quantity.Sign() <= 0:
			return Lots{}, fmt.Errorf("lot %d: quantity must be positive, got %s", i, lot.Quantity)
		case lot.Basis.Sign() < 0:
			return Lots{}, fmt.Errorf("lot %d: cost basis must not be negative, got %s", i, lot.Basis)
		case lot.Acquired.IsZero():
			return Lots{}, fmt.Errorf("lot %d: acquisition date is missing", i)
		case lot.HoldingFrom.After(lot.Acquired):
			return Lots{}, fmt.Errorf("lot %d: holding period from %s, after the acquisition on %s", i, lot.HoldingFrom, lot.Acquired)
		}
		l.order[i] = i
		l.ltFrom[i] = LongTermFrom(lot.HeldFrom())
		qty = append(qty, lot.Quantity)
	}
	if len(qty) > 0 {
		l.qty = decimal.Sum(decimal.Zero, qty...)
	}
	// Unit costs compare exactly by cross-multiplication:
	// Bi/Qi > Bj/Qj  <=>  Bi×Qj > Bj×Qi, the quantities being positive.
	sort.SliceStable(l.order, func(x, y int) bool {
		a, b := &l.lots[l.order[x]], &l.lots[l.order[y]]
		if c := a.Basis.Mul(b.Quantity).Cmp(b.Basis.Mul(a.Quantity)); c != 0 {
			return c > 0
		}
		return a.Acquired.Before(b.Acquired)
	})
	return l, nil
}

// Len returns the number of lots.
func (l Lots) Len() int { return len(l.lots) }

// Lot returns lot i, in the order given to NewLots.
func (l Lots) Lot(i int) Lot { return l.lots[i] }

// Quantity returns the sum of the lots' quantities.
func (l Lots) Quantity() decimal.Decimal { return l.qty }

// SellsAtLossFirst reports whether a sale at price starts with a lot at a
// loss: whether some lot cost more than price a unit. Select sells such
// lots first, so any sale at price realizes a loss.
func (l Lots) SellsAtLossFirst(price decimal.Decimal) bool {
	if len(l.order) == 0 {
		return false
	}
	lot := &l.lots[l.order[0]] // the highest unit cost
	return lot.Basis.Cmp(price.Mul(lot.Quantity)) > 0
}

// Sale is the part of one lot that a selection sells. Its JSON form names
// the fields as a plan reports them (lot, acquired, quantity, cost_basis,
// proceeds, gain, long_term, wash_sale_disallowed), dates as YYYY-MM-DD.
type Sale struct {
	// Lot is the index of the lot, in the order given to NewLots (the
	// order of the holdings file).
	Lot      int  `json:"lot"`
	Acquired Date `json:"acquired"`
	// Quantity is the quantity sold: the whole lot, or part of it.
	Quantity decimal.Decimal `json:"quantity"`
	// Basis is the cost basis of Quantity (see Lots.Select).
	Basis decimal.Decimal `json:"cost_basis"`
	// Proceeds is Quantity × price, exactly.
	Proceeds decimal.Decimal `json:"proceeds"`
	// Gain is Proceeds − Basis: negative for a loss.
	Gain decimal.Decimal `json:"gain"`
	// LongTerm says whether the gain or loss is long-term on the sale date.
	LongTerm bool `json:"long_term"`
	// HoldingFrom is the lot's Lot.HoldingFrom: set when its holding
	// period counts from before Acquired (a wash sale's replacement).
	HoldingFrom Date `json:"holding_from,omitzero"`
	// Disallowed is the part of a loss that the wash-sale rule disallows
	// (WashSale.Match): positive, at most −Gain. GainsOf counts only the
	// rest of the loss.
	Disallowed decimal.Decimal `json:"wash_sale_disallowed,omitzero"`
}

// Selection is the outcome of Lots.Select: the lots sold and, when they do
// not add up to the quantity requested, how much was left unsold and why.
// Requested = Sold + Waiting + Blocked + Missing, exactly.
type Selection struct {
	Requested decimal.Decimal
	// Sales are in the order the lots were chosen.
	Sales []Sale
	// Sold is the sum of the sales' quantities.
	Sold decimal.Decimal
	// Gains are the gains and losses the sales realize.
	Gains Gains
	// Waiting is left unsold because the lots that would sell it are at a
	// short-term gain and turn long-term within Options.WaitLongTermDays;
	// all of them are long-term on WaitUntil.
	Waiting   decimal.Decimal
	WaitUntil Date
	// Blocked is left unsold because the lots that would sell it are at a
	// short-term gain and Options.ShortTermGains blocks those.
	Blocked decimal.Decimal
	// Missing is what the lots do not hold: more was requested than held.
	Missing decimal.Decimal
}

// Unsold returns the quantity requested but not sold.
func (s Selection) Unsold() decimal.Decimal { return s.Requested.Sub(s.Sold) }

// Reason says, in words for a plan's report, why part of the quantity was
// left unsold; it is empty when everything requested was sold.
func (s Selection) Reason() string {
	var parts []string
	if s.Waiting.Sign() > 0 {
		parts = append(parts, fmt.Sprintf("%s waits until %s, when the lots at a short-term gain that would sell it turn long-term", s.Waiting, s.WaitUntil))
	}
	if s.Blocked.Sign() > 0 {
		parts = append(parts, fmt.Sprintf("%s would realize short-term gains, which the policy blocks", s.Blocked))
	}
	if s.Missing.Sign() > 0 {
		parts = append(parts, fmt.Sprintf("%s is more than the lots hold", s.Missing))
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("%s of %s not sold: %s", s.Unsold(), s.Requested, strings.Join(parts, "; "))
}

// category is the rank of a lot in the order of sale at a price and date.
type category int

const (
	noGain        category = iota // a loss or no gain: sold first
	longTermGain                  // sold next
	shortTermGain                 // sold last, if allowed and not waited for
	waitFor                       // short-term gain, long-term within the wait
	blocked                       // short-term gain that the options block
	zeroGain                      // no gain and no loss, under LossesLast
)

// atZero reports whether the lot at position k of l.order would sell at
// price for exactly its basis.
func (l *Lots) atZero(k int, price decimal.Decimal) bool {
	lot := &l.lots[l.order[k]]
	return lot.Basis.Equal(price.Mul(lot.Quantity))
}

// Select chooses the lots that sell quantity at price on date, in this
// order: lots at a loss, the largest loss per unit first, then lots at no
// gain; then lots at a long-term gain, the smallest gain per unit first;
// then lots at a short-term gain, the smallest gain per unit first. Lots of
// equal unit cost go oldest first. The last lot used may be split.
//
// Under opts.WaitLongTermDays = N, lots at a short-term gain that are
// long-term on date + N days are not sold (Selection.Waiting says how much
// that leaves unsold, and WaitUntil until when); under ShortTermGains
// block, the other lots at a short-term gain are not sold either
// (Selection.Blocked). Neither option concerns lots at a loss or no gain.
// Under opts.LossesLast, lots at a loss are sold last: lots at no gain
// first, then long-term gains, then short-term gains, then losses (the
// largest loss per unit first).
//
// Rounding: proceeds and gains are exact. A whole lot sold carries its
// basis exactly. The sold part q of a lot of quantity Q and basis B
// carries B × q / Q rounded half to even to BasisPlaces (cents), but never
// more than B; what stays in the lot is B less that amount, so the parts of
// a split lot always add up to its basis exactly (Remaining). One
// exception keeps the order of sale honest: the part of a lot at no gain
// at price (B >= Q × price) is never at a gain, its basis rounded up to
// cents where half to even would take it below its proceeds. A lot that
// the options do not hold back for being at a short-term gain then never
// realizes one by rounding. The kept part takes the cent less, so at the
// same price it can be at a gain of under a cent, which ShortTermGains
// block holds back in a later selection (not sold, rather than sold at a
// gain); and the split depends on price, so a fill at another price than
// the plan's can carry a basis a cent away from the plan's estimate.
//
// quantity must not be negative and price must be positive.
func (l Lots) Select(quantity, price decimal.Decimal, date Date, opts Options) (Selection, error) {
	s := Selection{Requested: quantity}
	if quantity.Sign() < 0 {
		return s, fmt.Errorf("quantity to sell must not be negative, got %s", quantity)
	}
	if price.Sign() <= 0 {
		return s, fmt.Errorf("price must be positive, got %s", price)
	}
	r := l.rank(price, date, opts)
	n, firstGain, cat := len(l.order), r.firstGain, r.category
	need := quantity
	wants := []category{noGain, longTermGain, shortTermGain}
	if opts.LossesLast {
		wants = []category{zeroGain, longTermGain, shortTermGain, noGain}
	}
	for _, want := range wants {
		from, to := firstGain, n
		if want == noGain || want == zeroGain {
			from, to = 0, firstGain
		}
		for k := from; k < to && need.Sign() > 0; k++ {
			c := cat(k)
			if want == zeroGain && c == noGain && l.atZero(k, price) {
				c = zeroGain
			} else if opts.LossesLast && want == noGain && l.atZero(k, price) {
				continue // sold as zeroGain
			}
			if c != want {
				continue
			}
			i := l.order[k]
			q := decimal.Min(need, l.lots[i].Quantity)
			s.Sales = append(s.Sales, l.sale(i, q, price, date))
			need = need.Sub(q)
		}
	}
	s.Sold = quantity.Sub(need)
	s.Gains = GainsOf(s.Sales)
	// Attribute what is left unsold: to the lots waited for, then to the
	// blocked ones, in the order they would have been sold; the rest is
	// missing.
	for _, held := range []category{waitFor, blocked} {
		for k := firstGain; k < n && need.Sign() > 0; k++ {
			if cat(k) != held {
				continue
			}
			i := l.order[k]
			q := decimal.Min(need, l.lots[i].Quantity)
			need = need.Sub(q)
			if held == blocked {
				s.Blocked = s.Blocked.Add(q)
				continue
			}
			s.Waiting = s.Waiting.Add(q)
			if l.ltFrom[i].After(s.WaitUntil) {
				s.WaitUntil = l.ltFrom[i]
			}
		}
	}
	s.Missing = need
	return s, nil
}

// ranking places the lots of a Lots in the order of sale at one price,
// date and options.
type ranking struct {
	l *Lots
	// firstGain is the first position in l.order of a lot at a gain: in
	// unit-cost order, lots at a loss or no gain (unit cost >= price) come
	// first.
	firstGain int
	date      Date
	waitLimit Date
	opts      Options
}

func (l *Lots) rank(price decimal.Decimal, date Date, opts Options) ranking {
	firstGain := sort.Search(len(l.order), func(k int) bool {
		lot := &l.lots[l.order[k]]
		return lot.Basis.Cmp(price.Mul(lot.Quantity)) < 0
	})
	return ranking{l: l, firstGain: firstGain, date: date, waitLimit: date.AddDays(opts.WaitLongTermDays), opts: opts}
}

// category returns the category of the lot at position k of l.order.
func (r *ranking) category(k int) category {
	i := r.l.order[k]
	switch {
	case k < r.firstGain:
		return noGain
	case !r.date.Before(r.l.ltFrom[i]):
		return longTermGain
	case r.opts.WaitLongTermDays > 0 && !r.waitLimit.Before(r.l.ltFrom[i]):
		return waitFor
	case r.opts.ShortTermGains.blocks():
		return blocked
	}
	return shortTermGain
}

// HoldsBack reports whether opts hold lot i (in the order given to
// NewLots) back from a sale at price on date, as Select would: a lot at a
// short-term gain that turns long-term within opts.WaitLongTermDays, or
// that opts.ShortTermGains blocks.
func (l Lots) HoldsBack(i int, price decimal.Decimal, date Date, opts Options) bool {
	lot := &l.lots[i]
	if lot.Basis.Cmp(price.Mul(lot.Quantity)) >= 0 || !date.Before(l.ltFrom[i]) {
		return false // no gain, or long-term
	}
	return opts.WaitLongTermDays > 0 && !date.AddDays(opts.WaitLongTermDays).Before(l.ltFrom[i]) || opts.ShortTermGains.blocks()
}

// SelectInOrder sells quantity at price on date from the lots listed in
// order (indices in the order given to NewLots), each whole or, the last,
// in part, skipping those opts hold back (HoldsBack): a planner that
// ranks lots by its own measure (the least tax per currency unit raised)
// sells them so. What the listed lots do not cover is Missing. The basis
// of a part is rounded as Select rounds it. quantity must not be negative
// and price must be positive.
func (l Lots) SelectInOrder(order []int, quantity, price decimal.Decimal, date Date, opts Options) (Selection, error) {
	s := Selection{Requested: quantity}
	if quantity.Sign() < 0 {
		return s, fmt.Errorf("quantity to sell must not be negative, got %s", quantity)
	}
	if price.Sign() <= 0 {
		return s, fmt.Errorf("price must be positive, got %s", price)
	}
	need := quantity
	used := make(map[int]bool, len(order))
	for _, i := range order {
		if need.Sign() <= 0 {
			break
		}
		if i < 0 || i >= len(l.lots) || used[i] {
			return s, fmt.Errorf("lot %d is not one of the %d lots, or listed twice", i, len(l.lots))
		}
		used[i] = true
		if l.HoldsBack(i, price, date, opts) {
			continue
		}
		q := decimal.Min(need, l.lots[i].Quantity)
		s.Sales = append(s.Sales, l.sale(i, q, price, date))
		need = need.Sub(q)
	}
	s.Sold = quantity.Sub(need)
	s.Gains = GainsOf(s.Sales)
	s.Missing = need
	return s, nil
}

// Sellable returns how much of the lots Select may sell at price on date
// under opts: all but the lots it holds back (at a short-term gain, and
// waited for or blocked). It is Select(Quantity()).Sold without building
// the sales. price must be positive.
func (l Lots) Sellable(price decimal.Decimal, date Date, opts Options) (decimal.Decimal, error) {
	if price.Sign() <= 0 {
		return decimal.Decimal{}, fmt.Errorf("price must be positive, got %s", price)
	}
	// Only lots at a short-term gain are held back, and only when the
	// options wait or block: the sum of those few is subtracted from the
	// total rather than the many others summed.
	if opts.WaitLongTermDays <= 0 && !opts.ShortTermGains.blocks() {
		return l.qty, nil
	}
	r := l.rank(price, date, opts)
	var held []decimal.Decimal
	for k := r.firstGain; k < len(l.order); k++ {
		if c := r.category(k); c == waitFor || c == blocked {
			held = append(held, l.lots[l.order[k]].Quantity)
		}
	}
	if len(held) == 0 {
		return l.qty, nil
	}
	return l.qty.Sub(decimal.Sum(held[0], held[1:]...)), nil
}

// sale returns the sale of quantity q of lot i at price on date.
func (l Lots) sale(i int, q, price decimal.Decimal, date Date) Sale {
	lot := &l.lots[i]
	basis := lot.Basis
	proceeds := q.Mul(price)
	if !q.Equal(lot.Quantity) {
		basis = quoHalfEven(lot.Basis.Mul(q), lot.Quantity, BasisPlaces)
		// A lot at no gain (its unit cost at least price) sells no part at
		// a gain: B × q / Q is then at least the part's proceeds, and
		// rounding it down to cents must not take it below them (a lot
		// bought at today's price would otherwise realize a gain of a
		// fraction of a cent, short-term if the lot is, which
		// short_term_gains: block forbids). The part's basis is then the
		// proceeds rounded up to cents: within a cent of B × q / Q still.
		if basis.LessThan(proceeds) && lot.Basis.Cmp(price.Mul(lot.Quantity)) >= 0 {
			basis = proceeds.RoundCeil(BasisPlaces)
		}
		basis = decimal.Min(basis, lot.Basis)
	}
	return Sale{
		Lot:         i,
		Acquired:    lot.Acquired,
		Quantity:    q,
		Basis:       basis,
		Proceeds:    proceeds,
		Gain:        proceeds.Sub(basis),
		LongTerm:    !date.Before(l.ltFrom[i]),
		HoldingFrom: lot.HoldingFrom,
	}
}

// QuoHalfEven returns n / d rounded half to even to places decimals,
// exactly, without the decimal package's division precision: n must not
// be negative and d must be positive.
func QuoHalfEven(n, d decimal.Decimal, places int32) decimal.Decimal {
	return quoHalfEven(n, d, places)
}

// quoHalfEven returns n / d rounded half to even to places decimals,
// exactly: n and d must be positive (n may be zero).
func quoHalfEven(n, d decimal.Decimal, places int32) decimal.Decimal {
	q, r := n.QuoRem(d, places) // n = d×q + r, 0 <= r < d×10^-places
	unit := decimal.New(1, -places)
	switch c := r.Add(r).Cmp(d.Mul(unit)); {
	case c > 0, c == 0 && q.Shift(places).BigInt().Bit(0) == 1:
		return q.Add(unit)
	}
	return q
}

// Remaining returns the lots left after the sales of s, in the order given
// to NewLots: lots sold whole are gone, a split lot keeps its quantity and
// basis less those of the part sold. s must come from l.Select.
func (l Lots) Remaining(s *Selection) []Lot {
	sold := make(map[int]*Sale, len(s.Sales))
	for k := range s.Sales {
		sold[s.Sales[k].Lot] = &s.Sales[k]
	}
	out := make([]Lot, 0, len(l.lots))
	for i, lot := range l.lots {
		if sale, ok := sold[i]; ok {
			if sale.Quantity.Equal(lot.Quantity) {
				continue
			}
			lot.Quantity = lot.Quantity.Sub(sale.Quantity)
			lot.Basis = lot.Basis.Sub(sale.Basis)
		}
		out = append(out, lot)
	}
	return out
}

// SelectLots prepares lots and selects among them: NewLots, then
// Lots.Select. A planner that selects from the same lots more than once
// should keep the Lots and call Select.
func SelectLots(lots []Lot, quantity, price decimal.Decimal, date Date, opts Options) (Selection, error) {
	l, err := NewLots(lots)
	if err != nil {
		return Selection{Requested: quantity}, err
	}
	return l.Select(quantity, price, date, opts)
}
