package fixed

import (
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"
)

// randDec returns a random non-negative decimal: up to 19 digits, at an
// exponent from -12 to 6, zero now and then.
func randDec(r *rand.Rand) decimal.Decimal {
	if r.IntN(10) == 0 {
		return decimal.Zero
	}
	c := r.Int64N(1 << uint(r.IntN(62)+1))
	return decimal.New(c, int32(r.IntN(19)-12))
}

// TestAgainstDecimal: every operation either says it does not fit or
// gives exactly what decimal arithmetic gives.
func TestAgainstDecimal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	fits := 0
	for range 200000 {
		a, b := randDec(r), randDec(r)
		na, okA := Of(a)
		nb, okB := Of(b)
		if !okA || !okB {
			if a.NumDigits() <= 18 && b.NumDigits() <= 18 {
				t.Fatalf("Of(%s), Of(%s): want ok", a, b)
			}
			continue
		}
		if s, ok := na.Add(nb); ok {
			fits++
			if got := s.V.Big(s.Exp); !got.Equal(a.Add(b)) {
				t.Fatalf("%s+%s: got %s", a, b, got)
			}
		}
		if p, ok := na.Mul(nb); ok {
			if got := p.V.Big(p.Exp); !got.Equal(a.Mul(b)) {
				t.Fatalf("%s*%s: got %s", a, b, got)
			}
		}
		if c, ok := Cmp(na, nb); ok && c != a.Cmp(b) {
			t.Fatalf("cmp %s %s: got %d", a, b, c)
		}
		if d, ok := Diff(na, nb); ok {
			if got := d.V.Big(d.Exp); !got.Equal(a.Sub(b).Abs()) {
				t.Fatalf("|%s-%s|: got %s", a, b, got)
			}
		}
	}
	if fits < 100000 {
		t.Fatalf("only %d sums fit: the test checks too little", fits)
	}
	if _, ok := Of(decimal.NewFromInt(-1)); ok {
		t.Fatal("a negative decimal fits")
	}
	big := decimal.RequireFromString("123456789012345678901234567890")
	if _, ok := Of(big); ok {
		t.Fatal("a 30-digit decimal fits")
	}
	if _, ok := From(1 << 63).Scale(1); ok == false {
		t.Fatal("2^63*10 does not fit in 128 bits")
	}
	if _, ok := (U128{hi: 1 << 62}).Mul(4); ok {
		t.Fatal("an overflow was not reported")
	}
}

// TestZeroAllocs: the arithmetic allocates nothing.
func TestZeroAllocs(t *testing.T) {
	a, b := decimal.RequireFromString("285.12"), decimal.RequireFromString("0.1576")
	n := testing.AllocsPerRun(100, func() {
		na, _ := Of(a)
		nb, _ := Of(b)
		p, _ := na.Mul(nb)
		s, _ := p.Add(na)
		_, _ = Cmp(s, nb)
	})
	if n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

// TestRatioBounds: RatioFloor and RatioCeil bound a/b*10^places from
// below and above, exactly (the rounded ratio) when b fits in 64 bits,
// including for figures whose 128-bit products need cutting.
func TestRatioBounds(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	exact, checked := 0, 0
	for range 200000 {
		a, b := randDec(r), randDec(r)
		na, okA := Of(a)
		nb, okB := Of(b)
		if !okA || !okB {
			continue
		}
		if r.IntN(3) == 0 { // 128-bit figures, as sleeve values times totals are
			pa, okA := na.Mul(nb)
			pb, okB := nb.Mul(nb)
			if !okA || !okB {
				continue
			}
			na, nb, a, b = pa, pb, pa.V.Big(pa.Exp), pb.V.Big(pb.Exp)
		}
		places := int32(r.IntN(16))
		want := a.Shift(places)
		lo, okLo := RatioFloor(na, nb, places)
		hi, okHi := RatioCeil(na, nb, places)
		if b.IsZero() {
			if okLo || okHi {
				t.Fatalf("%s/%s: ok with a zero divisor", a, b)
			}
			continue
		}
		q, rem := want.QuoRem(b, 0) // exact: want = q*b + rem
		if okLo {
			checked++
			if decimal.NewFromUint64(lo).GreaterThan(q) {
				t.Fatalf("floor(%s/%s*10^%d) = %s, got %d", a, b, places, q, lo)
			}
			if lo == ^uint64(0) && q.LessThan(decimal.NewFromUint64(lo)) {
				t.Fatalf("%s/%s*10^%d: capped at 2^64-1 though the ratio is %s", a, b, places, q)
			}
			if nb.V.hi == 0 && na.Exp == nb.Exp && lo != ^uint64(0) && !decimal.NewFromUint64(lo).Equal(q) {
				t.Fatalf("floor(%s/%s*10^%d) = %s, got %d (not exact)", a, b, places, q, lo)
			}
			if decimal.NewFromUint64(lo).Equal(q) {
				exact++
			}
		}
		if okHi {
			ceil := q
			if !rem.IsZero() {
				ceil = q.Add(decimal.NewFromInt(1))
			}
			if decimal.NewFromUint64(hi).LessThan(ceil) {
				t.Fatalf("ceil(%s/%s*10^%d) = %s, got %d", a, b, places, ceil, hi)
			}
		}
	}
	if checked < 50000 || exact < checked/2 {
		t.Fatalf("%d ratios checked, %d exact: the test checks too little", checked, exact)
	}
	if q, ok := RatioFloor(Num{V: From(1)}, Num{V: From(3)}, 3); !ok || q != 333 {
		t.Fatalf("floor(1/3*1000) = %d, %v", q, ok)
	}
	if q, ok := RatioCeil(Num{V: From(1)}, Num{V: From(3)}, 3); !ok || q != 334 {
		t.Fatalf("ceil(1/3*1000) = %d, %v", q, ok)
	}
	if s, ok := Sub(Num{V: From(5), Exp: -1}, Num{V: From(2)}); ok {
		t.Fatalf("0.5-2 = %v: want not ok", s)
	}
}
