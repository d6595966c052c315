// Package dec64 does shopspring/decimal arithmetic on the int64
// coefficients of the operands while they fit, and with decimal itself when
// they do not. Every function returns exactly what the decimal method it
// is named after returns, value and exponent: only the cost differs.
//
// Each decimal operation allocates a big.Int and its words, and those
// whose operands have different exponents (a price in cents times a step
// of 0.0001 plus a cash balance) rescale first, which allocates and
// multiplies again; a comparison of two such figures allocates too. Drift
// and the planner do these operations on every sleeve, position and order,
// on figures that almost always fit an int64 at their common exponent: a
// household of 10^12 dollars at 10^-6. Here each step that could overflow
// (raising a coefficient to a smaller exponent, a sum, a product) is
// checked, and the first that would not fit hands the whole operation to
// decimal, so no result ever differs from decimal's. A result costs one
// decimal.New, or nothing for a comparison.
package dec64

import (
	"math"
	"math/bits"

	"github.com/shopspring/decimal"
)

// pow10 holds 10^0 to 10^19, the powers of ten a uint64 holds.
var pow10 = func() [20]uint64 {
	var p [20]uint64
	p[0] = 1
	for k := 1; k < len(p); k++ {
		p[k] = p[k-1] * 10
	}
	return p
}()

// Figure is a decimal read once (Read) for several operations: its
// coefficient when it fits an int64 (and is not math.MinInt64), and its
// exponent. The functions on figures (MulF, DivRoundF, SubF, RoundF,
// OutOfBandF) give what those on decimals give, without reading their
// operands again, and return figures of their results for the next.
type Figure struct {
	D   decimal.Decimal // the value
	c   int64           // D's coefficient, when fit
	e   int32           // D's exponent
	fit bool
}

// Read returns d as a Figure.
func Read(d decimal.Decimal) Figure {
	f := Figure{D: d, e: d.Exponent()}
	if d.NumDigits() <= 18 {
		f.c, f.fit = d.CoefficientInt64(), true
	}
	return f
}

// Int64 returns c and e with f = c x 10^e, as Read found them: ok is
// false when the coefficient does not fit an int64 (or is
// math.MinInt64), and f.D then holds the value.
func (f Figure) Int64() (c int64, e int32, ok bool) { return f.c, f.e, f.fit }

// PowerOfTen reports whether f is 10^k for some integer k (1, 0.001, 100)
// and returns k. A coefficient that does not fit an int64 answers false.
func (f Figure) PowerOfTen() (k int32, ok bool) {
	if !f.fit || f.c <= 0 {
		return 0, false
	}
	// j = floor(log10(c)): Len64 x 1233 >> 12 is it or one more (as in
	// decimal's NumDigits); c is a power of ten when it is 10^j.
	j := bits.Len64(uint64(f.c)) * 1233 >> 12
	if uint64(f.c) < pow10[j] {
		j--
	}
	if uint64(f.c) != pow10[j] {
		return 0, false
	}
	return f.e + int32(j), true
}

// newFigure returns the figure c x 10^e, made as decimal.New.
func newFigure(c int64, e int32) Figure {
	return Figure{D: decimal.New(c, e), c: c, e: e, fit: c != math.MinInt64}
}

// at returns f's coefficient at exponent e <= f.e, when it fits.
func (f Figure) at(e int32) (int64, bool) {
	if !f.fit {
		return 0, false
	}
	k := f.e - e
	switch {
	case k == 0 || f.c == 0:
		return f.c, k >= 0
	case k < 0 || k >= int32(len(pow10)):
		return 0, false
	}
	hi, lo := bits.Mul64(absU(f.c), pow10[k])
	if hi != 0 || lo > math.MaxInt64 {
		return 0, false
	}
	if f.c < 0 {
		return -int64(lo), true
	}
	return int64(lo), true
}

// Coef returns c with d = c x 10^e, for e <= d.Exponent(), when c fits an
// int64 (and is not math.MinInt64, so that it can be negated).
func Coef(d decimal.Decimal, e int32) (int64, bool) { return Read(d).at(e) }

// pair returns x and y's coefficients at their smaller exponent, and that
// exponent, when both fit.
func pair(x, y decimal.Decimal) (a, b int64, e int32, ok bool) {
	e = min(x.Exponent(), y.Exponent())
	a, okA := Coef(x, e)
	b, okB := Coef(y, e)
	return a, b, e, okA && okB
}

// absU returns |v| for v > math.MinInt64.
func absU(v int64) uint64 {
	if v < 0 {
		return uint64(-v)
	}
	return uint64(v)
}

// signed returns u with the sign neg as an int64, when it fits.
func signed(u uint64, neg bool) (int64, bool) {
	if u > math.MaxInt64 {
		return 0, false
	}
	if neg {
		return -int64(u), true
	}
	return int64(u), true
}

