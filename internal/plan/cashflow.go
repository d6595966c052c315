package plan

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/targets"
	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// Cash flows: new money is invested without selling anything, and money
// taken out is raised by selling without buying anything. Both move the
// household toward its targets as far as the cash flow allows; neither
// trades a sleeve the other way.

// The rules of cash-flow orders.
const (
	// RuleInvest buys with free cash (a deposit, a dividend) toward the
	// most underweight sleeves: see Invest.
	RuleInvest Rule = "invest"
	// RuleWithdraw sells to raise cash for a withdrawal, from the most
	// overweight sleeves: see Withdraw.
	RuleWithdraw Rule = "withdraw"
)

// CashFlowKind says whether a cash-flow plan invests or withdraws.
type CashFlowKind string

// The kinds of cash flows.
const (
	CashFlowInvest   CashFlowKind = "invest"
	CashFlowWithdraw CashFlowKind = "withdraw"
)

// CashFlow is what a cash-flow plan (Invest, Withdraw) did with the
// money. Amounts are in the policy currency and exact.
type CashFlow struct {
	Kind CashFlowKind `json:"kind"`
	// Account is the account of a withdrawal; empty for an investment,
	// which spends the free cash of every account.
	Account string `json:"account,omitempty"`
	// Amount is, for an investment, the free cash it may spend: the
	// household's cash above reserves, less what keeps the cash sleeve at
	// its target; for a withdrawal, the amount requested.
	Amount decimal.Decimal `json:"amount"`
	// Traded is the notional of the orders: what the buys spend, or what
	// the sells raise.
	Traded decimal.Decimal `json:"traded"`
	// FromCash is the part of a withdrawal paid from the account's free
	// cash before the orders.
	FromCash decimal.Decimal `json:"from_cash,omitzero"`
	// Withdrawn is what the account's free cash after the orders pays of
	// the withdrawal: Amount, or less when the account cannot raise it.
	Withdrawn decimal.Decimal `json:"withdrawn,omitzero"`
	// Shortfall is Amount less Withdrawn (withdrawal only).
	Shortfall decimal.Decimal `json:"shortfall,omitzero"`
	// Tax is the estimated tax of a withdrawal (see WithdrawalTax).
	Tax *TaxEstimate `json:"tax_estimate,omitempty"`
	// Accounts are, for a withdrawal that named no account (split in the
	// order of tax.withdrawals), what each account paid and its tax; the
	// fields above are then their sums, and Account is empty.
	Accounts []WithdrawalPart `json:"accounts,omitempty"`
	// DepositToBands is, for an investment, the further deposit that,
	// invested buy-only, would bring every sleeve inside its band (see
	// DepositToBands): zero when the plan's free cash is enough, null when
	// no deposit is.
	DepositToBands *decimal.Decimal `json:"deposit_to_bands,omitempty"`
}

// WithdrawalPart is the part of a split withdrawal one account pays.
type WithdrawalPart struct {
	Account string `json:"account"`
	// Amount is the part of the withdrawal asked of the account: what it
	// can pay (free cash above its reserve and what it may sell), in the
	// order of the accounts, until the withdrawal is covered.
	Amount    decimal.Decimal `json:"amount"`
	Traded    decimal.Decimal `json:"traded"`
	FromCash  decimal.Decimal `json:"from_cash,omitzero"`
	Withdrawn decimal.Decimal `json:"withdrawn,omitzero"`
	Tax       *TaxEstimate    `json:"tax_estimate,omitempty"`
}

// Withdrawal is a request to raise cash in one account, or in the
// accounts in the order of tax.withdrawals.
type Withdrawal struct {
	// Account names the account the money leaves from: which account pays
	// (a taxable sale, a distribution from an IRA) is a tax decision.
	// Empty, the withdrawal is split in the policy's order of withdrawals
	// (Policy.WithdrawalOrder: by default taxable accounts, then
	// tax-deferred ones, then Roth, HSA and 529 accounts): each account in
	// turn pays what it can until the amount is covered.
	Account string
	// Amount is the cash to raise, above the account's reserve; positive.
	Amount decimal.Decimal
}

// cashFlow is the state of a cash-flow plan, shared by its passes.
type cashFlow struct {
	kind   CashFlowKind
	amount decimal.Decimal // withdrawal: requested; investment: the budget
	// parts are a withdrawal's accounts and what each is asked to pay;
	// split says the request named no account.
	parts []flowPart
	split bool
	// ranked are, per [a*nI+i], the lots of a withdrawal by least tax in
	// the order leastTax ranked them: its sells sell them in that order.
	ranked map[int][]int
	// deposit is DepositToBands of an investment; reach says whether any
	// deposit brings every sleeve inside its band.
	deposit decimal.Decimal
	reach   bool
}

// flowPart is what one account pays of a withdrawal.
type flowPart struct {
	account int
	amount  decimal.Decimal
	// withdrawn is what the last pass's orders let the account pay.
	withdrawn decimal.Decimal
}

// part returns the part of the withdrawal account a pays, or nil.
func (f *cashFlow) part(a int) *flowPart {
	for k := range f.parts {
		if f.parts[k].account == a {
			return &f.parts[k]
		}
	}
	return nil
}

// AddCash returns a copy of book b with amount added to the cash of
// account a: a deposit or a dividend that has landed. b is not modified;
// the copy shares everything but its cash.
func AddCash(b *portfolio.Book, a int, amount decimal.Decimal) *portfolio.Book {
	c := *b
	c.Cash = slices.Clone(b.Cash)
	c.Cash[a] = c.Cash[a].Add(amount)
	return &c
}

