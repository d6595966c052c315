package drift_test

import (
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
)

// household is a policy, holdings and prices documents.
type household struct {
	policy, holdings, prices string
}

const asOf = "as_of: 2026-11-20T21:00:00Z\n"

// compute parses and binds the three documents and returns their drift.
func (h household) compute(t *testing.T) *drift.Snapshot {
	t.Helper()
	p, err := policy.Parse("policy.yaml", []byte(h.policy))
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	hold, err := portfolio.ParseHoldings("holdings.yaml", []byte(h.holdings))
	if err != nil {
		t.Fatalf("holdings: %v", err)
	}
	q, err := portfolio.ParsePrices("prices.yaml", []byte(h.prices))
	if err != nil {
		t.Fatalf("prices: %v", err)
	}
	b, err := portfolio.Bind(p, hold, q)
	if err != nil {
		t.Fatalf("bind: %v", err)
	}
	return drift.Compute(b)
}

// sleeve returns the drift of the sleeve at path.
func sleeve(t *testing.T, s *drift.Snapshot, path string) drift.Sleeve {
	t.Helper()
	for _, sl := range s.Sleeves {
		if sl.Path == path {
			return sl
		}
	}
	t.Fatalf("no sleeve %q", path)
	return drift.Sleeve{}
}

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// mul multiplies decimal strings: a quantity by a price, a fraction by a
// total.
func mul(a, b string) decimal.Decimal { return d(a).Mul(d(b)) }

// sum adds decimals.
func sum(xs ...decimal.Decimal) decimal.Decimal {
	total := decimal.Zero
	for _, x := range xs {
		total = total.Add(x)
	}
	return total
}

