// Package plan turns a drift snapshot into the orders that bring a household
// back to its policy. It is a pure, deterministic function: the same
// snapshot gives the same orders, byte for byte, with the same ids.
//
// The planner works in five steps:
//
//  1. Desired sleeve values, top-down through the sleeve tree. With
//     destination target every sleeve gets target x total. With band_edge
//     (midway) each breaching sleeve gets the band edge it crossed (the point
//     halfway between target and that edge); sleeves inside their bands keep
//     their value, except that what the breaching siblings release or need
//     is spread over them, first toward their own targets, then pro rata.
//  2. Instrument amounts: a traded leaf sleeve's desired value is split over
//     its instruments by share. The cash sleeve is met from free cash first;
//     its instruments (money-market funds) are never bought and are sold
//     only when free cash alone cannot fund the buys.
//  3. Placement in accounts, in currency: free cash (above reserves) buys
//     first, without any sale; then sales fund the remaining buys inside the
//     same account, tax-advantaged accounts first; then any further sales
//     (to raise the cash target). Instruments that fewer accounts may hold,
//     and accounts that may hold fewer instruments, are served first.
//  4. Quantities: sells round to the nearest step and never exceed the
//     holding; buys round down to the step and never exceed the account's
//     free cash plus the proceeds of its sells. Orders below min_trade are
//     dropped.
//  5. Check: the projected allocation after the orders is computed; with a
//     band destination a sleeve that still breaches by a rounding sliver gets
//     one more step where cash or holdings allow. Whatever stays out, and
//     any amount no account could place, is listed as unresolved with why.
package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
)

// SchemaVersion is the version of the plan's JSON form.
const SchemaVersion = 1

// amountPlaces is the precision of intermediate currency amounts that come
// from a division (shares of a residual), rounded half away from zero. Order
// quantities are then rounded to the instrument's step as described above.
const amountPlaces = 8

// Side is buy or sell.
type Side string

// The two sides of an order.
const (
	Buy  Side = "buy"
	Sell Side = "sell"
)

// Phases order the execution of a plan: sells first, so that their proceeds
// fund the buys.
const (
	PhaseSell = 1
	PhaseBuy  = 2
)

// Rule names why an order exists.
type Rule string

// The rules that produce orders.
const (
	// RuleToTarget moves a sleeve to its target (destination target).
	RuleToTarget Rule = "to_target"
	// RuleToBandEdge moves a breaching sleeve to its band edge.
	RuleToBandEdge Rule = "to_band_edge"
	// RuleToMidway moves a breaching sleeve halfway back to its target.
	RuleToMidway Rule = "to_midway"
	// RuleCounterpart trades a sleeve inside its band to absorb what the
	// breaching sleeves release or need.
	RuleCounterpart Rule = "counterpart"
	// RuleFundBuys sells a cash-sleeve instrument to fund buys.
	RuleFundBuys Rule = "fund_buys"
	// RuleRelocate buys an instrument in one account and sells as much of it
	// in another, leaving its sleeve unchanged, so that cash which cannot buy
	// what is needed where it sits funds the buy in an account that may.
	RuleRelocate Rule = "relocate"
)

// Order is one trade of one instrument in one account.
type Order struct {
	ID         string          `json:"order_id"`
	Phase      int             `json:"phase"`
	Account    string          `json:"account"`
	Instrument string          `json:"instrument"`
	Side       Side            `json:"side"`
	Quantity   decimal.Decimal `json:"quantity"`
	Price      decimal.Decimal `json:"price"`
	Notional   decimal.Decimal `json:"notional"`
	Sleeve     string          `json:"sleeve"`
	Rule       Rule            `json:"rule"`

	account, instrument int
	units               decimal.Decimal // Quantity / step
}

// SleeveReport is a sleeve's drift before the plan and its projected weight
// after it. Fractions of the total value, as decimal strings.
type SleeveReport struct {
	Sleeve      string          `json:"sleeve"`
	Target      decimal.Decimal `json:"target"`
	Weight      decimal.Decimal `json:"weight"`
	Deviation   decimal.Decimal `json:"deviation"`
	BandLow     decimal.Decimal `json:"band_low"`
	BandHigh    decimal.Decimal `json:"band_high"`
	Breach      bool            `json:"breach"`
	Value       decimal.Decimal `json:"value"`
	WeightAfter decimal.Decimal `json:"weight_after"`
	BreachAfter bool            `json:"breach_after"`
}

