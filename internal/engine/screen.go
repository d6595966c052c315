// The breach screen: a cheap, exact test that a household's evaluation at
// new prices would change nothing but its valuation, so that drift and
// planning (decimal arithmetic, about 30 µs a household) run only for the
// households that may breach or whose check is due otherwise.

package engine

import (
	"slices"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/fixed"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
)

// screen is what the breach screen keeps of a household's last full
// evaluation: the figures that do not depend on prices, as exact
// integers. It is valid while the effective policy, the ledger and its
// holdings (ledger.Rev) are the ones it was built from.
//
// The figures are exact (fixed: unsigned 128-bit integers at a power of
// ten), so the screen has no error bound to respect: a figure that does
// not fit, a sleeve that breaches or may breach, a valuation that is not
// clearly accepted, anything the screen does not model (a calendar
// firing, a cash flow, a phase-in, a drift event due) sends the household
// to the full evaluation.
type screen struct {
	eff *policy.Policy
	led *ledger.Ledger
	rev uint64
	// syms are rt.symbols when built; held[k] is a held instrument.
	syms []string
	held []heldInstr
	// need are the symbols whose quotes Bind requires: held, or targeted
	// by the effective policy.
	need []string
	// free is the free cash the cash sleeve counts (zero without a cash
	// sleeve), cash the cash sleeve's index (-1 without one).
	free fixed.Num
	cash int
	// target and half are each sleeve's target and band half-width.
	target, half []fixed.Num
	// phaseIn: the policy has a phase_in rule (a first investment may
	// start when nothing but cash is held).
	phaseIn bool
	// maxMove is limits.max_value_change: valuation checks are screened
	// only when it is a non-negative decimal of at most 14 places.
	maxMove fixed.Num
	// valuation is the ledger's accepted valuation the references come
	// from (pending: a newer one the screen accepted and has not written
	// to the ledger yet; see settleValuation); saved is the valuation
	// check's last saved reference.
	valuation *ledger.Valuation
	saved     *ledger.Valuation
	pending   bool
	pendAt    time.Time
	pendTotal fixed.Num
	// pendSum is set when pendTotal is still to be summed from the
	// prices of from (copyPrices), pendBig when it did not fit (the exact
	// decimal then).
	pendSum bool
	pendBig *decimal.Decimal
	// prices and at are the quotes of syms at the last screen that
	// settled an evaluation (has: a quote was there), for the valuation it
	// accepted and for Status.
	prices []decimal.Decimal
	at     []time.Time
	has    []bool
	// guard is the household's price guard when built, gidx its numbers
	// of syms; needIn is set when every symbol of need is in syms.
	guard  *priceGuard
	gidx   []int32
	needIn bool
	// anchor is the guard's epoch at the last settle that did the
	// arithmetic (nil: no bound), bound the proven bound of relative
	// price moves from it, at boundPlaces places, within which the
	// household cannot breach and the valuation check accepts without a
	// save (see setBound).
	anchor *priceEpoch
	bound  uint64
	// from, when set, is the epoch of the last settle, whose prices
	// prices, at, has and the held instruments' ref are to be (see
	// copyPrices): copying them at each settle was most of its cost.
	from *priceEpoch
	// heldG are the guard's numbers of the held instruments' symbols, in
	// the order of held (compact: the bound's test reads only them).
	heldG []int32
}

// copyPrices copies the prices of the last settle's epoch into the
// screen, if not done yet. Called with e.mu held.
func (s *screen) copyPrices() {
	cur := s.from
	if cur == nil {
		return
	}
	s.from = nil
	for k, g := range s.gidx {
		q := cur.quotes[g]
		s.prices[k], s.at[k], s.has[k] = q.Price, q.At, cur.has[g]
	}
	if s.pendSum {
		s.pendSum = false
		s.pendTotal, s.pendBig = s.valueAt(cur)
	}
	for k := range s.held {
		h := &s.held[k]
		h.ref = cur.fx[s.gidx[h.sym]] // it fits: bounded checked fxOK (moves)
	}
}

