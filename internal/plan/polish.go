package plan

import (
	"fmt"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/policy"
)

// score rates the projected allocation after a plan. Lower is better, in
// this order: fewer sleeves that were inside their band pushed out of it
// (harm), fewer sleeves out of band, a smaller largest |deviation| over
// sleeves, less idle free cash (destination target only), fewer orders;
// less turnover, the last criterion, is decided from the move itself
// (better).
type score struct {
	harmed, out int
	// dev is the largest |value - target x total| over sleeves, in
	// currency, out of total.
	dev, total decimal.Decimal
	idle       decimal.Decimal
	orders     int
}

// devLess reports whether x's largest deviation, as a fraction of its
// total, is smaller than y's.
func devLess(x, y *score) bool {
	if x.total.Equal(y.total) {
		return x.dev.LessThan(y.dev)
	}
	return x.dev.Mul(y.total).LessThan(y.dev.Mul(x.total))
}

// head compares x and y on the allocation alone (harm, sleeves out of
// band, largest deviation): -1 when x is better, 1 when y is, 0 on a tie.
func (x *score) head(y *score) int {
	switch {
	case x.harmed != y.harmed:
		return cmpInt(x.harmed, y.harmed)
	case x.out != y.out:
		return cmpInt(x.out, y.out)
	case devLess(x, y):
		return -1
	case devLess(y, x):
		return 1
	}
	return 0
}

func cmpInt(x, y int) int {
	if x < y {
		return -1
	}
	return 1
}

// better rates the projection and reports whether it is better than cur;
// the idle cash (withIdle) is computed only when it decides or is kept.
//
// turn is the change in turnover of the move made: the last criterion.
func (pl *planner) better(cur *score, withIdle bool, turn decimal.Decimal) (score, bool) {
	sc := pl.score(false)
	switch sc.head(cur) {
	case 1:
		return sc, false
	case -1:
		if withIdle {
			sc.idle = pl.idleCash()
		}
		return sc, true
	}
	if withIdle {
		sc.idle = pl.idleCash()
	}
	if c := sc.idle.Cmp(cur.idle); c != 0 {
		return sc, c < 0
	}
	if sc.orders != cur.orders {
		return sc, sc.orders < cur.orders
	}
	return sc, turn.Sign() < 0
}

// targetValueAfter returns sleeve si's target value out of the projected
// total.
func (pl *planner) targetValueAfter(si int) decimal.Decimal {
	if pl.sameTotal {
		return pl.s.Sleeves[si].TargetValue
	}
	return pl.p.Sleeves[si].Target.Mul(pl.totalAfter)
}

// deviationAfter returns after - target x total of sleeve si: during the
// polish from pl.dev, which shift keeps, otherwise computed.
func (pl *planner) deviationAfter(si int) decimal.Decimal {
	if pl.dev != nil {
		return pl.dev[si]
	}
	return pl.after[si].Sub(pl.targetValueAfter(si))
}

// refreshDev computes pl.dev for every sleeve.
func (pl *planner) refreshDev() {
	for si := range pl.dev {
		pl.dev[si] = pl.after[si].Sub(pl.targetValueAfter(si))
	}
}

// score rates the current projection. withIdle adds the idle free cash
// (destination target).
func (pl *planner) score(withIdle bool) score {
	sc := score{total: pl.totalAfter, orders: pl.nOrders}
	var lowest decimal.Decimal
	under := pl.under[:0]
	for si := range pl.p.Sleeves {
		if pl.outAfter(si) {
			sc.out++
			if !pl.s.Sleeves[si].Breach {
				sc.harmed++
			}
		}
		d := pl.deviationAfter(si)
		under = append(under, d.Sign() < 0)
		if d.Sign() < 0 {
			if d.LessThan(lowest) {
				lowest = d
			}
		} else if d.GreaterThan(sc.dev) {
			sc.dev = d
		}
	}
	if lowest.Sign() < 0 {
		sc.dev = decimal.Max(sc.dev, lowest.Neg())
	}
	pl.under = under
	if withIdle {
		sc.idle = pl.idleCash()
	}
	return sc
}

// idleCash returns the free cash left in accounts that could buy a step of
// an instrument of a sleeve under its target (pl.under, as score sets it).
func (pl *planner) idleCash() decimal.Decimal {
	idle := decimal.Zero
	for a := range pl.p.Accounts {
		if pl.cash[a].Sign() <= 0 {
			continue
		}
		for i := range pl.p.Instruments {
			leaf := pl.p.Instruments[i].Sleeve
			if leaf == pl.p.Cash || !pl.under[leaf] || pl.unit[i].Sign() <= 0 || !pl.p.Accounts[a].Allows(i) || !pl.mayBuy(i) ||
				pl.unit[i].GreaterThan(pl.cash[a]) {
				continue
			}
			idle = idle.Add(pl.cash[a])
			break
		}
	}
	return idle
}

// exempt reports whether an order's rule lets its account trade both sides
// of its sleeve: a relocation, a split restoration or a harvest.
func exempt(r Rule) bool {
	return r == RuleRelocate || r == RuleRestoreSplit || r == RuleHarvest
}

