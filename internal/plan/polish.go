package plan

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/policy"
)

// numbers are the figures the polish rates moves with, as nums (num.go):
// the projection of the orders, made when a polish starts (load) and
// written to the planner's decimals once the plan is chosen (store), so
// that every move tried is applied, rated and taken back without decimal
// arithmetic while the figures fit in an int64.
type numbers struct {
	after []num // projected value per sleeve (pl.after)
	cash  []num // cash left after the orders less the reserve, per account (pl.cash)
	total num   // projected total (pl.totalAfter)
	same  bool  // total equals T (pl.sameTotal)
	// live is true while the figures above, pl.dev and the orders' steps
	// hold the projection (from load until withdrawAll); stale, while the
	// planner's decimals may be behind them (from load until sync).
	live, stale bool
	// done is the score of the projection the last polish left
	// (polishLoaded), with the idle cash, while doneOK: until the
	// projection is loaded or withdrawn (load, loadEmpty, withdrawAll).
	done   score
	doneOK bool

	// Fixed for the planner: T; per instrument the value of a step; per
	// [a*nI+i] the whole steps that may be sold (-1 when the limit is
	// below zero); per account cash less the reserve before the plan; per
	// sleeve the target and the half-width as fractions and as values at
	// T; min_trade.
	loaded      bool
	T, minTrade num
	// minSteps is, per instrument with a step of value, the fewest whole
	// steps worth min_trade: ceil(min_trade / step value).
	minSteps []num
	// e is the exponent the money figures are brought to (money): the
	// smallest of the fixed ones', so that adding and comparing them
	// seldom needs to align exponents.
	e                    int32
	unit, maxSteps, base []num
	// tgt and hwf are set once the total moves (fractions): every change
	// of the total (shift, load, loadEmpty, moveSimple) refreshes pl.dev.
	tgt, hwf, tv, hw []num
	fractions        bool
	gap              []num // scratch of the simple plan, per instrument
	value0           []num // per sleeve, its value before the plan
	leafMoved        []num // scratch of the simple plan, per leaf sleeve: the value its orders move

	// buyLeaf lists, per account a, the leaf sleeves other than cash of
	// the instruments with a step of value that a may buy (may_hold, the
	// wash-sale guard) in buyLeaf[buyableAt[a]:buyableAt[a+1]], and in
	// buyUnit the value of the cheapest step a may buy in each, for
	// idleCash: cheapest first.
	buyLeaf, buyableAt []int
	buyUnit            []num
	// idleAt is, per account whose idleOK is true, the place in buyLeaf
	// of its cheapest leaf sleeve under its target (-1: none), for
	// idleCash: it changes only with the sign of the deviation of a leaf
	// in buyLeaf (buysLeaf[a*nS+leaf]), so shift and refreshDev forget it
	// then (idleOK false); the account's cash is compared with that
	// leaf's step each time.
	idleAt           []int
	idleOK, buysLeaf []bool
	// kept is secondStart's scratch: the first plan's cash, values and
	// deviations while the second is made.
	kept []num
	// underInts and rankInts are the arrays of instrumentsUnder and
	// ranked, made with the others (loadFixed).
	underInts, rankInts []int
}

// orderIndex indexes the orders while the polish moves them (from
// indexOrders to polishDone, ok), so that finding an account's order of an
// instrument, or an order the other way, does not scan the orders: the
// moves it tries only append an order, take the last one back or change
// an order's steps (change keeps the counts).
type orderIndex struct {
	ok bool
	// at is, per [a*nI+i], the first order of instrument i in account a,
	// or -1.
	at []int32
	// Orders with steps, per side (0 buy, 1 sell): of instrument i,
	// relocations aside, in inst[side*nI+i]; of account a in leaf sleeve
	// l, relocations and harvests aside, in leaf[(side*nA+a)*nS+l]; buys
	// of account a in buys[a].
	inst, leaf, buys []int32
}

// sideIndex is 0 for buys, 1 for sells.
func sideIndex(s Side) int {
	if s == Sell {
		return 1
	}
	return 0
}

// indexOrders builds pl.idx from the orders.
func (pl *planner) indexOrders() {
	x, nS := &pl.idx, len(pl.p.Sleeves)
	if x.at == nil {
		all := make([]int32, pl.nA*pl.nI+2*pl.nI+2*pl.nA*nS+pl.nA)
		x.at, all = all[:pl.nA*pl.nI], all[pl.nA*pl.nI:]
		x.inst, all = all[:2*pl.nI], all[2*pl.nI:]
		x.leaf, x.buys = all[:2*pl.nA*nS], all[2*pl.nA*nS:]
	}
	for k := range x.at {
		x.at[k] = -1
	}
	clear(x.inst)
	clear(x.leaf)
	clear(x.buys)
	if pl.plain {
		// The orders are scanned.
		x.ok = false
		return
	}
	for k := range pl.orders {
		o := &pl.orders[k]
		if at := &x.at[o.account*pl.nI+o.instrument]; *at < 0 {
			*at = int32(k)
		}
		if o.n.Sign() > 0 {
			pl.count(o, 1)
		}
	}
	x.ok = true
}

// count adds d to the counts of pl.idx that order o, with steps, is in.
func (pl *planner) count(o *Order, d int32) {
	x, s := &pl.idx, sideIndex(o.Side)
	if s == 0 {
		x.buys[o.account] += d
	}
	if o.Rule != RuleRelocate {
		x.inst[s*pl.nI+o.instrument] += d
		if o.Rule != RuleHarvest {
			x.leaf[(s*pl.nA+o.account)*len(pl.p.Sleeves)+pl.p.Instruments[o.instrument].Sleeve] += d
		}
	}
}

// ranking is the order in which partners looks for partners
// (ranked).
type ranking struct {
	rank     []int
	rankOK   bool
	rankSide Side
	// rankLeaves are the leaf sleeves of the instruments with a step of
	// value, and rankInst[rankAt[si]:rankAt[si+1]] those of sleeve si,
	// in the order of the instruments: fixed for the planner.
	rankLeaves, rankInst, rankAt []int
	// partnerSets keep, per [a*nS+leaf], the partners of account a for
	// the instruments of a leaf sleeve (partners), for one improve: they
	// depend only on the projection, which the moves tried and not kept
	// leave as it was, and on the side, one per improve.
	partnerSets []partnerSet
	// partnerAny is true once partners kept some since partnerSets were
	// last cleared (improve clears them only then).
	partnerAny bool
}

// partnerSet is the partners found for one account and leaf sleeve
// (ranking.partnerSets): of[:n], once ok.
type partnerSet struct {
	ok bool
	n  uint8
	of [maxPartners]int32
}

// numOf returns d as a num: a decimal (big) in every case when the
// planner is exact (tests compare its plans with the fast ones).
func (pl *planner) numOf(d decimal.Decimal) num {
	if pl.exact {
		return bigNum(d)
	}
	return numOf(d)
}

// money returns d as a num at the exponent of the money figures (f.e)
// when it fits there, else as numOf does: the same value either way.
func (pl *planner) money(d decimal.Decimal) num {
	if !pl.exact && d.NumDigits() <= 18 {
		// Straight to the money exponent, without dropping zeros first.
		if x := (num{v: d.CoefficientInt64(), e: d.Exponent()}); x.e >= pl.f.e {
			if v, ok := x.at(pl.f.e); ok {
				return num{v: v, e: pl.f.e}
			}
		}
	}
	return pl.atMoney(pl.numOf(d))
}

// atMoney returns x at the exponent of the money figures (f.e) when it
// fits there, else x.
func (pl *planner) atMoney(x num) num {
	if x.isBig() || x.e <= pl.f.e {
		return x
	}
	if v, ok := x.at(pl.f.e); ok {
		return num{v: v, e: pl.f.e}
	}
	return x
}

// fixedNums are figures of the policy and the holdings as nums, fixed
// for the planner and made once (fixed).
type fixedNums struct {
	share, held []num // per instrument: its share of its sleeve, the household's value of it
	tol         []num // per sleeve: its split tolerance (policy.Sleeve.SplitTolerance)
	// over is, once overOK, whether an instrument was worth more than its
	// share of its sleeve's target value before the plan (overBefore).
	over, overOK bool
}

// overBefore reports whether an instrument other than the cash sleeve's
// was worth more than its share of its sleeve's target value before the
// plan: when none was, the plan need sell nothing.
func (pl *planner) overBefore() bool {
	x := pl.fixed()
	if !x.overOK {
		x.overOK = true
		for i := range pl.p.Instruments {
			if pl.simpleGap(i).Sign() < 0 {
				x.over = true
				break
			}
		}
	}
	return x.over
}

// fixed returns pl's fixedNums.
func (pl *planner) fixed() *fixedNums {
	x := &pl.fixedN
	if x.share == nil {
		p := pl.p
		all := make([]num, 2*pl.nI+len(p.Sleeves))
		x.share, x.held, x.tol = all[:pl.nI], all[pl.nI:2*pl.nI], all[2*pl.nI:]
		for i := range p.Instruments {
			x.share[i], x.held[i] = pl.numOf(p.Instruments[i].Share), pl.numOf(pl.held[i])
		}
		for si := range p.Sleeves {
			if ps := &p.Sleeves[si]; ps.Leaf() && len(ps.Instruments) > 1 {
				x.tol[si] = pl.numOf(ps.SplitTolerance())
			}
		}
	}
	return x
}

// load sets pl.f and pl.dev to the projection of the orders, and the
// steps of each order. The projection is made in nums, as project makes
// it in decimals (which load does not read): from the figures before the
// plan (emptyFigures), the values the orders move into their leaf
// sleeves and the cash each account has left (pl.cash) (moveBy). The
// planner's decimals may then be behind the figures (stale) until sync.
func (pl *planner) load() {
	f := &pl.f
	pl.loadFixed()
	pl.emptyFigures()
	for leaf := range f.leafMoved {
		f.leafMoved[leaf] = pl.zero()
	}
	for k := range pl.orders {
		o := &pl.orders[k]
		// What the order moves, as project reads it: an order that round
		// or the polish left with its steps only (changed) is worth its
		// steps times the value of one.
		var x num
		if o.changed {
			x = o.n.Mul(f.unit[o.instrument])
		} else {
			o.n, x = pl.numOf(o.units), pl.money(o.Notional)
		}
		if o.Side == Sell {
			x = x.Neg()
		}
		leaf := pl.p.Instruments[o.instrument].Sleeve
		f.leafMoved[leaf] = f.leafMoved[leaf].Add(x)
	}
	for a := range f.cash {
		f.cash[a] = pl.money(pl.cash[a])
	}
	pl.moveBy()
	pl.nOrders = len(pl.orders)
	pl.f.live, pl.f.stale, pl.f.doneOK = true, true, false
}

