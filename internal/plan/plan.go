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
//     its instruments by share, restoring only the instruments outside the
//     split tolerance (bands.within_sleeve); the rest of the sleeve's trade
//     goes to the others toward their shares (split). The cash sleeve is
//     met from free cash first;
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
//  5. Polish (polish.go): the projected allocation after the orders is
//     improved with whole-step moves, kept when they rate better: no
//     in-band sleeve pushed out, fewer sleeves out of band, a smaller
//     largest deviation, less idle cash (destination target), fewer
//     orders, less turnover. With destination target a second start, the
//     simple whole-share plan, is polished too and the better kept. A plan
//     that still does harm is replaced by the best one polished from no
//     order. Every sleeve out of band after the plan, and any amount no
//     account could place, is listed as unresolved with why; every order
//     says why it is there.
//
// A plan is tax-aware when the policy has a tax block or the holdings give
// tax lots (see tax.go): sales in taxable accounts are capped at what the
// lots may sell under the policy's tax rules and each sell names the lots
// it sells and the gains it realizes; the wash-sale guard keeps buys out
// of the plan, whose share of their sleeve then goes to the sleeve's other
// instruments; tax-loss harvesting may add sells and buys of substitutes;
// and the policy's asset location places buys paid with free cash in the
// preferred accounts first.
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

	"github.com/rebalancerd/rebalancerd/internal/dec64"
	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/tax"
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
	// RuleRestoreSplit trades instruments inside one leaf sleeve whose
	// split left the tolerance of bands.within_sleeve: the sleeve's weight
	// is unchanged by them, so an account may buy and sell the sleeve.
	RuleRestoreSplit Rule = "restore_split"
	// RuleHarvest sells lots at a loss in a taxable account and buys the
	// policy's substitute, of the same sleeve, with the proceeds.
	RuleHarvest Rule = "harvest"
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
	// Why explains the order in one line: its sleeve's weight before and
	// after the plan, the sleeve's target and band, and what the rule
	// does, in words.
	Why string `json:"why"`
	// Lots are the tax lots a sell in a taxable account sells, in the
	// order chosen (tax.Lots.Select); none for buys, for sells in
	// tax-advantaged accounts and for positions given without lots.
	Lots []tax.Sale `json:"lots,omitempty"`
	// Gains are the gains and losses Lots realize.
	Gains tax.Gains `json:"gains,omitzero"`
	// BasisUnknown marks a sell in a taxable account of a position given
	// without lots: what it realizes is unknown and not in the plan's
	// gains.
	BasisUnknown bool `json:"basis_unknown,omitempty"`
	// WashSale is what the wash-sale rule does to the loss of a sell in a
	// taxable account (tax.WashSale.Match): the loss disallowed, and the
	// purchases that replace the shares; nil when nothing is disallowed.
	// Gains count only the loss allowed.
	WashSale *tax.Wash `json:"wash_sale,omitempty"`

	account, instrument int
	units               decimal.Decimal // Quantity / step
	n                   num             // units, during the polish
	changed             bool            // the polish changed n, not yet units, Quantity and Notional
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
// Sleeve is empty for a reason about the plan as a whole: a tax-aware plan
// refused (see MakeWith), which then has no order, or a withdrawal that
// cannot be raised in full (see Withdraw). Reason says why.
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
	// Tax is the tax side of a tax-aware plan; nil otherwise.
	Tax *TaxReport `json:"tax,omitempty"`
	// CashFlow is what a cash-flow plan (Invest, Withdraw) did with the
	// money; nil for other plans.
	CashFlow *CashFlow `json:"cash_flow,omitempty"`
	// Waiting is the new money a phase-in held back from the plan, for
	// later steps (see HoldBack); none without one.
	Waiting []Waiting `json:"waiting_cash,omitempty"`
}

// Make plans the orders for snapshot s with its policy's destination and
// no trading history: MakeWith(s, Options{}).
func Make(s *drift.Snapshot) *Plan {
	return MakeWith(s, Options{})
}

// MakeTo plans the orders for snapshot s with the given destination and no
// trading history.
func MakeTo(s *drift.Snapshot, dest policy.Destination) *Plan {
	return MakeWith(s, Options{Destination: dest})
}

// Options are the inputs of a plan besides its snapshot.
type Options struct {
	// Destination overrides the policy's destination; empty keeps it.
	Destination policy.Destination
	// Date is the trade date of the orders, to which holding periods and
	// wash-sale windows are counted. The zero Date means the day of the
	// snapshot's price time in the policy's trade zone
	// (policy.Policy.TradeZone: tax.time_zone, else the investor's).
	Date tax.Date
	// History is what the household traded recently in all its accounts.
	// The wash-sale guard blocks buys within the window of its loss
	// sales (and of the plan's own), and harvesting skips losses that a
	// buy of its Buys (or of the lots' acquisitions) would make wash
	// sales. Trades the caller does not pass are not seen.
	History tax.History
}

// MakeWith plans the orders for snapshot s with options o.
//
// A tax-aware plan is computed again, with more buys kept out, when the
// wash-sale guard finds a buy of the plan within the window of a loss sale
// of the same plan: the bought instrument is kept out (its share goes to
// its sleeve's other instruments), or, when either order is a relocation,
// relocations through those instruments are. Should the plan still not
// pass the guard, or should a sell not find its lots, no order is planned
// and the plan says why (fail closed).
func MakeWith(s *drift.Snapshot, o Options) *Plan { return makeWith(s, o, rating{}) }

// rating says how the polish rates its moves, for the tests that compare
// the ways, which must give the same plan: exact rates in decimal
// arithmetic throughout instead of int64 where the figures fit (num.go);
// plain does without the polish's shortcuts (the order index, moves rated
// before they are made, the view of the projection kept up to date move
// by move) and rates every move made over every sleeve.
type rating struct{ exact, plain bool }

