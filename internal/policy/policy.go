// Package policy holds an Investment Policy Statement (IPS) in compiled form:
// the sleeve tree with targets and tolerance bands as fractions of the whole
// investable portfolio, the instruments that fill each sleeve, the accounts
// of the household and the rebalancing rules.
//
// A Policy is immutable once parsed and safe for concurrent use. Everything
// here is a pure function of the file's bytes: no clock, no I/O.
package policy

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/dec64"
)

// CashSleeve is the name of the top-level sleeve that an account's free cash
// (cash above its reserve) counts toward. Every policy must have one.
const CashSleeve = "cash"

// Trigger says when the daemon rebalances a policy.
type Trigger string

// The triggers a policy may name.
const (
	// TriggerCalendar rebalances at every firing of the schedule.
	TriggerCalendar Trigger = "calendar"
	// TriggerThreshold rebalances, checking at most every check_every, when a
	// sleeve breaches its band.
	TriggerThreshold Trigger = "threshold"
	// TriggerHybrid rebalances at a firing of the schedule only when a
	// sleeve breaches its band.
	TriggerHybrid Trigger = "hybrid"
)

// Destination says how far a rebalance moves the sleeves it trades.
type Destination string

// The destinations a policy may name.
const (
	// DestinationTarget moves every sleeve to its target.
	DestinationTarget Destination = "target"
	// DestinationBandEdge moves each breaching sleeve back to the nearer edge
	// of its band, trading nothing else beyond what funds that.
	DestinationBandEdge Destination = "band_edge"
	// DestinationMidway moves each breaching sleeve halfway between its
	// target and the band edge it crossed.
	DestinationMidway Destination = "midway"
)

// AccountType is the tax treatment of an account.
type AccountType string

// The account types a policy may name. All but AccountTaxable are tax
// advantaged: selling in them realizes no taxable gain.
const (
	AccountTaxable         AccountType = "taxable"
	AccountTraditionalIRA  AccountType = "traditional_ira"
	AccountRothIRA         AccountType = "roth_ira"
	AccountSEPIRA          AccountType = "sep_ira"
	AccountSimpleIRA       AccountType = "simple_ira"
	AccountTraditional401k AccountType = "traditional_401k"
	AccountRoth401k        AccountType = "roth_401k"
	Account403b            AccountType = "403b"
	Account457b            AccountType = "457b"
	AccountHSA             AccountType = "hsa"
	Account529             AccountType = "529"
)

// AccountTypes lists every known account type in documentation order.
var AccountTypes = []AccountType{
	AccountTaxable, AccountTraditionalIRA, AccountRothIRA, AccountSEPIRA, AccountSimpleIRA,
	AccountTraditional401k, AccountRoth401k, Account403b, Account457b, AccountHSA, Account529,
}

// TaxAdvantaged reports whether sales in this kind of account realize no
// currently taxable gain.
func (t AccountType) TaxAdvantaged() bool { return t != AccountTaxable }

