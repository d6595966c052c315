package policy

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"go.yaml.in/yaml/v3"
)

// Defaults and bounds of the correlation watch.
const (
	// DefaultCorrelationInterval is the length of one step of the return
	// series when the policy gives none: one UTC day.
	DefaultCorrelationInterval = 24 * time.Hour
	// MinCorrelationInterval is the shortest interval a policy may give.
	MinCorrelationInterval = time.Minute
	// MinCorrelationReturns is the fewest returns a correlation is computed
	// from: with fewer the watch reports insufficient data and raises
	// nothing. A window must span at least this many intervals.
	MinCorrelationReturns = 20
	// MaxCorrelationIntervals bounds the intervals of a window (ten years of
	// days), and with them the price history kept per instrument.
	MaxCorrelationIntervals = 3660
	// maxSpanDays bounds a duration written in days, far above any window.
	maxSpanDays = 100000
)

// DefaultCorrelationHysteresis is how far below the threshold a raised
// correlation alert clears when the policy gives no clear_below.
var DefaultCorrelationHysteresis = decimal.New(5, -2)

// Correlation is a policy's correlation watch: the rolling correlation of
// each pair of sleeves' returns over Window is watched against Threshold.
// An alert is raised when it stays above Threshold for For, and cleared
// when it falls below ClearBelow.
type Correlation struct {
	// Window is the span of the rolling window, a whole number of Intervals.
	Window time.Duration
	// Interval is the length of one step of the return series: returns are
	// taken between the closing prices of consecutive intervals.
	Interval time.Duration
	// Intervals is Window / Interval: a window holds Intervals+1 closes and
	// at most Intervals returns.
	Intervals int
	// Threshold is the correlation above which diversification counts as
	// failing, in (0, 1).
	Threshold decimal.Decimal
	// ClearBelow is the correlation under which a raised alert clears,
	// in (-1, Threshold].
	ClearBelow decimal.Decimal
	// For is how long the correlation must stay above Threshold before the
	// alert is raised.
	For time.Duration
	// Pairs are the watched pairs of sleeves, indices into Policy.Sleeves,
	// in file order (by default every pair of top-level sleeves other than
	// cash that hold instruments, in sleeve order).
	Pairs []SleevePair
	Line  int
}

// SleevePair is two sleeves whose correlation is watched: indices into
// Policy.Sleeves. Neither is cash and neither contains the other.
type SleevePair [2]int

// daysDuration matches a duration in whole days, like 90d.
var daysDuration = regexp.MustCompile(`^([0-9]{1,6})d$`)