// makeWith is MakeWith, rating the polish's moves as r says.
func makeWith(s *drift.Snapshot, o Options, r rating) *Plan {
	dest := o.Destination
	if dest == "" {
		dest = s.Book.Policy.Rebalance.Destination
	}
	tx := newTaxState(s, o)
	for {
		pl := newPlanner(s, dest, tx)
		pl.exact, pl.plain = r.exact, r.plain
		pl.desired()
		pl.amounts()
		pl.place()
		pl.round()
		// The polish projects the orders itself (load): the decimals of
		// the projection are made once, for the plan it keeps (sync).
		pl.polish()
		if dest == policy.DestinationTarget && pl.flow == nil {
			pl.secondStart()
		}
		if pl.harms() {
			// Start again from no order at all, which does no harm, and
			// keep only what the polish finds from there.
			pl.withdrawAll()
			pl.polish()
			pl.harmful = true
			if pl.harms() {
				pl.withdrawAll()
			}
		}
		pl.settle()
		// The asset location of buys paid for by sales, once the polish
		// has settled the allocation, which it leaves as it is.
		pl.locateSales()
		if tx == nil {
			return pl.finish()
		}
		if err := pl.taxPass(); err != nil {
			return pl.refuse(err)
		}
		again, err := pl.washConflicts()
		switch {
		case err != nil:
			return pl.refuse(err)
		case !again:
			return pl.finish()
		}
	}
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
	// buyN and sellN hold split's amounts in nums instead of buy and sell
	// when no code reads those before place (no tax state, no cash flow,
	// no asset location: amounts makes them then), which takes them as
	// they are; nil otherwise. place writes what is left of them back to
	// buy and sell.
	buyN, sellN []num
	// buyAt and sellAt are the amounts to buy and sell per account,
	// [a*nI+i], set before place (by the asset location, a withdrawal:
	// nil until perAccount makes them); place keeps its own in pl.placed,
	// and round reads them there (amountsAt).
	buyAt  []decimal.Decimal
	sellAt []decimal.Decimal
	// sellable is the value of the whole steps held, [a*nI+i]: a holding
	// that is not a multiple of its step cannot be sold to the last unit.
	sellable []decimal.Decimal
	// free and budget are what place may spend: free cash not yet
	// committed, per account, and in all. place spends its own copies
	// (pl.placed) and leaves these as they were: nothing reads them after.
	free   []decimal.Decimal
	short  []decimal.Decimal // reserve not yet covered by cash, per account
	refill decimal.Decimal   // sale proceeds planned to refill short reserves
	budget decimal.Decimal
	moved  []bool            // [a*nI+i]: a relocation trades instrument i in account a
	held   []decimal.Decimal // household value held before the orders, per instrument
	// wholeStep is true for the instruments whose step is 1: a quantity of
	// them is their number of steps.
	wholeStep []bool
	parts     []decimal.Decimal // scratch for sums
	// placed is place's figures in nums, which round reads; nil before
	// place.
	placed *placement

	buyOrder []int // instruments, most constrained first
	// openRoom is room for nI ints (orderings' scratch, free once it is
	// done), for placement.open.
	openRoom   []int
	spendOrder []int // accounts, most constrained first
	sellOrder  []int // accounts, tax-advantaged first

	// tx is the tax state of a tax-aware plan (nil otherwise); withheld
	// is, per [a*nI+i], the value of whole steps held that the tax rules
	// keep from being sold, and prefer, per instrument, the accounts
	// where free cash buys it first (nil without asset location).
	tx       *taxState
	withheld []decimal.Decimal
	prefer   [][]int
	// heldBackList are the held-back positions of the tax report.
	heldBackList []HeldBack
	// flow is the cash flow of a cash-flow plan (cashflow.go); nil
	// otherwise.
	flow *cashFlow

	orders     []Order
	dropped    []bool            // per instrument: an order below min_trade was dropped
	cash       []decimal.Decimal // per account: cash left after the orders
	after      []decimal.Decimal // projected value per sleeve
	totalAfter decimal.Decimal   // projected total
	sameTotal  bool              // totalAfter equals T
	// minTrade is the policy's min_trade as a num when hasMinTrade (it is
	// not zero), for round's orders.
	minTrade    num
	hasMinTrade bool
	// unitN is unit in nums, for the instruments round gave an order (zero
	// for the others); nil before round.
	unitN []num

	// The polish (polish.go): the count of orders with steps, each
	// sleeve's deviation, the allocation before the plan rated, and whether the
	// orders found were all taken back because they did harm.
	nOrders int
	dev     []num // per sleeve: after - target x total, during the polish
	before  score
	harmful bool
	noPairs bool // the polish tries no pairs of orders (spendIdle)
	wide    bool // the polish tries the moves of rescue too
	// eligible is improve's scratch: per instrument, whether its moves
	// may bring the sleeve improved toward its target.
	eligible []bool
	// under lists, per sleeve, the instruments improve may move for it
	// (instrumentsUnder).
	under  [][]int
	f      numbers
	fixedN fixedNums
	idx    orderIndex
	view   view
	ranking
	exact bool // the polish rates in decimal arithmetic only (makeWith)
	plain bool // the polish takes no shortcut (makeWith)
}

func newPlanner(s *drift.Snapshot, dest policy.Destination, tx *taxState) *planner {
	b := s.Book
	p := b.Policy
	nA, nI, nS := len(p.Accounts), len(p.Instruments), len(p.Sleeves)
	pl := &planner{s: s, b: b, p: p, dest: dest, T: s.Total, nA: nA, nI: nI, tx: tx}
	// One backing array for every per-sleeve, per-instrument and
	// per-account figure, and the scratch of sums.
	dec := make([]decimal.Decimal, 2*nS+5*nI+nA*nI+3*nA+nA+nS)
	next := func(n int) []decimal.Decimal {
		out := dec[:n:n]
		dec = dec[n:]
		return out
	}
	pl.want, pl.after = next(nS), next(nS)
	pl.buy, pl.sell, pl.unit, pl.held = next(nI), next(nI), next(nI), next(nI)
	pl.sellable = next(nA * nI)
	pl.free, pl.short, pl.cash = next(nA), next(nA), next(nA)
	pl.parts = dec[:0]
	flags := make([]bool, nA*nI+2*nI)
	pl.moved, pl.dropped, pl.wholeStep = flags[:nA*nI], flags[nA*nI:nA*nI+nI], flags[nA*nI+nI:]
	// Each step's power of ten (dec64's PowerOfTen), found once: pow[i]
	// holds k + 1 for a step of 10^k, 0 for a step that is none.
	var powBuf [64]int32
	pow := powBuf[:0]
	if nI <= len(powBuf) {
		pow = powBuf[:nI]
	} else {
		pow = make([]int32, nI)
	}
	for i := range p.Instruments {
		k, ok := p.Instruments[i].StepFigure().PowerOfTen()
		pow[i] = 0
		if ok {
			pow[i] = k + 1
		}
		pl.wholeStep[i] = ok && k == 0
		if !b.Price[i].IsZero() {
			pl.unit[i] = pl.timesStep(i, b.Price[i])
		}
	}
	for a := 0; a < nA; a++ {
		for i, q := range b.Qty[a] {
			if q.IsZero() {
				continue
			}
			// The step's power of ten found above; the division done once.
			if steps, whole := wholeSteps(q, p.Instruments[i].Step, pow[i]-1, pow[i] != 0); whole {
				pl.sellable[a*nI+i] = s.Values[a][i]
			} else {
				pl.sellable[a*nI+i] = mul(pl.timesStep(i, steps), b.Price[i])
			}
		}
	}
	if tx != nil {
		pl.capSales()
	}
	for a := range p.Accounts {
		if r := p.Accounts[a].Reserve; r.Sign() > 0 && greater(r, b.Cash[a]) {
			pl.short[a] = sub(r, b.Cash[a])
		}
	}
	pl.rule = make([]Rule, nI)
	copy(pl.free, s.FreeCash)
	pl.orderings()
	pl.locations()
	return pl
}

// timesStep returns x times instrument i's step: the quantity of x steps,
// or the value of one step when x is the price.
func (pl *planner) timesStep(i int, x decimal.Decimal) decimal.Decimal {
	if pl.wholeStep[i] {
		return x
	}
	return mul(x, pl.p.Instruments[i].Step)
}

// sumOf returns the sum of term(k) for k in [0, n), with drift.Sum on the
// terms that are not zero. term must not call sumOf: they share the
// scratch.
func (pl *planner) sumOf(n int, term func(k int) decimal.Decimal) decimal.Decimal {
	parts := pl.parts[:0]
	for k := 0; k < n; k++ {
		if t := term(k); !t.IsZero() {
			parts = append(parts, t)
		}
	}
	return drift.Sum(parts)
}

// orderings fixes the deterministic orders in which instruments and
// accounts are served.
func (pl *planner) orderings() {
	p := pl.p
	ints := make([]int, 2*pl.nI+3*pl.nA)
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
	pl.sellOrder = rest[pl.nI+pl.nA : pl.nI+2*pl.nA : pl.nI+2*pl.nA]
	for i := range pl.buyOrder {
		pl.buyOrder[i] = i
	}
	for a := range pl.spendOrder {
		pl.spendOrder[a] = a
		pl.sellOrder[a] = a
	}
	sortByKey(pl.buyOrder, holders)
	pl.openRoom = holders[:0:pl.nI]
	sortByKey(pl.spendOrder, allowed)
	// Accounts short of their reserve sell last: their proceeds refill the
	// reserve before they are free. Then tax-advantaged before taxable.
	rank := allowed // done with: the rank of each account
	for a := range rank {
		rank[a] = 0
		if pl.short[a].Sign() > 0 {
			rank[a] += 2
		}
		if !p.Accounts[a].Type.TaxAdvantaged() {
			rank[a]++
		}
	}
	sortByKey(pl.sellOrder, rank)
}

// sortByKey sorts xs stably by key[x], in place: an insertion sort, for
// the few accounts and instruments of a household, which are often in
// order already.
func sortByKey(xs, key []int) {
	for k := 1; k < len(xs); k++ {
		x := xs[k]
		j := k
		for ; j > 0 && key[xs[j-1]] > key[x]; j-- {
			xs[j] = xs[j-1]
		}
		xs[j] = x
	}
}

