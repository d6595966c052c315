package plan

import (
	"cmp"
	"math"
	"math/bits"

	"github.com/shopspring/decimal"
)

// num is an exact decimal number for the polish, which tries thousands of
// moves and rates each: v x 10^e in an int64 while the figure fits, and a
// decimal.Decimal (big) only when it does not.
//
// Every operation is exact, as decimal's is: it is done on int64
// coefficients brought to the smaller of the two exponents, and each step
// that could overflow (raising a coefficient to a smaller exponent, a sum,
// a product) is checked; the first that would not fit makes the operation
// fall back to decimal arithmetic on the same values, so a result never
// differs from decimal's. The planner's figures are sums of money of a
// household and quantities of steps: at the usual exponents (cents, and a
// few more decimals for steps of 0.0001 and prices in cents) they stay far
// below 2^63 (9.2 x 10^18, a household of 10^12 dollars at 10^-6), so the
// fallback is rare and costs only the allocations decimal arithmetic
// always costs. A small num never holds math.MinInt64, so that negating
// it cannot overflow.
type num struct {
	v int64
	e int32
	d *decimal.Decimal // the value when big: nil while it fits
}

// numOne is the number 1.
var numOne = num{v: 1}

// numOf returns d as a num.
func numOf(d decimal.Decimal) num {
	if d.NumDigits() > 18 {
		return bigNum(d)
	}
	// Trailing zeros dropped (0.25000000 is 25 x 10^-2), so that products
	// stay small.
	x := num{v: d.CoefficientInt64(), e: d.Exponent()}
	if x.v&1 != 0 {
		return x // odd: no trailing zero
	}
	return x.trimmed()
}

// trimmed returns x without the trailing zeros of its coefficient, as
// numOf gives a decimal of its value: 1200 x 10^-2 is 12 x 10^0.
func (x num) trimmed() num {
	if x.d != nil || x.v%10 != 0 || x.v == 0 {
		return x
	}
	// Four zeros at a time, then two, then one: an int64 has at most 18.
	// (x%c == 0 compiles to a multiplication, without dividing.)
	for x.v%10000 == 0 {
		x.v, x.e = x.v/10000, x.e+4
	}
	if x.v%100 == 0 {
		x.v, x.e = x.v/100, x.e+2
	}
	if x.v%10 == 0 {
		x.v, x.e = x.v/10, x.e+1
	}
	return x
}

// numInt returns the integer n as a num.
func numInt(n int64) num { return num{v: n} }

// dec returns x as a decimal.
func (x num) dec() decimal.Decimal {
	if x.isBig() {
		return *x.d
	}
	return decimal.New(x.v, x.e)
}

// bigNum returns d as a big num: a figure that did not fit stays a
// decimal for the rest of the polish.
func bigNum(d decimal.Decimal) num { return num{d: &d} }

// isBig reports whether x is held as a decimal.
func (x num) isBig() bool { return x.d != nil }

// at returns x's coefficient at exponent e <= x.e, if it fits.
func (x num) at(e int32) (int64, bool) {
	k := x.e - e
	if k == 0 {
		return x.v, true
	}
	if k < 0 || k >= int32(len(powersOfTen)) {
		return 0, x.v == 0
	}
	if lim := maxTimesTen[k]; x.v > lim || x.v < -lim {
		return 0, false
	}
	return x.v * powersOfTen[k], true
}

// maxTimesTen holds math.MaxInt64 / 10^k for k from 0 to 18: the largest
// coefficient that may be raised k exponents.
var maxTimesTen = func() [len(powersOfTen)]int64 {
	var m [len(powersOfTen)]int64
	for k, p := range powersOfTen {
		m[k] = math.MaxInt64 / p
	}
	return m
}()

// align returns x and y's coefficients at their smaller exponent, and that
// exponent; ok is false when either is big or does not fit there.
func align(x, y num) (a, b int64, e int32, ok bool) {
	if x.isBig() || y.isBig() {
		return 0, 0, 0, false
	}
	e = min(x.e, y.e)
	a, okA := x.at(e)
	b, okB := y.at(e)
	return a, b, e, okA && okB
}

