package tax

import (
	"fmt"
	"slices"

	"github.com/shopspring/decimal"
)

// Trade is a purchase or a sale of an instrument in an account on a day.
type Trade struct {
	Instrument string
	Account    string
	Date       Date
	// Quantity is the number of units traded; zero means unknown. A
	// purchase of unknown quantity is taken to replace every share sold
	// at a loss within its window (see WashSale.Match): a loss it might
	// disallow is never reported as allowed.
	Quantity decimal.Decimal
	// TaxAdvantaged says the trade is in an IRA, a Roth IRA or another
	// tax-advantaged account: a replacement bought there disallows the
	// loss for good (Rev. Rul. 2008-5). A planner that knows the
	// account's type sets it from the policy.
	TaxAdvantaged bool
}

// History is what the household traded recently, in all its accounts,
// taxable or not: the wash-sale rule spans them all.
type History struct {
	// LossSales are sales that realized a loss.
	LossSales []Trade
	// Buys are purchases (Lots.Buys lists those its lots record).
	Buys []Trade
}

// Buy is a purchase the wash-sale guard is asked about.
type Buy struct {
	Instrument string
	// Class is the sleeve path of the instrument ("crypto/large_cap"),
	// which decides the window or the exemption (see WashSale).
	Class string
	Date  Date
}

// WashBlock is the answer of the wash-sale guard: whether a trade is
// blocked, by which trade of the history, and until when.
type WashBlock struct {
	Blocked bool
	// By is the trade that blocks: the latest-ending one when several do.
	By Trade
	// Until is the last day the trade is blocked; it is allowed again from
	// the day after.
	Until Date
}

// Reason says, in words for a plan's report, why the trade is blocked; it
// is empty when it is not.
func (b WashBlock) Reason() string {
	if !b.Blocked {
		return ""
	}
	return fmt.Sprintf("wash-sale guard: %s traded in account %s on %s; blocked through %s",
		b.By.Instrument, b.By.Account, b.By.Date, b.Until)
}

// CheckBuy reports whether the guard blocks buy: whether any loss sale of
// h, in any account, of the same instrument or one in its substitute group,
// lies within the window of the buy's class (window days before or after
// the buy, both ends included). A class that is exempt is never blocked.
func (w WashSale) CheckBuy(h History, buy Buy) WashBlock {
	return w.check(h.LossSales, buy.Instrument, buy.Class, buy.Date)
}

// CheckLossSale reports whether the guard advises against selling
// instrument (of sleeve class) at a loss on date: whether any buy of h of
// the same instrument or one in its substitute group lies within the
// window, which would make the sale a wash sale and its loss disallowed.
func (w WashSale) CheckLossSale(h History, instrument, class string, date Date) WashBlock {
	return w.check(h.Buys, instrument, class, date)
}

func (w WashSale) check(trades []Trade, instrument, class string, date Date) WashBlock {
	window, exempt := w.rule(class)
	var b WashBlock
	if exempt {
		return b
	}
	for _, t := range trades {
		if !w.same(t.Instrument, instrument) {
			continue
		}
		until := t.Date.AddDays(window)
		if date.Before(t.Date.AddDays(-window)) || date.After(until) {
			continue
		}
		if !b.Blocked || until.After(b.Until) {
			b = WashBlock{Blocked: true, By: t, Until: until}
		}
	}
	return b
}

// Buys returns the purchases the lots record on or after since, as trades
// of instrument in account: the recent buys a wash-sale check needs.
func (l Lots) Buys(account, instrument string, since Date) []Trade {
	var out []Trade
	for _, lot := range l.lots {
		if !lot.Acquired.Before(since) {
			out = append(out, Trade{Instrument: instrument, Account: account, Date: lot.Acquired})
		}
	}
	return out
}

// LossSale is a sale of lots of one instrument in one account that the
// wash-sale rule checks (WashSale.Match).
type LossSale struct {
	Account    string
	Instrument string
	// Class is the sleeve path of the instrument, which decides the window
	// or the exemption (see WashSale).
	Class string
	Date  Date
	// TaxAdvantaged marks a sale in a tax-advantaged account: it realizes
	// no loss, so the rule does not apply to it.
	TaxAdvantaged bool
	// Sales are the lots sold (Lots.Select); those at a loss are checked.
	Sales []Sale
}

// Replacement is a purchase matched, share for share, to shares a loss
// sale sold: the loss on those shares is disallowed.
type Replacement struct {
	// Lot is the sold lot whose shares it replaces (the Lot of its Sale).
	Lot int `json:"lot"`
	// Account, Instrument and Date say which purchase replaces them.
	Account    string `json:"account"`
	Instrument string `json:"instrument"`
	Date       Date   `json:"date"`
	// Quantity is the number of shares matched.
	Quantity decimal.Decimal `json:"quantity"`
	// Purchase is the index of the purchase in the list given to Match.
	Purchase int `json:"-"`
	// Disallowed is the loss on those shares, which may not be deducted.
	Disallowed decimal.Decimal `json:"disallowed"`
	// Permanent says the replacement is in a tax-advantaged account: the
	// loss is lost for good (Rev. Rul. 2008-5), no basis is adjusted.
	Permanent bool `json:"permanent,omitempty"`
	// HoldingFrom is, for a replacement in a taxable account, the date its
	// holding period now counts from: its purchase date moved back by the
	// days the sold shares were held (Publication 550: the holding period
	// of the new shares includes that of the old). Disallowed is added to
	// its basis. Zero when Permanent.
	HoldingFrom Date `json:"holding_from,omitzero"`
}

