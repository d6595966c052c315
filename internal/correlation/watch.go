package correlation

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/policy"
)

// ReturnPlaces is the number of decimal places of each return: a price
// ratio is divided to this many places (rounded half away from zero), and
// a sleeve's return is rounded to it. Everything after is exact.
const ReturnPlaces = 16

// ValuePlaces is the number of decimal places of a reported correlation
// (Measurement.Value), truncated toward zero. Comparisons with the
// thresholds do not use it: they are exact.
const ValuePlaces = 6

// MinReturns is the fewest returns a measurement needs: with fewer it is
// insufficient and raises nothing.
const MinReturns = policy.MinCorrelationReturns

var one = decimal.NewFromInt(1)

// Pair names two watched sleeves by path, in the policy's order.
type Pair struct{ A, B string }

// String returns "A~B", e.g. "equities~crypto/large_cap": a metric label.
func (p Pair) String() string { return p.A + "~" + p.B }

// basket is a sleeve's instruments and their weights within the sleeve.
type basket struct {
	symbols []string
	weights []decimal.Decimal
}

// watchedPair is a pair and its sleeves' indices in Watch.baskets.
type watchedPair struct {
	pair Pair
	a, b int
}

// Rules say when an alert is raised and cleared: raised once the
// correlation has been above Threshold for For without a break, cleared
// once it is below ClearBelow.
type Rules struct {
	Threshold, ClearBelow decimal.Decimal
	For                   time.Duration
}

// Watch is one policy's correlation watch: its pairs of sleeves with the
// instruments and weights that make up each sleeve's returns. It is
// immutable and holds no state: the price history and the alert state are
// the caller's (History, State).
type Watch struct {
	policy    string
	cfg       policy.Correlation
	pairs     []watchedPair
	baskets   []basket
	symbols   []string
	minReturn int
}

// New returns the watch of a policy with a correlation block. A sleeve's
// return over one step is the weighted mean of its instruments' simple
// returns, each instrument weighted by its share of the sleeve: its share
// of its leaf sleeve times the weights within their parents of the
// sleeves between that leaf and the watched sleeve, as p gives them (pass
// a policy from WithLocals to follow a glide path). That is the return of
// a sleeve held at its target mix, rebalanced every interval.
// Instruments with no weight are left out. Should the weights of a sleeve
// sum to less than 1 (a weighted sub-sleeve without instruments), its
// returns are scaled down alike, which leaves correlations unchanged; a
// sleeve with no weighted instrument at all gives no returns, so its
// pairs stay insufficient.
func New(p *policy.Policy) (*Watch, error) {
	if p.Correlation == nil {
		return nil, fmt.Errorf("policy %s: no correlation block", p.Name)
	}
	w := &Watch{policy: p.Name, cfg: *p.Correlation, minReturn: MinReturns}
	index := map[int]int{} // sleeve -> index in w.baskets
	seen := map[string]bool{}
	basketOf := func(s int) int {
		if i, ok := index[s]; ok {
			return i
		}
		b := sleeveBasket(p, s)
		for _, sym := range b.symbols {
			if !seen[sym] {
				seen[sym] = true
				w.symbols = append(w.symbols, sym)
			}
		}
		index[s] = len(w.baskets)
		w.baskets = append(w.baskets, b)
		return index[s]
	}
	for _, sp := range p.Correlation.Pairs {
		w.pairs = append(w.pairs, watchedPair{
			pair: Pair{A: p.Sleeves[sp[0]].Path, B: p.Sleeves[sp[1]].Path},
			a:    basketOf(sp[0]),
			b:    basketOf(sp[1]),
		})
	}
	sort.Strings(w.symbols)
	return w, nil
}

// sleeveBasket returns the instruments below sleeve s with a weight in it.
func sleeveBasket(p *policy.Policy, s int) basket {
	var b basket
	for _, in := range p.Instruments {
		weight := in.Share
		k := in.Sleeve
		for k != s && k >= 0 {
			weight = weight.Mul(p.Sleeves[k].Local)
			k = p.Sleeves[k].Parent
		}
		if k == s && weight.Sign() > 0 {
			b.symbols = append(b.symbols, in.Symbol)
			b.weights = append(b.weights, weight)
		}
	}
	return b
}

// Policy returns the name of the watch's policy.
func (w *Watch) Policy() string { return w.policy }

// Rules returns the policy's alert rules.
func (w *Watch) Rules() Rules {
	return Rules{Threshold: w.cfg.Threshold, ClearBelow: w.cfg.ClearBelow, For: w.cfg.For}
}

// Pairs returns the watched pairs in the policy's order.
func (w *Watch) Pairs() []Pair {
	out := make([]Pair, len(w.pairs))
	for i, p := range w.pairs {
		out[i] = p.pair
	}
	return out
}

// Symbols returns the symbols whose prices the watch needs, sorted.
func (w *Watch) Symbols() []string { return slices.Clone(w.symbols) }

// Fit returns a history for this watch: a new one when h is nil, else one
// with h's closes of the watch's symbols, re-bucketed when h's interval or
// window differ (after the policy changed). h is unchanged.
func (w *Watch) Fit(h *History) (*History, error) {
	if h == nil {
		return NewHistory(w.cfg.Interval, w.cfg.Intervals)
	}
	return h.Rebucket(w.cfg.Interval, w.cfg.Intervals, w.symbols)
}