// example reads the household of the README and configs/: the issue's
// example.
func example(t *testing.T) household {
	t.Helper()
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join("..", "..", "configs", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	return household{
		policy:   read("policies/example.yaml"),
		holdings: read("holdings/example.yaml"),
		prices:   read("prices/example.yaml"),
	}
}

// TestExample checks the example's drift against values worked out from
// the quantities and prices, band by band.
func TestExample(t *testing.T) {
	s := example(t).compute(t)

	// Values: quantity x price per position, summed per sleeve. Free cash is
	// cash above the reserve: roth 1200.50, k401 0, taxable 25000 - 20000.
	equities := sum(mul("120", "285.12"), mul("300", "285.12"), mul("50", "61.40")) // 122820.40
	bonds := sum(mul("400", "72.15"), mul("300", "72.15"))                          // 50505
	realEstate := mul("40", "88.90")                                                // 3556
	largeCap := mul("0.5", "41250.00")                                              // 20625
	cash := sum(d("1200.50"), d("0"), d("25000").Sub(d("20000")))                   // 6200.50
	total := sum(equities, bonds, realEstate, largeCap, cash)
	if !total.Equal(d("203706.90")) || !s.Total.Equal(total) {
		t.Fatalf("total = %s, want %s (203706.90: reserve excluded)", s.Total, total)
	}

	tests := []struct {
		path          string
		value         decimal.Decimal
		target        string // fraction of the whole
		halfWidth     string
		low, high     string
		breach        bool
		weightPercent string // the weight, rounded to two places of a percent
	}{
		// 5/25 rule: min(5%, 25% x 55% = 13.75%) = 5%. 60.29% > 60%.
		{"equities", equities, "0.55", "0.05", "0.50", "0.60", true, "60.29"},
		// min(5%, 25% x 25% = 6.25%) = 5%. 24.79% is inside.
		{"bonds", bonds, "0.25", "0.05", "0.20", "0.30", false, "24.79"},
		// min(5%, 25% x 10% = 2.5%) = 2.5%. 1.75% < 7.5%.
		{"real_estate", realEstate, "0.10", "0.025", "0.075", "0.125", true, "1.75"},
		// The crypto override: absolute 2% only (relative is not inherited
		// from the global rule, which would give 25% x 5% = 1.25%).
		{"crypto", largeCap, "0.05", "0.02", "0.03", "0.07", true, "10.12"},
		// 5% x 65% = 3.25% exactly; the override applies to the descendants:
		// 2%, not min(2%, 25% x 3.25%).
		{"crypto/large_cap", largeCap, "0.0325", "0.02", "0.0125", "0.0525", true, "10.12"},
		// 5% x 25% = 1.25%; empty: |0 - 1.25%| <= 2%, no breach. The band
		// is clamped at 0.
		{"crypto/balanced", decimal.Zero, "0.0125", "0.02", "0", "0.0325", false, "0"},
		{"crypto/growth", decimal.Zero, "0.005", "0.02", "0", "0.025", false, "0"},
		// min(5%, 25% x 5% = 1.25%) = 1.25%; free cash alone: 3.04% < 3.75%.
		{"cash", cash, "0.05", "0.0125", "0.0375", "0.0625", true, "3.04"},
	}
	half := d("0.0000005") // half a unit of the sixth place
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			sl := sleeve(t, s, tt.path)
			if !sl.Value.Equal(tt.value) {
				t.Errorf("value = %s, want %s", sl.Value, tt.value)
			}
			if !sl.Target.Equal(d(tt.target)) {
				t.Errorf("target = %s, want %s", sl.Target, tt.target)
			}
			if !sl.BandLow.Equal(d(tt.low)) || !sl.BandHigh.Equal(d(tt.high)) {
				t.Errorf("band = %s-%s, want %s-%s", sl.BandLow, sl.BandHigh, tt.low, tt.high)
			}
			if !sl.TargetValue.Equal(d(tt.target).Mul(total)) || !sl.HalfWidthValue.Equal(d(tt.halfWidth).Mul(total)) {
				t.Errorf("target value %s, half-width value %s; want %s x %s and %s x %s",
					sl.TargetValue, sl.HalfWidthValue, tt.target, total, tt.halfWidth, total)
			}
			// |weight - value/total| <= half a unit of the last place, that
			// is |weight x total - value| <= half x total.
			if off := sl.Weight.Mul(total).Sub(tt.value).Abs(); off.GreaterThan(half.Mul(total)) || sl.Weight.Exponent() < -drift.WeightPlaces {
				t.Errorf("weight %s is not value/total = %s/%s rounded to %d places", sl.Weight, tt.value, total, drift.WeightPlaces)
			}
			if pct := sl.Weight.Shift(2); !pct.Round(2).Equal(d(tt.weightPercent)) {
				t.Errorf("weight = %s%%, want %s%%", pct, tt.weightPercent)
			}
			if !sl.Deviation.Equal(sl.Weight.Sub(d(tt.target))) {
				t.Errorf("deviation = %s, want weight %s - target %s", sl.Deviation, sl.Weight, tt.target)
			}
			if sl.Breach != tt.breach {
				t.Errorf("breach = %v, want %v", sl.Breach, tt.breach)
			}
		})
	}
	if got, want := strings.Join(s.Breaching(), ","), "equities,real_estate,crypto,crypto/large_cap,cash"; got != want {
		t.Errorf("Breaching() = %s, want %s", got, want)
	}
	// Values per position and free cash per account, as the planner reads
	// them.
	if v := s.Values[0][0]; !v.Equal(mul("120", "285.12")) {
		t.Errorf("roth VTI value = %s", v)
	}
	if f := s.FreeCash[2]; !f.Equal(d("5000")) {
		t.Errorf("taxable free cash = %s, want 5000 (25000 less the 20000 reserve)", f)
	}
}

// twoSleeves is a policy of stocks, bonds and cash with the given targets
// and bands, one instrument each (S and B at price 1, MM a money-market
// fund in the cash sleeve) and two accounts: an IRA and a taxable account
// with a reserve.
func twoSleeves(targets, bands string) string {
	return `
policy: p
currency: USD
targets: ` + targets + `
bands: ` + bands + `
rebalance: {trigger: threshold}
instruments: {S: {sleeve: stocks}, B: {sleeve: bonds}, MM: {sleeve: cash}}
accounts:
  ira: {type: roth_ira}
  tax: {type: taxable, reserve: "1000"}
`
}