// shift moves the projection by the value of n steps of instrument i
// bought (sell false) or sold in account a, and the account's cash.
func (pl *planner) shift(a, i int, n decimal.Decimal, sell bool) {
	p := pl.p
	amount := pl.unit[i].Mul(n) // value into the instrument's sleeve
	if sell {
		amount = amount.Neg()
	}
	was := pl.cash[a]
	pl.cash[a] = was.Sub(amount)
	for x := p.Instruments[i].Sleeve; x >= 0; x = p.Sleeves[x].Parent {
		pl.after[x] = pl.after[x].Add(amount)
		pl.dev[x] = pl.dev[x].Add(amount)
	}
	if was.Sign() >= 0 && pl.cash[a].Sign() >= 0 {
		// Free cash pays for it all: the total is unchanged.
		pl.after[p.Cash] = pl.after[p.Cash].Sub(amount)
		pl.dev[p.Cash] = pl.dev[p.Cash].Sub(amount)
		return
	}
	// The account's cash crosses or stays below its reserve: only the part
	// above the reserve is free cash, and the total moves.
	cashDelta := decimal.Max(decimal.Zero, pl.cash[a]).Sub(decimal.Max(decimal.Zero, was))
	pl.after[p.Cash] = pl.after[p.Cash].Add(cashDelta)
	if moved := amount.Add(cashDelta); !moved.IsZero() {
		pl.totalAfter = pl.totalAfter.Add(moved)
		pl.sameTotal = pl.totalAfter.Equal(pl.T)
	}
	pl.refreshDev()
}

// move is a change of one order: n more steps (n < 0: fewer) of
// instrument i in account a on side, on order k (-1: a new order).
type move struct {
	k, a, i int
	side    Side
	n       decimal.Decimal
	added   bool // apply appended the order
}

// apply makes move m and keeps the projection, the count of orders and
// the turnover. An order that falls to zero steps stays in place until
// compact removes it.
func (pl *planner) apply(m *move) {
	if m.k < 0 {
		pl.orders = append(pl.orders, pl.order(m.a, m.i, m.side, decimal.Zero, decimal.Zero, decimal.Zero, pl.newRule(m.i)))
		m.k, m.added = len(pl.orders)-1, true
	}
	pl.change(m.k, m.n)
}

// undo takes move m, made by apply, back.
func (pl *planner) undo(m *move) {
	pl.change(m.k, m.n.Neg())
	if m.added {
		pl.orders = pl.orders[:m.k]
		m.k, m.added = -1, false
	}
}

// change adds n steps to order k.
func (pl *planner) change(k int, n decimal.Decimal) {
	o := &pl.orders[k]
	was := o.units.Sign() > 0
	o.units = o.units.Add(n)
	o.changed = true
	if is := o.units.Sign() > 0; is != was {
		if is {
			pl.nOrders++
		} else {
			pl.nOrders--
		}
	}
	pl.shift(o.account, o.instrument, n, o.Side == Sell)
}

// newRule is the rule of an order the polish adds for instrument i.
func (pl *planner) newRule(i int) Rule {
	if pl.p.Instruments[i].Sleeve == pl.p.Cash {
		return RuleFundBuys
	}
	if r := pl.rule[i]; r != "" && r != RuleRelocate && r != RuleRestoreSplit {
		return r
	}
	return pl.ruleFor(pl.p.Instruments[i].Sleeve)
}

// compact removes the orders that fell to zero steps and sets the
// quantity and notional of those the polish changed.
func (pl *planner) compact() {
	out := pl.orders[:0]
	for _, o := range pl.orders {
		if o.units.Sign() <= 0 {
			continue
		}
		if o.changed {
			o.Quantity = pl.timesStep(o.instrument, o.units)
			o.Notional = o.units.Mul(pl.unit[o.instrument])
			o.changed = false
		}
		out = append(out, o)
	}
	pl.orders = out
}

// conflicts reports whether an order of instrument i in account a on side
// would trade against the plan: the household trading i the other way
// (relocations aside), or account a trading i's sleeve the other way
// (relocations and harvests aside: the polish adds no split restoration).
func (pl *planner) conflicts(a, i int, side Side) bool {
	leaf := pl.p.Instruments[i].Sleeve
	for k := range pl.orders {
		o := &pl.orders[k]
		if o.Side == side || o.units.Sign() <= 0 {
			continue
		}
		if o.instrument == i && o.Rule != RuleRelocate {
			return true
		}
		if o.account == a && pl.p.Instruments[o.instrument].Sleeve == leaf && o.Rule != RuleRelocate && o.Rule != RuleHarvest {
			return true
		}
	}
	return false
}

