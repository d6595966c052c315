package dec64

import (
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"
)

// randDec returns a random decimal of either sign: up to 21 digits (some
// beyond an int64), at an exponent from -12 to 6, zero now and then (as
// decimal.Decimal{} or at an exponent).
func randDec(r *rand.Rand) decimal.Decimal {
	switch r.IntN(12) {
	case 0:
		return decimal.Decimal{}
	case 1:
		return decimal.New(0, int32(r.IntN(19)-12))
	}
	n := uint(r.IntN(70) + 1) // bits
	c := new(big.Int).Lsh(new(big.Int).SetUint64(r.Uint64()), 64)
	c.Add(c, new(big.Int).SetUint64(r.Uint64()))
	c.Rsh(c, 128-n)
	if r.IntN(2) == 0 {
		c.Neg(c)
	}
	return decimal.NewFromBigInt(c, int32(r.IntN(19)-12))
}

// same reports whether got is want, value and exponent.
func same(got, want decimal.Decimal) bool {
	return got.Exponent() == want.Exponent() && got.Cmp(want) == 0
}

// TestAgainstDecimal: every function gives what decimal's method gives,
// value and exponent, on operands that fit an int64 and operands that
// do not.
func TestAgainstDecimal(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 300000 {
		x, y := randDec(r), randDec(r)
		if got, want := Cmp(x, y), x.Cmp(y); got != want {
			t.Fatalf("Cmp(%s, %s) = %d, want %d", x, y, got, want)
		}
		if got, want := CmpF(Read(x), Read(y)), x.Cmp(y); got != want {
			t.Fatalf("CmpF(%s, %s) = %d, want %d", x, y, got, want)
		}
		if got, want := Add(x, y), x.Add(y); !same(got, want) {
			t.Fatalf("Add(%s, %s) = %s e%d, want %s e%d", x, y, got, got.Exponent(), want, want.Exponent())
		}
		if got, want := Sub(x, y), x.Sub(y); !same(got, want) {
			t.Fatalf("Sub(%s, %s) = %s e%d, want %s e%d", x, y, got, got.Exponent(), want, want.Exponent())
		}
		if got, want := Mul(x, y), x.Mul(y); !same(got, want) {
			t.Fatalf("Mul(%s, %s) = %s e%d, want %s e%d", x, y, got, got.Exponent(), want, want.Exponent())
		}
		if got, want := SubF(Read(x), Read(y)), x.Sub(y); !same(got.D, want) || got.fit && (got.c != want.CoefficientInt64() || got.e != want.Exponent()) {
			t.Fatalf("SubF(%s, %s) = %s e%d (%+v), want %s e%d", x, y, got.D, got.D.Exponent(), got, want, want.Exponent())
		}
		if h := randDec(r).Abs(); true {
			want := x.Sub(y).Abs().GreaterThan(h)
			if got, ok := OutOfBandF(Read(x), Read(y), Read(h)); ok && got != want {
				t.Fatalf("OutOfBandF(%s, %s, %s) = %v, want %v", x, y, h, got, want)
			}
		}
		places := int32(r.IntN(12) - 2)
		if got, want := Round(x, places), x.Round(places); !same(got, want) {
			t.Fatalf("Round(%s, %d) = %s e%d, want %s e%d", x, places, got, got.Exponent(), want, want.Exponent())
		}
		zs := []decimal.Decimal{x, y, randDec(r), randDec(r)}[:r.IntN(5)]
		var want decimal.Decimal
		if len(zs) > 0 {
			want = decimal.Sum(zs[0], zs[1:]...)
		}
		if got := Sum(zs); !same(got, want) {
			t.Fatalf("Sum(%s) = %s e%d, want %s e%d", zs, got, got.Exponent(), want, want.Exponent())
		}
		fs := make([]Figure, len(zs))
		for k, z := range zs {
			fs[k] = Read(z)
		}
		if got := SumF(fs); !same(got.D, want) || got.fit && (got.c != want.CoefficientInt64() || got.e != want.Exponent()) {
			t.Fatalf("SumF(%s) = %s e%d (%+v), want %s e%d", zs, got.D, got.D.Exponent(), got, want, want.Exponent())
		}
		if y.IsZero() {
			continue
		}
		q, rem := QuoRem(x, y)
		wq, wr := x.QuoRem(y, 0)
		if !same(q, wq) || !same(rem, wr) {
			t.Fatalf("QuoRem(%s, %s) = %s e%d, %s e%d, want %s e%d, %s e%d", x, y, q, q.Exponent(), rem, rem.Exponent(), wq, wq.Exponent(), wr, wr.Exponent())
		}
		if got, want := DivRound(x, y, places), x.DivRound(y, places); !same(got, want) {
			t.Fatalf("DivRound(%s, %s, %d) = %s e%d, want %s e%d", x, y, places, got, got.Exponent(), want, want.Exponent())
		}
	}
}