const unitPrices = asOf + `prices: {S: "1", B: "1", MM: "1"}`

// TestBands checks the half-width of each band rule and that breaches are
// decided exactly: |value - target x total| > half-width x total, equality
// inside, even where the weight rounded to six places lands on the edge.
func TestBands(t *testing.T) {
	tests := []struct {
		name      string
		targets   string
		bands     string
		stocks    string // held in the IRA; bonds make up the rest
		total     string
		halfWidth string // of the stocks sleeve
		breach    bool
		weight    string
	}{
		// 5/25: min(5%, 25% x 60% = 15%) = 5%.
		{name: "absolute smaller", targets: "{stocks: 60%, bonds: 40%, cash: 0%}", bands: "{absolute: 5%, relative: 25%}",
			stocks: "600", total: "1000", halfWidth: "0.05", weight: "0.6"},
		// min(5%, 25% x 10% = 2.5%) = 2.5%: 12.5% is the edge, inside.
		{name: "relative smaller, on the edge", targets: "{stocks: 10%, bonds: 90%, cash: 0%}", bands: "{absolute: 5%, relative: 25%}",
			stocks: "125", total: "1000", halfWidth: "0.025", weight: "0.125"},
		{name: "relative smaller, past the edge", targets: "{stocks: 10%, bonds: 90%, cash: 0%}", bands: "{absolute: 5%, relative: 25%}",
			stocks: "126", total: "1000", halfWidth: "0.025", breach: true, weight: "0.126"},
		{name: "relative only", targets: "{stocks: 40%, bonds: 60%, cash: 0%}", bands: "{relative: 20%}",
			stocks: "320", total: "1000", halfWidth: "0.08", weight: "0.32"},
		{name: "relative only, below the edge", targets: "{stocks: 40%, bonds: 60%, cash: 0%}", bands: "{relative: 20%}",
			stocks: "319", total: "1000", halfWidth: "0.08", breach: true, weight: "0.319"},
		// 65% of 10,000,000 is the upper edge. 6,500,003 weighs 0.6500003,
		// rounded to 0.650000 (the edge), yet it is outside.
		{name: "upper edge exactly", targets: "{stocks: 60%, bonds: 40%, cash: 0%}", bands: "{absolute: 5%}",
			stocks: "6500000", total: "10000000", halfWidth: "0.05", weight: "0.65"},
		{name: "a sliver above the upper edge", targets: "{stocks: 60%, bonds: 40%, cash: 0%}", bands: "{absolute: 5%}",
			stocks: "6500003", total: "10000000", halfWidth: "0.05", breach: true, weight: "0.65"},
		{name: "lower edge exactly", targets: "{stocks: 60%, bonds: 40%, cash: 0%}", bands: "{absolute: 5%}",
			stocks: "5500000", total: "10000000", halfWidth: "0.05", weight: "0.55"},
		{name: "a sliver below the lower edge", targets: "{stocks: 60%, bonds: 40%, cash: 0%}", bands: "{absolute: 5%}",
			stocks: "5499997", total: "10000000", halfWidth: "0.05", breach: true, weight: "0.55"},
		// A 0% target takes the absolute band (relative x 0 would be no
		// band at all) and is never divided by.
		{name: "zero target inside", targets: "{stocks: 0%, bonds: 100%, cash: 0%}", bands: "{absolute: 5%, relative: 25%}",
			stocks: "50", total: "1000", halfWidth: "0.05", weight: "0.05"},
		{name: "zero target outside", targets: "{stocks: 0%, bonds: 100%, cash: 0%}", bands: "{absolute: 5%, relative: 25%}",
			stocks: "51", total: "1000", halfWidth: "0.05", breach: true, weight: "0.051"},
		{name: "zero target, empty", targets: "{stocks: 0%, bonds: 100%, cash: 0%}", bands: "{absolute: 5%, relative: 25%}",
			stocks: "0", total: "1000", halfWidth: "0.05", weight: "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bonds := d(tt.total).Sub(d(tt.stocks))
			s := household{
				policy:   twoSleeves(tt.targets, tt.bands),
				holdings: asOf + `accounts: {ira: {cash: "0", positions: {S: "` + tt.stocks + `", B: "` + bonds.String() + `"}}, tax: {cash: "0"}}`,
				prices:   unitPrices,
			}.compute(t)
			if !s.Total.Equal(d(tt.total)) {
				t.Fatalf("total = %s, want %s", s.Total, tt.total)
			}
			st := sleeve(t, s, "stocks")
			if want := d(tt.halfWidth).Mul(d(tt.total)); !st.HalfWidthValue.Equal(want) {
				t.Errorf("half-width value = %s, want %s x %s", st.HalfWidthValue, tt.halfWidth, tt.total)
			}
			if low := decimal.Max(decimal.Zero, st.Target.Sub(d(tt.halfWidth))); !st.BandLow.Equal(low) {
				t.Errorf("band low = %s, want %s", st.BandLow, low)
			}
			if high := st.Target.Add(d(tt.halfWidth)); !st.BandHigh.Equal(high) {
				t.Errorf("band high = %s, want %s", st.BandHigh, high)
			}
			if st.Breach != tt.breach {
				t.Errorf("breach = %v, want %v (value %s of %s, target %s, half-width %s)",
					st.Breach, tt.breach, st.Value, s.Total, st.Target, tt.halfWidth)
			}
			if !st.Weight.Equal(d(tt.weight)) || !st.Deviation.Equal(d(tt.weight).Sub(st.Target)) {
				t.Errorf("weight %s, deviation %s; want %s and %s - %s", st.Weight, st.Deviation, tt.weight, tt.weight, st.Target)
			}
			// OutOfBand is the exact rule Breach follows.
			if got := drift.OutOfBand(st.Value, st.TargetValue, st.HalfWidthValue); got != tt.breach {
				t.Errorf("OutOfBand = %v, want %v", got, tt.breach)
			}
		})
	}
}