// Unresolved is a sleeve the plan cannot bring where the policy wants it.
type Unresolved struct {
	Sleeve      string          `json:"sleeve"`
	WeightAfter decimal.Decimal `json:"weight_after"`
	Reason      string          `json:"reason"`
}

// Plan is the outcome of one rebalance computation.
type Plan struct {
	SchemaVersion int    `json:"schema_version"`
	ID            string `json:"plan_id"`
	Policy        string `json:"policy"`
	PolicyVersion string `json:"policy_version"`
	// AsOf is the time of the prices the plan used.
	AsOf         time.Time          `json:"as_of"`
	HoldingsAsOf time.Time          `json:"holdings_as_of"`
	Currency     string             `json:"currency"`
	Destination  policy.Destination `json:"destination"`
	// Total is the investable value: reserves excluded.
	Total      decimal.Decimal `json:"total_value"`
	Sleeves    []SleeveReport  `json:"sleeves"`
	Orders     []Order         `json:"orders"`
	Unresolved []Unresolved    `json:"unresolved"`
}

// Make plans the orders for snapshot s with its policy's destination.
func Make(s *drift.Snapshot) *Plan {
	return MakeTo(s, s.Book.Policy.Rebalance.Destination)
}

// MakeTo plans the orders for snapshot s with the given destination.
func MakeTo(s *drift.Snapshot, dest policy.Destination) *Plan {
	pl := newPlanner(s, dest)
	pl.desired()
	pl.amounts()
	pl.place()
	pl.round()
	pl.project()
	if dest != policy.DestinationTarget {
		pl.repair()
	}
	return pl.finish()
}

type planner struct {
	s    *drift.Snapshot
	b    *portfolio.Book
	p    *policy.Policy
	dest policy.Destination
	T    decimal.Decimal

	nA, nI int
	want   []decimal.Decimal // desired value per sleeve
	rule   []Rule            // per instrument
	buy    []decimal.Decimal // household amount still to buy, per instrument
	sell   []decimal.Decimal // household amount still to sell, per instrument
	buyAt  []decimal.Decimal // amount to buy, [a*nI+i]
	sellAt []decimal.Decimal // amount to sell, [a*nI+i]
	free   []decimal.Decimal // free cash not yet committed, per account
	idle   []decimal.Decimal // sale proceeds not yet spent, per account
	budget decimal.Decimal   // free cash the plan may spend in all
	moved  []bool            // [a*nI+i]: a relocation trades instrument i in account a

	buyOrder   []int // instruments, most constrained first
	spendOrder []int // accounts, most constrained first
	sellOrder  []int // accounts, tax-advantaged first

	orders  []Order
	dropped []bool            // per instrument: an order below min_trade was dropped
	cash    []decimal.Decimal // per account: cash left after the orders
	after   []decimal.Decimal // projected value per sleeve
}

func newPlanner(s *drift.Snapshot, dest policy.Destination) *planner {
	b := s.Book
	p := b.Policy
	nA, nI := len(p.Accounts), len(p.Instruments)
	pl := &planner{s: s, b: b, p: p, dest: dest, T: s.Total, nA: nA, nI: nI}
	dec := make([]decimal.Decimal, len(p.Sleeves)+2*nI+2*nA*nI+2*nA)
	take := func(n int) []decimal.Decimal {
		out := dec[:n:n]
		dec = dec[n:]
		return out
	}
	pl.want = take(len(p.Sleeves))
	pl.buy, pl.sell = take(nI), take(nI)
	pl.buyAt, pl.sellAt = take(nA*nI), take(nA*nI)
	pl.free, pl.idle = take(nA), take(nA)
	pl.moved = make([]bool, nA*nI)
	pl.rule = make([]Rule, nI)
	pl.dropped = make([]bool, nI)
	copy(pl.free, s.FreeCash)
	pl.orderings()
	return pl
}