// TestChainedFigures feeds the figures that operations on figures return
// (their coefficients may have 19 digits, which Read never gives) to the
// operations on figures, against decimal on the same decimals.
func TestChainedFigures(t *testing.T) {
	// 0.9000000000000000000: a coefficient of 9e18 at exponent -19,
	// rounded to a whole number (10^19 is no int64).
	if got, want := RoundF(newFigure(9e18, -19), 0), decimal.New(9e18, -19).Round(0); !same(got.D, want) {
		t.Fatalf("RoundF(0.9 at e-19, 0) = %s, want %s", got.D, want)
	}
	r := rand.New(rand.NewPCG(5, 6))
	for range 200000 {
		x, y, z := randDec(r), randDec(r), randDec(r)
		chained := []Figure{MulF(Read(x), Read(y)), SubF(Read(x), Read(y)), SumF([]Figure{Read(x), Read(y), Read(z)})}
		for _, f := range chained {
			places := int32(r.IntN(26) - 3)
			if got, want := RoundF(f, places), f.D.Round(places); !same(got.D, want) {
				t.Fatalf("RoundF(%s e%d, %d) = %s, want %s", f.D, f.D.Exponent(), places, got.D, want)
			}
			if got, want := MulF(f, Read(z)), f.D.Mul(z); !same(got.D, want) {
				t.Fatalf("MulF(%s, %s) = %s, want %s", f.D, z, got.D, want)
			}
			if got, want := SubF(f, Read(z)), f.D.Sub(z); !same(got.D, want) {
				t.Fatalf("SubF(%s, %s) = %s, want %s", f.D, z, got.D, want)
			}
			if !z.IsZero() {
				if got, want := DivRoundF(f, Read(z), places), f.D.DivRound(z, places); !same(got.D, want) {
					t.Fatalf("DivRoundF(%s, %s, %d) = %s, want %s", f.D, z, places, got.D, want)
				}
			}
			h := randDec(r).Abs()
			if got, ok := OutOfBandF(f, Read(z), Read(h)); ok && got != f.D.Sub(z).Abs().GreaterThan(h) {
				t.Fatalf("OutOfBandF(%s, %s, %s) = %v", f.D, z, h, got)
			}
		}
	}
}

// TestHalfWay: DivRound and Round round exact halves away from zero, on
// both signs, and the fast paths are taken for them.
func TestHalfWay(t *testing.T) {
	for _, c := range []struct{ x, y, want string }{
		{"1", "8", "0.125"}, {"-1", "8", "-0.125"}, {"5", "40", "0.125"},
		{"0.0125", "0.1", "0.125"}, {"-0.0125", "0.1", "-0.125"},
		{"2.5", "1000", "0.003"}, {"-2.5", "1000", "-0.003"}, {"2.4999", "1000", "0.002"},
	} {
		x, y := decimal.RequireFromString(c.x), decimal.RequireFromString(c.y)
		if got := DivRound(x, y, 3); got.String() != c.want || !same(got, x.DivRound(y, 3)) {
			t.Errorf("DivRound(%s, %s, 3) = %s, want %s", c.x, c.y, got, c.want)
		}
	}
	for _, c := range []struct{ x, want string }{{"0.0125", "0.013"}, {"-0.0125", "-0.013"}, {"0.01249", "0.012"}} {
		x := decimal.RequireFromString(c.x)
		if got := Round(x, 3); got.String() != c.want || !same(got, x.Round(3)) {
			t.Errorf("Round(%s, 3) = %s, want %s", c.x, got, c.want)
		}
	}
}