// feasible reports whether move m keeps the hard invariants: no sale
// beyond what may be sold, no buy beyond the account's cash or outside
// may_hold or the wash-sale guard, no order below min_trade, no trade
// against the plan (conflicts).
func (pl *planner) feasible(m move) bool {
	p := pl.p
	units := m.n
	if m.k >= 0 {
		o := &pl.orders[m.k]
		if exempt(o.Rule) {
			return false
		}
		units = o.units.Add(m.n)
		if units.Sign() < 0 || o.units.IsZero() && pl.conflicts(m.a, m.i, m.side) {
			return false
		}
	} else if m.n.Sign() <= 0 || pl.conflicts(m.a, m.i, m.side) {
		return false
	}
	if units.Sign() > 0 {
		if minTrade := p.Rebalance.MinTrade; !minTrade.IsZero() && units.Mul(pl.unit[m.i]).LessThan(minTrade) {
			return false
		}
	}
	if m.side == Sell && !pl.taxFirst(m) {
		return false
	}
	cost := pl.unit[m.i].Mul(m.n) // cash the move takes from the account
	if m.side == Sell {
		cost = cost.Neg()
		if m.n.Sign() > 0 && pl.timesStep(m.i, units).GreaterThan(pl.limit(m.a, m.i)) {
			return false
		}
	} else if m.n.Sign() > 0 && (p.Instruments[m.i].Sleeve == p.Cash || !p.Accounts[m.a].Allows(m.i) || !pl.mayBuy(m.i)) {
		return false
	}
	if cost.Sign() <= 0 {
		return true
	}
	// Cash after the move may not go below zero (cash less reserve) while
	// the account buys; an account that only sells may end below its
	// reserve, but not below where it started.
	left := pl.cash[m.a].Sub(cost)
	if left.Sign() >= 0 {
		return true
	}
	if m.side == Buy {
		return false
	}
	for k := range pl.orders {
		if o := &pl.orders[k]; o.account == m.a && o.Side == Buy && o.units.Sign() > 0 {
			return false
		}
	}
	return left.GreaterThanOrEqual(pl.b.Cash[m.a].Sub(p.Accounts[m.a].Reserve))
}

// most returns n, or fewer steps when account a's cash (buy) or what it
// may sell beyond the units of its order (sell) allows no more.
func (pl *planner) most(a, i int, side Side, units, n decimal.Decimal) decimal.Decimal {
	var most decimal.Decimal
	if side == Buy {
		if pl.cash[a].Sign() <= 0 {
			return decimal.Zero
		}
		most, _ = pl.cash[a].QuoRem(pl.unit[i], 0)
	} else {
		most, _ = pl.limit(a, i).QuoRem(pl.p.Instruments[i].Step, 0)
		most = most.Sub(units)
	}
	return decimal.Max(decimal.Zero, decimal.Min(n, most))
}

// taxFirst reports whether sell move m keeps tax-advantaged accounts
// selling first: a taxable account sells more of an instrument only once no
// tax-advantaged account could sell another step of it, and a
// tax-advantaged account sells less only while no taxable account sells it.
func (pl *planner) taxFirst(m move) bool {
	p := pl.p
	advantaged := p.Accounts[m.a].Type.TaxAdvantaged()
	if (m.n.Sign() > 0) == advantaged {
		return true
	}
	sold := func(a int) (decimal.Decimal, bool) {
		for k := range pl.orders {
			if o := &pl.orders[k]; o.account == a && o.instrument == m.i && o.Side == Sell && !exempt(o.Rule) {
				return pl.timesStep(m.i, o.units), o.units.Sign() > 0
			}
		}
		return decimal.Zero, false
	}
	for a := range p.Accounts {
		if a == m.a || p.Accounts[a].Type.TaxAdvantaged() == advantaged {
			continue
		}
		q, sells := sold(a)
		if advantaged && sells {
			return false
		}
		if !advantaged && !pl.limit(a, m.i).Sub(q).LessThan(p.Instruments[m.i].Step) {
			return false
		}
	}
	return true
}

// stepsFor returns how many steps of instrument i move about amount: the
// nearest number, at least one; exceed adds one so that the move passes
// amount.
func (pl *planner) stepsFor(i int, amount decimal.Decimal, exceed bool) decimal.Decimal {
	if exceed {
		q, _ := amount.QuoRem(pl.unit[i], 0)
		return q.Add(oneUnit)
	}
	return decimal.Max(oneUnit, amount.DivRound(pl.unit[i], 0))
}

// try makes move m when it is feasible and improves the score cur; it
// reports whether it did, with the new score.
func (pl *planner) try(m move, cur *score, withIdle bool) (score, bool) {
	if m.n.IsZero() || !pl.feasible(m) {
		return *cur, false
	}
	pl.apply(&m)
	if sc, ok := pl.better(cur, withIdle, pl.unit[m.i].Mul(m.n)); ok {
		return sc, true
	}
	pl.undo(&m)
	return *cur, false
}

