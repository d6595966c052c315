// Package plan turns a drift snapshot into the orders that bring a household
// back to its policy. It is a pure, deterministic function: the same
// snapshot gives the same orders, byte for byte, with the same ids.
//
// The planner works in five steps:
//
//  1. Desired sleeve values, top-down through the sleeve tree. With
//     destination target every sleeve gets target x total. With band_edge
//     (midway) each breaching sleeve gets the band edge it crossed, moved
//     inward by one trading step of each of its instruments per account so
//     that rounding cannot leave it outside, but never past midway (the point halfway between target and that
//     edge); sleeves inside their bands keep
//     their value. What the breaching siblings release or need is spread
//     toward targets (in-band sleeves first), then into the room left inside
//     the bands, then pro rata.
//  2. Instrument amounts: a traded leaf sleeve's desired value is split over
//     its instruments by share. The cash sleeve is met from free cash first;
//     its instruments (money-market funds) are never bought and are sold
//     only when free cash alone cannot fund the buys.
//  3. Placement in accounts, in currency: free cash (above reserves) buys
//     first, without any sale; then sales fund the remaining buys inside the
//     same account, tax-advantaged accounts first; then any further sales
//     (to raise the cash target). Instruments that fewer accounts may hold,
//     and accounts that may hold fewer instruments, are served first.
//  4. Quantities: sells round up to the step, so that their proceeds never
//     fall short of the buys they fund, but never beyond the whole steps
//     held; buys round to the nearest step (half away from zero) when the
//     account has cash that its other planned buys do not need, and down
//     otherwise, never beyond its free cash plus the proceeds of its sells.
//     Orders below min_trade are dropped.
//  5. Check: the projected allocation after the orders is computed; with a
//     band destination a sleeve that still breaches by a rounding sliver gets
//     one more step where cash or holdings allow. Whatever stays out, and
//     any amount no account could place, is listed as unresolved with why.
package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
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
	Total decimal.Decimal `json:"total_value"`
	// TotalAfter is the investable value after the orders: Total less
	// proceeds that refill a reserve, to the rounding of notional amounts.
	TotalAfter decimal.Decimal `json:"total_value_after"`
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
	unit   []decimal.Decimal // value of one step, price x step, per instrument
	buy    []decimal.Decimal // household amount still to buy, per instrument
	sell   []decimal.Decimal // household amount still to sell, per instrument
	buyAt  []decimal.Decimal // amount to buy, [a*nI+i]
	sellAt []decimal.Decimal // amount to sell, [a*nI+i]
	// sellable is the value of the whole steps held, [a*nI+i]: a holding
	// that is not a multiple of its step cannot be sold to the last unit.
	sellable []decimal.Decimal
	free     []decimal.Decimal // free cash not yet committed, per account
	short    []decimal.Decimal // reserve not yet covered by cash, per account
	refill   decimal.Decimal   // sale proceeds planned to refill short reserves
	idle     []decimal.Decimal // sale proceeds not yet spent, per account
	budget   decimal.Decimal   // free cash the plan may spend in all
	moved    []bool            // [a*nI+i]: a relocation trades instrument i in account a

	buyOrder   []int // instruments, most constrained first
	spendOrder []int // accounts, most constrained first
	sellOrder  []int // accounts, tax-advantaged first

	orders     []Order
	dropped    []bool            // per instrument: an order below min_trade was dropped
	cash       []decimal.Decimal // per account: cash left after the orders
	after      []decimal.Decimal // projected value per sleeve
	totalAfter decimal.Decimal   // projected total
}