var half = decimal.New(5, -1)

// desired sets want for every sleeve, top-down.
func (pl *planner) desired() {
	var buf [16]int // on the stack while the policy is small
	top := buf[:0]
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
	for _, c := range children {
		sd := &pl.s.Sleeves[c]
		targetValue := sd.TargetValue
		switch {
		case pl.dest == policy.DestinationTarget:
			pl.want[c] = targetValue
		case sd.Breach:
			edge := sd.HalfWidthValue
			if pl.dest == policy.DestinationMidway {
				edge = mul(edge, half)
			} else {
				// Aim inside the edge by one step of every instrument below,
				// so that rounding to steps cannot leave the sleeve outside;
				// never further in than midway.
				edge = maxDec(sub(edge, pl.margin(c)), mul(edge, half))
			}
			if greater(sd.Value, targetValue) {
				pl.want[c] = add(targetValue, edge)
			} else {
				pl.want[c] = sub(targetValue, edge)
			}
		default:
			pl.want[c] = sd.Value
		}
	}
	// The sum of the desired values, made only when it is not total (with
	// destination target it is: the targets' fractions sum to one).
	parts := pl.parts[:0]
	for _, c := range children {
		if w := pl.want[c]; !w.IsZero() {
			parts = append(parts, w)
		}
	}
	if dec64.SumCmp(parts, total) != 0 {
		pl.spread(children, sub(total, drift.Sum(parts)))
	}
	for _, c := range children {
		if kids := pl.p.Sleeves[c].Children; len(kids) > 0 {
			pl.allocate(kids, pl.want[c])
		}
	}
}

// keeps reports whether sleeve c keeps its value before the residual of
// its siblings is spread: with a band destination, when it is inside its
// band.
func (pl *planner) keeps(c int) bool {
	return pl.dest != policy.DestinationTarget && !pl.s.Sleeves[c].Breach
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
			m = add(m, pl.unit[i])
		}
	}
	return mul(m, accounts)
}

// spread adds residual (positive: money to place; negative: money to
// raise) to sibling sleeves in stages, each taking what the previous left:
// toward their targets, sleeves inside their bands first, then breaching
// ones; then into the room left inside each band (one margin short of the
// far edge); then pro rata, by target when placing and by value when
// raising, so no sleeve goes below zero.
func (pl *planner) spread(children []int, residual decimal.Decimal) {
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
				sum = add(sum, w)
			}
		}
		if sum.Sign() == 0 {
			return
		}
		moved := minDec(need, sum)
		pl.share(children, weights, sum, moved, sign)
		need = sub(need, moved)
	}
	toward := func(k, c int) decimal.Decimal {
		gap := sub(pl.s.Sleeves[c].TargetValue, pl.want[c])
		if sign < 0 {
			gap = gap.Neg()
		}
		return gap
	}
	stage(func(k, c int) decimal.Decimal {
		if !pl.keeps(c) {
			return decimal.Zero
		}
		return toward(k, c)
	})
	stage(func(k, c int) decimal.Decimal {
		if pl.keeps(c) {
			return decimal.Zero
		}
		return toward(k, c)
	})
	stage(func(k, c int) decimal.Decimal {
		sd := &pl.s.Sleeves[c]
		room := sub(sd.HalfWidthValue, pl.margin(c))
		if sign > 0 {
			return sub(add(sd.TargetValue, room), pl.want[c])
		}
		return sub(pl.want[c], sub(sd.TargetValue, room))
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
		part := sub(amount, given)
		if k != last {
			part = dec64.DivRound(mul(amount, weights[k]), wSum, amountPlaces)
		}
		given = add(given, part)
		if sign < 0 {
			part = part.Neg()
		}
		pl.want[c] = add(pl.want[c], part)
	}
}

// amounts turns desired sleeve values into household amounts to buy and
// sell per instrument, and the free-cash budget.
func (pl *planner) amounts() {
	p, s := pl.p, pl.s
	held := pl.held
	for i := range held {
		// The only instrument of a sleeve other than cash (a leaf: the
		// policy refuses an instrument of a sleeve with sub-sleeves, in
		// policy/parse.go) is worth the sleeve's value, which drift made as
		// this sum: of the same positions in the same order (Compute).
		if sl := p.Instruments[i].Sleeve; sl != p.Cash && len(p.Sleeves[sl].Instruments) == 1 {
			held[i] = s.Sleeves[sl].Value
			continue
		}
		// sumOf, without a call per account.
		parts := pl.parts[:0]
		for a := 0; a < pl.nA; a++ {
			if v := s.Values[a][i]; !v.IsZero() {
				parts = append(parts, v)
			}
		}
		held[i] = drift.Sum(parts)
	}
	if pl.tx == nil && pl.flow == nil && pl.prefer == nil {
		all := make([]num, 2*pl.nI)
		pl.buyN, pl.sellN = all[:pl.nI:pl.nI], all[pl.nI:]
	}
	for si := range p.Sleeves {
		ps := &p.Sleeves[si]
		if !ps.Leaf() || si == p.Cash {
			continue
		}
		traded := pl.dest == policy.DestinationTarget || !equal(pl.want[si], s.Sleeves[si].Value)
		if !traded {
			continue
		}
		pl.split(si)
		if pl.tx != nil {
			pl.keepOut(si)
		}
	}
	// The cash sleeve: spend free cash when it is over target; sell its
	// instruments only for what free cash cannot cover.
	excess := sub(s.Sleeves[p.Cash].Value, pl.want[p.Cash])
	if excess.Sign() <= 0 {
		return
	}
	freeTotal := pl.freeTotal()
	pl.budget = minDec(excess, freeTotal)
	rest := sub(excess, pl.budget)
	if rest.Sign() <= 0 {
		return
	}
	instr := p.Sleeves[p.Cash].Instruments
	heldSum := pl.sumOf(len(instr), func(k int) decimal.Decimal { return held[instr[k]] })
	given := decimal.Zero
	for k, i := range instr {
		if held[i].Sign() <= 0 {
			continue
		}
		var part decimal.Decimal
		if k == len(instr)-1 {
			part = sub(rest, given)
		} else {
			part = dec64.DivRound(mul(rest, held[i]), heldSum, amountPlaces)
		}
		part = minDec(part, held[i])
		given = add(given, part)
		pl.sell[i] = part
		pl.rule[i] = RuleFundBuys
	}
}

// freeTotal returns the household's free cash, the sum of s.FreeCash:
// the cash sleeve's value when it holds no instrument and has no
// sub-sleeve, which drift made as that very sum (Compute).
func (pl *planner) freeTotal() decimal.Decimal {
	p, s := pl.p, pl.s
	cash := &p.Sleeves[p.Cash]
	bare := len(cash.Children) == 0
	for _, i := range cash.Instruments {
		bare = bare && pl.held[i].IsZero()
	}
	if bare {
		return s.Sleeves[p.Cash].Value
	}
	return pl.sumOf(pl.nA, func(a int) decimal.Decimal { return s.FreeCash[a] })
}