// improve tries the moves that bring sleeve si toward its target by about
// amount (exceed: by more than amount), and makes the first that improves
// the score: more (or fewer) steps on an order of the plan, or a new
// order. Too much in a sleeve wants its instruments sold; too much cash
// wants an instrument of a sleeve under its target bought.
func (pl *planner) improve(si int, amount decimal.Decimal, exceed bool, cur *score, withIdle bool) bool {
	p := pl.p
	over := pl.deviationAfter(si).Sign() > 0
	wantSell := over
	if si == p.Cash {
		wantSell = !over
	}
	// Unless the move must pass amount (exceed), a step of amount x 2 or
	// more cannot bring the sleeve nearer its target: skip it.
	var twice decimal.Decimal
	if !exceed {
		twice = amount.Add(amount)
	}
	eligible := func(i int) bool {
		leaf := p.Instruments[i].Sleeve
		if si != p.Cash {
			if !pl.within(leaf, si) {
				return false
			}
		} else if leaf == p.Cash || (pl.deviationAfter(leaf).Sign() > 0) != wantSell {
			// Cash: buy what is under its target, sell what is over it.
			return false
		}
		return pl.unit[i].Sign() > 0 && (exceed || pl.unit[i].LessThan(twice))
	}
	side, other := Buy, Sell
	if wantSell {
		side, other = Sell, Buy
	}
	for k := range pl.orders {
		o := &pl.orders[k]
		if o.units.Sign() <= 0 || !eligible(o.instrument) {
			continue
		}
		if o.Side == side && !pl.canAdd(o.account, o.instrument, side) {
			continue
		}
		n := pl.stepsFor(o.instrument, amount, exceed)
		m := move{k: k, a: o.account, i: o.instrument, side: o.Side, n: n}
		if o.Side == other {
			// Fewer steps on an order the other way.
			m = pl.fewer(k, n)
		} else {
			m.n = pl.most(o.account, o.instrument, o.Side, o.units, n)
		}
		if sc, ok := pl.try(m, cur, withIdle); ok {
			*cur = sc
			return true
		}
	}
	// New orders, then pairs inside one account: a buy paid for by a sell
	// of what is over its target, or a sell whose proceeds buy what is
	// under its target.
	for _, pair := range []bool{false, true} {
		if pair && pl.noPairs {
			break
		}
		for i := range p.Instruments {
			if !eligible(i) {
				continue
			}
			var n decimal.Decimal
			for _, a := range pl.sellOrder {
				if !pair && !pl.canAdd(a, i, side) {
					continue
				}
				if n.IsZero() {
					n = pl.stepsFor(i, amount, exceed)
				}
				var sc score
				var ok bool
				switch {
				case pair:
					sc, ok = pl.tryPair(a, i, side, n, cur, withIdle)
				case !pl.hasOrder(a, i):
					m, _ := pl.moveOn(a, i, side, n)
					sc, ok = pl.try(m, cur, withIdle)
				}
				if ok {
					*cur = sc
					return true
				}
			}
		}
	}
	return false
}

// canAdd is a cheap first check that account a could trade at least one
// more step of instrument i on side: a buy needs may_hold, the wash-sale
// guard and a step's worth of cash; a sell needs a holding.
func (pl *planner) canAdd(a, i int, side Side) bool {
	if side == Sell {
		return pl.b.Qty[a][i].Sign() > 0
	}
	return pl.p.Accounts[a].Allows(i) && pl.mayBuy(i) && pl.cash[a].Sign() > 0 && !pl.unit[i].GreaterThan(pl.cash[a])
}

// moveOn returns the move of n steps of instrument i in account a on side:
// on the account's order of i, or as a new order; ok is false when the
// account trades i the other way.
func (pl *planner) moveOn(a, i int, side Side, n decimal.Decimal) (move, bool) {
	for k := range pl.orders {
		if o := &pl.orders[k]; o.account == a && o.instrument == i {
			if o.Side != side {
				return move{}, false
			}
			return move{k: k, a: a, i: i, side: side, n: pl.most(a, i, side, o.units, n)}, true
		}
	}
	if minTrade := pl.p.Rebalance.MinTrade; !minTrade.IsZero() && n.Mul(pl.unit[i]).LessThan(minTrade) {
		q, rem := minTrade.QuoRem(pl.unit[i], 0)
		if n = q; rem.Sign() > 0 {
			n = q.Add(oneUnit)
		}
	}
	return move{k: -1, a: a, i: i, side: side, n: pl.most(a, i, side, decimal.Zero, n)}, true
}

// maxPartners is how many partners tryPair tries for one move.
const maxPartners = 3

// partners returns the instruments that account a may trade the other way
// of an order of instrument i on side, best first, at most maxPartners:
// to pay for a buy, those it holds of the leaf sleeves furthest over their
// targets (or of the cash sleeve); to spend a sell's proceeds, those it may
// buy of the leaf sleeves furthest under their targets.
func (pl *planner) partners(a, i int, side Side) []int {
	p := pl.p
	var best [maxPartners]int
	var devs [maxPartners]decimal.Decimal
	n := 0
	for j := range p.Instruments {
		leaf := p.Instruments[j].Sleeve
		if j == i || leaf == p.Instruments[i].Sleeve || pl.unit[j].Sign() <= 0 {
			continue
		}
		dev := pl.deviationAfter(leaf)
		if side == Buy {
			// j is sold: it must be held, over its target or cash.
			if pl.b.Qty[a][j].Sign() <= 0 || (leaf != p.Cash && dev.Sign() <= 0) || pl.limit(a, j).LessThan(p.Instruments[j].Step) {
				continue
			}
		} else if leaf == p.Cash || dev.Sign() >= 0 || !p.Accounts[a].Allows(j) || !pl.mayBuy(j) {
			continue
		}
		// Insert j, keeping the list sorted by |dev|, largest first: over
		// (Buy) the largest dev, under (Sell) the smallest.
		k := n
		for k > 0 && (side == Buy && dev.GreaterThan(devs[k-1]) || side == Sell && dev.LessThan(devs[k-1])) {
			k--
		}
		if k >= maxPartners {
			continue
		}
		if n < maxPartners {
			n++
		}
		copy(best[k+1:n], best[k:n-1])
		copy(devs[k+1:n], devs[k:n-1])
		best[k], devs[k] = j, dev
	}
	return best[:n:n]
}

