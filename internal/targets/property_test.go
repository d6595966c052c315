package targets_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/targets"
)

var cases = flag.Int("cases", 2000, "random policies TestRandomPolicies checks")

// split returns n non-negative integers summing to total: the gaps
// between n-1 random cuts of [0, total].
func split(r *rand.Rand, n, total int) []int {
	cuts := []int{0, total}
	for range n - 1 {
		cuts = append(cuts, r.IntN(total+1))
	}
	slices.Sort(cuts)
	out := make([]int, n)
	for k := range out {
		out[k] = cuts[k+1] - cuts[k]
	}
	return out
}

// genTree is the shape of a generated policy: top-level sleeves s0..sN
// and cash, one of them (or none) with sub-sleeves.
type genTree struct {
	top    int // sleeves before cash
	nested int // index of the nested sleeve, or top for none
	kids   int
}

// percent writes units of 0.01% (units of 1/10000) as a percentage.
func percent(units int) string { return decimal.New(int64(units), -2).String() + "%" }

// weights writes a whole tree of random weights in the flow style of
// targets, with some sleeves at 0%.
func (g genTree) weights(r *rand.Rand) string {
	units := func(n int) []int {
		out := split(r, n, 10000)
		if a, b := r.IntN(n), r.IntN(n); a != b && r.IntN(3) == 0 { // move one sleeve's weight to another
			out[b] += out[a]
			out[a] = 0
		}
		return out
	}
	top := units(g.top + 1)
	var parts []string
	for k := 0; k < g.top; k++ {
		if k == g.nested {
			var kids []string
			for c, u := range units(g.kids) {
				kids = append(kids, fmt.Sprintf("c%d: %s", c, percent(u)))
			}
			parts = append(parts, fmt.Sprintf("s%d: {weight: %s, sleeves: {%s}}", k, percent(top[k]), strings.Join(kids, ", ")))
			continue
		}
		parts = append(parts, fmt.Sprintf("s%d: %s", k, percent(top[k])))
	}
	parts = append(parts, "cash: "+percent(top[g.top]))
	return "{" + strings.Join(parts, ", ") + "}"
}

