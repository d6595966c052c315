// Package fixed is exact arithmetic on non-negative decimals held as
// unsigned 128-bit integers at a chosen power of ten, without allocation.
// Every operation reports when its result does not fit, so that a caller
// can fall back to decimal arithmetic: nothing here rounds.
package fixed

import (
	"math/bits"

	"github.com/shopspring/decimal"
)

// U128 is an unsigned 128-bit integer.
type U128 struct{ hi, lo uint64 }

// From returns x as a U128.
func From(x uint64) U128 { return U128{lo: x} }

// Mul64 returns a*b, which always fits.
func Mul64(a, b uint64) U128 {
	hi, lo := bits.Mul64(a, b)
	return U128{hi, lo}
}

// IsZero reports whether x is zero.
func (x U128) IsZero() bool { return x.hi == 0 && x.lo == 0 }

// Add returns x+y; ok is false when it overflows.
func (x U128) Add(y U128) (U128, bool) {
	lo, c := bits.Add64(x.lo, y.lo, 0)
	hi, c := bits.Add64(x.hi, y.hi, c)
	return U128{hi, lo}, c == 0
}

// Diff returns |x-y|.
func (x U128) Diff(y U128) U128 {
	if x.Cmp(y) < 0 {
		x, y = y, x
	}
	lo, b := bits.Sub64(x.lo, y.lo, 0)
	hi, _ := bits.Sub64(x.hi, y.hi, b)
	return U128{hi, lo}
}

// Mul returns x*m; ok is false when it overflows.
func (x U128) Mul(m uint64) (U128, bool) {
	hh, hl := bits.Mul64(x.hi, m)
	lh, ll := bits.Mul64(x.lo, m)
	hi, c := bits.Add64(hl, lh, 0)
	return U128{hi, ll}, hh == 0 && c == 0
}

// Less64 reports whether a*b < c*d, exactly.
func Less64(a, b, c, d uint64) bool { return Mul64(a, b).Cmp(Mul64(c, d)) < 0 }

// Cmp returns -1, 0 or +1 as x is less than, equal to or greater than y.
func (x U128) Cmp(y U128) int {
	switch {
	case x.hi < y.hi:
		return -1
	case x.hi > y.hi:
		return 1
	case x.lo < y.lo:
		return -1
	case x.lo > y.lo:
		return 1
	}
	return 0
}

// Scale returns x*10^k for k >= 0; ok is false when it overflows or k
// is negative.
func (x U128) Scale(k int32) (U128, bool) {
	if k < 0 {
		return U128{}, false
	}
	for k > 0 {
		n := min(k, 19)
		var ok bool
		if x, ok = x.Mul(pow10[n]); !ok {
			return U128{}, false
		}
		k -= n
	}
	return x, true
}

// Pow10 returns 10^k for 0 <= k <= 19; ok is false otherwise.
func Pow10(k int32) (uint64, bool) {
	if k < 0 || int(k) >= len(pow10) {
		return 0, false
	}
	return pow10[k], true
}

// pow10[k] is 10^k, for k <= 19.
var pow10 = func() (p [20]uint64) {
	p[0] = 1
	for k := 1; k < len(p); k++ {
		p[k] = p[k-1] * 10
	}
	return p
}()

// Big returns x*10^exp as a decimal (it allocates).
func (x U128) Big(exp int32) decimal.Decimal {
	if x.hi == 0 && x.lo < 1<<63 {
		return decimal.New(int64(x.lo), exp)
	}
	hi := decimal.NewFromUint64(x.hi).Mul(decimal.NewFromUint64(1 << 32)).Mul(decimal.NewFromUint64(1 << 32))
	return hi.Add(decimal.NewFromUint64(x.lo)).Shift(exp)
}

// Coef returns the coefficient and exponent of d (d = c*10^exp) when d is
// not negative and its coefficient fits in 63 bits; ok is false
// otherwise. It does not allocate.
func Coef(d decimal.Decimal) (c uint64, exp int32, ok bool) {
	if d.NumDigits() > 18 { // beyond what CoefficientInt64 holds
		return 0, 0, false
	}
	v := d.CoefficientInt64()
	if v < 0 {
		return 0, 0, false
	}
	return uint64(v), d.Exponent(), true
}

// Num is a non-negative decimal held exactly: V*10^Exp.
type Num struct {
	V   U128
	Exp int32
}

// Of returns d as a Num; ok is false when d is negative or its
// coefficient does not fit in 63 bits.
func Of(d decimal.Decimal) (Num, bool) {
	c, e, ok := Coef(d)
	return Num{From(c), e}, ok
}

