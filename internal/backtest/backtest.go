// Package backtest replays a price history through the daemon's own
// decision code: the effective targets of each date (targets.Effective:
// glide path by age, tilts with their expiry), the valuation and drift
// (portfolio.Bind, drift.Compute), the trigger decision (trigger.Decide:
// calendar firings, threshold breaches, hybrid, cooldown), the planner
// (plan.MakeWith with the ledger's trade history, plan.Invest for money
// coming in), the risk limits (risk.Check) and the ledger (fills, tax lots,
// the wash-sale history). None of those rules is written again here; this
// package only walks the dates, plays the executor and keeps score.
//
// The simulated clock is the history's dates, at midnight UTC. A calendar
// firing acts at the first date on or after it; bands are checked at every
// date; each order is filled in full on the date it is planned, at that
// date's price moved against the trade by the slippage, and pays the fee.
//
// Run is pure: no I/O, no clock, the same inputs give the same Result.
package backtest

import (
	"errors"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/history"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/risk"
	"github.com/rebalancerd/rebalancerd/internal/targets"
	"github.com/rebalancerd/rebalancerd/internal/trigger"
)

// Config is one replay's inputs, shared by every variant.
type Config struct {
	// Policy is the policy as written.
	Policy *policy.Policy
	// Holdings are the household at the start: its positions are valued
	// at the first date's prices, and its free cash is invested at once.
	Holdings *portfolio.Holdings
	// History gives the prices. Only dates on which every instrument the
	// policy needs has a price are replayed (see history.Series.Carry).
	History *history.Series
	// From and To bound the dates replayed (zero: no bound).
	From, To time.Time
	// FeeBps is the fee of each order, in basis points of its notional;
	// SlippageBps moves each fill's price against the trade.
	FeeBps, SlippageBps decimal.Decimal
}

// Variant is one way of rebalancing the same household.
type Variant struct {
	// Name names the variant in the output.
	Name string
	// Rebalance, when set, replaces the policy's rebalance rule (trigger,
	// schedule, destination); nil keeps it.
	Rebalance func(policy.Rebalance) (policy.Rebalance, error)
	// Never: invest the starting cash once, then never rebalance
	// (buy-and-hold).
	Never bool
}

// AsWritten is the policy as its file says.
var AsWritten = Variant{Name: "policy"}

// Compared are the variants of -compare, after the policy as written.
var Compared = []Variant{
	{Name: "buy_and_hold", Never: true},
	calendarVariant("monthly", "0 0 1 * *"),
	calendarVariant("quarterly", "0 0 1 1,4,7,10 *"),
	calendarVariant("annual", "0 0 1 1 *"),
	{Name: "threshold", Rebalance: func(r policy.Rebalance) (policy.Rebalance, error) {
		r.Trigger, r.Schedule, r.Cron = policy.TriggerThreshold, "", nil
		return r, nil
	}},
	{Name: "hybrid_quarterly", Rebalance: func(r policy.Rebalance) (policy.Rebalance, error) {
		return withSchedule(r, policy.TriggerHybrid, "0 0 1 1,4,7,10 *")
	}},
}

func calendarVariant(name, spec string) Variant {
	return Variant{Name: name, Rebalance: func(r policy.Rebalance) (policy.Rebalance, error) {
		r, err := withSchedule(r, policy.TriggerCalendar, spec)
		r.Destination = policy.DestinationTarget
		return r, err
	}}
}

func withSchedule(r policy.Rebalance, t policy.Trigger, spec string) (policy.Rebalance, error) {
	sched, err := policy.ParseSchedule(spec)
	if err != nil {
		return r, err
	}
	r.Trigger, r.Schedule, r.Cron = t, spec, sched
	return r, nil
}