// tryPair tries n steps of instrument i on side in account a together with
// the trade of its partner that pays for it or spends its proceeds, and
// keeps both when they improve the score.
func (pl *planner) tryPair(a, i int, side Side, n decimal.Decimal, cur *score, withIdle bool) (score, bool) {

	p := pl.p
	if side == Buy && (!p.Accounts[a].Allows(i) || !pl.mayBuy(i)) {
		return *cur, false
	}
	first, ok := pl.moveOn(a, i, side, n)
	if !ok {
		return *cur, false
	}
	for _, j := range pl.partners(a, i, side) {
		if sc, ok := pl.tryPairWith(a, i, j, side, first, cur, withIdle); ok {
			return sc, true
		}
	}
	return *cur, false
}

// tryPairWith tries first, a move of instrument i, with the trade of
// partner j that pays for it or spends its proceeds.
func (pl *planner) tryPairWith(a, i, j int, side Side, first move, cur *score, withIdle bool) (score, bool) {
	p := pl.p
	// want is the partner's steps: sold first to pay for a buy, or bought
	// after a sell with its proceeds and free cash, no further than its
	// sleeve's target.
	var want decimal.Decimal
	if side == Buy {
		// At least one step: the sale may be what keeps cash in its band.
		need := pl.unit[i].Mul(first.n).Sub(decimal.Max(decimal.Zero, pl.cash[a]))
		want = oneUnit
		if need.Sign() > 0 {
			var rem decimal.Decimal
			if want, rem = need.QuoRem(pl.unit[j], 0); rem.Sign() > 0 {
				want = want.Add(oneUnit)
			}
		}
		sell, ok := pl.moveOn(a, j, Sell, want)
		if !ok {
			return *cur, false
		}
		first, want, i, j = sell, first.n, j, i
	} else {
		spend := decimal.Min(pl.unit[i].Mul(first.n).Add(decimal.Max(decimal.Zero, pl.cash[a])), pl.deviationAfter(p.Instruments[j].Sleeve).Neg())
		want, _ = spend.QuoRem(pl.unit[j], 0)
	}
	if first.n.Sign() <= 0 || want.Sign() <= 0 || !pl.feasible(first) {
		return *cur, false
	}
	pl.apply(&first)
	if second, ok := pl.moveOn(a, j, Buy, want); ok && second.n.Sign() > 0 && pl.feasible(second) {
		pl.apply(&second)
		if sc, ok := pl.better(cur, withIdle, pl.unit[first.i].Mul(first.n).Add(pl.unit[second.i].Mul(second.n))); ok {
			return sc, true
		}
		pl.undo(&second)
	}
	pl.undo(&first)
	return *cur, false
}

// polish improves the rounded plan with whole-step moves: first it brings
// back inside their bands the sleeves that rounding (or the destination)
// left outside, then, with destination target, it lowers the largest
// |deviation| and spends idle free cash, and finally it trims steps that
// do not help. Each move is kept only when it improves the score (see
// score for the order of the criteria).
func (pl *planner) polish() {
	p := pl.p
	target := pl.dest == policy.DestinationTarget
	pl.nOrders = len(pl.orders)
	pl.under = make([]bool, 0, len(p.Sleeves))
	pl.dev = make([]decimal.Decimal, len(p.Sleeves))
	pl.refreshDev()
	pl.before = pl.beforeScore()
	defer func() { pl.dev = nil }()
	cur := pl.score(target)
	limit := 4 * (len(pl.orders) + len(p.Sleeves) + pl.nA)
	// Sleeves out of band, by more than their gap.
	for tries := 0; tries < limit; tries++ {
		fixed := false
		for si := range p.Sleeves {
			if !pl.outAfter(si) {
				continue
			}
			hw := pl.s.Sleeves[si].HalfWidthValue
			if !pl.sameTotal {
				hw = p.Sleeves[si].HalfWidth.Mul(pl.totalAfter)
			}
			gap := pl.deviationAfter(si).Abs().Sub(hw)
			if pl.improve(si, gap, true, &cur, target) {
				fixed = true
				break
			}
		}
		if !fixed {
			break
		}
	}
	// The largest deviation, with destination target, and for every
	// destination when the plan made it larger than before.
	before := pl.before
	for tries := 0; tries < limit; tries++ {
		if !target && !devLess(&before, &cur) {
			break
		}
		si, d := pl.largestAfter()
		if si < 0 || !pl.improve(si, d, false, &cur, target) {
			break
		}
	}
	if target {
		pl.spendIdle(&cur, limit)
	}
	pl.trim(&cur)
	pl.compact()
}

// largestAfter returns the sleeve of the largest |deviation| after the
// plan and that deviation.
func (pl *planner) largestAfter() (int, decimal.Decimal) {
	best, most := -1, decimal.Zero
	for si := range pl.p.Sleeves {
		if d := pl.deviationAfter(si).Abs(); d.GreaterThan(most) {
			best, most = si, d
		}
	}
	return best, most
}