// generate writes a random valid policy with an investor, a glide path
// (most of the time) and tilts.
func generate(r *rand.Rand) string {
	g := genTree{top: 1 + r.IntN(4), kids: 2 + r.IntN(2)}
	g.nested = r.IntN(g.top + 1)
	var b strings.Builder
	birth := time.Date(1940+r.IntN(60), time.Month(1+r.IntN(12)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC)
	if r.IntN(10) == 0 {
		birth = time.Date(1960+4*r.IntN(10), 2, 29, 0, 0, 0, 0, time.UTC)
	}
	fmt.Fprintf(&b, "policy: gen\ncurrency: USD\ninvestor: {birth_date: %s, retirement_age: %d}\n", birth.Format(policy.DateLayout), 55+r.IntN(15))
	fmt.Fprintf(&b, "targets: %s\n", g.weights(r))
	if r.IntN(5) != 0 {
		b.WriteString("glide_path:\n")
		age := r.IntN(40)
		for k := 1 + r.IntN(4); k > 0; k-- {
			fmt.Fprintf(&b, "  - {age: %d, targets: %s}\n", age, g.weights(r))
			age += 1 + r.IntN(20)
		}
	}
	var paths []string
	for k := 0; k < g.top; k++ {
		paths = append(paths, fmt.Sprintf("s%d", k))
	}
	paths = append(paths, "cash")
	if g.nested < g.top {
		for c := 0; c < g.kids; c++ {
			paths = append(paths, fmt.Sprintf("s%d/c%d", g.nested, c))
		}
	}
	nTilts := r.IntN(5)
	if nTilts > 0 {
		b.WriteString("tilts:\n")
	}
	for ; nTilts > 0; nTilts-- {
		sleeve := paths[r.IntN(len(paths))]
		var siblings []string
		for _, p := range paths {
			if p != sleeve && strings.Count(p, "/") == strings.Count(sleeve, "/") &&
				(!strings.Contains(p, "/") || p[:strings.Index(p, "/")] == sleeve[:max(0, strings.Index(sleeve, "/"))]) {
				siblings = append(siblings, p)
			}
		}
		if len(siblings) == 0 {
			continue
		}
		tilt := decimal.New(int64(1+r.IntN(3000)), -2)
		if r.IntN(8) == 0 {
			tilt = decimal.New(int64(1+r.IntN(100)), 0)
		}
		if r.IntN(2) == 0 {
			tilt = tilt.Neg()
		}
		until := time.Date(2020+r.IntN(20), time.Month(1+r.IntN(12)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC)
		fmt.Fprintf(&b, "  - {sleeve: %s, tilt: %s%%, until: %s, reason: \"r\"", sleeve, tilt, until.Format(policy.DateLayout))
		if r.IntN(2) == 0 {
			r.Shuffle(len(siblings), func(i, j int) { siblings[i], siblings[j] = siblings[j], siblings[i] })
			fmt.Fprintf(&b, ", from: [%s]", strings.Join(siblings[:1+r.IntN(len(siblings))], ", "))
		}
		b.WriteString("}\n")
	}
	b.WriteString("bands: {absolute: 3%, relative: 25%}\nrebalance: {trigger: threshold}\ninstruments:\n")
	for _, p := range paths {
		if !strings.Contains(p, "/") && p == fmt.Sprintf("s%d", g.nested) {
			continue // has sub-sleeves
		}
		if p != "cash" {
			fmt.Fprintf(&b, "  I-%s: {sleeve: %s, step: \"0.001\"}\n", strings.ReplaceAll(p, "/", "-"), p)
		}
	}
	b.WriteString("accounts: {a: {type: roth_ira}}\n")
	return b.String()
}

// TestRandomPolicies checks, on random policies with glide paths and
// tilts and random dates, that the effective targets keep every invariant
// of a parsed policy: each level sums to exactly 100%, no weight is below
// 0% or above 100%, targets are exact products of the weights, bands are
// derived as Parse derives them, computed weights have at most Places
// decimals (or as many as the file's); that the result is deterministic and its version follows the
// targets; that one tilt moves its sleeve by what it reports, within its
// clamps, and only its counterparts the other way; and that drift and
// planning run on the result.
func TestRandomPolicies(t *testing.T) {
	n := *cases
	if testing.Short() {
		n /= 10
	}
	var glided, tilted, clamped int
	for seed := 0; seed < n; seed++ {
		r := rand.New(rand.NewPCG(uint64(seed), 5))
		text := generate(r)
		ok := t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			p := parse(t, "gen.yml", []byte(text))
			at := p.Investor.BirthDate.Add(time.Duration(r.IntN(100*366*24)) * time.Hour)
			q, ex := effective(t, p, at)
			checkEffective(t, p, q)
			if ex.Glide != nil {
				glided++
				g := ex.Glide
				if g.Fraction.Sign() < 0 || g.Fraction.GreaterThan(decimal.NewFromInt(1)) || g.FromAge > g.ToAge {
					t.Errorf("glide step %+v", g)
				}
			}
			day := at.UTC().Format(policy.DateLayout)
			for _, a := range ex.Active {
				if a.Until < day {
					t.Errorf("tilt until %s active on %s", a.Until, day)
				}
				if a.Applied.Abs().GreaterThan(a.Tilt.Abs()) || a.Applied.Sign()*a.Tilt.Sign() < 0 {
					t.Errorf("tilt %s applied %s", a.Tilt, a.Applied)
				}
			}
			for _, e := range ex.Expired {
				if e.Until >= day {
					t.Errorf("tilt until %s expired on %s", e.Until, day)
				}
			}
			if len(ex.Active)+len(ex.Expired) != len(p.Tilts) {
				t.Errorf("%d active and %d expired of %d tilts", len(ex.Active), len(ex.Expired), len(p.Tilts))
			}
			// Deterministic.
			again, _ := effective(t, p, at)
			if again.Version != q.Version || len(again.Sleeves) != len(q.Sleeves) {
				t.Fatalf("second run: version %s, first %s", again.Version, q.Version)
			}
			for i := range q.Sleeves {
				if !again.Sleeves[i].Local.Equal(q.Sleeves[i].Local) {
					t.Errorf("second run: %s weight %s, first %s", q.Sleeves[i].Path, again.Sleeves[i].Local, q.Sleeves[i].Local)
				}
			}
			if len(ex.Active) == 1 {
				tilted++
				if checkOneTilt(t, p, q, at) {
					clamped++
				}
			}
			checkPlan(t, q, r)
			checkPhase(t, p, q, at, r)
		})
		if !ok {
			t.Logf("policy:\n%s", text)
			break
		}
	}
	t.Logf("%d policies: %d on a glide path, %d with one active tilt (%d clamped)", n, glided, tilted, clamped)
	if !testing.Short() && (glided < n/2 || tilted < n/10 || clamped < 20) {
		t.Errorf("the generator rarely exercises some cases; adjust it")
	}
}