func newPlanner(s *drift.Snapshot, dest policy.Destination) *planner {
	b := s.Book
	p := b.Policy
	nA, nI := len(p.Accounts), len(p.Instruments)
	pl := &planner{s: s, b: b, p: p, dest: dest, T: s.Total, nA: nA, nI: nI}
	dec := make([]decimal.Decimal, len(p.Sleeves)+3*nI+3*nA*nI+3*nA)
	take := func(n int) []decimal.Decimal {
		out := dec[:n:n]
		dec = dec[n:]
		return out
	}
	pl.want = take(len(p.Sleeves))
	pl.buy, pl.sell, pl.unit = take(nI), take(nI), take(nI)
	for i := range p.Instruments {
		if !b.Price[i].IsZero() {
			pl.unit[i] = b.Price[i].Mul(p.Instruments[i].Step)
		}
	}
	pl.buyAt, pl.sellAt, pl.sellable = take(nA*nI), take(nA*nI), take(nA*nI)
	for a := 0; a < nA; a++ {
		for i, q := range b.Qty[a] {
			if q.IsZero() {
				continue
			}
			if step := p.Instruments[i].Step; q.Mod(step).IsZero() {
				pl.sellable[a*nI+i] = s.Values[a][i]
			} else {
				steps, _ := q.QuoRem(step, 0)
				pl.sellable[a*nI+i] = steps.Mul(step).Mul(b.Price[i])
			}
		}
	}
	pl.free, pl.idle, pl.short = take(nA), take(nA), take(nA)
	for a := range p.Accounts {
		if d := p.Accounts[a].Reserve.Sub(b.Cash[a]); d.Sign() > 0 {
			pl.short[a] = d
		}
	}
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
	slices.SortStableFunc(pl.buyOrder, func(x, y int) int { return holders[x] - holders[y] })
	slices.SortStableFunc(pl.spendOrder, func(x, y int) int { return allowed[x] - allowed[y] })
	// Accounts short of their reserve sell last: their proceeds refill the
	// reserve before they are free. Then tax-advantaged before taxable.
	rank := func(a int) int {
		r := 0
		if pl.short[a].Sign() > 0 {
			r += 2
		}
		if !p.Accounts[a].Type.TaxAdvantaged() {
			r++
		}
		return r
	}
	slices.SortStableFunc(pl.sellOrder, func(x, y int) int { return rank(x) - rank(y) })
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
	for k, c := range children {
		sd := &pl.s.Sleeves[c]
		targetValue := sd.TargetValue
		switch {
		case pl.dest == policy.DestinationTarget:
			pl.want[c] = targetValue
		case sd.Breach:
			edge := sd.HalfWidthValue
			if pl.dest == policy.DestinationMidway {
				edge = edge.Mul(half)
			} else {
				// Aim inside the edge by one step of every instrument below,
				// so that rounding to steps cannot leave the sleeve outside;
				// never further in than midway.
				edge = decimal.Max(edge.Sub(pl.margin(c)), edge.Mul(half))
			}
			if sd.Value.GreaterThan(targetValue) {
				pl.want[c] = targetValue.Add(edge)
			} else {
				pl.want[c] = targetValue.Sub(edge)
			}
		default:
			pl.want[c] = sd.Value
			flex[k] = true
		}
		sum = sum.Add(pl.want[c])
	}
	if residual := total.Sub(sum); !residual.IsZero() {
		pl.spread(children, flex, residual)
	}
	for _, c := range children {
		if kids := pl.p.Sleeves[c].Children; len(kids) > 0 {
			pl.allocate(kids, pl.want[c])
		}
	}
}

// margin returns how far rounding to steps may move sleeve si: one step's
// value of every instrument in its subtree for every account that may
// trade it. The cash sleeve takes the rounding of every order, so its
// margin counts every instrument.
func (pl *planner) margin(si int) decimal.Decimal {
	m := decimal.Zero
	accounts := decimal.NewFromInt(int64(pl.nA))
	for i := range pl.p.Instruments {
		if si == pl.p.Cash || pl.within(pl.p.Instruments[i].Sleeve, si) {
			m = m.Add(pl.unit[i])
		}
	}
	return m.Mul(accounts)
}