// Wash is what the wash-sale rule does to one loss sale: the loss it
// disallows, and how. Disallowed = BasisAdded + Permanent, exactly.
type Wash struct {
	Disallowed decimal.Decimal `json:"disallowed"`
	// BasisAdded is the part added to the basis of replacement shares in
	// taxable accounts: deferred, not lost.
	BasisAdded decimal.Decimal `json:"basis_added"`
	// Permanent is the part whose replacement is in a tax-advantaged
	// account: lost for good.
	Permanent    decimal.Decimal `json:"permanent"`
	Replacements []Replacement   `json:"replacements"`
}

// IsZero reports whether the rule disallows nothing.
func (w *Wash) IsZero() bool { return w == nil || len(w.Replacements) == 0 }

// Add returns the sum of w and o's amounts (without the replacements).
func (w Wash) Add(o Wash) Wash {
	return Wash{
		Disallowed: w.Disallowed.Add(o.Disallowed),
		BasisAdded: w.BasisAdded.Add(o.BasisAdded),
		Permanent:  w.Permanent.Add(o.Permanent),
	}
}

// Match applies the wash-sale rule (26 U.S.C. §1091, IRS Publication 550,
// Treas. Reg. §1.1091-1) to sales, in order, given the household's
// purchases in all its accounts. A share sold at a loss is washed when a
// purchase of the same instrument or one of its substitute group (the
// instruments declared substantially identical) lies within the window
// of the sale (30 days before to 30 days after, both included, unless the
// class sets another window or is exempt). Shares are matched one for
// one: the loss shares of a sale in the order their lots were acquired,
// each to the earliest purchase not yet matched (by date, then in the
// order given); a purchase replaces no more shares than it bought, over
// all the sales, and one of unknown quantity replaces any number. Sales in
// tax-advantaged accounts and exempt classes are skipped.
//
// purchases must not include the shares the sales sell (a lot sold is not
// its own replacement): the caller lists what remains of each lot.
//
// Match returns one Wash per sale and sets Disallowed on the sales'
// lots. The loss of a lot is disallowed in proportion to the shares
// matched: loss × matched / quantity, computed on the running total and
// rounded half to even to cents, so that the parts of a lot add up to its
// loss exactly when all its shares are matched.
func (w WashSale) Match(purchases []Trade, sales []LossSale) []Wash {
	out := make([]Wash, len(sales))
	left := make([]decimal.Decimal, len(purchases))
	order := make([]int, len(purchases))
	for k := range purchases {
		left[k], order[k] = purchases[k].Quantity, k
	}
	slices.SortStableFunc(order, func(x, y int) int { return purchases[x].Date.Compare(purchases[y].Date) })
	var lossLots []int
	for s := range sales {
		ls := &sales[s]
		window, exempt := w.rule(ls.Class)
		if ls.TaxAdvantaged || exempt {
			continue
		}
		from, to := ls.Date.AddDays(-window), ls.Date.AddDays(window)
		lossLots = lossLots[:0]
		for k := range ls.Sales {
			ls.Sales[k].Disallowed = decimal.Decimal{}
			if ls.Sales[k].Gain.Sign() < 0 && ls.Sales[k].Quantity.Sign() > 0 {
				lossLots = append(lossLots, k)
			}
		}
		slices.SortStableFunc(lossLots, func(x, y int) int {
			a, b := &ls.Sales[x], &ls.Sales[y]
			if c := a.Acquired.Compare(b.Acquired); c != 0 {
				return c
			}
			return a.Lot - b.Lot
		})
		wash := &out[s]
		for _, k := range lossLots {
			sale := &ls.Sales[k]
			loss := sale.Gain.Neg()
			heldFrom := sale.Acquired // the sold shares' holding period
			if !sale.HoldingFrom.IsZero() {
				heldFrom = sale.HoldingFrom
			}
			need, matched := sale.Quantity, decimal.Zero
			done := decimal.Zero // disallowed so far on this lot
			for _, x := range order {
				if need.Sign() <= 0 {
					break
				}
				p := &purchases[x]
				unknown := p.Quantity.Sign() <= 0
				if !unknown && left[x].Sign() <= 0 || p.Date.Before(from) || p.Date.After(to) || !w.same(p.Instrument, ls.Instrument) {
					continue
				}
				q := need
				if !unknown {
					q = decimal.Min(need, left[x])
					left[x] = left[x].Sub(q)
				}
				need = need.Sub(q)
				matched = matched.Add(q)
				upTo := loss
				if need.Sign() > 0 {
					upTo = quoHalfEven(loss.Mul(matched), sale.Quantity, BasisPlaces)
				}
				part := upTo.Sub(done)
				done = upTo
				r := Replacement{Lot: sale.Lot, Account: p.Account, Instrument: p.Instrument, Date: p.Date,
					Quantity: q, Purchase: x, Disallowed: part, Permanent: p.TaxAdvantaged}
				if p.TaxAdvantaged {
					wash.Permanent = wash.Permanent.Add(part)
				} else {
					r.HoldingFrom = p.Date.AddDays(-heldFrom.DaysUntil(ls.Date))
					wash.BasisAdded = wash.BasisAdded.Add(part)
				}
				wash.Disallowed = wash.Disallowed.Add(part)
				wash.Replacements = append(wash.Replacements, r)
			}
			sale.Disallowed = done
		}
	}
	return out
}