// loadFixed sets the figures of pl.f that are fixed for the planner, once.
func (pl *planner) loadFixed() {
	p, f := pl.p, &pl.f
	nS := len(p.Sleeves)
	if !f.loaded {
		f.loaded = true
		// At most one entry of buyLeaf per account and leaf sleeve with
		// instruments.
		most := 0
		for si := range p.Sleeves {
			if len(p.Sleeves[si].Instruments) > 0 {
				most += pl.nA
			}
		}
		// The figures in one array, the view's (look) and secondStart's
		// scratch too.
		all := make([]num, 2*nS+pl.nA+2*pl.nI+pl.nA*pl.nI+pl.nA+4*nS+nS+nS+pl.nI+most+nS+2*nS+pl.nA+2*nS)
		next := func(n int) []num {
			out := all[:n:n]
			all = all[n:]
			return out
		}
		f.after, f.cash, f.unit, f.maxSteps, f.base = next(nS), next(pl.nA), next(pl.nI), next(pl.nA*pl.nI), next(pl.nA)
		f.gap, f.leafMoved, f.minSteps, f.buyUnit, f.value0 = next(pl.nI), next(nS), next(pl.nI), next(most)[:0], next(nS)
		f.tgt, f.hwf, f.tv, f.hw, pl.dev = next(nS), next(nS), next(nS), next(nS), next(nS)
		pl.view.abs, pl.view.hw, f.kept = next(nS), next(nS), next(pl.nA+2*nS)
		f.T, f.minTrade = pl.numOf(pl.T), pl.numOf(p.Rebalance.MinTrade)
		for i := range p.Instruments {
			// As round read it, when it did (an instrument with an order).
			if pl.unitN != nil && !pl.unitN[i].IsZero() {
				f.unit[i] = pl.unitN[i]
			} else {
				f.unit[i] = pl.numOf(pl.unit[i])
			}
		}
		for a := range p.Accounts {
			// In nums: the difference is exact either way, without
			// making a decimal of it.
			f.base[a] = pl.numOf(pl.b.Cash[a]).Sub(pl.numOf(p.Accounts[a].Reserve))
		}
		for i := range p.Instruments {
			var step num // read once, for the first account that may sell i
			for a := range p.Accounts {
				switch l := pl.limit(a, i); l.Sign() {
				case -1:
					f.maxSteps[a*pl.nI+i] = numInt(-1)
				case 1:
					if step == (num{}) {
						step = pl.figureNum(p.Instruments[i].StepFigure())
					}
					f.maxSteps[a*pl.nI+i], _ = pl.numOf(l).QuoRem(step)
				}
			}
		}
		for si := range p.Sleeves {
			f.tv[si], f.hw[si] = pl.numOf(pl.s.Sleeves[si].TargetValue), pl.numOf(pl.s.Sleeves[si].HalfWidthValue)
		}
		// The money figures at one exponent, the smallest of theirs.
		f.e = f.T.e
		money := [][]num{f.unit, f.base, f.tv, f.hw, {f.minTrade}}
		for _, xs := range money {
			for _, x := range xs {
				if !x.isBig() && x.v != 0 {
					f.e = min(f.e, x.e)
				}
			}
		}
		for _, xs := range money[:4] {
			for k, x := range xs {
				if x.e != f.e {
					xs[k] = pl.atMoney(x)
				}
			}
		}
		f.T, f.minTrade = pl.atMoney(f.T), pl.atMoney(f.minTrade)
		for si := range p.Sleeves {
			f.value0[si] = pl.money(pl.s.Sleeves[si].Value)
		}
		for i := range f.minSteps {
			if f.minTrade.Sign() > 0 && f.unit[i].Sign() > 0 {
				q, rem := f.minTrade.QuoRem(f.unit[i])
				if rem.Sign() > 0 {
					q = q.Add(numOne)
				}
				f.minSteps[i] = q
			}
		}
		// The integers fixed for the planner in one array too: the lists
		// of instrumentsUnder (each instrument is under its sleeve, the
		// sleeves above it but cash, and cash), ranked's, and those below.
		under := 0
		for i := range p.Instruments {
			for x := p.Instruments[i].Sleeve; x >= 0; x = p.Sleeves[x].Parent {
				if x != p.Cash {
					under++
				}
			}
			under++
		}
		nRank := 3*nS + 1 + 2*pl.nI
		ints := make([]int, nS+under+nRank+pl.nA+1+pl.nI+most+pl.nA)
		f.underInts, ints = ints[:nS+under], ints[nS+under:]
		f.rankInts, ints = ints[:nRank], ints[nRank:]
		// What each account may buy is fixed for the planner: the
		// wash-sale guard changes only between planners (washConflicts).
		f.idleAt, ints = ints[:pl.nA], ints[pl.nA:]
		f.buyableAt, ints = ints[:pl.nA+1], ints[pl.nA+1:]
		// The instruments some account may buy, cheapest step first (an
		// insertion sort, stable: a few instruments).
		buyable, ints := ints[:0:pl.nI], ints[pl.nI:]
		for i := range p.Instruments {
			if p.Instruments[i].Sleeve == p.Cash || f.unit[i].Sign() <= 0 || !pl.mayBuy(i) {
				continue
			}
			k := len(buyable)
			buyable = append(buyable, i)
			for ; k > 0 && f.unit[i].LessThan(f.unit[buyable[k-1]]); k-- {
				buyable[k] = buyable[k-1]
			}
			buyable[k] = i
		}
		flags := make([]bool, pl.nA+pl.nA*nS+nS+pl.nI)
		f.idleOK, f.buysLeaf, flags = flags[:pl.nA], flags[pl.nA:pl.nA+pl.nA*nS], flags[pl.nA+pl.nA*nS:]
		pl.view.out, pl.eligible = flags[:nS], flags[nS:]
		// Each account's leaves in the order of their cheapest steps it may
		// buy, met first in buyable (which of two leaves of equal steps
		// comes first changes nothing: mayBuyUnder reads only the step).
		f.buyLeaf = ints[:0]
		for a := range p.Accounts {
			for _, i := range buyable {
				leaf := p.Instruments[i].Sleeve
				if !p.Accounts[a].Allows(i) || f.buysLeaf[a*nS+leaf] {
					continue
				}
				f.buysLeaf[a*nS+leaf] = true
				f.buyLeaf, f.buyUnit = append(f.buyLeaf, leaf), append(f.buyUnit, f.unit[i])
			}
			f.buyableAt[a+1] = len(f.buyLeaf)
		}
	}
}

// store writes the figures of pl.f back to the planner's decimals, where
// they changed. A sleeve worth what it was worth before the plan, and a
// total that did not move, take the decimals of the snapshot, as project
// gives them. The other decimals are read at the money exponent (money),
// as the figures are, so that most comparisons need not align exponents.
func (pl *planner) store() {
	f := &pl.f
	for si := range f.after {
		switch {
		case f.after[si].Equal(f.value0[si]):
			pl.after[si] = pl.s.Sleeves[si].Value
		case pl.after[si] == (decimal.Decimal{}) || !pl.money(pl.after[si]).Equal(f.after[si]):
			// The zero Decimal is one never made: no projection was
			// (load projects the orders itself).
			pl.after[si] = f.after[si].dec()
		}
	}
	for a := range f.cash {
		if !pl.money(pl.cash[a]).Equal(f.cash[a]) {
			pl.cash[a] = f.cash[a].dec()
		}
	}
	switch {
	case f.same:
		pl.totalAfter = pl.T
	case !pl.money(pl.totalAfter).Equal(f.total):
		pl.totalAfter = f.total.dec()
	}
	pl.sameTotal = f.same
}

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
	dev, total num
	idle       num
	orders     int
	// lazy is true when idle is not worked out yet (decide): only while
	// the projection is still the one rated (idleNow works it out).
	lazy bool
}

// devLess reports whether x's largest deviation, as a fraction of its
// total, is smaller than y's.
func devLess(x, y *score) bool {
	if x.total.Equal(y.total) {
		return x.dev.LessThan(y.dev)
	}
	return cmpProducts(x.dev, y.total, y.dev, x.total) < 0
}

// head compares x and y on the allocation alone (harm, sleeves out of
// band, largest deviation): -1 when x is better, 1 when y is, 0 on a tie.
func (x *score) head(y *score) int {
	switch {
	case x.harmed != y.harmed:
		return cmp.Compare(x.harmed, y.harmed)
	case x.out != y.out:
		return cmp.Compare(x.out, y.out)
	case devLess(x, y):
		return -1
	case devLess(y, x):
		return 1
	}
	return 0
}

// decide reports whether the projection, rated on the allocation already
// (sc: harm, sleeves out of band, largest deviation, total, orders), is
// better than cur; the idle cash (withIdle) is computed only when it
// decides or is kept, into sc. turn is the change in turnover of the move
// made: the last criterion.
func (pl *planner) decide(sc, cur *score, withIdle bool, turn num) bool {
	return pl.decideOn(sc.head(cur), sc, cur, withIdle, turn)
}

// decideOn is decide, with sc.head(cur) known: h (the moves made since
// change neither, when rate worked out sc before them).
func (pl *planner) decideOn(h int, sc, cur *score, withIdle bool, turn num) bool {
	switch h {
	case 1:
		return false
	case -1:
		if withIdle {
			// Worked out only when a later decision needs it (idleNow):
			// most moves after this one are decided on the allocation.
			sc.lazy = !pl.plain
			if !sc.lazy {
				sc.idle = pl.idleCash()
			}
		}
		return true
	}
	if withIdle {
		sc.idle = pl.idleCash()
	}
	if c := sc.idle.Cmp(cur.idle); c != 0 {
		return c < 0
	}
	if sc.orders != cur.orders {
		return sc.orders < cur.orders
	}
	return turn.Sign() < 0
}

// idleNow works out cur.idle when decide left it for later (lazy); the
// projection must still be cur's: before a move is made.
func (pl *planner) idleNow(cur *score) {
	if cur.lazy {
		cur.idle, cur.lazy = pl.idleCash(), false
	}
}

// zero returns 0 at the exponent of the money figures (f.e): the sums
// and comparisons that start from it take num's short paths.
func (pl *planner) zero() num { return num{e: pl.f.e} }

// targetValueAfter returns sleeve si's target value out of the projected
// total.
func (pl *planner) targetValueAfter(si int) num {
	if pl.f.same {
		return pl.f.tv[si]
	}
	// Mul, without its short path for small figures, which a total in
	// cents seldom is: so that this is inlined.
	return pl.f.tgt[si].mulSlow(pl.f.total)
}

// deviationAfter returns after - target x total of sleeve si, which shift
// keeps.
func (pl *planner) deviationAfter(si int) num { return pl.dev[si] }

// refreshDev computes pl.dev for every sleeve.
func (pl *planner) refreshDev() {
	if f := &pl.f; !f.same && !f.fractions {
		// The total moved: the targets and half-widths as fractions of it
		// (targetValueAfter, halfWidthAfter), once.
		f.fractions = true
		for si := range pl.p.Sleeves {
			f.tgt[si], f.hwf[si] = pl.numOf(pl.p.Sleeves[si].Target), pl.numOf(pl.p.Sleeves[si].HalfWidth)
		}
	}
	pl.view.ok = false
	clear(pl.f.idleOK)
	for si := range pl.dev {
		pl.dev[si] = pl.f.after[si].Sub(pl.targetValueAfter(si))
	}
}