// checkEffective checks the invariants of effective policy q of p.
func checkEffective(t *testing.T, p, q *policy.Policy) {
	t.Helper()
	one := decimal.NewFromInt(1)
	same := true
	// Computed weights have at most Places decimals; weights taken as
	// written, or moved by a tilt as written, may have as many as those.
	places := int32(targets.Places)
	widen := func(d decimal.Decimal) { places = max(places, -d.Exponent()) }
	for i := range p.Sleeves {
		widen(p.Sleeves[i].Local)
		for _, g := range p.GlidePath {
			widen(g.Local[i])
		}
	}
	for _, tl := range p.Tilts {
		widen(tl.Delta)
	}
	for i := range q.Sleeves {
		s := &q.Sleeves[i]
		scale := one
		if s.Parent >= 0 {
			scale = q.Sleeves[s.Parent].Target
		}
		if s.Local.Sign() < 0 || s.Local.GreaterThan(one) {
			t.Errorf("%s: weight %s outside 0%%-100%%", s.Path, s.Local)
		}
		if !s.Local.Equal(s.Local.Truncate(places)) {
			t.Errorf("%s: weight %s has more than %d decimals", s.Path, s.Local, places)
		}
		if !s.Target.Equal(s.Local.Mul(scale)) {
			t.Errorf("%s: target %s, want %s x %s", s.Path, s.Target, s.Local, scale)
		}
		hw := s.Band.HalfWidth(s.Target)
		if !s.HalfWidth.Equal(hw) || !s.BandLow.Equal(decimal.Max(decimal.Zero, s.Target.Sub(hw))) || !s.BandHigh.Equal(decimal.Min(one, s.Target.Add(hw))) {
			t.Errorf("%s: band %s-%s half-width %s for target %s", s.Path, s.BandLow, s.BandHigh, s.HalfWidth, s.Target)
		}
		if s.Leaf() && i != q.Cash && s.Target.Sign() > 0 && len(s.Instruments) == 0 {
			t.Errorf("%s: a target and no instrument", s.Path)
		}
		same = same && s.Local.Equal(p.Sleeves[i].Local)
	}
	leaves := decimal.Zero
	for _, level := range q.Levels() {
		sum := decimal.Zero
		for _, i := range level {
			sum = sum.Add(q.Sleeves[i].Local)
		}
		if !sum.Equal(one) {
			t.Errorf("level of %s sums to %s", q.Sleeves[level[0]].Path, sum)
		}
	}
	for i := range q.Sleeves {
		if q.Sleeves[i].Leaf() {
			leaves = leaves.Add(q.Sleeves[i].Target)
		}
	}
	if !leaves.Equal(one) {
		t.Errorf("leaf targets sum to %s", leaves)
	}
	switch {
	case same && q != p:
		t.Errorf("unchanged targets, new policy %s", q.Version)
	case !same && !strings.HasPrefix(q.Version, p.Version+"-"):
		t.Errorf("changed targets, version %s", q.Version)
	}
}

// checkOneTilt compares q, with a single active tilt, with the policy
// without tilts on the same date. It reports whether the tilt was clamped.
func checkOneTilt(t *testing.T, p, q *policy.Policy, at time.Time) bool {
	t.Helper()
	bare := *p
	bare.Tilts = nil
	base, _ := effective(t, &bare, at)
	_, ex, _ := targets.Effective(p, at)
	a := ex.Active[0]
	s, _ := p.SleeveIndex(a.Sleeve)
	if got := q.Sleeves[s].Local.Sub(base.Sleeves[s].Local); !got.Equal(a.Applied) {
		t.Errorf("%s moved by %s, the tilt reports %s", a.Sleeve, got, a.Applied)
	}
	from := map[int]bool{}
	avail := decimal.Zero
	for _, f := range a.From {
		i, _ := p.SleeveIndex(f)
		from[i] = true
		avail = avail.Add(base.Sleeves[i].Local)
	}
	for i := range q.Sleeves {
		moved := q.Sleeves[i].Local.Sub(base.Sleeves[i].Local)
		switch {
		case i == s:
		case from[i]:
			if moved.Sign()*a.Applied.Sign() > 0 {
				t.Errorf("%s moved by %s the same way as the tilt (%s)", q.Sleeves[i].Path, moved, a.Applied)
			}
		case !moved.IsZero():
			t.Errorf("%s moved by %s, not a counterpart of the tilt of %s", q.Sleeves[i].Path, moved, a.Sleeve)
		}
	}
	if !a.Clamped() {
		return false
	}
	// Clamped exactly at a limit: the donors have nothing left, or the
	// sleeve is at 0%.
	if a.Tilt.Sign() > 0 && !a.Applied.Equal(avail) || a.Tilt.Sign() < 0 && !q.Sleeves[s].Local.IsZero() {
		t.Errorf("tilt %s clamped to %s: donors had %s, sleeve now %s", a.Tilt, a.Applied, avail, q.Sleeves[s].Local)
	}
	return true
}