// orderings fixes the deterministic orders in which instruments and
// accounts are served.
func (pl *planner) orderings() {
	p := pl.p
	ints := make([]int, 2*pl.nI+2*pl.nA)
	holders := ints[:pl.nI]
	allowed := ints[pl.nI : pl.nI+pl.nA]
	rest := ints[pl.nI+pl.nA:]
	for a := range p.Accounts {
		for i := range p.Instruments {
			if p.Accounts[a].Allows(i) {
				holders[i]++
				allowed[a]++
			}
		}
	}
	pl.buyOrder = rest[:pl.nI:pl.nI]
	pl.spendOrder = rest[pl.nI : pl.nI+pl.nA : pl.nI+pl.nA]
	pl.sellOrder = make([]int, pl.nA)
	for i := range pl.buyOrder {
		pl.buyOrder[i] = i
	}
	for a := range pl.spendOrder {
		pl.spendOrder[a] = a
		pl.sellOrder[a] = a
	}
	sort.SliceStable(pl.buyOrder, func(x, y int) bool { return holders[pl.buyOrder[x]] < holders[pl.buyOrder[y]] })
	sort.SliceStable(pl.spendOrder, func(x, y int) bool { return allowed[pl.spendOrder[x]] < allowed[pl.spendOrder[y]] })
	sort.SliceStable(pl.sellOrder, func(x, y int) bool {
		return p.Accounts[pl.sellOrder[x]].Type.TaxAdvantaged() && !p.Accounts[pl.sellOrder[y]].Type.TaxAdvantaged()
	})
}

var half = decimal.New(5, -1)

// desired sets want for every sleeve, top-down.
func (pl *planner) desired() {
	top := make([]int, 0, len(pl.p.Sleeves))
	for i := range pl.p.Sleeves {
		if pl.p.Sleeves[i].Parent < 0 {
			top = append(top, i)
		}
	}
	pl.allocate(top, pl.T)
}

// allocate sets the desired values of sibling sleeves so that they sum to
// total, then recurses into their children.
func (pl *planner) allocate(children []int, total decimal.Decimal) {
	sum := decimal.Zero
	flex := make([]bool, len(children))
	anyFlex := false
	for k, c := range children {
		ps, sd := &pl.p.Sleeves[c], &pl.s.Sleeves[c]
		targetValue := ps.Target.Mul(pl.T)
		switch {
		case pl.dest == policy.DestinationTarget:
			pl.want[c] = targetValue
		case sd.Breach:
			edge := ps.HalfWidth.Mul(pl.T)
			if pl.dest == policy.DestinationMidway {
				edge = edge.Mul(half)
			}
			if sd.Value.GreaterThan(targetValue) {
				pl.want[c] = targetValue.Add(edge)
			} else {
				pl.want[c] = targetValue.Sub(edge)
			}
		default:
			pl.want[c] = sd.Value
			flex[k], anyFlex = true, true
		}
		sum = sum.Add(pl.want[c])
	}
	if residual := total.Sub(sum); !residual.IsZero() {
		if !anyFlex {
			for k := range flex {
				flex[k] = true
			}
		}
		pl.spread(children, flex, residual)
	}
	for _, c := range children {
		if kids := pl.p.Sleeves[c].Children; len(kids) > 0 {
			pl.allocate(kids, pl.want[c])
		}
	}
}

// spread adds residual (positive: money to place; negative: money to
// raise) to the flexible children: first toward their targets, then pro
// rata by target value (placing) or by value (raising).
func (pl *planner) spread(children []int, flex []bool, residual decimal.Decimal) {
	weights := make([]decimal.Decimal, len(children))
	sign := residual.Sign()
	need := residual.Abs()
	// First pass: gaps toward target on the side the residual moves.
	gapSum := decimal.Zero
	for k, c := range children {
		if !flex[k] {
			continue
		}
		gap := pl.p.Sleeves[c].Target.Mul(pl.T).Sub(pl.want[c])
		if sign < 0 {
			gap = gap.Neg()
		}
		if gap.Sign() > 0 {
			weights[k] = gap
			gapSum = gapSum.Add(gap)
		}
	}
	if gapSum.Sign() > 0 {
		moved := need
		if gapSum.LessThan(need) {
			moved = gapSum
		}
		pl.share(children, weights, gapSum, moved, sign)
		need = need.Sub(moved)
	}
	if need.Sign() == 0 {
		return
	}
	// Second pass: pro rata, by target value when placing, by value when
	// raising (so no sleeve goes below zero).
	wSum := decimal.Zero
	for k, c := range children {
		weights[k] = decimal.Zero
		if !flex[k] {
			continue
		}
		if sign > 0 {
			weights[k] = pl.p.Sleeves[c].Target
		} else {
			weights[k] = pl.want[c]
		}
		wSum = wSum.Add(weights[k])
	}
	if wSum.Sign() == 0 {
		for k := range children {
			if flex[k] {
				weights[k] = decimal.NewFromInt(1)
				wSum = wSum.Add(weights[k])
			}
		}
	}
	pl.share(children, weights, wSum, need, sign)
}

