package correlation

import (
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/policy"
)

// watchPolicy has equities of two funds, bonds, and crypto of two
// sub-sleeves: BTC fills 60% of crypto, SOL 40%.
const watchPolicy = `
policy: corr-test
currency: USD
targets:
  equities: 50%
  bonds: 30%
  crypto:
    weight: 15%
    sleeves: {large: 60%, small: 40%}
  cash: 5%
bands: {absolute: 5%}
rebalance: {trigger: threshold}
instruments:
  VTI:   {sleeve: equities, share: 70%}
  VXUS:  {sleeve: equities, share: 30%}
  BND:   {sleeve: bonds}
  BTC:   {sleeve: crypto/large}
  SOL:   {sleeve: crypto/small}
  VMFXX: {sleeve: cash}
accounts:
  brokerage: {type: taxable}
correlation:
  window: 20d
  threshold: 0.8
  clear_below: 0.7
  for: 3d
`

func parsePolicy(t testing.TB, text string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("test.yml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustWatch(t testing.TB, text string) *Watch {
	t.Helper()
	w, err := New(parsePolicy(t, text))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// The hand-worked five returns of TestPearsonByHand, in percent.
var (
	fiveX = []int64{1, 2, -1, 3, 0}
	fiveY = []int64{2, 1, -2, 2, 1}
)

// pricePath returns the closes of a price that starts at 100 and moves by
// the given percentages, cycling through them: exact decimals, so each
// ratio of consecutive closes is exactly 1 + the return.
func pricePath(percents []int64, steps int) []decimal.Decimal {
	p := decimal.NewFromInt(100)
	out := []decimal.Decimal{p}
	for k := range steps {
		p = p.Mul(decimal.New(100+percents[k%len(percents)], -2))
		out = append(out, p)
	}
	return out
}

// feed adds one close per day from d0, at 21:00 UTC; a zero price is a
// day without a quote.
func feed(h *History, symbol string, closes []decimal.Decimal) {
	for k, c := range closes {
		if !c.IsZero() {
			h.Add(symbol, c, d0.Add(time.Duration(k)*day+21*time.Hour))
		}
	}
}

func TestWatchBaskets(t *testing.T) {
	w := mustWatch(t, watchPolicy)
	// Default pairs: the top-level sleeves but cash, in order.
	want := []Pair{{"equities", "bonds"}, {"equities", "crypto"}, {"bonds", "crypto"}}
	got := w.Pairs()
	if len(got) != len(want) {
		t.Fatalf("pairs %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("pair %d = %v, want %v", i, got[i], want[i])
		}
	}
	if s := strings.Join(w.Symbols(), " "); s != "BND BTC SOL VTI VXUS" {
		t.Errorf("symbols %s", s)
	}
	// crypto: BTC = 100% of large (60% of crypto), SOL = 100% of small (40%).
	b := w.baskets[w.pairs[1].b]
	if strings.Join(b.symbols, " ") != "BTC SOL" || !b.weights[0].Equal(dec("0.6")) || !b.weights[1].Equal(dec("0.4")) {
		t.Errorf("crypto basket %v %v", b.symbols, b.weights)
	}
	// A sub-sleeve paired on its own weighs its instruments by share only.
	p := parsePolicy(t, strings.Replace(watchPolicy, "for: 3d", "for: 3d\n  pairs: [[crypto/small, equities]]", 1))
	w2, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	if a := w2.baskets[w2.pairs[0].a]; len(a.symbols) != 1 || a.symbols[0] != "SOL" || !a.weights[0].Equal(dec("1")) {
		t.Errorf("crypto/small basket %v %v", a.symbols, a.weights)
	}
	if e := w2.baskets[w2.pairs[0].b]; strings.Join(e.symbols, " ") != "VTI VXUS" || !e.weights[0].Equal(dec("0.7")) || !e.weights[1].Equal(dec("0.3")) {
		t.Errorf("equities basket %v %v", e.symbols, e.weights)
	}
	p.Correlation = nil
	if _, err := New(p); err == nil {
		t.Error("New without a correlation block: no error")
	}
}

// Twenty returns that repeat the five hand-worked ones four times have
// the same correlation: every sum is four times as large, so Cov, VarX
// and VarY are all 16 times as large.
//
// equities: VTI and VXUS both move by x, so equities moves by x.
// bonds moves by y. crypto: BTC moves by x, SOL by y, so crypto moves by
// c = 0.6x + 0.4y (percent: 1.4, 1.6, -1.4, 2.6, 0.4).
//
//	equities~bonds:  r = 40/√(50·54) = 0.769800…
//	equities~crypto: Cov = 0.6·50 + 0.4·40 = 46,
//	                 VarC = 0.36·50 + 0.16·54 + 2·0.24·40 = 45.84,
//	                 r = 46/√(50·45.84) = 46/√2292 = 0.960838…
//	bonds~crypto:    Cov = 0.6·40 + 0.4·54 = 45.6,
//	                 r = 45.6/√(54·45.84) = 45.6/√2475.36 = 0.916527…
//
// (in units of 0.01², N² times the 5-point moments, as in TestPearsonByHand).
func TestEvaluateByHand(t *testing.T) {
	w := mustWatch(t, watchPolicy)
	h, err := w.Fit(nil)
	if err != nil {
		t.Fatal(err)
	}
	x, y := pricePath(fiveX, 20), pricePath(fiveY, 20) // 21 closes, days 0 to 20
	for _, sym := range []string{"VTI", "VXUS", "BTC"} {
		feed(h, sym, x)
	}
	for _, sym := range []string{"BND", "SOL"} {
		feed(h, sym, y)
	}
	// Day 21 is in progress: its quotes do not count yet.
	h.Add("VTI", dec("1"), d0.Add(21*day+time.Hour))
	at := d0.Add(21*day + 15*time.Hour)
	ms, err := w.Evaluate(h, at)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		pair  Pair
		value string
	}{
		{Pair{"equities", "bonds"}, "0.7698"},
		{Pair{"equities", "crypto"}, "0.960838"},
		{Pair{"bonds", "crypto"}, "0.916527"},
	}
	for i, m := range ms {
		if m.Pair != want[i].pair || !m.Sufficient() || m.Returns != 20 || !m.Value().Equal(dec(want[i].value)) || !m.AsOf.Equal(d0.Add(21*day)) {
			t.Errorf("%v: %d returns, value %s, problem %q, as of %s; want %v 20 returns, %s as of day 21",
				m.Pair, m.Returns, m.Value(), m.Problem, m.AsOf, want[i].pair, want[i].value)
		}
	}
	// Exact: equities~bonds has r² = 16/27, so it is above 0.7698003589
	// and not above 0.7698003590.
	if !ms[0].Pearson.Above(dec("0.7698003589")) || ms[0].Pearson.Above(dec("0.769800359")) {
		t.Error("equities~bonds is not exactly 40/√2700")
	}
	// Every evaluation within day 21 measures the same.
	ms2, _ := w.Evaluate(h, d0.Add(22*day-time.Nanosecond))
	for i := range ms {
		if !ms2[i].Pearson.Cov.Equal(ms[i].Pearson.Cov) || !ms2[i].AsOf.Equal(ms[i].AsOf) {
			t.Errorf("%v changed within the day", ms[i].Pair)
		}
	}
	// A day later the window slides: day 0 leaves and day 21 (VTI at 1,
	// without VXUS, BTC...) is incomplete, so the pairs with equities
	// keep 19 returns and are insufficient; bonds~crypto has 19 too.
	ms, _ = w.Evaluate(h, d0.Add(22*day+time.Hour))
	for _, m := range ms {
		if m.Sufficient() || m.Returns != 19 || m.Problem != "19 returns in the window, need 20" || !m.Value().IsZero() {
			t.Errorf("%v a day later: %d returns, problem %q", m.Pair, m.Returns, m.Problem)
		}
	}
}

// Returns are taken between intervals where every instrument of both
// sleeves has a close: a day missing for one equity fund is skipped by
// the pairs with equities, and the return across the gap spans it.
func TestEvaluateSynchronousReturns(t *testing.T) {
	text := strings.Replace(watchPolicy, "window: 20d", "window: 30d", 1)
	w := mustWatch(t, text)
	h, _ := w.Fit(nil)
	x, y := pricePath(fiveX, 30), pricePath(fiveY, 30)
	vxus := append([]decimal.Decimal(nil), x...)
	for _, k := range []int{5, 6, 12, 13} { // two "weekends" without VXUS
		vxus[k] = decimal.Zero
	}
	feed(h, "VTI", x)
	feed(h, "VXUS", vxus)
	feed(h, "BTC", x)
	feed(h, "BND", y)
	feed(h, "SOL", y)
	ms, err := w.Evaluate(h, d0.Add(31*day))
	if err != nil {
		t.Fatal(err)
	}
	// Expected series, built from the closes directly: the equities and
	// bonds returns between the days VXUS has a close.
	var days []int
	for k := range 31 {
		if !vxus[k].IsZero() {
			days = append(days, k)
		}
	}
	var xs, ys []decimal.Decimal
	for i := 1; i < len(days); i++ {
		j, k := days[i-1], days[i]
		xs = append(xs, x[k].DivRound(x[j], ReturnPlaces).Sub(one))
		ys = append(ys, y[k].DivRound(y[j], ReturnPlaces).Sub(one))
	}
	want := mustPearson(t, xs, ys)
	if m := ms[0]; m.Returns != 26 || !m.Pearson.Cov.Equal(want.Cov) || !m.Pearson.VarX.Equal(want.VarX) || !m.Pearson.VarY.Equal(want.VarY) {
		t.Errorf("equities~bonds: %d returns, %+v; want 26, %+v", m.Returns, m.Pearson, want)
	}
	// bonds~crypto does not involve VXUS: all 30 returns.
	if m := ms[2]; m.Returns != 30 || !m.Sufficient() {
		t.Errorf("bonds~crypto: %d returns, %q", m.Returns, m.Problem)
	}
	// The gap return from day 4 to day 7 compounds three daily returns:
	// 1.00·1.01·1.02 − 1 (days 5, 6, 7 move 0%, +1%, +2%) = 0.0302.
	if !xs[4].Equal(dec("0.0302")) {
		t.Errorf("gap return %s, want 0.0302", xs[4])
	}
}

func TestEvaluateInsufficient(t *testing.T) {
	w := mustWatch(t, watchPolicy)
	h, _ := w.Fit(nil)
	x, y := pricePath(fiveX, 20), pricePath(fiveY, 20)
	flat := pricePath([]int64{0}, 20)
	feed(h, "VTI", x)
	feed(h, "VXUS", x)
	feed(h, "BND", flat) // a bond fund that never moves
	feed(h, "BTC", x)
	feed(h, "SOL", y[:15]) // SOL quoted for 15 days only: 14 returns
	ms, _ := w.Evaluate(h, d0.Add(21*day))
	problems := []string{
		"sleeve bonds did not move in the window: the correlation is undefined",
		"14 returns in the window, need 20",
		"14 returns in the window, need 20",
	}
	for i, m := range ms {
		if m.Sufficient() || m.Problem != problems[i] {
			t.Errorf("%v: problem %q, want %q", m.Pair, m.Problem, problems[i])
		}
	}
	// Nothing at all: no returns.
	empty, _ := w.Fit(nil)
	ms, _ = w.Evaluate(empty, d0)
	if ms[0].Returns != 0 || ms[0].Problem != "0 returns in the window, need 20" {
		t.Errorf("empty history: %+v", ms[0])
	}
	// A history of another shape is refused.
	other, _ := NewHistory(day, 90)
	if _, err := w.Evaluate(other, d0); err == nil {
		t.Error("Evaluate accepted a history of 90 intervals for a window of 20")
	}
}

func TestFit(t *testing.T) {
	w := mustWatch(t, watchPolicy)
	old, _ := NewHistory(12*time.Hour, 200)
	old.Add("VTI", dec("1"), d0.Add(time.Hour))
	old.Add("VTI", dec("2"), d0.Add(13*time.Hour))
	old.Add("GONE", dec("3"), d0.Add(time.Hour))
	h, err := w.Fit(old)
	if err != nil {
		t.Fatal(err)
	}
	if h.Interval() != day || h.Window() != 20 || len(h.Closes("GONE")) != 0 || closesString(h, h.Closes("VTI")) != "0:2@13:00" {
		t.Errorf("Fit: %s %d %v %s", h.Interval(), h.Window(), h.Symbols(), closesString(h, h.Closes("VTI")))
	}
}
