// Package targets computes a policy's effective targets on a date: the
// glide path row for the investor's age, interpolated linearly between
// rows, then the tactical tilts active that day.
//
// Everything here is a pure function of a parsed *policy.Policy and the
// time passed in: no clock, no I/O, no package state. The same inputs give
// the same result, Version included, so that order ids stay stable.
//
// # Dates
//
// The date is the calendar day of the given time in the investor's time
// zone (policy.Policy.Zone: investor.time_zone, else the schedule's
// CRON_TZ, else the local zone), so that one instant gives one result
// whatever the zone of the time passed in. A tilt applies up to and
// including its until day: it has expired from the day after.
//
// # Age
//
// The age on a day is Y + d/D in years: Y whole years since birth, d days
// since the last birthday and D days from the last birthday to the next
// (365 or 366). Someone born on February 29 has their birthday on March 1
// in other years. Glide path rows are at whole ages, so a row applies
// exactly on the birthday of its age.
//
// # Exact decimals and rounding
//
// A level's weights always sum to exactly 100%. Between the rows at ages
// A0 and A1 (A0 <= age < A1), with n = (Y-A0)·D + d and m = (A1-A0)·D, each
// sleeve's weight within its parent is w0 + (w1-w0)·n/m, computed as
// (w0·(m-n) + w1·n)/m, rounded down to Places decimal places; what the
// rounding leaves of the level's 100% goes to the sleeve of the level with
// the largest unrounded weight (the first in file order on ties). On a
// row's age, before the first row and from the last row on, the row's
// weights are taken exactly as written. The weights within parents are
// interpolated, not the fractions of the whole portfolio, so that each
// level of each day is a proper split; a sub-sleeve's share of the whole
// is the product of its interpolated weights along the path.
//
// # Tilts
//
// A tilt moves its sleeve's weight within its parent by its delta, on top
// of the glide path (or targets), in file order. A positive tilt takes from
// the sleeves in from, or from every sibling, pro rata to their weights; a
// negative one gives to them pro rata (equally when they all weigh 0%). It
// is clamped so that nothing goes below 0% or above 100%: a positive tilt
// takes at most what the donors have, a negative one at most the sleeve's
// weight. The donors' (receivers') new weights are their new total shared
// pro rata, rounded down to Places decimal places, with the residue to the
// largest of them as above.
//
// # Version
//
// When the effective weights equal those of the file's targets, Effective
// returns the policy itself, Version unchanged: a policy without a glide
// path or tilts never changes. Otherwise Version is the file's version, a
// "-" and the first 8 hex digits of the SHA-256 of the effective weights,
// so it changes whenever the effective targets do, and only then.
package targets

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/policy"
)

// Places is the number of decimal places of a computed weight within its
// parent: 0.000001% of the parent.
const Places = 8

// displayPlaces is the number of decimal places of the age and the
// fraction between rows in an Explanation.
const displayPlaces = 6

var one = decimal.NewFromInt(1)

// Explanation says how the effective targets of a date came about.
type Explanation struct {
	// Date is the calendar day the targets are for, in the investor's zone
	// (policy.Policy.Zone), as 2006-01-02.
	Date string `json:"date"`
	// Glide tells which glide path rows applied; nil without a glide path.
	Glide *GlideStep `json:"glide_path,omitempty"`
	// Bands tells which band of glide_bands applied; nil without them.
	Bands *BandStep `json:"glide_bands,omitempty"`
	// Active lists the tilts that applied, in file order.
	Active []TiltStatus `json:"active_tilts"`
	// Expired lists the tilts past their until day, in file order.
	Expired []TiltStatus `json:"expired_tilts"`
}