// Cmp returns x.Cmp(y).
func Cmp(x, y decimal.Decimal) int {
	if a, b, _, ok := pair(x, y); ok {
		return cmp64(a, b)
	}
	if sx, sy := x.Sign(), y.Sign(); sx != sy {
		return cmp64(int64(sx), int64(sy))
	}
	return x.Cmp(y)
}

// CmpF is Cmp of figures.
func CmpF(x, y Figure) int {
	e := min(x.e, y.e)
	if a, ok := x.at(e); ok {
		if b, ok := y.at(e); ok {
			return cmp64(a, b)
		}
	}
	if sx, sy := x.D.Sign(), y.D.Sign(); sx != sy {
		return cmp64(int64(sx), int64(sy))
	}
	return x.D.Cmp(y.D)
}

func cmp64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Add returns x.Add(y).
func Add(x, y decimal.Decimal) decimal.Decimal {
	if a, b, e, ok := pair(x, y); ok {
		if s, ok := add64(a, b); ok {
			return decimal.New(s, e)
		}
	}
	return x.Add(y)
}

// Sub returns x.Sub(y).
func Sub(x, y decimal.Decimal) decimal.Decimal { return SubF(Read(x), Read(y)).D }

// add64 returns a + b when it fits (and is not math.MinInt64).
func add64(a, b int64) (int64, bool) {
	s := a + b
	return s, (s > a) == (b > 0) && s != math.MinInt64
}

// Sum returns decimal.Sum of values, and zero (decimal.Decimal{}) for none.
func Sum(values []decimal.Decimal) decimal.Decimal {
	switch len(values) {
	case 0:
		return decimal.Decimal{}
	case 1:
		return values[0]
	}
	e := values[0].Exponent()
	for _, v := range values[1:] {
		e = min(e, v.Exponent())
	}
	if s, ok := sum64(values, e); ok {
		return decimal.New(s, e)
	}
	return decimal.Sum(values[0], values[1:]...)
}

// sum64 returns the sum of values' coefficients at exponent e, no larger
// than any of their exponents, when every step fits an int64.
func sum64(values []decimal.Decimal, e int32) (int64, bool) {
	var s int64
	for _, v := range values {
		c, ok := Coef(v, e)
		if ok {
			s, ok = add64(s, c)
		}
		if !ok {
			return 0, false
		}
	}
	return s, true
}

// SumCmp returns Sum(values).Cmp(x): how the sum of values compares with
// x, without making the sum while the coefficients fit an int64 at their
// smallest exponent.
func SumCmp(values []decimal.Decimal, x decimal.Decimal) int {
	e := x.Exponent()
	for _, v := range values {
		e = min(e, v.Exponent())
	}
	if s, ok := sum64(values, e); ok {
		if c, ok := Coef(x, e); ok {
			return cmp64(s, c)
		}
	}
	return Sum(values).Cmp(x)
}

// SumF is Sum of figures: decimal.Sum of their values, zero
// (decimal.Decimal{}) for none.
func SumF(values []Figure) Figure {
	switch len(values) {
	case 0:
		return Figure{fit: true}
	case 1:
		return values[0]
	}
	e := values[0].e
	for _, v := range values[1:] {
		e = min(e, v.e)
	}
	var s int64
	for _, v := range values {
		c, ok := v.at(e)
		if ok {
			s, ok = add64(s, c)
		}
		if !ok {
			rest := make([]decimal.Decimal, len(values)-1)
			for k := range rest {
				rest[k] = values[k+1].D
			}
			return Read(decimal.Sum(values[0].D, rest...))
		}
	}
	return newFigure(s, e)
}

// Mul returns x.Mul(y).
func Mul(x, y decimal.Decimal) decimal.Decimal { return MulF(Read(x), Read(y)).D }

// MulF is Mul of figures.
func MulF(x, y Figure) Figure {
	e := int64(x.e) + int64(y.e)
	if e >= math.MinInt32 && e <= math.MaxInt32 {
		// A factor 1 x 10^k (a step of 0.0001, a price of 1) leaves the
		// other's coefficient as it is: the product is the other shifted,
		// which shares its coefficient (decimals are immutable) and costs
		// no allocation.
		switch {
		case y.fit && y.c == 1:
			return Figure{D: x.D.Shift(y.e), c: x.c, e: int32(e), fit: x.fit}
		case x.fit && x.c == 1:
			return Figure{D: y.D.Shift(x.e), c: y.c, e: int32(e), fit: y.fit}
		}
	}
	if x.fit && y.fit && e >= math.MinInt32 && e <= math.MaxInt32 {
		if hi, lo := bits.Mul64(absU(x.c), absU(y.c)); hi == 0 {
			if p, ok := signed(lo, (x.c < 0) != (y.c < 0)); ok {
				return newFigure(p, int32(e))
			}
		}
	}
	return Read(x.D.Mul(y.D))
}

