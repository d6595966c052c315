package policy

import (
	"fmt"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"go.yaml.in/yaml/v3"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// DateLayout is how the policy writes calendar dates: birth dates and the
// last day of a tilt.
const DateLayout = "2006-01-02"

// RetirementRow is what a glide path row may give as its age to mean the
// investor's retirement age.
const RetirementRow = "retirement"

// maxAge bounds ages in years: anything above is a typing mistake.
const maxAge = 150

// date reads a calendar date written like 1990-05-01, as midnight UTC.
func (c *compiler) date(n *yaml.Node, field string) (time.Time, bool) {
	s, ok := c.r.Scalar(n, field)
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(DateLayout, strings.TrimSpace(s))
	if err != nil || t.Year() < 1900 {
		c.r.Errorf(n, field, "want a date like 1990-05-01 (year, month, day), got %q", s)
		return time.Time{}, false
	}
	return t, true
}

// years reads a whole number of years from 0 to maxAge.
func (c *compiler) years(n *yaml.Node, field string) (int, bool) {
	d, ok := c.r.Decimal(n, field)
	if !ok {
		return 0, false
	}
	if !d.IsInteger() || d.Sign() < 0 || d.GreaterThan(decimal.NewFromInt(maxAge)) {
		c.r.Errorf(n, field, "want a whole number of years from 0 to %d, got %s", maxAge, d)
		return 0, false
	}
	return int(d.IntPart()), true
}

// investor reads the optional investor block; n is nil when absent.
func (c *compiler) investor(n *yaml.Node) {
	if n == nil {
		return
	}
	r := c.r
	c.investorGiven = true
	f := r.Object(n, "investor", "birth_date", "retirement_age", "time_zone")
	inv := &Investor{Line: n.Line}
	ok := plainMapping(n)
	if v, found := f["time_zone"]; found {
		inv.Zone, found = c.zone(v, "investor.time_zone")
		ok = ok && found
	}
	if v, found := f["birth_date"]; found {
		inv.BirthDate, found = c.date(v, "investor.birth_date")
		ok = ok && found
	} else if inv.Zone == nil {
		c.required(n, f, "investor", "birth_date")
		ok = false
	}
	if v, found := f["retirement_age"]; found {
		if age, found := c.years(v, "investor.retirement_age"); found && age == 0 {
			r.Errorf(v, "investor.retirement_age", "must be above 0")
		} else {
			inv.RetirementAge = age
		}
	}
	if ok {
		c.p.Investor = inv
	}
}

// glidePath reads the optional glide path; n is nil when absent. It needs
// the investor block, read before it.
func (c *compiler) glidePath(n *yaml.Node) {
	if n == nil {
		return
	}
	r, p := c.r, c.p
	rows := r.Sequence(n, "glide_path")
	if n.Kind == yaml.SequenceNode && len(rows) == 0 {
		r.Errorf(n, "glide_path", "no rows")
	}
	if !c.modelOnly && (p.Investor == nil || p.Investor.BirthDate.IsZero()) && (!c.investorGiven || p.Investor != nil) {
		r.Errorf(n, "glide_path", "needs investor.birth_date: the rows' ages are counted from it")
	}
	prev := -1
	prevLine := 0
	for k, row := range rows {
		field := fmt.Sprintf("glide_path[%d]", k)
		f := r.Object(row, field, "age", "targets")
		g := GlideRow{Age: -1, Line: row.Line}
		if v, ok := c.required(row, f, field, "age"); ok {
			g.Age = c.rowAge(v, strictyaml.Join(field, "age"))
			if g.Age >= 0 && g.Age <= prev {
				r.Errorf(v, strictyaml.Join(field, "age"), "ages must increase down the table: %d follows %d (line %d)", g.Age, prev, prevLine)
			}
		}
		if v, ok := c.required(row, f, field, "targets"); ok && c.treeOK {
			g.Local = make([]decimal.Decimal, len(p.Sleeves))
			c.rowLevel(v, -1, strictyaml.Join(field, "targets"), g.Local)
		}
		if g.Age >= 0 {
			prev, prevLine = g.Age, row.Line
		}
		p.GlidePath = append(p.GlidePath, g)
	}
}

// rowAge reads a row's age: whole years, or "retirement" for the
// investor's retirement age. It returns -1 when the age is unusable.
func (c *compiler) rowAge(n *yaml.Node, field string) int {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && strings.TrimSpace(n.Value) == RetirementRow {
		if c.p.Investor == nil || c.p.Investor.RetirementAge == 0 {
			c.r.Errorf(n, field, "%q needs investor.retirement_age", RetirementRow)
			return -1
		}
		return c.p.Investor.RetirementAge
	}
	age, ok := c.years(n, field)
	if !ok {
		return -1
	}
	return age
}

// rowLevel reads one level of a glide path row's tree into local, checking
// that it names the same sleeves, with the same sub-sleeves, as targets.
func (c *compiler) rowLevel(n *yaml.Node, parent int, field string, local []decimal.Decimal) {
	r, p := c.r, c.p
	entries := r.Entries(n, field)
	seen := map[int]bool{}
	sum := decimal.Zero
	sumOK := len(entries) > 0
	for _, e := range entries {
		fieldK := strictyaml.Join(field, e.Key)
		path := e.Key
		if parent >= 0 {
			path = p.Sleeves[parent].Path + "/" + e.Key
		}
		i, found := p.sleeveIndex[path]
		if !found {
			r.Errorf(e.KeyNode, fieldK, "no sleeve %q in targets (a row has the sleeves of targets: %s)", path, c.levelNames(parent))
			sumOK = false
			continue
		}
		seen[i] = true
		w, ok, sub := c.sleeveWeight(e, fieldK)
		sumOK = sumOK && ok
		sum = sum.Add(w)
		local[i] = w
		switch s := &p.Sleeves[i]; {
		case sub != nil && s.Leaf():
			r.Errorf(sub, strictyaml.Join(fieldK, "sleeves"), "sleeve %q has no sub-sleeves in targets", path)
		case sub == nil && !s.Leaf() && e.Value != nil && e.Value.Kind != yaml.MappingNode:
			r.Errorf(e.Value, fieldK, "sleeve %q has sub-sleeves in targets: give its weight and sleeves here too", path)
		case sub != nil:
			c.rowLevel(sub, i, strictyaml.Join(fieldK, "sleeves"), local)
		}
	}
	if n.Kind != yaml.MappingNode {
		return // reported by Entries
	}
	for _, i := range c.level(parent) {
		if !seen[i] {
			r.Errorf(n, field, "sleeve %q of targets is missing: every row gives the whole tree", p.Sleeves[i].Path)
			sumOK = false
		}
	}
	c.levelSum(n, field, sum, sumOK)
}

// level returns the sleeves directly below parent (-1 for the top level).
func (c *compiler) level(parent int) []int {
	if parent >= 0 {
		return c.p.Sleeves[parent].Children
	}
	var top []int
	for i := range c.p.Sleeves {
		if c.p.Sleeves[i].Parent < 0 {
			top = append(top, i)
		}
	}
	return top
}

// levelNames lists the paths of the sleeves directly below parent, at
// most maxKnownListed of them.
func (c *compiler) levelNames(parent int) string {
	idx := c.level(parent)
	names := make([]string, 0, min(len(idx), maxKnownListed))
	for _, i := range idx[:min(len(idx), maxKnownListed)] {
		names = append(names, c.p.Sleeves[i].Path)
	}
	list := strings.Join(names, ", ")
	if more := len(idx) - len(names); more > 0 {
		list += fmt.Sprintf(" and %d more", more)
	}
	return list
}

// tilts reads the optional tactical tilts; n is nil when absent.
func (c *compiler) tilts(n *yaml.Node) {
	if n == nil {
		return
	}
	r, p := c.r, c.p
	for k, item := range r.Sequence(n, "tilts") {
		field := fmt.Sprintf("tilts[%d]", k)
		f := r.Object(item, field, "sleeve", "tilt", "until", "reason", "from")
		t := Tilt{Sleeve: -1, Line: item.Line}
		ok := plainMapping(item)
		if v, found := c.required(item, f, field, "sleeve"); found {
			if s, found := r.String(v, strictyaml.Join(field, "sleeve")); found {
				i, known := p.sleeveIndex[s]
				switch {
				case known && len(c.level(p.Sleeves[i].Parent)) < 2:
					r.Errorf(v, strictyaml.Join(field, "sleeve"), "sleeve %q has no siblings to take from or give to", s)
				case known:
					t.Sleeve = i
				case c.treeOK:
					r.Errorf(v, strictyaml.Join(field, "sleeve"), "no sleeve %q in targets (known: %s)", s, c.knownSleeves())
				}
			}
		}
		ok = ok && t.Sleeve >= 0
		if v, found := c.required(item, f, field, "tilt"); found {
			d, read := r.Percent(v, strictyaml.Join(field, "tilt"), false)
			if read && (d.IsZero() || d.Abs().GreaterThan(one)) {
				r.Errorf(v, strictyaml.Join(field, "tilt"), "want a change from -100%% to +100%%, other than 0%%, got %s", strings.TrimSpace(v.Value))
				read = false
			}
			t.Delta, ok = d, ok && read
		}
		if v, found := c.required(item, f, field, "until"); found {
			var read bool
			t.Until, read = c.date(v, strictyaml.Join(field, "until"))
			ok = ok && read
		}
		if v, found := c.required(item, f, field, "reason"); found {
			var read bool
			t.Reason, read = r.String(v, strictyaml.Join(field, "reason"))
			ok = ok && read
		}
		if v, found := f["from"]; found && t.Sleeve >= 0 {
			t.From = c.tiltFrom(v, strictyaml.Join(field, "from"), t.Sleeve)
			ok = ok && t.From != nil
		}
		if ok {
			p.Tilts = append(p.Tilts, t)
		}
	}
}

// tiltFrom reads the sleeves a tilt of sleeve s takes from: siblings of s,
// each once. It returns nil when there is a problem.
func (c *compiler) tiltFrom(n *yaml.Node, field string, s int) []int {
	r, p := c.r, c.p
	items := r.Sequence(n, field)
	if n.Kind == yaml.SequenceNode && len(items) == 0 {
		r.Errorf(n, field, "no sleeves (leave from out to take from every sibling pro rata)")
		return nil
	}
	parent := p.Sleeves[s].Parent
	out := make([]int, 0, len(items))
	ok := len(items) > 0
	for _, item := range items {
		name, read := r.String(item, field)
		if !read {
			ok = false
			continue
		}
		i, known := p.sleeveIndex[name]
		switch {
		case !known || p.Sleeves[i].Parent != parent:
			r.Errorf(item, field, "%q is not a sibling of %q: a tilt takes from sleeves of its level (%s)", name, p.Sleeves[s].Path, c.siblings(s))
			ok = false
		case i == s:
			r.Errorf(item, field, "%q is the tilted sleeve itself", name)
			ok = false
		case containsInt(out, i):
			r.Errorf(item, field, "%q is listed twice", name)
			ok = false
		default:
			out = append(out, i)
		}
	}
	if !ok {
		return nil
	}
	return out
}

// siblings lists the paths of the other sleeves of s's level.
func (c *compiler) siblings(s int) string {
	var names []string
	for _, i := range c.level(c.p.Sleeves[s].Parent) {
		if i != s {
			names = append(names, c.p.Sleeves[i].Path)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func containsInt(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// mayBeTargeted returns, per sleeve, whether some date may give it a
// target above 0%: every sleeve on its path has a weight above 0% in
// targets or a glide path row, or may be raised by a tilt (the tilted
// sleeve of a positive tilt, the receiving siblings of a negative one).
func (c *compiler) mayBeTargeted() []bool {
	p := c.p
	weighted := make([]bool, len(p.Sleeves))
	for i := range p.Sleeves {
		weighted[i] = p.Sleeves[i].Local.Sign() > 0
		for _, g := range p.GlidePath {
			weighted[i] = weighted[i] || g.Local[i].Sign() > 0
		}
	}
	if g := p.GlideBands; g != nil {
		for _, b := range g.Bands {
			for _, s := range b.Sleeves {
				weighted[s.Sleeve] = weighted[s.Sleeve] || s.Target.Sign() > 0
				for j, w := range s.Split {
					weighted[j] = weighted[j] || w.Sign() > 0
				}
			}
		}
	}
	for _, t := range p.Tilts {
		if t.Delta.Sign() > 0 {
			weighted[t.Sleeve] = true
			continue
		}
		receivers := t.From
		if receivers == nil {
			receivers = c.level(p.Sleeves[t.Sleeve].Parent)
		}
		for _, i := range receivers {
			weighted[i] = weighted[i] || i != t.Sleeve
		}
	}
	out := make([]bool, len(p.Sleeves))
	for i := range p.Sleeves { // parents precede children
		out[i] = weighted[i]
		if parent := p.Sleeves[i].Parent; parent >= 0 {
			out[i] = out[i] && out[parent]
		}
	}
	return out
}

// GlideBands is the glide path written as the investor's table of age
// bands (glide_bands): per band of ages, a range for some top-level
// sleeves (the tolerance band in that age band; the target its midpoint
// unless given) and the split inside them. Sleeves a band does not name
// share the rest of their level in the proportions of targets.
type GlideBands struct {
	// Bands are contiguous and by increasing age: each band's From is the
	// previous band's To. Only the last may be open (Open, "60+").
	Bands []AgeBand
	// Lower says that an age two bands share belongs to the band ending
	// there (boundary: lower); by default it belongs to the band starting
	// there (boundary: upper).
	Lower bool
	// Ramp, when positive, is a span of years over which the weights move
	// linearly from one band's to the next instead of stepping: the Ramp
	// years before the boundary (ending at it, where the upper band holds)
	// or, with Lower, the Ramp years after it.
	Ramp decimal.Decimal
	Line int
}

// AgeBand is one band of ages of GlideBands.
type AgeBand struct {
	From, To decimal.Decimal
	Open     bool
	Sleeves  []BandSleeve
	Line     int
}

// BandSleeve is what an age band sets for one top-level sleeve.
type BandSleeve struct {
	Sleeve int
	// Low and High are the range (fractions of the portfolio); Target is
	// inside it: the midpoint unless the file gives one.
	Low, High, Target decimal.Decimal
	// Split is the weight of each sub-sleeve within the sleeve, indexed
	// like Policy.Sleeves (zero elsewhere); nil keeps the split of
	// targets. A split names sub-sleeves of one level only.
	Split []decimal.Decimal
	Line  int
}

// glideBands reads the optional glide_bands block; n is nil when absent.
// It needs the investor block, read before it.
func (c *compiler) glideBands(n *yaml.Node) {
	if n == nil {
		return
	}
	r, p := c.r, c.p
	const field = "glide_bands"
	f := r.Object(n, field, "boundary", "ramp_years", "bands")
	g := &GlideBands{Line: n.Line}
	ok := plainMapping(n) && c.treeOK
	if len(p.GlidePath) > 0 {
		r.Errorf(n, field, "give glide_path or glide_bands, not both")
		ok = false
	}
	if !c.modelOnly && (p.Investor == nil || p.Investor.BirthDate.IsZero()) && (!c.investorGiven || p.Investor != nil) {
		r.Errorf(n, field, "needs investor.birth_date: the bands' ages are counted from it")
		ok = false
	}
	if v, found := f["boundary"]; found {
		if s, read := r.String(v, field+".boundary"); read {
			switch s {
			case "upper":
			case "lower":
				g.Lower = true
			default:
				r.Errorf(v, field+".boundary", "want upper (an age two bands share belongs to the band starting there) or lower, got %q", s)
				ok = false
			}
		}
	}
	if v, found := f["ramp_years"]; found {
		d, read := r.Decimal(v, field+".ramp_years")
		if read && d.Sign() < 0 {
			r.Errorf(v, field+".ramp_years", "must not be negative, got %s", d)
			read = false
		}
		g.Ramp, ok = d, ok && read
	}
	v, found := c.required(n, f, field, "bands")
	if !found {
		return
	}
	items := r.Sequence(v, field+".bands")
	if v.Kind == yaml.SequenceNode && len(items) == 0 {
		r.Errorf(v, field+".bands", "no bands")
		ok = false
	}
	for k, item := range items {
		b, read := c.ageBand(item, fmt.Sprintf("%s.bands[%d]", field, k), k == len(items)-1)
		ok = ok && read
		if !read {
			continue
		}
		if k > 0 && len(g.Bands) == k {
			prev := g.Bands[k-1]
			if !b.From.Equal(prev.To) {
				r.Errorf(item, fmt.Sprintf("%s.bands[%d].ages", field, k), "starts at %s, but the band before ends at %s (line %d): bands must follow each other", b.From, prev.To, prev.Line)
				ok = false
			}
		}
		if g.Ramp.Sign() > 0 && !b.Open && b.To.Sub(b.From).LessThan(g.Ramp) {
			r.Errorf(item, field+".ramp_years", "%s years is longer than the band %s-%s (line %d): ramps must not overlap", g.Ramp, b.From, b.To, b.Line)
			ok = false
		}
		g.Bands = append(g.Bands, b)
	}
	if ok {
		p.GlideBands = g
	}
}

// ageBand reads one band: ages ("20-35", or "60+" for the last) and, per
// top-level sleeve, {range, target, split}.
func (c *compiler) ageBand(n *yaml.Node, field string, last bool) (AgeBand, bool) {
	r, p := c.r, c.p
	b := AgeBand{Line: n.Line}
	entries := r.Entries(n, field)
	if !plainMapping(n) {
		return b, false
	}
	ok, hasAges := true, false
	named := map[int]bool{}
	sum := decimal.Zero
	for _, e := range entries {
		fieldK := strictyaml.Join(field, e.Key)
		if e.Key == "ages" {
			hasAges = true
			ok = c.ages(e.Value, fieldK, last, &b) && ok
			continue
		}
		i, known := p.sleeveIndex[e.Key]
		switch {
		case !known:
			r.Errorf(e.KeyNode, fieldK, "no sleeve %q in targets (a band gives ages and top-level sleeves: %s)", e.Key, c.levelNames(-1))
			ok = false
			continue
		case p.Sleeves[i].Parent >= 0:
			r.Errorf(e.KeyNode, fieldK, "%q is not a top-level sleeve: give its share in its parent's split", e.Key)
			ok = false
			continue
		}
		s, read := c.bandSleeve(e.Value, fieldK, i)
		ok = ok && read
		named[i] = true
		sum = sum.Add(s.Target)
		b.Sleeves = append(b.Sleeves, s)
	}
	if !hasAges {
		r.Errorf(n, strictyaml.Join(field, "ages"), "required field is missing (like 20-35, or 60+ for the last band)")
		ok = false
	}
	if !ok {
		return b, false
	}
	// The sleeves not named share what is left in their proportions of
	// targets; with none left to share, the named targets must make 100%.
	rest, restWeight := one.Sub(sum), decimal.Zero
	for _, i := range c.level(-1) {
		if !named[i] {
			restWeight = restWeight.Add(p.Sleeves[i].Local)
		}
	}
	switch {
	case rest.Sign() < 0:
		r.Errorf(n, field, "the targets of the band's sleeves sum to %s%%, more than 100%%", sum.Shift(2))
		ok = false
	case rest.Sign() > 0 && restWeight.IsZero():
		r.Errorf(n, field, "the targets of the band's sleeves sum to %s%% and no other sleeve has a weight in targets to take the rest", sum.Shift(2))
		ok = false
	}
	return b, ok
}

// ages reads a band's ages: "A-B" (A < B) or, for the last band, "A+".
func (c *compiler) ages(n *yaml.Node, field string, last bool, b *AgeBand) bool {
	s, ok := c.r.Scalar(n, field)
	if !ok {
		return false
	}
	s = strings.TrimSpace(s)
	bad := func() bool {
		c.r.Errorf(n, field, "want ages like 20-35 (from 20 to 35 years), or 60+ for the last band, got %q", s)
		return false
	}
	from, to, found := strings.Cut(s, "-")
	if !found {
		var plus bool
		from, plus = strings.CutSuffix(s, "+")
		if !plus {
			return bad()
		}
		if !last {
			c.r.Errorf(n, field, "only the last band may be open (%s)", s)
			return false
		}
		b.Open = true
	}
	var err error
	if b.From, err = decimaltext.Parse(strings.TrimSpace(from)); err != nil || b.From.Sign() < 0 || b.From.GreaterThan(decimal.NewFromInt(maxAge)) {
		return bad()
	}
	if b.Open {
		return true
	}
	if b.To, err = decimaltext.Parse(strings.TrimSpace(to)); err != nil || !b.To.GreaterThan(b.From) || b.To.GreaterThan(decimal.NewFromInt(maxAge)) {
		return bad()
	}
	return true
}

// bandSleeve reads {range: 20%-30%, target: 25%, split: {...}} for
// top-level sleeve i.
func (c *compiler) bandSleeve(n *yaml.Node, field string, i int) (BandSleeve, bool) {
	r, p := c.r, c.p
	s := BandSleeve{Sleeve: i, Line: n.Line}
	f := r.Object(n, field, "range", "target", "split")
	if !plainMapping(n) {
		return s, false
	}
	ok := true
	if v, found := c.required(n, f, field, "range"); found {
		text, read := r.Scalar(v, strictyaml.Join(field, "range"))
		lo, hi, cut := strings.Cut(text, "-")
		var err1, err2 error
		if read && cut {
			s.Low, err1 = strictyaml.ParsePercent(strings.TrimSpace(lo))
			s.High, err2 = strictyaml.ParsePercent(strings.TrimSpace(hi))
		}
		if !read || !cut || err1 != nil || err2 != nil || s.Low.Sign() < 0 || s.High.LessThan(s.Low) || s.High.GreaterThan(one) {
			if read {
				r.Errorf(v, strictyaml.Join(field, "range"), "want a range like 20%%-30%% within 0%%-100%%, got %q", text)
			}
			ok = false
		}
	} else {
		ok = false
	}
	if ok {
		s.Target = s.Low.Add(s.High).Mul(decimal.New(5, -1)) // the midpoint, exactly
	}
	if v, found := f["target"]; found {
		t, read := r.Percent(v, strictyaml.Join(field, "target"), true)
		if read && ok && (t.LessThan(s.Low) || t.GreaterThan(s.High)) {
			r.Errorf(v, strictyaml.Join(field, "target"), "%s is outside the range %s%%-%s%%", strings.TrimSpace(v.Value), s.Low.Shift(2), s.High.Shift(2))
			read = false
		}
		s.Target, ok = t, ok && read
	}
	if v, found := f["split"]; found {
		if p.Sleeves[i].Leaf() {
			r.Errorf(v, strictyaml.Join(field, "split"), "sleeve %q has no sub-sleeves in targets", p.Sleeves[i].Path)
			return s, false
		}
		s.Split = make([]decimal.Decimal, len(p.Sleeves))
		sum := decimal.Zero
		sumOK := true
		for _, e := range r.Entries(v, strictyaml.Join(field, "split")) {
			fk := strictyaml.Join(field, "split."+e.Key)
			j, known := p.sleeveIndex[p.Sleeves[i].Path+"/"+e.Key]
			if !known || p.Sleeves[j].Parent != i {
				r.Errorf(e.KeyNode, fk, "no sub-sleeve %q of %q in targets (%s)", e.Key, p.Sleeves[i].Path, c.levelNames(i))
				sumOK = false
				continue
			}
			w, read := r.Percent(e.Value, fk, true)
			sumOK = sumOK && read
			s.Split[j] = w
			sum = sum.Add(w)
		}
		if sumOK && !sum.Equal(one) {
			r.Errorf(v, strictyaml.Join(field, "split"), "the split sums to %s%%, want 100%% (a sub-sleeve left out gets 0%%)", sum.Shift(2))
			sumOK = false
		}
		ok = ok && sumOK
	}
	return s, ok
}

// WithHalfWidths returns a copy of p whose sleeves at the given indices
// have an absolute tolerance band of the given half-width (a fraction of
// the portfolio): the ranges of glide_bands, applied to the effective
// targets. p is unchanged.
func (p *Policy) WithHalfWidths(halfWidths map[int]decimal.Decimal) *Policy {
	q := *p
	q.Sleeves = make([]Sleeve, len(p.Sleeves))
	copy(q.Sleeves, p.Sleeves)
	for i, hw := range halfWidths {
		q.Sleeves[i].Band = Band{Absolute: hw, HasAbsolute: true}
	}
	q.derive()
	return &q
}

// zone reads a time zone name like America/New_York; Local is refused,
// since it depends on the machine.
func (c *compiler) zone(n *yaml.Node, field string) (*time.Location, bool) {
	s, ok := c.r.String(n, field)
	if !ok {
		return nil, false
	}
	if loc, ok := c.memo.zone(s); ok {
		return loc, true
	}
	loc, err := time.LoadLocation(s)
	switch {
	case s == "Local":
		c.r.Errorf(n, field, "Local depends on the machine; name a zone like America/New_York or UTC")
	case err != nil:
		c.r.Errorf(n, field, "%q is not a time zone like America/New_York or UTC", s)
	default:
		c.memo.keepZone(s, loc)
		return loc, true
	}
	return nil, false
}

// Zone returns the investor's time zone, in which trade dates, holding
// periods, ages and the last day of tilts are counted, and where it comes
// from: investor.time_zone; else the zone of rebalance.schedule's CRON_TZ
// (or TZ) prefix; else LocalZone, the daemon's local zone as the shell that
// loaded the policy gave it; else UTC.
func (p *Policy) Zone() (*time.Location, string) {
	if p.Investor != nil && p.Investor.Zone != nil {
		return p.Investor.Zone, "investor.time_zone"
	}
	spec := p.Rebalance.Schedule
	for _, prefix := range []string{"CRON_TZ=", "TZ="} {
		if rest, ok := strings.CutPrefix(spec, prefix); ok {
			name, _, _ := strings.Cut(rest, " ")
			if loc, err := time.LoadLocation(name); err == nil {
				return loc, "rebalance.schedule's CRON_TZ"
			}
		}
	}
	if p.LocalZone != nil {
		return p.LocalZone, "the daemon's local zone"
	}
	return time.UTC, "UTC (no zone given)"
}

// Day returns the calendar day of t in the investor's zone (Zone), as
// midnight UTC of that day: the day ages and tilts are counted on.
func (p *Policy) Day(t time.Time) time.Time {
	loc, _ := p.Zone()
	y, m, d := t.In(loc).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