// Policy is a parsed and validated Investment Policy Statement.
type Policy struct {
	Name     string // identifier, safe for NATS subjects: [A-Za-z0-9_-]
	Currency string // ISO 4217 code, e.g. USD
	// Version identifies the policy's content: the first 16 hex digits of
	// the SHA-256 of the file's bytes. Order ids derive from it.
	Version string
	File    string // file name the policy was read from
	// Model names the model of a household's policy (model.go), and
	// ModelVersion is the model's version; both are empty for a policy
	// read from one file.
	Model, ModelVersion string

	// Sleeves lists the sleeve tree depth-first in file order; a sleeve's
	// parent always precedes it.
	Sleeves     []Sleeve
	Instruments []Instrument
	Accounts    []Account
	Rebalance   Rebalance
	Prices      PriceRules
	Limits      Limits

	// Investor is the person the policy is for; nil without an investor
	// block. A glide path counts ages from the birth date.
	Investor *Investor
	// GlidePath lists the rows of the glide path by increasing age; nil
	// without one. Sleeves keep the weights of targets: the effective
	// weights on a date are computed from the rows (package targets).
	GlidePath []GlideRow
	// GlideBands is the glide path as a table of age bands (strategy.go);
	// nil without one. A policy has GlidePath or GlideBands, not both.
	GlideBands *GlideBands
	// Tilts are the tactical tilts in file order, active or expired.
	Tilts []Tilt
	// Correlation is the correlation watch (correlation.go); nil without
	// a correlation block.
	Correlation *Correlation
	// Tax holds the tax rules of taxable accounts; nil without a tax
	// block (see TaxRules).
	Tax *TaxRules
	// AssetLocation lists the sleeves with preferred accounts for buys,
	// in file order; nil without an asset_location block.
	AssetLocation []Location
	// PhaseIn, when set, moves to new targets in steps (phasein.go).
	PhaseIn *PhaseIn
	// Contributions are the scheduled payments into accounts
	// (contributions.go), in file order.
	Contributions []Contribution
	// LocalZone is the zone of the host that runs the daemon or command,
	// the last fallback of Zone. Parse leaves it nil (UTC), so that the
	// core never reads process state; the shell that loads a policy sets
	// it (to time.Local).
	LocalZone *time.Location

	// Cash is the index in Sleeves of the top-level cash sleeve.
	Cash int

	sleeveIndex     map[string]int
	instrumentIndex map[string]int
	accountIndex    map[string]int
}

// Sleeve is one node of the allocation tree.
type Sleeve struct {
	Path   string // e.g. "crypto/large_cap"
	Parent int    // index of the parent sleeve, -1 at top level
	// Children are indices of the sleeve's sub-sleeves, in file order.
	Children []int
	// Local is the weight within the parent, as written (0.65 for 65%).
	Local decimal.Decimal
	// Target is the fraction of the whole investable portfolio (0.0325).
	Target decimal.Decimal
	// Band is the rule that gives the tolerance of this sleeve.
	Band Band
	// HalfWidth is the band's half-width as a fraction of the whole
	// portfolio: the sleeve breaches when |weight - Target| > HalfWidth.
	HalfWidth decimal.Decimal
	// BandLow and BandHigh are the band's edges, clamped to [0, 1].
	BandLow, BandHigh decimal.Decimal
	// Instruments are indices into Policy.Instruments (leaf sleeves only).
	Instruments []int
	Line        int

	// derived holds figures made once when the policy is derived; they
	// hold for the Target and HalfWidth they were made from.
	derived derivedFigures
}

// derivedFigures are, for the decimals target and halfWidth (compared by
// identity: the same value and exponent, which a decimal never changes),
// the split tolerance halfWidth.DivRound(target, 8) (when target > 0) and
// both read as dec64 figures.
type derivedFigures struct {
	target, halfWidth, tol decimal.Decimal
	targetF, halfWidthF    dec64.Figure
	ok                     bool
}

// valid reports whether d was made for s's Target and HalfWidth.
func (d *derivedFigures) valid(s *Sleeve) bool {
	return d.ok && d.target == s.Target && d.halfWidth == s.HalfWidth
}

// Figures returns the sleeve's Target and HalfWidth as dec64 figures, for
// drift's arithmetic on them.
func (s *Sleeve) Figures() (target, halfWidth dec64.Figure) {
	if d := &s.derived; d.valid(s) {
		return d.targetF, d.halfWidthF
	}
	return dec64.Read(s.Target), dec64.Read(s.HalfWidth)
}

// SplitTolerance returns the tolerance of the split between the sleeve's
// instruments, relative to each instrument's share: bands.within_sleeve
// when set, else the sleeve's half-width divided by its target (zero for
// a 0% target).
func (s *Sleeve) SplitTolerance() decimal.Decimal {
	switch {
	case s.Band.HasWithinSleeve:
		return s.Band.WithinSleeve
	case s.Target.Sign() > 0:
		if d := &s.derived; d.valid(s) {
			return d.tol
		}
		return s.HalfWidth.DivRound(s.Target, 8)
	}
	return decimal.Zero
}