// GlideStep tells where on the glide path a date falls.
type GlideStep struct {
	// Age is the investor's age in years, rounded to 6 places for display.
	Age decimal.Decimal `json:"age"`
	// Years and Days are the whole years and the days since the last
	// birthday; DaysInYear is the number of days between that birthday
	// and the next.
	Years      int `json:"age_years"`
	Days       int `json:"age_days"`
	DaysInYear int `json:"days_in_year"`
	// FromAge and ToAge are the ages of the rows the targets lie between;
	// they are equal when one row applies alone (on its age, before the
	// first row or after the last).
	FromAge  int `json:"from_age"`
	ToAge    int `json:"to_age"`
	FromLine int `json:"from_line"`
	ToLine   int `json:"to_line"`
	// Fraction is how far the date is from the FromAge row to the ToAge
	// row, from 0 to 1, rounded to 6 places for display (the weights use
	// the exact ratio).
	Fraction decimal.Decimal `json:"fraction"`
}

// TiltStatus is one tilt of the policy as it stands on the date.
type TiltStatus struct {
	Sleeve string `json:"sleeve"`
	// Tilt is the change of the sleeve's weight within its parent as
	// written (0.02 for +2%).
	Tilt decimal.Decimal `json:"tilt"`
	// Applied is the change made, less than Tilt in size when clamping
	// kept a weight within 0%-100%; zero for an expired tilt.
	Applied decimal.Decimal `json:"applied"`
	// Until is the last day the tilt applies, as 2006-01-02.
	Until  string `json:"until"`
	Reason string `json:"reason"`
	// From lists the sleeves it takes from (or gives to).
	From []string `json:"from"`
	Line int      `json:"line"`
}

// Clamped reports whether the tilt applied less than it asks for.
func (s *TiltStatus) Clamped() bool { return !s.Applied.Equal(s.Tilt) }

// NewlyExpired returns the tilts active in prev that have expired in cur:
// what the daemon logs as "tilt expired" when it moves from one date to the
// next. Tilts are matched by sleeve, tilt, until day and reason.
func NewlyExpired(prev, cur *Explanation) []TiltStatus {
	if prev == nil || cur == nil {
		return nil
	}
	var out []TiltStatus
	for _, e := range cur.Expired {
		for _, a := range prev.Active {
			if a.Sleeve == e.Sleeve && a.Tilt.Equal(e.Tilt) && a.Until == e.Until && a.Reason == e.Reason {
				out = append(out, e)
				break
			}
		}
	}
	return out
}

// Effective returns p with the targets that apply at time at (see the
// package documentation), and how they came about. It returns p itself
// when the effective weights are those of the file's targets. It fails
// only for a policy Parse would refuse, or a date before the investor's
// birth with a glide path.
func Effective(p *policy.Policy, at time.Time) (*policy.Policy, *Explanation, error) {
	day := p.Day(at) // the investor's calendar day
	ex := &Explanation{Date: day.Format(policy.DateLayout), Active: []TiltStatus{}, Expired: []TiltStatus{}}
	if !p.HasStrategy() {
		return p, ex, nil
	}
	local := make([]decimal.Decimal, len(p.Sleeves))
	for i := range p.Sleeves {
		local[i] = p.Sleeves[i].Local
	}
	levels := p.Levels()
	if len(p.GlidePath) > 0 {
		step, err := glide(p, levels, day, local)
		if err != nil {
			return nil, nil, err
		}
		ex.Glide = step
	}
	var halfWidths map[int]decimal.Decimal
	if p.GlideBands != nil {
		step, hw, err := glideBands(p, levels, day, local)
		if err != nil {
			return nil, nil, err
		}
		ex.Bands, halfWidths = step, hw
	}
	for k := range p.Tilts {
		t := &p.Tilts[k]
		st, err := tiltStatus(p, t)
		if err != nil {
			return nil, nil, err
		}
		if day.After(t.Until) {
			ex.Expired = append(ex.Expired, st)
			continue
		}
		st.Applied = tilt(p, t, local)
		ex.Active = append(ex.Active, st)
	}
	changed := halfWidths != nil
	for i := range p.Sleeves {
		changed = changed || !local[i].Equal(p.Sleeves[i].Local)
	}
	if !changed {
		return p, ex, nil
	}
	q, err := p.WithLocals(local, version(p, local, halfWidths))
	if err != nil {
		return nil, nil, fmt.Errorf("effective targets of %s on %s: %w", p.File, ex.Date, err)
	}
	if halfWidths != nil {
		q = q.WithHalfWidths(halfWidths)
	}
	return q, ex, nil
}

