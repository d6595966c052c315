package correlation

import (
	"fmt"
	"math/big"

	"github.com/shopspring/decimal"
)

// Pearson is the Pearson correlation coefficient of two series x and y of
// N points, held exactly as N² times their covariance and variances:
//
//	Cov  = N·Σxy − Σx·Σy
//	VarX = N·Σx² − (Σx)²
//	VarY = N·Σy² − (Σy)²
//	r    = Cov / sqrt(VarX·VarY)
//
// Decimal sums and products are exact, so comparisons of r with a
// threshold are exact too: they square both sides instead of taking a
// square root (shopspring/decimal has none). Only Value rounds.
type Pearson struct {
	N               int
	Cov, VarX, VarY decimal.Decimal
}

// NewPearson returns the correlation of x and y, which must have the same
// length.
func NewPearson(x, y []decimal.Decimal) (Pearson, error) {
	if len(x) != len(y) {
		return Pearson{}, fmt.Errorf("correlation: series of %d and %d points", len(x), len(y))
	}
	var sx, sy, sxx, syy, sxy decimal.Decimal
	for i := range x {
		sx = sx.Add(x[i])
		sy = sy.Add(y[i])
		sxx = sxx.Add(x[i].Mul(x[i]))
		syy = syy.Add(y[i].Mul(y[i]))
		sxy = sxy.Add(x[i].Mul(y[i]))
	}
	n := decimal.NewFromInt(int64(len(x)))
	return Pearson{
		N:    len(x),
		Cov:  n.Mul(sxy).Sub(sx.Mul(sy)),
		VarX: n.Mul(sxx).Sub(sx.Mul(sx)),
		VarY: n.Mul(syy).Sub(sy.Mul(sy)),
	}, nil
}

// Defined reports whether the correlation exists: neither series is
// constant (which also needs two points or more).
func (p Pearson) Defined() bool { return p.VarX.Sign() > 0 && p.VarY.Sign() > 0 }

// Above reports whether r > t, exactly. It is false when r is not defined.
func (p Pearson) Above(t decimal.Decimal) bool {
	return p.Defined() && exceeds(p.Cov, p.VarX.Mul(p.VarY), t)
}

// Below reports whether r < t, exactly. It is false when r is not defined.
func (p Pearson) Below(t decimal.Decimal) bool {
	return p.Defined() && exceeds(p.Cov.Neg(), p.VarX.Mul(p.VarY), t.Neg())
}

// exceeds reports whether cov / sqrt(d) > t, for d > 0. For t >= 0 that
// is cov > 0 and cov² > t²·d; for t < 0 it is cov >= 0 or cov² < t²·d.
func exceeds(cov, d, t decimal.Decimal) bool {
	lhs, rhs := cov.Mul(cov), t.Mul(t).Mul(d)
	if t.Sign() >= 0 {
		return cov.Sign() > 0 && lhs.GreaterThan(rhs)
	}
	return cov.Sign() >= 0 || lhs.LessThan(rhs)
}

// Value returns r truncated toward zero to the given number of decimal
// places (at least 0): exactly sign(Cov)·floor(|r|·10^places)/10^places,
// computed with integers as floor(sqrt(floor(Cov²·10^(2·places) /
// (VarX·VarY)))). It returns zero when r is not defined.
func (p Pearson) Value(places int32) decimal.Decimal {
	if !p.Defined() {
		return decimal.Zero
	}
	places = max(places, 0)
	// q = floor(r²·10^(2·places)) exactly; the integer square root of a
	// floor is the floor of the square root.
	q, _ := p.Cov.Mul(p.Cov).QuoRem(p.VarX.Mul(p.VarY), 2*places)
	s := new(big.Int).Sqrt(q.Shift(2 * places).BigInt())
	r := decimal.NewFromBigInt(s, -places)
	if p.Cov.Sign() < 0 {
		r = r.Neg()
	}
	return r
}