// TestOutOfBand checks the rule on both sides of the target and at the
// edges, with operands of different scales.
func TestOutOfBand(t *testing.T) {
	tests := []struct {
		value, target, half string
		want                bool
	}{
		{"105", "100", "5", false},
		{"105.00000001", "100", "5", true},
		{"95", "100", "5.000", false},
		{"94.99", "100", "5", true},
		{"100", "100", "0", false},
		{"100.0001", "100", "0", true},
		{"99.9999", "100.00", "0", true},
		{"0", "0.0325", "0.02", true},
		{"0", "0.0125", "0.02", false},
	}
	for _, tt := range tests {
		if got := drift.OutOfBand(d(tt.value), d(tt.target), d(tt.half)); got != tt.want {
			t.Errorf("OutOfBand(%s, %s, %s) = %v, want %v", tt.value, tt.target, tt.half, got, tt.want)
		}
		if got := drift.Breaches(&policy.Sleeve{Target: d(tt.target), HalfWidth: d(tt.half)}, d(tt.value), d("1")); got != tt.want {
			t.Errorf("Breaches(target %s, half-width %s, value %s of 1) = %v, want %v", tt.target, tt.half, tt.value, got, tt.want)
		}
	}
}

// TestOutOfBandRandom checks OutOfBand against decimal arithmetic on
// random figures: small ones (decided in int64) and ones whose coefficients
// or scales do not fit (decided by decimal arithmetic), near the edge and
// far from it.
func TestOutOfBandRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	random := func() decimal.Decimal {
		digits := make([]byte, 1+r.IntN(25))
		for k := range digits {
			digits[k] = byte('0' + r.IntN(10))
		}
		c, _ := new(big.Int).SetString(string(digits), 10)
		if r.IntN(4) == 0 {
			c.Neg(c)
		}
		return decimal.NewFromBigInt(c, int32(r.IntN(30)-24))
	}
	for range 200000 {
		v, target, half := random(), random(), random().Abs()
		switch r.IntN(3) {
		case 0: // on the edge
			v = target.Add(half)
		case 1: // on the other edge
			v = target.Sub(half)
		}
		want := v.Sub(target).Abs().GreaterThan(half)
		if got := drift.OutOfBand(v, target, half); got != want {
			t.Fatalf("OutOfBand(%s, %s, %s) = %v, want %v", v, target, half, got, want)
		}
	}
}