// version derives the effective policy's version from the file's, the
// effective weights and the half-widths of the bands glide_bands sets.
func version(p *policy.Policy, local []decimal.Decimal, halfWidths map[int]decimal.Decimal) string {
	h := sha256.New()
	for i := range p.Sleeves {
		h.Write([]byte(p.Sleeves[i].Path))
		h.Write([]byte{0})
		h.Write([]byte(local[i].String()))
		h.Write([]byte{0})
		if hw, ok := halfWidths[i]; ok {
			h.Write([]byte("band " + hw.String()))
			h.Write([]byte{0})
		}
	}
	return p.Version + "-" + hex.EncodeToString(h.Sum(nil)[:4])
}

// glide sets local to the glide path's weights on day.
func glide(p *policy.Policy, levels [][]int, day time.Time, local []decimal.Decimal) (*GlideStep, error) {
	if p.Investor == nil {
		return nil, fmt.Errorf("%s: a glide path without an investor birth date", p.File)
	}
	years, days, span, err := age(p.Investor.BirthDate, day)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.File, err)
	}
	rows := p.GlidePath
	lo := 0 // the last row at or below the age, or the first row
	for k := range rows {
		if rows[k].Age <= years {
			lo = k
		}
	}
	hi := lo
	if lo+1 < len(rows) && rows[lo].Age <= years {
		hi = lo + 1
	}
	step := &GlideStep{
		Age:   decimal.NewFromInt(int64(days)).DivRound(decimal.NewFromInt(int64(span)), displayPlaces).Add(decimal.NewFromInt(int64(years))),
		Years: years, Days: days, DaysInYear: span,
		FromAge: rows[lo].Age, ToAge: rows[hi].Age, FromLine: rows[lo].Line, ToLine: rows[hi].Line,
		Fraction: decimal.Zero,
	}
	for _, row := range []policy.GlideRow{rows[lo], rows[hi]} {
		if len(row.Local) != len(p.Sleeves) {
			return nil, fmt.Errorf("%s:%d: glide path row with %d weights for %d sleeves", p.File, row.Line, len(row.Local), len(p.Sleeves))
		}
	}
	// n/m is the exact fraction of the way from row lo to row hi.
	n := decimal.NewFromInt(int64((years-rows[lo].Age)*span + days))
	m := decimal.NewFromInt(int64((rows[hi].Age - rows[lo].Age) * span))
	if hi == lo || n.IsZero() {
		copy(local, rows[lo].Local)
		return step, nil
	}
	step.Fraction = n.DivRound(m, displayPlaces)
	interpolate(levels, local, rows[lo].Local, rows[hi].Local, n, m)
	return step, nil
}

// interpolate sets local to the weights n/m of the way from w0 to w1,
// level by level: each weight (w0 x (m - n) + w1 x n) / m, rounded down to
// Places within its level, the residue to the largest (distribute), so
// each level sums to exactly 1.
func interpolate(levels [][]int, local, w0, w1 []decimal.Decimal, n, m decimal.Decimal) {
	rest := m.Sub(n)
	w := make([]decimal.Decimal, 0, 8)
	out := make([]decimal.Decimal, 0, 8)
	for _, level := range levels {
		w = w[:0]
		for _, i := range level {
			w = append(w, w0[i].Mul(rest).Add(w1[i].Mul(n)))
		}
		out = distribute(out[:0], one, w)
		for k, i := range level {
			local[i] = out[k]
		}
	}
}

// age returns the whole years since birth on day, the days since the last
// birthday and the days from that birthday to the next.
func age(birth, day time.Time) (years, days, span int, err error) {
	birthday := func(year int) time.Time {
		// time.Date turns February 29 of a common year into March 1.
		return time.Date(year, birth.Month(), birth.Day(), 0, 0, 0, 0, time.UTC)
	}
	if day.Before(birthday(birth.Year())) {
		return 0, 0, 0, fmt.Errorf("date %s is before the investor's birth date %s", day.Format(policy.DateLayout), birth.Format(policy.DateLayout))
	}
	years = day.Year() - birth.Year()
	if birthday(birth.Year() + years).After(day) {
		years--
	}
	last, next := birthday(birth.Year()+years), birthday(birth.Year()+years+1)
	const dayLen = 24 * time.Hour
	return years, int(day.Sub(last) / dayLen), int(next.Sub(last) / dayLen), nil
}

