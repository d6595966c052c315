package ledger

import (
	"maps"
	"slices"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// WashRules is what the ledger needs of a policy to book the wash-sale
// rule on fills (see ApplyFill): the rule, each instrument's sleeve (which
// decides its window or exemption) and the accounts that are
// tax-advantaged.
type WashRules struct {
	Rule tax.WashSale
	// Class is the sleeve path of each instrument, by symbol.
	Class map[string]string
	// TaxAdvantaged lists the accounts, by name, that are IRAs, Roth IRAs,
	// 401(k)s, HSAs and the like: a sale there realizes no loss, and a
	// replacement bought there loses the loss for good.
	TaxAdvantaged map[string]bool
}

// WashRulesOf returns the wash-sale rules of p for a ledger's Wash.
func WashRulesOf(p *policy.Policy) *WashRules {
	r := &WashRules{Class: make(map[string]string, len(p.Instruments)), TaxAdvantaged: make(map[string]bool, len(p.Accounts))}
	if p.Tax != nil {
		r.Rule = p.Tax.WashSale
	}
	for _, in := range p.Instruments {
		r.Class[in.Symbol] = p.Sleeves[in.Sleeve].Path
	}
	for _, a := range p.Accounts {
		r.TaxAdvantaged[a.Name] = a.Type.TaxAdvantaged()
	}
	return r
}

// longest returns the longest window of the rule, in days.
func (r *WashRules) longest() int {
	w := max(r.Rule.Window, tax.DefaultWashSaleWindow)
	for _, d := range r.Rule.Windows {
		w = max(w, d)
	}
	return w
}

// WashBooking is one booking of the wash-sale rule in the ledger's
// journal: Quantity shares of lot Lot sold at a loss by order OrderID on
// Date are replaced by a purchase, and Disallowed of their loss is not
// deductible. Unless Permanent, Disallowed was added to the replacement
// lot's basis and its holding period counts from HoldingFrom.
type WashBooking struct {
	// FillID is the fill that booked it: the loss sale's, or the
	// replacement buy's when the purchase came after the sale.
	FillID     string          `json:"fill_id"`
	OrderID    string          `json:"order_id"`
	Account    string          `json:"account"`
	Instrument string          `json:"instrument"`
	Date       tax.Date        `json:"date"`
	Lot        int             `json:"lot"`
	Quantity   decimal.Decimal `json:"quantity"`
	Disallowed decimal.Decimal `json:"disallowed"`
	// Replacement names the purchase: its account, instrument and date,
	// and the ID of the lot that holds the replacement shares (0 when the
	// position's lots are unknown: the buy is then only marked replaced in
	// the history).
	Replacement WashPurchase `json:"replacement"`
	Permanent   bool         `json:"permanent,omitempty"`
	HoldingFrom tax.Date     `json:"holding_from,omitzero"`
}

// WashPurchase names a replacement purchase.
type WashPurchase struct {
	Account    string   `json:"account"`
	Instrument string   `json:"instrument"`
	Date       tax.Date `json:"date"`
	Lot        int      `json:"lot,omitempty"`
}

// MaxWashBookings is how many bookings the ledger's journal keeps (the
// latest): it is saved after every report and must stay bounded.
const MaxWashBookings = 1000

// PendingLoss is a loss on shares sold in a taxable account that no
// purchase has replaced yet: a purchase within the window after the sale
// may still (see ApplyFill).
type PendingLoss struct {
	OrderID    string   `json:"order_id"`
	Account    string   `json:"account"`
	Instrument string   `json:"instrument"`
	Date       tax.Date `json:"date"`
	// Lot is the ID of the lot sold, and HeldFrom the date its holding
	// period counted from.
	Lot      int             `json:"lot"`
	HeldFrom tax.Date        `json:"held_from"`
	Quantity decimal.Decimal `json:"quantity"`
	Loss     decimal.Decimal `json:"loss"`
}

// source is where a purchase given to tax.WashSale.Match comes from.
type source struct {
	account, instrument string
	lot                 int // the lot's ID; 0 when it is a history buy
	buy                 int // index in History.Buys, or -1
}

// bookSale books the wash-sale rule on a sell fill of order o in a
// taxable account: the parts sold at a loss (their loss after their share
// of the fees) are matched (tax.WashSale.Match) to the household's
// purchases within the window known now: the lots acquired within it that
// replace nothing yet, in every account, and the history's buys the lots
// do not record. Each replacement is booked (replace); the loss shares
// left unmatched wait in History.Losses for a purchase after the sale.
func (l *Ledger) bookSale(o *Order, fillID string, date tax.Date, parts []soldPart, quantity, price, fees decimal.Decimal) {
	r := l.Wash
	class := r.Class[o.Instrument]
	if r.TaxAdvantaged[o.Account] {
		return
	}
	// Each part's share of the proceeds net of fees, rounded half to even
	// to cents on the running total, so that the shares add up.
	net := decimal.Max(decimal.Zero, quantity.Mul(price).Sub(fees))
	sales := make([]tax.Sale, 0, len(parts))
	cum, done := decimal.Zero, decimal.Zero
	for k, p := range parts {
		cum = cum.Add(p.quantity)
		upTo := net
		if cum.LessThan(quantity) {
			upTo = tax.QuoHalfEven(net.Mul(cum), quantity, tax.BasisPlaces)
		}
		share := upTo.Sub(done)
		done = upTo
		sales = append(sales, tax.Sale{Lot: k, Acquired: p.lot.Acquired, HoldingFrom: p.lot.HoldingFrom,
			Quantity: p.quantity, Basis: p.basis, Proceeds: share, Gain: share.Sub(p.basis)})
	}
	purchases, src := l.purchases(date.AddDays(-r.longest()))
	sale := tax.LossSale{Account: o.Account, Instrument: o.Instrument, Class: class, Date: date, Sales: sales}
	wash := r.Rule.Match(purchases, []tax.LossSale{sale})[0]
	matched := make([]decimal.Decimal, len(parts))
	for _, rp := range wash.Replacements {
		matched[rp.Lot] = matched[rp.Lot].Add(rp.Quantity)
		l.replace(src[rp.Purchase], rp, WashBooking{FillID: fillID, OrderID: o.OrderID, Account: o.Account,
			Instrument: o.Instrument, Date: date, Lot: parts[rp.Lot].lot.ID})
	}
	if _, exempt := r.Rule.WindowOf(class); exempt {
		return
	}
	for k, s := range sale.Sales {
		if s.Gain.Sign() >= 0 || matched[k].GreaterThanOrEqual(s.Quantity) {
			continue
		}
		l.History.Losses = append(l.History.Losses, PendingLoss{OrderID: o.OrderID, Account: o.Account,
			Instrument: o.Instrument, Date: date, Lot: parts[k].lot.ID, HeldFrom: parts[k].lot.HeldFrom(),
			Quantity: s.Quantity.Sub(matched[k]), Loss: s.Gain.Neg().Sub(s.Disallowed)})
	}
}

// bookBuy books the wash-sale rule on a buy fill of order o: the
// quantity bought replaces, share for share, the pending losses
// (History.Losses) within the window before it, earliest sale first (see
// tax.WashSale.Match). lot is the ID of the lot the fill added, 0 when the
// position's lots are unknown.
func (l *Ledger) bookBuy(o *Order, fillID string, date tax.Date, quantity decimal.Decimal, lot int) {
	r := l.Wash
	pending := l.History.Losses
	if len(pending) == 0 {
		return
	}
	sales := make([]tax.LossSale, len(pending))
	for k, p := range pending {
		sales[k] = tax.LossSale{Account: p.Account, Instrument: p.Instrument, Class: r.Class[p.Instrument], Date: p.Date,
			Sales: []tax.Sale{{Lot: k, Acquired: p.HeldFrom, Quantity: p.Quantity, Gain: p.Loss.Neg()}}}
	}
	slices.SortStableFunc(sales, func(a, b tax.LossSale) int { return a.Date.Compare(b.Date) })
	buy := tax.Trade{Instrument: o.Instrument, Account: o.Account, Date: date, Quantity: quantity, TaxAdvantaged: r.TaxAdvantaged[o.Account]}
	buyIdx := slices.IndexFunc(l.History.Buys, func(t Trade) bool {
		return t.Instrument == o.Instrument && t.Account == o.Account && t.Date == date
	})
	src := source{account: o.Account, instrument: o.Instrument, lot: lot, buy: buyIdx}
	washes := r.Rule.Match([]tax.Trade{buy}, sales)
	for _, w := range washes {
		for _, rp := range w.Replacements {
			p := &pending[rp.Lot]
			p.Quantity = p.Quantity.Sub(rp.Quantity)
			p.Loss = p.Loss.Sub(rp.Disallowed)
			// The lot bought keeps its ID for the shares not yet matched.
			l.replace(src, rp, WashBooking{FillID: fillID, OrderID: p.OrderID, Account: p.Account,
				Instrument: p.Instrument, Date: p.Date, Lot: p.Lot})
		}
	}
	l.History.Losses = slices.DeleteFunc(pending, func(p PendingLoss) bool { return p.Quantity.Sign() <= 0 })
	if len(l.History.Losses) == 0 {
		l.History.Losses = nil
	}
}

// purchases returns the purchases of the household on or after since
// that may replace shares sold at a loss, and where each comes from: the
// lots acquired then that replace nothing yet, in every account, and the
// history's buys less what they replaced already and what the lots of the
// same account, instrument and day record (the lots are those buys; a buy
// of unknown quantity on such a day is taken to be the lots').
func (l *Ledger) purchases(since tax.Date) ([]tax.Trade, []source) {
	var out []tax.Trade
	var src []source
	type key struct {
		account, instrument string
		date                tax.Date
	}
	recorded := map[key]decimal.Decimal{}
	for _, name := range slices.Sorted(maps.Keys(l.Accounts)) {
		acc := l.Accounts[name]
		if acc == nil {
			continue
		}
		for _, sym := range slices.Sorted(maps.Keys(acc.Lots)) {
			for _, lot := range acc.Lots[sym] {
				if lot.Acquired.Before(since) {
					continue
				}
				k := key{name, sym, lot.Acquired}
				recorded[k] = recorded[k].Add(lot.Quantity)
				if lot.Replacement {
					continue
				}
				out = append(out, tax.Trade{Instrument: sym, Account: name, Date: lot.Acquired, Quantity: lot.Quantity,
					TaxAdvantaged: l.Wash.TaxAdvantaged[name]})
				src = append(src, source{account: name, instrument: sym, lot: lot.ID, buy: -1})
			}
		}
	}
	for n, t := range l.History.Buys {
		if t.Date.Before(since) {
			continue
		}
		k := key{t.Account, t.Instrument, t.Date}
		q := t.Quantity
		if rec := recorded[k]; rec.Sign() > 0 {
			if q = q.Sub(rec); q.Sign() <= 0 {
				continue // the lots record it all (or it is of unknown quantity)
			}
		}
		if q.Sign() > 0 {
			if q = q.Sub(t.Replaced); q.Sign() <= 0 {
				continue
			}
		}
		out = append(out, tax.Trade{Instrument: t.Instrument, Account: t.Account, Date: t.Date, Quantity: q,
			TaxAdvantaged: l.Wash.TaxAdvantaged[t.Account]})
		src = append(src, source{account: t.Account, instrument: t.Instrument, buy: n})
	}
	return out, src
}

// replace books one replacement rp of purchase s and journals it (b gives
// the loss sale's side). A purchase held as a lot gives the replacement
// shares a lot of their own (split from it when it holds more, with its
// basis prorated as tax.Lots.Select prorates it) marked Replacement; in a
// taxable account that lot's basis grows by the disallowed loss and its
// holding period counts from rp.HoldingFrom (IRS Publication 550, "Wash
// Sales"), while in a tax-advantaged account nothing else changes: the
// loss is lost for good (Rev. Rul. 2008-5). A history buy (lots unknown)
// counts the shares as replaced. A lot split keeps its ID for the shares
// not matched; the replacement shares get a new one.
func (l *Ledger) replace(s source, rp tax.Replacement, b WashBooking) {
	b.Quantity, b.Disallowed, b.Permanent = rp.Quantity, rp.Disallowed, rp.Permanent
	b.Replacement = WashPurchase{Account: s.account, Instrument: s.instrument, Date: rp.Date}
	if !rp.Permanent {
		b.HoldingFrom = rp.HoldingFrom
	}
	acc := l.Accounts[s.account]
	i := -1
	if acc != nil && s.lot > 0 {
		i = lotIndex(acc.Lots[s.instrument], s.lot)
	}
	switch {
	case i >= 0:
		lots := slices.Clone(acc.Lots[s.instrument])
		lot := lots[i]
		repl := lot
		if rp.Quantity.LessThan(lot.Quantity) {
			basis := decimal.Min(tax.QuoHalfEven(lot.Basis.Mul(rp.Quantity), lot.Quantity, tax.BasisPlaces), lot.Basis)
			repl = Lot{ID: nextLotID(lots), Quantity: rp.Quantity, Basis: basis, Acquired: lot.Acquired}
			lots[i].Quantity, lots[i].Basis = lot.Quantity.Sub(rp.Quantity), lot.Basis.Sub(basis)
		}
		repl.Replacement = true
		if !rp.Permanent {
			repl.Basis = repl.Basis.Add(rp.Disallowed)
			repl.WashBasis = repl.WashBasis.Add(rp.Disallowed)
			repl.HoldingFrom = rp.HoldingFrom
		}
		if repl.ID == lot.ID {
			lots[i] = repl
		} else {
			lots = slices.Insert(lots, i+1, repl)
		}
		acc.Lots[s.instrument] = lots
		b.Replacement.Lot = repl.ID
		// The history's buy of that day, which the lot records, counts
		// the shares too: should the lots be dropped (a snapshot of
		// another quantity), it must not replace them again.
		if n := slices.IndexFunc(l.History.Buys, func(t Trade) bool {
			return t.Account == s.account && t.Instrument == s.instrument && t.Date == rp.Date
		}); n >= 0 && l.History.Buys[n].Quantity.Sign() > 0 {
			t := &l.History.Buys[n]
			t.Replaced = decimal.Min(t.Quantity, t.Replaced.Add(rp.Quantity))
		}
	case s.buy >= 0 && s.buy < len(l.History.Buys):
		t := &l.History.Buys[s.buy]
		if t.Quantity.Sign() > 0 {
			t.Replaced = t.Replaced.Add(rp.Quantity)
		}
	}
	l.WashSales = append(l.WashSales, b)
	if n := len(l.WashSales) - MaxWashBookings; n > 0 {
		l.WashSales = slices.Delete(l.WashSales, 0, n)
	}
}