// The arithmetic the polish does most (Add, Sub, Cmp, Mul, and ratio for
// the integer divisions) is inlined where it is called: its common case,
// two small figures at one exponent, takes a few instructions there, and
// the rest is a call to its slow path. That slow path is passed to the
// function that holds the common case (add, sub, cmp, mul, ratio) as a
// parameter, because the Go compiler counts a call through a parameter
// as cheap when it weighs what to inline (cmd/compile's
// inlineParamCallCost), and a direct call as too dear for a function
// this small to be inlined with it. The result is the same either way:
// only where the code runs changes.

// Add returns x + y.
func (x num) Add(y num) num { return x.add(y, num.addSlow) }

// add is Add, with its slow path passed in (see above).
func (x num) add(y num, slow func(x, y num) num) num {
	// The common case, at the same exponent and without overflow.
	s := x.v + y.v
	if x.e != y.e || x.d != nil || y.d != nil || (s > x.v) != (y.v > 0) || s == math.MinInt64 {
		return slow(x, y)
	}
	return num{v: s, e: x.e}
}

// addSlow is Add when the exponents differ, a figure is big or the sum
// overflows.
func (x num) addSlow(y num) num {
	switch {
	case !y.isBig() && y.v == 0:
		return x
	case !x.isBig() && x.v == 0:
		return y
	}
	if a, b, e, ok := align(x, y); ok {
		if s := a + b; (s > a) == (b > 0) && s != math.MinInt64 {
			return num{v: s, e: e}
		}
	}
	return bigNum(x.dec().Add(y.dec()))
}

// Sub returns x - y.
func (x num) Sub(y num) num { return x.sub(y, num.subSlow) }

// sub is Sub, with its slow path passed in (see Add).
func (x num) sub(y num, slow func(x, y num) num) num {
	// As Add: y.v is never math.MinInt64, so -y.v does not overflow.
	s := x.v - y.v
	if x.e != y.e || x.d != nil || y.d != nil || (s < x.v) != (y.v > 0) || s == math.MinInt64 {
		return slow(x, y)
	}
	return num{v: s, e: x.e}
}

// subSlow is Sub when the exponents differ, a figure is big or the
// difference overflows: the sum with -y (whose own fast path would fail
// as Sub's did).
func (x num) subSlow(y num) num {
	if x.isBig() || y.isBig() {
		return bigNum(x.dec().Sub(y.dec()))
	}
	return x.addSlow(y.Neg())
}

// RoundFloor returns x rounded down to a multiple of 10^e, as decimal's
// RoundFloor(-e) does.
func (x num) RoundFloor(e int32) num {
	switch {
	case x.isBig():
		return bigNum(x.d.RoundFloor(-e))
	case x.e >= e:
		return x
	case e-x.e >= int32(len(powersOfTen)):
		// |x| < 10^e: 0, or -10^e below zero.
		if x.v < 0 {
			return num{v: -1, e: e}
		}
		return num{e: e}
	}
	p := powersOfTen[e-x.e]
	q := x.v / p
	if x.v%p < 0 {
		q--
	}
	return num{v: q, e: e}
}

// Neg returns -x.
func (x num) Neg() num {
	if x.d != nil {
		return negBig(x)
	}
	x.v = -x.v
	return x
}

// negBig is Neg of a big x, apart so that Neg is inlined.
//
//go:noinline
func negBig(x num) num { return bigNum(x.d.Neg()) }

// Abs returns |x|.
func (x num) Abs() num {
	if x.d == nil {
		if x.v < 0 {
			x.v = -x.v
		}
		return x
	}
	return absBig(x)
}

// absBig is Abs of a big x, apart so that Abs is inlined.
//
//go:noinline
func absBig(x num) num { return bigNum(x.d.Abs()) }