// Measurement is the correlation of one pair at one evaluation.
type Measurement struct {
	Pair Pair
	// AsOf is the end of the window: the start of the interval in
	// progress at the evaluation. Only completed intervals count, so every
	// evaluation with the same AsOf measures the same.
	AsOf time.Time
	// Returns is the number of returns of each sleeve the correlation
	// rests on.
	Returns int
	Pearson Pearson
	// Problem says why there is no usable correlation ("" when there is):
	// fewer than MinReturns returns, or a sleeve whose prices did not move.
	Problem string
}

// Sufficient reports whether the measurement gives a correlation.
func (m Measurement) Sufficient() bool { return m.Problem == "" }

// Value returns the correlation truncated to ValuePlaces, zero when the
// measurement is not sufficient.
func (m Measurement) Value() decimal.Decimal {
	if !m.Sufficient() {
		return decimal.Zero
	}
	return m.Pearson.Value(ValuePlaces)
}

// Evaluate measures every pair at time at from the closes of the last
// window of completed intervals before the one that holds at: the window
// has Intervals+1 closes and gives at most Intervals returns.
//
// Returns are synchronous: a return is taken between two consecutive
// intervals in which every instrument of both sleeves has a close, so
// both sleeves' returns span the same time. Intervals where any of them
// lacks a close (a weekend for an equity fund beside a crypto index, a
// feed outage) are skipped; the return across the gap covers it.
//
// h must have the watch's interval and window (see Fit).
func (w *Watch) Evaluate(h *History, at time.Time) ([]Measurement, error) {
	if h.interval != w.cfg.Interval || h.window != w.cfg.Intervals {
		return nil, fmt.Errorf("policy %s: correlation history of %d intervals of %s, want %d of %s",
			w.policy, h.window, h.interval, w.cfg.Intervals, w.cfg.Interval)
	}
	end := h.Bucket(at)
	lo := end - int64(h.window) - 1
	span := h.window + 1
	dense := make(map[string][]decimal.Decimal, len(w.symbols))
	for _, sym := range w.symbols {
		dense[sym] = denseCloses(h.closes[sym], lo, span)
	}
	e := &evaluation{dense: dense, cache: make([]returnCache, len(w.baskets))}
	for i := range e.cache {
		e.cache[i] = returnCache{from: make([]int, span), ret: make([]decimal.Decimal, span)}
	}
	out := make([]Measurement, len(w.pairs))
	for i, wp := range w.pairs {
		out[i] = w.measure(wp, e, span)
		out[i].AsOf = h.Start(end)
	}
	return out, nil
}

// evaluation holds one Evaluate's closes and the sleeve returns computed
// so far: a sleeve in several pairs mostly has the same steps in each.
type evaluation struct {
	dense map[string][]decimal.Decimal
	cache []returnCache // by basket
}

// returnCache holds, for each interval k, the sleeve's return from
// interval from[k]-1 to k (from[k] is 0 when none is cached).
type returnCache struct {
	from []int
	ret  []decimal.Decimal
}

// denseCloses returns the prices of closes in the span intervals from lo,
// indexed by interval - lo; a zero decimal where there is none.
func denseCloses(closes []Close, lo int64, span int) []decimal.Decimal {
	out := make([]decimal.Decimal, span)
	i := sort.Search(len(closes), func(i int) bool { return closes[i].Bucket >= lo })
	for ; i < len(closes) && closes[i].Bucket < lo+int64(span); i++ {
		out[closes[i].Bucket-lo] = closes[i].Price
	}
	return out
}

func (w *Watch) measure(wp watchedPair, e *evaluation, span int) Measurement {
	m := Measurement{Pair: wp.pair}
	present := func(b basket, k int) bool {
		for _, s := range b.symbols {
			if e.dense[s][k].Sign() == 0 {
				return false
			}
		}
		return len(b.symbols) > 0
	}
	a, b := w.baskets[wp.a], w.baskets[wp.b]
	var xs, ys []decimal.Decimal
	prev := -1
	for k := range span {
		if !present(a, k) || !present(b, k) {
			continue
		}
		if prev >= 0 {
			xs = append(xs, e.basketReturn(w.baskets, wp.a, prev, k))
			ys = append(ys, e.basketReturn(w.baskets, wp.b, prev, k))
		}
		prev = k
	}
	m.Returns = len(xs)
	m.Pearson, _ = NewPearson(xs, ys) // same lengths by construction
	switch {
	case m.Returns < w.minReturn:
		m.Problem = fmt.Sprintf("%d returns in the window, need %d", m.Returns, w.minReturn)
	case m.Pearson.VarX.Sign() == 0:
		m.Problem = fmt.Sprintf("sleeve %s did not move in the window: the correlation is undefined", wp.pair.A)
	case m.Pearson.VarY.Sign() == 0:
		m.Problem = fmt.Sprintf("sleeve %s did not move in the window: the correlation is undefined", wp.pair.B)
	}
	return m
}

// basketReturn returns the return of baskets[i] from interval j to
// interval k > j: the weighted sum of its instruments' simple returns.
func (e *evaluation) basketReturn(baskets []basket, i, j, k int) decimal.Decimal {
	c := &e.cache[i]
	if c.from[k] == j+1 {
		return c.ret[k]
	}
	r := decimal.Zero
	b := baskets[i]
	for n, s := range b.symbols {
		ratio := e.dense[s][k].DivRound(e.dense[s][j], ReturnPlaces)
		r = r.Add(b.weights[n].Mul(ratio.Sub(one)))
	}
	r = r.Round(ReturnPlaces)
	c.from[k], c.ret[k] = j+1, r
	return r
}
