package plan

import (
	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/dec64"
)

// Every shopspring/decimal operation allocates (a big.Int and its words;
// a division about seven times; an operation on figures of different
// exponents rescales first, which allocates again), and allocation is most
// of what planning costs. The helpers below skip the operations whose
// result is already known: adding or subtracting zero, multiplying by one,
// dividing by a power of ten that cannot leave a remainder; and do the
// others on int64 coefficients while they fit (dec64), which costs one
// decimal for a result and nothing for a comparison. They return exactly
// the value the full operation would. Decimals are immutable, so returning
// an operand as the result is safe.

// add returns x + y.
func add(x, y decimal.Decimal) decimal.Decimal {
	switch {
	case y.IsZero():
		return x
	case x.IsZero():
		return y
	}
	return dec64.Add(x, y)
}

// sub returns x - y.
func sub(x, y decimal.Decimal) decimal.Decimal {
	if y.IsZero() {
		return x
	}
	return dec64.Sub(x, y)
}

// mul returns x x y.
func mul(x, y decimal.Decimal) decimal.Decimal { return dec64.Mul(x, y) }

// greater reports whether x > y.
func greater(x, y decimal.Decimal) bool { return dec64.Cmp(x, y) > 0 }

// less reports whether x < y.
func less(x, y decimal.Decimal) bool { return dec64.Cmp(x, y) < 0 }

// equal reports whether x = y.
func equal(x, y decimal.Decimal) bool { return dec64.Cmp(x, y) == 0 }

// minDec returns the smaller of x and y (x when they are equal), as
// decimal.Min does.
func minDec(x, y decimal.Decimal) decimal.Decimal {
	if dec64.Cmp(y, x) < 0 {
		return y
	}
	return x
}

// maxDec returns the larger of x and y (x when they are equal), as
// decimal.Max does.
func maxDec(x, y decimal.Decimal) decimal.Decimal {
	if dec64.Cmp(y, x) > 0 {
		return y
	}
	return x
}

// take removes up to want from *pool, which must not be negative, and
// returns what it removed: min(*pool, want). An emptied pool is set to zero
// without a subtraction.
func take(pool *decimal.Decimal, want decimal.Decimal) decimal.Decimal {
	if dec64.Cmp(want, *pool) >= 0 {
		got := *pool
		*pool = decimal.Decimal{}
		return got
	}
	*pool = dec64.Sub(*pool, want)
	return want
}

// figureNum returns f as a num, as pl.numOf returns f.D: without reading
// the decimal again when the figure holds its coefficient.
func (pl *planner) figureNum(f dec64.Figure) num {
	c, e, ok := f.Int64()
	if !ok || pl.exact {
		return pl.numOf(f.D)
	}
	return num{v: c, e: e}.trimmed()
}

// powersOfTen holds 10^0 to 10^18, the powers of ten an int64 holds.
var powersOfTen = func() [19]int64 {
	var p [19]int64
	p[0] = 1
	for j := 1; j < len(p); j++ {
		p[j] = p[j-1] * 10
	}
	return p
}()

// wholeSteps returns the whole steps in q and whether q is a whole number
// of them. pow is the step's power of ten (step = 10^pow), when powOK: a
// step that is 10^k divides every quantity written with no more than -k
// decimals, which spares the division for the usual steps (1, 0.001,
// 0.0001); the steps are then not worked out (zero).
func wholeSteps(q, step decimal.Decimal, pow int32, powOK bool) (steps decimal.Decimal, whole bool) {
	if powOK && q.Exponent() >= pow {
		return decimal.Decimal{}, true
	}
	steps, r := dec64.QuoRem(q, step)
	return steps, r.IsZero()
}

// appendDecimal appends d.String() to buf. big.Int's text conversion costs
// more than the rest of an order's id, so a coefficient that fits an int64
// is formatted here, in String's default form (trailing zeros trimmed, no
// scientific notation); anything else goes through String.
func appendDecimal(buf []byte, d decimal.Decimal) []byte {
	e := d.Exponent()
	if e > 0 || e < -18 || d.NumDigits() > 18 || !decimal.TrimTrailingZeros || decimal.UseScientificNotation {
		return append(buf, d.String()...)
	}
	c := d.CoefficientInt64() // |c| < 10^18
	u := uint64(c)
	if c < 0 {
		u = uint64(-c)
	}
	// The digits are written backwards from the end of text: the -e
	// digits of the fraction less its trailing zeros, the point when any
	// is left, the integer part (at least one digit), the sign. At most
	// a sign, 18 digits, a point and a leading zero.
	var text [24]byte
	at := len(text)
	frac := int(-e)
	for frac > 0 && u%10 == 0 {
		u /= 10
		frac--
	}
	if frac > 0 {
		for ; frac > 0; frac-- {
			at--
			text[at] = byte('0' + u%10)
			u /= 10
		}
		at--
		text[at] = '.'
	}
	for {
		at--
		text[at] = byte('0' + u%10)
		u /= 10
		if u == 0 {
			break
		}
	}
	if c < 0 {
		at--
		text[at] = '-'
	}
	return append(buf, text[at:]...)
}