// checkPlan plans a random household on q and checks that the plan works
// on q's targets and version.
func checkPlan(t *testing.T, q *policy.Policy, r *rand.Rand) {
	t.Helper()
	b := &portfolio.Book{
		Policy:       q,
		HoldingsAsOf: time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC),
		PricesAsOf:   time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC),
		Cash:         []decimal.Decimal{decimal.NewFromInt(int64(r.IntN(100000)))},
		Qty:          [][]decimal.Decimal{make([]decimal.Decimal, len(q.Instruments))},
		Price:        make([]decimal.Decimal, len(q.Instruments)),
	}
	for i := range q.Instruments {
		b.Price[i] = decimal.New(int64(100+r.IntN(100000)), -2)
		b.Qty[0][i] = decimal.New(int64(r.IntN(1000000)), -3)
	}
	pl := plan.Make(drift.Compute(b))
	if pl.PolicyVersion != q.Version || len(pl.Sleeves) != len(q.Sleeves) {
		t.Fatalf("plan on version %s with %d sleeves, policy %s with %d", pl.PolicyVersion, len(pl.Sleeves), q.Version, len(q.Sleeves))
	}
	for i, s := range pl.Sleeves {
		if !s.Target.Equal(q.Sleeves[i].Target) {
			t.Errorf("plan: %s target %s, policy %s", s.Sleeve, s.Target, q.Sleeves[i].Target)
		}
	}
	if len(pl.Unresolved) != 0 && pl.Total.Sign() > 0 {
		// One unrestricted account holds everything: a target plan can
		// reach every target up to rounding.
		for _, u := range pl.Unresolved {
			if !strings.Contains(u.Reason, "fractions of a trading step") {
				t.Errorf("plan leaves %s unresolved: %s", u.Sleeve, u.Reason)
			}
		}
	}
}

// checkPhase phases from q (the targets at at) to the same policy's
// targets on a later date in a random number of steps, and checks every
// step: the effective-policy invariants, each weight between its start
// and end within the rounding (1e-8), the first step applying at once and
// the last giving the end targets themselves.
func checkPhase(t *testing.T, p, q *policy.Policy, at time.Time, r *rand.Rand) {
	t.Helper()
	later := at.Add(time.Duration(1+r.IntN(3000)) * 24 * time.Hour)
	to, _ := effective(t, p, later)
	steps := 2 + r.IntN(11)
	rule := policy.PhaseIn{Every: 24 * time.Hour, Over: time.Duration(steps) * 24 * time.Hour, Steps: steps}
	ph := targets.Phase{From: targets.LocalsOf(q), Start: later}
	tol := decimal.New(1, -targets.Places)
	for k := 1; k <= steps; k++ {
		got, st, err := targets.Phased(to, ph, rule, later.Add(time.Duration(k-1)*24*time.Hour))
		if err != nil {
			t.Fatalf("phase step %d: %v", k, err)
		}
		if st.Step != k || st.Done != (k == steps) || (k == steps && got != to) {
			t.Fatalf("phase step %d: %+v (returned the end policy: %v)", k, st, got == to)
		}
		checkEffective(t, p, got)
		for i := range got.Sleeves {
			a, b := q.Sleeves[i].Local, to.Sleeves[i].Local
			lo, hi := decimal.Min(a, b).Sub(tol), decimal.Max(a, b).Add(tol)
			if w := got.Sleeves[i].Local; w.LessThan(lo) || w.GreaterThan(hi) {
				t.Errorf("phase step %d of %d: %s at %s, outside [%s, %s]", k, steps, got.Sleeves[i].Path, w, a, b)
			}
		}
	}
}