// share adds sign x amount to the children in proportion to weights; the
// last weighted child takes the rounding remainder so the sum is exact.
func (pl *planner) share(children []int, weights []decimal.Decimal, wSum, amount decimal.Decimal, sign int) {
	last := -1
	for k := range children {
		if weights[k].Sign() > 0 {
			last = k
		}
	}
	given := decimal.Zero
	for k, c := range children {
		if weights[k].Sign() <= 0 {
			continue
		}
		part := amount.Sub(given)
		if k != last {
			part = amount.Mul(weights[k]).DivRound(wSum, amountPlaces)
		}
		given = given.Add(part)
		if sign < 0 {
			part = part.Neg()
		}
		pl.want[c] = pl.want[c].Add(part)
	}
}

// amounts turns desired sleeve values into household amounts to buy and
// sell per instrument, and the free-cash budget.
func (pl *planner) amounts() {
	p, s := pl.p, pl.s
	held := make([]decimal.Decimal, pl.nI)
	for a := 0; a < pl.nA; a++ {
		for i, v := range s.Values[a] {
			if !v.IsZero() {
				held[i] = held[i].Add(v)
			}
		}
	}
	for si := range p.Sleeves {
		ps := &p.Sleeves[si]
		if !ps.Leaf() || si == p.Cash {
			continue
		}
		traded := pl.dest == policy.DestinationTarget || !pl.want[si].Equal(s.Sleeves[si].Value)
		if !traded {
			continue
		}
		rule := pl.ruleFor(si)
		for _, i := range ps.Instruments {
			pl.rule[i] = rule
			delta := pl.want[si].Mul(p.Instruments[i].Share).Sub(held[i])
			switch delta.Sign() {
			case 1:
				pl.buy[i] = delta
			case -1:
				pl.sell[i] = delta.Neg()
			}
		}
	}
	// The cash sleeve: spend free cash when it is over target; sell its
	// instruments only for what free cash cannot cover.
	excess := s.Sleeves[p.Cash].Value.Sub(pl.want[p.Cash])
	if excess.Sign() <= 0 {
		return
	}
	freeTotal := decimal.Zero
	for _, f := range s.FreeCash {
		freeTotal = freeTotal.Add(f)
	}
	pl.budget = decimal.Min(excess, freeTotal)
	rest := excess.Sub(pl.budget)
	if rest.Sign() <= 0 {
		return
	}
	instr := p.Sleeves[p.Cash].Instruments
	heldSum := decimal.Zero
	for _, i := range instr {
		heldSum = heldSum.Add(held[i])
	}
	given := decimal.Zero
	for k, i := range instr {
		if held[i].Sign() <= 0 {
			continue
		}
		part := rest.Mul(held[i]).DivRound(heldSum, amountPlaces)
		if k == len(instr)-1 {
			part = rest.Sub(given)
		}
		part = decimal.Min(part, held[i])
		given = given.Add(part)
		pl.sell[i] = part
		pl.rule[i] = RuleFundBuys
	}
}

// ruleAt returns the rule of an order of instrument i in account a.
func (pl *planner) ruleAt(a, i int) Rule {
	if pl.moved[a*pl.nI+i] {
		return RuleRelocate
	}
	return pl.rule[i]
}

func (pl *planner) ruleFor(sleeve int) Rule {
	switch pl.dest {
	case policy.DestinationTarget:
		return RuleToTarget
	}
	for x := sleeve; x >= 0; x = pl.p.Sleeves[x].Parent {
		if pl.s.Sleeves[x].Breach {
			if pl.dest == policy.DestinationMidway {
				return RuleToMidway
			}
			return RuleToBandEdge
		}
	}
	return RuleCounterpart
}