// Point is the household on one replayed date.
type Point struct {
	Date time.Time
	// Value is the whole household: positions and all cash, reserves
	// included, after the date's trades.
	Value decimal.Decimal
	// Weights are each sleeve's weight after the date's trades, indexed
	// like the policy's sleeves.
	Weights []decimal.Decimal
	// Breaching is set when a sleeve was outside its band before the
	// date's trades.
	Breaching bool
	// OutAfter is set when a sleeve was outside its band after the
	// date's trades.
	OutAfter bool
	// Traded is the trigger of the date's plan, "" when none.
	Traded string
	// Inflow is the money that came in on the date (contributions).
	Inflow decimal.Decimal
	// Prices are the date's prices, indexed like the policy's instruments.
	Prices []decimal.Decimal
}

// Gains are realized gains, as the plans computed them from the lots at
// the date's price (before slippage and fees).
type Gains struct {
	ShortTerm decimal.Decimal `json:"short_term"`
	LongTerm  decimal.Decimal `json:"long_term"`
}

// Result is one variant's replay.
type Result struct {
	Variant string
	// Policy is the policy the variant ran (its rebalance rule replaced).
	Policy *policy.Policy
	// Trigger is the trigger the variant ran ("none" for buy-and-hold).
	Trigger    string
	Points     []Point
	Rebalances int
	Orders     int
	// Traded is the notional of every order, buys and sells.
	Traded decimal.Decimal
	// Costs are the fees and what slippage cost.
	Costs decimal.Decimal
	Gains Gains
	// Rejected counts plans the risk limits refused (not traded).
	Rejected int
	// Unresolved counts plans that left a sleeve out of its band.
	Unresolved int
	// Targets are each sleeve's target weight on each date, for the
	// tracking error and the report; indexed like Points.
	Targets [][]decimal.Decimal
	// Sleeves are the policy's sleeve paths; Bands their band edges on
	// the last date.
	Sleeves  []string
	BandLow  []decimal.Decimal
	BandHigh []decimal.Decimal
}

// ErrNoDates is returned when no date in the bounds has every price.
var ErrNoDates = errors.New("no date in the history has a price for every instrument the policy needs")

// Run replays the history for one variant.
func Run(cfg Config, v Variant) (*Result, error) {
	pol := cfg.Policy
	if v.Rebalance != nil {
		cp := *pol
		r, err := v.Rebalance(pol.Rebalance)
		if err != nil {
			return nil, fmt.Errorf("variant %s: %w", v.Name, err)
		}
		cp.Rebalance = r
		pol = &cp
	}
	rows, err := replayed(cfg, pol)
	if err != nil {
		return nil, err
	}
	s := &sim{cfg: cfg, pol: pol, v: v, res: &Result{Variant: v.Name, Trigger: string(pol.Rebalance.Trigger), Policy: pol}}
	if v.Never {
		s.res.Trigger = "none"
	}
	for _, sl := range pol.Sleeves {
		s.res.Sleeves = append(s.res.Sleeves, sl.Path)
	}
	s.l = ledger.New(pol.Name)
	// The starting holdings are as of just before the first date, so that
	// the ledger applies that date's fills on top of them.
	base := rows[0].Date.Add(-time.Second)
	s.l.SetBase(base, "backtest", ledger.FromHoldings(cfg.Holdings), base)
	s.fee = cfg.FeeBps.Shift(-4)
	s.slip = cfg.SlippageBps.Shift(-4)
	s.initContributions(rows[0].Date)
	if pol.Rebalance.Cron != nil && pol.Rebalance.Trigger != policy.TriggerThreshold {
		s.nextFire = pol.Rebalance.Cron.Next(rows[0].Date)
	}
	for i, r := range rows {
		if err := s.step(r, i == 0); err != nil {
			return nil, fmt.Errorf("variant %s, %s (line %d): %w", v.Name, r.Date.Format(history.DateLayout), r.Line, err)
		}
	}
	return s.res, nil
}