// spendIdle buys, with free cash left in an account, steps of the
// instruments it may hold of the leaf sleeves under their targets, while
// that improves the score.
func (pl *planner) spendIdle(cur *score, limit int) {
	p := pl.p
	// Idle cash buys without selling: no pairs.
	pl.noPairs = true
	defer func() { pl.noPairs = false }()
	// One pass over the leaf sleeves under their targets, each as long as
	// idle cash improves it.
	for si := range p.Sleeves {
		if !p.Sleeves[si].Leaf() || si == p.Cash {
			continue
		}
		for tries := 0; tries < limit && cur.idle.Sign() > 0; tries++ {
			d := pl.deviationAfter(si)
			if d.Sign() >= 0 || !pl.improve(si, d.Neg(), false, cur, true) {
				break
			}
		}
	}
}

// trim takes one step off each order, and the whole order when it falls
// below min_trade, where that improves the score: fewer orders and less
// turnover at no cost to the allocation.
func (pl *planner) trim(cur *score) {
	withIdle := pl.dest == policy.DestinationTarget
	for k := range pl.orders {
		o := &pl.orders[k]
		if o.units.Sign() <= 0 || exempt(o.Rule) {
			continue
		}
		// One step fewer must bring its sleeve nearer its target: the right
		// way, and a step worth less than twice the deviation.
		dev := pl.deviationAfter(pl.p.Instruments[o.instrument].Sleeve)
		if dev.Sign() == 0 || (dev.Sign() > 0) != (o.Side == Buy) || !pl.unit[o.instrument].LessThan(dev.Abs().Add(dev.Abs())) {
			continue
		}
		// A sell whose proceeds sit idle first gives back what they left.
		if o.Side == Sell && pl.cash[o.account].Sign() > 0 {
			if q, _ := pl.cash[o.account].QuoRem(pl.unit[o.instrument], 0); q.GreaterThan(oneUnit) {
				if sc, ok := pl.try(pl.fewer(k, q), cur, withIdle); ok {
					*cur = sc
				}
			}
		}
		if o.units.Sign() <= 0 {
			continue
		}
		if sc, ok := pl.try(pl.fewer(k, oneUnit), cur, withIdle); ok {
			*cur = sc
		}
	}
}

// fewer returns the move that takes n steps (at most all) off order k,
// or the whole order when what is left would fall below min_trade.
func (pl *planner) fewer(k int, n decimal.Decimal) move {
	o := &pl.orders[k]
	n = decimal.Min(n, o.units)
	if rest := o.units.Sub(n); rest.Sign() > 0 && rest.Mul(pl.unit[o.instrument]).LessThan(pl.p.Rebalance.MinTrade) {
		n = o.units
	}
	return move{k: k, a: o.account, i: o.instrument, side: o.Side, n: n.Neg()}
}

// beforeScore rates the allocation before the plan.
func (pl *planner) beforeScore() score {
	sc := score{total: pl.T}
	for si := range pl.p.Sleeves {
		d := &pl.s.Sleeves[si]
		if dev := d.Value.Sub(d.TargetValue).Abs(); dev.GreaterThan(sc.dev) {
			sc.dev = dev
		}
	}
	return sc
}

// harms reports whether the plan pushes a sleeve that was inside its band
// out of it, or makes the largest |deviation| larger than before.
func (pl *planner) harms() bool {
	for si := range pl.p.Sleeves {
		if !pl.s.Sleeves[si].Breach && pl.outAfter(si) {
			return true
		}
	}
	after := pl.score(false)
	return pl.totalAfter.Sign() > 0 && devLess(&pl.before, &after)
}

// withdrawAll takes every order back: the plan that does no harm.
func (pl *planner) withdrawAll() {
	for a := range pl.cash {
		pl.cash[a] = sub(pl.b.Cash[a], pl.p.Accounts[a].Reserve)
	}
	pl.orders = pl.orders[:0]
	pl.project()
}

// harmReason is the reason of the sleeves left out of band when the plan
// found did harm and was replaced by the best plan that does none.
const harmReason = "the plans found that bring it back push another sleeve out of its band or make the largest deviation larger; only orders that do no harm are kept"

// blocked says why sleeve si stays out of its band after the plan, from
// what stops one more step that would bring it back: a step that costs
// more than the free cash of every account that may hold it, may_hold,
// min_trade, the wash-sale guard, holdings in fractions of a step or held
// back by the tax rules, or the harm the step would do.
func (pl *planner) blocked(si int) string {
	p := pl.p
	over := pl.deviationAfter(si).Sign() > 0
	buy := !over
	if si == p.Cash {
		buy = over
	}
	var syms []string
	for i := range p.Instruments {
		leaf := p.Instruments[i].Sleeve
		switch {
		case si != p.Cash && !pl.within(leaf, si):
		case si == p.Cash && (leaf == p.Cash || (pl.deviationAfter(leaf).Sign() < 0) != buy):
		default:
			syms = append(syms, p.Instruments[i].Symbol)
		}
	}
	if len(syms) == 0 {
		if buy {
			return "no sleeve is under its target: the free cash has nothing to buy"
		}
		return "no sleeve is over its target: nothing may be sold to raise cash"
	}
	if buy {
		return pl.cannotBuy(syms)
	}
	return pl.cannotSell(syms)
}

