// Price guards shared by the households with the same price rules: a
// quote is judged once per set of rules, not once per household.

package engine

import (
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/feeds"
	"github.com/rebalancerd/rebalancerd/internal/fixed"
	"github.com/rebalancerd/rebalancerd/internal/policy"
)

// priceGuard is the price guard of every household whose price rules
// (max_age, max_move, confirm_after) are the same. A Confirmer's state
// for a symbol depends only on the rules and on the quotes of the symbol
// offered to it, and every household needing a symbol was offered every
// quote of it: households with the same rules had guards in the same
// state, which one guard now holds. A quote is offered once per guard
// (800,000 offers per tick at 100,000 households became one per guard),
// and a held move is logged once per guard, not once per household.
//
// One difference: a household that starts needing a symbol (loaded, or
// holding a new instrument) sees the history the guard has of it when
// another household on the same rules needed it before: its accepted
// price, or a move held back, at once, where its own guard had nothing
// ("missing") until the next quote. A held move blocks it as it blocks
// the others.
type priceGuard struct {
	*feeds.Guard
	key   guardKey
	users int
	// need counts the households of the guard needing each symbol: only
	// those symbols are offered to it.
	need map[string]int
	// verdicts are the guard's verdicts on the batch of quotes being
	// offered, by quote; zero for a quote not offered to it. changed[k]
	// is set when a quote of the batch changed what the guard holds of
	// its symbol number k (a verdict other than ignored or agreeing).
	verdicts []feeds.Verdict
	changed  []bool
	// syms numbers the symbols households of the guard needed (index
	// their numbers), for the price epochs; epoch is the current one (nil:
	// made when asked for), seq the number of the last made.
	syms  []string
	index map[string]int32
	epoch *priceEpoch
	seq   uint64
	// prev is the last epoch made; the next is made from it, reading
	// again only the symbols numbered in stale (offered since), unless
	// rebuild is set (a symbol numbered or needed anew).
	prev    *priceEpoch
	stale   []int32
	rebuild bool
}

// priceEpoch is what a guard held at one moment, by the guard's number
// of each symbol: the accepted quotes (has: one is there), the symbols
// with a move held back, and the accepted prices as exact integers (fxOK:
// the price fits). These do not change once it is made: any offer that
// changes the guard, and a symbol needed anew, make the next epoch (moves
// and usable are memos).
type priceEpoch struct {
	seq    uint64
	quotes []feeds.Quote
	has    []bool
	held   []bool
	fx     []fixed.Num
	fxOK   []bool
	needed []bool // some household of the guard needs the symbol
	// moves[k] bounds the relative move of symbol k's price from this
	// epoch to the epoch numbered movesTo (see movesFrom).
	movesTo uint64
	moves   []uint64
	// usable reports whether every symbol's price may be planned on at
	// usableAt (see allUsable).
	usableAt time.Time
	usable   bool
	// oldest is the time of the oldest accepted quote of a symbol some
	// household of the guard needs (zero: none).
	oldest time.Time
}

// allUsable reports whether every symbol of the epoch has a price that
// may be planned on at now: accepted, no move held back, fresh
// (Guard.Check finds no problem). Computed once per epoch and time.
func (ep *priceEpoch) allUsable(g *priceGuard, now time.Time) bool {
	if !ep.usableAt.IsZero() && ep.usableAt.Equal(now) {
		return ep.usable
	}
	ep.usableAt, ep.usable = now, true
	for k := range ep.quotes {
		if !ep.has[k] || ep.held[k] || !g.Fresh(ep.quotes[k], now) {
			ep.usable = false
			break
		}
	}
	return ep.usable
}

// boundPlaces are the decimal places of relative moves and the breach
// screen's bounds on them (10^-12).
const boundPlaces = 12

// Offer offers the quote to the guard; an offer that may have changed
// what the guard holds ends the current epoch.
func (g *priceGuard) Offer(q feeds.Quote, now time.Time) feeds.Verdict {
	v := g.Guard.Offer(q, now)
	if v != feeds.Ignored && v != feeds.Rejected {
		g.epoch = nil
		if k, ok := g.index[q.Symbol]; ok && !g.rebuild {
			if g.stale = append(g.stale, k); len(g.stale) > len(g.syms) {
				g.stale, g.rebuild = g.stale[:0], true // cheaper read in full
			}
		}
	}
	return v
}