// Leaf reports whether the sleeve has no sub-sleeves.
func (s *Sleeve) Leaf() bool { return len(s.Children) == 0 }

// Band is a tolerance rule. With both parts set, the half-width is the
// smaller of Absolute and Relative x target (the "5/25 rule"); a 0% target
// uses the absolute part only.
type Band struct {
	Absolute    decimal.Decimal
	HasAbsolute bool
	Relative    decimal.Decimal
	HasRelative bool
	// WithinSleeve is the tolerance of the split between the instruments
	// of a leaf sleeve, relative to each instrument's share: an instrument
	// of share s in a sleeve worth W is inside it while
	// |value - s x W| <= WithinSleeve x s x W. Without it
	// (HasWithinSleeve false) the sleeve's own relative band applies:
	// its half-width divided by its target (see Sleeve.SplitTolerance).
	WithinSleeve    decimal.Decimal
	HasWithinSleeve bool
}

// HalfWidth returns the half-width of the band around target.
func (b Band) HalfWidth(target decimal.Decimal) decimal.Decimal {
	switch {
	case b.HasRelative && target.Sign() > 0:
		rel := b.Relative.Mul(target)
		if b.HasAbsolute && b.Absolute.LessThan(rel) {
			return b.Absolute
		}
		return rel
	case b.HasAbsolute:
		return b.Absolute
	}
	return decimal.Zero
}

// Instrument is a tradable security and the leaf sleeve it fills.
type Instrument struct {
	Symbol string
	Sleeve int // index into Policy.Sleeves (always a leaf)
	// Share is the instrument's fraction of its sleeve; the shares of a
	// sleeve's instruments sum to exactly 1.
	Share decimal.Decimal
	// Step is the trading increment: quantities are multiples of it.
	Step decimal.Decimal
	Line int

	// stepF is Step read as a dec64 figure when the policy is derived
	// (stepOK), with the decimal it was read from (compared by identity,
	// as derivedFigures are).
	step   decimal.Decimal
	stepF  dec64.Figure
	stepOK bool
}

// StepFigure returns the instrument's Step as a dec64 figure, for the
// planner's arithmetic on it.
func (in *Instrument) StepFigure() dec64.Figure {
	if in.stepOK && in.step == in.Step {
		return in.stepF
	}
	return dec64.Read(in.Step)
}

// Account is one account of the household.
type Account struct {
	Name string
	Type AccountType
	// Reserve is cash that is never invested and never counted.
	Reserve decimal.Decimal
	// MayHold, when not nil, is indexed like Policy.Instruments and says
	// which instruments may be bought in this account. Nil allows all.
	MayHold []bool
	Line    int
}

// Allows reports whether instrument i may be bought in the account.
func (a *Account) Allows(i int) bool { return a.MayHold == nil || a.MayHold[i] }

// Rebalance holds when and how far the policy rebalances.
type Rebalance struct {
	Trigger Trigger
	// Schedule is the cron spec as written; Cron is its parsed form (nil for
	// the threshold trigger when no schedule is given).
	Schedule    string
	Cron        cron.Schedule
	CheckEvery  time.Duration
	Destination Destination
	// MinTrade is the smallest order notional, in the policy currency.
	MinTrade decimal.Decimal
	// Cooldown is the least time between two rebalances.
	Cooldown time.Duration
	// OrderTTL is how long an order stays pending without a final fill
	// before it is considered expired; while any order is pending the
	// policy is not planned again.
	OrderTTL time.Duration
}