// place assigns the household amounts to accounts.
func (pl *planner) place() {
	p := pl.p
	// Free cash first: no sale while free cash can fund a buy.
	for _, a := range pl.spendOrder {
		if pl.budget.Sign() <= 0 {
			break
		}
		spend := decimal.Min(pl.free[a], pl.budget)
		if spend.Sign() <= 0 {
			continue
		}
		used := pl.spendIn(a, spend)
		pl.free[a] = pl.free[a].Sub(used)
		pl.budget = pl.budget.Sub(used)
	}
	// Sales that fund buys in the same account, tax-advantaged first.
	for _, a := range pl.sellOrder {
		for j := 0; j < pl.nI; j++ {
			if pl.sell[j].Sign() <= 0 {
				continue
			}
			avail := pl.s.Values[a][j].Sub(pl.sellAt[a*pl.nI+j])
			if avail.Sign() <= 0 {
				continue
			}
			usable := pl.fundable(a)
			if usable.Sign() <= 0 {
				break
			}
			amt := decimal.Min(pl.sell[j], avail, usable)
			pl.sellAt[a*pl.nI+j] = pl.sellAt[a*pl.nI+j].Add(amt)
			pl.sell[j] = pl.sell[j].Sub(amt)
			pl.spendIn(a, amt)
		}
	}
	// Remaining sales raise cash toward the cash target. Cash-sleeve
	// instruments are sold only to fund buys, so they are left alone here.
	for j := 0; j < pl.nI; j++ {
		if pl.sell[j].Sign() <= 0 || p.Instruments[j].Sleeve == p.Cash {
			continue
		}
		for _, a := range pl.sellOrder {
			avail := pl.s.Values[a][j].Sub(pl.sellAt[a*pl.nI+j])
			if avail.Sign() <= 0 {
				continue
			}
			amt := decimal.Min(pl.sell[j], avail)
			pl.sellAt[a*pl.nI+j] = pl.sellAt[a*pl.nI+j].Add(amt)
			pl.sell[j] = pl.sell[j].Sub(amt)
			pl.idle[a] = pl.idle[a].Add(amt.Sub(pl.spendIn(a, amt)))
			if pl.sell[j].Sign() <= 0 {
				break
			}
		}
	}
	pl.relocate()
}

// relocate funds buys that no account could pay for where they may be
// held, using cash that sits idle in another account: account x buys an
// instrument that account y holds, y sells as much of it and buys what is
// needed. The relocated instrument's sleeve is unchanged; household cash
// falls only by what the plan meant to spend.
func (pl *planner) relocate() {
	p, nI := pl.p, pl.nI
	for _, i := range pl.buyOrder {
		for _, y := range pl.sellOrder {
			if pl.buy[i].Sign() <= 0 {
				break
			}
			if !p.Accounts[y].Allows(i) {
				continue
			}
			for j := 0; j < nI && pl.buy[i].Sign() > 0; j++ {
				// y must hold j beyond its planned sales, and not be buying it.
				avail := pl.s.Values[y][j].Sub(pl.sellAt[y*nI+j])
				if j == i || avail.Sign() <= 0 || pl.buyAt[y*nI+j].Sign() > 0 {
					continue
				}
				for x := 0; x < pl.nA && avail.Sign() > 0 && pl.buy[i].Sign() > 0; x++ {
					if x == y || !p.Accounts[x].Allows(j) || pl.sellAt[x*nI+j].Sign() > 0 {
						continue
					}
					fromFree := decimal.Min(pl.free[x], pl.budget)
					m := decimal.Min(pl.buy[i], avail, pl.idle[x].Add(fromFree))
					if m.Sign() <= 0 {
						continue
					}
					// Spend x's idle proceeds before its free cash.
					useIdle := decimal.Min(m, pl.idle[x])
					pl.idle[x] = pl.idle[x].Sub(useIdle)
					if rest := m.Sub(useIdle); rest.Sign() > 0 {
						pl.free[x] = pl.free[x].Sub(rest)
						pl.budget = pl.budget.Sub(rest)
					}
					pl.buyAt[x*nI+j] = pl.buyAt[x*nI+j].Add(m)
					pl.sellAt[y*nI+j] = pl.sellAt[y*nI+j].Add(m)
					pl.buyAt[y*nI+i] = pl.buyAt[y*nI+i].Add(m)
					pl.buy[i] = pl.buy[i].Sub(m)
					pl.moved[x*nI+j], pl.moved[y*nI+j] = true, true
					avail = avail.Sub(m)
				}
			}
		}
	}
}