// split turns leaf sleeve si's desired value into amounts to buy and sell
// of its instruments. The sleeve's weight is the policy; the split between
// its instruments is a preference with its own tolerance
// (policy.Sleeve.SplitTolerance). An instrument whose value lies outside
// that tolerance of its share of the desired value is brought to its
// share (restored); what the sleeve still needs or releases then goes to
// the other instruments in proportion to how far each is from its share
// on that side, so none is traded only to restore a split that is inside
// its tolerance, and none is pushed past its share. The trades against
// the sleeve's own direction, which only a restoration makes, carry
// RuleRestoreSplit.
func (pl *planner) split(si int) {
	p := pl.p
	ps := &p.Sleeves[si]
	want, held := pl.want[si], pl.held
	rule := pl.ruleFor(si)
	if len(ps.Instruments) == 1 {
		i := ps.Instruments[0]
		pl.rule[i] = rule
		if pl.buyN != nil {
			// The difference in nums, for place.
			switch d := pl.amountNum(pl.numOf(want).Sub(pl.numOf(held[i]))); d.Sign() {
			case 1:
				pl.buyN[i] = d
			case -1:
				pl.sellN[i] = d.Neg()
			}
			return
		}
		// The difference made on the side it falls, without negating it
		// (sub's: a zero subtracted leaves the other decimal), each figure
		// read once.
		w, h := dec64.Read(want), dec64.Read(held[i])
		switch dec64.CmpF(w, h) {
		case 1:
			pl.buy[i] = want
			if !held[i].IsZero() {
				pl.buy[i] = dec64.SubF(w, h).D
			}
		case -1:
			pl.sell[i] = held[i]
			if !want.IsZero() {
				pl.sell[i] = dec64.SubF(h, w).D
			}
		}
		return
	}
	// The split is figured in nums (num.go): exact, without decimal
	// arithmetic while the figures fit an int64.
	x := pl.fixed()
	tol := x.tol[si]
	n := len(ps.Instruments)
	// share, then the delta, of each instrument; restored marks those
	// outside the tolerance.
	var valBuf [16]num
	var restoredBuf [8]bool
	vals, restored := valBuf[:0], restoredBuf[:0]
	if n <= len(restoredBuf) {
		vals, restored = valBuf[:2*n], restoredBuf[:n]
	} else {
		vals, restored = make([]num, 2*n), make([]bool, n)
	}
	shareOf, delta := vals[:n], vals[n:]
	wantN := pl.numOf(want)
	rest := wantN // what the sleeve still needs beyond the restored shares
	for k, i := range ps.Instruments {
		shareOf[k] = wantN.Mul(x.share[i])
		gap := shareOf[k].Sub(x.held[i])
		if gap.Abs().GreaterThan(tol.Mul(shareOf[k])) {
			restored[k] = true
			delta[k] = gap
			rest = rest.Sub(shareOf[k])
		} else {
			rest = rest.Sub(x.held[i])
		}
	}
	// rest goes to the others in proportion to their gaps on its side.
	sign := rest.Sign()
	var gaps, given num
	last := -1
	for k := range ps.Instruments {
		if restored[k] {
			continue
		}
		if g := shareOf[k].Sub(x.held[ps.Instruments[k]]); g.Sign() == sign && sign != 0 {
			gaps = gaps.Add(g)
			last = k
		}
	}
	for k := range ps.Instruments {
		if restored[k] || last < 0 {
			continue
		}
		g := shareOf[k].Sub(x.held[ps.Instruments[k]])
		if g.Sign() != sign {
			continue
		}
		part := rest.Sub(given)
		if k != last {
			part = rest.Mul(g).DivRoundTo(gaps, amountPlaces)
		}
		given = given.Add(part)
		delta[k] = part
	}
	net := dec64.Cmp(want, pl.s.Sleeves[si].Value) // the sign of want - value, without making it
	for k, i := range ps.Instruments {
		pl.rule[i] = rule
		if d := delta[k].Sign(); d != 0 && (d != net || net == 0 && d < 0) {
			pl.rule[i] = RuleRestoreSplit
		}
		// In nums for place (pl.buyN), or as decimals.
		switch {
		case pl.buyN != nil && delta[k].Sign() > 0:
			pl.buyN[i] = pl.amountNum(delta[k])
		case pl.buyN != nil && delta[k].Sign() < 0:
			pl.sellN[i] = pl.amountNum(delta[k].Neg())
		case delta[k].Sign() > 0:
			pl.buy[i] = delta[k].dec()
		case delta[k].Sign() < 0:
			pl.sell[i] = delta[k].Neg().dec()
		}
	}
}

// amountNum returns x as place reads an amount to buy or sell from a
// decimal (numOf): without trailing zeros, and held in an int64 whenever
// it fits there, even when the arithmetic that made it did not (a num
// made big stays big, and every operation on it is decimal's).
func (pl *planner) amountNum(x num) num {
	if x.isBig() {
		return pl.numOf(x.dec())
	}
	return x.trimmed()
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
	// Free cash first: no sale while free cash can fund a buy; in the
	// accounts the asset location prefers first.
	if pl.prefer != nil {
		pl.spendPreferred()
	}
	m := pl.placing()
	for _, a := range pl.spendOrder {
		if m.budget.Sign() <= 0 {
			break
		}
		if m.free[a].Sign() <= 0 {
			continue
		}
		used, _ := m.spendIn(a, minNum(m.free[a], m.budget))
		m.free[a] = m.free[a].Sub(used)
		m.budget = m.budget.Sub(used)
	}
	// Sales that fund buys in the same account, tax-advantaged first.
	for _, a := range pl.sellOrder {
		if m.short[a].Sign() > 0 {
			continue
		}
		// usable is what the account could still spend on the buys it may
		// hold, computed once it has something to sell.
		var usable num
		haveUsable := false
		for j := 0; j < pl.nI; j++ {
			k := a*pl.nI + j
			if m.sell[j].Sign() <= 0 || pl.sellable[k].Sign() <= 0 {
				continue
			}
			avail := m.avail(k)
			if avail.Sign() <= 0 {
				continue
			}
			if !haveUsable {
				usable, haveUsable = m.fundable(a), true
			}
			if usable.Sign() <= 0 {
				break
			}
			amt := takeNum(&m.sell[j], minNum(avail, usable))
			m.sellAt[k] = m.sellAt[k].Add(amt)
			spent, _ := m.spendIn(a, amt)
			usable = usable.Sub(spent)
		}
	}
	// Remaining sales raise cash toward the cash target. Cash-sleeve
	// instruments are sold only to fund buys, so they are left alone here.
	for j := 0; j < pl.nI; j++ {
		if m.sell[j].Sign() <= 0 || p.Instruments[j].Sleeve == p.Cash {
			continue
		}
		for _, a := range pl.sellOrder {
			k := a*pl.nI + j
			if pl.sellable[k].Sign() <= 0 {
				continue
			}
			avail := m.avail(k)
			if avail.Sign() <= 0 {
				continue
			}
			amt := takeNum(&m.sell[j], avail)
			m.sellAt[k] = m.sellAt[k].Add(amt)
			proceeds := amt
			if m.short[a].Sign() > 0 {
				refill := takeNum(&m.short[a], proceeds)
				m.refill = m.refill.Add(refill)
				proceeds = proceeds.Sub(refill)
			}
			_, left := m.spendIn(a, proceeds)
			m.idle[a] = m.idle[a].Add(left)
			if m.sell[j].Sign() <= 0 {
				break
			}
		}
	}
	// A cash flow only buys, or only sells: it relocates nothing.
	if pl.flow == nil {
		m.relocate()
	}
	m.store()
	pl.placed = m
}

// placement is the state of place in nums (num.go): the planner's amounts
// are read once and the ones place changes written back once, and the
// arithmetic in between, exact like decimal's, costs no allocation while
// the figures fit an int64.
type placement struct {
	pl            *planner
	buy, sell     []num // per instrument, as pl.buy and pl.sell
	buyAt, sellAt []num // [a*nI+i], as pl.buyAt and pl.sellAt
	free, short   []num // per account, as pl.free and pl.short
	idle          []num // per account, sale proceeds not yet spent
	budget        num   // as pl.budget
	refill        num   // as pl.refill
	// units is room for round's nums of the instruments' step values
	// (pl.unitN), made with the others.
	units []num
	// open lists the instruments of pl.buyOrder that placing found to buy,
	// in that order, less some bought in full since: an amount to buy only
	// falls while placing, and spendIn drops those it walks past at zero.
	open []int
}