// Invest plans buy-only orders that invest the household's free cash (its
// cash above reserves, where a deposit or a dividend lands; see AddCash)
// into the most underweight sleeves. Nothing is sold, not even to move
// cash between accounts.
//
// The amount invested is the free cash less what keeps the cash sleeve at
// its target (all of it when its money-market funds alone reach the
// target). It is shared top-down through the sleeve tree, among the
// siblings of each level, in two stages, each by water-filling:
//
//  1. up to each sleeve's lower band edge at the total after the cash
//     flow (its own, or what its sub-sleeves need to reach theirs if
//     more), but never past its target: the sleeve furthest below goes
//     first until it is no further below than the next, then both, and so
//     on;
//  2. what is left, toward the targets the same way: the largest deficit
//     first, until the deficits left are equal, then equally.
//
// No sleeve is bought past its target: with the cash sleeve kept at its
// target, the deficits of the others add up to at least the amount
// invested. A leaf's amount is shared among its instruments the same way,
// by their deficits to their shares. Orders are then placed, rounded and
// checked like those of any plan (free cash first in the accounts the
// asset location prefers, may_hold, steps, min_trade, the wash-sale
// guard); cash that no order can place stays cash, and a sleeve left short
// is unresolved. The plan's destination is target (the direction the
// orders move), its orders have rule "invest", and its CashFlow says what
// was invested and what further deposit would bring every sleeve inside
// its band. A sleeve that is still outside its band after the orders is
// listed as unresolved.
func Invest(s *drift.Snapshot, o Options) *Plan {
	f := &cashFlow{kind: CashFlowInvest}
	f.deposit, f.reach = DepositToBands(s)
	return f.plan(s, o)
}

// Withdraw plans sell-only orders that raise w.Amount of free cash in
// account w.Account, from the most overweight sleeves first, and projects
// the household after the money has left.
//
// The targets are those of the total after the withdrawal (the total
// less the amount, and less what refills the account's reserve if its
// cash is below it). The amount is taken top-down through the sleeve tree
// as Invest shares it, mirrored: the sleeve furthest above its target
// first, until it is no further above than the next, then both, and so on
// (water-filling), each within what the account holds of it. When what
// the account holds of the overweight sleeves is not enough, the same
// goes on below the targets: the sleeves least below their targets give
// first, so that the most underweight sleeve is sold last. The cash sleeve's surplus is paid from the
// account's free cash first, then by selling its money-market funds. A
// leaf's amount is shared among its instruments by their surpluses to
// their shares, the same way.
//
// Sells round up to the step, so the proceeds cover the amount, by less
// than one step of each sell; an order dropped below min_trade is made up
// by more steps of the other sells, or by a sell of another position. In
// a taxable account the tax rules cap what may be sold and each sell names
// the lots it sells (losses first, then long-term gains, then short-term
// gains; tax.Lots.Select) and the gains it realizes. When the account
// cannot raise the amount, the plan raises what it can, and its
// CashFlow.Shortfall and an unresolved entry without a sleeve say how much
// is missing and why. The plan's destination is target, its orders have
// rule "withdraw" and nothing is bought.
func Withdraw(s *drift.Snapshot, o Options, w Withdrawal) (*Plan, error) {
	p := s.Book.Policy
	if w.Amount.Sign() <= 0 {
		return nil, fmt.Errorf("withdrawal from %s: amount %s must be positive", w.Account, w.Amount)
	}
	f := &cashFlow{kind: CashFlowWithdraw, amount: w.Amount}
	if w.Account == "" {
		f.split = true // the parts are set by each pass (splitWithdrawal)
		return f.plan(s, o), nil
	}
	a, ok := p.AccountIndex(w.Account)
	if !ok {
		return nil, fmt.Errorf("withdrawal: account %q is not in policy %s", w.Account, p.Name)
	}
	f.parts = []flowPart{{account: a, amount: w.Amount}}
	return f.plan(s, o), nil
}

// splitWithdrawal shares the withdrawal among the accounts in the policy's order of
// withdrawals: each account in turn is asked for what it can pay, its
// free cash above its reserve and what it may sell (the whole steps it
// holds, less what the tax rules hold back, of each position worth at
// least min_trade: no order may sell a smaller one), less what refills
// its reserve, until the amount is covered. What no account can pay is
// asked of the last account asked (the first in the order when none can
// pay anything): the plan reports it as a shortfall.
func (pl *planner) splitWithdrawal() {
	f, p := pl.flow, pl.p
	f.parts = f.parts[:0]
	left := f.amount
	minTrade := p.Rebalance.MinTrade
	for _, a := range p.WithdrawalOrder() {
		if left.Sign() <= 0 {
			break
		}
		can := pl.s.FreeCash[a].Add(pl.sumOf(pl.nI, func(i int) decimal.Decimal {
			if v := pl.sellable[a*pl.nI+i]; !v.LessThan(minTrade) {
				return v
			}
			return decimal.Zero
		})).Sub(pl.short[a])
		if can.Sign() <= 0 {
			continue
		}
		part := decimal.Min(left, can)
		f.parts = append(f.parts, flowPart{account: a, amount: part})
		left = left.Sub(part)
	}
	if left.Sign() > 0 {
		if len(f.parts) == 0 {
			f.parts = append(f.parts, flowPart{account: p.WithdrawalOrder()[0]})
		}
		f.parts[len(f.parts)-1].amount = f.parts[len(f.parts)-1].amount.Add(left)
	}
}