// fundable returns what account a could still spend on the buys it may
// hold.
func (pl *planner) fundable(a int) decimal.Decimal {
	sum := decimal.Zero
	acct := &pl.p.Accounts[a]
	for i, need := range pl.buy {
		if need.Sign() > 0 && acct.Allows(i) {
			sum = sum.Add(need)
		}
	}
	return sum
}

// spendIn spends up to amount in account a on the buys it may hold, most
// constrained instruments first, and returns what it spent.
func (pl *planner) spendIn(a int, amount decimal.Decimal) decimal.Decimal {
	acct := &pl.p.Accounts[a]
	spent := decimal.Zero
	for _, i := range pl.buyOrder {
		if amount.Sign() <= 0 {
			break
		}
		if pl.buy[i].Sign() <= 0 || !acct.Allows(i) {
			continue
		}
		x := decimal.Min(pl.buy[i], amount)
		pl.buyAt[a*pl.nI+i] = pl.buyAt[a*pl.nI+i].Add(x)
		pl.buy[i] = pl.buy[i].Sub(x)
		amount = amount.Sub(x)
		spent = spent.Add(x)
	}
	return spent
}

// round turns the placed amounts into orders of whole steps.
func (pl *planner) round() {
	p, b := pl.p, pl.b
	minTrade := p.Rebalance.MinTrade
	pl.cash = make([]decimal.Decimal, pl.nA)
	copy(pl.cash, pl.s.FreeCash)
	for a := 0; a < pl.nA; a++ {
		for i := 0; i < pl.nI; i++ {
			amt := pl.sellAt[a*pl.nI+i]
			if amt.Sign() <= 0 {
				continue
			}
			step := p.Instruments[i].Step
			units := amt.DivRound(b.Price[i].Mul(step), 0)
			if most, _ := b.Qty[a][i].QuoRem(step, 0); units.GreaterThan(most) {
				units = most
			}
			if pl.addOrder(a, i, Sell, units, minTrade) {
				o := &pl.orders[len(pl.orders)-1]
				pl.cash[a] = pl.cash[a].Add(o.Notional)
			}
		}
	}
	for a := 0; a < pl.nA; a++ {
		for _, i := range pl.buyOrder {
			amt := pl.buyAt[a*pl.nI+i]
			if amt.Sign() <= 0 {
				continue
			}
			unit := b.Price[i].Mul(p.Instruments[i].Step)
			units, _ := amt.QuoRem(unit, 0)
			if affordable, _ := pl.cash[a].QuoRem(unit, 0); units.GreaterThan(affordable) {
				units = affordable
			}
			if pl.addOrder(a, i, Buy, units, minTrade) {
				o := &pl.orders[len(pl.orders)-1]
				pl.cash[a] = pl.cash[a].Sub(o.Notional)
			}
		}
	}
}

// addOrder appends an order of units steps unless it is empty or below
// minTrade, and reports whether it did.
func (pl *planner) addOrder(a, i int, side Side, units, minTrade decimal.Decimal) bool {
	if units.Sign() <= 0 {
		return false
	}
	in := &pl.p.Instruments[i]
	qty := units.Mul(in.Step)
	notional := qty.Mul(pl.b.Price[i])
	if notional.LessThan(minTrade) {
		pl.dropped[i] = true
		return false
	}
	phase := PhaseBuy
	if side == Sell {
		phase = PhaseSell
	}
	pl.orders = append(pl.orders, Order{
		Phase:      phase,
		Account:    pl.p.Accounts[a].Name,
		Instrument: in.Symbol,
		Side:       side,
		Quantity:   qty,
		Price:      pl.b.Price[i],
		Notional:   notional,
		Sleeve:     pl.p.Sleeves[in.Sleeve].Path,
		Rule:       pl.ruleAt(a, i),
		account:    a,
		instrument: i,
		units:      units,
	})
	return true
}

