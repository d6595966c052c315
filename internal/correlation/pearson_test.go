package correlation

import (
	"testing"

	"github.com/shopspring/decimal"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func decs(ss ...string) []decimal.Decimal {
	out := make([]decimal.Decimal, len(ss))
	for i, s := range ss {
		out[i] = dec(s)
	}
	return out
}

func mustPearson(t testing.TB, x, y []decimal.Decimal) Pearson {
	t.Helper()
	p, err := NewPearson(x, y)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The examples are worked out by hand; Cov, VarX and VarY are N² times
// the covariance and variances: N·Σxy − Σx·Σy, N·Σx² − (Σx)², N·Σy² − (Σy)².
func TestPearsonByHand(t *testing.T) {
	tests := []struct {
		name            string
		x, y            []decimal.Decimal
		cov, varX, varY string
		value           string // r truncated to 6 places
		above, notAbove string // r > above, not r > notAbove
		exact           bool   // notAbove is r itself
	}{
		{
			// Σx=15 Σy=30 Σx²=55 Σy²=220 Σxy=110: Cov = 550−450 = 100,
			// VarX = 275−225 = 50, VarY = 1100−900 = 200; r = 100/√10000 = 1.
			name: "perfectly correlated", x: decs("1", "2", "3", "4", "5"), y: decs("2", "4", "6", "8", "10"),
			cov: "100", varX: "50", varY: "200", value: "1", above: "0.999999", notAbove: "1", exact: true,
		},
		{
			// Σxy = 10+16+18+16+10 = 70: Cov = 350−450 = −100; r = −1.
			name: "perfectly anti-correlated", x: decs("1", "2", "3", "4", "5"), y: decs("10", "8", "6", "4", "2"),
			cov: "-100", varX: "50", varY: "200", value: "-1", above: "-1.000001", notAbove: "-1", exact: true,
		},
		{
			// Daily returns in percent 1, 2, −1, 3, 0 and 2, 1, −2, 2, 1:
			// Σx=0.05 Σy=0.04 Σx²=0.0015 Σy²=0.0014 Σxy=0.0012.
			// Cov = 5·0.0012 − 0.05·0.04 = 0.006 − 0.002 = 0.004
			// VarX = 5·0.0015 − 0.0025 = 0.005; VarY = 0.007 − 0.0016 = 0.0054
			// r = 0.004/√0.000027 = 40/√2700 = 0.76980035891950…; r² = 16/27.
			name: "five returns", x: decs("0.01", "0.02", "-0.01", "0.03", "0"), y: decs("0.02", "0.01", "-0.02", "0.02", "0.01"),
			cov: "0.004", varX: "0.005", varY: "0.0054", value: "0.7698",
			// 0.7698003589² = 0.592592592560… < 16/27 = 0.592592592592…
			// 0.7698003590² = 0.592592592714… > 16/27
			above: "0.7698003589", notAbove: "0.769800359",
		},
		{
			// x = 1,2,3 and y = 1,3,2: Σxy = 13, Cov = 39−36 = 3,
			// VarX = VarY = 42−36 = 6; r = 3/6 = 0.5 exactly.
			name: "one half", x: decs("1", "2", "3"), y: decs("1", "3", "2"),
			cov: "3", varX: "6", varY: "6", value: "0.5", above: "0.4999999", notAbove: "0.5", exact: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPearson(t, tt.x, tt.y)
			if p.N != len(tt.x) || !p.Cov.Equal(dec(tt.cov)) || !p.VarX.Equal(dec(tt.varX)) || !p.VarY.Equal(dec(tt.varY)) {
				t.Errorf("N %d Cov %s VarX %s VarY %s, want %d %s %s %s", p.N, p.Cov, p.VarX, p.VarY, len(tt.x), tt.cov, tt.varX, tt.varY)
			}
			if !p.Defined() {
				t.Fatal("not defined")
			}
			if v := p.Value(ValuePlaces); !v.Equal(dec(tt.value)) {
				t.Errorf("Value = %s, want %s", v, tt.value)
			}
			if !p.Above(dec(tt.above)) || p.Above(dec(tt.notAbove)) {
				t.Errorf("Above(%s) = %v, Above(%s) = %v; want true, false", tt.above, p.Above(dec(tt.above)), tt.notAbove, p.Above(dec(tt.notAbove)))
			}
			// r < notAbove unless notAbove is r itself.
			if p.Below(dec(tt.above)) || p.Below(dec(tt.notAbove)) == tt.exact {
				t.Errorf("Below(%s) = %v, Below(%s) = %v", tt.above, p.Below(dec(tt.above)), tt.notAbove, p.Below(dec(tt.notAbove)))
			}
			// The same series swapped, negated in one, and scaled give
			// the same r, the opposite r, and the same r.
			if s := mustPearson(t, tt.y, tt.x); !s.Value(ValuePlaces).Equal(dec(tt.value)) {
				t.Errorf("swapped: %s", s.Value(ValuePlaces))
			}
			neg := make([]decimal.Decimal, len(tt.y))
			scaled := make([]decimal.Decimal, len(tt.y))
			for i, v := range tt.y {
				neg[i], scaled[i] = v.Neg(), v.Mul(dec("37.5")).Add(dec("-4"))
			}
			if n := mustPearson(t, tt.x, neg); !n.Value(ValuePlaces).Equal(dec(tt.value).Neg()) {
				t.Errorf("negated: %s", n.Value(ValuePlaces))
			}
			if s := mustPearson(t, tt.x, scaled); !s.Value(ValuePlaces).Equal(dec(tt.value)) || s.Above(dec(tt.notAbove)) || !s.Above(dec(tt.above)) {
				t.Errorf("scaled: %s", s.Value(ValuePlaces))
			}
		})
	}
}

func TestPearsonNegativeThresholds(t *testing.T) {
	five := mustPearson(t, decs("0.01", "0.02", "-0.01", "0.03", "0"), decs("0.02", "0.01", "-0.02", "0.02", "0.01"))
	anti := mustPearson(t, decs("1", "2", "3"), decs("3", "1", "2")) // Σxy = 11: Cov = 33−36 = −3, r = −0.5
	if !anti.Value(6).Equal(dec("-0.5")) {
		t.Fatalf("anti = %s, want -0.5", anti.Value(6))
	}
	// x = 1,2,3 and y = 1,0,1: Σxy = 4, Cov = 12−12 = 0, VarY = 6−4 = 2: r = 0.
	zero := mustPearson(t, decs("1", "2", "3"), decs("1", "0", "1"))
	if !zero.Defined() || !zero.Cov.IsZero() {
		t.Fatalf("zero = %+v", zero)
	}
	tests := []struct {
		p            Pearson
		t            string
		above, below bool
	}{
		{zero, "-0.1", true, false},
		{zero, "0", false, false},
		{zero, "0.1", false, true},
		{five, "-0.5", true, false}, // r ≥ 0 is above any negative t
		{five, "0", true, false},
		{anti, "-0.6", true, false}, // −0.5 > −0.6
		{anti, "-0.5", false, false},
		{anti, "-0.4", false, true},
		{anti, "0", false, true},
		{anti, "0.3", false, true},
	}
	for _, tt := range tests {
		if a, b := tt.p.Above(dec(tt.t)), tt.p.Below(dec(tt.t)); a != tt.above || b != tt.below {
			t.Errorf("r=%s t=%s: Above %v Below %v, want %v %v", tt.p.Value(6), tt.t, a, b, tt.above, tt.below)
		}
	}
	// Truncation is toward zero for negative values too:
	// −0.76980035… shows as −0.769800.
	neg := mustPearson(t, decs("0.01", "0.02", "-0.01", "0.03", "0"), decs("-0.02", "-0.01", "0.02", "-0.02", "-0.01"))
	if v := neg.Value(6); v.String() != "-0.7698" || neg.Value(2).String() != "-0.76" || neg.Value(0).String() != "0" {
		t.Errorf("Value = %s %s %s, want -0.7698 -0.76 0", v, neg.Value(2), neg.Value(0))
	}
}

func TestPearsonUndefined(t *testing.T) {
	tests := []struct {
		name string
		x, y []decimal.Decimal
	}{
		{"empty", nil, nil},
		{"one point", decs("1"), decs("2")},
		{"constant x", decs("0.01", "0.01", "0.01"), decs("1", "2", "3")},
		{"constant y", decs("1", "2", "3"), decs("0", "0", "0")},
	}
	for _, tt := range tests {
		p := mustPearson(t, tt.x, tt.y)
		if p.Defined() || p.Above(dec("-0.9")) || p.Below(dec("0.9")) || !p.Value(6).IsZero() {
			t.Errorf("%s: Defined %v Above %v Below %v Value %s", tt.name, p.Defined(), p.Above(dec("-0.9")), p.Below(dec("0.9")), p.Value(6))
		}
	}
	if _, err := NewPearson(decs("1", "2"), decs("1")); err == nil {
		t.Error("series of different lengths: no error")
	}
}