// valueAt returns the household's value at the prices of epoch cur (free
// cash and each held instrument's quantity times its price), exactly: as
// a fixed.Num, or as a decimal when that does not fit (then big is set).
// Every held instrument has a price there that fits (the bound's test).
func (s *screen) valueAt(cur *priceEpoch) (total fixed.Num, big *decimal.Decimal) {
	if s.cash >= 0 {
		total = s.free
	}
	ok := true
	for k := range s.held {
		h := &s.held[k]
		v, okV := h.qty.Mul(cur.fx[s.gidx[h.sym]])
		var okA bool
		total, okA = total.Add(v)
		if ok = okV && okA; !ok {
			break
		}
	}
	if ok {
		return total, nil
	}
	sum := decimal.Zero
	if s.cash >= 0 {
		sum = s.free.V.Big(s.free.Exp)
	}
	for k := range s.held {
		h := &s.held[k]
		sum = sum.Add(h.qty.V.Big(h.qty.Exp).Mul(cur.quotes[s.gidx[h.sym]].Price))
	}
	return fixed.Num{}, &sum
}

// screenScratch is the working memory of a screen in progress, one per
// engine (screens run under its lock): kept per household it cost
// hundreds of bytes each.
type screenScratch struct {
	values []fixed.Num // each sleeve's value
}

// sized returns the scratch with room for sleeves sleeves, its values
// cleared.
func (w *screenScratch) sized(sleeves int) *screenScratch {
	if cap(w.values) < sleeves {
		w.values = make([]fixed.Num, sleeves)
	}
	w.values = w.values[:sleeves]
	clear(w.values)
	return w
}

// heldInstr is an instrument the household holds.
type heldInstr struct {
	sym    int // index in screen.syms
	sleeve int
	qty    fixed.Num // over all accounts
	// ref and saved are its prices in the accepted valuation and in the
	// last saved one (absent: zero).
	ref, saved fixed.Num
}

// maxMovePlaces bounds the places of a max_value_change the screen
// handles: the save check divides it by four exactly (decimal.Div keeps
// 16 places), and the ratio test scales it to 16 places.
const maxMovePlaces = 14

// buildScreen records, after a full evaluation that valued the household
// (snap, from the effective policy eff), what the screen needs; it leaves
// no screen when the household is outside what the screen models. Called
// with e.mu held.
func (e *Engine) buildScreen(rt *runtime, eff *policy.Policy, snap *drift.Snapshot) {
	rt.dropScreen()
	if e.noScreen || len(rt.waiting) > 0 || snap.Book.Policy != eff {
		return
	}
	mm, ok := fixed.Of(rt.pol.Limits.MaxValueChange)
	if !ok || mm.Exp < -maxMovePlaces || rt.value.saved == nil {
		return
	}
	b := snap.Book
	s := &screen{eff: eff, led: rt.ledger, rev: rt.ledger.Rev(), syms: rt.symbols, cash: eff.Cash, guard: rt.guard, gidx: rt.numbers(),
		phaseIn: rt.pol.PhaseIn != nil, maxMove: mm, valuation: rt.ledger.Valuation, saved: rt.value.saved,
		target: make([]fixed.Num, len(eff.Sleeves)), half: make([]fixed.Num, len(eff.Sleeves)),
		prices: make([]decimal.Decimal, len(rt.symbols)), at: make([]time.Time, len(rt.symbols)), has: make([]bool, len(rt.symbols))}
	symIndex := func(sym string) int {
		for k, s := range rt.symbols {
			if s == sym {
				return k
			}
		}
		return -1
	}
	for i := range eff.Instruments {
		in := &eff.Instruments[i]
		qty := decimal.Zero
		for a := range b.Qty {
			if !b.Qty[a][i].IsZero() {
				qty = qty.Add(b.Qty[a][i])
			}
		}
		targeted := eff.Sleeves[in.Sleeve].Target.Sign() > 0 && in.Share.Sign() > 0
		if qty.IsZero() {
			if targeted {
				s.need = append(s.need, in.Symbol)
			}
			continue
		}
		k := symIndex(in.Symbol)
		q, ok := fixed.Of(qty)
		if k < 0 || !ok {
			return
		}
		h := heldInstr{sym: k, sleeve: in.Sleeve, qty: q}
		if v := rt.ledger.Valuation; v != nil {
			if h.ref, ok = fixed.Of(v.Prices[in.Symbol]); !ok {
				return
			}
		}
		if h.saved, ok = fixed.Of(rt.value.saved.Prices[in.Symbol]); !ok {
			return
		}
		s.held = append(s.held, h)
	}
	if s.cash >= 0 {
		free := decimal.Zero
		for _, f := range snap.FreeCash {
			if !f.IsZero() {
				free = free.Add(f)
			}
		}
		if s.free, ok = fixed.Of(free); !ok {
			return
		}
	}
	for i := range eff.Sleeves {
		t, okT := fixed.Of(eff.Sleeves[i].Target)
		h, okH := fixed.Of(eff.Sleeves[i].HalfWidth)
		if !okT || !okH {
			return
		}
		s.target[i], s.half[i] = t, h
	}
	for k := range s.held {
		s.heldG = append(s.heldG, s.gidx[s.held[k].sym])
	}
	s.needIn = true
	for _, sym := range s.need {
		if !slices.Contains(s.syms, sym) {
			s.needIn = false
		}
	}
	rt.scr = s
}

