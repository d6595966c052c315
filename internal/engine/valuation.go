package engine

import (
	"fmt"
	"time"

	"github.com/shopspring/decimal"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/feeds"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/metrics"
	"github.com/rebalancerd/rebalancerd/internal/policy"
)

// The valuation check. Each evaluation compares the policy's investable
// total with the value of the same holdings at the prices of the last
// accepted valuation (its reference). Deposits, withdrawals, fills and
// snapshots change both alike; only prices move one away from the other.
// Their ratio is offered to a feeds.Confirmer whose accepted value is 1
// and whose largest move is limits.max_value_change: a larger move holds
// planning (block value_change) until ratios that agree with it persist
// for prices.confirm_after; a ratio back within the limit drops it. Each
// accepted ratio makes the prices of that evaluation the new reference.
// The reference is kept in the ledger, so that a restart (which forgets
// every price) does not forget it.

// valueSymbol names a policy's valuation ratios in its Confirmer.
const valueSymbol = "investable_total"

// ratioPlaces is the rounding of a valuation ratio (half away from zero):
// far finer than any max_value_change.
const ratioPlaces = 16

// valueCheck is a policy's valuation check.
type valueCheck struct {
	c *feeds.Confirmer
	// total and ref are the last evaluation's investable total and the
	// value of its holdings at the reference prices.
	total, ref decimal.Decimal
	// saved is the reference the check last saved.
	saved *ledger.Valuation
}

// newValueCheck returns the valuation check of p, its reference the
// ledger's accepted valuation if it has one.
func newValueCheck(p *policy.Policy, l *ledger.Ledger, now time.Time) *valueCheck {
	v := &valueCheck{saved: l.Valuation}
	v.reset(p, now)
	return v
}

// reset starts a Confirmer with the reference as its accepted value.
func (v *valueCheck) reset(p *policy.Policy, at time.Time) {
	v.c = feeds.NewConfirmer(p.Limits.MaxValueChange, p.Prices.ConfirmAfter)
	v.c.Offer(feeds.Quote{Symbol: valueSymbol, Price: decimal.NewFromInt(1), At: at}, at)
}

// sameValueRules reports whether a and b check valuations alike.
func sameValueRules(a, b *policy.Policy) bool {
	return a != nil && a.Limits.MaxValueChange.Equal(b.Limits.MaxValueChange) && a.Prices.ConfirmAfter == b.Prices.ConfirmAfter
}

// atPrices returns total with every position of the ledger revalued from
// the guard's accepted price to its price in ref. A position whose
// instrument has no price in ref (one added since the reference, by a
// reload and a positions snapshot) counts for nothing there: its whole
// value is a move, so a first quote that values it absurdly is held like
// any other jump instead of becoming the reference unchecked. Positions
// without an accepted price keep their value. Called with e.mu held.
func (rt *runtime) atPrices(total decimal.Decimal, ref map[string]decimal.Decimal) decimal.Decimal {
	for _, a := range rt.ledger.Accounts {
		for sym, q := range a.Positions {
			if q.IsZero() {
				continue
			}
			p, ok := rt.guard.Quote(sym)
			if !ok {
				continue
			}
			p0 := ref[sym] // none: valued at zero in the reference
			total = total.Sub(q.Mul(p.Price.Sub(p0)))
		}
	}
	return total
}

// checkValuation checks the investable total of this evaluation (see
// above), records an accepted valuation in the ledger, and sets
// rt.limitBase: the value a plan made now has its risk limits judged
// against (the holdings at the reference prices, or the total when
// smaller; the total itself when this evaluation confirms a held move).
// Called with e.mu held.
func (e *Engine) checkValuation(rt *runtime, total decimal.Decimal, now time.Time) {
	v, name := rt.value, rt.pol.Name
	ref := total
	if l := rt.ledger.Valuation; l != nil {
		ref = rt.atPrices(total, l.Prices)
	}
	v.total, v.ref = total, ref
	verdict := feeds.Accepted
	if ref.Sign() > 0 {
		verdict = v.c.Offer(feeds.Quote{Symbol: valueSymbol, Price: total.DivRound(ref, ratioPlaces), At: now}, now)
	}
	rt.limitBase = decimal.Min(total, ref)
	if verdict == feeds.Confirmed || ref.Sign() <= 0 {
		rt.limitBase = total
	}
	switch verdict {
	case feeds.Quarantined:
		e.log.Warn("valuation held: the investable total moved more than limits.max_value_change", zap.String("policy", name),
			zap.String("total", total.String()), zap.String("at_accepted_prices", ref.String()),
			zap.Duration("confirm_after", rt.pol.Prices.ConfirmAfter))
		return
	case feeds.Agreeing:
		return
	case feeds.Discarded:
		e.log.Info("held valuation dropped: the total is back within limits.max_value_change", zap.String("policy", name),
			zap.String("total", total.String()))
	case feeds.Confirmed:
		e.log.Warn("valuation confirmed: it persisted for prices.confirm_after; its prices are the reference now",
			zap.String("policy", name), zap.String("total", total.String()), zap.String("at_previous_prices", ref.String()))
	}
	prices := make(map[string]decimal.Decimal, len(rt.symbols))
	for _, sym := range rt.symbols {
		if q, ok := rt.guard.Quote(sym); ok {
			prices[sym] = q.Price
		}
	}
	rt.ledger.Valuation = &ledger.Valuation{Total: total, At: now, Prices: prices}
	v.reset(rt.pol, now) // the next ratio is measured from these prices
	// Saved when prices moved the total by a quarter of the limit since
	// this check last saved the reference (and at the first valuation),
	// not at every evaluation: a restart then measures moves from prices
	// close to the last accepted ones. (Other saves of the ledger carry
	// it too.)
	if s := v.saved; s == nil || moved(total, rt.atPrices(total, s.Prices), rt.pol.Limits.MaxValueChange.Div(decimal.NewFromInt(4))) {
		if e.save(rt, false) == nil {
			v.saved = rt.ledger.Valuation
		}
	}
}

// moved reports whether total is more than limit (a fraction) away from
// ref: |total-ref| > limit*|ref|.
func moved(total, ref, limit decimal.Decimal) bool {
	return total.Sub(ref).Abs().GreaterThan(limit.Mul(ref.Abs()))
}

// valueBlock returns the block of a held valuation, if any. Called with
// e.mu held.
func (rt *runtime) valueBlock() (Block, bool) {
	v := rt.value
	h, held := v.c.Held()
	if !held {
		return Block{}, false
	}
	limit := rt.pol.Limits.MaxValueChange.Shift(2)
	at := ""
	if l := rt.ledger.Valuation; l != nil {
		at = " of " + l.At.UTC().Format(time.RFC3339)
	}
	return Block{metrics.BlockValueChange, fmt.Sprintf(
		"investable total %s moved %s%% from %s, its value at the last accepted prices%s, more than limits.max_value_change %s%%; "+
			"held until valuations agreeing within %s%% persist for %s (not before %s)",
		v.total.StringFixed(2), feeds.MovePercent(v.total, v.ref), v.ref.StringFixed(2), at, limit, limit,
		rt.pol.Prices.ConfirmAfter, h.ConfirmableAt.UTC().Format(time.RFC3339))}, true
}

// valueConfirmable reports whether a held valuation may be confirmed by
// an evaluation at now. Called with e.mu held.
func (rt *runtime) valueConfirmable(now time.Time) bool {
	h, held := rt.value.c.Held()
	return held && !now.Before(h.ConfirmableAt)
}
