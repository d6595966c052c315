package tax

import "github.com/shopspring/decimal"

// Candidate is a lot worth harvesting: its sale, whole, at a loss, and the
// instrument to buy with the proceeds so that the sleeve keeps its weight.
type Candidate struct {
	Sale
	Substitute string
}

// HarvestCandidates returns the lots of instrument (of sleeve class) whose
// loss at price on date exceeds opts.Harvest's thresholds, each sold whole,
// the largest loss per unit first, with the substitute to buy.
//
// There are none when harvesting is disabled, when instrument has no
// substitute, when no threshold is set, or when price is not positive.
// Unless class is exempt from the wash-sale guard, there are none either
// when a buy of h within the window would make the loss a wash sale, or
// when a loss sale of h blocks buying the substitute: the WashBlock
// returned says which.
func HarvestCandidates(l Lots, instrument, class string, price decimal.Decimal, date Date, opts Options, h History) ([]Candidate, WashBlock) {
	hv := opts.Harvest
	sub, ok := hv.Substitutes[instrument]
	if !hv.Enabled || !ok || sub == "" || hv.MinLoss.Sign() <= 0 && hv.MinLossPct.Sign() <= 0 || price.Sign() <= 0 {
		return nil, WashBlock{}
	}
	if b := opts.WashSale.CheckLossSale(h, instrument, class, date); b.Blocked {
		return nil, b
	}
	if b := opts.WashSale.CheckBuy(h, Buy{Instrument: sub, Class: class, Date: date}); b.Blocked {
		return nil, b
	}
	var out []Candidate
	// Lots at a loss come first in unit-cost order; stop at the first
	// lot that is not.
	for _, i := range l.order {
		s := l.sale(i, l.lots[i].Quantity, price, date)
		if s.Gain.Sign() >= 0 {
			break
		}
		loss := s.Gain.Neg()
		if hv.MinLoss.Sign() > 0 && loss.Cmp(hv.MinLoss) <= 0 ||
			hv.MinLossPct.Sign() > 0 && loss.Cmp(hv.MinLossPct.Mul(s.Basis)) <= 0 {
			continue
		}
		out = append(out, Candidate{Sale: s, Substitute: sub})
	}
	return out, WashBlock{}
}