// plan runs the passes of a cash-flow plan, as MakeWith does: again when
// the wash-sale guard keeps more buys out. Cash flows never harvest:
// harvesting sells and buys.
func (f *cashFlow) plan(s *drift.Snapshot, o Options) *Plan {
	tx := newTaxState(s, o)
	if tx != nil {
		tx.opts.Harvest.Enabled = false
	}
	for {
		pl := newPlanner(s, policy.DestinationTarget, tx)
		pl.flow = f
		if f.kind == CashFlowInvest {
			pl.invest()
		} else {
			pl.withdraw()
		}
		pl.project()
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

// holdings sets held, the household value of each instrument.
func (pl *planner) holdings() {
	for i := range pl.held {
		pl.held[i] = pl.sumOf(pl.nA, func(a int) decimal.Decimal { return pl.s.Values[a][i] })
	}
}

// invest computes the buys of an investment, places them with free cash
// and rounds them.
func (pl *planner) invest() {
	p, s := pl.p, pl.s
	pl.holdings()
	for i := range pl.rule {
		pl.rule[i] = RuleInvest
	}
	freeTotal := pl.sumOf(pl.nA, func(a int) decimal.Decimal { return s.FreeCash[a] })
	excess := s.Sleeves[p.Cash].Value.Sub(s.Sleeves[p.Cash].TargetValue)
	budget := decimal.Max(decimal.Zero, decimal.Min(freeTotal, excess))
	pl.flow.amount = budget
	need := lowerNeeds(p, pl.T, func(si int) decimal.Decimal { return s.Sleeves[si].Value })
	top := make([]int, 0, len(p.Sleeves))
	for si := range p.Sleeves {
		if p.Sleeves[si].Parent < 0 && si != p.Cash {
			top = append(top, si)
		}
		pl.want[si] = s.Sleeves[si].Value
	}
	pl.investIn(top, budget, need)
	for si := range p.Sleeves {
		ps := &p.Sleeves[si]
		x := pl.want[si].Sub(s.Sleeves[si].Value)
		if !ps.Leaf() || si == p.Cash || x.Sign() <= 0 {
			continue
		}
		deficit := make([]decimal.Decimal, len(ps.Instruments))
		for k, i := range ps.Instruments {
			deficit[k] = pl.want[si].Mul(p.Instruments[i].Share).Sub(pl.held[i])
		}
		for k, part := range fill(deficit, nil, x) {
			pl.buy[ps.Instruments[k]] = part
		}
		if pl.tx != nil {
			pl.keepOut(si)
		}
	}
	pl.budget = pl.sumOf(pl.nI, func(i int) decimal.Decimal { return pl.buy[i] })
	pl.place()
	pl.round()
}

// investIn shares amount among sibling sleeves kids (adding to want) in
// the two stages Invest describes, then among their children.
func (pl *planner) investIn(kids []int, amount decimal.Decimal, need []decimal.Decimal) {
	if amount.Sign() <= 0 || len(kids) == 0 {
		return
	}
	first := make([]decimal.Decimal, len(kids))
	deficit := make([]decimal.Decimal, len(kids))
	for k, c := range kids {
		first[k] = need[c]
		deficit[k] = pl.s.Sleeves[c].TargetValue.Sub(pl.s.Sleeves[c].Value)
	}
	x := fill(first, nil, decimal.Min(amount, sumPositive(first)))
	for k := range kids {
		deficit[k] = deficit[k].Sub(x[k])
	}
	rest := amount.Sub(sumPositive(x))
	x2 := fill(deficit, nil, decimal.Min(rest, sumPositive(deficit)))
	for k, c := range kids {
		part := x[k].Add(x2[k])
		pl.want[c] = pl.want[c].Add(part)
		pl.investIn(pl.p.Sleeves[c].Children, part, need)
	}
}

// lowerNeeds returns, per sleeve, what buys must add to it, at total,
// for it and every sleeve below it to reach its lower band edge, never
// past its target: for a leaf max(0, low x total - value); for a parent
// the larger of its own and the sum of its children's, at most its
// deficit to target. value gives each sleeve's value; the cash sleeve
// needs nothing (it is never bought).
func lowerNeeds(p *policy.Policy, total decimal.Decimal, value func(si int) decimal.Decimal) []decimal.Decimal {
	need := make([]decimal.Decimal, len(p.Sleeves))
	// Children follow their parents: walking backwards sees them first.
	for si := len(p.Sleeves) - 1; si >= 0; si-- {
		if si == p.Cash {
			continue
		}
		ps := &p.Sleeves[si]
		v := value(si)
		n := decimal.Max(decimal.Zero, ps.BandLow.Mul(total).Sub(v))
		if len(ps.Children) > 0 {
			kids := decimal.Zero
			for _, c := range ps.Children {
				kids = kids.Add(need[c])
			}
			n = decimal.Max(n, kids)
			n = decimal.Min(n, decimal.Max(decimal.Zero, ps.Target.Mul(total).Sub(v)))
		}
		need[si] = n
	}
	return need
}

// sumPositive returns the sum of the positive values of xs.
func sumPositive(xs []decimal.Decimal) decimal.Decimal {
	sum := decimal.Zero
	for _, x := range xs {
		if x.Sign() > 0 {
			sum = sum.Add(x)
		}
	}
	return sum
}

// fill shares amount by water-filling: x_k = min(cap_k, max(0, need_k -
// L)) for the level L at which they sum to amount. The largest need is
// served first until it is down to the next, then both, and so on; cap
// (nil: none) bounds each share. Without caps, amount must be at most the
// sum at L = 0 (so L >= 0: no share beyond its need); with caps, at most
// the sum of the caps (L may then be negative: past the needs, the
// smallest shortfalls give first). The level is rounded to amountPlaces
// and the largest share takes the remainder, so the shares sum to amount
// exactly.
func fill(need, capacity []decimal.Decimal, amount decimal.Decimal) []decimal.Decimal {
	x := make([]decimal.Decimal, len(need))
	if amount.Sign() <= 0 || len(need) == 0 {
		return x
	}
	capOf := func(k int) (decimal.Decimal, bool) {
		if capacity == nil {
			return decimal.Decimal{}, false
		}
		return capacity[k], true
	}
	// at returns the shares at level L.
	at := func(level decimal.Decimal) {
		for k, n := range need {
			v := decimal.Max(decimal.Zero, n.Sub(level))
			if c, ok := capOf(k); ok {
				v = decimal.Min(v, c)
			}
			x[k] = v
		}
	}
	// The sum of the shares falls as L rises, linearly between the
	// breakpoints need_k and need_k - cap_k: find the segment where it
	// crosses amount, from the highest breakpoint down.
	points := []decimal.Decimal{decimal.Zero}
	for k, n := range need {
		points = append(points, n)
		if c, ok := capOf(k); ok {
			points = append(points, n.Sub(c))
		}
	}
	slices.SortFunc(points, func(a, b decimal.Decimal) int { return b.Cmp(a) })
	hi := points[0]
	for _, lo := range points[1:] {
		if lo.Equal(hi) {
			continue
		}
		at(lo)
		if sum := sumPositive(x); sum.GreaterThanOrEqual(amount) {
			// Between lo and hi the sum falls by n for each unit of L,
			// n being the shares that are neither zero nor capped there.
			n := 0
			for k, v := range need {
				c, capped := capOf(k)
				if v.GreaterThan(lo) && (!capped || v.Sub(c).LessThan(hi)) {
					n++
				}
			}
			level := lo.Add(sum.Sub(amount).DivRound(decimal.NewFromInt(int64(n)), amountPlaces))
			at(level)
			break
		}
		hi = lo
	}
	// The largest share takes what rounding the level left.
	big := 0
	for k := range x {
		if x[k].GreaterThan(x[big]) {
			big = k
		}
	}
	x[big] = x[big].Add(amount.Sub(sumPositive(x)))
	return x
}

// withdraw computes the sells of a withdrawal in its account, rounds
// them, makes up what min_trade dropped and settles the withdrawal.
func (pl *planner) withdraw() {
	p, s, f := pl.p, pl.s, pl.flow
	pl.perAccount()
	pl.holdings()
	for i := range pl.rule {
		pl.rule[i] = RuleWithdraw
	}
	f.ranked = nil // each pass ranks again
	if f.split {
		pl.splitWithdrawal()
	}
	// The amount to take out of the sleeves: the withdrawal and what
	// refills the reserves first.
	raise := f.amount
	for _, part := range f.parts {
		raise = raise.Add(pl.short[part.account])
	}
	after := pl.T.Sub(raise)
	surplus := make([]decimal.Decimal, len(p.Sleeves))
	for si := range p.Sleeves {
		surplus[si] = s.Sleeves[si].Value.Sub(p.Sleeves[si].Target.Mul(after))
		pl.want[si] = s.Sleeves[si].Value.Sub(surplus[si]) // the value after, at target
	}
	top := make([]int, 0, len(p.Sleeves))
	for si := range p.Sleeves {
		if p.Sleeves[si].Parent < 0 {
			top = append(top, si)
		}
	}
	// Each account in turn, on the surpluses the accounts before it left.
	for _, part := range f.parts {
		pl.withdrawIn(part.account, part.amount.Add(pl.short[part.account]), surplus, top)
	}
	pl.round()
	pl.topUp(surplus)
}

// withdrawIn places the sells that raise raise in account a (by least tax
// or by allocation, see Withdraw), and lowers surplus by what the account
// gives of each sleeve: its free cash and its sells.
func (pl *planner) withdrawIn(a int, raise decimal.Decimal, surplus []decimal.Decimal, top []int) {
	p, s := pl.p, pl.s
	fromCash := decimal.Min(raise, s.FreeCash[a])
	sold := make([]decimal.Decimal, pl.nI)
	for i := range sold {
		sold[i] = pl.sellAt[a*pl.nI+i]
	}
	defer func() {
		given := make([]decimal.Decimal, len(p.Sleeves))
		given[p.Cash] = fromCash
		for i := range sold {
			given[p.Instruments[i].Sleeve] = given[p.Instruments[i].Sleeve].Add(pl.sellAt[a*pl.nI+i].Sub(sold[i]))
		}
		drift.Rollup(p, given)
		for si := range surplus {
			surplus[si] = surplus[si].Sub(given[si])
		}
	}()
	if pl.byTax(a) {
		pl.leastTax(a, raise.Sub(fromCash))
		return
	}
	avail := make([]decimal.Decimal, len(p.Sleeves))
	for si := range p.Sleeves {
		for _, i := range p.Sleeves[si].Instruments {
			avail[si] = avail[si].Add(pl.sellable[a*pl.nI+i])
		}
	}
	avail[p.Cash] = avail[p.Cash].Add(s.FreeCash[a])
	drift.Rollup(p, avail)
	take := make([]decimal.Decimal, len(p.Sleeves))
	pl.withdrawFrom(top, decimal.Min(raise, drift.TotalOf(p, avail)), surplus, avail, take)
	for si := range p.Sleeves {
		ps := &p.Sleeves[si]
		x := take[si]
		if !ps.Leaf() || x.Sign() <= 0 {
			continue
		}
		if si == p.Cash {
			x = x.Sub(decimal.Min(x, s.FreeCash[a])) // the free cash pays first
		}
		n := len(ps.Instruments)
		over := make([]decimal.Decimal, n)
		held := make([]decimal.Decimal, n)
		for k, i := range ps.Instruments {
			// What the accounts before sold of it is no longer over.
			over[k] = pl.held[i].Sub(pl.soldAll(i)).Sub(p.Instruments[i].Share.Mul(pl.want[si]))
			held[k] = pl.sellable[a*pl.nI+i]
		}
		for k, part := range fill(over, held, x) {
			pl.sellAt[a*pl.nI+ps.Instruments[k]] = part
		}
	}
}

// soldAll returns the value of instrument i placed for sale in every
// account so far.
func (pl *planner) soldAll(i int) decimal.Decimal {
	return pl.sumOf(pl.nA, func(a int) decimal.Decimal { return pl.sellAt[a*pl.nI+i] })
}

// withdrawFrom takes amount (at most what the account holds of them)
// from sibling sleeves kids (into take) by water-filling on their
// surpluses, each within what the account holds of it (avail); then from
// their children.
func (pl *planner) withdrawFrom(kids []int, amount decimal.Decimal, surplus, avail, take []decimal.Decimal) {
	over := make([]decimal.Decimal, len(kids))
	held := make([]decimal.Decimal, len(kids))
	for k, c := range kids {
		over[k], held[k] = surplus[c], avail[c]
	}
	for k, x := range fill(over, held, amount) {
		c := kids[k]
		take[c] = x
		pl.withdrawFrom(pl.p.Sleeves[c].Children, x, surplus, avail, take)
	}
}

// topUp adds steps to the withdrawal's sells, or new sells, while the
// account's free cash after the orders falls short of the amount (orders
// dropped below min_trade): to existing sells first, in the plan's order,
// then new sells of the positions of the sleeves with the largest
// surpluses, within what may be sold.
func (pl *planner) topUp(surplus []decimal.Decimal) {
	for _, part := range pl.flow.parts {
		pl.topUpIn(part.account, part.amount, surplus)
	}
}

// topUpIn tops up the sells of account a until its free cash after the
// orders covers amount (see topUp).
func (pl *planner) topUpIn(a int, amount decimal.Decimal, surplus []decimal.Decimal) {
	p := pl.p
	gap := func() decimal.Decimal { return amount.Sub(pl.cash[a]) }
	for k := range pl.orders {
		o := &pl.orders[k]
		if gap().Sign() <= 0 {
			return
		}
		if o.account != a {
			continue
		}
		if n := pl.sellSteps(a, o.instrument, o.Quantity, gap()); n.Sign() > 0 {
			pl.step(a, o.instrument, n, true)
			o.units = o.units.Add(n)
			o.Quantity = pl.timesStep(o.instrument, o.units)
			o.Notional = o.Quantity.Mul(o.Price)
		}
	}
	instr := make([]int, 0, pl.nI)
	for i := range p.Instruments {
		if pl.sellable[a*pl.nI+i].Sign() > 0 && !pl.hasOrder(a, i) {
			instr = append(instr, i)
		}
	}
	slices.SortStableFunc(instr, func(x, y int) int {
		return surplus[p.Instruments[y].Sleeve].Cmp(surplus[p.Instruments[x].Sleeve])
	})
	for _, i := range instr {
		g := gap()
		if g.Sign() <= 0 {
			return
		}
		// At least min_trade's worth, so that the order is not dropped.
		n := pl.sellSteps(a, i, decimal.Zero, decimal.Max(g, p.Rebalance.MinTrade))
		if pl.addOrder(a, i, Sell, n, pl.timesStep(i, n), n.Mul(pl.unit[i])) {
			pl.step(a, i, n, true)
		}
	}
}

// sellSteps returns how many more steps of instrument i account a may
// sell on top of qty to raise amount: amount's steps rounded up, at most
// what the account may sell.
func (pl *planner) sellSteps(a, i int, qty, amount decimal.Decimal) decimal.Decimal {
	want, rem := amount.QuoRem(pl.unit[i], 0)
	if rem.Sign() > 0 {
		want = want.Add(oneUnit)
	}
	most, _ := pl.limit(a, i).Sub(qty).QuoRem(pl.p.Instruments[i].Step, 0)
	return decimal.Min(want, most)
}

// cashAfter returns account a's cash above its reserve after the orders
// and, in a withdrawal's account, after the withdrawal, which takes the
// amount or what there is (recorded as withdrawn).
func (pl *planner) cashAfter(a int) decimal.Decimal {
	f := pl.flow
	if f == nil || f.kind != CashFlowWithdraw {
		return pl.cash[a]
	}
	part := f.part(a)
	if part == nil {
		return pl.cash[a]
	}
	part.withdrawn = decimal.Max(decimal.Zero, decimal.Min(part.amount, pl.cash[a]))
	return pl.cash[a].Sub(part.withdrawn)
}

// flowReport fills the plan's CashFlow and adds the cash flow's
// unresolved entries.
func (pl *planner) flowReport(out *Plan) {
	f, p := pl.flow, pl.p
	cf := &CashFlow{Kind: f.kind, Amount: f.amount}
	for k := range out.Orders {
		cf.Traded = cf.Traded.Add(out.Orders[k].Notional)
	}
	out.CashFlow = cf
	if f.kind == CashFlowInvest {
		if f.reach {
			more := f.deposit
			cf.DepositToBands = &more
		}
		for k := range out.Sleeves {
			r := &out.Sleeves[k]
			if !r.BreachAfter || pl.listed(out, r.Sleeve) {
				continue
			}
			reason := "outside its band after investing the free cash without selling"
			if f.reach {
				reason += fmt.Sprintf("; a deposit of %s %s more, invested the same way, brings every sleeve inside its band", f.deposit.StringFixed(2), p.Currency)
			} else {
				reason += "; no deposit alone brings every sleeve inside its band"
			}
			out.Unresolved = append(out.Unresolved, Unresolved{Sleeve: r.Sleeve, WeightAfter: r.WeightAfter, Reason: reason})
		}
		return
	}
	var names []string
	for _, part := range f.parts {
		a := part.account
		wp := WithdrawalPart{Account: p.Accounts[a].Name, Amount: part.amount, Withdrawn: part.withdrawn,
			Tax: pl.withdrawalTax(out, a, part.withdrawn)}
		for k := range out.Orders {
			if o := &out.Orders[k]; o.account == a {
				wp.Traded = wp.Traded.Add(o.Notional)
			}
		}
		wp.FromCash = decimal.Max(decimal.Zero, part.withdrawn.Sub(wp.Traded))
		cf.FromCash = cf.FromCash.Add(wp.FromCash)
		cf.Withdrawn = cf.Withdrawn.Add(wp.Withdrawn)
		cf.Tax = cf.Tax.plus(wp.Tax, wp.Account, f.split)
		cf.Accounts = append(cf.Accounts, wp)
		names = append(names, wp.Account)
	}
	if !f.split {
		cf.Account, cf.Accounts = names[0], nil
	}
	cf.Shortfall = f.amount.Sub(cf.Withdrawn)
	where := strings.Join(names, ", ")
	for k := range out.Sleeves {
		if r := &out.Sleeves[k]; r.BreachAfter && !pl.listed(out, r.Sleeve) {
			out.Unresolved = append(out.Unresolved, Unresolved{Sleeve: r.Sleeve, WeightAfter: r.WeightAfter,
				Reason: fmt.Sprintf("outside its band after the withdrawal, which only sells, in %s", where)})
		}
	}
	if cf.Shortfall.Sign() > 0 {
		why := "it holds nothing more that may be sold"
		if f.split {
			why = "the accounts hold nothing more that may be sold"
		}
		for k := 0; k < len(f.parts)*pl.nI; k++ {
			a, i := f.parts[k/pl.nI].account, k%pl.nI
			if pl.withheld != nil && pl.withheld[a*pl.nI+i].Sign() > 0 {
				why += "; the tax rules hold lots back"
				break
			}
		}
		out.Unresolved = append(out.Unresolved, Unresolved{WeightAfter: decimal.Zero,
			Reason: fmt.Sprintf("withdrawal of %s %s from %s: only %s can be raised: %s",
				f.amount.StringFixed(2), p.Currency, where, cf.Withdrawn.StringFixed(2), why)})
	}
}

// listed reports whether sleeve path is already unresolved in out.
func (pl *planner) listed(out *Plan, path string) bool {
	for _, u := range out.Unresolved {
		if u.Sleeve == path {
			return true
		}
	}
	return false
}

// cent is the resolution of DepositToBands: a hundredth of the currency
// unit.
var cent = decimal.New(1, -2)

// DepositToBands returns the smallest deposit, in whole cents, that,
// invested buy-only as Invest invests it (together with the free cash the
// household already has), brings every sleeve of snapshot s inside its
// band: zero when investing the free cash already there does. It ignores
// placement (may_hold, steps, min_trade), which may leave a sleeve a
// trading step short. ok is false when no deposit does: a sleeve whose
// band's upper edge is 0% holds something.
//
// Derivation. A deposit D makes the total T = T0 + D (T0 the investable
// total now); nothing is sold, so a sleeve of value v and band edges
// [low, high] (fractions of the total) is inside its band after the buys
// b it gets when low x T <= v + b <= high x T. Hence, per sleeve:
//
//   - above the upper edge, buys cannot help: the total must grow until
//     v <= high x T, that is T >= v / high;
//   - below the lower edge, it needs buys of at least low x T - v, which
//     grow with T; a parent needs what its own edge asks or what its
//     sub-sleeves need, whichever is more, and must not be pushed past its
//     target for them (so the sub-sleeves' needs must fit in its deficit
//     to target, t x T - v);
//   - Invest spends B = max(0, min(F + D, C + D - c x T)), where F is the
//     free cash now, C the cash sleeve's value and c its target: the
//     needs of the top-level sleeves must fit in B, and the cash left,
//     C + D - B, must lie inside the cash sleeve's band.
//
// Each condition is exact decimal arithmetic. Past the deposit at which
// the upper edges hold, every condition only gets easier as D grows, so
// the smallest whole cent that meets them all is found by bisection:
// exact, with no division to round, which is what rounding up to cents
// means.
//
// Worked example: a 60/40 portfolio, bands 5 points, cash 0%, at
// 7000/3000 (70/30). Stocks are above 65%: T >= 7000 / 0.65 =
// 10769.2307...; bonds below 35% need 0.35 x T - 3000, which must fit in
// B = D = T - 10000: 0.65 x T >= 7000, the same bound. D = 769.2307...,
// rounded up to 769.24: at 769.23, 0.65 x 10769.23 = 6999.9995 < 7000.
func DepositToBands(s *drift.Snapshot) (deposit decimal.Decimal, ok bool) {
	p := s.Book.Policy
	var free decimal.Decimal
	for _, f := range s.FreeCash {
		free = free.Add(f)
	}
	c := &bandCheck{s: s, free: free}
	for si := range p.Sleeves {
		if p.Sleeves[si].BandHigh.Sign() == 0 && s.Sleeves[si].Value.Sign() > 0 && si != p.Cash {
			return decimal.Zero, false
		}
	}
	if c.all(decimal.Zero) {
		return decimal.Zero, true
	}
	// A deposit that is enough, by doubling from the total (at least 1).
	hi := decimal.Max(s.Total.Ceil(), oneUnit)
	for k := 0; !c.all(hi); k++ {
		if k == 64 {
			return decimal.Zero, false
		}
		hi = hi.Add(hi)
	}
	// Below the upper edges' deposit nothing works; from there on, more
	// is never worse.
	lo := decimal.Zero
	if !c.upper(lo) {
		lo = bisectCents(lo, hi, c.upper)
		if c.all(lo) {
			return lo, true
		}
	}
	return bisectCents(lo, hi, c.all), true
}

// bisectCents returns the smallest whole cent in (lo, hi] at which ok
// holds, given that ok(lo) fails, ok(hi) holds and ok is monotone between.
func bisectCents(lo, hi decimal.Decimal, ok func(decimal.Decimal) bool) decimal.Decimal {
	two := decimal.NewFromInt(2)
	l, h := lo.Div(cent), hi.Div(cent) // whole numbers of cents
	for h.Sub(l).GreaterThan(oneUnit) {
		mid, _ := l.Add(h).QuoRem(two, 0)
		if ok(mid.Mul(cent)) {
			h = mid
		} else {
			l = mid
		}
	}
	return h.Mul(cent)
}

// bandCheck tests the conditions of DepositToBands for a deposit.
type bandCheck struct {
	s    *drift.Snapshot
	free decimal.Decimal // the household's free cash now
}

// upper reports whether, after deposit d, no sleeve lies above its band's
// upper edge.
func (c *bandCheck) upper(d decimal.Decimal) bool {
	p, s := c.s.Book.Policy, c.s
	total := s.Total.Add(d)
	for si := range p.Sleeves {
		if si != p.Cash && s.Sleeves[si].Value.GreaterThan(p.Sleeves[si].BandHigh.Mul(total)) {
			return false
		}
	}
	return true
}

// all reports whether investing deposit d with the free cash brings
// every sleeve inside its band.
func (c *bandCheck) all(d decimal.Decimal) bool {
	p, s := c.s.Book.Policy, c.s
	if !c.upper(d) {
		return false
	}
	total := s.Total.Add(d)
	value := func(si int) decimal.Decimal { return s.Sleeves[si].Value }
	need := lowerNeeds(p, total, value)
	top := decimal.Zero
	for si := range p.Sleeves {
		ps := &p.Sleeves[si]
		if si == p.Cash {
			continue
		}
		if ps.Parent < 0 {
			top = top.Add(need[si])
		}
		if len(ps.Children) == 0 {
			continue
		}
		kids := decimal.Zero
		for _, k := range ps.Children {
			kids = kids.Add(need[k])
		}
		if kids.GreaterThan(ps.Target.Mul(total).Sub(value(si))) {
			return false
		}
	}
	cashSleeve := &p.Sleeves[p.Cash]
	cash := s.Sleeves[p.Cash].Value.Add(d)
	budget := decimal.Max(decimal.Zero, decimal.Min(c.free.Add(d), cash.Sub(cashSleeve.Target.Mul(total))))
	if top.GreaterThan(budget) {
		return false
	}
	left := cash.Sub(budget)
	return !left.LessThan(cashSleeve.BandLow.Mul(total)) && !left.GreaterThan(cashSleeve.BandHigh.Mul(total))
}

// Waiting is new money that a phase-in holds back from a plan: cash
// waiting for a later step of its dollar-cost averaging
// (targets.CashPhase).
type Waiting struct {
	// ID names the money: a cash flow's id, or first-investment.
	ID      string          `json:"id"`
	Account string          `json:"account"`
	Amount  decimal.Decimal `json:"amount"`
	// Step of Steps is in effect; Next is when the next applies.
	Step  int       `json:"step"`
	Steps int       `json:"steps"`
	Next  time.Time `json:"next,omitzero"`
}

// WaitingAt returns what the phases hold back at time at: for each phase
// not done, the money its current step leaves for later steps.
func WaitingAt(phases []targets.CashPhase, at time.Time) []Waiting {
	var out []Waiting
	for k := range phases {
		c := &phases[k]
		st := c.At(at)
		if w := c.Waiting(st.Step); w.Sign() > 0 {
			out = append(out, Waiting{ID: c.ID, Account: c.Account, Amount: w, Step: st.Step, Steps: st.Steps, Next: st.Next})
		}
	}
	return out
}

// HoldBack returns a copy of book b without the cash that w waits with:
// each account's cash less what waits in it, never below zero (a
// withdrawal may have taken some). Drift and plans of the copy neither
// count nor invest that cash: it is outside the allocation until its step
// comes. b is not modified; w's accounts not in the policy are ignored.
func HoldBack(b *portfolio.Book, w []Waiting) *portfolio.Book {
	if len(w) == 0 {
		return b
	}
	c := *b
	c.Cash = slices.Clone(b.Cash)
	for _, x := range w {
		if a, ok := b.Policy.AccountIndex(x.Account); ok {
			c.Cash[a] = decimal.Max(decimal.Zero, c.Cash[a].Sub(x.Amount))
		}
	}
	return &c
}

// FirstInvestment returns the cash phases of a household's first
// investment under rule, begun at start: the free cash (above its
// reserve) of each account that has some, when the household holds
// nothing outside the cash sleeve. It returns none otherwise, or without
// a rule.
func FirstInvestment(s *drift.Snapshot, rule *policy.PhaseIn, start time.Time) []targets.CashPhase {
	p := s.Book.Policy
	if rule == nil || s.Total.Sign() <= 0 {
		return nil
	}
	for si := range p.Sleeves {
		if si != p.Cash && p.Sleeves[si].Parent < 0 && s.Sleeves[si].Value.Sign() != 0 {
			return nil
		}
	}
	var out []targets.CashPhase
	for a := range p.Accounts {
		if free := s.FreeCash[a]; free.Sign() > 0 {
			out = append(out, targets.NewCashPhase(FirstInvestmentID, p.Accounts[a].Name, free, start, rule))
		}
	}
	return out
}

// FirstInvestmentID is the ID of the cash phases of a first investment.
const FirstInvestmentID = "first-investment"

// TaxEstimate is the estimated federal tax of a withdrawal, in the policy
// currency, rounded to cents (half away from zero). It is an estimate at
// the policy's flat rates (tax.withdrawals), not a tax computation:
// brackets, state taxes and the rest of the investor's income are not in
// it.
type TaxEstimate struct {
	// Tax is the sum of the parts below.
	Tax decimal.Decimal `json:"tax"`
	// OrdinaryIncome is the tax on a distribution from a tax-deferred
	// account: the amount withdrawn at the ordinary income rate.
	OrdinaryIncome decimal.Decimal `json:"ordinary_income_tax"`
	// Additional is the 10% additional tax on a distribution from a
	// tax-deferred account before age 59½ (26 U.S.C. §72(t)), unless the
	// account type is exempt.
	Additional decimal.Decimal `json:"additional_tax"`
	// CapitalGains is the tax on the gains the sells of a taxable account
	// realize: short-term and long-term netted as Schedule D nets them,
	// each net gain at its rate; a net loss gives none (see Notes).
	CapitalGains decimal.Decimal `json:"capital_gains_tax"`
	// Notes say what the estimate assumed or could not know.
	Notes []string `json:"notes,omitempty"`
}

// withdrawalTax estimates the tax of withdrawing amount from account a
// with the orders of out.
func (pl *planner) withdrawalTax(out *Plan, a int, amount decimal.Decimal) *TaxEstimate {
	p := pl.p
	var rules policy.Withdrawals
	if p.Tax != nil {
		rules = p.Tax.Withdrawals
	}
	e := &TaxEstimate{}
	cents := func(d decimal.Decimal) decimal.Decimal { return d.Round(2) }
	missing := func(key string) {
		e.Notes = append(e.Notes, "tax.withdrawals."+key+" is not set: that part is estimated at 0")
	}
	t := p.Accounts[a].Type
	switch {
	case t == policy.AccountTaxable:
		var g tax.Gains
		unknown := false
		for k := range out.Orders {
			if o := &out.Orders[k]; o.Account == p.Accounts[a].Name && o.Side == Sell {
				g = g.Add(o.Gains)
				unknown = unknown || o.BasisUnknown
			}
		}
		st, lt := g.NetShortTerm(), g.NetLongTerm()
		// A net loss of one holding period offsets a net gain of the other.
		switch {
		case st.Sign() < 0 && lt.Sign() > 0:
			st, lt = decimal.Zero, decimal.Max(decimal.Zero, lt.Add(st))
		case lt.Sign() < 0 && st.Sign() > 0:
			st, lt = decimal.Max(decimal.Zero, st.Add(lt)), decimal.Zero
		}
		stRate, hasST := rules.ShortTermRate, rules.HasShortTerm
		if !hasST {
			stRate, hasST = rules.OrdinaryRate, rules.HasOrdinary
		}
		if st.Sign() > 0 {
			e.CapitalGains = e.CapitalGains.Add(st.Mul(stRate))
			if !hasST {
				missing("short_term_gains_rate")
			}
		}
		if lt.Sign() > 0 {
			e.CapitalGains = e.CapitalGains.Add(lt.Mul(rules.LongTermRate))
			if !rules.HasLongTerm {
				missing("long_term_gains_rate")
			}
		}
		if net := g.Net(); net.Sign() < 0 {
			e.Notes = append(e.Notes, fmt.Sprintf("a net capital loss of %s: it offsets other gains, and up to 3,000 a year of ordinary income (26 U.S.C. §1211(b))", cents(net.Neg())))
		}
		if unknown {
			e.Notes = append(e.Notes, "some sells have no lots, so no cost basis: their gains are not in the estimate")
		}
	case t.TaxDeferred():
		e.OrdinaryIncome = amount.Mul(rules.OrdinaryRate)
		if !rules.HasOrdinary {
			missing("ordinary_income_rate")
		}
		exempt := false
		for _, x := range rules.PenaltyExempt {
			exempt = exempt || x == t
		}
		date := pl.tradeDate()
		switch {
		case exempt:
		case p.Investor == nil:
			e.Additional = amount.Mul(additionalRate)
			e.Notes = append(e.Notes, "investor.birth_date is not given: the 10% additional tax before age 59½ is assumed")
		case date.Before(tax.DateOf(tax.AddMonthsClamped(p.Investor.BirthDate, 59*12+6))):
			e.Additional = amount.Mul(additionalRate)
			e.Notes = append(e.Notes, fmt.Sprintf("before age 59½ (%s): 10%% additional tax unless an exception of 26 U.S.C. §72(t) applies", tax.DateOf(tax.AddMonthsClamped(p.Investor.BirthDate, 59*12+6))))
		}
	default:
		e.Notes = append(e.Notes, fmt.Sprintf("a %s distribution is taken to be qualified, so tax-free (Roth: after age 59½ and five years; HSA: medical expenses; 529: education)", t))
	}
	e.OrdinaryIncome, e.Additional, e.CapitalGains = cents(e.OrdinaryIncome), cents(e.Additional), cents(e.CapitalGains)
	e.Tax = e.OrdinaryIncome.Add(e.Additional).Add(e.CapitalGains)
	return e
}

// plus returns e with o, the estimate of account's part of a withdrawal,
// added: the first part's estimate as it is when the withdrawal is not
// split; otherwise the sums, with each note saying its account.
func (e *TaxEstimate) plus(o *TaxEstimate, account string, split bool) *TaxEstimate {
	if !split {
		return o
	}
	sum := &TaxEstimate{}
	if e != nil {
		*sum = *e
		sum.Notes = slices.Clone(e.Notes)
	}
	sum.OrdinaryIncome = sum.OrdinaryIncome.Add(o.OrdinaryIncome)
	sum.Additional = sum.Additional.Add(o.Additional)
	sum.CapitalGains = sum.CapitalGains.Add(o.CapitalGains)
	sum.Tax = sum.Tax.Add(o.Tax)
	for _, n := range o.Notes {
		sum.Notes = append(sum.Notes, account+": "+n)
	}
	return sum
}

// additionalRate is the additional tax on early distributions from
// tax-deferred accounts (26 U.S.C. §72(t)).
var additionalRate = decimal.New(1, -1)

// tradeDate is the plan's trade date: that of its tax state, or the day
// of its prices in the investor's zone.
func (pl *planner) tradeDate() tax.Date {
	if pl.tx != nil {
		return pl.tx.date
	}
	return tax.DateOf(pl.s.AsOf.In(pl.p.TradeZone()))
}

// byTax reports whether a withdrawal from account a chooses its positions
// by least tax: tax.withdrawals.by is tax, a is taxable and its lots are
// known.
func (pl *planner) byTax(a int) bool {
	p := pl.p
	return p.Tax != nil && p.Tax.Withdrawals.ByTax && !p.Accounts[a].Type.TaxAdvantaged() && pl.tx != nil && pl.tx.lots != nil
}

// leastTax places sells in account a that raise amount from the lots that
// cost the least tax per currency unit raised, across all its positions:
// each lot's gain at its rate (tax.withdrawals' long-term or short-term
// rate; a loss is a negative tax, so the largest losses go first), divided
// by its proceeds; ties in file order. Positions without lots, whose tax
// is unknown, come last, in instrument order. Cash-sleeve instruments are
// sold only when nothing else raises the amount. The lots each sell then
// sells are those Lots.Select chooses for its quantity.
func (pl *planner) leastTax(a int, amount decimal.Decimal) {
	p, tx := pl.p, pl.tx
	w := p.Tax.Withdrawals
	st := w.ShortTermRate
	if !w.HasShortTerm {
		st = w.OrdinaryRate
	}
	type cand struct {
		i       int
		lot     int // index in the position's lots; -1 without
		value   decimal.Decimal
		perUnit decimal.Decimal // tax per currency unit raised
		rank    int             // 0: lots, 1: no lots, 2: cash sleeve
	}
	var cands []cand
	for i := 0; i < pl.nI; i++ {
		k := a*pl.nI + i
		price := pl.b.Price[i]
		if pl.sellable[k].Sign() <= 0 || price.Sign() <= 0 {
			continue
		}
		rank := 1
		if p.Instruments[i].Sleeve == p.Cash {
			rank = 2
		}
		l := tx.lotsAt(a, i, pl.nI)
		if l.Len() == 0 || rank == 2 {
			cands = append(cands, cand{i: i, lot: -1, value: pl.sellable[k], rank: rank})
			continue
		}
		for j := 0; j < l.Len(); j++ {
			if l.HoldsBack(j, price, tx.date, tx.opts) {
				continue // the tax rules keep it
			}
			lot := l.Lot(j)
			proceeds := lot.Quantity.Mul(price)
			rate := st
			if tax.IsLongTerm(lot.HeldFrom(), tx.date) {
				rate = w.LongTermRate
			}
			cands = append(cands, cand{i: i, lot: j, value: proceeds, perUnit: proceeds.Sub(lot.Basis).Mul(rate).DivRound(proceeds, amountPlaces)})
		}
	}
	slices.SortStableFunc(cands, func(x, y cand) int {
		if x.rank != y.rank {
			return x.rank - y.rank
		}
		return x.perUnit.Cmp(y.perUnit)
	})
	// The sells follow the ranking: each position's lots in rank order
	// (chooseLots), also for the steps rounding adds.
	if pl.flow.ranked == nil {
		pl.flow.ranked = map[int][]int{}
	}
	for _, c := range cands {
		if k := a*pl.nI + c.i; c.lot >= 0 {
			pl.flow.ranked[k] = append(pl.flow.ranked[k], c.lot)
		}
	}
	left := amount
	for _, c := range cands {
		if left.Sign() <= 0 {
			break
		}
		k := a*pl.nI + c.i
		room := pl.sellable[k].Sub(pl.sellAt[k])
		part := decimal.Min(left, c.value, room)
		if part.Sign() <= 0 {
			continue
		}
		pl.sellAt[k] = pl.sellAt[k].Add(part)
		left = left.Sub(part)
	}
}