// Limits are the pre-trade risk limits: a plan that exceeds any of them is
// not published. A zero MaxOrderNotional means no absolute limit.
type Limits struct {
	// MaxOrderNotional caps one order's notional, in the policy currency.
	MaxOrderNotional decimal.Decimal
	// MaxOrderShare caps one order's notional as a share of the portfolio.
	MaxOrderShare decimal.Decimal
	// MaxTurnover caps the plan's total notional (buys and sells) as a
	// share of the portfolio.
	MaxTurnover decimal.Decimal
	// MaxOrders caps the number of orders of one plan.
	MaxOrders int
	// MaxPlansPerDay caps the plans published in any 24 hours.
	MaxPlansPerDay int
	// MaxValueChange is the largest move of the investable total from
	// the last accepted valuation (a fraction) that is planned on without
	// confirmation; a larger one holds planning until it persists for
	// PriceRules.ConfirmAfter.
	MaxValueChange decimal.Decimal
}

// DefaultLimits are the limits of a policy that sets none: one order at
// most 25% of the portfolio, a plan's orders at most 100% of it in total
// (a complete swap of half the portfolio), 100 orders, 6 plans a day, and
// a valuation at most 20% away from the last accepted one.
func DefaultLimits() Limits {
	return Limits{
		MaxOrderShare:  decimal.New(25, -2),
		MaxTurnover:    decimal.NewFromInt(1),
		MaxOrders:      100,
		MaxPlansPerDay: 6,
		MaxValueChange: decimal.New(2, -1),
	}
}

// PriceRules say which prices the daemon may plan on: none older than
// MaxAge, and none that moved more than MaxMove (a fraction) from the last
// accepted price until the move is confirmed: it persisted for
// ConfirmAfter, or a second feed reports it.
type PriceRules struct {
	MaxAge       time.Duration
	MaxMove      decimal.Decimal
	ConfirmAfter time.Duration
}

// Investor is the person whose age drives a glide path.
type Investor struct {
	// BirthDate is the date of birth, at midnight UTC; zero when the block
	// gives only time_zone.
	BirthDate time.Time
	// RetirementAge is the planned retirement age in whole years, 0 when
	// not given. A glide path row may name it as its age.
	RetirementAge int
	// Zone is the investor's time zone (time_zone); nil when not given
	// (see Policy.Zone).
	Zone *time.Location
	Line int
}

// GlideRow is one row of a glide path: the whole sleeve tree's weights at
// an age. Between two rows the weights move linearly with age.
type GlideRow struct {
	// Age is the age in whole years at which the row holds exactly.
	Age int
	// Local is each sleeve's weight within its parent, indexed like
	// Policy.Sleeves; each level sums to exactly 1.
	Local []decimal.Decimal
	Line  int
}

// Tilt is a temporary deviation of one sleeve from its strategic weight.
type Tilt struct {
	// Sleeve is the index into Policy.Sleeves of the tilted sleeve.
	Sleeve int
	// Delta is the change of the sleeve's weight within its parent, in
	// points of that level: 0.02 for +2%, -0.01 for -1%.
	Delta decimal.Decimal
	// Until is the last day the tilt applies (inclusive), at midnight UTC.
	Until time.Time
	// Reason says why, for the record.
	Reason string
	// From are the indices of the sibling sleeves the tilt takes from (or
	// gives to, when negative), pro rata to their weights; nil means every
	// sibling.
	From []int
	Line int
}

// HasStrategy reports whether the policy has a glide path or tilts, so
// that its effective targets may differ from Sleeves on some date.
func (p *Policy) HasStrategy() bool {
	return len(p.GlidePath) > 0 || p.GlideBands != nil || len(p.Tilts) > 0
}

// Levels returns the sibling groups of the sleeve tree: the top-level
// sleeves first, then the children of each sleeve with sub-sleeves, in
// sleeve order. Each group's weights sum to 1.
func (p *Policy) Levels() [][]int {
	var top []int
	levels := [][]int{nil}
	for i := range p.Sleeves {
		if p.Sleeves[i].Parent < 0 {
			top = append(top, i)
		}
		if !p.Sleeves[i].Leaf() {
			levels = append(levels, p.Sleeves[i].Children)
		}
	}
	levels[0] = top
	return levels
}