// project computes the sleeve values after the orders.
func (pl *planner) project() {
	p := pl.p
	if pl.after == nil {
		pl.after = make([]decimal.Decimal, len(p.Sleeves))
	}
	for si := range p.Sleeves {
		if p.Sleeves[si].Leaf() {
			pl.after[si] = pl.s.Sleeves[si].Value
		} else {
			pl.after[si] = decimal.Zero
		}
	}
	for k := range pl.orders {
		o := &pl.orders[k]
		sl := p.Instruments[o.instrument].Sleeve
		n := o.Notional
		if o.Side == Sell {
			n = n.Neg()
		}
		pl.after[sl] = pl.after[sl].Add(n)
		pl.after[p.Cash] = pl.after[p.Cash].Sub(n)
	}
	drift.Rollup(p, pl.after)
}

// repair nudges orders by one step where a sleeve the plan should bring
// inside its band still breaches because of rounding.
func (pl *planner) repair() {
	p := pl.p
	for tries := 0; tries < len(pl.orders)+len(p.Sleeves); tries++ {
		nudged := false
		for si := range p.Sleeves {
			ps := &p.Sleeves[si]
			if !pl.s.Sleeves[si].Breach || !drift.Breaches(ps, pl.after[si], pl.T) {
				continue
			}
			over := pl.after[si].GreaterThan(ps.Target.Mul(pl.T))
			if pl.nudge(si, over) {
				nudged = true
				break
			}
		}
		if !nudged {
			return
		}
		pl.project()
	}
}

// nudge adds one step to an order in sleeve si's subtree: a sell when the
// sleeve is over its band, a buy when under, within holdings and cash.
func (pl *planner) nudge(si int, over bool) bool {
	p, b := pl.p, pl.b
	for k := range pl.orders {
		o := &pl.orders[k]
		if !pl.within(p.Instruments[o.instrument].Sleeve, si) || (o.Side == Sell) != over {
			continue
		}
		step := p.Instruments[o.instrument].Step
		unit := b.Price[o.instrument].Mul(step)
		if over {
			if o.Quantity.Add(step).GreaterThan(b.Qty[o.account][o.instrument]) {
				continue
			}
			pl.cash[o.account] = pl.cash[o.account].Add(unit)
		} else {
			if pl.cash[o.account].LessThan(unit) {
				continue
			}
			pl.cash[o.account] = pl.cash[o.account].Sub(unit)
		}
		o.units = o.units.Add(decimal.NewFromInt(1))
		o.Quantity = o.units.Mul(step)
		o.Notional = o.Quantity.Mul(o.Price)
		return true
	}
	return false
}

// within reports whether sleeve x is anc or lies below it.
func (pl *planner) within(x, anc int) bool {
	for ; x >= 0; x = pl.p.Sleeves[x].Parent {
		if x == anc {
			return true
		}
	}
	return false
}

func (pl *planner) finish() *Plan {
	p, s := pl.p, pl.s
	out := &Plan{
		SchemaVersion: SchemaVersion,
		Policy:        p.Name,
		PolicyVersion: p.Version,
		AsOf:          s.AsOf,
		HoldingsAsOf:  pl.b.HoldingsAsOf,
		Currency:      p.Currency,
		Destination:   pl.dest,
		Total:         pl.T,
		Sleeves:       make([]SleeveReport, len(p.Sleeves)),
		Orders:        pl.orders,
		Unresolved:    []Unresolved{},
	}
	if out.Orders == nil {
		out.Orders = []Order{}
	}
	for si := range p.Sleeves {
		d := &s.Sleeves[si]
		r := SleeveReport{
			Sleeve: d.Path, Target: d.Target, Weight: d.Weight, Deviation: d.Deviation,
			BandLow: d.BandLow, BandHigh: d.BandHigh, Breach: d.Breach, Value: d.Value,
		}
		if pl.T.Sign() > 0 {
			r.WeightAfter = pl.after[si].DivRound(pl.T, drift.WeightPlaces)
			r.BreachAfter = drift.Breaches(&p.Sleeves[si], pl.after[si], pl.T)
		}
		out.Sleeves[si] = r
	}
	pl.unresolved(out)
	sort.SliceStable(out.Orders, func(x, y int) bool {
		ox, oy := &out.Orders[x], &out.Orders[y]
		if ox.Phase != oy.Phase {
			return ox.Phase < oy.Phase
		}
		if ox.account != oy.account {
			return ox.account < oy.account
		}
		return ox.instrument < oy.instrument
	})
	pl.assignIDs(out)
	return out
}