// placing returns the planner's amounts as a placement.
func (pl *planner) placing() *placement {
	nI, nA := pl.nI, pl.nA
	// The amounts per instrument are split's nums when it left them there
	// (pl.buyN, pl.sellN), with the decimals others set (the cash sleeve's
	// sells) read into them; else nums of the decimals.
	n := 2*nA*nI + 3*nA + nI
	if pl.buyN == nil {
		n += 2 * nI
	}
	all := make([]num, n)
	units := all[len(all)-nI:]
	all = all[:len(all)-nI]
	next := func(src []decimal.Decimal, n int) []num {
		out := all[:n:n]
		all = all[n:]
		for k, d := range src {
			if !d.IsZero() {
				out[k] = pl.numOf(d)
			}
		}
		return out
	}
	m := &placement{pl: pl, budget: pl.numOf(pl.budget), refill: pl.numOf(pl.refill), units: units}
	if pl.buyN != nil {
		m.buy, m.sell = pl.buyN, pl.sellN
		for i := range m.buy {
			if d := pl.buy[i]; !d.IsZero() {
				m.buy[i] = pl.numOf(d)
			}
			if d := pl.sell[i]; !d.IsZero() {
				m.sell[i] = pl.numOf(d)
			}
		}
	} else {
		m.buy, m.sell = next(pl.buy, nI), next(pl.sell, nI)
	}
	m.buyAt, m.sellAt = next(pl.buyAt, nA*nI), next(pl.sellAt, nA*nI)
	m.free, m.idle, m.short = next(pl.free, nA), next(nil, nA), next(pl.short, nA)
	m.open = pl.openRoom
	for _, i := range pl.buyOrder {
		if m.buy[i].Sign() > 0 {
			m.open = append(m.open, i)
		}
	}
	return m
}

// store writes the amounts that place changed back to the planner's
// decimals.
func (m *placement) store() {
	pl := m.pl
	pl.refill = m.storeOne(pl.refill, m.refill)
	for _, x := range []struct {
		dst []decimal.Decimal
		src []num
	}{{pl.buy, m.buy}, {pl.sell, m.sell}, {pl.short, m.short}} {
		for k := range x.src {
			x.dst[k] = m.storeOne(x.dst[k], x.src[k])
		}
	}
	// The amounts per account stay in m (pl.placed), where round reads
	// them: pl.buyAt and pl.sellAt are what place starts from. The free
	// cash and the budget left, and the proceeds left idle, are read by
	// no one after place.
}

// storeOne returns d when it is x, else x as a decimal.
func (m *placement) storeOne(d decimal.Decimal, x num) decimal.Decimal {
	switch {
	case x.IsZero():
		if !d.IsZero() {
			return decimal.Decimal{}
		}
		return d
	case !d.IsZero() && m.pl.numOf(d).Equal(x):
		return d
	}
	return x.dec()
}

// takeNum is take in nums: it removes up to want from *pool, which must
// not be negative, and returns what it removed.
func takeNum(pool *num, want num) num {
	if want.Cmp(*pool) >= 0 {
		got := *pool
		*pool = num{}
		return got
	}
	*pool = pool.Sub(want)
	return want
}

// avail returns what is held of [a*nI+i] = k in whole steps beyond its
// planned sales.
func (m *placement) avail(k int) num {
	return m.pl.numOf(m.pl.sellable[k]).Sub(m.sellAt[k])
}

// relocate funds buys that no account could pay for where they may be
// held, using cash that sits idle in another account: account x buys an
// instrument that account y holds, y sells as much of it and buys what is
// needed. The relocated instrument's sleeve is unchanged; household cash
// falls only by what the plan meant to spend.
func (m *placement) relocate() {
	pl := m.pl
	p, nI := pl.p, pl.nI
	for _, i := range m.open { // pl.buyOrder less instruments bought in full
		for _, y := range pl.sellOrder {
			if m.buy[i].Sign() <= 0 {
				break
			}
			if !p.Accounts[y].Allows(i) || m.short[y].Sign() > 0 {
				continue
			}
			for j := 0; j < nI && m.buy[i].Sign() > 0; j++ {
				// y must hold j beyond its planned sales, and not be buying it;
				// the tax rules may keep j from relocating.
				if j == i || pl.sellable[y*nI+j].Sign() <= 0 || m.buyAt[y*nI+j].Sign() > 0 || !pl.mayRelocate(j) {
					continue
				}
				// avail is what y holds of j beyond its planned sales,
				// computed once an account x can pay for it.
				var avail num
				haveAvail := false
				for x := 0; x < pl.nA && m.buy[i].Sign() > 0; x++ {
					if x == y || !p.Accounts[x].Allows(j) || m.sellAt[x*nI+j].Sign() > 0 {
						continue
					}
					// x pays with its idle proceeds and its free cash within
					// the budget; neither is ever negative.
					if m.idle[x].Sign() <= 0 && (m.free[x].Sign() <= 0 || m.budget.Sign() <= 0) {
						continue
					}
					if !haveAvail {
						avail, haveAvail = m.avail(y*nI+j), true
					}
					if avail.Sign() <= 0 {
						break
					}
					fromFree := minNum(m.free[x], m.budget)
					amt := minNum(minNum(m.buy[i], avail), m.idle[x].Add(fromFree))
					if amt.Sign() <= 0 {
						continue
					}
					if pl.tx != nil && pl.washRelocation(x, y, j) {
						break
					}
					// Spend x's idle proceeds before its free cash.
					if !m.idle[x].LessThan(amt) {
						m.idle[x] = m.idle[x].Sub(amt)
					} else {
						rest := amt.Sub(m.idle[x])
						m.idle[x] = num{}
						m.free[x] = m.free[x].Sub(rest)
						m.budget = m.budget.Sub(rest)
					}
					m.buyAt[x*nI+j] = m.buyAt[x*nI+j].Add(amt)
					m.sellAt[y*nI+j] = m.sellAt[y*nI+j].Add(amt)
					m.buyAt[y*nI+i] = m.buyAt[y*nI+i].Add(amt)
					pl.moved[x*nI+j], pl.moved[y*nI+j] = true, true
					takeNum(&m.buy[i], amt)
					if m.buy[i].Sign() > 0 { // else the loop ends: avail no longer matters
						takeNum(&avail, amt)
					}
				}
			}
		}
	}
}

// fundable returns what account a could still spend on the buys it may
// hold.
func (m *placement) fundable(a int) num {
	acct := &m.pl.p.Accounts[a]
	var sum num
	for i, b := range m.buy {
		if b.Sign() > 0 && acct.Allows(i) {
			sum = sum.Add(b)
		}
	}
	return sum
}

// spendIn spends up to amount in account a on the buys it may hold, most
// constrained instruments first, and returns what it spent and what is
// left of amount.
func (m *placement) spendIn(a int, amount num) (spent, left num) {
	pl := m.pl
	acct := &pl.p.Accounts[a]
	left = amount
	// The instruments still to buy, most constrained first (m.open),
	// which loses those found bought in full on the way.
	kept := m.open[:0]
	for k, i := range m.open {
		if left.Sign() <= 0 {
			kept = append(kept, m.open[k:]...)
			break
		}
		need := m.buy[i]
		if need.Sign() <= 0 {
			continue
		}
		kept = append(kept, i)
		if !acct.Allows(i) {
			continue
		}
		at := a*pl.nI + i
		if need.GreaterThan(left) {
			m.buy[i] = need.Sub(left)
			m.buyAt[at] = m.buyAt[at].Add(left)
			left = num{}
			continue // the rest is kept as it is
		}
		kept = kept[:len(kept)-1] // bought in full
		m.buy[i] = num{}
		m.buyAt[at] = m.buyAt[at].Add(need)
		left = left.Sub(need)
	}
	m.open = kept
	return amount.Sub(left), left
}