// halfWidthAfter returns sleeve si's half-width out of the projected
// total.
func (pl *planner) halfWidthAfter(si int) num {
	if pl.f.same {
		return pl.f.hw[si]
	}
	// As targetValueAfter.
	return pl.f.hwf[si].mulSlow(pl.f.total)
}

// outNow reports whether sleeve si lies outside its band after the orders,
// as outAfter does, from the figures of the polish.
func (pl *planner) outNow(si int) bool {
	return pl.dev[si].Abs().GreaterThan(pl.halfWidthAfter(si))
}

// score rates the current projection (from pl.view). withIdle adds the
// idle free cash (destination target).
func (pl *planner) score(withIdle bool) score {
	v := pl.viewed()
	sc := score{total: pl.f.total, orders: pl.nOrders, harmed: v.nHarmed, out: v.nOut, dev: v.largest(pl.zero(), nil)}
	if devLess(&pl.before, &sc) {
		// A larger largest deviation than before the plan is harm too.
		sc.harmed++
	}
	if withIdle {
		sc.idle = pl.idleCash()
	}
	return sc
}

// idleCash returns the free cash left in accounts that could buy a step of
// an instrument of a sleeve under its target.
func (pl *planner) idleCash() num {
	idle := pl.zero()
	f := &pl.f
	for a := range pl.p.Accounts {
		if f.cash[a].Sign() <= 0 {
			continue
		}
		if pl.mayBuyUnder(a) {
			idle = idle.Add(f.cash[a])
		}
	}
	return idle
}

// mayBuyUnder reports whether account a's free cash could buy a step of
// an instrument it may hold of a leaf sleeve under its target.
func (pl *planner) mayBuyUnder(a int) bool {
	f := &pl.f
	k := f.idleAt[a]
	if pl.plain || !f.idleOK[a] {
		k = pl.cheapestUnder(a)
		f.idleOK[a], f.idleAt[a] = !pl.plain, k
	}
	if k < 0 {
		return false
	}
	c, u := f.cash[a], f.buyUnit[k]
	if u.d == c.d && u.e == c.e {
		// The common case, inline: small, at one exponent.
		return u.v <= c.v
	}
	return !u.GreaterThan(c)
}

// cheapestUnder returns the place in buyLeaf (and buyUnit) of the leaf
// sleeve under its target with the cheapest step that account a may buy,
// or -1 when it may buy none: buyLeaf lists each account's leaves
// cheapest step first.
func (pl *planner) cheapestUnder(a int) int {
	f := &pl.f
	for k := f.buyableAt[a]; k < f.buyableAt[a+1]; k++ {
		if pl.dev[f.buyLeaf[k]].Sign() < 0 {
			return k
		}
	}
	return -1
}

// exempt reports whether an order's rule lets its account trade both sides
// of its sleeve: a relocation, a split restoration or a harvest.
func exempt(r Rule) bool {
	return r == RuleRelocate || r == RuleRestoreSplit || r == RuleHarvest
}

// shift moves the projection by amount, the value of steps of
// instrument i bought (amount > 0) or sold in account a (amount), and
// the account's cash.
func (pl *planner) shift(a, i int, amount num) {
	p, f := pl.p, &pl.f
	was := f.cash[a]
	f.cash[a] = was.Sub(amount)
	leaf := p.Instruments[i].Sleeve
	under := pl.dev[leaf].Sign() < 0
	for x := leaf; x >= 0; x = p.Sleeves[x].Parent {
		f.after[x] = f.after[x].Add(amount)
		pl.dev[x] = pl.dev[x].Add(amount)
		pl.reView(x)
	}
	if pl.dev[leaf].Sign() < 0 != under {
		// The accounts that may buy the leaf may now buy it, or no more.
		nS := len(p.Sleeves)
		for b := range f.idleOK {
			if f.buysLeaf[b*nS+leaf] {
				f.idleOK[b] = false
			}
		}
	}
	if was.Sign() >= 0 && f.cash[a].Sign() >= 0 {
		// Free cash pays for it all: the total is unchanged.
		f.after[p.Cash] = f.after[p.Cash].Sub(amount)
		pl.dev[p.Cash] = pl.dev[p.Cash].Sub(amount)
		pl.reView(p.Cash)
		return
	}
	// The account's cash crosses or stays below its reserve: only the part
	// above the reserve is free cash, and the total moves.
	zero := pl.zero()
	cashDelta := maxNum(zero, f.cash[a]).Sub(maxNum(zero, was))
	f.after[p.Cash] = f.after[p.Cash].Add(cashDelta)
	if moved := amount.Add(cashDelta); !moved.IsZero() {
		f.total = f.total.Add(moved)
		f.same = f.total.Equal(f.T)
	}
	pl.refreshDev()
}

// move is a change of one order: n more steps (n < 0: fewer) of
// instrument i in account a on side, on order k (-1: a new order).
type move struct {
	k, a, i int
	side    Side
	n       num
	added   bool // apply appended the order
	// amt is the value the move moves into its instrument's sleeve, once
	// amount worked it out (amtOK): n must not change after.
	amt   num
	amtOK bool
}

// apply makes move m and keeps the projection, the count of orders and
// the turnover. An order that falls to zero steps stays in place until
// compact removes it.
func (pl *planner) apply(m *move) {
	if m.k < 0 {
		m.k, m.added = pl.newOrder(m.a, m.i, m.side), true
	}
	pl.change(m.k, m.n, pl.amount(m))
}

// newOrder appends an order of no step of instrument i in account a on
// side, as the polish adds one, and returns its place: what the polish
// reads of an order; settle fills in the rest of the orders it keeps.
// Made in place, as an Order is large.
func (pl *planner) newOrder(a, i int, side Side) int {
	pl.orders = append(pl.orders, Order{})
	k := len(pl.orders) - 1
	o := &pl.orders[k]
	o.Side, o.Rule, o.account, o.instrument, o.changed = side, pl.newRule(i), a, i, true
	if at := &pl.idx.at[a*pl.nI+i]; pl.idx.ok && *at < 0 {
		*at = int32(k)
	}
	return k
}

// undo takes move m, made by apply, back.
func (pl *planner) undo(m *move) {
	pl.change(m.k, m.n.Neg(), pl.amount(m).Neg())
	if m.added {
		if at := &pl.idx.at[m.a*pl.nI+m.i]; pl.idx.ok && *at == int32(m.k) {
			*at = -1
		}
		pl.orders = pl.orders[:m.k]
		m.k, m.added = -1, false
	}
}