// At returns n's coefficient at exponent exp <= n.Exp; ok is false when
// it does not fit (or exp > n.Exp).
func (n Num) At(exp int32) (U128, bool) {
	if n.V.IsZero() {
		return U128{}, true
	}
	return n.V.Scale(n.Exp - exp)
}

// Align returns a and b at their smaller exponent, and that exponent; ok
// is false when one does not fit.
func Align(a, b Num) (x, y U128, exp int32, ok bool) {
	switch {
	case a.V.IsZero():
		exp = b.Exp // a zero has no scale of its own
	case b.V.IsZero():
		exp = a.Exp
	default:
		exp = min(a.Exp, b.Exp)
	}
	x, okA := a.At(exp)
	y, okB := b.At(exp)
	return x, y, exp, okA && okB
}

// Add returns a+b; ok is false when it does not fit.
func (n Num) Add(b Num) (Num, bool) {
	x, y, e, ok := Align(n, b)
	if !ok {
		return Num{}, false
	}
	s, ok := x.Add(y)
	return Num{s, e}, ok
}

// Mul returns a*b; ok is false when it does not fit. b's coefficient
// must fit in 64 bits (b.V.hi == 0), else ok is false.
func (n Num) Mul(b Num) (Num, bool) {
	if b.V.hi != 0 {
		if n.V.hi != 0 {
			return Num{}, false
		}
		n, b = b, n
	}
	p, ok := n.V.Mul(b.V.lo)
	return Num{p, n.Exp + b.Exp}, ok
}

// Cmp compares a and b: -1, 0 or +1; ok is false when they cannot be
// aligned.
func Cmp(a, b Num) (int, bool) {
	x, y, _, ok := Align(a, b)
	return x.Cmp(y), ok
}

// Diff returns |a-b|; ok is false when they cannot be aligned.
func Diff(a, b Num) (Num, bool) {
	x, y, e, ok := Align(a, b)
	return Num{x.Diff(y), e}, ok
}

// Sub returns a-b; ok is false when b is greater than a or they cannot be
// aligned.
func Sub(a, b Num) (Num, bool) {
	x, y, e, ok := Align(a, b)
	if !ok || x.Cmp(y) < 0 {
		return Num{}, false
	}
	return Num{x.Diff(y), e}, true
}

// divSmall returns x/m rounded down and the remainder; m must not be zero.
func (x U128) divSmall(m uint64) (U128, uint64) {
	hi, r := x.hi/m, x.hi%m
	lo, r := bits.Div64(r, x.lo, m)
	return U128{hi, lo}, r
}

// RatioFloor returns an integer q <= a/b*10^places: the ratio rounded
// down, exactly so when b's coefficient fits in 64 bits at the exponent
// a and b share (else both are cut to fit, a rounded down and b up, which
// only lowers q). A ratio of 2^64 or more gives the largest uint64. ok is
// false when b is zero, a and b cannot be aligned, or places is negative.
func RatioFloor(a, b Num, places int32) (q uint64, ok bool) {
	return ratio(a, b, places, false)
}

// RatioCeil returns an integer q >= a/b*10^places: the ratio rounded up,
// exactly so when b's coefficient fits in 64 bits at the exponent a and b
// share (else both are cut to fit, a rounded up and b down, which only
// raises q). ok is false when b is zero, the figures cannot be aligned,
// places is negative, or q does not fit in 64 bits.
func RatioCeil(a, b Num, places int32) (q uint64, ok bool) {
	return ratio(a, b, places, true)
}

func ratio(a, b Num, places int32, up bool) (uint64, bool) {
	x, y, _, ok := Align(a, b)
	if !ok || y.IsZero() || places < 0 {
		return 0, false
	}
	for y.hi != 0 { // b cut to 64 bits, a with it: the ratio moves the safe way
		var rx, ry uint64
		x, rx = x.divSmall(10)
		y, ry = y.divSmall(10)
		if up {
			if rx > 0 {
				x, _ = x.Add(From(1)) // x < 2^124 after the division: no overflow
			}
		} else if ry > 0 {
			y, _ = y.Add(From(1))
		}
	}
	if y.lo == 0 {
		return 0, false
	}
	xs, fits := x.Scale(places)
	if !fits || xs.hi >= y.lo { // the quotient is 2^64 or more
		if up {
			return 0, false
		}
		return ^uint64(0), true
	}
	q, r := bits.Div64(xs.hi, xs.lo, y.lo)
	if up && r > 0 {
		if q == ^uint64(0) {
			return 0, false
		}
		q++
	}
	return q, true
}