// quo returns |x| / |y| at exponent -places, truncated, the remainder and
// the divisor of that division as decimal's quoRem makes them, and the
// remainder's exponent; ok is false when a figure does not fit a uint64
// or the quotient an int64.
func quo(x, y Figure, places int32) (q, r, div uint64, re int32, ok bool) {
	if !x.fit || !y.fit || y.c == 0 {
		return 0, 0, 0, 0, false
	}
	a, b := absU(x.c), absU(y.c)
	// x / y = a / b x 10^(ex-ey); at exponent -places the quotient is
	// a x 10^e / b with e = ex - ey + places (or a / (b x 10^-e)).
	e := int64(x.e) - int64(y.e) + int64(places)
	var hi, lo uint64
	switch {
	case e < 0:
		if -e >= int64(len(pow10)) {
			return 0, 0, 0, 0, false
		}
		h, l := bits.Mul64(b, pow10[-e])
		if h != 0 {
			return 0, 0, 0, 0, false
		}
		hi, lo, div, re = 0, a, l, x.e
	default:
		if e >= int64(len(pow10)) {
			return 0, 0, 0, 0, false
		}
		hi, lo = bits.Mul64(a, pow10[e])
		div, re = b, y.e-places
	}
	if hi >= div { // the quotient would not fit 64 bits
		return 0, 0, 0, 0, false
	}
	q, r = bits.Div64(hi, lo, div)
	if q >= math.MaxInt64 || r > math.MaxInt64 { // q may still grow by one
		return 0, 0, 0, 0, false
	}
	return q, r, div, re, true
}

// QuoRem returns x.QuoRem(y, 0). y must not be zero.
func QuoRem(x, y decimal.Decimal) (q, r decimal.Decimal) {
	if uq, ur, _, re, ok := quo(Read(x), Read(y), 0); ok {
		qv, _ := signed(uq, (x.Sign() < 0) != (y.Sign() < 0))
		rv, _ := signed(ur, x.Sign() < 0)
		return decimal.New(qv, 0), decimal.New(rv, re)
	}
	return x.QuoRem(y, 0)
}

// DivRound returns x.DivRound(y, places): the quotient rounded half away
// from zero to places decimals. y must not be zero.
func DivRound(x, y decimal.Decimal, places int32) decimal.Decimal {
	return DivRoundF(Read(x), Read(y), places).D
}

// DivRoundF is DivRound of figures.
func DivRoundF(x, y Figure, places int32) Figure {
	if uq, ur, div, _, ok := quo(x, y, places); ok {
		if ur >= div-ur {
			uq++
		}
		qv, _ := signed(uq, (x.c < 0) != (y.c < 0))
		return newFigure(qv, -places)
	}
	return Read(x.D.DivRound(y.D, places))
}

// Round returns d.Round(places): d rounded half away from zero to places
// decimals.
func Round(d decimal.Decimal, places int32) decimal.Decimal { return RoundF(Read(d), places).D }

// RoundF is Round of a figure.
func RoundF(d Figure, places int32) Figure {
	switch {
	case d.e == -places:
		return d
	case d.e > -places:
		if c, ok := d.at(-places); ok {
			return newFigure(c, -places)
		}
		return Read(d.D.Round(places))
	}
	k := -places - d.e
	if !d.fit || k >= int32(len(pow10))-1 { // 10^19 is no int64
		return Read(d.D.Round(places))
	}
	p := int64(pow10[k])
	q, r := d.c/p, d.c%p
	if absU(r) >= uint64(p)-absU(r) {
		if d.c < 0 {
			q--
		} else {
			q++
		}
	}
	return newFigure(q, -places)
}

// SubF is Sub of figures.
func SubF(x, y Figure) Figure {
	e := min(x.e, y.e)
	if a, ok := x.at(e); ok {
		if b, ok := y.at(e); ok {
			if s, ok := add64(a, -b); ok {
				return newFigure(s, e)
			}
		}
	}
	return Read(x.D.Sub(y.D))
}

// OutOfBandF reports whether |value - target| > halfWidth, exactly; ok is
// false when the figures do not fit an int64 at their smallest exponent
// with room for the difference (below 2^62), and the caller must decide
// in decimal arithmetic.
func OutOfBandF(value, target, halfWidth Figure) (out, ok bool) {
	const limit = 1 << 62
	e := min(value.e, target.e, halfWidth.e)
	v, okV := value.at(e)
	t, okT := target.at(e)
	h, okH := halfWidth.at(e)
	if !okV || !okT || !okH || v >= limit || v <= -limit || t >= limit || t <= -limit {
		return false, false
	}
	d := v - t
	if d < 0 {
		d = -d
	}
	return d > h, true
}