// round turns the placed amounts into orders of whole steps. It figures
// in nums (num.go), exact like decimal arithmetic and without its
// allocations while the figures fit an int64, and makes decimals only of
// the orders it keeps and of the cash left.
func (pl *planner) round() {
	p, b := pl.p, pl.b
	buyAt, sellAt := pl.amountsAt()
	n := 0
	for k := range buyAt {
		if buyAt[k].Sign() > 0 {
			n++
		}
		if sellAt[k].Sign() > 0 {
			n++
		}
	}
	if pl.dest == policy.DestinationTarget && pl.flow == nil {
		n *= 2 // room for the plan of the second start too (secondStart)
	}
	n += 4 // room for a few orders of the polish
	pl.orders = make([]Order, 0, n)
	// min_trade as a num, read once for every order.
	if minTrade := p.Rebalance.MinTrade; !minTrade.IsZero() {
		pl.minTrade, pl.hasMinTrade = pl.numOf(minTrade), true
	}
	var numBuf [32]num // on the stack while the household is small
	nums := numBuf[:0]
	if n := pl.nI + pl.nA; n <= len(numBuf) {
		nums = numBuf[:n]
	} else {
		nums = make([]num, n)
	}
	// unit and step of each instrument, as nums once it has an order; the
	// units stay in pl.unitN, for project.
	if m := pl.placed; m != nil {
		pl.unitN = m.units
		clear(pl.unitN)
	} else {
		pl.unitN = make([]num, pl.nI)
	}
	unit, step, cash := pl.unitN, nums[:pl.nI], nums[pl.nI:]
	have := func(i int) {
		if step[i].IsZero() {
			unit[i], step[i] = pl.numOf(pl.unit[i]), pl.figureNum(p.Instruments[i].StepFigure())
		}
	}
	// cash is each account's cash minus its reserve: negative while the
	// reserve is short, so that proceeds refill it before funding buys.
	for a := range cash {
		cash[a] = pl.numOf(b.Cash[a]).Sub(pl.numOf(p.Accounts[a].Reserve))
	}
	for a := 0; a < pl.nA; a++ {
		for i := 0; i < pl.nI; i++ {
			amt := sellAt[a*pl.nI+i]
			if amt.Sign() <= 0 {
				continue
			}
			have(i)
			// Round up: units x unit = amt - rem exactly.
			units, rem := amt.QuoRem(unit[i])
			notional := amt
			if rem.Sign() > 0 {
				units = units.Add(numOne)
				notional = units.Mul(unit[i])
			}
			qty := units.Mul(step[i])
			if held := pl.numOf(pl.limit(a, i)); qty.GreaterThan(held) {
				units, _ = held.QuoRem(step[i])
				qty, notional = units.Mul(step[i]), units.Mul(unit[i])
			}
			if pl.addOrderNum(a, i, Sell, units, qty, notional) {
				cash[a] = cash[a].Add(notional)
			}
		}
	}
	// pending[k] is what account a plans to buy after buyOrder[k], made
	// for the account when a buy first rounds up.
	var pendBuf [64]num
	pending := pendBuf[:0]
	if len(pl.buyOrder) <= len(pendBuf) {
		pending = pendBuf[:len(pl.buyOrder)]
	} else {
		pending = make([]num, len(pl.buyOrder))
	}
	for a := 0; a < pl.nA; a++ {
		havePending := false
		for k, i := range pl.buyOrder {
			amt := buyAt[a*pl.nI+i]
			if amt.Sign() <= 0 {
				continue
			}
			have(i)
			// The nearest number of steps, half up; down again when rounding
			// up would spend cash that the account's buys not yet rounded
			// were planned to spend.
			units := amt.DivRound(unit[i])
			notional := units.Mul(unit[i])
			if notional.GreaterThan(amt) {
				if !havePending {
					// The sums from the last buy back (exact: in any order).
					var sum num
					for k2 := len(pl.buyOrder) - 1; k2 >= 0; k2-- {
						pending[k2] = sum
						if x := buyAt[a*pl.nI+pl.buyOrder[k2]]; x.Sign() > 0 {
							sum = sum.Add(x)
						}
					}
					havePending = true
				}
				if cash[a].Sub(pending[k]).LessThan(notional) {
					units, notional = units.Sub(numOne), notional.Sub(unit[i])
				}
			}
			if notional.GreaterThan(cash[a]) {
				units, _ = cash[a].QuoRem(unit[i])
				notional = units.Mul(unit[i])
			}
			if pl.addOrderNum(a, i, Buy, units, units.Mul(step[i]), notional) {
				cash[a] = cash[a].Sub(notional)
			}
		}
	}
	for a := range cash {
		pl.cash[a] = cash[a].dec()
	}
}

// amountsAt returns the amounts to buy and sell per account, [a*nI+i],
// as place left them (pl.placed), or as nums of the planner's decimals
// when place did not set them.
func (pl *planner) amountsAt() (buyAt, sellAt []num) {
	if m := pl.placed; m != nil {
		return m.buyAt, m.sellAt
	}
	n := pl.nA * pl.nI
	all := make([]num, 2*n)
	buyAt, sellAt = all[:n], all[n:]
	for k := range pl.buyAt {
		buyAt[k], sellAt[k] = pl.numOf(pl.buyAt[k]), pl.numOf(pl.sellAt[k])
	}
	return buyAt, sellAt
}

// perAccount makes pl.buyAt and pl.sellAt, for the code that sets amounts
// per account before place or instead of it.
func (pl *planner) perAccount() {
	if pl.buyAt == nil {
		n := pl.nA * pl.nI
		dec := make([]decimal.Decimal, 2*n)
		pl.buyAt, pl.sellAt = dec[:n:n], dec[n:]
	}
}

// addOrderNum is addOrder of figures in nums: the decimals of an order
// are made only when it is kept, and only for a cash flow's plan. The
// orders of MakeWith's plan are polished, which works on their steps
// (Order.n), and settled (settle), which makes their decimals once: such
// an order is left with its steps only, marked changed. qty is units when
// the step is 1, which then share one decimal.
func (pl *planner) addOrderNum(a, i int, side Side, units, qty, notional num) bool {
	if units.Sign() <= 0 {
		return false
	}
	if pl.hasMinTrade && notional.LessThan(pl.minTrade) {
		pl.dropped[i] = true
		return false
	}
	if pl.flow == nil {
		// Made in place: an Order is large.
		pl.orders = append(pl.orders, Order{})
		o := &pl.orders[len(pl.orders)-1]
		pl.setOrder(o, a, i, side, pl.ruleAt(a, i))
		// The steps as the polish would read them from a decimal (numOf):
		// small again when a division by a step at a fine exponent had to
		// fall back to decimal (amountNum), or every move of the polish on
		// the order, and its notional, would take decimal's slow path.
		o.n, o.changed = pl.amountNum(units), true
		return true
	}
	u := units.dec()
	q := u
	if !pl.wholeStep[i] {
		q = qty.dec()
	}
	pl.orders = append(pl.orders, pl.order(a, i, side, u, q, notional.dec(), pl.ruleAt(a, i)))
	return true
}

var oneUnit = decimal.NewFromInt(1)

// addOrder appends an order of units steps, qty (units x step), worth
// notional (units x unit), unless it is empty or below min_trade, and
// reports whether it did.
func (pl *planner) addOrder(a, i int, side Side, units, qty, notional decimal.Decimal) bool {
	if units.Sign() <= 0 {
		return false
	}
	if minTrade := pl.p.Rebalance.MinTrade; !minTrade.IsZero() && less(notional, minTrade) {
		pl.dropped[i] = true
		return false
	}
	pl.orders = append(pl.orders, pl.order(a, i, side, units, qty, notional, pl.ruleAt(a, i)))
	return true
}

// order returns an order of units steps of instrument i in account a.
func (pl *planner) order(a, i int, side Side, units, qty, notional decimal.Decimal, rule Rule) Order {
	var o Order
	pl.setOrder(&o, a, i, side, rule)
	o.Quantity, o.Notional, o.units = qty, notional, units
	return o
}

// setOrder sets the fields of *o, a zero Order, that say what it trades:
// instrument i in account a, on side, for rule.
func (pl *planner) setOrder(o *Order, a, i int, side Side, rule Rule) {
	in := &pl.p.Instruments[i]
	o.Phase = PhaseBuy
	if side == Sell {
		o.Phase = PhaseSell
	}
	o.Account, o.Instrument, o.Side = pl.p.Accounts[a].Name, in.Symbol, side
	o.Price, o.Sleeve, o.Rule = pl.b.Price[i], pl.p.Sleeves[in.Sleeve].Path, rule
	o.account, o.instrument = a, i
}

