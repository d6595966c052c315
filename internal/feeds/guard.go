package feeds

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// Verdict is what a Guard did with an offered quote.
type Verdict int

// The verdicts of Guard.Offer.
const (
	// Accepted: the quote is the symbol's price now.
	Accepted Verdict = iota + 1
	// Quarantined: the quote jumped more than maxMove from the accepted
	// price; it is held, not accepted, and the symbol is blocked until a
	// newer quote confirms or discards it.
	Quarantined
	// Confirmed: the quote is within maxMove of the quarantined one, so
	// the jump was real; the quote is accepted and the symbol unblocked.
	Confirmed
	// Discarded: the quote is back within maxMove of the accepted price,
	// so the quarantined one was a spike; the spike is dropped and the
	// quote accepted.
	Discarded
	// Ignored: the quote is not newer than the latest one seen for its
	// symbol (accepted or quarantined); nothing changed.
	Ignored
	// Rejected: the quote is unusable (a bad symbol, no time, a price that
	// is not positive or out of range); nothing changed.
	Rejected
)

var verdictNames = [...]string{"", "accepted", "quarantined", "confirmed", "discarded", "ignored", "rejected"}

// String returns the verdict's name.
func (v Verdict) String() string {
	if v > 0 && int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Reason says why a symbol may not be planned on.
type Reason string

// The reasons of a Problem.
const (
	// ReasonMissing: no quote was ever accepted for the symbol.
	ReasonMissing Reason = "missing"
	// ReasonStale: the accepted quote is older than maxAge.
	ReasonStale Reason = "stale"
	// ReasonQuarantined: a jump is waiting for confirmation.
	ReasonQuarantined Reason = "quarantined"
	// ReasonFuture: the accepted quote's time is more than MaxClockSkew
	// ahead of now; the quote's clock (or the local one) is wrong.
	ReasonFuture Reason = "future"
)

// Problem is a symbol that may not be planned on, and why.
type Problem struct {
	Symbol string
	Reason Reason
	// Detail explains the problem for logs and the status endpoint.
	Detail string
}

// String formats the problem as "symbol: reason: detail".
func (p Problem) String() string { return p.Symbol + ": " + string(p.Reason) + ": " + p.Detail }

// Guard is the fail-closed check of one policy's prices. It keeps each
// symbol's last accepted quote, holds back quotes that jump more than
// maxMove until a newer quote confirms or refutes them, and reports the
// symbols whose price is missing, stale or held back.
//
// The jump of a quote p from the accepted price last is |p-last|/last,
// tested exactly as |p-last| > maxMove*last. When a quote jumps, it is
// quarantined; the next newer quote resolves the quarantine:
//
//   - within maxMove of the quarantined price: the jump is confirmed and the
//     new quote accepted;
//   - else within maxMove of the accepted price: the quarantined quote was a
//     spike, it is discarded and the new quote accepted;
//   - else the new quote replaces the quarantined one, still quarantined.
//
// A Guard has no clock: Offer orders quotes by their own times and Check
// takes the time to judge staleness at. It is not safe for concurrent use;
// the engine owns one per policy.
type Guard struct {
	maxAge  time.Duration
	maxMove decimal.Decimal
	symbols map[string]*guardSymbol
}

// guardSymbol is a Guard's state for one symbol.
type guardSymbol struct {
	accepted Quote
	pending  *Quote // the quarantined quote, if any
}

// NewGuard returns a Guard that reports an accepted quote older than
// maxAge as stale and quarantines jumps larger than maxMove (a fraction:
// 0.10 is 10%). A zero maxMove disables the jump check. maxAge must be
// positive: with zero (or less) every quote older than the time Check is
// given is stale, which fails closed. A negative maxMove quarantines every
// quote after the first, which also fails closed; callers validate both.
func NewGuard(maxAge time.Duration, maxMove decimal.Decimal) *Guard {
	return &Guard{maxAge: maxAge, maxMove: maxMove, symbols: map[string]*guardSymbol{}}
}

// Offer gives the Guard a quote and returns what it did with it.
func (g *Guard) Offer(q Quote) Verdict {
	if checkSymbol(q.Symbol) != nil || q.At.IsZero() || checkPrice(q.Price) != nil {
		return Rejected
	}
	s, ok := g.symbols[q.Symbol]
	if !ok {
		g.symbols[q.Symbol] = &guardSymbol{accepted: q}
		return Accepted
	}
	latest := s.accepted.At
	if s.pending != nil {
		latest = s.pending.At
	}
	if !q.At.After(latest) {
		return Ignored
	}
	switch {
	case s.pending == nil && g.within(q.Price, s.accepted.Price):
		s.accepted = q
		return Accepted
	case s.pending == nil:
		s.pending = &q
		return Quarantined
	case g.within(q.Price, s.pending.Price):
		s.accepted, s.pending = q, nil
		return Confirmed
	case g.within(q.Price, s.accepted.Price):
		s.accepted, s.pending = q, nil
		return Discarded
	default:
		s.pending = &q
		return Quarantined
	}
}

// within reports whether p is within maxMove of ref (a positive price):
// |p-ref| <= maxMove*ref. A zero maxMove accepts any move.
func (g *Guard) within(p, ref decimal.Decimal) bool {
	if g.maxMove.IsZero() {
		return true
	}
	return p.Sub(ref).Abs().Cmp(g.maxMove.Mul(ref)) <= 0
}

// Check returns the problems of symbols at time now, at most one per
// symbol, sorted by symbol: missing, quarantined, stale or from the
// future. No problem means the prices of symbols may be planned on.
func (g *Guard) Check(symbols []string, now time.Time) []Problem {
	var out []Problem
	for _, sym := range symbols {
		s, ok := g.symbols[sym]
		switch {
		case !ok:
			out = append(out, Problem{Symbol: sym, Reason: ReasonMissing, Detail: "no price received"})
		case s.pending != nil:
			out = append(out, Problem{Symbol: sym, Reason: ReasonQuarantined, Detail: fmt.Sprintf(
				"price %s at %s moved %s%% from the accepted %s at %s, more than %s%%; waiting for a newer quote to confirm or discard it",
				s.pending.Price, s.pending.At.Format(time.RFC3339), movePercent(s.pending.Price, s.accepted.Price),
				s.accepted.Price, s.accepted.At.Format(time.RFC3339), g.maxMove.Shift(2))})
		case now.Sub(s.accepted.At) > g.maxAge:
			out = append(out, Problem{Symbol: sym, Reason: ReasonStale, Detail: fmt.Sprintf(
				"last price %s is from %s, %s old, more than the %s allowed",
				s.accepted.Price, s.accepted.At.Format(time.RFC3339), now.Sub(s.accepted.At).Round(time.Second), g.maxAge)})
		case s.accepted.At.Sub(now) > MaxClockSkew:
			out = append(out, Problem{Symbol: sym, Reason: ReasonFuture, Detail: fmt.Sprintf(
				"last price %s is dated %s, %s ahead of the clock",
				s.accepted.Price, s.accepted.At.Format(time.RFC3339), s.accepted.At.Sub(now).Round(time.Second))})
		}
	}
	slices.SortFunc(out, func(a, b Problem) int { return strings.Compare(a.Symbol, b.Symbol) })
	return slices.CompactFunc(out, func(a, b Problem) bool { return a.Symbol == b.Symbol })
}

// movePercent returns |p-ref|/ref in percent, to two places, for messages.
func movePercent(p, ref decimal.Decimal) string {
	return p.Sub(ref).Abs().Shift(2).DivRound(ref, 2).String()
}

// Quote returns the symbol's last accepted quote.
func (g *Guard) Quote(symbol string) (Quote, bool) {
	s, ok := g.symbols[symbol]
	if !ok {
		return Quote{}, false
	}
	return s.accepted, true
}

// Pending returns the symbol's quarantined quote, if any.
func (g *Guard) Pending(symbol string) (Quote, bool) {
	s, ok := g.symbols[symbol]
	if !ok || s.pending == nil {
		return Quote{}, false
	}
	return *s.pending, true
}
