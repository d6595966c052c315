package history

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// Point is one dated value of a source series.
type Point struct {
	Date  time.Time
	Value decimal.Decimal
}

// Places is how many decimal places a derived index level keeps. Each
// level is rounded half away from zero (decimal.Round) once, when it is
// computed; the next level grows from the rounded one, so a file
// regenerated from the same sources is identical byte for byte.
const Places = 6

// workPlaces is the precision of intermediate bond-pricing arithmetic.
const workPlaces = 24

// ReadColumns reads named columns of a dated source CSV (the files in
// configs/history/source). The first column is the date. A cell equal to
// zero is reported as missing when zeroIsMissing is set: Shiller's file
// writes 0.0 for values not yet published.
func ReadColumns(file string, r io.Reader, zeroIsMissing bool, columns ...string) (map[string][]Point, error) {
	cr := csv.NewReader(r)
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: reading the header: %w", file, err)
	}
	index := map[string]int{}
	for i, h := range header {
		index[strings.TrimSpace(h)] = i
	}
	for _, c := range columns {
		if _, ok := index[c]; !ok {
			return nil, fmt.Errorf("%s:1: no column %q (have %s)", file, c, strings.Join(header, ", "))
		}
	}
	out := make(map[string][]Point, len(columns))
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		line, _ := cr.FieldPos(0)
		d, err := time.Parse(DateLayout, strings.TrimSpace(rec[0]))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: date %.20q: want YYYY-MM-DD", file, line, rec[0])
		}
		for _, c := range columns {
			v, err := strictyaml.ParseDecimal(strings.TrimSpace(rec[index[c]]))
			if err != nil {
				return nil, fmt.Errorf("%s:%d: column %q: %w", file, line, c, err)
			}
			if v.IsZero() && zeroIsMissing {
				continue
			}
			if v.Sign() <= 0 {
				return nil, fmt.Errorf("%s:%d: column %q: %s must be positive", file, line, c, v)
			}
			out[c] = append(out[c], Point{Date: d, Value: v})
		}
	}
}

var (
	twelve  = decimal.NewFromInt(12)
	hundred = decimal.NewFromInt(100)
	one     = decimal.NewFromInt(1)
)

// Base is the level every derived index starts from.
var Base = hundred

// EquityTotalReturn turns a monthly price index and its trailing twelve
// months' dividend per index unit into a total-return index:
//
//	level(t) = level(t-1) × (price(t) + dividend(t)/12) / price(t-1)
//
// which reinvests one twelfth of the annual dividend each month (the usual
// approximation for Shiller's data). The index starts at Base on the first
// month with both a price and a dividend and stops before the first month
// that lacks either: a dividend is never carried forward.
func EquityTotalReturn(price, dividend []Point) []Point {
	divs := make(map[time.Time]decimal.Decimal, len(dividend))
	for _, p := range dividend {
		divs[p.Date] = p.Value
	}
	var out []Point
	var prev decimal.Decimal
	for _, p := range price {
		d, ok := divs[p.Date]
		if !ok {
			if out != nil {
				break
			}
			continue
		}
		if out == nil {
			out, prev = append(out, Point{p.Date, Base}), p.Value
			continue
		}
		last := out[len(out)-1]
		if !consecutiveMonths(last.Date, p.Date) {
			break
		}
		growth := p.Value.Add(d.DivRound(twelve, workPlaces)).DivRound(prev, workPlaces)
		out = append(out, Point{p.Date, last.Value.Mul(growth).Round(Places)})
		prev = p.Value
	}
	return out
}

// BondTotalReturn derives a total-return index of a constant-maturity
// 10-year Treasury from its monthly yield in percent. Each month it buys a
// 10-year par bond paying yield(t-1) a year in monthly coupons, and a month
// later values it at the new yield with 119 months left, plus the month's
// coupon:
//
//	level(t) = level(t-1) × (P(coupon = y(t-1), yield = y(t), 119 months) + y(t-1)/12)
//
// where P prices the bond per unit of face with monthly compounding. This
// is the usual par-bond method; it ignores the difference between monthly
// and semiannual coupons (a few basis points a year) and taxes.
func BondTotalReturn(yieldPct []Point) []Point {
	var out []Point
	for i, p := range yieldPct {
		if i == 0 {
			out = append(out, Point{p.Date, Base})
			continue
		}
		if !consecutiveMonths(yieldPct[i-1].Date, p.Date) {
			break
		}
		c := yieldPct[i-1].Value.DivRound(hundred, workPlaces)
		y := p.Value.DivRound(hundred, workPlaces)
		growth := parBondPrice(c, y, 119).Add(c.DivRound(twelve, workPlaces))
		last := out[len(out)-1]
		out = append(out, Point{p.Date, last.Value.Mul(growth).Round(Places)})
	}
	return out
}

// parBondPrice prices, per unit of face, a bond paying annual coupon rate
// c in monthly coupons for n months, at annual yield y compounded monthly.
func parBondPrice(c, y decimal.Decimal, n int) decimal.Decimal {
	coupon := c.DivRound(twelve, workPlaces)
	if y.IsZero() {
		return coupon.Mul(decimal.NewFromInt(int64(n))).Add(one)
	}
	r := y.DivRound(twelve, workPlaces)
	v := one.DivRound(one.Add(r), workPlaces)
	vn := one
	for range n {
		vn = vn.Mul(v).Round(workPlaces)
	}
	annuity := one.Sub(vn).DivRound(r, workPlaces)
	return coupon.Mul(annuity).Add(vn).Round(workPlaces)
}

// consecutiveMonths reports whether b is the first of the month after a's.
func consecutiveMonths(a, b time.Time) bool {
	return a.AddDate(0, 1, 0).Equal(b)
}

// Column is one instrument's series for Combine.
type Column struct {
	Instrument string
	Points     []Point
}

// Combine lays columns side by side on the union of their dates, from
// `from` to `to` inclusive (zero times mean no bound). A date on which a
// column has no point is an empty cell: nothing is carried forward.
func Combine(file string, from, to time.Time, columns ...Column) *Series {
	s := &Series{File: file}
	byDate := map[time.Time]*Row{}
	for i, c := range columns {
		s.Instruments = append(s.Instruments, c.Instrument)
		for _, p := range c.Points {
			if (!from.IsZero() && p.Date.Before(from)) || (!to.IsZero() && p.Date.After(to)) {
				continue
			}
			r := byDate[p.Date]
			if r == nil {
				r = &Row{Date: p.Date, Prices: make([]decimal.Decimal, len(columns)), Present: make([]bool, len(columns))}
				byDate[p.Date] = r
			}
			r.Prices[i], r.Present[i] = p.Value, true
		}
	}
	for _, r := range byDate {
		s.Rows = append(s.Rows, *r)
	}
	sort.Slice(s.Rows, func(i, j int) bool { return s.Rows[i].Date.Before(s.Rows[j].Date) })
	for i := range s.Rows {
		s.Rows[i].Line = i + 2
	}
	return s
}