// WithLocals returns a copy of p whose sleeves have the given weights
// within their parents (indexed like p.Sleeves) and the given version.
// Target, HalfWidth, BandLow and BandHigh are derived from them as Parse
// derives them. Every weight must lie in [0, 1], each level must sum to
// exactly 1, and a leaf other than cash that gets a target must have an
// instrument. The copy shares everything else with p, which is unchanged.
func (p *Policy) WithLocals(local []decimal.Decimal, version string) (*Policy, error) {
	if len(local) != len(p.Sleeves) {
		return nil, fmt.Errorf("policy %s: %d weights for %d sleeves", p.Name, len(local), len(p.Sleeves))
	}
	for _, level := range p.Levels() {
		sum := decimal.Zero
		for _, i := range level {
			if local[i].Sign() < 0 || local[i].GreaterThan(one) {
				return nil, fmt.Errorf("policy %s: sleeve %q: weight %s is outside 0%%-100%%", p.Name, p.Sleeves[i].Path, local[i])
			}
			sum = sum.Add(local[i])
		}
		if !sum.Equal(one) {
			return nil, fmt.Errorf("policy %s: the level of sleeve %q sums to %s, want 1", p.Name, p.Sleeves[level[0]].Path, sum)
		}
	}
	q := *p
	q.Version = version
	q.Sleeves = make([]Sleeve, len(p.Sleeves))
	copy(q.Sleeves, p.Sleeves)
	for i := range q.Sleeves {
		q.Sleeves[i].Local = local[i]
	}
	q.derive()
	for i := range q.Sleeves {
		s := &q.Sleeves[i]
		if s.Leaf() && i != q.Cash && s.Target.Sign() > 0 && len(s.Instruments) == 0 {
			return nil, fmt.Errorf("policy %s: sleeve %q gets a target of %s but no instrument fills it", p.Name, s.Path, s.Target)
		}
	}
	return &q, nil
}

// derive computes every sleeve's Target from the weights within parents
// (parents precede children) and its band from the Target.
func (p *Policy) derive() {
	for i := range p.Sleeves {
		s := &p.Sleeves[i]
		scale := one
		if s.Parent >= 0 {
			scale = p.Sleeves[s.Parent].Target
		}
		s.Target = s.Local.Mul(scale)
		s.HalfWidth = s.Band.HalfWidth(s.Target)
		s.BandLow = decimal.Max(decimal.Zero, s.Target.Sub(s.HalfWidth))
		s.BandHigh = decimal.Min(one, s.Target.Add(s.HalfWidth))
		s.derived = derivedFigures{
			target: s.Target, halfWidth: s.HalfWidth,
			targetF: dec64.Read(s.Target), halfWidthF: dec64.Read(s.HalfWidth),
			ok: true,
		}
		if s.Target.Sign() > 0 {
			s.derived.tol = s.HalfWidth.DivRound(s.Target, 8)
		}
	}
	for i := range p.Instruments {
		in := &p.Instruments[i]
		in.step, in.stepF, in.stepOK = in.Step, dec64.Read(in.Step), true
	}
}

// SleeveIndex returns the index of the sleeve with the given path.
func (p *Policy) SleeveIndex(path string) (int, bool) {
	i, ok := p.sleeveIndex[path]
	return i, ok
}

// InstrumentIndex returns the index of the instrument with the given symbol.
func (p *Policy) InstrumentIndex(symbol string) (int, bool) {
	i, ok := p.instrumentIndex[symbol]
	return i, ok
}

// AccountIndex returns the index of the account with the given name.
func (p *Policy) AccountIndex(name string) (int, bool) {
	i, ok := p.accountIndex[name]
	return i, ok
}
