package tax

import "fmt"

// Trade is a purchase or a sale of an instrument in an account on a day.
type Trade struct {
	Instrument string
	Account    string
	Date       Date
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