// unresolved lists the sleeves the plan leaves where the policy does not
// want them. With destination target: leaf sleeves with an amount that no
// account could place (rounding and min_trade are allowed for). With a band
// destination: every sleeve that breached and still breaches after the
// orders, with the first reason found below it.
func (pl *planner) unresolved(out *Plan) {
	p, b := pl.p, pl.b
	gap := make([]string, len(p.Sleeves))
	drop := make([]string, len(p.Sleeves))
	for i := range p.Instruments {
		in := &p.Instruments[i]
		tol := decimal.Max(p.Rebalance.MinTrade, b.Price[i].Mul(in.Step))
		switch {
		case gap[in.Sleeve] != "":
		case pl.buy[i].GreaterThan(tol):
			gap[in.Sleeve] = fmt.Sprintf("%s %s of %s could not be bought: no account that may hold it has free cash or sale proceeds left",
				pl.buy[i].StringFixed(2), p.Currency, in.Symbol)
		case pl.sell[i].GreaterThan(tol) && in.Sleeve != p.Cash:
			gap[in.Sleeve] = fmt.Sprintf("%s %s of %s could not be sold", pl.sell[i].StringFixed(2), p.Currency, in.Symbol)
		}
		if pl.dropped[i] && drop[in.Sleeve] == "" {
			drop[in.Sleeve] = fmt.Sprintf("an order of %s was below min_trade %s", in.Symbol, p.Rebalance.MinTrade)
		}
	}
	for si := range p.Sleeves {
		var reason string
		if pl.dest == policy.DestinationTarget {
			reason = gap[si]
		} else if pl.s.Sleeves[si].Breach && out.Sleeves[si].BreachAfter {
			reason = pl.firstBelow(si, gap)
			if reason == "" {
				reason = pl.firstBelow(si, drop)
			}
			if reason == "" {
				reason = "rounding to trading steps leaves it outside its band"
			}
		}
		if reason != "" {
			out.Unresolved = append(out.Unresolved, Unresolved{Sleeve: p.Sleeves[si].Path, WeightAfter: out.Sleeves[si].WeightAfter, Reason: reason})
		}
	}
}

// firstBelow returns the first non-empty reason of sleeve si or a sleeve
// below it.
func (pl *planner) firstBelow(si int, reasons []string) string {
	for x := range pl.p.Sleeves {
		if reasons[x] != "" && pl.within(x, si) {
			return reasons[x]
		}
	}
	return ""
}

// assignIDs derives the plan id from the policy version, the input times
// and the orders, and each order id from the plan id and its position.
func (pl *planner) assignIDs(out *Plan) {
	h := sha256.New()
	var buf []byte
	buf = append(buf, out.Policy...)
	buf = append(buf, 0)
	buf = append(buf, out.PolicyVersion...)
	buf = append(buf, 0)
	buf = out.AsOf.UTC().AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, 0)
	buf = out.HoldingsAsOf.UTC().AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, 0)
	buf = append(buf, out.Destination...)
	for k := range out.Orders {
		o := &out.Orders[k]
		buf = append(buf, 0)
		buf = append(buf, o.Account...)
		buf = append(buf, 0)
		buf = append(buf, o.Instrument...)
		buf = append(buf, 0)
		buf = append(buf, o.Side...)
		buf = append(buf, 0)
		buf = append(buf, o.Quantity.String()...)
		buf = append(buf, 0)
		buf = append(buf, o.Price.String()...)
	}
	h.Write(buf)
	var sum [sha256.Size]byte
	out.ID = hex.EncodeToString(h.Sum(sum[:0])[:8])
	for k := range out.Orders {
		out.Orders[k].ID = out.ID + "-" + strconv.Itoa(k+1)
	}
}