// tiltStatus describes tilt t for an Explanation, its From resolved.
func tiltStatus(p *policy.Policy, t *policy.Tilt) (TiltStatus, error) {
	if t.Sleeve < 0 || t.Sleeve >= len(p.Sleeves) {
		return TiltStatus{}, fmt.Errorf("%s:%d: tilt of sleeve %d, of %d", p.File, t.Line, t.Sleeve, len(p.Sleeves))
	}
	st := TiltStatus{
		Sleeve: p.Sleeves[t.Sleeve].Path, Tilt: t.Delta, Applied: decimal.Zero,
		Until: t.Until.Format(policy.DateLayout), Reason: t.Reason, Line: t.Line,
	}
	for _, i := range counterparts(p, t) {
		if i < 0 || i >= len(p.Sleeves) || i == t.Sleeve || p.Sleeves[i].Parent != p.Sleeves[t.Sleeve].Parent {
			return TiltStatus{}, fmt.Errorf("%s:%d: tilt of %s takes from sleeve %d, not a sibling", p.File, t.Line, st.Sleeve, i)
		}
		st.From = append(st.From, p.Sleeves[i].Path)
	}
	return st, nil
}

// counterparts returns the sleeves tilt t takes from or gives to.
func counterparts(p *policy.Policy, t *policy.Tilt) []int {
	if t.From != nil {
		return t.From
	}
	parent := p.Sleeves[t.Sleeve].Parent
	var out []int
	if parent >= 0 {
		for _, i := range p.Sleeves[parent].Children {
			if i != t.Sleeve {
				out = append(out, i)
			}
		}
		return out
	}
	for i := range p.Sleeves {
		if p.Sleeves[i].Parent < 0 && i != t.Sleeve {
			out = append(out, i)
		}
	}
	return out
}

// tilt applies t to local and returns the change made to its sleeve.
func tilt(p *policy.Policy, t *policy.Tilt, local []decimal.Decimal) decimal.Decimal {
	others := counterparts(p, t)
	if len(others) == 0 {
		return decimal.Zero // nothing to take from or give to
	}
	w := make([]decimal.Decimal, len(others))
	total := decimal.Zero
	for k, i := range others {
		w[k] = local[i]
		total = total.Add(w[k])
	}
	delta := t.Delta
	if delta.Sign() > 0 {
		delta = decimal.Min(delta, total) // the donors' weight; the sleeve stays <= 1 as the level sums to 1
	} else {
		delta = decimal.Max(delta, local[t.Sleeve].Neg())
	}
	if delta.IsZero() {
		return delta
	}
	local[t.Sleeve] = local[t.Sleeve].Add(delta)
	for k, v := range distribute(nil, total.Sub(delta), w) {
		local[others[k]] = v
	}
	return delta
}

// distribute appends to out the shares of total pro rata to w (equal
// shares when w sums to 0), each rounded down to Places decimal places,
// with the residue added to the share of the largest w (the first on
// ties). total and every w must be >= 0; the shares sum to exactly total.
func distribute(out []decimal.Decimal, total decimal.Decimal, w []decimal.Decimal) []decimal.Decimal {
	sum := decimal.Zero
	largest := 0
	for k, v := range w {
		sum = sum.Add(v)
		if v.GreaterThan(w[largest]) {
			largest = k
		}
	}
	equal := sum.IsZero()
	if equal {
		sum = decimal.NewFromInt(int64(len(w)))
	}
	start := len(out)
	left := total
	for _, v := range w {
		if equal {
			v = one
		}
		q, _ := total.Mul(v).QuoRem(sum, Places)
		out = append(out, q)
		left = left.Sub(q)
	}
	out[start+largest] = out[start+largest].Add(left)
	return out
}