// TestCashAndReserves: reserves are neither counted nor investable; free
// cash (cash above the reserve, never negative) counts toward the cash
// sleeve together with its instruments.
func TestCashAndReserves(t *testing.T) {
	pol := twoSleeves("{stocks: 50%, bonds: 40%, cash: 10%}", "{absolute: 5%}")
	tests := []struct {
		name            string
		holdings        string
		freeIRA, freeTx string
		cash, total     string
	}{
		{name: "reserve excluded",
			holdings: asOf + `accounts: {ira: {cash: "0", positions: {S: "500", B: "400"}}, tax: {cash: "1100"}}`,
			freeIRA:  "0", freeTx: "100", cash: "100", total: "1000"},
		{name: "free cash in both accounts and a money-market fund",
			holdings: asOf + `accounts: {ira: {cash: "30.5", positions: {S: "500", B: "400", MM: "19.5"}}, tax: {cash: "1050"}}`,
			freeIRA:  "30.5", freeTx: "50", cash: "100", total: "1000"},
		// Cash below the reserve is not free: it is not counted at all and
		// does not go negative.
		{name: "cash below the reserve",
			holdings: asOf + `accounts: {ira: {cash: "100", positions: {S: "500", B: "400"}}, tax: {cash: "600", positions: {S: "0"}}}`,
			freeIRA:  "100", freeTx: "0", cash: "100", total: "1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := household{policy: pol, holdings: tt.holdings, prices: unitPrices}.compute(t)
			if !s.FreeCash[0].Equal(d(tt.freeIRA)) || !s.FreeCash[1].Equal(d(tt.freeTx)) {
				t.Errorf("free cash = %s, %s; want %s, %s", s.FreeCash[0], s.FreeCash[1], tt.freeIRA, tt.freeTx)
			}
			if c := sleeve(t, s, "cash"); !c.Value.Equal(d(tt.cash)) {
				t.Errorf("cash sleeve = %s, want %s", c.Value, tt.cash)
			}
			if !s.Total.Equal(d(tt.total)) {
				t.Errorf("total = %s, want %s", s.Total, tt.total)
			}
		})
	}
}

// TestEmptyHousehold: no free cash and nothing held gives a zero total,
// zero weights, no breach and no division by zero.
func TestEmptyHousehold(t *testing.T) {
	for _, holdings := range []string{
		`accounts: {ira: {cash: "0"}, tax: {cash: "0"}}`,
		`accounts: {ira: {cash: "0", positions: {S: "0"}}, tax: {cash: "999.99"}}`, // all of it reserved
	} {
		s := household{
			policy:   twoSleeves("{stocks: 60%, bonds: 40%, cash: 0%}", "{absolute: 5%, relative: 25%}"),
			holdings: asOf + holdings,
			prices:   unitPrices,
		}.compute(t)
		if !s.Total.IsZero() {
			t.Errorf("%s: total = %s, want 0", holdings, s.Total)
		}
		for _, sl := range s.Sleeves {
			if sl.Breach || !sl.Weight.IsZero() || !sl.Value.IsZero() || !sl.TargetValue.IsZero() {
				t.Errorf("%s: %s = %+v, want zero figures and no breach", holdings, sl.Path, sl)
			}
		}
		if b := s.Breaching(); len(b) != 0 {
			t.Errorf("%s: breaching %v", holdings, b)
		}
	}
}