// Sign returns -1, 0 or 1.
func (x num) Sign() int {
	switch {
	case x.d != nil:
		return x.d.Sign()
	case x.v < 0:
		return -1
	case x.v > 0:
		return 1
	}
	return 0
}

// IsZero reports whether x is 0.
func (x num) IsZero() bool { return x.Sign() == 0 }

// Cmp returns -1, 0 or 1 as x is less than, equal to or greater than y.
func (x num) Cmp(y num) int { return x.cmp(y, num.cmpSlow) }

// cmp is Cmp, with its slow path passed in (see Add).
func (x num) cmp(y num, slow func(x, y num) int) int {
	// The common case: both small (or the same big figure, v 0) at one
	// exponent.
	if x.e != y.e || x.d != y.d {
		return slow(x, y)
	}
	if x.v < y.v {
		return -1
	}
	if x.v > y.v {
		return 1
	}
	return 0
}

// cmpSlow is Cmp when the exponents differ or a figure is big.
func (x num) cmpSlow(y num) int {
	if !x.isBig() && !y.isBig() && (x.e == y.e || x.v == 0 || y.v == 0 || (x.v < 0) != (y.v < 0)) {
		// Same exponent, or a zero, or opposite signs: the coefficients'
		// order (their signs') is the numbers'.
		a, b := x.v, y.v
		if x.e != y.e {
			a, b = int64(x.Sign()), int64(y.Sign())
		}
		return cmp.Compare(a, b)
	}
	if a, b, _, ok := align(x, y); ok {
		return cmp.Compare(a, b)
	}
	if sx, sy := x.Sign(), y.Sign(); sx != sy {
		return cmp.Compare(sx, sy)
	}
	return x.dec().Cmp(y.dec())
}

// LessThan reports whether x < y.
func (x num) LessThan(y num) bool {
	// Both small (or the same big figure, v 0) at one exponent.
	if x.e == y.e && x.d == y.d {
		return x.v < y.v
	}
	return lessSlow(x, y)
}

// lessSlow is LessThan when cmpSlow decides, apart so that LessThan is
// inlined.
//
//go:noinline
func lessSlow(x, y num) bool { return x.cmpSlow(y) < 0 }

// GreaterThan reports whether x > y.
func (x num) GreaterThan(y num) bool {
	// Both small (or the same big figure, v 0) at one exponent.
	if x.e == y.e && x.d == y.d {
		return x.v > y.v
	}
	return lessSlow(y, x)
}

// Equal reports whether x = y.
func (x num) Equal(y num) bool { return x.Cmp(y) == 0 }

// Mul returns x x y.
func (x num) Mul(y num) num { return x.mul(y, num.mulSlow) }

// mul is Mul, with its slow path passed in (see Add).
func (x num) mul(y num, slow func(x, y num) num) num {
	// The common case: both small, from -2^31 to 2^31 - 1, whose product
	// is at most 2^62 in magnitude (no overflow, never math.MinInt64).
	const half = 1 << 31
	if x.d == nil && y.d == nil && uint64(x.v+half) < 2*half && uint64(y.v+half) < 2*half {
		return num{v: x.v * y.v, e: x.e + y.e}
	}
	return slow(x, y)
}

// mulSlow is Mul without its short path (for any figures): Mul when a
// figure is big or outside mul's range.
func (x num) mulSlow(y num) num {
	if !x.isBig() && !y.isBig() {
		hi, lo := bits.Mul64(absU(x.v), absU(y.v))
		if hi == 0 && lo <= math.MaxInt64 {
			v := int64(lo)
			if (x.v < 0) != (y.v < 0) {
				v = -v
			}
			return num{v: v, e: x.e + y.e}
		}
	}
	return bigNum(x.dec().Mul(y.dec()))
}

// QuoRem returns the integer quotient of x by y, truncated toward zero,
// and the remainder x - q x y, as decimal's QuoRem(y, 0) does. y must not
// be zero.
func (x num) QuoRem(y num) (q, r num) {
	if a, b, e, ok := x.ratio(y, align); ok {
		qv := a / b
		return num{v: qv}, num{v: a - qv*b, e: e}
	}
	qd, rd := x.dec().QuoRem(y.dec(), 0)
	return bigNum(qd), bigNum(rd)
}

