package targets

import (
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/policy"
)

// BandStep tells which band of glide_bands applies on a date.
type BandStep struct {
	// Age is the investor's age in years, rounded to 6 places for display;
	// Years, Days and DaysInYear as in GlideStep.
	Age        decimal.Decimal `json:"age"`
	Years      int             `json:"age_years"`
	Days       int             `json:"age_days"`
	DaysInYear int             `json:"days_in_year"`
	// Band is the band that applies: its ages as written ("20-35",
	// "60+") and its line.
	Band string `json:"band"`
	Line int    `json:"line"`
	// RampTo is, during a ramp, the band the weights move to (or, with
	// boundary lower, come from), and Fraction how far the date is along
	// the ramp, from 0 to 1, rounded to 6 places for display.
	RampTo   string          `json:"ramp_to,omitempty"`
	Fraction decimal.Decimal `json:"ramp_fraction,omitzero"`
}

// ages writes a band's ages as the policy does.
func ages(b *policy.AgeBand) string {
	if b.Open {
		return b.From.String() + "+"
	}
	return b.From.String() + "-" + b.To.String()
}

// glideBands sets local to the weights of the band of p.GlideBands that
// applies on day and returns the half-widths of the bands its ranges set.
//
// The age, years + days/DaysInYear, is compared exactly with the bands'
// bounds. An age two bands share belongs to the band starting there, or
// with boundary lower to the band ending there; before the first band the
// first applies, after the last the last. A ramp of r years moves the
// weights linearly, level by level (as between two glide path rows), from
// the band ending at a boundary B to the band starting there over the r
// years before B (after B with boundary lower), so that the band owning B
// holds exactly on it. During a ramp each sleeve's tolerance is the wider
// of the two bands' ranges.
func glideBands(p *policy.Policy, levels [][]int, day time.Time, local []decimal.Decimal) (*BandStep, map[int]decimal.Decimal, error) {
	g := p.GlideBands
	if p.Investor == nil {
		return nil, nil, fmt.Errorf("%s: glide_bands without an investor birth date", p.File)
	}
	years, days, span, err := age(p.Investor.BirthDate, day)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", p.File, err)
	}
	spanD := decimal.NewFromInt(int64(span))
	now := decimal.NewFromInt(int64(years*span + days)) // the age in 1/span years
	at := func(years decimal.Decimal) decimal.Decimal { return years.Mul(spanD) }
	bands := g.Bands
	k := 0
	for j := range bands {
		from := at(bands[j].From)
		if j > 0 && (now.GreaterThan(from) || !g.Lower && now.Equal(from)) {
			k = j
		}
	}
	step := &BandStep{
		Age:   decimal.NewFromInt(int64(days)).DivRound(spanD, displayPlaces).Add(decimal.NewFromInt(int64(years))),
		Years: years, Days: days, DaysInYear: span, Band: ages(&bands[k]), Line: bands[k].Line,
	}
	w0, hw := bandWeights(p, levels, &bands[k])
	copy(local, w0)
	if g.Ramp.Sign() <= 0 {
		return step, hw, nil
	}
	// The ramp the age may be on: toward the next band (boundary upper),
	// or from the previous one (boundary lower).
	other, start := -1, decimal.Zero
	switch {
	case !g.Lower && k+1 < len(bands):
		other, start = k+1, at(bands[k+1].From.Sub(g.Ramp))
	case g.Lower && k > 0:
		other, start = k-1, at(bands[k].From)
	}
	m := at(g.Ramp)
	n := now.Sub(start)
	if other < 0 || n.Sign() < 0 || n.GreaterThanOrEqual(m) {
		return step, hw, nil
	}
	from, to := &bands[k], &bands[other]
	if g.Lower {
		from, to = to, from // from the previous band to this one
	}
	wFrom, hwFrom := bandWeights(p, levels, from)
	wTo, hwTo := bandWeights(p, levels, to)
	step.RampTo = ages(&bands[other])
	step.Fraction = n.DivRound(m, displayPlaces)
	interpolate(levels, local, wFrom, wTo, n, m)
	wide := make(map[int]decimal.Decimal, len(hwFrom)+len(hwTo))
	for _, m := range []map[int]decimal.Decimal{hwFrom, hwTo} {
		for i, h := range m {
			if cur, ok := wide[i]; !ok || h.GreaterThan(cur) {
				wide[i] = h
			}
		}
	}
	return step, wide, nil
}

// bandWeights returns the weights within parents that band b gives, and
// the half-widths of its ranges: a named sleeve gets its target, its
// sub-sleeves its split; the top-level sleeves it does not name share the
// rest pro rata to their weights in targets (rounded down to Places, the
// residue to the largest, as distribute does); everything else keeps
// targets' weights.
func bandWeights(p *policy.Policy, levels [][]int, b *policy.AgeBand) ([]decimal.Decimal, map[int]decimal.Decimal) {
	local := make([]decimal.Decimal, len(p.Sleeves))
	for i := range p.Sleeves {
		local[i] = p.Sleeves[i].Local
	}
	hw := make(map[int]decimal.Decimal, len(b.Sleeves))
	named := make(map[int]bool, len(b.Sleeves))
	rest := one
	for _, s := range b.Sleeves {
		local[s.Sleeve] = s.Target
		named[s.Sleeve] = true
		rest = rest.Sub(s.Target)
		hw[s.Sleeve] = decimal.Min(s.Target.Sub(s.Low), s.High.Sub(s.Target))
		if s.Split != nil {
			for _, j := range p.Sleeves[s.Sleeve].Children {
				local[j] = s.Split[j]
			}
		}
	}
	var others []int
	var w []decimal.Decimal
	for _, i := range levels[0] {
		if !named[i] {
			others = append(others, i)
			w = append(w, p.Sleeves[i].Local)
		}
	}
	if len(others) > 0 {
		for j, v := range distribute(nil, rest, w) {
			local[others[j]] = v
		}
	}
	return local, hw
}
