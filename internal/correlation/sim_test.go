package correlation

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// fiveSleeves is a policy of five sleeves besides cash, two instruments
// each, watching every pair (10) over 90 days.
func fiveSleeves() string {
	var b strings.Builder
	b.WriteString("policy: five\ncurrency: USD\ntargets: {s0: 20%, s1: 20%, s2: 20%, s3: 20%, s4: 15%, cash: 5%}\n")
	b.WriteString("bands: {absolute: 5%}\nrebalance: {trigger: threshold}\ninstruments:\n")
	for s := range 5 {
		fmt.Fprintf(&b, "  I%da: {sleeve: s%d, share: 60%%}\n  I%db: {sleeve: s%d, share: 40%%}\n", s, s, s, s)
	}
	b.WriteString("accounts: {a: {type: taxable}}\ncorrelation: {window: 90d, threshold: 0.8, for: 7d}\n")
	return b.String()
}

// market moves the ten instruments of fiveSleeves by random daily returns
// in basis points; from day coupleFrom to day coupleTo the instruments of
// s1 follow those of s0 (plus a little noise). Prices have 4 places.
type market struct {
	rng                  *rand.Rand
	prices               map[string]decimal.Decimal
	coupleFrom, coupleTo int
}

func newMarket(seed uint64, from, to int) *market {
	m := &market{rng: rand.New(rand.NewPCG(seed, seed)), prices: map[string]decimal.Decimal{}, coupleFrom: from, coupleTo: to}
	for s := range 5 {
		for _, x := range []string{"a", "b"} {
			m.prices[fmt.Sprintf("I%d%s", s, x)] = decimal.NewFromInt(100)
		}
	}
	return m
}

// day moves every price once and adds the closes of day k to h.
func (m *market) day(h *History, k int) {
	bp := map[string]int64{}
	for s := range 5 {
		for _, x := range []string{"a", "b"} {
			sym := fmt.Sprintf("I%d%s", s, x)
			bp[sym] = m.rng.Int64N(401) - 200 // -2% to +2%
			if s == 1 && k >= m.coupleFrom && k < m.coupleTo {
				bp[sym] = bp["I0"+x] + m.rng.Int64N(41) - 20
			}
			m.prices[sym] = m.prices[sym].Mul(decimal.New(10000+bp[sym], -4)).Round(4)
			h.Add(sym, m.prices[sym], d0.Add(time.Duration(k)*day+20*time.Hour))
		}
	}
}

// A simulated year through History, Watch and State: s0 and s1 move
// independently, then together from day 150 to 250, then apart again.
// The alert for s0~s1 is raised once, at least 7 days after the run above
// 0.8 began, and cleared once; no other pair alerts.
func TestSimulatedRegimeChange(t *testing.T) {
	w := mustWatch(t, fiveSleeves())
	if len(w.Pairs()) != 10 {
		t.Fatalf("%d pairs, want 10", len(w.Pairs()))
	}
	h, _ := w.Fit(nil)
	mk := newMarket(7, 150, 250)
	var s State
	var log []string
	var firstAbove time.Time
	for k := range 400 {
		mk.day(h, k)
		at := d0.Add(time.Duration(k+1)*day + time.Hour) // the next morning
		ms, err := w.Evaluate(h, at)
		if err != nil {
			t.Fatal(err)
		}
		if firstAbove.IsZero() && ms[0].Sufficient() && ms[0].Pearson.Above(w.Rules().Threshold) {
			firstAbove = ms[0].AsOf
		}
		for _, tr := range s.Step(w.Rules(), ms, at) {
			m := tr.Measurement
			log = append(log, fmt.Sprintf("day %d %s %s r=%s", k, tr.Kind, m.Pair, m.Value()))
			switch tr.Kind {
			case High:
				if !m.Pearson.Above(w.Rules().Threshold) || tr.At.Sub(tr.Since) < w.Rules().For || !tr.Since.Equal(firstAbove) {
					t.Errorf("raised early or wrongly: %+v (first above %s)", tr, firstAbove)
				}
			case Normal:
				if !m.Pearson.Below(w.Rules().ClearBelow) {
					t.Errorf("cleared above clear_below: %+v", tr)
				}
			}
		}
		if k == 100 && h.Len() != 10*92 {
			t.Errorf("history holds %d closes, want 10 x 92", h.Len())
		}
	}
	if len(log) != 2 || !strings.Contains(log[0], "correlation_high s0~s1") || !strings.Contains(log[1], "correlation_normal s0~s1") {
		t.Errorf("transitions:\n%s", strings.Join(log, "\n"))
	}
	t.Logf("transitions:\n%s", strings.Join(log, "\n"))
}

// BenchmarkEvaluate measures one evaluation of the 10 pairs of a
// 5-sleeve policy over a full 90-day window (91 closes of 10 instruments)
// and the state step after it.
func BenchmarkEvaluate(b *testing.B) {
	w := mustWatch(b, fiveSleeves())
	h, _ := w.Fit(nil)
	mk := newMarket(1, 0, 0)
	for k := range 95 {
		mk.day(h, k)
	}
	at := d0.Add(95*day + time.Hour)
	var s State
	b.ReportAllocs()
	for b.Loop() {
		ms, err := w.Evaluate(h, at)
		if err != nil || ms[0].Returns != 90 {
			b.Fatalf("%v, %d returns", err, ms[0].Returns)
		}
		s.Step(w.Rules(), ms, at)
	}
}
