// Package drift values a household's holdings and reports, for every sleeve
// of its policy, how far the sleeve's weight has moved from its target and
// whether it breaches its tolerance band. It is a pure function of a Book.
package drift

import (
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/dec64"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
)

// WeightPlaces is the number of decimal places of reported weights and
// deviations, rounded half away from zero. Breaches are decided on exact
// values, never on the rounded figures.
const WeightPlaces = 6

// Snapshot is the valuation and drift of one household at one time.
type Snapshot struct {
	Book *portfolio.Book
	// AsOf is the time of the prices the valuation used.
	AsOf time.Time
	// Total is the investable value: positions plus free cash, reserves
	// excluded.
	Total decimal.Decimal
	// Sleeves is indexed like the policy's sleeves.
	Sleeves []Sleeve
	// Values is each position's value: Values[account][instrument].
	Values [][]decimal.Decimal
	// FreeCash is each account's cash above its reserve.
	FreeCash []decimal.Decimal
}

// Sleeve is one sleeve's drift. Target, Weight, Deviation and the band
// edges are fractions of Total.
type Sleeve struct {
	Path      string
	Value     decimal.Decimal // in the policy currency
	Target    decimal.Decimal
	Weight    decimal.Decimal // Value / Total, rounded to WeightPlaces
	Deviation decimal.Decimal // Weight - Target, rounded to WeightPlaces
	BandLow   decimal.Decimal // max(0, Target - half-width)
	BandHigh  decimal.Decimal // min(1, Target + half-width)
	// Breach is |Value - TargetValue| > HalfWidthValue, exactly.
	Breach bool
	// TargetValue and HalfWidthValue are Target and the band's half-width
	// times Total, in the policy currency.
	TargetValue, HalfWidthValue decimal.Decimal
}

// Compute values the book and returns its drift snapshot.
//
// Every figure is read once (dec64.Figure) and every sum, rollup and
// total made from the figures of its parts, as Sum, Rollup and TotalOf
// make them from decimals.
func Compute(b *portfolio.Book) *Snapshot {
	p := b.Policy
	nA, nI, nS := len(p.Accounts), len(p.Instruments), len(p.Sleeves)
	// One backing array for the positions' values, the free cash and the
	// sleeve values; the figures of the positions and the sleeves, and the
	// scratch the sums use, are on the stack while they fit there.
	dec := make([]decimal.Decimal, nA*nI+nA+nS)
	var posBuf [64]dec64.Figure
	var valBuf [16]dec64.Figure
	var partBuf [32]dec64.Figure
	pos, vals, parts := posBuf[:], valBuf[:], partBuf[:]
	if n := nA*nI + nA; n > len(posBuf) {
		pos = make([]dec64.Figure, n)
	}
	if nS > len(valBuf) {
		vals = make([]dec64.Figure, nS)
	}
	if n := nA*nI + nA; n > len(partBuf) {
		parts = make([]dec64.Figure, n)
	}
	s := &Snapshot{
		Book:     b,
		AsOf:     b.PricesAsOf,
		Sleeves:  make([]Sleeve, nS),
		Values:   make([][]decimal.Decimal, nA),
		FreeCash: dec[nA*nI : nA*nI+nA : nA*nI+nA],
	}
	values := dec[nA*nI+nA : nA*nI+nA+nS : nA*nI+nA+nS]
	for a := 0; a < nA; a++ {
		row := dec[a*nI : (a+1)*nI : (a+1)*nI]
		s.Values[a] = row
		for i, q := range b.Qty[a] {
			if !q.IsZero() {
				f := dec64.MulF(dec64.Read(q), dec64.Read(b.Price[i]))
				row[i], pos[a*nI+i] = f.D, f
			}
		}
		if cash := b.Cash[a]; p.Accounts[a].Reserve.IsZero() && cash.Sign() >= 0 {
			s.FreeCash[a] = cash
		} else {
			s.FreeCash[a] = b.FreeCash(a)
		}
	}
	for sl := range p.Sleeves {
		parts := parts[:0]
		for _, i := range p.Sleeves[sl].Instruments {
			for a := 0; a < nA; a++ {
				if !s.Values[a][i].IsZero() {
					parts = append(parts, pos[a*nI+i])
				}
			}
		}
		if sl == p.Cash {
			for _, f := range s.FreeCash {
				if !f.IsZero() {
					parts = append(parts, dec64.Read(f))
				}
			}
		}
		vals[sl] = dec64.SumF(parts)
	}
	// Rollup and TotalOf, on the figures.
	rollupF(p, vals, parts[:0])
	top := parts[:0]
	for i := range p.Sleeves {
		values[i] = vals[i].D
		if p.Sleeves[i].Parent < 0 {
			top = appendNonZeroF(top, vals[i])
		}
	}
	total := dec64.Read(decimal.Zero)
	if len(top) > 0 {
		total = dec64.SumF(top)
	}
	s.Total = total.D
	for i := range p.Sleeves {
		describe(&s.Sleeves[i], &p.Sleeves[i], vals[i], total)
	}
	return s
}

// appendNonZeroF appends f to parts unless it is zero.
func appendNonZeroF(parts []dec64.Figure, f dec64.Figure) []dec64.Figure {
	if f.D.IsZero() {
		return parts
	}
	return append(parts, f)
}

// appendNonZero appends d to parts unless it is zero.
func appendNonZero(parts []decimal.Decimal, d decimal.Decimal) []decimal.Decimal {
	if d.IsZero() {
		return parts
	}
	return append(parts, d)
}