// ParseDays parses a positive duration written in whole days ("90d") or
// as a Go duration ("12h", "90m").
func ParseDays(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if m := daysDuration.FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err == nil && n > 0 && n <= maxSpanDays {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("want a positive duration like 90d, 12h or 30m, got %q", s)
}

// FormatDays writes d as ParseDays reads it: in days when it is a whole
// number of days ("90d"), as a Go duration otherwise ("12h0m0s").
func FormatDays(d time.Duration) string {
	const day = 24 * time.Hour
	if d > 0 && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return d.String()
}

// spanDuration reads a duration written as ParseDays reads it.
func (c *compiler) spanDuration(n *yaml.Node, field string) (time.Duration, bool) {
	s, ok := c.r.Scalar(n, field)
	if !ok {
		return 0, false
	}
	d, err := ParseDays(s)
	if err != nil {
		c.r.Errorf(n, field, "%v", err)
		return 0, false
	}
	return d, true
}

// correlation reads the optional correlation block; n is nil when absent.
// It needs the sleeves and instruments, read before it.
func (c *compiler) correlation(n *yaml.Node) {
	if n == nil {
		return
	}
	r := c.r
	const field = "correlation"
	f := r.Object(n, field, "window", "interval", "threshold", "clear_below", "for", "pairs")
	w := &Correlation{Interval: DefaultCorrelationInterval, Line: n.Line}
	ok := plainMapping(n)
	if v, found := f["interval"]; found {
		var read bool
		w.Interval, read = c.spanDuration(v, field+".interval")
		if read && w.Interval < MinCorrelationInterval {
			r.Errorf(v, field+".interval", "must be at least %s, got %s", MinCorrelationInterval, w.Interval)
			read = false
		}
		ok = ok && read
	}
	if v, found := c.required(n, f, field, "window"); found {
		var read bool
		w.Window, read = c.spanDuration(v, field+".window")
		if read && ok {
			read = c.windowIntervals(v, w)
		}
		ok = ok && read
	} else {
		ok = false
	}
	thresholdOK := false
	if v, found := c.required(n, f, field, "threshold"); found {
		w.Threshold, thresholdOK = r.Decimal(v, field+".threshold")
		if thresholdOK && (w.Threshold.Sign() <= 0 || !w.Threshold.LessThan(one)) {
			r.Errorf(v, field+".threshold", "want a correlation above 0 and below 1, like 0.8, got %s", w.Threshold)
			thresholdOK = false
		}
	}
	ok = ok && thresholdOK
	if v, found := f["clear_below"]; found {
		var read bool
		w.ClearBelow, read = r.Decimal(v, field+".clear_below")
		if read && thresholdOK && (!w.ClearBelow.GreaterThan(one.Neg()) || w.ClearBelow.GreaterThan(w.Threshold)) {
			r.Errorf(v, field+".clear_below", "want a correlation above -1 and at most the threshold %s, got %s", w.Threshold, w.ClearBelow)
			read = false
		}
		ok = ok && read
	} else {
		w.ClearBelow = w.Threshold.Sub(DefaultCorrelationHysteresis)
	}
	if v, found := c.required(n, f, field, "for"); found {
		var read bool
		w.For, read = c.spanDuration(v, field+".for")
		ok = ok && read
	} else {
		ok = false
	}
	if v, found := f["pairs"]; found {
		w.Pairs = c.correlationPairs(v, field+".pairs")
		ok = ok && w.Pairs != nil
	} else if c.treeOK {
		w.Pairs = c.defaultPairs()
		if len(w.Pairs) == 0 {
			r.Errorf(n, field+".pairs", "fewer than two top-level sleeves besides %s hold instruments: name the pairs to watch", CashSleeve)
		}
		ok = ok && len(w.Pairs) > 0
	} else {
		ok = false
	}
	if ok {
		c.p.Correlation = w
	}
}

// windowIntervals checks that w.Window is a whole number of w.Interval
// within bounds and sets w.Intervals; v is the window's node.
func (c *compiler) windowIntervals(v *yaml.Node, w *Correlation) bool {
	const field = "correlation.window"
	if w.Window%w.Interval != 0 {
		c.r.Errorf(v, field, "%s is not a whole number of intervals of %s", FormatDays(w.Window), FormatDays(w.Interval))
		return false
	}
	k := w.Window / w.Interval
	if k < MinCorrelationReturns || k > MaxCorrelationIntervals {
		c.r.Errorf(v, field, "spans %d intervals of %s; want %d to %d (a correlation needs at least %d returns)",
			k, FormatDays(w.Interval), MinCorrelationReturns, MaxCorrelationIntervals, MinCorrelationReturns)
		return false
	}
	w.Intervals = int(k)
	return true
}

// correlationPairs reads the list of pairs to watch. It returns nil when
// there is a problem.
func (c *compiler) correlationPairs(n *yaml.Node, field string) []SleevePair {
	r := c.r
	items := r.Sequence(n, field)
	if n.Kind == yaml.SequenceNode && len(items) == 0 {
		r.Errorf(n, field, "no pairs (leave pairs out to watch every pair of top-level sleeves)")
		return nil
	}
	out := make([]SleevePair, 0, len(items))
	ok := len(items) > 0
	for k, item := range items {
		fieldK := fmt.Sprintf("%s[%d]", field, k)
		names := r.Sequence(item, fieldK)
		if item.Kind == yaml.SequenceNode && len(names) != 2 {
			r.Errorf(item, fieldK, "want two sleeves, like [equities, crypto], got %d", len(names))
		}
		if len(names) != 2 {
			ok = false
			continue
		}
		var pair SleevePair
		read := true
		for j, nn := range names {
			i, found := c.watchedSleeve(nn, fieldK)
			pair[j], read = i, read && found
		}
		if !read {
			ok = false
			continue
		}
		if problem := c.pairProblem(pair, out); problem != "" {
			r.Errorf(item, fieldK, "%s", problem)
			ok = false
			continue
		}
		out = append(out, pair)
	}
	if !ok {
		return nil
	}
	return out
}

// watchedSleeve reads one sleeve of a pair: it must exist, not be cash,
// and hold an instrument with a weight within it.
func (c *compiler) watchedSleeve(n *yaml.Node, field string) (int, bool) {
	r, p := c.r, c.p
	name, ok := r.String(n, field)
	if !ok {
		return -1, false
	}
	i, known := p.sleeveIndex[name]
	switch {
	case !known:
		if c.treeOK {
			r.Errorf(n, field, "no sleeve %q in targets (known: %s)", name, c.knownSleeves())
		}
		return -1, false
	case i == p.Cash:
		r.Errorf(n, field, "the %s sleeve has no returns to correlate", CashSleeve)
		return -1, false
	case !c.priced(i):
		r.Errorf(n, field, "sleeve %q holds no instrument with a weight in it, so it has no prices", name)
		return -1, false
	}
	return i, true
}

// pairProblem says what is wrong with a pair given the pairs before it,
// or returns "".
func (c *compiler) pairProblem(pair SleevePair, before []SleevePair) string {
	a, b := c.p.Sleeves[pair[0]].Path, c.p.Sleeves[pair[1]].Path
	switch {
	case a == b:
		return fmt.Sprintf("%q is paired with itself", a)
	case strings.HasPrefix(b, a+"/") || strings.HasPrefix(a, b+"/"):
		return fmt.Sprintf("%q and %q: one contains the other, so their returns are correlated by construction", a, b)
	}
	for _, q := range before {
		if (q[0] == pair[0] && q[1] == pair[1]) || (q[0] == pair[1] && q[1] == pair[0]) {
			return fmt.Sprintf("the pair %q, %q is listed twice", a, b)
		}
	}
	return ""
}

// priced reports whether some instrument of sleeve i or its descendants
// has a weight above zero within i: a share above 0%, in sub-sleeves
// whose weights within i are all above 0%.
func (c *compiler) priced(i int) bool {
	p := c.p
	s := &p.Sleeves[i]
	for _, k := range s.Instruments {
		if p.Instruments[k].Share.Sign() > 0 {
			return true
		}
	}
	for _, ch := range s.Children {
		if p.Sleeves[ch].Local.Sign() > 0 && c.priced(ch) {
			return true
		}
	}
	return false
}

// defaultPairs returns every pair of top-level sleeves other than cash
// that hold a priced instrument, in sleeve order.
func (c *compiler) defaultPairs() []SleevePair {
	var top []int
	for _, i := range c.level(-1) {
		if i != c.p.Cash && c.priced(i) {
			top = append(top, i)
		}
	}
	var out []SleevePair
	for x := range top {
		for y := x + 1; y < len(top); y++ {
			out = append(out, SleevePair{top[x], top[y]})
		}
	}
	return out
}