// project computes the sleeve values and the total after the orders. Free
// cash after is each account's cash above its reserve, so proceeds that
// refill a short reserve leave the investable total.
//
// It figures in nums (num.go), exact like decimal arithmetic, and makes a
// decimal only of a sleeve whose value moved (the cash sleeve, a leaf
// that an order trades, a parent of one) and of a total that moved: the
// others keep the decimals of the snapshot.
func (pl *planner) project() {
	p, s := pl.p, pl.s
	nS := len(p.Sleeves)
	var valBuf [16]num
	var movedBuf [16]bool
	vals, moved := valBuf[:0], movedBuf[:0]
	if nS <= len(valBuf) {
		vals, moved = valBuf[:nS], movedBuf[:nS]
	} else {
		vals, moved = make([]num, nS), make([]bool, nS)
	}
	// What the orders add to or take from each leaf: an order that round
	// or the polish left with its steps only (changed) is worth its steps
	// times the value of one.
	// The figures the polish read are read no more (pl.f, once loaded).
	f := &pl.f
	for k := range pl.orders {
		o := &pl.orders[k]
		sl := p.Instruments[o.instrument].Sleeve
		var x num
		switch {
		case !o.changed:
			x = pl.numOf(o.Notional)
		case f.loaded:
			x = o.n.Mul(f.unit[o.instrument])
		case pl.unitN != nil && !pl.unitN[o.instrument].IsZero():
			x = o.n.Mul(pl.unitN[o.instrument]) // as round read it
		default:
			x = o.n.Mul(pl.numOf(pl.unit[o.instrument]))
		}
		if o.Side == Sell {
			vals[sl] = vals[sl].Sub(x)
		} else {
			vals[sl] = vals[sl].Add(x)
		}
	}
	for si := range vals {
		if !vals[si].IsZero() && si != p.Cash {
			vals[si], moved[si] = pl.value0(si).Add(vals[si]), true
		}
	}
	// The cash sleeve holds its instruments, valued before the orders
	// (which add to or take from them above), and the cash left after.
	cash := vals[p.Cash]
	for _, i := range p.Sleeves[p.Cash].Instruments {
		if !pl.held[i].IsZero() {
			cash = cash.Add(pl.numOf(pl.held[i]))
		}
	}
	for a := 0; a < pl.nA; a++ {
		if c := pl.cashAfter(a); c.Sign() > 0 {
			cash = cash.Add(pl.numOf(c))
		}
	}
	vals[p.Cash], moved[p.Cash] = cash, true
	// value is sleeve si's value after, moved or not.
	value := func(si int) num {
		if moved[si] {
			return vals[si]
		}
		return pl.value0(si)
	}
	// Each parent is the sum of its children (drift.Rollup): children
	// follow their parents, so walking backwards sums bottom-up.
	for si := nS - 1; si >= 0; si-- {
		kids := p.Sleeves[si].Children
		up := moved[si] // a child (or the cash sleeve itself) moved
		for _, c := range kids {
			up = up || moved[c]
		}
		if len(kids) == 0 || !up {
			continue
		}
		sum := vals[si] // the cash sleeve's own, else zero
		for _, c := range kids {
			sum = sum.Add(value(c))
		}
		vals[si], moved[si] = sum, true
	}
	var total num
	for si := range p.Sleeves {
		if moved[si] {
			pl.after[si] = vals[si].dec()
		} else {
			pl.after[si] = s.Sleeves[si].Value
		}
		if p.Sleeves[si].Parent < 0 {
			total = total.Add(value(si))
		}
	}
	if f.loaded {
		pl.sameTotal = total.Equal(f.T)
	} else {
		pl.sameTotal = total.Equal(pl.numOf(pl.T))
	}
	pl.totalAfter = pl.T
	if !pl.sameTotal {
		pl.totalAfter = total.dec()
	}
}

// value0 returns sleeve si's value before the plan, as the polish read it
// once it did.
func (pl *planner) value0(si int) num {
	if pl.f.loaded {
		return pl.f.value0[si]
	}
	return pl.numOf(pl.s.Sleeves[si].Value)
}

// outAfter reports whether sleeve si, worth after after the orders, lies
// outside its band after them; total is pl.totalAfter.
func (pl *planner) outAfter(si int, after, total num) bool {
	f := &pl.f
	if pl.sameTotal {
		if f.loaded {
			// The target value and half-width as the polish read them.
			return after.Sub(f.tv[si]).Abs().GreaterThan(f.hw[si])
		}
		d := &pl.s.Sleeves[si]
		return drift.OutOfBand(pl.after[si], d.TargetValue, d.HalfWidthValue)
	}
	// drift.Breaches, in nums: |after - target x total| > half-width x
	// total, exactly, without making the two products as decimals. The
	// target and half-width as the polish read them, when it did.
	var tgt, hw num
	if f.fractions {
		tgt, hw = f.tgt[si], f.hwf[si]
	} else {
		ps := &pl.p.Sleeves[si]
		tgt, hw = pl.numOf(ps.Target), pl.numOf(ps.HalfWidth)
	}
	return after.Sub(tgt.Mul(total)).Abs().GreaterThan(hw.Mul(total))
}

// step moves account a's cash by n steps of instrument i.
func (pl *planner) step(a, i int, n decimal.Decimal, sell bool) {
	amount := mul(pl.unit[i], n)
	if sell {
		pl.cash[a] = add(pl.cash[a], amount)
	} else {
		pl.cash[a] = sub(pl.cash[a], amount)
	}
}

// hasOrder reports whether the plan already trades instrument i in account a.
func (pl *planner) hasOrder(a, i int) bool {
	if pl.idx.ok {
		return pl.idx.at[a*pl.nI+i] >= 0
	}
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
	total := pl.numOf(pl.totalAfter)
	someTotal := pl.totalAfter.Sign() > 0
	for si := range p.Sleeves {
		d, r := &s.Sleeves[si], &out.Sleeves[si]
		r.Sleeve, r.Target, r.Weight, r.Deviation = d.Path, d.Target, d.Weight, d.Deviation
		r.BandLow, r.BandHigh, r.Breach, r.Value = d.BandLow, d.BandHigh, d.Breach, d.Value
		if !someTotal {
			continue
		}
		// A sleeve untouched (its value after that of before, the total
		// the same) has the figures of before after: the same decimal is
		// equal without reading either; else its value after is compared
		// with the value before as the polish read it.
		if pl.sameTotal && pl.after[si] == d.Value {
			r.WeightAfter, r.BreachAfter = d.Weight, d.Breach
			continue
		}
		after := pl.numOf(pl.after[si])
		if pl.sameTotal && after.Equal(pl.value0(si)) {
			r.WeightAfter, r.BreachAfter = d.Weight, d.Breach
			continue
		}
		r.WeightAfter = after.DivRoundTo(total, drift.WeightPlaces).dec()
		r.BreachAfter = pl.outAfter(si, after, total)
	}
	if pl.tx != nil {
		out.Tax = pl.report()
	}
	pl.unresolved(out)
	if pl.flow != nil {
		pl.flowReport(out)
	}
	sortOrders(out.Orders)
	// Every order's why in one string (the builder's, not copied), each
	// order's a part of it, ending at ends[k]. The scratch below is on the
	// stack while the plan is small.
	var intBuf [64]int
	var headBuf [768]byte
	var lineBuf [256]byte
	nO := len(out.Orders)
	scratch := intBuf[:0]
	if n := nO + 2*len(p.Sleeves); n <= len(intBuf) {
		scratch = intBuf[:n]
	} else {
		scratch = make([]int, n)
	}
	ends := scratch[:nO]
	var why strings.Builder
	why.Grow(112 * nO)
	// The head of a sleeve's lines is written once, at its first order,
	// in heads[at[2si]:at[2si+1]].
	at := scratch[nO:]
	heads, line := headBuf[:0], lineBuf[:0]
	for k := range out.Orders {
		o := &out.Orders[k]
		si := p.Instruments[o.instrument].Sleeve
		if at[2*si+1] == 0 {
			at[2*si] = len(heads)
			heads = appendHead(heads, &out.Sleeves[si])
			at[2*si+1] = len(heads)
		}
		line = pl.appendWhy(line[:0], heads[at[2*si]:at[2*si+1]], o)
		why.Write(line)
		ends[k] = why.Len()
	}
	whys, from := why.String(), 0
	for k := range out.Orders {
		out.Orders[k].Why, from = whys[from:ends[k]], ends[k]
	}
	pl.assignIDs(out)
	return out
}