// screenable reports whether nothing but prices can make the
// household's evaluation at now differ from its last one: the screen was
// built from the same effective policy, ledger and holdings, and no
// calendar firing, cash flow, cash phase, breach or held valuation is
// due. (A drift event due is sent from the settled evaluation's
// snapshot: see evaluate.) Called with e.mu held.
func (e *Engine) screenable(rt *runtime, eff *policy.Policy, now time.Time) bool {
	s := rt.scr
	if s == nil || s.eff != eff || s.led != rt.ledger || s.rev != rt.ledger.Rev() || s.guard != rt.guard ||
		rt.due != nil || len(rt.ledger.PendingFlows) > 0 || len(rt.ledger.CashPhases) > 0 || len(rt.breaching) > 0 ||
		s.saved != rt.value.saved || (!s.pending && s.valuation != rt.ledger.Valuation) {
		return false
	}
	_, held := rt.value.c.Held()
	return !held
}

// screened reports whether the breach screen settles the household's
// evaluation at now: no sleeve breaches its band, nothing else is due
// (calendar firing, cash flow, phase-in step, first investment), and the valuation check accepts the new investable total
// without a save. It then does what the full evaluation would have done
// (lastCheck, breaching, the accepted valuation) and returns true; it
// changes nothing and returns false when the full evaluation must run.
// Called with e.mu held, after the blocks of prices were found empty.
func (e *Engine) screened(rt *runtime, eff *policy.Policy, now time.Time) bool {
	if !e.screenable(rt, eff, now) {
		return false
	}
	s := rt.scr
	s.copyPrices() // the references of the valuation check
	for _, sym := range s.need {
		if _, ok := rt.guard.Quote(sym); !ok {
			return false // Bind would fail: a targeted instrument without a price
		}
	}
	cur := s.guard.current() // the guard's accepted quotes
	w := e.scratch.sized(len(eff.Sleeves))
	// The sleeves' values: each held instrument's quantity times its
	// price, free cash in the cash sleeve, parents the sum of their own
	// and their children's.
	var ok bool
	for k := range s.held {
		h := &s.held[k]
		g := s.gidx[h.sym]
		if !cur.has[g] || !cur.fxOK[g] {
			return false
		}
		v, okV := h.qty.Mul(cur.fx[g])
		if w.values[h.sleeve], ok = w.values[h.sleeve].Add(v); !okV || !ok {
			return false
		}
	}
	if s.cash >= 0 {
		if w.values[s.cash], ok = w.values[s.cash].Add(s.free); !ok {
			return false
		}
	}
	for i := len(eff.Sleeves) - 1; i >= 0; i-- { // children follow their parents
		for _, c := range eff.Sleeves[i].Children {
			if w.values[i], ok = w.values[i].Add(w.values[c]); !ok {
				return false
			}
		}
	}
	var total fixed.Num
	for i := range eff.Sleeves {
		if eff.Sleeves[i].Parent < 0 {
			if total, ok = total.Add(w.values[i]); !ok {
				return false
			}
		}
	}
	if !total.V.IsZero() {
		// A breach is |value - target*total| > half*total (drift.Describe).
		for i := range eff.Sleeves {
			tv, okT := s.target[i].Mul(total)
			hv, okH := s.half[i].Mul(total)
			d, okD := fixed.Diff(w.values[i], tv)
			c, okC := fixed.Cmp(d, hv)
			if !okT || !okH || !okD || !okC || c > 0 {
				return false
			}
		}
		if s.phaseIn && onlyCash(eff, w.values) {
			return false // a first investment may start (plan.FirstInvestment)
		}
	}
	// The valuation check (checkValuation): ref is the total at the
	// accepted valuation's prices, refSaved at the last saved one's.
	ref, refSaved := fixed.Num{}, fixed.Num{}
	if s.cash >= 0 {
		ref, refSaved = s.free, s.free
	}
	for k := range s.held {
		h := &s.held[k]
		r, okR := h.qty.Mul(h.ref)
		v, okV := h.qty.Mul(h.saved)
		var okA, okB bool
		ref, okA = ref.Add(r)
		refSaved, okB = refSaved.Add(v)
		if !okR || !okV || !okA || !okB {
			return false
		}
	}
	if rt.ledger.Valuation == nil && !s.pending {
		ref = total // no reference yet
	}
	if !valueAccepted(total, ref, s.maxMove) || valueMoved(total, refSaved, s.maxMove) {
		return false
	}
	e.settle(rt, cur, now)
	s.pendTotal, s.pendSum = total, false // summed above
	s.setBound(eff, cur, w.values, total, refSaved)
	return true
}