// TestNoAllocation: a comparison of figures that fit does not allocate,
// whatever their exponents, and an addition allocates only its result.
func TestNoAllocation(t *testing.T) {
	x, y := decimal.RequireFromString("1234.5678"), decimal.RequireFromString("-99.1")
	if n := testing.AllocsPerRun(100, func() { Cmp(x, y) }); n != 0 {
		t.Errorf("Cmp allocates %v times", n)
	}
	if n, m := testing.AllocsPerRun(100, func() { sink = Add(x, y) }), testing.AllocsPerRun(100, func() { sink = decimal.New(1, 0) }); n != m {
		t.Errorf("Add allocates %v times, decimal.New %v", n, m)
	}
}

var sink decimal.Decimal

// TestPowerOfTen: PowerOfTen finds exactly the figures that are 10^k
// (against decimal's own arithmetic), and Int64 gives what Read found.
func TestPowerOfTen(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	check := func(d decimal.Decimal) {
		t.Helper()
		f := Read(d)
		k, ok := f.PowerOfTen()
		// d is 10^k when d > 0 and d / 10^(e+digits-1) is 1 exactly.
		want := d.Sign() > 0 && d.NumDigits() <= 18 && d.Equal(decimal.New(1, d.Exponent()+int32(d.NumDigits())-1))
		if ok != want || ok && !d.Equal(decimal.New(1, k)) {
			t.Fatalf("PowerOfTen(%s) = %d, %v; want a power: %v", d, k, ok, want)
		}
		c, e, fit := f.Int64()
		if fit != (d.NumDigits() <= 18) || e != d.Exponent() || fit && !decimal.New(c, e).Equal(d) {
			t.Fatalf("Int64(%s) = %d, %d, %v", d, c, e, fit)
		}
	}
	for j := range 18 { // c x 10^j at most 11 x 10^17 < 2^63
		for _, c := range []int64{1, 2, 9, 11} {
			v := c
			for range j {
				v *= 10
			}
			for _, e := range []int32{-12, -1, 0, 3} {
				check(decimal.New(v, e))
				check(decimal.New(v-1, e))
				check(decimal.New(v+1, e))
				check(decimal.New(-v, e))
			}
		}
	}
	for range 100000 {
		check(randDec(r))
	}
}

// TestSumCmp: SumCmp compares the sum of values with x as decimal does,
// for sums that fit an int64 and sums that do not.
func TestSumCmp(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for range 100000 {
		values := make([]decimal.Decimal, r.IntN(5))
		want := decimal.Zero
		for k := range values {
			values[k] = randDec(r)
			want = want.Add(values[k])
		}
		x := randDec(r)
		switch r.IntN(3) {
		case 0:
			x = want // equal, at the sum's exponent
		case 1:
			x = want.Round(int32(r.IntN(6))) // near it, at another exponent
		}
		if got := SumCmp(values, x); got != want.Cmp(x) {
			t.Fatalf("SumCmp(%v, %s) = %d, want %d", values, x, got, want.Cmp(x))
		}
	}
}

// TestMulByPowerOfTen: a factor whose coefficient is 1 (a step of
// 0.0001) gives the other factor shifted, value and exponent as
// decimal's Mul, and a figure that holds the product's coefficient.
func TestMulByPowerOfTen(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for range 100000 {
		x, p := randDec(r), decimal.New(1, int32(r.IntN(25)-12))
		for _, f := range []Figure{MulF(Read(x), Read(p)), MulF(Read(p), Read(x))} {
			want := x.Mul(p)
			if !same(f.D, want) || f.e != want.Exponent() || f.fit && (f.c != want.CoefficientInt64() || want.NumDigits() > 19) {
				t.Fatalf("MulF(%s, %s) = %s e%d (%+v), want %s e%d", x, p, f.D, f.D.Exponent(), f, want, want.Exponent())
			}
		}
		if got, want := Mul(x, p), x.Mul(p); !same(got, want) {
			t.Fatalf("Mul(%s, %s) = %s, want %s", x, p, got, want)
		}
	}
}
