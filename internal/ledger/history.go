package ledger

import (
	"slices"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// DefaultHistoryDays is how many days of trades the ledger keeps for the
// wash-sale guard when Ledger.HistoryDays is not set: twice the default
// 30-day window, and one day more.
const DefaultHistoryDays = 61

// History is the household's recent trades, in all its accounts, that the
// wash-sale guard needs (see tax.History). Fills record them (see
// ApplyFill); trades older than the ledger's history days are dropped.
type History struct {
	// LossSales are sell fills that sold some lot at a loss.
	LossSales []Trade `json:"loss_sales,omitempty"`
	// Buys are buy fills.
	Buys []Trade `json:"buys,omitempty"`
	// Losses are the losses of sales in taxable accounts on shares that
	// no purchase has replaced yet (see ApplyFill): a buy within the
	// window after the sale replaces them.
	Losses []PendingLoss `json:"unmatched_losses,omitempty"`
}

// IsZero reports whether the history holds no trade (then a ledger omits
// it from its JSON, empty lists or not).
func (h History) IsZero() bool {
	return len(h.LossSales) == 0 && len(h.Buys) == 0 && len(h.Losses) == 0
}

// Trade is a purchase or a sale of an instrument in an account on a day:
// the JSON form of a tax.Trade.
type Trade struct {
	Instrument string   `json:"instrument"`
	Account    string   `json:"account"`
	Date       tax.Date `json:"date"`
	// Quantity is the number of units traded that day, the fills summed;
	// zero means unknown (trades recorded before quantities were), which
	// the wash-sale rule takes as replacing any number of shares.
	Quantity decimal.Decimal `json:"quantity,omitzero"`
	// Replaced is how many of a buy's shares replace shares sold at a
	// loss (a booked wash sale, see WashBooking): they replace no other.
	Replaced decimal.Decimal `json:"replaced,omitzero"`
}

// historyCutoff returns the first day of the history kept at now.
func (l *Ledger) historyCutoff(now time.Time) tax.Date {
	days := l.HistoryDays
	if days <= 0 {
		days = DefaultHistoryDays
	}
	return l.day(now).AddDays(-days)
}

// record adds t to the buys or the loss sales and drops the trades before
// cutoff (t too, if it is before cutoff). A trade of the same instrument
// in the same account on the same day adds its quantity to the one
// recorded (each fill is applied once); an unknown quantity stays unknown.
func (h *History) record(t Trade, buy bool, cutoff tax.Date) {
	h.LossSales = prune(h.LossSales, cutoff)
	h.Buys = prune(h.Buys, cutoff)
	h.Losses = slices.DeleteFunc(h.Losses, func(p PendingLoss) bool { return p.Date.Before(cutoff) })
	if len(h.Losses) == 0 {
		h.Losses = nil
	}
	list := &h.LossSales
	if buy {
		list = &h.Buys
	}
	if t.Date.Before(cutoff) {
		return
	}
	k := slices.IndexFunc(*list, func(o Trade) bool {
		return o.Instrument == t.Instrument && o.Account == t.Account && o.Date == t.Date
	})
	switch {
	case k < 0:
		*list = append(*list, t)
	case (*list)[k].Quantity.Sign() > 0 && t.Quantity.Sign() > 0:
		(*list)[k].Quantity = (*list)[k].Quantity.Add(t.Quantity)
	default:
		(*list)[k].Quantity = decimal.Decimal{}
	}
}

// prune drops the trades before cutoff.
func prune(trades []Trade, cutoff tax.Date) []Trade {
	trades = slices.DeleteFunc(trades, func(t Trade) bool { return t.Date.Before(cutoff) })
	if len(trades) == 0 {
		return nil
	}
	return trades
}

// TaxHistory returns the trades of the history on or after the day (in
// UTC) now's HistoryDays before: the history to pass to the planner
// (plan.Options.History). It holds loss sales in every account whose
// lots the ledger knows, tax-advantaged ones included, since the ledger
// does not know account types: a caller that knows them should drop the
// loss sales of tax-advantaged accounts, which realize no loss. Buys count
// in every account.
func (l *Ledger) TaxHistory(now time.Time) tax.History {
	cutoff := l.historyCutoff(now)
	return tax.History{LossSales: since(l.History.LossSales, cutoff), Buys: since(l.History.Buys, cutoff)}
}

// since returns trades on or after cutoff as tax trades, less the shares
// they replaced (a trade whose shares all did is left out).
func since(trades []Trade, cutoff tax.Date) []tax.Trade {
	var out []tax.Trade
	for _, t := range trades {
		q := t.Quantity
		if q.Sign() > 0 {
			if q = q.Sub(t.Replaced); q.Sign() <= 0 {
				continue
			}
		}
		if !t.Date.Before(cutoff) {
			out = append(out, tax.Trade{Instrument: t.Instrument, Account: t.Account, Date: t.Date, Quantity: q})
		}
	}
	return out
}