// settle does what the full evaluation does for a household that neither
// breaches nor plans, at the prices of epoch cur:
// the new valuation becomes the reference (written to the ledger when
// someone reads it), the valuation check starts again from it (its
// accepted ratio stays 1: the state after reset), and the drift snapshot
// is computed when asked for (snapshotOf). Called with e.mu held.
func (e *Engine) settle(rt *runtime, cur *priceEpoch, now time.Time) {
	s := rt.scr
	rt.lastCheck = now
	rt.breaching = nil
	rt.waiting = nil
	rt.snapshot, rt.snapStale = nil, true // computed when asked for: kept, it cost 3 KB a household
	s.pending, s.pendAt, s.pendSum, s.pendBig = true, now, true, nil
	s.from = cur // its prices, and the total there: copied and summed when read (copyPrices)
}

// setBound records, after a settle at the prices of epoch cur that did
// the arithmetic (values and total the sleeves' values and the total
// there, saved the total at the last saved valuation's prices), a bound
// d of relative price moves from cur within which the household settles
// again without the arithmetic (see bounded). With every held price p'
// within d*p of its price p in cur:
//
//   - each sleeve's value v and the total T move by at most d*v and d*T
//     (free cash does not move), so |v'-t*T'| <= |v-t*T| + d*(v+t*T) and
//     h*T' >= h*T - d*h*T: no sleeve breaches when
//     d <= (h*T - |v-t*T|) / (v + t*T + h*T);
//   - the valuation check compares the total with its value at the
//     prices of the previous settle, both within d*I of T (I = T - free
//     cash): accepted when 2*d*I <= m*(T - d*I), that is
//     d <= m*T / ((2+m)*I), m being max_value_change (valueAccepted);
//   - and nothing is saved while 4*|T'-S| <= m*S (valueMoved), which
//     |T'-S| <= |T-S| + d*I makes d <= (m*S - 4*|T-S|) / (4*I).
//
// d is the smallest of these, rounded down at boundPlaces places (exact
// integers, fixed.RatioFloor); no bound when a figure does not fit. A
// sleeve's values that are zero stay zero (prices are positive), so a
// first investment cannot start within the bound either.
func (s *screen) setBound(eff *policy.Policy, cur *priceEpoch, values []fixed.Num, total, saved fixed.Num) {
	s.anchor, s.bound = nil, 0
	if total.V.IsZero() || !s.needIn {
		return
	}
	d := ^uint64(0) - 1 // below the "unknown" move
	lower := func(num, den fixed.Num) bool {
		if den.V.IsZero() {
			return true // no constraint: nothing in it moves
		}
		q, ok := fixed.RatioFloor(num, den, boundPlaces)
		d = min(d, q)
		return ok
	}
	for i := range eff.Sleeves {
		tv, okT := s.target[i].Mul(total)
		hv, okH := s.half[i].Mul(total)
		dev, okD := fixed.Diff(values[i], tv)
		num, okN := fixed.Sub(hv, dev)
		den, okA := values[i].Add(tv)
		den, okB := den.Add(hv)
		if !okT || !okH || !okD || !okN || !okA || !okB || !lower(num, den) {
			return
		}
	}
	invested := total
	if s.cash >= 0 {
		var ok bool
		if invested, ok = fixed.Sub(total, s.free); !ok {
			return
		}
	}
	if !invested.V.IsZero() {
		if s.maxMove.V.IsZero() {
			d = 0 // valueMoved holds at any change of the total
		} else {
			m := s.maxMove
			mT, ok1 := m.Mul(total)
			mI, ok2 := m.Mul(invested)
			i2, ok3 := invested.Mul(fixed.Num{V: fixed.From(2)})
			den, ok4 := i2.Add(mI)
			mS, ok5 := m.Mul(saved)
			dev, ok6 := fixed.Diff(total, saved)
			dev4, ok7 := dev.Mul(fixed.Num{V: fixed.From(4)})
			num, ok8 := fixed.Sub(mS, dev4)
			i4, ok9 := invested.Mul(fixed.Num{V: fixed.From(4)})
			if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || !ok7 || !ok8 || !ok9 || !lower(mT, den) || !lower(num, i4) {
				return
			}
		}
	}
	s.anchor, s.bound = cur, d
}