// cannotBuy says why no more of the instruments syms is bought.
func (pl *planner) cannotBuy(syms []string) string {
	p := pl.p
	var washed []string
	allowed, cheapest := false, -1
	bestCash := decimal.Zero
	for _, sym := range syms {
		i, _ := p.InstrumentIndex(sym)
		if !pl.mayBuy(i) {
			washed = append(washed, sym)
			continue
		}
		for a := range p.Accounts {
			if !p.Accounts[a].Allows(i) {
				continue
			}
			allowed = true
			if c := pl.cash[a]; c.Sign() > 0 && (cheapest < 0 || c.Sub(pl.unit[i]).GreaterThan(bestCash.Sub(pl.unit[cheapest]))) {
				cheapest, bestCash = i, c
			}
		}
	}
	list := strings.Join(syms, ", ")
	cur := p.Currency
	switch {
	case len(washed) == len(syms):
		return fmt.Sprintf("the wash-sale rule keeps %s from being bought", strings.Join(washed, ", "))
	case !allowed:
		return fmt.Sprintf("no account may hold %s (may_hold)", list)
	case cheapest < 0:
		var with []string
		for a := range p.Accounts {
			if pl.cash[a].Sign() > 0 {
				with = append(with, p.Accounts[a].Name)
			}
		}
		if len(with) > 0 {
			return fmt.Sprintf("the free cash left (in %s) may not buy %s (may_hold), and the accounts that may hold it have none above their reserve", strings.Join(with, ", "), list)
		}
		return fmt.Sprintf("no account that may hold %s has free cash left above its reserve", list)
	case pl.unit[cheapest].GreaterThan(bestCash):
		return fmt.Sprintf("one step of %s costs %s %s, more than the %s %s of free cash left in the account that may hold it with the most",
			p.Instruments[cheapest].Symbol, pl.unit[cheapest].StringFixed(2), cur, bestCash.StringFixed(2), cur)
	case p.Rebalance.MinTrade.GreaterThan(bestCash):
		return fmt.Sprintf("an order of %s would be below min_trade %s: %s %s of free cash is left", p.Instruments[cheapest].Symbol, p.Rebalance.MinTrade, bestCash.StringFixed(2), cur)
	}
	return fmt.Sprintf("buying more of %s would push another sleeve out of its band, make the largest deviation larger, or trade against another order of the plan", list)
}

// cannotSell says why no more of the instruments syms is sold.
func (pl *planner) cannotSell(syms []string) string {
	p := pl.p
	sold := func(a, i int) decimal.Decimal {
		for k := range pl.orders {
			if o := &pl.orders[k]; o.account == a && o.instrument == i && o.Side == Sell {
				return pl.timesStep(i, o.units)
			}
		}
		return decimal.Zero
	}
	for _, sym := range syms {
		i, _ := p.InstrumentIndex(sym)
		for a := range p.Accounts {
			if !pl.limit(a, i).Sub(sold(a, i)).LessThan(p.Instruments[i].Step) {
				return fmt.Sprintf("selling more of %s would push another sleeve out of its band, make the largest deviation larger, or trade against another order of the plan", strings.Join(syms, ", "))
			}
		}
	}
	for _, sym := range syms {
		i, _ := p.InstrumentIndex(sym)
		if why := pl.heldBackReason(i); why != "" {
			return fmt.Sprintf("what is left of %s cannot be sold: %s", sym, why)
		}
	}
	return fmt.Sprintf("what is left of %s is held in fractions of a trading step, which cannot be sold", strings.Join(syms, ", "))
}

// explain returns order o's why: "SLEEVE from W% to W'% (target T%, band
// L%-H%): " and what its rule does.
func (pl *planner) explain(o *Order, r *SleeveReport) string {
	p := pl.p
	pc := percentText
	head := fmt.Sprintf("%s from %s to %s (target %s, band %s-%s): ", r.Sleeve, pc(r.Weight), pc(r.WeightAfter), pc(r.Target), pc(r.BandLow), pc(r.BandHigh))
	switch o.Rule {
	case RuleToTarget:
		return head + "to_target: toward its target"
	case RuleToBandEdge:
		return head + "to_band_edge: back inside the band it breached, near its edge"
	case RuleToMidway:
		return head + "to_midway: halfway back from the band edge it breached to its target"
	case RuleCounterpart:
		return head + "counterpart: inside its band, it takes what the breaching sleeves release or need"
	case RuleFundBuys:
		return head + "fund_buys: a cash-sleeve fund sold to pay for the buys"
	case RuleRelocate:
		return head + fmt.Sprintf("relocate: %s changes accounts so that cash which may not buy what is needed where it sits pays for it elsewhere; the sleeve is unchanged", o.Instrument)
	case RuleRestoreSplit:
		i := o.instrument
		leaf := p.Instruments[i].Sleeve
		share := decimal.Zero
		if v := pl.s.Sleeves[leaf].Value; v.Sign() > 0 {
			share = pl.held[i].DivRound(v, 4)
		}
		return head + fmt.Sprintf("restore_split: %s was %s of the sleeve, against a share of %s with a tolerance of %s of it (bands.within_sleeve)",
			o.Instrument, pc(share), pc(p.Instruments[i].Share), pc(p.Sleeves[leaf].SplitTolerance()))
	case RuleHarvest:
		return head + "harvest: sells lots at a loss and buys the policy's substitute in the same sleeve"
	case RuleInvest:
		return head + "invest: free cash bought toward the target, without selling"
	case RuleWithdraw:
		return head + "withdraw: sold to raise the cash withdrawn, without buying"
	}
	return head + string(o.Rule)
}