// sortOrders sorts orders by phase, account and instrument, stably. It
// sorts their positions and moves each order once: an Order is large, and
// a sort of the orders themselves would copy them at every comparison and
// swap.
func sortOrders(orders []Order) {
	var buf [64]int
	at := buf[:0]
	if len(orders) > len(buf) {
		at = make([]int, 0, len(orders))
	}
	for k := range orders {
		at = append(at, k)
	}
	slices.SortStableFunc(at, func(x, y int) int {
		a, b := &orders[x], &orders[y]
		if a.Phase != b.Phase {
			return a.Phase - b.Phase
		}
		if a.account != b.account {
			return a.account - b.account
		}
		return a.instrument - b.instrument
	})
	// orders[k] takes orders[at[k]], cycle by cycle.
	for k := range at {
		if at[k] == k {
			continue
		}
		first := orders[k]
		j := k
		for at[j] != k {
			next := at[j]
			orders[j] = orders[next]
			at[j] = j
			j = next
		}
		orders[j] = first
		at[j] = j
	}
}

// unresolved lists the sleeves the plan leaves where the policy does not
// want them. With destination target: leaf sleeves with an amount that no
// account could place (rounding and min_trade are allowed for). With a band
// destination: every sleeve that breached and still breaches after the
// orders, with the first reason found below it.
func (pl *planner) unresolved(out *Plan) {
	p := pl.p
	nS := len(p.Sleeves)
	var buf [32]string // on the stack while the policy is small
	reasons := buf[:0]
	if 2*nS <= len(buf) {
		reasons = buf[:2*nS]
	} else {
		reasons = make([]string, 2*nS)
	}
	gap, drop := reasons[:nS], reasons[nS:]
	// Sales left unplaced are fractions of a step that cannot be sold; the
	// buys they would have paid for fall short by as much, as rounding.
	var tails decimal.Decimal
	haveTails := false
	for i := range p.Instruments {
		in := &p.Instruments[i]
		// Only band destinations report a dropped order as a reason.
		if pl.dropped[i] && drop[in.Sleeve] == "" && pl.dest != policy.DestinationTarget {
			drop[in.Sleeve] = fmt.Sprintf("an order of %s was below min_trade %s", in.Symbol, p.Rebalance.MinTrade)
		}
		if pl.buy[i].Sign() <= 0 && pl.sell[i].Sign() <= 0 {
			continue
		}
		if !haveTails {
			tails = pl.sumOf(pl.nI, func(j int) decimal.Decimal {
				if p.Instruments[j].Sleeve != p.Cash {
					return pl.sell[j]
				}
				return decimal.Decimal{}
			})
			haveTails = true
		}
		tol := maxDec(p.Rebalance.MinTrade, pl.unit[i])
		switch {
		case gap[in.Sleeve] != "":
		case greater(pl.buy[i], add(tol, tails)):
			gap[in.Sleeve] = fmt.Sprintf("%s %s of %s could not be bought: no account that may hold it has free cash or sale proceeds left",
				pl.buy[i].StringFixed(2), p.Currency, in.Symbol)
			if pl.refill.Sign() > 0 {
				gap[in.Sleeve] += fmt.Sprintf(" (%s %s of proceeds refill reserves of accounts whose cash is below their reserve)",
					pl.refill.StringFixed(2), p.Currency)
			}
		case greater(pl.sell[i], add(tol, pl.tail(i))) && in.Sleeve != p.Cash:
			gap[in.Sleeve] = fmt.Sprintf("%s %s of %s could not be sold", pl.sell[i].StringFixed(2), p.Currency, in.Symbol)
			if why := pl.heldBackReason(i); why != "" {
				gap[in.Sleeve] += ": " + why
			}
		}
	}
	if pl.tx != nil {
		pl.keptOutReasons(gap)
	}
	if pl.refill.Sign() > 0 && gap[p.Cash] == "" {
		var short []string
		for a := range p.Accounts {
			if less(pl.b.Cash[a], p.Accounts[a].Reserve) {
				short = append(short, p.Accounts[a].Name)
			}
		}
		gap[p.Cash] = fmt.Sprintf("%s %s of sale proceeds refill the reserves of %s, whose cash is below their reserve",
			pl.refill.StringFixed(2), p.Currency, strings.Join(short, ", "))
	}
	for si := range p.Sleeves {
		var reason string
		if pl.harmful && out.Sleeves[si].BreachAfter {
			reason = harmReason
		} else if pl.dest == policy.DestinationTarget {
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
		if reason == "" && out.Sleeves[si].BreachAfter && pl.flow == nil {
			// Invariant 7: every sleeve out of band after the plan is listed
			// (a cash flow's in flowReport).
			if reason = pl.firstBelow(si, drop); reason == "" {
				reason = pl.blocked(si)
			}
		}
		if reason != "" {
			out.Unresolved = append(out.Unresolved, Unresolved{Sleeve: p.Sleeves[si].Path, WeightAfter: out.Sleeves[si].WeightAfter, Reason: reason})
		}
	}
	if pl.dest == policy.DestinationTarget && pl.flow == nil {
		pl.unrestoredSplits(out)
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
			if !less(sub(pl.limit(a, i), sold[a*pl.nI+i]), pl.p.Instruments[i].Step) {
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
		k := a*pl.nI + i
		t = add(t, sub(pl.s.Values[a][i], pl.sellable[k]))
		if pl.withheld != nil {
			t = sub(t, pl.withheld[k])
		}
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
	var stack [1024]byte // the buffer of a small plan
	buf := stack[:0]
	if n := 128 + 64*len(out.Orders); n > len(stack) {
		buf = make([]byte, 0, n)
	}
	buf = append(buf, out.Policy...)
	buf = append(buf, 0)
	buf = append(buf, out.PolicyVersion...)
	buf = append(buf, 0)
	buf = out.AsOf.UTC().AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, 0)
	buf = out.HoldingsAsOf.UTC().AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, 0)
	buf = append(buf, out.Destination...)
	if f := out.CashFlow; f != nil {
		buf = append(buf, 0)
		buf = append(buf, f.Kind...)
		buf = append(buf, 0)
		buf = append(buf, f.Account...)
		buf = append(buf, 0)
		buf = appendDecimal(buf, f.Amount)
	}
	for k := range out.Orders {
		o := &out.Orders[k]
		buf = append(buf, 0)
		buf = append(buf, o.Account...)
		buf = append(buf, 0)
		buf = append(buf, o.Instrument...)
		buf = append(buf, 0)
		buf = append(buf, o.Side...)
		buf = append(buf, 0)
		buf = appendDecimal(buf, o.Quantity)
		buf = append(buf, 0)
		buf = appendDecimal(buf, o.Price)
	}
	digest := sha256.Sum256(buf)
	var id [16]byte
	hex.Encode(id[:], digest[:8])
	// The plan id and every order id (the plan id, "-" and the order's
	// position from 1) share one string.
	ids := append(buf[:0], id[:]...)
	for k := range out.Orders {
		ids = append(ids, id[:]...)
		ids = append(ids, '-')
		ids = strconv.AppendInt(ids, int64(k+1), 10)
	}
	all := string(ids)
	out.ID, all = all[:len(id)], all[len(id):]
	for k := range out.Orders {
		n := len(id) + 2 // "-" and the first digit
		for x := k + 1; x >= 10; x /= 10 {
			n++
		}
		out.Orders[k].ID, all = all[:n], all[n:]
	}
}