// bounded settles the household's evaluation at now without arithmetic
// when nothing can block or plan it and every held price is within the
// bound of its screen (setBound): it does what evaluate does then (the
// screen's settle, the blocks found empty) and returns true. It changes
// nothing and returns false otherwise, and evaluate goes on. Called with
// e.mu held.
func (e *Engine) bounded(rt *runtime, now time.Time) bool {
	s := rt.scr
	if s == nil || s.anchor == nil || len(rt.blocked) > 0 || !e.natsUp || e.halt != nil || rt.unsaved || rt.rejected != nil ||
		len(rt.ledger.Unknown) > 0 || rt.ledger.Refused != "" || rt.invalid != "" || hasPending(rt.ledger) {
		return false // something evaluate blocks on, or an order that may expire
	}
	eff, ok := rt.effectiveToday(now)
	if !ok || !e.screenable(rt, eff, now) || !e.pricesUsable(rt, now) {
		return false
	}
	cur := s.guard.current()
	moves := cur.movesFrom(s.anchor)
	for _, g := range s.heldG {
		if moves[g] > s.bound { // also when a price is missing or does not fit
			return false
		}
	}
	e.settle(rt, cur, now)
	e.boundSettled++
	return true
}

// hasPending reports whether the ledger has an order not final yet.
func hasPending(l *ledger.Ledger) bool {
	for _, o := range l.Orders {
		if o.Status.Pending() {
			return true
		}
	}
	return false
}

// onlyCash reports whether nothing outside the cash sleeve has a value.
func onlyCash(p *policy.Policy, values []fixed.Num) bool {
	for i := range p.Sleeves {
		if i != p.Cash && p.Sleeves[i].Parent < 0 && !values[i].V.IsZero() {
			return false
		}
	}
	return true
}