// secondStart polishes a second plan, the simple whole-share one (simple),
// and keeps it when it rates better than the plan polished so far: a
// local search from two starts, so that the plan is never worse on the
// allocation than the simple planner's.
func (pl *planner) secondStart() {
	target := true
	pl.dev = make([]decimal.Decimal, len(pl.p.Sleeves))
	pl.refreshDev()
	first := pl.score(target)
	pl.dev = nil
	orders := append([]Order(nil), pl.orders...)
	cash := append([]decimal.Decimal(nil), pl.cash...)
	pl.withdrawAll()
	pl.simple()
	pl.project()
	pl.polish()
	pl.dev = make([]decimal.Decimal, len(pl.p.Sleeves))
	pl.refreshDev()
	second := pl.score(target)
	pl.dev = nil
	h := second.head(&first)
	if h < 0 || h == 0 && (second.idle.LessThan(first.idle) || second.idle.Equal(first.idle) && second.orders < first.orders) {
		return
	}
	pl.orders, pl.cash = orders, cash
	pl.project()
}

// simple places the orders of a simple whole-share plan, sleeve by
// sleeve: the instruments of a leaf sleeve over its target are sold down
// to their target values, rounding sells up to whole steps, tax-advantaged
// accounts first; then each account buys, with its free cash and
// proceeds, the instruments it may hold of the leaf sleeves under their
// targets, up to their target values, rounding down.
func (pl *planner) simple() {
	p, s := pl.p, pl.s
	gap := make([]decimal.Decimal, pl.nI) // target value - held, per instrument
	for i, in := range p.Instruments {
		if in.Sleeve == p.Cash || pl.unit[i].Sign() <= 0 {
			continue
		}
		gap[i] = s.Sleeves[in.Sleeve].TargetValue.Mul(in.Share).Sub(pl.held[i])
		if over := s.Sleeves[in.Sleeve].Value.GreaterThan(s.Sleeves[in.Sleeve].TargetValue); over != (gap[i].Sign() < 0) {
			gap[i] = decimal.Zero // against its sleeve's direction: left alone
		}
	}
	minTrade := p.Rebalance.MinTrade
	for i := range p.Instruments {
		for _, a := range pl.sellOrder {
			if gap[i].Sign() >= 0 {
				break
			}
			want, rem := gap[i].Neg().QuoRem(pl.unit[i], 0)
			if rem.Sign() > 0 {
				want = want.Add(oneUnit)
			}
			most, _ := pl.limit(a, i).QuoRem(p.Instruments[i].Step, 0)
			n := decimal.Min(want, most)
			if n.Sign() <= 0 || n.Mul(pl.unit[i]).LessThan(minTrade) {
				continue
			}
			pl.addSimple(a, i, Sell, n)
			gap[i] = gap[i].Add(n.Mul(pl.unit[i]))
		}
	}
	for _, a := range pl.spendOrder {
		for i := range p.Instruments {
			if pl.cash[a].Sign() <= 0 || gap[i].Sign() <= 0 || !p.Accounts[a].Allows(i) || !pl.mayBuy(i) {
				continue
			}
			n, _ := decimal.Min(gap[i], pl.cash[a]).QuoRem(pl.unit[i], 0)
			if n.Sign() <= 0 || n.Mul(pl.unit[i]).LessThan(minTrade) {
				continue
			}
			pl.addSimple(a, i, Buy, n)
			gap[i] = gap[i].Sub(n.Mul(pl.unit[i]))
		}
	}
}

// addSimple adds an order of n steps of instrument i in account a to the
// simple plan and moves the account's cash.
func (pl *planner) addSimple(a, i int, side Side, n decimal.Decimal) {
	notional := n.Mul(pl.unit[i])
	pl.orders = append(pl.orders, pl.order(a, i, side, n, pl.timesStep(i, n), notional, pl.newRule(i)))
	if side == Sell {
		pl.cash[a] = pl.cash[a].Add(notional)
	} else {
		pl.cash[a] = pl.cash[a].Sub(notional)
	}
}

// percentText writes fraction d as a percentage with two decimals, rounded
// half away from zero ("60.29%"), as d.Shift(2).StringFixed(2) would,
// without decimal arithmetic when d's coefficient fits in an int64.
func percentText(d decimal.Decimal) string {
	e := d.Exponent() + 4 // n = d x 10^4, the hundredths of a percent
	if d.NumDigits() > 15 || e < -18 || e > 3 {
		return d.Shift(2).StringFixed(2) + "%"
	}
	n := d.CoefficientInt64()
	neg := n < 0
	if neg {
		n = -n
	}
	for ; e > 0; e-- {
		n *= 10
	}
	if e < 0 {
		div := int64(1)
		for ; e < 0; e++ {
			div *= 10
		}
		q, r := n/div, n%div
		if 2*r >= div {
			q++
		}
		n = q
	}
	sign := ""
	if neg && n != 0 {
		sign = "-"
	}
	return fmt.Sprintf("%s%d.%02d%%", sign, n/100, n%100)
}
