package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/shopspring/decimal"
	"go.yaml.in/yaml/v3"

	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// DefaultCheckEvery is how often a threshold policy is checked when it does
// not say.
const DefaultCheckEvery = 15 * time.Minute

// Defaults of the optional rebalance and price-safety fields.
const (
	// DefaultCooldown is the least time between two rebalances of a policy.
	DefaultCooldown = time.Hour
	// DefaultOrderTTL is how long the daemon waits for an order's fills
	// before it considers the order expired.
	DefaultOrderTTL = 24 * time.Hour
	// DefaultMaxAge is the oldest price the daemon plans on.
	DefaultMaxAge = 15 * time.Minute
)

// DefaultConfirmAfter is how long a move beyond max_move (or a valuation
// beyond limits.max_value_change) must persist before it is believed.
const DefaultConfirmAfter = 5 * time.Minute

// DefaultMaxMove is the largest move of a price from the last accepted one
// that is taken without confirmation: 10%.
var DefaultMaxMove = decimal.New(1, -1)

// equalSharePlaces is the number of decimal places of an equal split of a
// sleeve between instruments that give no share; the last instrument takes
// the remainder so that shares sum to exactly 1.
const equalSharePlaces = 12

var (
	// identifier is what may name a policy or an account: both appear as
	// tokens of NATS subjects, so no dots, spaces or wildcards.
	identifier = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	sleeveName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	symbolName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,31}$`)
	currency   = regexp.MustCompile(`^[A-Z]{3}$`)
	one        = decimal.NewFromInt(1)
)

// policyFields are the top-level fields of a policy file, in the order
// of messages.
var policyFields = []string{"policy", "currency", "targets", "bands", "rebalance", "prices", "limits", "instruments", "accounts",
	"investor", "glide_path", "glide_bands", "tilts", "tax", "asset_location", "correlation", "phase_in", "contributions"}

// Parse reads and validates a policy file. file names the file in error
// messages. On failure the error is a strictyaml.Errors listing every
// problem with its line and field.
func Parse(file string, data []byte) (*Policy, error) {
	r := &strictyaml.Reader{File: file}
	root := r.Parse(data)
	if root == nil {
		return nil, r.Errs.Err()
	}
	sum := sha256.Sum256(data)
	p := newPolicy(file, hex.EncodeToString(sum[:8]))
	whole := &part{r: r, root: root, f: r.Object(root, "", policyFields...)}
	c := compiler{r: r, p: p, owner: func(string) *part { return whole }}
	c.compile("policy")
	hintKind(r.Errs)
	if err := r.Errs.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

// hintKind says so when a policy file is a model or household file: the
// problem of its top-level model or household key becomes the hint.
func hintKind(errs strictyaml.Errors) {
	unknown := map[string]*strictyaml.Error{}
	for _, e := range errs {
		if e.Msg == unknownField(policyFields) {
			unknown[e.Field] = e
		}
	}
	if e, ok := unknown["household"]; ok {
		e.Msg = "a household file is not a policy: put it in households_dir (docs/CONFIG.md, \"Models and households\"); check it with check -config"
	} else if e, ok := unknown["model"]; ok {
		e.Msg = "a model file is not a policy: list it in models_dir (docs/CONFIG.md, \"Models and households\"); check it with check -model"
	}
}

// unknownField is strictyaml's message for a key not in known.
func unknownField(known []string) string {
	return "unknown field (known: " + strings.Join(known, ", ") + ")"
}

// newPolicy returns an empty policy read from file at version.
func newPolicy(file, version string) *Policy {
	// The indexes are made by the sections that fill them: a household
	// shares its model's sleeve and instrument indexes.
	return &Policy{File: file, Version: version, Cash: -1}
}

// part is one file's share of a policy's top-level fields: a policy file
// holds them all, a model and a household file each some (model.go).
type part struct {
	r    *strictyaml.Reader
	root *yaml.Node
	f    map[string]*yaml.Node
}

type compiler struct {
	r *strictyaml.Reader
	p *Policy
	// owner returns the part that holds, or must hold, a top-level field;
	// field and need switch r to its reader, so that a problem names the
	// file it is in.
	owner func(key string) *part
	// modelOnly is set while a model is checked on its own: the
	// household's fields (accounts, investor) are absent, and what refers
	// to them is checked when a household is composed with the model.
	modelOnly bool
	// base is the model compiled on its own when a household is composed
	// with it (model.go), nil otherwise: see reuse.
	base *Policy
	// memo shares the zones and schedules a model's households parse
	// alike (model.go); nil for a policy file.
	memo *memo
	// treeOK is set when targets compiled without a problem: rows and
	// tilts are checked against the tree only then, so that one mistake
	// in targets is not repeated for every row.
	treeOK bool
	// investorGiven is set when the file has an investor block, usable or
	// not.
	investorGiven bool
}

// field returns the top-level field key (nil when absent) and makes the
// file that holds it the one problems are reported in.
func (c *compiler) field(key string) *yaml.Node {
	pt := c.owner(key)
	c.r = pt.r
	return pt.f[key]
}

// need is field for a required field: its absence is reported.
func (c *compiler) need(key string) (*yaml.Node, bool) {
	pt := c.owner(key)
	c.r = pt.r
	return c.required(pt.root, pt.f, "", key)
}

// compile reads every top-level field; nameKey is the field that names
// the policy (policy, model or household).
func (c *compiler) compile(nameKey string) {
	p, base := c.p, c.base
	if s, ok := c.need(nameKey); ok {
		if name, ok := c.r.String(s, nameKey); ok {
			if !identifier.MatchString(name) {
				c.r.Errorf(s, nameKey, "%q: use letters, digits, '-' and '_' only (it names NATS subjects)", name)
			}
			p.Name = name
		}
	}
	if c.reuse("currency") {
		p.Currency = base.Currency
	} else if s, ok := c.need("currency"); ok {
		if cur, ok := c.r.String(s, "currency"); ok {
			if !currency.MatchString(cur) {
				c.r.Errorf(s, "currency", "%q is not a three-letter ISO 4217 code like USD", cur)
			}
			p.Currency = cur
		}
	}
	switch {
	case c.reuse("targets") && c.reuse("bands"):
		p.Sleeves, p.sleeveIndex, p.Cash, c.treeOK = base.Sleeves, base.sleeveIndex, base.Cash, true
	case c.reuse("targets"):
		// Bands of its own: its own copy of the sleeves to band.
		p.Sleeves, p.sleeveIndex, p.Cash, c.treeOK = slices.Clone(base.Sleeves), base.sleeveIndex, base.Cash, true
		if n, ok := c.need("bands"); ok {
			c.bands(n)
		}
		p.derive()
	default:
		p.sleeveIndex = map[string]int{}
		if n, ok := c.need("targets"); ok {
			before := c.errors()
			c.targets(n, -1, "targets")
			c.treeOK = c.errors() == before
			if p.Cash < 0 && len(p.Sleeves) > 0 {
				c.r.Errorf(n, "targets", "no top-level %q sleeve: free cash counts toward it (write `cash: 0%%` to hold none)", CashSleeve)
			}
		}
		if n, ok := c.need("bands"); ok {
			c.bands(n)
		}
		p.derive()
	}
	c.investor(c.field("investor"))
	c.glidePath(c.field("glide_path"))
	c.glideBands(c.field("glide_bands")) // strategy.go
	if c.reuse("rebalance") {
		p.Rebalance = base.Rebalance
	} else if n, ok := c.need("rebalance"); ok {
		c.rebalance(n)
	}
	if c.reuse("prices") {
		p.Prices = base.Prices
	} else {
		c.prices(c.field("prices"))
	}
	if c.reuse("limits") {
		p.Limits = base.Limits
	} else {
		c.limits(c.field("limits"))
	}
	if c.reuse("instruments") {
		p.Instruments, p.instrumentIndex = base.Instruments, base.instrumentIndex
	} else if n, ok := c.need("instruments"); ok {
		c.instruments(n)
	}
	if !c.modelOnly {
		if n, ok := c.need("accounts"); ok {
			c.accounts(n)
		}
	}
	if c.reuse("tilts") {
		p.Tilts = base.Tilts
	} else {
		c.tilts(c.field("tilts"))
	}
	c.tax(c.field("tax"))                      // tax.go
	c.assetLocation(c.field("asset_location")) // tax.go
	if c.reuse("correlation") {
		p.Correlation = base.Correlation
	} else {
		c.correlation(c.field("correlation")) // correlation.go
	}
	if c.reuse("phase_in") {
		p.PhaseIn = base.PhaseIn
	} else {
		c.phaseIn(c.field("phase_in")) // phasein.go
	}
	c.contributions(c.field("contributions")) // contributions.go
	c.coverage()
}

// reusable are the sections of a model that depend on nothing of a
// household's: a household that does not replace them takes them as the
// model compiled them, parsed once and shared in memory. The others
// (glide_path and glide_bands count ages from the investor's birth date;
// tax and asset_location name accounts) are compiled for each household.
var reusable = []string{"currency", "targets", "bands", "rebalance", "prices", "limits", "instruments", "tilts", "correlation", "phase_in"}

// reuse reports whether section key is taken from base, the model
// compiled on its own.
func (c *compiler) reuse(key string) bool {
	if c.base == nil || !slices.Contains(reusable, key) || c.owner(key) != c.owner("targets") {
		return false
	}
	c.r = c.owner(key).r
	return true
}

// errors counts the problems found so far in every part.
func (c *compiler) errors() int {
	n := 0
	seen := map[*strictyaml.Reader]bool{}
	for _, key := range policyFields {
		if r := c.owner(key).r; !seen[r] {
			seen[r] = true
			n += len(r.Errs)
		}
	}
	return n
}

// required returns the value of key in f, the fields of the mapping parent
// at field, and reports the key as missing when parent is a mapping without
// it. When parent is not a usable mapping, that has been reported already.
func (c *compiler) required(parent *yaml.Node, f map[string]*yaml.Node, field, key string) (*yaml.Node, bool) {
	n, ok := f[key]
	if !ok && plainMapping(parent) {
		c.r.Errorf(parent, strictyaml.Join(field, key), "required field is missing")
	}
	return n, ok
}

// plainMapping reports whether n is a mapping that strictyaml.Reader.Object
// accepts: problems about its content would repeat its refusal otherwise.
func plainMapping(n *yaml.Node) bool {
	return n != nil && n.Kind == yaml.MappingNode && n.Anchor == ""
}

// targets compiles one level of the sleeve tree below parent (-1 for the
// top). Targets and bands are derived from the weights once bands are read.
func (c *compiler) targets(n *yaml.Node, parent int, field string) {
	r, p := c.r, c.p
	entries := r.Entries(n, field)
	if len(entries) == 0 {
		if plainMapping(n) {
			r.Errorf(n, field, "no sleeves")
		}
		return
	}
	sum := decimal.Zero
	sumOK := true
	for _, e := range entries {
		fieldK := strictyaml.Join(field, e.Key)
		if !sleeveName.MatchString(e.Key) {
			r.Errorf(e.KeyNode, fieldK, "sleeve names use letters, digits, '-' and '_' only")
			sumOK = false
			continue
		}
		path := e.Key
		if parent >= 0 {
			path = p.Sleeves[parent].Path + "/" + e.Key
		}
		local, ok, subNode := c.sleeveWeight(e, fieldK)
		sumOK = sumOK && ok
		sum = sum.Add(local)
		idx := len(p.Sleeves)
		p.Sleeves = append(p.Sleeves, Sleeve{
			Path:   path,
			Parent: parent,
			Local:  local,
			Line:   e.KeyNode.Line,
		})
		p.sleeveIndex[path] = idx
		if parent >= 0 {
			p.Sleeves[parent].Children = append(p.Sleeves[parent].Children, idx)
		}
		if parent < 0 && e.Key == CashSleeve {
			p.Cash = idx
			if subNode != nil {
				r.Errorf(subNode, strictyaml.Join(fieldK, "sleeves"), "the cash sleeve cannot have sub-sleeves")
			}
		}
		if subNode != nil {
			c.targets(subNode, idx, strictyaml.Join(fieldK, "sleeves"))
		}
	}
	c.levelSum(n, field, sum, sumOK)
}

// sleeveWeight reads one sleeve of a tree of weights: a percentage alone
// (`bonds: 25%`) or a mapping of its weight and sub-sleeves. It returns the
// weight, whether it was read, and the sub-sleeves' node (nil for none).
func (c *compiler) sleeveWeight(e strictyaml.Entry, field string) (decimal.Decimal, bool, *yaml.Node) {
	r := c.r
	weightNode, subNode, weightField := e.Value, (*yaml.Node)(nil), field
	if e.Value != nil && e.Value.Kind == yaml.MappingNode {
		sf := r.Object(e.Value, field, "weight", "sleeves")
		weightNode, subNode, weightField = sf["weight"], sf["sleeves"], strictyaml.Join(field, "weight")
		if weightNode == nil && plainMapping(e.Value) {
			r.Errorf(e.Value, weightField, "required field is missing")
		}
		if subNode == nil && plainMapping(e.Value) {
			r.Errorf(e.Value, strictyaml.Join(field, "sleeves"), "required field is missing (or write the weight alone, like %s: 10%%)", e.Key)
		}
	}
	if weightNode == nil {
		return decimal.Zero, false, subNode
	}
	local, ok := r.Percent(weightNode, weightField, true)
	return local, ok, subNode
}

// levelSum reports a level of a tree of weights whose weights, all read,
// do not sum to 100%.
func (c *compiler) levelSum(n *yaml.Node, field string, sum decimal.Decimal, sumOK bool) {
	if sumOK && !sum.Equal(one) {
		c.r.Errorf(n, field, "level sums to %s%%, want 100%%", sum.Shift(2).String())
	}
}

func (c *compiler) band(n *yaml.Node, field string, extra ...string) (Band, map[string]*yaml.Node) {
	r := c.r
	known := append([]string{"absolute", "relative", "within_sleeve"}, extra...)
	f := r.Object(n, field, known...)
	var b Band
	if v, ok := f["absolute"]; ok {
		b.Absolute, b.HasAbsolute = r.Percent(v, strictyaml.Join(field, "absolute"), true)
	}
	if v, ok := f["relative"]; ok {
		b.Relative, b.HasRelative = r.Percent(v, strictyaml.Join(field, "relative"), false)
		if b.HasRelative && b.Relative.Sign() < 0 {
			r.Errorf(v, strictyaml.Join(field, "relative"), "must not be negative")
		}
	}
	if v, ok := f["within_sleeve"]; ok {
		b.WithinSleeve, b.HasWithinSleeve = r.Percent(v, strictyaml.Join(field, "within_sleeve"), true)
	}
	_, hasA := f["absolute"]
	_, hasR := f["relative"]
	if !hasA && !hasR && plainMapping(n) {
		r.Errorf(n, field, "set absolute, relative or both")
	}
	return b, f
}

// bands compiles the global band and per-sleeve overrides. An override
// replaces the rule for its sleeve and every descendant that sets none of
// its own; parts it leaves out are not inherited.
func (c *compiler) bands(n *yaml.Node) {
	r, p := c.r, c.p
	global, f := c.band(n, "bands", "sleeves")
	rules := make([]Band, len(p.Sleeves))
	set := make([]bool, len(p.Sleeves))
	if sn, ok := f["sleeves"]; ok {
		for _, e := range r.Entries(sn, "bands.sleeves") {
			field := strictyaml.Join("bands.sleeves", e.Key)
			b, _ := c.band(e.Value, field)
			i, ok := p.sleeveIndex[e.Key]
			if !ok {
				if len(p.Sleeves) > 0 {
					r.Errorf(e.KeyNode, field, "no sleeve %q in targets (known: %s)", e.Key, c.knownSleeves())
				}
				continue
			}
			rules[i], set[i] = b, true
		}
	}
	// Parents precede children, so one pass resolves inheritance.
	for i := range p.Sleeves {
		s := &p.Sleeves[i]
		switch {
		case set[i]:
			s.Band = rules[i]
		case s.Parent >= 0:
			s.Band = p.Sleeves[s.Parent].Band
		default:
			s.Band = global
		}
	}
}

// maxKnownListed bounds how many sleeve paths a message lists: a file with
// thousands of sleeves and as many wrong references must not make every
// message repeat every path (which is quadratic in the file's size).
const maxKnownListed = 20

// knownSleeves lists the sleeve paths for a message, at most maxKnownListed
// of them.
func (c *compiler) knownSleeves() string {
	n := min(len(c.p.Sleeves), maxKnownListed)
	out := make([]string, n)
	for i := range out {
		out[i] = c.p.Sleeves[i].Path
	}
	list := strings.Join(out, ", ")
	if more := len(c.p.Sleeves) - n; more > 0 {
		list += fmt.Sprintf(" and %d more", more)
	}
	return list
}

func (c *compiler) rebalance(n *yaml.Node) {
	r, p := c.r, c.p
	f := r.Object(n, "rebalance", "trigger", "schedule", "check_every", "cooldown", "order_ttl", "destination", "min_trade")
	rb := &p.Rebalance
	if v, ok := c.required(n, f, "rebalance", "trigger"); ok {
		if s, ok := r.String(v, "rebalance.trigger"); ok {
			switch t := Trigger(s); t {
			case TriggerCalendar, TriggerThreshold, TriggerHybrid:
				rb.Trigger = t
			default:
				r.Errorf(v, "rebalance.trigger", "%q is not a trigger; want calendar, threshold or hybrid", s)
			}
		}
	}
	if v, ok := f["schedule"]; ok {
		rb.Schedule, rb.Cron, _ = c.schedule(v, "rebalance.schedule")
	} else if rb.Trigger == TriggerCalendar || rb.Trigger == TriggerHybrid {
		r.Errorf(n, "rebalance.schedule", "required for the %s trigger", rb.Trigger)
	}
	rb.CheckEvery = DefaultCheckEvery
	if v, ok := f["check_every"]; ok {
		if d, ok := r.Duration(v, "rebalance.check_every"); ok {
			rb.CheckEvery = d
		}
	}
	rb.Cooldown = DefaultCooldown
	if v, ok := f["cooldown"]; ok {
		rb.Cooldown, _ = r.Duration(v, "rebalance.cooldown")
	}
	rb.OrderTTL = DefaultOrderTTL
	if v, ok := f["order_ttl"]; ok {
		rb.OrderTTL, _ = r.Duration(v, "rebalance.order_ttl")
	}
	rb.Destination = DestinationTarget
	if v, ok := f["destination"]; ok {
		if s, ok := r.String(v, "rebalance.destination"); ok {
			switch d := Destination(s); d {
			case DestinationTarget, DestinationBandEdge, DestinationMidway:
				rb.Destination = d
			default:
				r.Errorf(v, "rebalance.destination", "%q is not a destination; want target, band_edge or midway", s)
			}
		}
	}
	if v, ok := f["min_trade"]; ok {
		rb.MinTrade, _ = r.NonNegative(v, "rebalance.min_trade")
	}
}

// prices reads the optional price-safety rules; n is nil when absent.
func (c *compiler) prices(n *yaml.Node) {
	r, pr := c.r, &c.p.Prices
	pr.MaxAge, pr.MaxMove, pr.ConfirmAfter = DefaultMaxAge, DefaultMaxMove, DefaultConfirmAfter
	if n == nil {
		return
	}
	f := r.Object(n, "prices", "max_age", "max_move", "confirm_after")
	if v, ok := f["max_age"]; ok {
		pr.MaxAge, _ = r.Duration(v, "prices.max_age")
	}
	if v, ok := f["confirm_after"]; ok {
		if d, ok := r.Duration(v, "prices.confirm_after"); ok {
			if d > 24*time.Hour {
				r.Errorf(v, "prices.confirm_after", "want at most 24h, got %s", d)
			}
			pr.ConfirmAfter = d
		}
	}
	if v, ok := f["max_move"]; ok {
		if m, ok := r.Percent(v, "prices.max_move", false); ok {
			if m.Sign() <= 0 {
				r.Errorf(v, "prices.max_move", "must be above 0%%")
			}
			pr.MaxMove = m
		}
	}
}

// limits reads the optional pre-trade risk limits; n is nil when absent.
func (c *compiler) limits(n *yaml.Node) {
	r, l := c.r, &c.p.Limits
	*l = DefaultLimits()
	if n == nil {
		return
	}
	f := r.Object(n, "limits", "max_order_notional", "max_order_share", "max_turnover", "max_orders", "max_plans_per_day", "max_value_change")
	if v, ok := f["max_order_notional"]; ok {
		if d, ok := r.NonNegative(v, "limits.max_order_notional"); ok {
			if d.Sign() == 0 {
				r.Errorf(v, "limits.max_order_notional", "must be above 0 (leave it out for no absolute limit)")
			}
			l.MaxOrderNotional = d
		}
	}
	if v, ok := f["max_order_share"]; ok {
		if d, ok := r.Percent(v, "limits.max_order_share", true); ok {
			if d.Sign() == 0 {
				r.Errorf(v, "limits.max_order_share", "must be above 0%%")
			}
			l.MaxOrderShare = d
		}
	}
	if v, ok := f["max_turnover"]; ok {
		if d, ok := r.Percent(v, "limits.max_turnover", false); ok {
			if d.Sign() <= 0 || d.GreaterThan(decimal.NewFromInt(2)) {
				r.Errorf(v, "limits.max_turnover", "want more than 0%% and at most 200%%")
			}
			l.MaxTurnover = d
		}
	}
	if v, ok := f["max_value_change"]; ok {
		if d, ok := r.Percent(v, "limits.max_value_change", false); ok {
			if d.Sign() <= 0 || d.GreaterThan(decimal.NewFromInt(10)) {
				r.Errorf(v, "limits.max_value_change", "want more than 0%% and at most 1000%%")
			}
			l.MaxValueChange = d
		}
	}
	count := func(key string, dst *int) {
		if v, ok := f[key]; ok {
			if d, ok := r.NonNegative(v, "limits."+key); ok {
				if !d.IsInteger() || d.Sign() == 0 || d.GreaterThan(decimal.NewFromInt(10000)) {
					r.Errorf(v, "limits."+key, "want a whole number from 1 to 10000, got %s", d)
				} else {
					*dst = int(d.IntPart())
				}
			}
		}
	}
	count("max_orders", &l.MaxOrders)
	count("max_plans_per_day", &l.MaxPlansPerDay)
}

// schedule reads a cron spec at field: the text and its parsed form; ok
// is false when either is wrong (reported).
func (c *compiler) schedule(n *yaml.Node, field string) (spec string, sched cron.Schedule, ok bool) {
	spec, ok = c.r.String(n, field)
	if !ok {
		return "", nil, false
	}
	if sched, ok := c.memo.schedule(spec); ok {
		return spec, sched, true
	}
	sched, err := ParseSchedule(spec)
	if err != nil {
		c.r.Errorf(n, field, "%v", err)
		return spec, nil, false
	}
	c.memo.keepSchedule(spec, sched)
	return spec, sched, true
}

// ParseSchedule parses a standard five-field cron spec or descriptor, with
// an optional CRON_TZ= prefix. It never panics (robfig/cron/v3 does on some
// inputs, which are reported as errors) and rejects specs that never fire.
func ParseSchedule(spec string) (sched cron.Schedule, err error) {
	if strings.Contains(spec, "@quarterly") {
		return nil, fmt.Errorf("%q: @quarterly does not exist in cron; write \"0 0 1 1,4,7,10 *\" (midnight on the first day of each quarter)", spec)
	}
	rest := spec
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		// robfig/cron/v3 slices the zone up to the first space and panics
		// when there is none.
		i := strings.Index(spec, " ")
		if i < 0 {
			return nil, fmt.Errorf("%q names a time zone but no schedule; write the five fields after it, separated by a space, like \"CRON_TZ=America/New_York 0 10 * * MON-FRI\"", spec)
		}
		rest = strings.TrimSpace(spec[i:])
	}
	if d, ok := strings.CutPrefix(rest, "@every "); ok {
		// robfig/cron/v3 silently turns an interval under a second, zero or
		// negative, into one second.
		if every, perr := time.ParseDuration(d); perr == nil && every < time.Second {
			return nil, fmt.Errorf("%q: the interval of @every must be at least 1s", spec)
		}
	}
	defer func() {
		if v := recover(); v != nil {
			sched, err = nil, fmt.Errorf("%q is not a valid cron schedule", spec)
		}
	}()
	sched, err = cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("%q is not a valid cron schedule: %w", spec, err)
	}
	// Any fixed instant does: a spec that fires at all fires within the
	// five years Next searches. 2000 is a leap year, so Feb 29 passes.
	if sched.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, fmt.Errorf("%q never fires", spec)
	}
	return sched, nil
}

func (c *compiler) instruments(n *yaml.Node) {
	r, p := c.r, c.p
	p.instrumentIndex = map[string]int{}
	type shareInfo struct {
		node  *yaml.Node
		share decimal.Decimal
		has   bool
	}
	shares := map[int][]int{}
	info := []shareInfo{}
	for _, e := range r.Entries(n, "instruments") {
		field := strictyaml.Join("instruments", e.Key)
		if !symbolName.MatchString(e.Key) {
			r.Errorf(e.KeyNode, field, "symbols use letters, digits and . _ : - only, at most 32 characters")
			continue
		}
		f := r.Object(e.Value, field, "sleeve", "share", "step")
		in := Instrument{Symbol: e.Key, Sleeve: -1, Step: one, Line: e.KeyNode.Line}
		si := shareInfo{}
		if v, ok := c.required(e.Value, f, field, "sleeve"); ok {
			if s, ok := r.String(v, strictyaml.Join(field, "sleeve")); ok {
				idx, found := p.sleeveIndex[s]
				switch {
				case !found:
					if len(p.Sleeves) > 0 {
						r.Errorf(v, strictyaml.Join(field, "sleeve"), "no sleeve %q in targets (known: %s)", s, c.knownSleeves())
					}
				case !p.Sleeves[idx].Leaf():
					r.Errorf(v, strictyaml.Join(field, "sleeve"), "sleeve %q has sub-sleeves; name one of them", s)
				default:
					in.Sleeve = idx
				}
			}
		}
		if v, ok := f["share"]; ok {
			si.node = v
			si.share, si.has = r.Percent(v, strictyaml.Join(field, "share"), true)
		}
		if v, ok := f["step"]; ok {
			if d, ok := r.Decimal(v, strictyaml.Join(field, "step")); ok {
				if d.Sign() <= 0 {
					r.Errorf(v, strictyaml.Join(field, "step"), "must be positive, got %s", d)
				} else {
					in.Step = d
				}
			}
		}
		idx := len(p.Instruments)
		p.Instruments = append(p.Instruments, in)
		p.instrumentIndex[e.Key] = idx
		info = append(info, si)
		if in.Sleeve >= 0 {
			shares[in.Sleeve] = append(shares[in.Sleeve], idx)
			p.Sleeves[in.Sleeve].Instruments = append(p.Sleeves[in.Sleeve].Instruments, idx)
		}
	}
	// Resolve shares per sleeve, in sleeve order for stable messages.
	sleeves := make([]int, 0, len(shares))
	for s := range shares {
		sleeves = append(sleeves, s)
	}
	sort.Ints(sleeves)
	for _, s := range sleeves {
		members := shares[s]
		given := 0
		sum := decimal.Zero
		for _, i := range members {
			if info[i].has {
				given++
				sum = sum.Add(info[i].share)
			}
		}
		path := p.Sleeves[s].Path
		switch {
		case given == 0:
			n := int64(len(members))
			each := one.DivRound(decimal.NewFromInt(n), equalSharePlaces)
			for k, i := range members {
				p.Instruments[i].Share = each
				if k == len(members)-1 {
					p.Instruments[i].Share = one.Sub(each.Mul(decimal.NewFromInt(n - 1)))
				}
			}
		case given < len(members):
			for _, i := range members {
				if !info[i].has {
					r.ErrorfLine(p.Instruments[i].Line, strictyaml.Join("instruments", p.Instruments[i].Symbol)+".share",
						"sleeve %q gives shares to some instruments; give one to every instrument or to none", path)
				}
			}
		case !sum.Equal(one):
			r.Errorf(info[members[0]].node, "instruments",
				"shares of sleeve %q sum to %s%%, want 100%%", path, sum.Shift(2).String())
		default:
			for _, i := range members {
				p.Instruments[i].Share = info[i].share
			}
		}
	}
}

func (c *compiler) accounts(n *yaml.Node) {
	r, p := c.r, c.p
	p.accountIndex = map[string]int{}
	for _, e := range r.Entries(n, "accounts") {
		field := strictyaml.Join("accounts", e.Key)
		if !identifier.MatchString(e.Key) {
			r.Errorf(e.KeyNode, field, "account names use letters, digits, '-' and '_' only (they name NATS subjects)")
			continue
		}
		f := r.Object(e.Value, field, "type", "reserve", "may_hold")
		a := Account{Name: e.Key, Line: e.KeyNode.Line}
		if v, ok := c.required(e.Value, f, field, "type"); ok {
			if s, ok := r.String(v, strictyaml.Join(field, "type")); ok {
				a.Type = AccountType(s)
				known := false
				for _, t := range AccountTypes {
					known = known || t == a.Type
				}
				if !known {
					names := make([]string, len(AccountTypes))
					for i, t := range AccountTypes {
						names[i] = string(t)
					}
					r.Errorf(v, strictyaml.Join(field, "type"), "%q is not an account type (known: %s)", s, strings.Join(names, ", "))
				}
			}
		}
		if v, ok := f["reserve"]; ok {
			a.Reserve, _ = r.NonNegative(v, strictyaml.Join(field, "reserve"))
		}
		if v, ok := f["may_hold"]; ok {
			a.MayHold = make([]bool, len(p.Instruments))
			for _, item := range r.Sequence(v, strictyaml.Join(field, "may_hold")) {
				s, ok := r.String(item, strictyaml.Join(field, "may_hold"))
				if !ok {
					continue
				}
				i, found := p.instrumentIndex[s]
				if !found {
					r.Errorf(item, strictyaml.Join(field, "may_hold"), "no instrument %q in instruments", s)
					continue
				}
				a.MayHold[i] = true
			}
		}
		p.accountIndex[e.Key] = len(p.Accounts)
		p.Accounts = append(p.Accounts, a)
	}
	if len(p.Accounts) == 0 && plainMapping(n) {
		r.Errorf(n, "accounts", "no accounts")
	}
}

// coverage checks that every sleeve that may get a target can be filled:
// a leaf other than cash needs an instrument, and each instrument of such
// a sleeve needs an account that may buy it. A sleeve may get a target
// when every sleeve on its path has a weight above 0% in targets or in a
// glide path row, or may get one from a tilt.
func (c *compiler) coverage() {
	if c.errors() > 0 {
		return // the checks below would repeat earlier problems
	}
	r, p := c.owner("instruments").r, c.p
	c.r = r
	targeted := c.mayBeTargeted()
	for i := range p.Sleeves {
		s := &p.Sleeves[i]
		if s.Leaf() && i != p.Cash && targeted[i] && len(s.Instruments) == 0 {
			r.ErrorfLine(s.Line, "targets."+strings.ReplaceAll(s.Path, "/", ".sleeves."), "sleeve %q has a target but no instrument fills it%s", s.Path, c.targetSource(i))
		}
	}
	for i := range p.Instruments {
		in := &p.Instruments[i]
		if c.modelOnly || !targeted[in.Sleeve] || in.Share.Sign() == 0 {
			continue
		}
		allowed := false
		for a := range p.Accounts {
			allowed = allowed || p.Accounts[a].Allows(i)
		}
		if !allowed {
			r.ErrorfLine(in.Line, "instruments."+in.Symbol, "no account may hold it (see accounts.*.may_hold), yet its sleeve has a target%s", c.targetSource(in.Sleeve))
		}
	}
}

// targetSource names where a sleeve's possible target comes from when
// targets gives it none.
func (c *compiler) targetSource(i int) string {
	if c.p.Sleeves[i].Target.Sign() > 0 {
		return ""
	}
	return " (from the glide path or a tilt)"
}
