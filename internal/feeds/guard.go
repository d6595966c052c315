package feeds

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/fixed"
)

// Verdict is what a Guard (or a Confirmer) did with an offered quote.
type Verdict int

// The verdicts of Guard.Offer and Confirmer.Offer.
const (
	// Accepted: the quote is the symbol's price now.
	Accepted Verdict = iota + 1
	// Quarantined: the quote moved more than maxMove from the accepted
	// price and does not agree with a move already held; it is held, not
	// accepted, and the symbol is blocked until the move is confirmed or
	// discarded. The time to confirm it starts again with this quote.
	Quarantined
	// Confirmed: the quote agrees with the held move, which either has
	// persisted for confirmAfter or is now reported by a second feed; the
	// quote is accepted and the symbol unblocked.
	Confirmed
	// Discarded: the quote is back within maxMove of the accepted price,
	// so the held move was a spike; it is dropped and the quote accepted.
	Discarded
	// Ignored: the quote is not newer than the latest one seen for its
	// symbol (accepted or held); nothing changed.
	Ignored
	// Rejected: the quote is unusable (a bad symbol, no time, a price that
	// is not positive or out of range); nothing changed.
	Rejected
	// Agreeing: the quote agrees with the held move, which is not
	// confirmed yet (younger than confirmAfter, and from one feed); it
	// joins the held quotes and the symbol stays blocked.
	Agreeing
)

var verdictNames = [...]string{"", "accepted", "quarantined", "confirmed", "discarded", "ignored", "rejected", "agreeing"}

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
	// ReasonQuarantined: a move larger than maxMove is not confirmed yet.
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

// Confirmer decides when one series of values may be believed: the quotes
// of one symbol (a Guard keeps one per symbol), or the valuations of a
// policy. It keeps the last accepted value and holds back a value that
// moved more than maxMove from it until the move is confirmed.
//
// The move of a value p from the accepted ref is tested exactly as
// |p-ref| > maxMove*ref. A move is confirmed, and its latest value
// accepted, by either:
//
//   - persistence: every value offered since the first held one agrees
//     with the others (the largest is within maxMove of the smallest:
//     hi-lo <= maxMove*lo), and a value arrives at least confirmAfter
//     after the first held one, by the local clock (now) and by the
//     values' own times alike;
//   - a second feed: an agreeing quote whose Source is not empty and
//     differs from the Source of a held one.
//
// A value back within maxMove of the accepted one discards the held move
// (a spike); a value that agrees with neither starts a new held move, and
// its time to confirm starts again. Until the move is confirmed the
// accepted value stays in force.
//
// Offer does not check the order of values: the caller offers them
// oldest first (a Guard ignores quotes not newer than the latest seen).
// The zero Confirmer is not usable; create one with NewConfirmer. It is not
// safe for concurrent use.
type Confirmer struct {
	maxMove      decimal.Decimal
	confirmAfter time.Duration
	// accepted is the last accepted value (valid when hasAccepted), kept
	// by value: a pointer made each offer an allocation, and a Guard is
	// offered every quote of every household.
	accepted    Quote
	hasAccepted bool
	held        *heldMove
}

// heldMove is a run of agreeing values waiting for confirmation.
type heldMove struct {
	first, last Quote
	lo, hi      decimal.Decimal
	since       time.Time // when the first was offered, by the local clock
	sources     []string  // the non-empty sources of the held values
}

// NewConfirmer returns a Confirmer that holds moves larger than maxMove (a
// fraction: 0.10 is 10%) for confirmAfter. A zero maxMove accepts every
// value; a negative one holds every value after the first, and a zero (or
// negative) confirmAfter confirms a move at its second agreeing value:
// callers validate both.
func NewConfirmer(maxMove decimal.Decimal, confirmAfter time.Duration) *Confirmer {
	return &Confirmer{maxMove: maxMove, confirmAfter: confirmAfter}
}

// Offer gives the Confirmer the value q.Price, dated q.At and received at
// now, and returns what it did with it: Accepted, Quarantined, Agreeing,
// Confirmed or Discarded.
func (c *Confirmer) Offer(q Quote, now time.Time) Verdict {
	switch {
	case !c.hasAccepted:
		c.accepted, c.hasAccepted = q, true
		return Accepted
	case c.within(q.Price, c.accepted.Price):
		v := Accepted
		if c.held != nil {
			v = Discarded
		}
		c.accepted, c.held = q, nil
		return v
	case c.held == nil || !c.agrees(q.Price):
		c.held = &heldMove{first: q, last: q, lo: q.Price, hi: q.Price, since: now}
		c.held.addSource(q.Source)
		return Quarantined
	case c.held.otherSource(q.Source) ||
		now.Sub(c.held.since) >= c.confirmAfter && q.At.Sub(c.held.first.At) >= c.confirmAfter:
		c.accepted, c.held = q, nil
		return Confirmed
	default:
		h := c.held
		h.last, h.lo, h.hi = q, decimal.Min(h.lo, q.Price), decimal.Max(h.hi, q.Price)
		h.addSource(q.Source)
		return Agreeing
	}
}