// TestSum checks Sum against repeated Add on values of different scales.
func TestSum(t *testing.T) {
	values := []decimal.Decimal{d("1.5"), d("-0.25"), d("1e3"), d("0.000001"), d("7"), d("-1000.5"), d("12345678901234567890.1")}
	for n := 0; n <= len(values); n++ {
		want := decimal.Zero
		for _, v := range values[:n] {
			want = want.Add(v)
		}
		if got := drift.Sum(values[:n]); !got.Equal(want) {
			t.Errorf("Sum(%v) = %s, want %s", values[:n], got, want)
		}
	}
	// The inputs are left as they were.
	if !values[0].Equal(d("1.5")) || !values[len(values)-1].Equal(d("12345678901234567890.1")) {
		t.Errorf("Sum changed its inputs: %v", values)
	}
}

// TestLevels: a parent's value is the sum of its children's at every level
// of the tree, the top level sums to the total, and a descendant with a
// band of its own does not inherit its ancestor's.
func TestLevels(t *testing.T) {
	s := household{
		policy: `
policy: levels
currency: USD
targets:
  growth:
    weight: 80%
    sleeves:
      equity:
        weight: 75%
        sleeves: {us: 60%, intl: 40%}
      crypto: 25%
  cash: 20%
bands:
  absolute: 5%
  sleeves:
    growth: {absolute: 10%}
    growth/equity/intl: {absolute: 1%, relative: 50%}
rebalance: {trigger: threshold}
instruments:
  US1: {sleeve: growth/equity/us, share: 50%}
  US2: {sleeve: growth/equity/us, share: 50%}
  INTL: {sleeve: growth/equity/intl}
  BTC: {sleeve: growth/crypto, step: "0.00000001"}
accounts:
  a: {type: taxable}
  b: {type: roth_ira, may_hold: [US1, INTL]}
`,
		holdings: asOf + `accounts:
  a: {cash: "12.34", positions: {US1: "10", US2: "3.5", BTC: "0.01"}}
  b: {cash: "100", positions: {US1: "1", INTL: "7"}}
`,
		prices: asOf + `prices: {US1: "100.10", US2: "20", INTL: "33.333", BTC: "90000"}`,
	}.compute(t)
	us := sum(mul("10", "100.10"), mul("1", "100.10"), mul("3.5", "20"))
	intl := mul("7", "33.333")
	crypto := mul("0.01", "90000")
	cash := d("112.34")
	want := map[string]decimal.Decimal{
		"growth/equity/us":   us,
		"growth/equity/intl": intl,
		"growth/equity":      us.Add(intl),
		"growth/crypto":      crypto,
		"growth":             us.Add(intl).Add(crypto),
		"cash":               cash,
	}
	for path, v := range want {
		if sl := sleeve(t, s, path); !sl.Value.Equal(v) {
			t.Errorf("%s = %s, want %s", path, sl.Value, v)
		}
	}
	if total := us.Add(intl).Add(crypto).Add(cash); !s.Total.Equal(total) {
		t.Errorf("total = %s, want %s", s.Total, total)
	}
	targets := map[string]string{"growth/equity/us": "0.36", "growth/equity/intl": "0.24", "growth/equity": "0.6", "growth/crypto": "0.2"}
	for path, target := range targets {
		if sl := sleeve(t, s, path); !sl.Target.Equal(d(target)) {
			t.Errorf("%s target = %s, want %s", path, sl.Target, target)
		}
	}
	// growth's 10% reaches equity, us and crypto; intl sets its own rule:
	// min(1%, 50% x 24%) = 1%.
	halfWidths := map[string]string{"growth": "0.1", "growth/equity": "0.1", "growth/equity/us": "0.1", "growth/crypto": "0.1",
		"growth/equity/intl": "0.01", "cash": "0.05"}
	for path, hw := range halfWidths {
		if sl := sleeve(t, s, path); !sl.HalfWidthValue.Equal(d(hw).Mul(s.Total)) {
			t.Errorf("%s half-width value = %s, want %s x %s", path, sl.HalfWidthValue, hw, s.Total)
		}
	}
}