// Sum returns the sum of values, zero for none: decimal.Sum's, on int64
// coefficients while they fit (dec64.Sum), so that a sum costs one
// decimal rather than two allocations for each value, as repeated Add
// would.
func Sum(values []decimal.Decimal) decimal.Decimal { return dec64.Sum(values) }

// Rollup adds each sleeve's value into its ancestors, so that a parent's
// value is the sum of its children's. values is indexed like p.Sleeves and
// must hold leaf values only (parents zero) on entry.
func Rollup(p *policy.Policy, values []decimal.Decimal) {
	var buf [16]dec64.Figure
	var partBuf [8]dec64.Figure
	figs := buf[:0]
	if len(values) > len(buf) {
		figs = make([]dec64.Figure, 0, len(values))
	}
	for _, v := range values {
		figs = append(figs, dec64.Read(v))
	}
	rollupF(p, figs, partBuf[:0])
	for i := range p.Sleeves {
		if len(p.Sleeves[i].Children) > 0 {
			values[i] = figs[i].D
		}
	}
}

// rollupF is Rollup of figures, with parts as scratch for the sums: the
// same sums (dec64.SumF is Sum of figures).
func rollupF(p *policy.Policy, values, parts []dec64.Figure) {
	// Children follow their parents, so walking backwards sums bottom-up.
	for i := len(p.Sleeves) - 1; i >= 0; i-- {
		kids := p.Sleeves[i].Children
		if len(kids) == 0 {
			continue
		}
		parts = appendNonZeroF(parts[:0], values[i])
		for _, c := range kids {
			parts = appendNonZeroF(parts, values[c])
		}
		values[i] = dec64.SumF(parts)
	}
}

// TotalOf returns the sum of the top-level sleeves' values.
func TotalOf(p *policy.Policy, values []decimal.Decimal) decimal.Decimal {
	var buf [8]decimal.Decimal
	parts := buf[:0]
	for i := range p.Sleeves {
		if p.Sleeves[i].Parent < 0 {
			parts = appendNonZero(parts, values[i])
		}
	}
	if len(parts) == 0 {
		return decimal.Zero
	}
	return Sum(parts)
}

// Breaches reports whether a sleeve of this target and half-width, holding
// value out of total, lies outside its band. It is exact.
func Breaches(ps *policy.Sleeve, value, total decimal.Decimal) bool {
	return OutOfBand(value, dec64.Mul(ps.Target, total), dec64.Mul(ps.HalfWidth, total))
}

// OutOfBand reports whether |value - targetValue| > halfWidthValue.
func OutOfBand(value, targetValue, halfWidthValue decimal.Decimal) bool {
	return outOfBand(dec64.Read(value), dec64.Read(targetValue), dec64.Read(halfWidthValue))
}

// outOfBand is OutOfBand of figures: on their int64 coefficients, as
// exact as decimal arithmetic and without its allocations (drift and the
// planner ask this of every sleeve), while they fit.
func outOfBand(value, targetValue, halfWidthValue dec64.Figure) bool {
	if out, ok := dec64.OutOfBandF(value, targetValue, halfWidthValue); ok {
		return out
	}
	d := value.D.Sub(targetValue.D)
	if d.Sign() >= 0 {
		return d.GreaterThan(halfWidthValue.D)
	}
	// -d > halfWidthValue, without the allocations of Abs.
	return d.Add(halfWidthValue.D).Sign() < 0
}

// zeroWeight is the weight of an empty sleeve, as value.DivRound(total,
// WeightPlaces) would give it, without the division.
var zeroWeight = dec64.Read(decimal.New(0, -WeightPlaces))

// Describe returns the drift figures of policy sleeve ps holding value out
// of total.
func Describe(ps *policy.Sleeve, value, total decimal.Decimal) Sleeve {
	var d Sleeve
	describe(&d, ps, dec64.Read(value), dec64.Read(total))
	return d
}

// describe is Describe of figures, the value and the total read once,
// into *d, a zero Sleeve (a Sleeve is large: written in place, not
// copied).
func describe(d *Sleeve, ps *policy.Sleeve, v dec64.Figure, total dec64.Figure) {
	value := v.D
	d.Path, d.Value, d.Target, d.BandLow, d.BandHigh = ps.Path, value, ps.Target, ps.BandLow, ps.BandHigh
	if total.D.Sign() <= 0 {
		return
	}
	// Each figure as decimal arithmetic gives it, on int64 coefficients
	// while they fit, each operand read once (dec64 figures).
	target, halfWidth := ps.Figures()
	tv := dec64.MulF(target, total)
	hw := dec64.MulF(halfWidth, total)
	d.TargetValue, d.HalfWidthValue = tv.D, hw.D
	w := zeroWeight
	if !value.IsZero() {
		w = dec64.DivRoundF(v, total, WeightPlaces)
	}
	dev := dec64.SubF(w, target)
	if dev.D.Exponent() < -WeightPlaces {
		dev = dec64.RoundF(dev, WeightPlaces)
	}
	d.Weight, d.Deviation = w.D, dev.D
	d.Breach = outOfBand(v, tv, hw)
}

// Breaching returns the paths of the sleeves that breach their bands, in
// policy order.
func (s *Snapshot) Breaching() []string {
	var out []string
	for i := range s.Sleeves {
		if s.Sleeves[i].Breach {
			out = append(out, s.Sleeves[i].Path)
		}
	}
	return out
}
