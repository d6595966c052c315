// Quotes: which households a batch of prices touches, the drift queue
// that coalesces them, and the aggregates exported after each tick.

package engine

import (
	"slices"
	"sort"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/feeds"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/metrics"
	"github.com/rebalancerd/rebalancerd/internal/policy"
)

// neededSymbols lists the instruments whose prices the policy needs: those
// held and those in a sleeve with a target above zero.
func neededSymbols(p *policy.Policy, l *ledger.Ledger) []string {
	need := map[string]bool{}
	for _, in := range p.Instruments {
		if p.Sleeves[in.Sleeve].Target.Sign() > 0 {
			need[in.Symbol] = true
		}
	}
	for _, a := range l.Accounts {
		for sym, q := range a.Positions {
			if !q.IsZero() {
				need[sym] = true
			}
		}
	}
	out := make([]string, 0, len(need))
	for s := range need {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Quotes offers quotes to every policy and evaluates the policies whose
// check is due. Feeds call it from their goroutines.
//
// A plan the quotes cause is published by the calling goroutine when the
// publisher is idle (see Options.InlinePublishTimeout): Quotes then
// returns once JetStream has acknowledged it, or once it has handed it to
// the publisher.
func (e *Engine) Quotes(qs []feeds.Quote) {
	start := time.Now() // a duration for the histogram, not a clock reading the logic uses
	e.mu.Lock()
	queued := len(e.outbox) // offer only appends to it
	e.holdWake = e.opts.InlinePublishTimeout > 0
	e.offer(qs)
	if m := e.opts.Metrics; m != nil {
		m.BatchEvaluationSeconds.Observe(time.Since(start).Seconds())
	}
	e.holdWake = false
	var job *pubJob
	if len(e.outbox) > queued {
		job = e.claim(true)
		if job == nil {
			e.wakeLocked() // enqueue did not
		}
	}
	e.mu.Unlock()
	if job != nil {
		e.publishInline(job)
	}
	e.flushDrift() // after the unlock: publishing must not hold the engine
}

// setSymbols recomputes the instruments whose prices a policy needs, and
// has the index of policies by instrument rebuilt. Called with e.mu held.
func (e *Engine) setSymbols(rt *runtime) {
	syms := neededSymbols(rt.pol, rt.ledger)
	if !slices.Equal(syms, rt.symbols) {
		e.bySymbol = nil
		rt.dropScreen() // built for the old list
		if rt.guard != nil {
			rt.guard.setNeed(rt.symbols, syms)
		}
		rt.gidxOK = false
	}
	rt.symbols = syms
}

// affected returns the policies that need a price of qs, in name order,
// from an index of policies by instrument (built when missing): a quote
// reaches only the households that hold or target its instrument. Called
// with e.mu held.
func (e *Engine) affected(qs []feeds.Quote) []*runtime {
	if e.bySymbol == nil {
		e.bySymbol = map[string][]int{}
		for i, name := range e.names {
			for _, sym := range e.policies[name].symbols {
				e.bySymbol[sym] = append(e.bySymbol[sym], i)
			}
		}
	}
	if len(e.mark) != len(e.rts) {
		e.mark = make([]bool, len(e.rts)) // all false between calls
	}
	idx := e.affectedIdx[:0]
	for _, q := range qs {
		for _, i := range e.bySymbol[q.Symbol] {
			if !e.mark[i] {
				e.mark[i] = true
				idx = append(idx, i)
			}
		}
	}
	out := e.affectedBuf[:0]
	if len(idx) > len(e.rts)/16 { // many: in name order by a walk
		for i, rt := range e.rts {
			if e.mark[i] {
				out = append(out, rt)
			}
		}
	} else { // few (a quote of a rare instrument): by sorting them
		slices.Sort(idx)
		for _, i := range idx {
			out = append(out, e.rts[i])
		}
	}
	for _, i := range idx {
		e.mark[i] = false
	}
	e.affectedIdx = idx[:0]
	e.affectedBuf = out[:0:cap(out)] // reused by the next batch (no call nests)
	return out
}

// offer gives quotes to the guards of the policies that need them and
// evaluates those due. Called with e.mu held.
func (e *Engine) offer(qs []feeds.Quote) {
	now := e.clk.Now()
	e.offerGuards(qs, now)
	for _, rt := range e.affected(qs) {
		changed := false
		if rt.corr == nil {
			changed = rt.pricesChanged()
		} else { // quote by quote: the correlation watch records those accepted
			for k, q := range qs {
				v := rt.guard.verdicts[k]
				if v == 0 {
					continue // not offered: no household of the guard needs it
				}
				if _, ok := slices.BinarySearch(rt.symbols, q.Symbol); !ok {
					continue
				}
				switch v {
				case feeds.Accepted:
					rt.recordQuote(q)
					changed = true
				case feeds.Ignored, feeds.Agreeing:
				default:
					changed = true
				}
			}
		}
		if changed {
			rt.dirty = true
			rt.quietUntil = time.Time{} // the tick looks at the new prices
			if rt.due != nil || !now.Before(rt.lastCheck.Add(rt.pol.Rebalance.CheckEvery)) {
				e.evaluate(rt, now)
			} else {
				e.schedule(rt)
			}
		}
	}
}

// tick evaluates the policies whose check is due and whose prices changed
// since their last evaluation; for the others it only refreshes what
// blocks them (a price going stale), so that a quote arriving later is
// evaluated at once. It looks only at the households whose state asks
// for it (attending): the others would be skipped as quiet.
func (e *Engine) tick() {
	defer e.flushDrift()  // after the unlock: publishing must not hold the engine
	defer e.flushAlerts() // likewise
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clk.Now()
	e.lastTick = now
	due := e.attending(now)
	for _, rt := range due {
		switch {
		case rt.dirty && !now.Before(rt.lastCheck.Add(rt.pol.Rebalance.CheckEvery)):
			e.evaluate(rt, now)
		case rt.due != nil:
			e.evaluate(rt, now)
		case now.Before(rt.quietUntil):
			// Nothing can have changed (a walk over 100,000 households'
			// prices at every tick held the engine for tens of ms).
		default:
			e.refreshBlocks(rt, now)
		}
	}
	for _, rt := range due {
		e.schedule(rt)
	}
	e.watchCorrelations(now)
	e.exportAggregates()
}

// exportAggregates sets the metrics that count households: breaching, and
// blocked by reason, from the counts recount keeps. Called with e.mu held,
// once a tick.
func (e *Engine) exportAggregates() {
	m := e.opts.Metrics
	if m == nil {
		return
	}
	m.HouseholdsBreaching.Set(float64(e.counts.breaching))
	for _, r := range metrics.BlockReasons {
		m.HouseholdsBlocked.WithLabelValues(r).Set(float64(e.counts.blocked[r]))
	}
}

// counts are the aggregates over households, kept as households change
// (a walk over 100,000 households under the lock at every tick cost more
// than the tick's evaluations).
type counts struct {
	breaching int
	blocked   map[string]int // households blocked, by reason
}

// counted is what a household adds to the counts.
type counted struct {
	breaching bool
	reasons   []string // distinct, in the order of its blocks
}

// recount updates the counts after the household's breaches or blocks may
// have changed. Called with e.mu held.
func (e *Engine) recount(rt *runtime) {
	now := counted{breaching: len(rt.breaching) > 0}
	same := now.breaching == rt.counted.breaching
	k := 0
	for i, b := range rt.blocked {
		if hasReason(rt.blocked[:i], b.Reason) { // a household once per reason
			continue
		}
		if k >= len(rt.counted.reasons) || rt.counted.reasons[k] != b.Reason {
			same = false
		}
		k++
	}
	if same && k == len(rt.counted.reasons) {
		return
	}
	for i, b := range rt.blocked {
		if !hasReason(rt.blocked[:i], b.Reason) {
			now.reasons = append(now.reasons, b.Reason)
		}
	}
	e.uncount(rt)
	rt.counted = now
	if now.breaching {
		e.counts.breaching++
	}
	if e.counts.blocked == nil {
		e.counts.blocked = map[string]int{}
	}
	for _, r := range now.reasons {
		e.counts.blocked[r]++
	}
}

// uncount takes the household out of the counts (it is removed, or about
// to be counted anew). Called with e.mu held.
func (e *Engine) uncount(rt *runtime) {
	if rt.counted.breaching {
		e.counts.breaching--
	}
	for _, r := range rt.counted.reasons {
		e.counts.blocked[r]--
	}
	rt.counted = counted{}
}