// number returns the guard's number of sym, numbering it when new.
func (g *priceGuard) number(sym string) int32 {
	if k, ok := g.index[sym]; ok {
		return k
	}
	if g.index == nil {
		g.index = map[string]int32{}
	}
	k := int32(len(g.syms))
	g.syms = append(g.syms, sym)
	g.index[sym] = k
	g.epoch, g.rebuild = nil, true // one symbol short
	return k
}

// current returns the guard's current epoch, made when there is none:
// from the previous one with the symbols offered since read again (a
// copy, not a read of every symbol: with thousands of symbols quoted one
// at a time that was most of a quote's cost), or read in full.
func (g *priceGuard) current() *priceEpoch {
	if g.epoch != nil {
		return g.epoch
	}
	n := len(g.syms)
	g.seq++
	ep := &priceEpoch{seq: g.seq}
	if p := g.prev; p != nil && !g.rebuild && len(p.quotes) == n {
		ep.quotes, ep.has, ep.held = slices.Clone(p.quotes), slices.Clone(p.has), slices.Clone(p.held)
		ep.fx, ep.fxOK, ep.needed = slices.Clone(p.fx), slices.Clone(p.fxOK), slices.Clone(p.needed)
		for _, k := range g.stale {
			g.read(ep, int(k))
		}
	} else {
		ep.quotes, ep.has, ep.held = make([]feeds.Quote, n), make([]bool, n), make([]bool, n)
		ep.fx, ep.fxOK, ep.needed = make([]fixed.Num, n), make([]bool, n), make([]bool, n)
		for k, sym := range g.syms {
			g.read(ep, k)
			ep.needed[k] = g.need[sym] > 0
		}
	}
	for k := range ep.quotes {
		if ep.has[k] && ep.needed[k] && (ep.oldest.IsZero() || ep.quotes[k].At.Before(ep.oldest)) {
			ep.oldest = ep.quotes[k].At
		}
	}
	g.epoch, g.prev, g.stale, g.rebuild = ep, ep, g.stale[:0], false
	return ep
}

// read sets symbol k's entry of the epoch being made from the guard.
func (g *priceGuard) read(ep *priceEpoch, k int) {
	sym := g.syms[k]
	q, ok := g.Quote(sym)
	ep.quotes[k], ep.has[k] = q, ok
	_, ep.held[k] = g.Pending(sym)
	ep.fx[k], ep.fxOK[k] = fixed.Num{}, false
	if ok {
		ep.fx[k], ep.fxOK[k] = fixed.Of(q.Price)
	}
}

// movesFrom returns, for each symbol of the anchor epoch a, an upper
// bound of |p'-p|/p*10^boundPlaces, p its price in a and p' in b: the
// largest uint64 when either has no price of it (or one that does not
// fit). Computed once per pair of epochs (the households settled at one
// epoch share it).
func (b *priceEpoch) movesFrom(a *priceEpoch) []uint64 {
	if a.movesTo == b.seq && a.moves != nil {
		return a.moves
	}
	if a.moves == nil {
		a.moves = make([]uint64, len(a.quotes))
	}
	for k := range a.quotes {
		a.moves[k] = ^uint64(0)
		if !a.has[k] || !a.fxOK[k] || k >= len(b.quotes) || !b.has[k] || !b.fxOK[k] {
			continue
		}
		if d, ok := fixed.Diff(b.fx[k], a.fx[k]); ok {
			if m, ok := fixed.RatioCeil(d, a.fx[k], boundPlaces); ok {
				a.moves[k] = m
			}
		}
	}
	a.movesTo = b.seq
	return a.moves
}

// guardKey identifies price rules (the decimal by its value: "0.10" and
// "0.1" are the same max_move).
type guardKey struct {
	maxAge, confirmAfter time.Duration
	maxMove              string
}

func keyOf(pr policy.PriceRules) guardKey {
	return guardKey{maxAge: pr.MaxAge, confirmAfter: pr.ConfirmAfter, maxMove: pr.MaxMove.String()}
}

// useGuard puts the household on the guard of the price rules pr, when it
// is not on it yet. A household moving to a guard that has no quote of a
// symbol it needs takes its accepted quote along (a move it held is
// dropped: its confirmation starts again); on a guard that has one it
// sees the guard's. Called with e.mu held.
func (e *Engine) useGuard(rt *runtime, pr policy.PriceRules, now time.Time) {
	key := keyOf(pr)
	if rt.guard != nil && rt.guard.key == key {
		return
	}
	g := e.guards[key]
	if g == nil {
		g = &priceGuard{Guard: feeds.NewGuard(pr.MaxAge, pr.MaxMove, pr.ConfirmAfter), key: key, need: map[string]int{}}
		if e.guards == nil {
			e.guards = map[guardKey]*priceGuard{}
		}
		e.guards[key] = g
		e.guardList = append(e.guardList, g)
	}
	if old := rt.guard; old != nil {
		for _, sym := range rt.symbols {
			if _, ok := g.Quote(sym); ok {
				continue // the guard's history of it
			}
			if q, ok := old.Quote(sym); ok {
				g.Offer(q, now)
			}
		}
	}
	e.dropGuard(rt)
	rt.guard, rt.gidxOK = g, false
	g.users++
	g.setNeed(nil, rt.symbols)
}