// change adds n steps to order k, which move amount (pl.amount) into its
// instrument's sleeve.
func (pl *planner) change(k int, n, amount num) {
	o := &pl.orders[k]
	was := o.n.Sign() > 0
	o.n = o.n.Add(n)
	o.changed = true
	if is := o.n.Sign() > 0; is != was {
		d := int32(-1)
		if is {
			d = 1
		}
		pl.nOrders += int(d)
		if pl.idx.ok {
			pl.count(o, d)
		}
	}
	pl.shift(o.account, o.instrument, amount)
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

// polishDone removes the orders that fell to zero steps and leaves the
// projection in pl.f, as load would leave it: the planner's decimals are
// written from it only once the plan is chosen (sync), so that the plans
// compared and not kept never are. The orders the polish changed keep
// their steps in n (changed) until settle. The deviations (pl.dev), the
// view and the idle cash known stay as the moves left them: shift kept
// them exact, and dropping orders of no step moves nothing (only the
// polish without shortcuts, plain, works them out again).
func (pl *planner) polishDone() {
	pl.idx.ok = false
	pl.dropEmpty()
	pl.nOrders = len(pl.orders)
	if pl.plain {
		pl.refreshDev()
	}
	pl.f.stale = true
}

// sync writes the projection of the polish (pl.f) back to the planner's
// decimals when they are behind it (stale), for the code that reads them
// after the polish.
func (pl *planner) sync() {
	if pl.f.stale {
		pl.store()
		pl.f.stale = false
	}
}

// compact is for the code that changes settled orders after the polish
// (units, changed): it removes the orders left without units and sets the
// steps, quantity and notional of those changed.
func (pl *planner) compact() {
	out := pl.orders[:0]
	for j := range pl.orders {
		// By place: an Order is large.
		if o := &pl.orders[j]; o.units.Sign() > 0 {
			if o.changed {
				o.n = pl.numOf(o.units)
			}
			out = append(out, *o)
		}
	}
	pl.orders = out
	pl.settle()
}

// dropEmpty removes the orders with no step left (n).
func (pl *planner) dropEmpty() {
	k := 0
	for k < len(pl.orders) && pl.orders[k].n.Sign() > 0 {
		k++
	}
	out := pl.orders[:k]
	for j := k; j < len(pl.orders); j++ {
		// By place: an Order is large.
		if pl.orders[j].n.Sign() > 0 {
			out = append(out, pl.orders[j])
		}
	}
	pl.orders = out
}

// settle sets the units, quantity and notional of the orders the polish
// changed: once, for the plan kept.
func (pl *planner) settle() {
	pl.sync()
	for k := range pl.orders {
		if o := &pl.orders[k]; o.changed {
			if o.Account == "" {
				// An order the polish added holds only what setOrder
				// sets (apply), and its steps.
				pl.setOrder(o, o.account, o.instrument, o.Side, o.Rule)
			}
			o.units = o.n.dec()
			o.Quantity = pl.timesStep(o.instrument, o.units)
			o.Notional = pl.notional(o.instrument, o.n)
			o.changed = false
		}
	}
}

// notional returns n steps x the value of a step of instrument i, the
// notional of an order of n steps: exact as decimal's product is, from the
// value of a step as round read it (pl.unitN), or read now. Not from the
// polish's f.unit, which holds it at the money exponent: the same value,
// but its product would carry the padding on (a coefficient near the
// int64 limit, which makes the sums of notionals leave dec64's short
// paths).
func (pl *planner) notional(i int, n num) decimal.Decimal {
	var u num
	if pl.unitN != nil {
		u = pl.unitN[i]
	}
	if u.IsZero() {
		u = pl.numOf(pl.unit[i])
	}
	return n.Mul(u).dec()
}

// conflicts reports whether an order of instrument i in account a on side
// would trade against the plan: the household trading i the other way
// (relocations aside), or account a trading i's sleeve the other way
// (relocations and harvests aside: the polish adds no split restoration).
func (pl *planner) conflicts(a, i int, side Side) bool {
	leaf := pl.p.Instruments[i].Sleeve
	if x := &pl.idx; x.ok {
		s := 1 - sideIndex(side) // the other way
		return x.inst[s*pl.nI+i] > 0 || x.leaf[(s*pl.nA+a)*len(pl.p.Sleeves)+leaf] > 0
	}
	for k := range pl.orders {
		o := &pl.orders[k]
		if o.Side == side || o.n.Sign() <= 0 {
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
func (pl *planner) feasible(m *move) bool {
	p, f := pl.p, &pl.f
	units := m.n
	if m.k >= 0 {
		o := &pl.orders[m.k]
		if exempt(o.Rule) && !(pl.wide && o.Rule == RuleRestoreSplit && m.n.Sign() < 0) {
			return false
		}
		units = o.n.Add(m.n)
		if units.Sign() < 0 || o.n.IsZero() && pl.conflicts(m.a, m.i, m.side) {
			return false
		}
	} else if m.n.Sign() <= 0 || pl.conflicts(m.a, m.i, m.side) {
		return false
	}
	if units.Sign() > 0 {
		if pl.belowMin(m.i, units) {
			return false
		}
	}
	if m.side == Sell && !pl.taxFirst(*m) {
		return false
	}
	if m.side == Sell && m.n.Sign() > 0 && pl.sellsBought(m.i) {
		return false
	}
	cost := pl.amount(m) // cash the move takes from the account
	if m.side == Sell {
		// units x step > limit, for whole units: units > the whole steps
		// of the limit.
		if m.n.Sign() > 0 && units.GreaterThan(f.maxSteps[m.a*pl.nI+m.i]) {
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
	left := f.cash[m.a].Sub(cost)
	if left.Sign() >= 0 {
		return true
	}
	if m.side == Buy {
		return false
	}
	if pl.idx.ok {
		if pl.idx.buys[m.a] > 0 {
			return false
		}
	} else {
		for k := range pl.orders {
			if o := &pl.orders[k]; o.account == m.a && o.Side == Buy && o.n.Sign() > 0 {
				return false
			}
		}
	}
	return !left.LessThan(f.base[m.a])
}

// belowMin reports whether n whole steps of instrument i are worth less
// than min_trade: n x step value < min_trade, that is n < minSteps when
// the step has a value.
func (pl *planner) belowMin(i int, n num) bool {
	f := &pl.f
	if f.unit[i].Sign() <= 0 {
		return n.Mul(f.unit[i]).LessThan(f.minTrade)
	}
	return n.LessThan(f.minSteps[i])
}

// most returns n, or fewer steps when account a's cash (buy) or what it
// may sell beyond the units of its order (sell) allows no more.
func (pl *planner) most(a, i int, side Side, units, n num) num {
	f := &pl.f
	var most, zero num
	if side == Buy {
		if f.cash[a].Sign() <= 0 {
			return zero
		}
		most, _ = f.cash[a].QuoRem(f.unit[i])
	} else {
		most = f.maxSteps[a*pl.nI+i].Sub(units)
	}
	return maxNum(zero, minNum(n, most))
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
	sold := func(a int) (num, bool) {
		from := 0
		if pl.idx.ok {
			// No order of m.i in account a before its first.
			if from = int(pl.idx.at[a*pl.nI+m.i]); from < 0 {
				return num{}, false
			}
		}
		for k := from; k < len(pl.orders); k++ {
			if o := &pl.orders[k]; o.account == a && o.instrument == m.i && o.Side == Sell && !exempt(o.Rule) {
				return o.n, o.n.Sign() > 0
			}
		}
		return num{}, false
	}
	for a := range p.Accounts {
		if a == m.a || p.Accounts[a].Type.TaxAdvantaged() == advantaged {
			continue
		}
		units, sells := sold(a)
		if advantaged && sells {
			return false
		}
		// Another step may be sold (limit - units x step >= step) when
		// fewer units are sold than the whole steps of the limit.
		if !advantaged && pl.f.maxSteps[a*pl.nI+m.i].GreaterThan(units) {
			return false
		}
	}
	return true
}

// stepsFor returns how many steps of instrument i move about amount: the
// nearest number, at least one; exceed adds one so that the move passes
// amount.
func (pl *planner) stepsFor(i int, amount num, exceed bool) num {
	if exceed {
		q, _ := amount.QuoRem(pl.f.unit[i])
		return q.Add(numOne)
	}
	return maxNum(numOne, amount.DivRound(pl.f.unit[i]))
}

// try makes move m when it is feasible and improves the score cur, which
// it then sets to the new score; it reports whether it did. m is the
// caller's to throw away: apply changes it.
func (pl *planner) try(m *move, cur *score, withIdle bool) bool {
	if m.n.IsZero() || !pl.feasible(m) {
		return false
	}
	amount := pl.amount(m)
	var sc score
	rated := false
	if !pl.plain && pl.keepsTotal(m.a, amount) {
		rated = pl.rate(m, nil, amount, cur, &sc)
	}
	h := 0 // unknown unless rated: decide may compare the idle cash
	if rated {
		if h = sc.head(cur); h > 0 {
			return false
		}
	}
	if h == 0 {
		pl.idleNow(cur)
	}
	pl.apply(m)
	turn := amount // unit x n, the change in turnover
	if m.side == Sell {
		turn = amount.Neg()
	}
	var ok bool
	if rated {
		// The move leaves sc's allocation as rate rated it: h holds.
		sc.orders = pl.nOrders
		ok = pl.decideOn(h, &sc, cur, withIdle, turn)
	} else {
		sc = pl.score(false)
		ok = pl.decide(&sc, cur, withIdle, turn)
	}
	if ok {
		*cur = sc
		return true
	}
	pl.undo(m)
	return false
}

// view is the projection rated per sleeve, for score and worse: built
// (look) when the total moves (refreshDev), else kept up to date sleeve
// by sleeve as moves are made and taken back (shift, reView).
type view struct {
	ok            bool
	out           []bool // per sleeve: outside its band
	abs           []num  // per sleeve: |deviation|
	hw            []num  // per sleeve: half-width (halfWidthAfter), fixed while the total is unchanged
	nOut, nHarmed int    // sleeves out of band; of those, the ones that were inside before the plan
	// frozen holds the view as it was before the first move of a pair
	// (freeze), for worse; the updates wait until thaw.
	frozen bool
	held   []int
}

// viewed returns pl.view, built.
func (pl *planner) viewed() *view {
	v := &pl.view
	if !v.ok || pl.plain && !v.frozen {
		pl.look()
	}
	return v
}

// largest returns the largest |deviation| of the view's sleeves but
// those in skip, or most when larger.
func (v *view) largest(most num, skip []int) num {
	for si := range v.abs {
		x := v.abs[si]
		if x.d == most.d && x.e == most.e {
			// The common case, inline: small, at one exponent.
			if x.v <= most.v {
				continue
			}
		} else if !x.GreaterThan(most) {
			continue
		}
		if !slices.Contains(skip, si) {
			most = x
		}
	}
	return most
}

// look builds pl.view from the projection.
func (pl *planner) look() {
	v, p := &pl.view, pl.p
	nS := len(p.Sleeves)
	if v.out == nil {
		v.out, v.abs, v.hw = make([]bool, nS), make([]num, nS), make([]num, nS)
	}
	v.nOut, v.nHarmed = 0, 0
	for si := range p.Sleeves {
		v.abs[si], v.hw[si] = pl.dev[si].Abs(), pl.halfWidthAfter(si)
		v.out[si] = v.abs[si].GreaterThan(v.hw[si])
		if v.out[si] {
			v.nOut++
			if !pl.s.Sleeves[si].Breach {
				v.nHarmed++
			}
		}
	}
	v.ok = true
}

// reView updates pl.view for sleeve si, whose deviation moved while the
// total did not.
func (pl *planner) reView(si int) {
	v := &pl.view
	if !v.ok {
		return
	}
	if v.frozen {
		v.held = append(v.held, si)
		return
	}
	v.abs[si] = pl.dev[si].Abs()
	if out := v.abs[si].GreaterThan(v.hw[si]); out != v.out[si] {
		c := 1
		if !out {
			c = -1
		}
		v.out[si] = out
		v.nOut += c
		if !pl.s.Sleeves[si].Breach {
			v.nHarmed += c
		}
	}
}

// freeze keeps pl.view as it is while the first move of a pair
// is made (worse rates the pair against it); thaw brings it up to date.
func (pl *planner) freeze() {
	v := pl.viewed()
	v.frozen, v.held = true, v.held[:0]
}

// thaw ends freeze: the sleeves moved since are rated again.
func (pl *planner) thaw() {
	v := &pl.view
	if !v.frozen {
		return
	}
	v.frozen = false
	for _, si := range v.held {
		pl.reView(si)
	}
}

// maxMoved is the most sleeves worse rates a move for: the instrument's
// sleeve, its ancestors and the cash sleeve.
const maxMoved = 8

// amount returns the value move m moves into its instrument's sleeve.
func (pl *planner) amount(m *move) num {
	if !m.amtOK {
		m.amt, m.amtOK = pl.f.unit[m.i].Mul(m.n), true
		if m.side == Sell {
			m.amt = m.amt.Neg()
		}
	}
	return m.amt
}

// keepsTotal reports whether a move of amount (amount) in account a
// leaves the projected total as it is: when free cash pays for it all
// (shift).
func (pl *planner) keepsTotal(a int, amount num) bool {
	// cash >= 0 and cash - amount >= 0, without the difference.
	c := pl.f.cash[a]
	return c.Sign() >= 0 && !c.LessThan(amount)
}

// rate rates the projection move m (of amount, pl.amount) would leave on
// the allocation, without making it, into sc: the harm, the sleeves out
// of band, the largest deviation and the total, as score does, so that a
// move that rates worse than the current score (score.head) is not made.
// The move must leave the total as it is (keepsTotal): then only the
// sleeves on its instrument's path and the cash sleeve move, and the
// rest of the projection is rated once (pl.view). made is a move already
// made since the view was taken (nil: none, freeze), which also left the
// total as it was: its sleeves are rated afresh too. It reports false
// when it cannot tell cheaply; score then does. When the sleeves the
// moves move already make the score worse than cur (more harm or more
// sleeves out of band, or as many and a larger deviation), rate leaves
// the other sleeves out: sc.head(cur) > 0 all the same.
func (pl *planner) rate(m, made *move, amount num, cur, sc *score) bool {
	p, f := pl.p, &pl.f
	var moved [maxMoved]int
	var delta [maxMoved]num
	n := 0
	add := func(si int, d num) bool {
		for k := 0; k < n; k++ {
			if moved[k] == si {
				delta[k] = delta[k].Add(d)
				return true
			}
		}
		if n == maxMoved {
			return false
		}
		moved[n], delta[n] = si, d
		n++
		return true
	}
	if made != nil {
		// Its sleeves, already moved in pl.dev.
		for x := p.Instruments[made.i].Sleeve; x >= 0; x = p.Sleeves[x].Parent {
			if !add(x, pl.zero()) {
				return false
			}
		}
	}
	for x := p.Instruments[m.i].Sleeve; x >= 0; x = p.Sleeves[x].Parent {
		if !add(x, amount) {
			return false
		}
	}
	if !add(p.Cash, amount.Neg()) {
		return false
	}
	v := &pl.view
	if made == nil {
		v = pl.viewed()
	}
	*sc = score{harmed: v.nHarmed, out: v.nOut, total: f.total, dev: pl.zero()}
	for k := 0; k < n; k++ {
		si := moved[k]
		d := pl.dev[si].Add(delta[k]).Abs()
		if out := d.GreaterThan(v.hw[si]); out != v.out[si] {
			c := 1
			if !out {
				c = -1
			}
			sc.out += c
			if !pl.s.Sleeves[si].Breach {
				sc.harmed += c
			}
		}
		if d.GreaterThan(sc.dev) {
			sc.dev = d
		}
	}
	// cur rates the projection before the moves (it always rates the
	// plan as it stands), of the same total, which the moves keep: a
	// larger deviation than cur's (and the largest is at least sc.dev) is
	// worse, and can only add harm.
	if sc.harmed > cur.harmed || sc.harmed == cur.harmed && (sc.out > cur.out || sc.out == cur.out && sc.dev.GreaterThan(cur.dev)) {
		return true
	}
	// The largest |deviation| of the sleeves the moves leave alone.
	sc.dev = v.largest(sc.dev, moved[:n])
	if devLess(&pl.before, sc) {
		sc.harmed++
	}
	return true
}

// improve tries the moves that bring sleeve si toward its target by about
// amount (exceed: by more than amount), and makes the first that improves
// the score: more (or fewer) steps on an order of the plan, or a new
// order. Too much in a sleeve wants its instruments sold; too much cash
// wants an instrument of a sleeve under its target bought.
func (pl *planner) improve(si int, amount num, exceed bool, cur *score, withIdle bool) bool {
	p, f := pl.p, &pl.f
	pl.rankOK = false
	if pl.partnerAny {
		clear(pl.partnerSets)
		pl.partnerAny = false
	}
	over := pl.deviationAfter(si).Sign() > 0
	wantSell := over
	if si == p.Cash {
		wantSell = !over
	}
	// Unless the move must pass amount (exceed), a step of amount x 2 or
	// more cannot bring the sleeve nearer its target: skip it.
	var twice num
	if !exceed {
		twice = amount.Add(amount)
	}
	// The instruments whose moves may bring si toward its target, once:
	// the moves tried are taken back, or the first that improves is kept
	// and improve returns.
	if pl.under == nil {
		pl.under = pl.instrumentsUnder()
	}
	eligible := pl.eligible
	clear(eligible)
	for _, i := range pl.under[si] {
		leaf := p.Instruments[i].Sleeve
		if si == p.Cash && (leaf == p.Cash || (pl.deviationAfter(leaf).Sign() > 0) != wantSell) {
			// Cash: buy what is under its target, sell what is over it.
			continue
		}
		eligible[i] = f.unit[i].Sign() > 0 && (exceed || f.unit[i].LessThan(twice))
	}
	side := Buy
	if wantSell {
		side = Sell
	}
	for k := range pl.orders {
		o := &pl.orders[k]
		if !eligible[o.instrument] || o.n.Sign() <= 0 {
			continue
		}
		// On side (o.Side == side, without comparing the strings).
		with := (o.Side == Sell) == wantSell
		if with && !pl.canAdd(o.account, o.instrument, side) && !(pl.wide && side == Buy) {
			continue
		}
		n := pl.stepsFor(o.instrument, amount, exceed)
		var m move
		if with {
			m = move{k: k, a: o.account, i: o.instrument, side: o.Side, n: pl.most(o.account, o.instrument, o.Side, o.n, n)}
		} else {
			// Fewer steps on an order the other way.
			m = pl.fewer(k, n)
		}
		if pl.try(&m, cur, withIdle) {
			return true
		}
		if pl.wide {
			// The move as a whole, paid for by fewer steps of a buy of
			// another sleeve in the account.
			if with {
				m = move{k: k, a: o.account, i: o.instrument, side: o.Side, n: n}
			} else {
				m = pl.fewer(k, n)
			}
			if pl.tryFunded(si, &m, cur, withIdle) {
				return true
			}
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
			if !eligible[i] {
				continue
			}
			var n num
			for _, a := range pl.sellOrder {
				if !pair && !pl.canAdd(a, i, side) {
					continue
				}
				if n.IsZero() {
					n = pl.stepsFor(i, amount, exceed)
				}
				ok := false
				switch {
				case pair:
					ok = pl.tryPair(a, i, side, n, cur, withIdle)
				case !pl.hasOrder(a, i):
					m, _ := pl.moveOn(a, i, side, n)
					ok = pl.try(&m, cur, withIdle)
				}
				if ok {
					return true
				}
			}
		}
	}
	return false
}

// rescue tries, for sleeve si still outside its band by amount once
// improve found no move that brings it back, the moves improve leaves out
// otherwise (wide): a buy of more steps than the account's cash pays
// for, with a sale of its pair that pays for them (tryPair), or with
// fewer steps of a buy of another sleeve in the account (tryFunded); and
// fewer steps of a split restoration. Few plans get here: only those with
// a sleeve out of band after the moves of improve, so the moves cost no
// time on the others, and the plans where improve finds a move stay as
// they were.
func (pl *planner) rescue(si int, amount num, cur *score, withIdle bool) bool {
	pl.wide = true
	defer func() { pl.wide = false }()
	return pl.improve(si, amount, true, cur, withIdle)
}

// tryFunded makes move m, which brings sleeve si toward its target, when
// the cash it takes from its account beyond the account's free cash is
// paid for by fewer steps of one buy of the account in a leaf sleeve
// outside si (a buy of si's own instruments would undo the move), and the
// two improve the score cur, which it then sets to the new score; it
// reports whether it did. m is the caller's to throw away.
func (pl *planner) tryFunded(si int, m *move, cur *score, withIdle bool) bool {
	p, f := pl.p, &pl.f
	if m.n.IsZero() {
		return false
	}
	first := *m
	need := pl.amount(&first).Sub(maxNum(pl.zero(), f.cash[first.a]))
	if need.Sign() <= 0 {
		return false // the account pays for it: try tried it
	}
	for k := range pl.orders {
		o := &pl.orders[k]
		if o.account != first.a || o.Side != Buy || o.n.Sign() <= 0 || k == first.k {
			continue
		}
		if leaf := p.Instruments[o.instrument].Sleeve; si != p.Cash && pl.within(leaf, si) || f.unit[o.instrument].Sign() <= 0 {
			continue
		}
		steps, rem := need.QuoRem(f.unit[o.instrument])
		if rem.Sign() > 0 {
			steps = steps.Add(numOne)
		}
		if steps.GreaterThan(o.n) {
			continue
		}
		fund := pl.fewer(k, steps)
		if !pl.feasible(&fund) {
			continue
		}
		pl.idleNow(cur)
		turn := f.unit[fund.i].Mul(fund.n)
		pl.apply(&fund)
		second := first
		if pl.feasible(&second) {
			turn = turn.Add(f.unit[second.i].Mul(second.n))
			pl.apply(&second)
			sc := pl.score(false)
			if pl.decide(&sc, cur, withIdle, turn) {
				*cur = sc
				return true
			}
			pl.undo(&second)
		}
		pl.undo(&fund)
	}
	return false
}

// instrumentsUnder returns, per sleeve, the instruments of it and of the
// sleeves below it, in their order; every instrument for the cash sleeve
// (improve sells or buys any of them for cash).
func (pl *planner) instrumentsUnder() [][]int {
	p := pl.p
	// Counted first, so that the lists share one array (f.underInts,
	// the counts first).
	n, all := pl.f.underInts[:len(p.Sleeves)], pl.f.underInts[len(p.Sleeves):]
	each := func(add func(si, i int)) {
		for i := range p.Instruments {
			for x := p.Instruments[i].Sleeve; x >= 0; x = p.Sleeves[x].Parent {
				if x != p.Cash {
					add(x, i)
				}
			}
			add(p.Cash, i)
		}
	}
	each(func(si, _ int) { n[si]++ })
	under := make([][]int, len(p.Sleeves))
	for si := range under {
		under[si], all = all[:0:n[si]], all[n[si]:]
	}
	each(func(si, i int) { under[si] = append(under[si], i) })
	return under
}

// canAdd is a cheap first check that account a could trade at least one
// more step of instrument i on side: a buy needs may_hold, the wash-sale
// guard and a step's worth of cash; a sell needs a holding.
func (pl *planner) canAdd(a, i int, side Side) bool {
	if side == Sell {
		return pl.b.Qty[a][i].Sign() > 0
	}
	return pl.p.Accounts[a].Allows(i) && pl.mayBuy(i) && pl.f.cash[a].Sign() > 0 && !pl.f.unit[i].GreaterThan(pl.f.cash[a])
}

// moveOn returns the move of n steps of instrument i in account a on side:
// on the account's order of i, or as a new order; ok is false when the
// account trades i the other way.
func (pl *planner) moveOn(a, i int, side Side, n num) (move, bool) {
	return pl.moveSteps(a, i, side, n, true)
}

// moveSteps is moveOn; capped false leaves the steps of a buy as many as
// asked however little cash the account has (a pair pays for them).
func (pl *planner) moveSteps(a, i int, side Side, n num, capped bool) (move, bool) {
	k := -1
	if pl.idx.ok {
		k = int(pl.idx.at[a*pl.nI+i])
	} else {
		for j := range pl.orders {
			if o := &pl.orders[j]; o.account == a && o.instrument == i {
				k = j
				break
			}
		}
	}
	if k >= 0 {
		o := &pl.orders[k]
		if o.Side != side {
			return move{}, false
		}
		if capped || side != Buy {
			n = pl.most(a, i, side, o.n, n)
		}
		return move{k: k, a: a, i: i, side: side, n: n}, true
	}
	if f := &pl.f; pl.belowMin(i, n) {
		q, rem := f.minTrade.QuoRem(f.unit[i])
		if n = q; rem.Sign() > 0 {
			n = q.Add(numOne)
		}
	}
	if capped || side != Buy {
		n = pl.most(a, i, side, num{}, n)
	}
	return move{k: -1, a: a, i: i, side: side, n: n}, true
}

// maxPartners is how many partners tryPair tries for one move.
const maxPartners = 3

// partners returns the instruments that account a may trade the other way
// of an order of instrument i on side, best first, at most maxPartners, in
// best: to pay for a buy, those it holds of the leaf sleeves furthest over
// their targets (or of the cash sleeve); to spend a sell's proceeds, those
// it may buy of the leaf sleeves furthest under their targets. Ties keep
// the order of the instruments.
func (pl *planner) partners(a, i int, side Side, best *[maxPartners]int) []int {
	p := pl.p
	if pl.plain {
		return pl.findPartners(a, i, side, best)
	}
	nS := len(p.Sleeves)
	if pl.partnerSets == nil {
		pl.partnerSets = make([]partnerSet, pl.nA*nS)
	}
	set := &pl.partnerSets[a*nS+p.Instruments[i].Sleeve]
	if !set.ok {
		found := pl.findPartners(a, i, side, best)
		for j, x := range found {
			set.of[j] = int32(x)
		}
		set.ok, set.n = true, uint8(len(found))
		pl.partnerAny = true
		return found
	}
	for j, x := range set.of[:set.n] {
		best[j] = int(x)
	}
	return best[:set.n]
}

// findPartners is partners, worked out: they depend on i only through
// its leaf sleeve.
func (pl *planner) findPartners(a, i int, side Side, best *[maxPartners]int) []int {
	p, f := pl.p, &pl.f
	n := 0
	for _, j := range pl.ranked(side) {
		leaf := p.Instruments[j].Sleeve
		if j == i || leaf == p.Instruments[i].Sleeve {
			continue
		}
		dev := pl.deviationAfter(leaf)
		if side == Buy {
			// j is sold: it must be held, over its target or cash, with a
			// whole step that may be sold.
			if pl.b.Qty[a][j].Sign() <= 0 || (leaf != p.Cash && dev.Sign() <= 0) || f.maxSteps[a*pl.nI+j].LessThan(numOne) {
				continue
			}
		} else if leaf == p.Cash || dev.Sign() >= 0 || !p.Accounts[a].Allows(j) || !pl.mayBuy(j) {
			continue
		}
		best[n] = j
		if n++; n == maxPartners {
			break
		}
	}
	return best[:n]
}

// sellsBought reports whether selling more of instrument i would sell a
// sleeve the plan buys in some account when no instrument was over its
// target before the plan (overBefore): such a sleeve is over its target
// only because of the plan's own buys, and wants fewer bought, not a sale
// in one account of what another buys, in a plan that need sell nothing.
func (pl *planner) sellsBought(i int) bool {
	leaf := pl.p.Instruments[i].Sleeve
	return leaf != pl.p.Cash && !pl.overBefore() && pl.householdBuys(leaf)
}

// householdBuys reports whether an account of the plan buys an
// instrument of leaf sleeve leaf (relocations and harvests aside).
func (pl *planner) householdBuys(leaf int) bool {
	nS := len(pl.p.Sleeves)
	if x := &pl.idx; x.ok {
		for a := 0; a < pl.nA; a++ {
			if x.leaf[a*nS+leaf] > 0 { // side 0: buys
				return true
			}
		}
		return false
	}
	for k := range pl.orders {
		o := &pl.orders[k]
		if o.Side == Buy && o.n.Sign() > 0 && o.Rule != RuleRelocate && o.Rule != RuleHarvest && pl.p.Instruments[o.instrument].Sleeve == leaf {
			return true
		}
	}
	return false
}

// ranked returns the instruments with a step of value, by the deviation
// of their sleeves, largest first for side Buy (partners sold to pay for
// a buy), smallest first for Sell; ties in the order of the instruments.
// The ranking is kept until the deviations change: improve asks for it
// afresh (pl.rankOK), and the moves it tries are taken back.
func (pl *planner) ranked(side Side) []int {
	if pl.rankOK && pl.rankSide == side {
		return pl.rank
	}
	p, f := pl.p, &pl.f
	if pl.rankLeaves == nil {
		// The leaf sleeves of the instruments with a step of value, and
		// those instruments, per sleeve in the order of the instruments.
		nS, nI := len(p.Sleeves), pl.nI
		ints := f.rankInts // 3*nS+1+2*nI, zero (loadFixed)
		pl.rankAt = ints[:nS+1]
		pl.rankLeaves = ints[nS+1 : nS+1 : 2*nS+1]
		next := ints[2*nS+1 : 3*nS+1]
		pl.rankInst = ints[3*nS+1 : 3*nS+1+nI]
		pl.rank = ints[3*nS+1+nI : 3*nS+1+nI : 3*nS+1+2*nI]
		for j := range p.Instruments {
			if f.unit[j].Sign() > 0 {
				pl.rankAt[p.Instruments[j].Sleeve+1]++
			}
		}
		for si := range p.Sleeves {
			if pl.rankAt[si+1] > 0 {
				pl.rankLeaves = append(pl.rankLeaves, si)
			}
			pl.rankAt[si+1] += pl.rankAt[si]
		}
		pl.rankInst = pl.rankInst[:pl.rankAt[nS]]
		copy(next, pl.rankAt[:nS])
		for j := range p.Instruments {
			if f.unit[j].Sign() > 0 {
				si := p.Instruments[j].Sleeve
				pl.rankInst[next[si]] = j
				next[si]++
			}
		}
	}
	// A stable sort of the instruments by their sleeves' deviations: the
	// sleeves sorted, then the instruments of sleeves with equal
	// deviations merged in their order.
	cmp := func(x, y int) int {
		c := pl.dev[x].Cmp(pl.dev[y])
		if side == Buy {
			return -c
		}
		return c
	}
	slices.SortStableFunc(pl.rankLeaves, cmp)
	pl.rank = pl.rank[:0]
	for g := 0; g < len(pl.rankLeaves); {
		h := g + 1
		for h < len(pl.rankLeaves) && cmp(pl.rankLeaves[g], pl.rankLeaves[h]) == 0 {
			h++
		}
		from := len(pl.rank)
		for _, si := range pl.rankLeaves[g:h] {
			pl.rank = append(pl.rank, pl.rankInst[pl.rankAt[si]:pl.rankAt[si+1]]...)
		}
		if h > g+1 {
			slices.Sort(pl.rank[from:])
		}
		g = h
	}
	pl.rankOK, pl.rankSide = true, side
	return pl.rank
}

// tryPair tries n steps of instrument i on side in account a together with
// the trade of its partner that pays for it or spends its proceeds, and
// keeps both when they improve the score cur, which it then sets to the
// new score; it reports whether it did.
func (pl *planner) tryPair(a, i int, side Side, n num, cur *score, withIdle bool) bool {
	p := pl.p
	if side == Buy && (!p.Accounts[a].Allows(i) || !pl.mayBuy(i)) {
		return false
	}
	// Rescuing a sleeve (wide), the sale pays for as many steps as the
	// sleeve needs, not only those the account's cash would.
	first, ok := pl.moveSteps(a, i, side, n, !pl.wide)
	if !ok {
		return false
	}
	var best [maxPartners]int
	partners := pl.partners(a, i, side, &best)
	if len(partners) == 0 {
		return false
	}
	// What the partner pays for or spends, the same for each partner (a
	// pair tried and not kept is taken back): the cost of the buy less
	// the free cash, or the proceeds of the sell and the free cash.
	f := &pl.f
	pay := f.unit[i].Mul(first.n)
	if free := maxNum(pl.zero(), f.cash[a]); side == Buy {
		pay = pay.Sub(free)
	} else {
		pay = pay.Add(free)
	}
	feasible := 0 // first's feasibility, once known for a sell: 1 yes, -1 no
	for _, j := range partners {
		if pl.tryPairWith(a, i, j, side, first, pay, &feasible, cur, withIdle) {
			return true
		}
	}
	return false
}

// tryPairWith tries first, a move of instrument i, with the trade of
// partner j that pays for it or spends its proceeds: pay is the cost of
// a buy less account a's free cash, or the proceeds of a sell and that
// cash (tryPair); feasible keeps whether a sell first is feasible, once
// known, for the next partner. It sets cur to the new score when it keeps
// the pair.
func (pl *planner) tryPairWith(a, i, j int, side Side, first move, pay num, feasible *int, cur *score, withIdle bool) bool {
	p, f := pl.p, &pl.f
	// want is the partner's steps: sold first to pay for a buy, or bought
	// after a sell with its proceeds and free cash, no further than its
	// sleeve's target.
	var want num
	if side == Buy {
		// At least one step: the sale may be what keeps cash in its band.
		need := pay
		want = numOne
		if need.Sign() > 0 {
			var rem num
			if want, rem = need.QuoRem(f.unit[j]); rem.Sign() > 0 {
				want = want.Add(numOne)
			}
		}
		sell, ok := pl.moveOn(a, j, Sell, want)
		if !ok {
			return false
		}
		first, want, i, j = sell, first.n, j, i
	} else {
		spend := minNum(pay, pl.deviationAfter(p.Instruments[j].Sleeve).Neg())
		want, _ = spend.QuoRem(f.unit[j])
	}
	if first.n.Sign() <= 0 || want.Sign() <= 0 {
		return false
	}
	if side == Buy {
		if !pl.feasible(&first) {
			return false
		}
	} else {
		if *feasible == 0 {
			*feasible = -1
			if pl.feasible(&first) {
				*feasible = 1
			}
		}
		if *feasible < 0 {
			return false
		}
	}
	// decide may compare the idle cash of the projection before the pair.
	pl.idleNow(cur)
	// The view of the projection before the first move, for worse.
	keeps := !pl.plain && pl.keepsTotal(first.a, pl.amount(&first))
	if keeps {
		pl.freeze()
	}
	pl.apply(&first)
	if second, ok := pl.moveOn(a, j, Buy, want); ok && second.n.Sign() > 0 && pl.feasible(&second) {
		var sc score
		rated := false
		if amount := pl.amount(&second); keeps && pl.keepsTotal(second.a, amount) {
			rated = pl.rate(&second, &first, amount, cur, &sc)
		}
		if !rated || sc.head(cur) <= 0 {
			pl.thaw()
			pl.apply(&second)
			if rated {
				sc.orders = pl.nOrders
			} else {
				sc = pl.score(false)
			}
			if pl.decide(&sc, cur, withIdle, f.unit[first.i].Mul(first.n).Add(f.unit[second.i].Mul(second.n))) {
				*cur = sc
				return true
			}
			pl.undo(&second)
		}
	}
	pl.undo(&first)
	pl.thaw()
	return false
}

// polish improves the rounded plan with whole-step moves: first it brings
// back inside their bands the sleeves that rounding (or the destination)
// left outside, then, with destination target, it lowers the largest
// |deviation| and spends idle free cash, and finally it trims steps that
// do not help. Each move is kept only when it improves the score (see
// score for the order of the criteria).
func (pl *planner) polish() {
	pl.load()
	pl.polishLoaded()
}

// polishLoaded is polish on the figures pl.f already holds.
func (pl *planner) polishLoaded() {
	p := pl.p
	pl.f.doneOK = false
	target := pl.dest == policy.DestinationTarget
	pl.indexOrders()
	if pl.before.total.IsZero() {
		// Fixed for the planner: the allocation before the plan.
		pl.before = pl.beforeScore()
	}
	cur := pl.score(target)
	limit := 4 * (len(pl.orders) + len(p.Sleeves) + pl.nA)
	// The passes, and when a sleeve is still out of its band after them,
	// the moves they leave out (rescue): once one is kept, the passes
	// again from the better plan. Each round starts from a plan rated
	// better than the last one ended with, so the plans where rescue
	// finds nothing are those the passes alone find, and the others are
	// better by the polish's own order. A plan that still does harm is
	// not rescued: the planner starts again from no order (makeWith), as
	// it did before rescue, and that start is rescued.
	for round := 0; ; round++ {
		pl.passes(&cur, target, limit)
		if round == len(p.Sleeves) || cur.harmed > 0 || !pl.rescueAny(&cur, target) {
			break
		}
	}
	pl.polishDone()
	// cur rates the projection left (every move kept made it cur), but
	// for orders of no step that load counted.
	pl.idleNow(&cur)
	cur.orders = pl.nOrders
	pl.f.done, pl.f.doneOK = cur, !pl.plain
}

// passes runs the stages of the polish once on the plan rated cur: the
// sleeves out of band are brought back, with destination target (or when
// the plan made the largest deviation larger) the largest deviation is
// lowered and idle free cash spent, and steps that do not help trimmed.
func (pl *planner) passes(cur *score, target bool, limit int) {
	p := pl.p
	// Sleeves out of band, by more than their gap.
	for tries := 0; tries < limit; tries++ {
		fixed := false
		for si := range p.Sleeves {
			// outNow, as the view keeps it.
			if !pl.viewed().out[si] {
				continue
			}
			gap := pl.deviationAfter(si).Abs().Sub(pl.halfWidthAfter(si))
			if pl.improve(si, gap, true, cur, target) {
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
		if !target && !devLess(&before, cur) {
			break
		}
		si, d := pl.largestAfter()
		if si < 0 || !pl.improve(si, d, false, cur, target) {
			break
		}
	}
	if target {
		pl.spendIdle(cur, limit)
	}
	pl.trim(cur)
}

// rescueAny tries rescue on each sleeve out of its band, by more than its
// gap, and reports whether it kept a move.
func (pl *planner) rescueAny(cur *score, target bool) bool {
	for si := range pl.p.Sleeves {
		if !pl.viewed().out[si] {
			continue
		}
		gap := pl.deviationAfter(si).Abs().Sub(pl.halfWidthAfter(si))
		if pl.rescue(si, gap, cur, target) {
			return true
		}
	}
	return false
}

// largestAfter returns the sleeve of the largest |deviation| after the
// plan and that deviation.
func (pl *planner) largestAfter() (int, num) {
	best, most := -1, pl.zero()
	for si, d := range pl.viewed().abs {
		if d.d == most.d && d.e == most.e {
			// The common case, inline: small, at one exponent.
			if d.v <= most.v {
				continue
			}
		} else if !d.GreaterThan(most) {
			continue
		}
		best, most = si, d
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
		for tries := 0; tries < limit; tries++ {
			if pl.idleNow(cur); cur.idle.Sign() <= 0 {
				break
			}
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
	f := &pl.f
	for k := range pl.orders {
		o := &pl.orders[k]
		if o.n.Sign() <= 0 || exempt(o.Rule) {
			continue
		}
		// One step fewer must bring its sleeve nearer its target: the right
		// way, and a step worth less than twice the deviation.
		dev := pl.deviationAfter(pl.p.Instruments[o.instrument].Sleeve)
		if dev.Sign() == 0 || (dev.Sign() > 0) != (o.Side == Buy) || !f.unit[o.instrument].LessThan(dev.Abs().Add(dev.Abs())) {
			continue
		}
		// A sell whose proceeds sit idle first gives back what they left.
		if o.Side == Sell && f.cash[o.account].Sign() > 0 {
			if q, _ := f.cash[o.account].QuoRem(f.unit[o.instrument]); q.GreaterThan(numOne) {
				m := pl.fewer(k, q)
				pl.try(&m, cur, withIdle)
			}
		}
		if o.n.Sign() <= 0 {
			continue
		}
		m := pl.fewer(k, numOne)
		pl.try(&m, cur, withIdle)
	}
}

// fewer returns the move that takes n steps (at most all) off order k,
// or the whole order when what is left would fall below min_trade.
func (pl *planner) fewer(k int, n num) move {
	o := &pl.orders[k]
	n = minNum(n, o.n)
	if rest := o.n.Sub(n); rest.Sign() > 0 && pl.belowMin(o.instrument, rest) {
		n = o.n
	}
	return move{k: k, a: o.account, i: o.instrument, side: o.Side, n: n.Neg()}
}

// beforeScore rates the allocation before the plan.
func (pl *planner) beforeScore() score {
	sc := score{total: pl.f.T, dev: pl.zero()}
	for si := range pl.p.Sleeves {
		if dev := pl.f.value0[si].Sub(pl.f.tv[si]).Abs(); dev.GreaterThan(sc.dev) {
			sc.dev = dev
		}
	}
	return sc
}

// harms reports whether the plan pushes a sleeve that was inside its band
// out of it, or makes the largest |deviation| larger than before.
func (pl *planner) harms() bool {
	if !pl.f.live {
		pl.load()
	}
	for si := range pl.p.Sleeves {
		if !pl.s.Sleeves[si].Breach && pl.outNow(si) {
			return true
		}
	}
	after := pl.f.done // its largest deviation and total
	if !pl.f.doneOK {
		after = pl.score(false)
	}
	return pl.f.total.Sign() > 0 && devLess(&pl.before, &after)
}

// withdrawAll takes every order back: the plan that does no harm.
func (pl *planner) withdrawAll() {
	for a := range pl.cash {
		pl.cash[a] = sub(pl.b.Cash[a], pl.p.Accounts[a].Reserve)
	}
	pl.orders = pl.orders[:0]
	pl.project()
	pl.f.live, pl.f.stale, pl.f.doneOK = false, false, false
}

// harmReason is the reason of the sleeves left out of band when the plan
// found did harm and was replaced by the best plan that does none.
const harmReason = "the plans found that bring it back push another sleeve out of its band or make the largest deviation larger; only orders that do no harm are kept"

// deviationDec returns after - target x total of sleeve si from the
// planner's decimals, for the reasons written after the polish.
func (pl *planner) deviationDec(si int) decimal.Decimal {
	if pl.sameTotal {
		return pl.after[si].Sub(pl.s.Sleeves[si].TargetValue)
	}
	return pl.after[si].Sub(pl.p.Sleeves[si].Target.Mul(pl.totalAfter))
}

// blocked says why sleeve si stays out of its band after the plan, from
// what stops one more step that would bring it back: a step that costs
// more than the free cash of every account that may hold it, may_hold,
// min_trade, the wash-sale guard, holdings in fractions of a step or held
// back by the tax rules, or the harm the step would do.
func (pl *planner) blocked(si int) string {
	p := pl.p
	over := pl.deviationDec(si).Sign() > 0
	buy := !over
	if si == p.Cash {
		buy = over
	}
	var syms []string
	for i := range p.Instruments {
		leaf := p.Instruments[i].Sleeve
		switch {
		case si != p.Cash && !pl.within(leaf, si):
		case si == p.Cash && (leaf == p.Cash || (pl.deviationDec(leaf).Sign() < 0) != buy):
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

// appendHead appends the head of the why of an order of the sleeve of
// report r: "SLEEVE from W% to W'% (target T%, band L%-H%): ".
func appendHead(buf []byte, r *SleeveReport) []byte {
	buf = append(append(buf, r.Sleeve...), " from "...)
	buf = append(appendPercent(buf, r.Weight), " to "...)
	buf = append(appendPercent(buf, r.WeightAfter), " (target "...)
	buf = append(appendPercent(buf, r.Target), ", band "...)
	buf = append(appendPercent(buf, r.BandLow), '-')
	return append(appendPercent(buf, r.BandHigh), "): "...)
}

// appendWhy appends order o's why to buf: its sleeve's head (appendHead)
// and what its rule does.
func (pl *planner) appendWhy(buf, head []byte, o *Order) []byte {
	p := pl.p
	pc := percentText
	buf = append(buf, head...)
	switch o.Rule {
	case RuleToTarget:
		return append(buf, "to_target: toward its target"...)
	case RuleToBandEdge:
		return append(buf, "to_band_edge: back inside the band it breached, near its edge"...)
	case RuleToMidway:
		return append(buf, "to_midway: halfway back from the band edge it breached to its target"...)
	case RuleCounterpart:
		return append(buf, "counterpart: inside its band, it takes what the breaching sleeves release or need"...)
	case RuleFundBuys:
		return append(buf, "fund_buys: a cash-sleeve fund sold to pay for the buys"...)
	case RuleRelocate:
		return fmt.Appendf(buf, "relocate: %s changes accounts so that cash which may not buy what is needed where it sits pays for it elsewhere; the sleeve is unchanged", o.Instrument)
	case RuleRestoreSplit:
		i := o.instrument
		leaf := p.Instruments[i].Sleeve
		share := decimal.Zero
		if v := pl.s.Sleeves[leaf].Value; v.Sign() > 0 {
			share = pl.held[i].DivRound(v, 4)
		}
		return fmt.Appendf(buf, "restore_split: %s was %s of the sleeve, against a share of %s with a tolerance of %s of it (bands.within_sleeve)",
			o.Instrument, pc(share), pc(p.Instruments[i].Share), pc(p.Sleeves[leaf].SplitTolerance()))
	case RuleHarvest:
		return append(buf, "harvest: sells lots at a loss and buys the policy's substitute in the same sleeve"...)
	case RuleInvest:
		return append(buf, "invest: free cash bought toward the target, without selling"...)
	case RuleWithdraw:
		return append(buf, "withdraw: sold to raise the cash withdrawn, without buying"...)
	}
	return append(buf, o.Rule...)
}

// secondStart polishes a second plan, the simple whole-share one (simple),
// and keeps it when it rates better than the plan polished so far: a
// local search from two starts, so that the plan is never worse on the
// allocation than the simple planner's.
func (pl *planner) secondStart() {
	target := true
	if !pl.f.live {
		pl.load()
	}
	first := pl.f.done
	if !pl.f.doneOK {
		first = pl.score(target)
	}
	// The first plan and the polish's figures of it, kept to be put back
	// (the planner's decimals stay those of the first plan until sync).
	// Its orders stay where they are: the second plan is made in the
	// array after them (round leaves room for it), so that neither plan
	// is copied; should the second plan need more room, append moves it
	// to an array of its own and leaves the first as it is.
	orders := pl.orders
	pl.orders = orders[len(orders):len(orders)]
	f := &pl.f
	nA, nS := len(f.cash), len(f.after)
	kept := f.kept
	copy(kept, f.cash)
	copy(kept[nA:], f.after)
	copy(kept[nA+nS:], pl.dev)
	total, same, nOrders, stale := f.total, f.same, pl.nOrders, f.stale
	pl.loadEmpty()
	pl.simple()
	pl.polishLoaded()
	second := pl.f.done
	if !pl.f.doneOK {
		second = pl.score(target)
	}
	h := second.head(&first)
	if h < 0 || h == 0 && (second.idle.LessThan(first.idle) || second.idle.Equal(first.idle) && second.orders < first.orders) {
		// The second plan is kept. The planner's decimals are still the
		// first plan's: sync writes every one that differs from the
		// polish's figures (store), which leaves them all at the second
		// plan's values, as it would from the decimals of no order at all.
		f.live, f.stale = true, true
		f.done, f.doneOK = second, !pl.plain
		return
	}
	pl.orders = orders
	copy(f.cash, kept)
	copy(f.after, kept[nA:])
	copy(pl.dev, kept[nA+nS:])
	f.total, f.same, pl.nOrders, f.stale = total, same, nOrders, stale
	pl.view.ok = false
	clear(f.idleOK)
	f.done, f.doneOK = first, !pl.plain
}

// loadEmpty sets the polish's figures to the projection of no order at
// all, from the figures before the plan: what withdrawAll and then load
// would set, without the decimals. The planner's decimals are left as
// they are (the figures are ahead of them: stale). Only simple follows
// it, which works out the deviations (pl.dev) once it placed its orders.
func (pl *planner) loadEmpty() {
	f := &pl.f
	pl.emptyFigures()
	pl.orders = pl.orders[:0]
	pl.nOrders = 0
	f.doneOK = false
	if pl.plain {
		// Its orders are applied one by one (addSimple), which reads the
		// deviations; else simple reads none of them before moveSimple
		// works them out.
		pl.refreshDev()
	}
	f.live, f.stale = true, true
}

// emptyFigures sets the cash, the sleeves' values and the total of pl.f
// to the projection of no order at all (not the deviations).
func (pl *planner) emptyFigures() {
	p, f := pl.p, &pl.f
	zero := pl.zero()
	copy(f.cash, f.base) // cash less the reserve, as withdrawAll
	// The leaf sleeves' values before the plan; the cash sleeve's
	// instruments and the free cash of each account; the sleeves above,
	// the sums of theirs (project).
	for si := range p.Sleeves {
		f.after[si] = zero
		if p.Sleeves[si].Leaf() && si != p.Cash {
			f.after[si] = f.value0[si]
		}
	}
	c := zero
	for _, i := range p.Sleeves[p.Cash].Instruments {
		c = c.Add(pl.money(pl.held[i]))
	}
	for a := range f.cash {
		c = c.Add(maxNum(zero, f.cash[a]))
	}
	f.after[p.Cash] = c
	for si := len(p.Sleeves) - 1; si >= 0; si-- {
		for _, ch := range p.Sleeves[si].Children {
			f.after[si] = f.after[si].Add(f.after[ch])
		}
	}
	f.total = zero
	for si := range p.Sleeves {
		if p.Sleeves[si].Parent < 0 {
			f.total = f.total.Add(f.after[si])
		}
	}
	f.same = f.total.Equal(f.T)
}

// simple places the orders of a simple whole-share plan on the
// projection of no order at all (loadEmpty must have run): each
// instrument over its share of its sleeve's target value is sold down to
// it, rounding sells up to whole steps, tax-advantaged accounts first;
// then each account, in the policy's order, buys with its free cash and proceeds the instruments it may hold
// that are under their shares, up to them, rounding down, except where it
// sells the same sleeve (no account trades a sleeve both ways). This is
// the plan of the simple planner the tests compare with
// (baseline_test.go), within the rules the planner keeps.
func (pl *planner) simple() {
	p, f := pl.p, &pl.f
	gap := f.gap // target value - held, per instrument
	clear(gap)
	for i := range p.Instruments {
		g := pl.simpleGap(i)
		if g.IsZero() {
			continue
		}
		// The gap is only divided by the step's value u = U x 10^k (U an
		// integer), compared with zero and moved by whole steps, so it may
		// be rounded down to a multiple of 10^k: floor(floor(y)/U) =
		// floor(y/U) and ceil(ceil(y)/U) = ceil(y/U) for an integer U > 0.
		// Rounded, it fits a num where the share's digits made it big.
		// At the money exponent, as the cash and step values it is
		// compared with and moved by.
		gap[i] = pl.atMoney(g.RoundFloor(pl.unit[i].Exponent()))
	}
	pl.indexOrders()
	// The orders are placed first and the projection moved once after
	// them (moveSimple): what shift would make of them one by one, as
	// the cash each account has left is all the placing reads of it.
	for leaf := range f.leafMoved {
		f.leafMoved[leaf] = pl.zero() // at the money exponent, as the values added
	}
	sellOrder := pl.simpleSellOrder()
	for i := range p.Instruments {
		for _, a := range sellOrder {
			if gap[i].Sign() >= 0 {
				break
			}
			if f.maxSteps[a*pl.nI+i].Sign() <= 0 {
				// Nothing to sell here (want is at least one step).
				continue
			}
			want, rem := gap[i].Neg().QuoRem(f.unit[i])
			if rem.Sign() > 0 {
				want = want.Add(numOne)
			}
			n := minNum(want, f.maxSteps[a*pl.nI+i])
			if n.Sign() <= 0 || pl.belowMin(i, n) {
				continue
			}
			pl.addSimple(a, i, Sell, n)
			gap[i] = gap[i].Add(n.Mul(f.unit[i]))
		}
	}
	for a := range p.Accounts {
		for i := range p.Instruments {
			if f.cash[a].Sign() <= 0 {
				// The account buys only with free cash, which only a buy
				// would change.
				break
			}
			if gap[i].Sign() <= 0 || !p.Accounts[a].Allows(i) || !pl.mayBuy(i) || pl.conflicts(a, i, Buy) {
				continue
			}
			most := minNum(gap[i], f.cash[a])
			if most.LessThan(f.unit[i]) {
				// Not a whole step.
				continue
			}
			n, _ := most.QuoRem(f.unit[i])
			if n.Sign() <= 0 || pl.belowMin(i, n) {
				continue
			}
			pl.addSimple(a, i, Buy, n)
			gap[i] = gap[i].Sub(n.Mul(f.unit[i]))
		}
	}
	pl.moveSimple()
}

// addSimple adds an order of n steps of instrument i in account a to the
// simple plan, as apply would add it, and takes its value from the
// account's cash; moveSimple moves the rest of the projection. The plain
// rating applies it as the polish does.
func (pl *planner) addSimple(a, i int, side Side, n num) {
	if pl.plain {
		pl.apply(&move{k: -1, a: a, i: i, side: side, n: n})
		return
	}
	f := &pl.f
	k := pl.newOrder(a, i, side)
	pl.orders[k].n = n
	pl.nOrders++
	if pl.idx.ok {
		pl.count(&pl.orders[k], 1)
	}
	amount := f.unit[i].Mul(n) // value into the instrument's sleeve
	if side == Sell {
		amount = amount.Neg()
	}
	f.cash[a] = f.cash[a].Sub(amount)
	leaf := pl.p.Instruments[i].Sleeve
	f.leafMoved[leaf] = f.leafMoved[leaf].Add(amount)
}

// moveSimple moves the projection by the orders addSimple placed, from
// the figures of no order at all (loadEmpty): the values their orders
// move into the leaf sleeves and their ancestors, and the free cash of
// each account into the cash sleeve and the total, as shift does order
// by order (the changes of free cash add up to its change over all).
func (pl *planner) moveSimple() {
	if !pl.plain {
		pl.moveBy()
	}
}

// moveBy moves the projection of no order at all (emptyFigures) by the
// values the orders move into the leaf sleeves (f.leafMoved) and the cash
// they leave in each account (f.cash), and works out the deviations.
func (pl *planner) moveBy() {
	p, f := pl.p, &pl.f
	zero := pl.zero()
	moved := zero // into the total
	for leaf := range p.Sleeves {
		amount := f.leafMoved[leaf]
		if amount.IsZero() {
			continue
		}
		for x := leaf; x >= 0; x = p.Sleeves[x].Parent {
			f.after[x] = f.after[x].Add(amount)
		}
		moved = moved.Add(amount)
	}
	for a := range f.cash {
		if d := maxNum(zero, f.cash[a]).Sub(maxNum(zero, f.base[a])); !d.IsZero() {
			f.after[p.Cash] = f.after[p.Cash].Add(d)
			moved = moved.Add(d)
		}
	}
	if !moved.IsZero() {
		f.total = f.total.Add(moved)
		f.same = f.total.Equal(f.T)
	}
	pl.refreshDev()
}

// simpleGap returns the gap of the simple plan for instrument i: its
// share of its sleeve's target value less what the household holds of it
// (zero for the cash sleeve and instruments without a price).
func (pl *planner) simpleGap(i int) num {
	p, f := pl.p, &pl.f
	in := &p.Instruments[i]
	if in.Sleeve == p.Cash || f.unit[i].Sign() <= 0 {
		return num{}
	}
	x := pl.fixed()
	return f.tv[in.Sleeve].Mul(x.share[i]).Sub(x.held[i])
}

// simpleSellOrder returns the accounts in the order the simple plan sells
// in: tax-advantaged accounts first, each group in the policy's order,
// whatever their reserves.
func (pl *planner) simpleSellOrder() []int {
	order := make([]int, 0, pl.nA)
	for _, taxable := range []bool{false, true} {
		for a := range pl.p.Accounts {
			if !pl.p.Accounts[a].Type.TaxAdvantaged() == taxable {
				order = append(order, a)
			}
		}
	}
	return order
}

// percentText writes fraction d as a percentage with two decimals, rounded
// half away from zero ("60.29%"), as d.Shift(2).StringFixed(2) would,
// without decimal arithmetic when d's coefficient fits in an int64.
func percentText(d decimal.Decimal) string { return string(appendPercent(nil, d)) }

// appendPercent appends percentText(d) to buf.
func appendPercent(buf []byte, d decimal.Decimal) []byte {
	e := d.Exponent() + 4 // n = d x 10^4, the hundredths of a percent
	// n fits an int64 below 10^18: at most 18 digits, raised by at most
	// 18 - digits, or divided by at most 10^18 (twice the remainder stays
	// below 2 x 10^18).
	if digits := int32(d.NumDigits()); digits > 18 || e < -18 || digits+e > 18 {
		return append(append(buf, d.Shift(2).StringFixed(2)...), '%')
	}
	n := d.CoefficientInt64()
	neg := n < 0
	if neg {
		n = -n
	}
	if e > 0 {
		n *= powersOfTen[e]
	} else if e < 0 {
		div := powersOfTen[-e]
		q, r := n/div, n%div
		if 2*r >= div {
			q++
		}
		n = q
	}
	if neg && n != 0 {
		buf = append(buf, '-')
	}
	if q := n / 100; q < 100 {
		// The whole percent of a weight, without strconv's general case.
		if q >= 10 {
			buf = append(buf, byte('0'+q/10))
		}
		buf = append(buf, byte('0'+q%10))
	} else {
		buf = strconv.AppendInt(buf, q, 10)
	}
	buf = append(buf, '.', byte('0'+n%100/10), byte('0'+n%10))
	return append(buf, '%')
}