// spread adds residual (positive: money to place; negative: money to
// raise) to sibling sleeves in stages, each taking what the previous left:
// toward their targets, sleeves inside their bands first, then breaching
// ones; then into the room left inside each band (one margin short of the
// far edge); then pro rata, by target when placing and by value when
// raising, so no sleeve goes below zero.
func (pl *planner) spread(children []int, flex []bool, residual decimal.Decimal) {
	weights := make([]decimal.Decimal, len(children))
	sign := residual.Sign()
	need := residual.Abs()
	stage := func(weight func(k, c int) decimal.Decimal) {
		if need.Sign() == 0 {
			return
		}
		sum := decimal.Zero
		for k, c := range children {
			weights[k] = decimal.Zero
			if w := weight(k, c); w.Sign() > 0 {
				weights[k] = w
				sum = sum.Add(w)
			}
		}
		if sum.Sign() == 0 {
			return
		}
		moved := decimal.Min(need, sum)
		pl.share(children, weights, sum, moved, sign)
		need = need.Sub(moved)
	}
	toward := func(k, c int) decimal.Decimal {
		gap := pl.p.Sleeves[c].Target.Mul(pl.T).Sub(pl.want[c])
		if sign < 0 {
			gap = gap.Neg()
		}
		return gap
	}
	stage(func(k, c int) decimal.Decimal {
		if !flex[k] {
			return decimal.Zero
		}
		return toward(k, c)
	})
	stage(func(k, c int) decimal.Decimal {
		if flex[k] {
			return decimal.Zero
		}
		return toward(k, c)
	})
	stage(func(k, c int) decimal.Decimal {
		ps := &pl.p.Sleeves[c]
		room := ps.HalfWidth.Mul(pl.T).Sub(pl.margin(c))
		if sign > 0 {
			return ps.Target.Mul(pl.T).Add(room).Sub(pl.want[c])
		}
		return pl.want[c].Sub(ps.Target.Mul(pl.T).Sub(room))
	})
	stage(func(k, c int) decimal.Decimal {
		if sign > 0 {
			return pl.p.Sleeves[c].Target
		}
		return pl.want[c]
	})
	stage(func(k, c int) decimal.Decimal { return oneUnit })
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
		if pl.short[a].Sign() > 0 {
			continue
		}
		usable := pl.fundable(a)
		for j := 0; j < pl.nI && usable.Sign() > 0; j++ {
			if pl.sell[j].Sign() <= 0 || pl.sellable[a*pl.nI+j].Sign() <= 0 {
				continue
			}
			avail := pl.sellable[a*pl.nI+j].Sub(pl.sellAt[a*pl.nI+j])
			if avail.Sign() <= 0 {
				continue
			}
			amt := decimal.Min(pl.sell[j], avail, usable)
			pl.sellAt[a*pl.nI+j] = pl.sellAt[a*pl.nI+j].Add(amt)
			pl.sell[j] = pl.sell[j].Sub(amt)
			usable = usable.Sub(pl.spendIn(a, amt))
		}
	}
	// Remaining sales raise cash toward the cash target. Cash-sleeve
	// instruments are sold only to fund buys, so they are left alone here.
	for j := 0; j < pl.nI; j++ {
		if pl.sell[j].Sign() <= 0 || p.Instruments[j].Sleeve == p.Cash {
			continue
		}
		for _, a := range pl.sellOrder {
			if pl.sellable[a*pl.nI+j].Sign() <= 0 {
				continue
			}
			avail := pl.sellable[a*pl.nI+j].Sub(pl.sellAt[a*pl.nI+j])
			if avail.Sign() <= 0 {
				continue
			}
			amt := decimal.Min(pl.sell[j], avail)
			pl.sellAt[a*pl.nI+j] = pl.sellAt[a*pl.nI+j].Add(amt)
			pl.sell[j] = pl.sell[j].Sub(amt)
			proceeds := amt
			if refill := decimal.Min(proceeds, pl.short[a]); refill.Sign() > 0 {
				pl.short[a] = pl.short[a].Sub(refill)
				pl.refill = pl.refill.Add(refill)
				proceeds = proceeds.Sub(refill)
			}
			pl.idle[a] = pl.idle[a].Add(proceeds.Sub(pl.spendIn(a, proceeds)))
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
			if !p.Accounts[y].Allows(i) || pl.short[y].Sign() > 0 {
				continue
			}
			for j := 0; j < nI && pl.buy[i].Sign() > 0; j++ {
				// y must hold j beyond its planned sales, and not be buying it.
				if j == i || pl.sellable[y*nI+j].Sign() <= 0 || pl.buyAt[y*nI+j].Sign() > 0 {
					continue
				}
				avail := pl.sellable[y*nI+j].Sub(pl.sellAt[y*nI+j])
				if avail.Sign() <= 0 {
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
	// cash is each account's cash minus its reserve: negative while the
	// reserve is short, so that proceeds refill it before funding buys.
	n := 0
	for k := range pl.buyAt {
		if pl.buyAt[k].Sign() > 0 {
			n++
		}
		if pl.sellAt[k].Sign() > 0 {
			n++
		}
	}
	pl.orders = make([]Order, 0, n+4) // room for a few repair orders
	pl.cash = make([]decimal.Decimal, pl.nA)
	for a := range pl.cash {
		pl.cash[a] = b.Cash[a].Sub(p.Accounts[a].Reserve)
	}
	for a := 0; a < pl.nA; a++ {
		for i := 0; i < pl.nI; i++ {
			amt := pl.sellAt[a*pl.nI+i]
			if amt.Sign() <= 0 {
				continue
			}
			// units x unit = amt - rem exactly; round up.
			units, rem := amt.QuoRem(pl.unit[i], 0)
			notional := amt.Sub(rem)
			if rem.Sign() > 0 {
				units = units.Add(oneUnit)
				notional = notional.Add(pl.unit[i])
			}
			if step := p.Instruments[i].Step; units.Mul(step).GreaterThan(b.Qty[a][i]) {
				units, _ = b.Qty[a][i].QuoRem(step, 0)
				notional = units.Mul(pl.unit[i])
			}
			if pl.addOrder(a, i, Sell, units, notional) {
				pl.cash[a] = pl.cash[a].Add(notional)
			}
		}
	}
	for a := 0; a < pl.nA; a++ {
		// pending is what the account's buys not yet rounded were planned
		// to spend: a buy rounds up only with cash they do not need.
		pending := decimal.Zero
		for _, i := range pl.buyOrder {
			if amt := pl.buyAt[a*pl.nI+i]; amt.Sign() > 0 {
				pending = pending.Add(amt)
			}
		}
		for _, i := range pl.buyOrder {
			amt := pl.buyAt[a*pl.nI+i]
			if amt.Sign() <= 0 {
				continue
			}
			pending = pending.Sub(amt)
			unit := pl.unit[i]
			units, rem := amt.QuoRem(unit, 0)
			notional := amt.Sub(rem)
			if rem.Add(rem).GreaterThanOrEqual(unit) {
				if up := notional.Add(unit); !pl.cash[a].Sub(pending).LessThan(up) {
					units, notional = units.Add(oneUnit), up
				}
			}
			if notional.GreaterThan(pl.cash[a]) {
				units, _ = pl.cash[a].QuoRem(unit, 0)
				notional = units.Mul(unit)
			}
			if pl.addOrder(a, i, Buy, units, notional) {
				pl.cash[a] = pl.cash[a].Sub(notional)
			}
		}
	}
}

var oneUnit = decimal.NewFromInt(1)

// addOrder appends an order of units steps, worth notional (units x
// unit), unless it is empty or below min_trade, and reports whether it did.
func (pl *planner) addOrder(a, i int, side Side, units, notional decimal.Decimal) bool {
	if units.Sign() <= 0 {
		return false
	}
	if minTrade := pl.p.Rebalance.MinTrade; !minTrade.IsZero() && notional.LessThan(minTrade) {
		pl.dropped[i] = true
		return false
	}
	in := &pl.p.Instruments[i]
	qty := units.Mul(in.Step)
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

// project computes the sleeve values and the total after the orders. Free
// cash after is each account's cash above its reserve, so proceeds that
// refill a short reserve leave the investable total.
func (pl *planner) project() {
	p, s := pl.p, pl.s
	if pl.after == nil {
		pl.after = make([]decimal.Decimal, len(p.Sleeves))
	}
	for si := range p.Sleeves {
		if p.Sleeves[si].Leaf() {
			pl.after[si] = s.Sleeves[si].Value
		} else {
			pl.after[si] = decimal.Zero
		}
	}
	for _, f := range s.FreeCash {
		pl.after[p.Cash] = pl.after[p.Cash].Sub(f)
	}
	for a := range pl.cash {
		if pl.cash[a].Sign() > 0 {
			pl.after[p.Cash] = pl.after[p.Cash].Add(pl.cash[a])
		}
	}
	for k := range pl.orders {
		o := &pl.orders[k]
		n := o.Notional
		if o.Side == Sell {
			n = n.Neg()
		}
		sl := p.Instruments[o.instrument].Sleeve
		pl.after[sl] = pl.after[sl].Add(n)
	}
	drift.Rollup(p, pl.after)
	pl.totalAfter = drift.TotalOf(p, pl.after)
}

// repair adds single steps where a sleeve the plan should bring inside its
// band still breaches because of rounding. A step that would push another
// sleeve out of its band is taken back.
func (pl *planner) repair() {
	p := pl.p
	for tries := 0; tries < 2*(len(pl.orders)+len(p.Sleeves)); tries++ {
		before := pl.breachCount()
		nudged := false
		for si := range p.Sleeves {
			ps := &p.Sleeves[si]
			if !pl.s.Sleeves[si].Breach || !pl.outAfter(si) {
				continue
			}
			targetValue := ps.Target.Mul(pl.totalAfter)
			over := pl.after[si].GreaterThan(targetValue)
			// gap is how far the sleeve lies beyond its band edge.
			gap := pl.after[si].Sub(targetValue).Abs().Sub(ps.HalfWidth.Mul(pl.totalAfter))
			orders := append([]Order(nil), pl.orders...)
			cash := append([]decimal.Decimal(nil), pl.cash...)
			if !pl.nudge(si, over, gap) {
				continue
			}
			pl.project()
			if pl.breachCount() > before {
				pl.orders, pl.cash = orders, cash
				pl.project()
				continue
			}
			nudged = true
			break
		}
		if !nudged {
			return
		}
	}
}

// outAfter reports whether sleeve si lies outside its band after the
// orders.
func (pl *planner) outAfter(si int) bool {
	if pl.totalAfter.Equal(pl.T) {
		d := &pl.s.Sleeves[si]
		return drift.OutOfBand(pl.after[si], d.TargetValue, d.HalfWidthValue)
	}
	return drift.Breaches(&pl.p.Sleeves[si], pl.after[si], pl.totalAfter)
}

// breachCount counts the sleeves outside their bands after the orders.
func (pl *planner) breachCount() int {
	n := 0
	for si := range pl.p.Sleeves {
		if pl.outAfter(si) {
			n++
		}
	}
	return n
}

// nudge adds the steps that move sleeve si back inside its band (by more
// than gap) to one order, within holdings and cash: sells (over) or buys
// (under) of an instrument in its subtree, on an existing order or as a new
// order in an account that may trade it. For the cash sleeve it is the
// reverse: too much cash wants more bought of an instrument still under its
// target, too little more sold of one still over.
func (pl *planner) nudge(si int, over bool, gap decimal.Decimal) bool {
	p := pl.p
	wantSell := over
	if si == p.Cash {
		wantSell = !over
	}
	eligible := func(i int) bool {
		leaf := p.Instruments[i].Sleeve
		if si != p.Cash {
			return pl.within(leaf, si)
		}
		below := pl.after[leaf].LessThan(p.Sleeves[leaf].Target.Mul(pl.totalAfter))
		return leaf != p.Cash && below != wantSell
	}
	for k := range pl.orders {
		o := &pl.orders[k]
		if (o.Side == Sell) != wantSell || !eligible(o.instrument) {
			continue
		}
		if n := pl.steps(o.account, o.instrument, o.Quantity, wantSell, gap); n.Sign() > 0 {
			pl.step(o.account, o.instrument, n, wantSell)
			o.units = o.units.Add(n)
			o.Quantity = o.units.Mul(p.Instruments[o.instrument].Step)
			o.Notional = o.Quantity.Mul(o.Price)
			return true
		}
	}
	side := Buy
	if wantSell {
		side = Sell
	}
	for i := range p.Instruments {
		if !eligible(i) {
			continue
		}
		for a := range p.Accounts {
			if pl.hasOrder(a, i) || (!wantSell && !p.Accounts[a].Allows(i)) {
				continue
			}
			n := pl.steps(a, i, decimal.Zero, wantSell, gap)
			if n.Sign() <= 0 || n.Mul(pl.unit[i]).LessThan(p.Rebalance.MinTrade) {
				continue
			}
			pl.step(a, i, n, wantSell)
			if pl.rule[i] == "" {
				pl.rule[i] = pl.ruleFor(p.Instruments[i].Sleeve)
			}
			pl.addOrder(a, i, side, n, n.Mul(pl.unit[i]))
			return true
		}
	}
	return false
}

// steps returns how many more steps of instrument i account a should trade
// on top of qty to move more than gap: as many as that takes, but no more
// than its holding (sell) or its cash (buy) allows.
func (pl *planner) steps(a, i int, qty decimal.Decimal, sell bool, gap decimal.Decimal) decimal.Decimal {
	step := pl.p.Instruments[i].Step
	unit := pl.unit[i]
	want, _ := gap.QuoRem(unit, 0)
	want = want.Add(oneUnit)
	var most decimal.Decimal
	if sell {
		most, _ = pl.b.Qty[a][i].Sub(qty).QuoRem(step, 0)
	} else {
		most, _ = pl.cash[a].QuoRem(unit, 0)
	}
	return decimal.Min(want, most)
}

// step moves account a's cash by n steps of instrument i.
func (pl *planner) step(a, i int, n decimal.Decimal, sell bool) {
	amount := pl.unit[i].Mul(n)
	if sell {
		pl.cash[a] = pl.cash[a].Add(amount)
	} else {
		pl.cash[a] = pl.cash[a].Sub(amount)
	}
}

// hasOrder reports whether the plan already trades instrument i in account a.
func (pl *planner) hasOrder(a, i int) bool {
	for k := range pl.orders {
		if pl.orders[k].account == a && pl.orders[k].instrument == i {
			return true
		}
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
		TotalAfter:    pl.totalAfter,
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
		if pl.totalAfter.Sign() > 0 {
			r.WeightAfter = pl.after[si].DivRound(pl.totalAfter, drift.WeightPlaces)
			r.BreachAfter = pl.outAfter(si)
		}
		out.Sleeves[si] = r
	}
	pl.unresolved(out)
	slices.SortStableFunc(out.Orders, func(x, y Order) int {
		if x.Phase != y.Phase {
			return x.Phase - y.Phase
		}
		if x.account != y.account {
			return x.account - y.account
		}
		return x.instrument - y.instrument
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
	p := pl.p
	gap := make([]string, len(p.Sleeves))
	drop := make([]string, len(p.Sleeves))
	// Sales left unplaced are fractions of a step that cannot be sold; the
	// buys they would have paid for fall short by as much, as rounding.
	tails := decimal.Zero
	for j := range p.Instruments {
		if p.Instruments[j].Sleeve != p.Cash {
			tails = tails.Add(pl.sell[j])
		}
	}
	for i := range p.Instruments {
		in := &p.Instruments[i]
		if pl.dropped[i] && drop[in.Sleeve] == "" {
			drop[in.Sleeve] = fmt.Sprintf("an order of %s was below min_trade %s", in.Symbol, p.Rebalance.MinTrade)
		}
		if pl.buy[i].Sign() <= 0 && pl.sell[i].Sign() <= 0 {
			continue
		}
		tol := decimal.Max(p.Rebalance.MinTrade, pl.unit[i])
		switch {
		case gap[in.Sleeve] != "":
		case pl.buy[i].GreaterThan(tol.Add(tails)):
			gap[in.Sleeve] = fmt.Sprintf("%s %s of %s could not be bought: no account that may hold it has free cash or sale proceeds left",
				pl.buy[i].StringFixed(2), p.Currency, in.Symbol)
			if pl.refill.Sign() > 0 {
				gap[in.Sleeve] += fmt.Sprintf(" (%s %s of proceeds refill reserves of accounts whose cash is below their reserve)",
					pl.refill.StringFixed(2), p.Currency)
			}
		case pl.sell[i].GreaterThan(tol.Add(pl.tail(i))) && in.Sleeve != p.Cash:
			gap[in.Sleeve] = fmt.Sprintf("%s %s of %s could not be sold", pl.sell[i].StringFixed(2), p.Currency, in.Symbol)
		}
	}
	if pl.refill.Sign() > 0 && gap[p.Cash] == "" {
		var short []string
		for a := range p.Accounts {
			if pl.b.Cash[a].LessThan(p.Accounts[a].Reserve) {
				short = append(short, p.Accounts[a].Name)
			}
		}
		gap[p.Cash] = fmt.Sprintf("%s %s of sale proceeds refill the reserves of %s, whose cash is below their reserve",
			pl.refill.StringFixed(2), p.Currency, strings.Join(short, ", "))
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
			if reason == "" && pl.soldOut(si) {
				reason = "what is left is held in fractions of a trading step, which cannot be sold"
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

// soldOut reports whether the plan sells every whole step held of every
// instrument in sleeve si's subtree.
func (pl *planner) soldOut(si int) bool {
	sold := make([]decimal.Decimal, pl.nA*pl.nI)
	for k := range pl.orders {
		if o := &pl.orders[k]; o.Side == Sell {
			sold[o.account*pl.nI+o.instrument] = o.Quantity
		}
	}
	for i := range pl.p.Instruments {
		if !pl.within(pl.p.Instruments[i].Sleeve, si) {
			continue
		}
		for a := 0; a < pl.nA; a++ {
			if !pl.b.Qty[a][i].Sub(sold[a*pl.nI+i]).LessThan(pl.p.Instruments[i].Step) {
				return false
			}
		}
	}
	return true
}

// tail returns the value of instrument i held in fractions of a step,
// which cannot be sold.
func (pl *planner) tail(i int) decimal.Decimal {
	t := decimal.Zero
	for a := 0; a < pl.nA; a++ {
		t = t.Add(pl.s.Values[a][i].Sub(pl.sellable[a*pl.nI+i]))
	}
	return t
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
