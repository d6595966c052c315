package policy

import (
	"fmt"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"go.yaml.in/yaml/v3"

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
	f := r.Object(n, "investor", "birth_date", "retirement_age")
	inv := &Investor{Line: n.Line}
	ok := plainMapping(n)
	if v, found := c.required(n, f, "investor", "birth_date"); found {
		inv.BirthDate, found = c.date(v, "investor.birth_date")
		ok = ok && found
	} else {
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
	if p.Investor == nil && !c.investorGiven {
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
