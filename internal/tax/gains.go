package tax

import "github.com/shopspring/decimal"

// Gains is an estimate of realized capital gains and losses, split by
// holding period. Losses are positive amounts: a lot bought for 1,000 and
// sold for 900 adds 100 to a Losses field. Amounts are exact (proceeds are
// quantity × price, bases as Lots.Select computes them); round them for
// display only. Gains of several sales, orders, accounts or plans add up
// with Add.
type Gains struct {
	ShortTermGains  decimal.Decimal `json:"short_term_gains"`
	ShortTermLosses decimal.Decimal `json:"short_term_losses"`
	LongTermGains   decimal.Decimal `json:"long_term_gains"`
	LongTermLosses  decimal.Decimal `json:"long_term_losses"`
}

// Add returns the sum of g and o, field by field.
func (g Gains) Add(o Gains) Gains {
	return Gains{
		ShortTermGains:  g.ShortTermGains.Add(o.ShortTermGains),
		ShortTermLosses: g.ShortTermLosses.Add(o.ShortTermLosses),
		LongTermGains:   g.LongTermGains.Add(o.LongTermGains),
		LongTermLosses:  g.LongTermLosses.Add(o.LongTermLosses),
	}
}

// GainsOf returns the gains and losses the sales realize: a loss counts
// less the part the wash-sale rule disallows (Sale.Disallowed).
func GainsOf(sales []Sale) Gains {
	// Collected by field and summed once: decimal.Sum adds in place, which
	// spares most of the allocations of one Add per sale.
	var parts [4][]decimal.Decimal // ST gains, ST losses, LT gains, LT losses (negative)
	for i := range sales {
		s := &sales[i]
		g := s.Gain
		if s.Disallowed.Sign() > 0 {
			g = g.Add(s.Disallowed)
		}
		f := 0
		switch sign := g.Sign(); {
		case sign == 0:
			continue
		case sign < 0:
			f = 1
		}
		if s.LongTerm {
			f += 2
		}
		parts[f] = append(parts[f], g)
	}
	sum := func(f int) decimal.Decimal {
		if len(parts[f]) == 0 {
			return decimal.Decimal{}
		}
		return decimal.Sum(parts[f][0], parts[f][1:]...)
	}
	return Gains{
		ShortTermGains:  sum(0),
		ShortTermLosses: sum(1).Neg(),
		LongTermGains:   sum(2),
		LongTermLosses:  sum(3).Neg(),
	}
}

// NetShortTerm returns short-term gains less short-term losses.
func (g Gains) NetShortTerm() decimal.Decimal { return g.ShortTermGains.Sub(g.ShortTermLosses) }

// NetLongTerm returns long-term gains less long-term losses.
func (g Gains) NetLongTerm() decimal.Decimal { return g.LongTermGains.Sub(g.LongTermLosses) }

// Net returns all gains less all losses.
func (g Gains) Net() decimal.Decimal { return g.NetShortTerm().Add(g.NetLongTerm()) }

// IsZero reports whether g records no gain and no loss.
func (g Gains) IsZero() bool {
	return g.ShortTermGains.IsZero() && g.ShortTermLosses.IsZero() && g.LongTermGains.IsZero() && g.LongTermLosses.IsZero()
}