// within reports whether p is within maxMove of ref: |p-ref| <=
// maxMove*ref. A zero maxMove accepts any move.
func (c *Confirmer) within(p, ref decimal.Decimal) bool {
	if c.maxMove.IsZero() {
		return true
	}
	if in, ok := withinFixed(p, ref, c.maxMove); ok {
		return in
	}
	return p.Sub(ref).Abs().Cmp(c.maxMove.Mul(ref)) <= 0
}

// withinFixed is within in exact integer arithmetic, without the
// allocations of decimals; ok is false when a figure does not fit (then
// the caller asks decimals).
func withinFixed(p, ref, maxMove decimal.Decimal) (in, ok bool) {
	pc, pe, okP := fixed.Coef(p)
	rc, re, okR := fixed.Coef(ref)
	mc, me, okM := fixed.Coef(maxMove)
	if !okP || !okR || !okM {
		return false, false
	}
	if scale, ok := fixed.Pow10(-me); ok && pe == re {
		// The common case, two prices of one feed: |p-ref|*10^-me <=
		// mc*ref, all at the prices' exponent.
		d := pc - rc
		if rc > pc {
			d = rc - pc
		}
		return !fixed.Less64(mc, rc, d, scale), true
	}
	np, okP := fixed.Of(p)
	nr, okR := fixed.Of(ref)
	nm, okM := fixed.Of(maxMove)
	if !okP || !okR || !okM {
		return false, false
	}
	d, okD := fixed.Diff(np, nr)
	lim, okL := nm.Mul(nr)
	if !okD || !okL {
		return false, false
	}
	c, ok := fixed.Cmp(d, lim)
	return c <= 0, ok
}

// agrees reports whether p agrees with every held value: with p among
// them, the largest is within maxMove of the smallest.
func (c *Confirmer) agrees(p decimal.Decimal) bool {
	lo, hi := decimal.Min(c.held.lo, p), decimal.Max(c.held.hi, p)
	return c.within(hi, lo)
}

func (h *heldMove) addSource(s string) {
	if s != "" && !slices.Contains(h.sources, s) {
		h.sources = append(h.sources, s)
	}
}

// otherSource reports whether s is a feed other than one the held values
// came from.
func (h *heldMove) otherSource(s string) bool {
	return s != "" && len(h.sources) > 0 && !slices.Contains(h.sources, s)
}

// Accepted returns the last accepted value, if any.
func (c *Confirmer) Accepted() (Quote, bool) {
	if !c.hasAccepted {
		return Quote{}, false
	}
	return c.accepted, true
}

// Held describes a move waiting for confirmation.
type Held struct {
	// First and Last are the first and the latest held values.
	First, Last Quote
	// Since is when First was offered (local clock); the move is
	// confirmed by persistence by an agreeing value offered at or after
	// Since + confirmAfter.
	Since, ConfirmableAt time.Time
	// Sources are the feeds the held values came from.
	Sources []string
}

// Held returns the move waiting for confirmation, if any.
func (c *Confirmer) Held() (Held, bool) {
	h := c.held
	if h == nil {
		return Held{}, false
	}
	return Held{First: h.first, Last: h.last, Since: h.since, ConfirmableAt: h.since.Add(c.confirmAfter),
		Sources: slices.Clone(h.sources)}, true
}

// latest returns the time of the newest value offered (accepted or held).
func (c *Confirmer) latest() time.Time {
	if c.held != nil {
		return c.held.last.At
	}
	return c.accepted.At
}

// Guard is the fail-closed check of one policy's prices. It keeps each
// symbol's last accepted quote, holds back quotes that move more than
// maxMove until the move is confirmed (see Confirmer: it persisted for
// confirmAfter, or a second feed reports it), and reports the symbols
// whose price is missing, stale, from the future or held back.
//
// Offer orders quotes by their own times (a quote not newer than the
// latest seen for its symbol is ignored) and is given the local time of
// arrival, which the confirmation period is also measured by; Check takes
// the time to judge staleness at. A Guard reads no clock itself. It is
// not safe for concurrent use; the engine owns one per policy.
type Guard struct {
	maxAge       time.Duration
	maxMove      decimal.Decimal
	confirmAfter time.Duration
	symbols      map[string]*Confirmer
}

// NewGuard returns a Guard that reports an accepted quote older than
// maxAge as stale, and holds back moves larger than maxMove (a fraction:
// 0.10 is 10%) until confirmed, by persisting for confirmAfter or by a
// second feed. A zero maxMove disables the move check. maxAge must be
// positive: with zero (or less) every quote older than the time Check is
// given is stale, which fails closed. A negative maxMove quarantines every
// quote after the first, which also fails closed; callers validate all
// three.
func NewGuard(maxAge time.Duration, maxMove decimal.Decimal, confirmAfter time.Duration) *Guard {
	return &Guard{maxAge: maxAge, maxMove: maxMove, confirmAfter: confirmAfter, symbols: map[string]*Confirmer{}}
}