// dropGuard takes the household off its guard, which goes when no
// household uses it. Called with e.mu held.
func (e *Engine) dropGuard(rt *runtime) {
	g := rt.guard
	if g == nil {
		return
	}
	rt.guard, rt.gidxOK = nil, false
	g.setNeed(rt.symbols, nil)
	if g.users--; g.users > 0 {
		return
	}
	delete(e.guards, g.key)
	for i, x := range e.guardList {
		if x == g {
			e.guardList = append(e.guardList[:i], e.guardList[i+1:]...)
			break
		}
	}
}

// setNeed counts a household's symbols new instead of old. A symbol
// needed anew ends the current epoch (its oldest quote counts only the
// symbols needed).
func (g *priceGuard) setNeed(old, new []string) {
	for _, sym := range old {
		if g.need[sym]--; g.need[sym] <= 0 {
			delete(g.need, sym)
		}
	}
	for _, sym := range new {
		if g.need[sym]++; g.need[sym] == 1 {
			g.epoch, g.rebuild = nil, true
		}
	}
}

// offerGuards offers each quote to every guard with a household needing
// its symbol, once, and logs the moves held back and confirmed. Called
// with e.mu held.
func (e *Engine) offerGuards(qs []feeds.Quote, now time.Time) {
	for _, g := range e.guardList {
		g.verdicts = g.verdicts[:0]
		clear(g.changed)
		for _, q := range qs {
			var v feeds.Verdict
			if n := g.need[q.Symbol]; n > 0 {
				v = g.Offer(q, now)
				if v != feeds.Ignored && v != feeds.Agreeing {
					k := int(g.number(q.Symbol))
					if k >= len(g.changed) {
						g.changed = append(g.changed, make([]bool, k+1-len(g.changed))...)
					}
					g.changed[k] = true
				}
				switch v {
				case feeds.Quarantined:
					e.log.Warn("price quarantined: moved more than max_move; unconfirmed until it persists for confirm_after or another feed reports it",
						zap.Int("households", n), zap.String("symbol", q.Symbol), zap.String("price", q.Price.String()),
						zap.String("source", q.Source), zap.Duration("confirm_after", g.key.confirmAfter))
				case feeds.Confirmed:
					e.log.Info("price move confirmed", zap.Int("households", n), zap.String("symbol", q.Symbol),
						zap.String("price", q.Price.String()), zap.String("source", q.Source))
				}
			}
			g.verdicts = append(g.verdicts, v)
		}
	}
}

// numbers returns the guard's numbers of the household's symbols.
func (rt *runtime) numbers() []int32 {
	if !rt.gidxOK {
		rt.gidx = make([]int32, len(rt.symbols)) // a new slice: a screen keeps the old one
		for k, sym := range rt.symbols {
			rt.gidx[k] = rt.guard.number(sym)
		}
		rt.gidxOK = true
	}
	return rt.gidx
}

// pricesUsable reports whether every price the household needs may be
// planned on at now: accepted, no move held back, fresh. It is
// Guard.Check finding no problem, read from the guard's epoch instead of
// its map. Called with e.mu held.
func (e *Engine) pricesUsable(rt *runtime, now time.Time) bool {
	gidx := rt.numbers() // before current: it may number a symbol
	ep := rt.guard.current()
	if ep.allUsable(rt.guard, now) {
		return true // the household's are among them
	}
	for _, k := range gidx {
		if !ep.has[k] || ep.held[k] || !rt.guard.Fresh(ep.quotes[k], now) {
			return false
		}
	}
	return true
}

// pricesChanged reports whether the last batch of quotes changed what the
// household's guard holds of a symbol it needs. Called with e.mu held,
// after offerGuards.
func (rt *runtime) pricesChanged() bool {
	g := rt.guard
	for _, k := range rt.numbers() {
		if int(k) < len(g.changed) && g.changed[k] {
			return true
		}
	}
	return false
}