// valueAccepted reports whether the valuation check accepts total against
// ref for certain: the ratio total/ref, rounded to ratioPlaces, is within
// maxMove of 1. With d = |total-ref| and m = maxMove, that holds when
// d/ref < m + 5e-17 (then any rounding to 16 places lands within m), that
// is 2*d*10^16 < (2*m*10^16 + 1)*ref. It answers false when unsure (a
// figure does not fit, or the ratio sits at a rounding tie), and the
// full evaluation decides.
func valueAccepted(total, ref, maxMove fixed.Num) bool {
	if ref.V.IsZero() || maxMove.V.IsZero() {
		return true // accepted without a ratio, or any move accepted
	}
	d, ok := fixed.Diff(total, ref)
	if !ok {
		return false
	}
	lhs, okL := d.V.Scale(ratioPlaces)
	if lhs, ok = lhs.Mul(2); !okL || !ok {
		return false
	}
	m, okM := maxMove.At(-ratioPlaces)
	if m, ok = m.Mul(2); !okM || !ok {
		return false
	}
	if m, ok = m.Add(fixed.From(1)); !ok {
		return false
	}
	// lhs is at d's exponent, m at -16: m*ref at ref's exponent - 16.
	rhs, ok := (fixed.Num{V: m, Exp: -ratioPlaces}).Mul(ref)
	if !ok {
		return false
	}
	c, ok := fixed.Cmp(fixed.Num{V: lhs, Exp: d.Exp - ratioPlaces}, rhs)
	return ok && c < 0
}

// valueMoved reports whether the total moved more than a quarter of
// maxMove from the value at the saved reference's prices (moved in
// valuation.go): |total-saved|*4 > maxMove*saved. It answers true when a
// figure does not fit, so that the full evaluation decides.
func valueMoved(total, saved, maxMove fixed.Num) bool {
	d, okD := fixed.Diff(total, saved)
	d4, ok4 := d.Mul(fixed.Num{V: fixed.From(4)})
	lim, okL := maxMove.Mul(saved)
	c, okC := fixed.Cmp(d4, lim)
	return !okD || !ok4 || !okL || !okC || c > 0
}

// settleValuation writes the valuation the screen accepted last to the
// ledger, for whoever reads or saves it. Called with e.mu held.
func (rt *runtime) settleValuation() {
	s := rt.scr
	if s == nil || !s.pending {
		return
	}
	s.copyPrices()
	prices := make(map[string]decimal.Decimal, len(s.syms))
	for k, sym := range s.syms {
		if s.has[k] {
			prices[sym] = s.prices[k]
		}
	}
	total := s.pendTotal.V.Big(s.pendTotal.Exp)
	if s.pendBig != nil {
		total = *s.pendBig
	}
	rt.ledger.Valuation = &ledger.Valuation{Total: total, At: s.pendAt, Prices: prices}
	s.valuation, s.pending = rt.ledger.Valuation, false
}

// dropScreen forgets the screen, once its valuation is in the ledger and
// its drift snapshot computed.
// Called with e.mu held.
func (rt *runtime) dropScreen() {
	rt.settleValuation()
	if rt.snapStale {
		rt.snapshot, rt.snapStale = rt.snapshotOf(), false // while the screen's prices are there
	}
	rt.scr = nil
}

// snapshotOf returns the household's drift at its last evaluation,
// computing it if that evaluation was screened (from the same effective
// policy, holdings and quotes; not kept, as a snapshot per household is
// memory). Nil when it has none. Called with e.mu held.
func (rt *runtime) snapshotOf() *drift.Snapshot {
	if !rt.snapStale || rt.scr == nil {
		return rt.snapshot
	}
	s := rt.scr
	s.copyPrices()
	q := &portfolio.Prices{File: "feeds", Quotes: make(map[string]portfolio.Quote, len(s.syms))}
	for k, sym := range s.syms {
		if s.has[k] {
			q.Quotes[sym] = portfolio.Quote{Price: s.prices[k], At: s.at[k]}
			if q.AsOf.IsZero() || s.at[k].Before(q.AsOf) {
				q.AsOf = s.at[k]
			}
		}
	}
	book, err := portfolio.Bind(s.eff, rt.ledger.Holdings(), q)
	if err != nil {
		return nil
	}
	return drift.Compute(plan.HoldBack(book, rt.waiting))
}