// Offer gives the Guard a quote received at now and returns what it did
// with it.
func (g *Guard) Offer(q Quote, now time.Time) Verdict {
	if checkSymbol(q.Symbol) != nil || q.At.IsZero() || checkPrice(q.Price) != nil {
		return Rejected
	}
	c, ok := g.symbols[q.Symbol]
	if !ok {
		c = NewConfirmer(g.maxMove, g.confirmAfter)
		g.symbols[q.Symbol] = c
	} else if !q.At.After(c.latest()) {
		return Ignored
	}
	return c.Offer(q, now)
}

// Check returns the problems of symbols at time now, at most one per
// symbol, sorted by symbol: missing, quarantined, stale or from the
// future. No problem means the prices of symbols may be planned on.
func (g *Guard) Check(symbols []string, now time.Time) []Problem {
	var out []Problem
	for _, sym := range symbols {
		c, ok := g.symbols[sym]
		if !ok {
			out = append(out, Problem{Symbol: sym, Reason: ReasonMissing, Detail: "no price received"})
			continue
		}
		acc, _ := c.Accepted()
		if h, held := c.Held(); held {
			out = append(out, Problem{Symbol: sym, Reason: ReasonQuarantined, Detail: g.heldDetail(acc, h)})
			continue
		}
		if g.Fresh(acc, now) {
			continue
		}
		switch {
		case now.Sub(acc.At) > g.maxAge:
			out = append(out, Problem{Symbol: sym, Reason: ReasonStale, Detail: fmt.Sprintf(
				"last price %s is from %s, %s old, more than the %s allowed",
				acc.Price, acc.At.Format(time.RFC3339), now.Sub(acc.At).Round(time.Second), g.maxAge)})
		case acc.At.Sub(now) > MaxClockSkew:
			out = append(out, Problem{Symbol: sym, Reason: ReasonFuture, Detail: fmt.Sprintf(
				"last price %s is dated %s, %s ahead of the clock",
				acc.Price, acc.At.Format(time.RFC3339), acc.At.Sub(now).Round(time.Second))})
		}
	}
	slices.SortFunc(out, func(a, b Problem) int { return strings.Compare(a.Symbol, b.Symbol) })
	return slices.CompactFunc(out, func(a, b Problem) bool { return a.Symbol == b.Symbol })
}

// Fresh reports whether an accepted quote may be planned on at now as far
// as its time goes: it is neither stale (older than maxAge) nor from the
// future (more than MaxClockSkew ahead of now). Check reports a symbol
// whose accepted quote is not fresh.
func (g *Guard) Fresh(q Quote, now time.Time) bool {
	return now.Sub(q.At) <= g.maxAge && q.At.Sub(now) <= MaxClockSkew
}

// heldDetail explains an unconfirmed move by its first held quote, which
// the confirmation period runs from (later agreeing quotes do not change
// it, and the engine does not re-evaluate for them).
func (g *Guard) heldDetail(acc Quote, h Held) string {
	from := ""
	if len(h.Sources) > 0 {
		from = " from feed " + strings.Join(h.Sources, ", ")
	}
	return fmt.Sprintf("unconfirmed price %s at %s%s moved %s%% from the accepted %s at %s, more than %s%%; "+
		"the accepted price stays in force until quotes agreeing within %s%% persist for %s (not before %s) or another feed reports the move",
		h.First.Price, h.First.At.Format(time.RFC3339Nano), from, MovePercent(h.First.Price, acc.Price),
		acc.Price, acc.At.Format(time.RFC3339), g.maxMove.Shift(2), g.maxMove.Shift(2), g.confirmAfter,
		h.ConfirmableAt.UTC().Format(time.RFC3339))
}

// MovePercent returns |p-ref|/ref in percent, to two places, for
// messages; "n/a" for a ref that is not positive.
func MovePercent(p, ref decimal.Decimal) string {
	if ref.Sign() <= 0 {
		return "n/a"
	}
	return p.Sub(ref).Abs().Shift(2).DivRound(ref, 2).String()
}

// Quote returns the symbol's last accepted quote.
func (g *Guard) Quote(symbol string) (Quote, bool) {
	c, ok := g.symbols[symbol]
	if !ok {
		return Quote{}, false
	}
	return c.Accepted()
}

// Pending returns the symbol's latest held quote, if any.
func (g *Guard) Pending(symbol string) (Quote, bool) {
	c, ok := g.symbols[symbol]
	if !ok {
		return Quote{}, false
	}
	h, held := c.Held()
	return h.Last, held
}