// replayed returns the rows in the bounds that price every instrument the
// policy names.
func replayed(cfg Config, pol *policy.Policy) ([]history.Row, error) {
	col := map[string]int{}
	for i, name := range cfg.History.Instruments {
		col[name] = i
	}
	need := make([]int, 0, len(pol.Instruments))
	for _, in := range pol.Instruments {
		c, ok := col[in.Symbol]
		if !ok {
			return nil, fmt.Errorf("%s has no column for instrument %s of policy %s", cfg.History.File, in.Symbol, pol.Name)
		}
		need = append(need, c)
	}
	var rows []history.Row
	for _, r := range cfg.History.Rows {
		if (!cfg.From.IsZero() && r.Date.Before(cfg.From)) || (!cfg.To.IsZero() && r.Date.After(cfg.To)) {
			continue
		}
		ok := true
		for _, c := range need {
			ok = ok && r.Present[c]
		}
		if ok {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return nil, ErrNoDates
	}
	return rows, nil
}

// maxFiringsPerDate bounds the contribution firings between two dates of
// the history, each of which is a deposit: a schedule of every minute over
// a history with years between its dates would otherwise make millions.
const maxFiringsPerDate = 1000

type contribution struct {
	c    policy.Contribution
	next time.Time
}

type sim struct {
	cfg       Config
	pol       *policy.Policy
	v         Variant
	res       *Result
	l         *ledger.Ledger
	fee, slip decimal.Decimal
	nextFire  time.Time
	due       string
	contribs  []contribution
	seq       int
}

func (s *sim) initContributions(start time.Time) {
	for _, c := range s.pol.Contributions {
		s.contribs = append(s.contribs, contribution{c: c, next: c.Cron.Next(start)})
	}
}

func (s *sim) prices(r history.Row) *portfolio.Prices {
	q := &portfolio.Prices{File: s.cfg.History.File, AsOf: r.Date, Line: r.Line, Quotes: make(map[string]portfolio.Quote, len(r.Prices))}
	for i, name := range s.cfg.History.Instruments {
		if r.Present[i] {
			q.Quotes[name] = portfolio.Quote{Price: r.Prices[i], At: r.Date, Line: r.Line}
		}
	}
	return q
}

// snapshot values the ledger's holdings at the date's prices on the
// targets in effect.
func (s *sim) snapshot(r history.Row, q *portfolio.Prices) (*drift.Snapshot, error) {
	eff, _, err := targets.Effective(s.pol, r.Date)
	if err != nil {
		return nil, err
	}
	book, err := portfolio.Bind(eff, s.l.Holdings(), q)
	if err != nil {
		return nil, err
	}
	// Money waiting for a later step of its phase-in is held back, as in
	// the daemon.
	return drift.Compute(plan.HoldBack(book, plan.WaitingAt(s.l.CashPhases, r.Date))), nil
}

func (s *sim) step(r history.Row, first bool) error {
	now := r.Date
	q := s.prices(r)
	// Contributions due by this date arrive as cash, deposits the daemon
	// invests (below).
	var deposits []deposit
	in := decimal.Zero
	for i := range s.contribs {
		c := &s.contribs[i]
		for n := 0; !c.next.IsZero() && !c.next.After(now); n++ {
			if n == maxFiringsPerDate {
				return fmt.Errorf("contribution to %s (line %d) fires more than %d times before this date: each firing is a deposit; use a coarser schedule or a history with more dates",
					s.pol.Accounts[c.c.Account].Name, c.c.Line, maxFiringsPerDate)
			}
			acc := s.l.Accounts[s.pol.Accounts[c.c.Account].Name]
			if acc == nil {
				return fmt.Errorf("contribution to account %s: the holdings have no such account", s.pol.Accounts[c.c.Account].Name)
			}
			acc.Cash = acc.Cash.Add(c.c.Amount)
			in = in.Add(c.c.Amount)
			s.seq++
			deposits = append(deposits, deposit{id: fmt.Sprintf("contribution-%d", s.seq), account: s.pol.Accounts[c.c.Account].Name, amount: c.c.Amount})
			c.next = c.c.Cron.Next(c.next)
		}
	}
	if !s.nextFire.IsZero() && !s.nextFire.After(now) {
		// Firings between two dates act once, at the later date.
		s.due = trigger.ForFiring(s.pol.Rebalance.Trigger)
		s.nextFire = s.pol.Rebalance.Cron.Next(now)
	}
	snap, err := s.snapshot(r, q)
	if err != nil {
		return err
	}
	pt := Point{Date: now, Breaching: len(snap.Breaching()) > 0, Inflow: in}
	for _, ins := range s.pol.Instruments {
		pt.Prices = append(pt.Prices, q.Quotes[ins.Symbol].Price)
	}
	tg := make([]decimal.Decimal, len(snap.Sleeves))
	for i, sl := range snap.Sleeves {
		tg[i] = sl.Target
	}
	if snap, err = s.moneyIn(r, q, snap, first, deposits, &pt); err != nil {
		return err
	}
	if !s.v.Never {
		d := trigger.Decide(trigger.Input{Kind: s.pol.Rebalance.Trigger, Due: s.due, Breaching: len(snap.Breaching()) > 0,
			LastRebalance: s.l.LastRebalance, Cooldown: s.pol.Rebalance.Cooldown, Now: now})
		if d.Consumed {
			s.due = ""
		}
		if d.Trigger != "" {
			p := plan.MakeWith(snap, plan.Options{History: s.l.TaxHistory(now)})
			if _, err := s.apply(p, d.Trigger, now, &pt); err != nil {
				return err
			}
		}
	}
	after := snap
	if pt.Traded != "" {
		if after, err = s.snapshot(r, q); err != nil {
			return err
		}
	}
	pt.Value = householdValue(after)
	pt.OutAfter = len(after.Breaching()) > 0
	for _, sl := range after.Sleeves {
		pt.Weights = append(pt.Weights, sl.Weight)
	}
	s.res.Points = append(s.res.Points, pt)
	s.res.Targets = append(s.res.Targets, tg)
	s.res.BandLow, s.res.BandHigh = s.res.BandLow[:0], s.res.BandHigh[:0]
	for _, sl := range snap.Sleeves {
		s.res.BandLow = append(s.res.BandLow, sl.BandLow)
		s.res.BandHigh = append(s.res.BandHigh, sl.BandHigh)
	}
	return nil
}

// deposit is money arriving in an account.
type deposit struct {
	id, account string
	amount      decimal.Decimal
}

// moneyIn invests new money in the order of the daemon's evaluation (the
// engine's cashFlow, FirstInvestment and investStep), with the same
// functions: the starting cash is the first investment, in steps when the
// policy has phase_in (plan.FirstInvestment), else at once (plan.Invest);
// each contribution is a deposit, in steps when phase_in.deposits_above
// says so; then a step of new money that is due is invested. The daemon
// evaluates again within seconds after each plan, so the replay goes on on
// the same date. It returns the snapshot after them.
func (s *sim) moneyIn(r history.Row, q *portfolio.Prices, snap *drift.Snapshot, first bool, deposits []deposit, pt *Point) (*drift.Snapshot, error) {
	now := r.Date
	again := func(traded bool) (err error) {
		if traded {
			snap, err = s.snapshot(r, q)
		}
		return err
	}
	invest := func(trig string) error {
		traded, err := s.apply(plan.Invest(snap, plan.Options{History: s.l.TaxHistory(now)}), trig, now, pt)
		if err != nil {
			return err
		}
		return again(traded)
	}
	if first {
		if phases := plan.FirstInvestment(snap, s.pol.PhaseIn, now); phases != nil {
			s.l.CashPhases = append(s.l.CashPhases, phases...)
			if err := again(true); err != nil {
				return nil, err
			}
		} else if err := invest(trigger.CashFlow); err != nil {
			return nil, err
		}
	}
	plain := false
	for _, d := range deposits {
		if s.pol.PhaseIn.IsPhased(d.amount) {
			s.l.CashPhases = append(s.l.CashPhases, targets.NewCashPhase(d.id, d.account, d.amount, now, s.pol.PhaseIn))
			if err := again(true); err != nil {
				return nil, err
			}
		} else {
			plain = true
		}
	}
	if plain {
		if err := invest(trigger.CashFlow); err != nil {
			return nil, err
		}
	}
	if targets.StepDue(s.l.CashPhases, now) {
		rejected := s.res.Rejected
		if err := invest(trigger.PhaseIn); err != nil {
			return nil, err
		}
		if s.res.Rejected == rejected { // a refused step stays due, as in the daemon
			s.l.CashPhases = targets.Invested(s.l.CashPhases, now)
		}
	}
	return snap, nil
}

// apply executes a plan's orders, if any, notes it on the point, and
// reports whether it traded.
func (s *sim) apply(p *plan.Plan, trig string, now time.Time, pt *Point) (bool, error) {
	if len(p.Unresolved) > 0 {
		s.res.Unresolved++
	}
	if len(p.Orders) == 0 {
		return false, nil
	}
	traded, err := s.execute(p, trig, now)
	if traded {
		pt.Traded = trig
	}
	return traded, err
}

// householdValue is every position at its price plus all cash, reserves
// included.
func householdValue(snap *drift.Snapshot) decimal.Decimal {
	v := decimal.Zero
	for a := range snap.Values {
		v = v.Add(snap.Book.Cash[a])
		for _, x := range snap.Values[a] {
			v = v.Add(x)
		}
	}
	return v
}

// execute checks the plan against the risk limits, records its orders in
// the ledger as the daemon does, and fills them.
func (s *sim) execute(p *plan.Plan, trig string, now time.Time) (traded bool, err error) {
	// Shares judged against the plan's own total (no accepted valuation:
	// the backtest's prices are history, not a feed to be confirmed).
	if v := risk.Check(p, s.pol.Limits, decimal.Zero, s.l.PlanTimes(), now); len(v) > 0 {
		s.res.Rejected++
		return false, nil
	}
	orders := events.OrdersOf(p, trig, now, s.pol.Rebalance.OrderTTL)
	s.l.AddOrders(orders, now)
	for _, o := range p.Orders {
		if len(o.Lots) > 0 {
			if err := s.l.SetLots(o.ID, o.Lots); err != nil {
				return false, err
			}
		}
	}
	s.l.LastRebalance, s.l.LastPlanID = now, p.ID
	s.l.MarkPublished(orderIDs(orders), now)
	s.res.Rebalances++
	// Sells first: their proceeds pay for the buys, as the phases say.
	for _, phase := range []int{plan.PhaseSell, plan.PhaseBuy} {
		for _, o := range p.Orders {
			if o.Phase != phase {
				continue
			}
			if err := s.fill(o, now); err != nil {
				return true, err
			}
		}
	}
	if p.Tax != nil {
		s.res.Gains.ShortTerm = s.res.Gains.ShortTerm.Add(p.Tax.NetShortTerm)
		s.res.Gains.LongTerm = s.res.Gains.LongTerm.Add(p.Tax.NetLongTerm)
	}
	s.l.Prune(now.Add(-7 * 24 * time.Hour))
	return true, nil
}

func orderIDs(orders []events.Order) []string {
	ids := make([]string, len(orders))
	for i, o := range orders {
		ids[i] = o.OrderID
	}
	return ids
}

// fill executes one order in full at its price moved by the slippage.
func (s *sim) fill(o plan.Order, now time.Time) error {
	price := o.Price.Mul(decimal.NewFromInt(1).Add(s.slip))
	if o.Side == plan.Sell {
		price = o.Price.Mul(decimal.NewFromInt(1).Sub(s.slip))
	}
	notional := o.Quantity.Mul(price)
	// Fees to the cent, rounded half away from zero, as a broker bills.
	fees := notional.Mul(s.fee).Round(2)
	s.seq++
	f := &events.Fill{SchemaVersion: events.SchemaVersion, FillID: fmt.Sprintf("bt-%d", s.seq), OrderID: o.ID,
		Status: events.FillFilled, Quantity: o.Quantity, Price: price, Fees: fees, At: now}
	if _, err := s.l.ApplyFill(o.Account, f, now); err != nil {
		return fmt.Errorf("simulated fill of order %s (%s %s %s in %s): %w", o.ID, o.Side, o.Quantity, o.Instrument, o.Account, err)
	}
	s.res.Orders++
	s.res.Traded = s.res.Traded.Add(o.Notional)
	s.res.Costs = s.res.Costs.Add(fees).Add(notional.Sub(o.Quantity.Mul(o.Price)).Abs())
	return nil
}