// DivRound returns x / y rounded to an integer, half away from zero, as
// decimal's DivRound(y, 0) does. y must not be zero.
func (x num) DivRound(y num) num {
	if a, b, _, ok := x.ratio(y, align); ok {
		q, r := a/b, a%b
		if ar, ab := absU(r), absU(b); ar >= ab-ar {
			if (a < 0) != (b < 0) {
				q--
			} else {
				q++
			}
		}
		return num{v: q}
	}
	return bigNum(x.dec().DivRound(y.dec(), 0))
}

// DivRoundTo returns x / y rounded to a multiple of 10^-places, half away
// from zero, as decimal's DivRound(y, places) does. y must not be zero.
func (x num) DivRoundTo(y num, places int32) num {
	if x.isBig() || y.isBig() {
		return bigNum(x.dec().DivRound(y.dec(), places))
	}
	q := num{v: x.v, e: x.e + places}.DivRound(y)
	if q.isBig() {
		return bigNum(q.d.Shift(-places))
	}
	return num{v: q.v, e: -places}
}

// ratio returns coefficients a and b with a / b = x / y, both at x and
// y's smaller exponent e, for an integer division; ok is false when y is
// zero or they do not fit. Figures at one exponent, the common case, need
// no aligning; align is passed in for the others (see Add), as
// x.ratio(y, align).
func (x num) ratio(y num, align func(x, y num) (a, b int64, e int32, ok bool)) (a, b int64, e int32, ok bool) {
	if x.e != y.e || x.d != nil || y.d != nil {
		a, b, e, ok = align(x, y)
		return a, b, e, ok && b != 0
	}
	return x.v, y.v, x.e, y.v != 0
}

// absU returns |v| for v > math.MinInt64.
func absU(v int64) uint64 {
	if v < 0 {
		return uint64(-v)
	}
	return uint64(v)
}

// maxNum returns the larger of x and y.
func maxNum(x, y num) num {
	if x.Cmp(y) >= 0 {
		return x
	}
	return y
}

// minNum returns the smaller of x and y.
func minNum(x, y num) num {
	if x.Cmp(y) <= 0 {
		return x
	}
	return y
}

// cmpProducts compares a x b with c x d, without allocating while the
// four are small, at least zero, and the products fit in 128 bits at a
// common exponent.
func cmpProducts(a, b, c, d num) int {
	if !a.isBig() && !b.isBig() && !c.isBig() && !d.isBig() && a.v >= 0 && b.v >= 0 && c.v >= 0 && d.v >= 0 {
		h1, l1 := bits.Mul64(absU(a.v), absU(b.v))
		h2, l2 := bits.Mul64(absU(c.v), absU(d.v))
		e1, e2 := a.e+b.e, c.e+d.e
		ok := true
		// Bring the product of the larger exponent down to the other's.
		for ; ok && e1 > e2; e1-- {
			h1, l1, ok = times10(h1, l1)
		}
		for ; ok && e2 > e1; e2-- {
			h2, l2, ok = times10(h2, l2)
		}
		if ok {
			switch {
			case h1 != h2:
				return cmpU(h1, h2)
			case l1 != l2:
				return cmpU(l1, l2)
			}
			return 0
		}
	}
	return a.dec().Mul(b.dec()).Cmp(c.dec().Mul(d.dec()))
}

func cmpU(x, y uint64) int {
	if x < y {
		return -1
	}
	return 1
}

// times10 returns the 128-bit number hi:lo times 10; ok is false on
// overflow.
func times10(hi, lo uint64) (h, l uint64, ok bool) {
	ph, pl := bits.Mul64(lo, 10)
	hh, hl := bits.Mul64(hi, 10)
	if hh != 0 {
		return 0, 0, false
	}
	h, carry := bits.Add64(hl, ph, 0)
	return h, pl, carry == 0
}
