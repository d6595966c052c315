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

// A policy's valuation is checked like a price: each evaluation offers
// its investable total to a feeds.Confirmer with limits.max_value_change
// as its largest move. A total that moved more than that from the last
// accepted valuation is held (block value_change) until valuations that
// agree with it persist for prices.confirm_after; one back within the
// limit of the accepted valuation drops it. The accepted valuation is kept
// in the ledger, so that a restart (which forgets every price) does not
// forget it.

// valueSymbol names a policy's valuations in its Confirmer.
const valueSymbol = "investable_total"

// newValueConfirmer returns the valuation check of p, primed with the
// ledger's accepted valuation if it has one.
func newValueConfirmer(p *policy.Policy, l *ledger.Ledger, now time.Time) *feeds.Confirmer {
	c := feeds.NewConfirmer(p.Limits.MaxValueChange, p.Prices.ConfirmAfter)
	if v := l.Valuation; v != nil {
		c.Offer(feeds.Quote{Symbol: valueSymbol, Price: v.Total, At: v.At}, now)
	}
	return c
}

// sameValueRules reports whether a and b check valuations alike.
func sameValueRules(a, b *policy.Policy) bool {
	return a != nil && a.Limits.MaxValueChange.Equal(b.Limits.MaxValueChange) && a.Prices.ConfirmAfter == b.Prices.ConfirmAfter
}

// samePriceRules reports whether a and b check prices alike (the
// decimals compared by value, not by their pointers).
func samePriceRules(a, b policy.PriceRules) bool {
	return a.MaxAge == b.MaxAge && a.MaxMove.Equal(b.MaxMove) && a.ConfirmAfter == b.ConfirmAfter
}

// checkValuation offers the investable total of this evaluation to the
// policy's valuation check, records an accepted one in the ledger, and
// sets rt.limitBase: the valuation the risk limits of a plan made now are
// judged against (the valuation accepted before this one, or the total
// when smaller; the total itself when this evaluation confirms a held
// move). Called with e.mu held.
func (e *Engine) checkValuation(rt *runtime, total decimal.Decimal, now time.Time) {
	prev, hadPrev := rt.value.Accepted()
	v := rt.value.Offer(feeds.Quote{Symbol: valueSymbol, Price: total, At: now}, now)
	rt.limitBase = total
	if v != feeds.Confirmed && hadPrev && prev.Price.Sign() > 0 && prev.Price.LessThan(total) {
		rt.limitBase = prev.Price
	}
	name := rt.pol.Name
	switch v {
	case feeds.Accepted, feeds.Discarded, feeds.Confirmed:
		rt.ledger.Valuation = &ledger.Valuation{Total: total, At: now}
		// Saved when it moved by a quarter of the limit since this
		// check last saved it (and at the first valuation), not at every
		// evaluation: a restart then measures moves from a valuation
		// close to the last one accepted. (Other saves of the ledger
		// carry it too.)
		saved := rt.valueSaved
		if saved.Sign() <= 0 || total.Sub(saved).Abs().GreaterThan(rt.pol.Limits.MaxValueChange.Mul(saved).Div(decimal.NewFromInt(4))) {
			if e.save(rt, false) == nil {
				rt.valueSaved = total
			}
		}
	}
	switch v {
	case feeds.Quarantined:
		e.log.Warn("valuation held: the investable total moved more than limits.max_value_change", zap.String("policy", name),
			zap.String("total", total.String()), zap.String("accepted_total", prev.Price.String()),
			zap.Time("accepted_at", prev.At), zap.Duration("confirm_after", rt.pol.Prices.ConfirmAfter))
	case feeds.Discarded:
		e.log.Info("held valuation dropped: the total is back within limits.max_value_change", zap.String("policy", name),
			zap.String("total", total.String()))
	case feeds.Confirmed:
		e.log.Warn("valuation confirmed: it persisted for prices.confirm_after and is the accepted valuation now",
			zap.String("policy", name), zap.String("total", total.String()), zap.String("previous_total", prev.Price.String()))
	}
}

// valueBlock returns the block of a held valuation, if any. Called with
// e.mu held.
func (rt *runtime) valueBlock() (Block, bool) {
	h, held := rt.value.Held()
	if !held {
		return Block{}, false
	}
	acc, _ := rt.value.Accepted()
	limit := rt.pol.Limits.MaxValueChange.Shift(2)
	return Block{metrics.BlockValueChange, fmt.Sprintf(
		"investable total %s moved %s%% from the last accepted valuation %s at %s, more than limits.max_value_change %s%%; "+
			"held until valuations agreeing within %s%% persist for %s (not before %s)",
		h.Last.Price.StringFixed(2), feeds.MovePercent(h.Last.Price, acc.Price), acc.Price.StringFixed(2),
		acc.At.UTC().Format(time.RFC3339), limit, limit, rt.pol.Prices.ConfirmAfter, h.ConfirmableAt.UTC().Format(time.RFC3339))}, true
}

// valueConfirmable reports whether a held valuation may be confirmed by
// an evaluation at now. Called with e.mu held.
func (rt *runtime) valueConfirmable(now time.Time) bool {
	h, held := rt.value.Held()
	return held && !now.Before(h.ConfirmableAt)
}
