package plan

import (
	"slices"

	"github.com/shopspring/decimal"
)

// locateSales applies the asset location to the buys that sales pay for,
// after the polish: a buy of instrument i in account a that the location
// prefers less than account b moves to b, with as many steps of a sale of
// a that pays for it (instrument j, which b holds), so that b sells the j
// and buys the i. The household trades the same quantities of every
// instrument, so the allocation, and the polish's rating of it, do not
// change; only which account trades does. A move is made when:
//   - b may hold i, does not sell i, does not buy j, and neither trade
//     goes against the plan (conflicts);
//   - b's cash (above its reserve) and the proceeds of the steps of j it
//     sells pay for the steps of i it buys, and a's cash stays above its
//     reserve; both accounts start there;
//   - the sale does not move from a tax-advantaged account to a taxable
//     one (sales stay tax-advantaged first);
//   - every order left or made is at least min_trade, and b sells no more
//     of j than it may (the tax rules' limit).
//
// Relocations, split restorations and harvests are left alone. Free cash
// was placed by the location already (spendPreferred).
func (pl *planner) locateSales() {
	if pl.prefer == nil || pl.flow != nil {
		return
	}
	moved := false
	for k := 0; k < len(pl.orders); k++ {
		o := &pl.orders[k]
		if o.Side != Buy || o.units.Sign() <= 0 || exempt(o.Rule) {
			continue
		}
		i, a := o.instrument, o.account
		rankA := slices.Index(pl.prefer[i], a)
		for r, b := range pl.prefer[i] {
			if rankA >= 0 && r >= rankA || pl.orders[k].units.Sign() <= 0 {
				break
			}
			if b == a || pl.cash[a].Sign() < 0 || pl.cash[b].Sign() < 0 || pl.orderOn(b, i, Sell) >= 0 ||
				pl.p.Accounts[a].Type.TaxAdvantaged() && !pl.p.Accounts[b].Type.TaxAdvantaged() {
				continue
			}
			for x := 0; x < len(pl.orders) && pl.orders[k].units.Sign() > 0; x++ {
				s := &pl.orders[x]
				if s.account != a || s.Side != Sell || s.units.Sign() <= 0 || exempt(s.Rule) || s.instrument == i ||
					pl.orderOn(b, s.instrument, Buy) >= 0 {
					continue
				}
				if pl.moveBuy(k, x, b) {
					moved = true
				}
			}
		}
	}
	if moved {
		pl.compact()
		pl.project()
	}
}

// orderOn returns the index of account a's order of instrument i on side,
// or -1.
func (pl *planner) orderOn(a, i int, side Side) int {
	for k := range pl.orders {
		if o := &pl.orders[k]; o.account == a && o.instrument == i && o.Side == side && o.units.Sign() > 0 {
			return k
		}
	}
	return -1
}

// moveBuy moves steps of buy order k (instrument i, account a) to account
// b, with the steps of sell order x (instrument j, also in a) that pay for
// them, as locateSales says; it reports whether it moved any. The steps
// of i moved are all of them, or as many as b's cash and the steps of j it
// may sell pay for; the steps of j are the fewest that pay for them with
// b's cash.
func (pl *planner) moveBuy(k, x, b int) bool {
	p := pl.p
	buy, sell := pl.orders[k], pl.orders[x]
	i, j, a := buy.instrument, sell.instrument, buy.account
	if !p.Accounts[b].Allows(i) || !pl.mayBuy(i) || pl.unit[j].Sign() <= 0 {
		return false
	}
	mayB, _ := pl.limit(b, j).QuoRem(p.Instruments[j].Step, 0)
	if y := pl.orderOn(b, j, Sell); y >= 0 {
		mayB = mayB.Sub(pl.orders[y].units)
	}
	steps := decimal.Min(sell.units, mayB) // of j that b may take over
	if steps.Sign() <= 0 {
		return false
	}
	cashB := pl.cash[b]
	n := buy.units
	if most, _ := cashB.Add(steps.Mul(pl.unit[j])).QuoRem(pl.unit[i], 0); most.LessThan(n) {
		n = most
	}
	if n.Sign() <= 0 {
		return false
	}
	cost := n.Mul(pl.unit[i])
	y := decimal.Zero
	if need := cost.Sub(cashB); need.Sign() > 0 {
		var rem decimal.Decimal
		if y, rem = need.QuoRem(pl.unit[j], 0); rem.Sign() > 0 {
			y = y.Add(oneUnit)
		}
	}
	proceeds := y.Mul(pl.unit[j])
	if pl.cash[a].Add(cost).Sub(proceeds).Sign() < 0 {
		return false
	}
	yb, ib := pl.orderOn(b, j, Sell), pl.orderOn(b, i, Buy)
	if yb < 0 && y.Sign() > 0 && pl.conflicts(b, j, Sell) || ib < 0 && pl.conflicts(b, i, Buy) {
		return false
	}
	// Every order left or made is at least min_trade.
	if minTrade := p.Rebalance.MinTrade; !minTrade.IsZero() {
		small := func(units decimal.Decimal, idx, ord int) bool {
			if idx >= 0 {
				units = units.Add(pl.orders[idx].units)
			}
			return units.Sign() > 0 && units.Mul(pl.unit[ord]).LessThan(minTrade)
		}
		if small(buy.units.Sub(n), -1, i) || small(sell.units.Sub(y), -1, j) || small(n, ib, i) || small(y, yb, j) {
			return false
		}
	}
	pl.addUnits(k, n.Neg())
	pl.addUnits(x, y.Neg())
	if ib < 0 {
		pl.orders = append(pl.orders, pl.order(b, i, Buy, decimal.Zero, decimal.Zero, decimal.Zero, buy.Rule))
		ib = len(pl.orders) - 1
	}
	pl.addUnits(ib, n)
	if y.Sign() > 0 {
		if yb < 0 {
			pl.orders = append(pl.orders, pl.order(b, j, Sell, decimal.Zero, decimal.Zero, decimal.Zero, sell.Rule))
			yb = len(pl.orders) - 1
		}
		pl.addUnits(yb, y)
	}
	pl.cash[a] = pl.cash[a].Add(cost).Sub(proceeds)
	pl.cash[b] = pl.cash[b].Sub(cost).Add(proceeds)
	return true
}

// addUnits adds n steps to order k, for settle to set its quantity.
func (pl *planner) addUnits(k int, n decimal.Decimal) {
	o := &pl.orders[k]
	o.units = o.units.Add(n)
	o.n = pl.numOf(o.units)
	o.changed = true
}
