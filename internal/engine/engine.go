// Package engine is the daemon's heart: it holds the loaded policies and
// their ledgers, takes quotes from the feeds and fills and positions from
// the executors, decides when a policy rebalances (calendar, threshold or
// hybrid trigger, cooldown, pending orders), and hands planned orders to a
// Publisher.
//
// Drift and planning are the pure core (packages drift and plan); the engine
// is the shell around them. It fails closed: a policy whose prices are
// missing, stale or quarantined, whose ledger holds fills of unknown orders,
// or whose orders are still pending is not planned, and the reason shows in
// the log, the metrics and Status.
//
// Every method is safe for concurrent use. State is guarded by one mutex;
// publishing happens outside it, one batch at a time: in the goroutine Run
// starts, or in the goroutine of a Quotes call that made a plan while that
// one was idle (Options.InlinePublishTimeout).
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/shopspring/decimal"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/feeds"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/metrics"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/risk"
	"github.com/rebalancerd/rebalancerd/internal/shortlist"
	"github.com/rebalancerd/rebalancerd/internal/state"
	"github.com/rebalancerd/rebalancerd/internal/targets"
	"github.com/rebalancerd/rebalancerd/internal/tax"
	"github.com/rebalancerd/rebalancerd/internal/trigger"
)

// Publisher sends the engine's events. PublishOrders and PublishPlan must
// not return nil before JetStream has acknowledged every message; they are
// retried with the same ids, so they must be idempotent. The engine calls
// them without its lock held, one call at a time, from the publisher
// goroutine or from a goroutine calling Quotes; they should stop sending
// once their context ends.
type Publisher interface {
	// PublishOrders publishes a plan's orders. Given the plan's event
	// (plan not nil), it may store the event with them, all or none (an
	// atomic batch), and then says so with planSent; otherwise the engine
	// publishes the event with PublishPlan once the orders are stored.
	PublishOrders(ctx context.Context, orders []events.Order, plan *events.Plan) (planSent bool, err error)
	PublishPlan(ctx context.Context, p events.Plan) error
	PublishDrift(d events.Drift) error
}

// Triggers of a rebalance, as they appear in events.
const (
	TriggerCalendar  = trigger.Calendar
	TriggerThreshold = trigger.Threshold
	TriggerHybrid    = trigger.Hybrid
	TriggerManual    = trigger.Manual
	TriggerPhaseIn   = trigger.PhaseIn
	// TriggerCashFlow is a deposit or withdrawal on <prefix>.cashflows.
	TriggerCashFlow = trigger.CashFlow
)

// Store keeps each policy's ledger and the journal of plans about to be
// published: the state directory (state.Store) or, for high availability,
// a JetStream key-value bucket shared by the instances.
type Store interface {
	// Load returns the saved ledger of a policy with its journal
	// replayed; ok is false when there is none.
	Load(policy string) (l *ledger.Ledger, ok bool, err error)
	// Save replaces the ledger; durable asks for it to survive a power
	// loss before Save returns.
	Save(l *ledger.Ledger, durable bool) error
	// Append journals the orders of a plan before they are published.
	Append(policy string, e state.Entry) error
}

// Options configure an Engine.
type Options struct {
	Clock     clock.Clock
	Publisher Publisher
	Store     Store
	// MayPublish, when set, is asked immediately before each message is
	// handed to the publisher (orders, plan events, alerts, drift events);
	// while it returns an error nothing is published and the outbox waits
	// (high availability: the lease must be held with a margin left).
	MayPublish func() error
	Metrics    *metrics.Metrics // optional
	Log        *zap.Logger
	// Tick is how often Run re-evaluates policies whose check is due even
	// when no quote arrives (default 1s).
	Tick time.Duration
	// PublishRetry is the pause between failed publish attempts (default 1s).
	PublishRetry time.Duration
	// ShutdownGrace bounds how long Run keeps publishing after its context
	// ends (default 10s). Orders still unacknowledged stay journaled and are
	// published at the next start under the same ids.
	ShutdownGrace time.Duration
	// Retention is how long finished orders stay in a ledger (default 7 days).
	Retention time.Duration
	// DedupeWindow is the orders stream's Duplicates window (default 24h).
	// A journaled, unacknowledged order older than it is not published
	// again at start: JetStream would no longer recognise its id, so it
	// could be executed twice. It blocks its policy instead (unknown order
	// state) until a positions snapshot settles the holdings.
	DedupeWindow time.Duration
	// Aux, when set, keeps the correlation watch's price history and
	// alert state across restarts.
	Aux AuxStore
	// OnPublished, when set, is called once a plan's orders are
	// acknowledged (with the plan event when the Publisher stored both
	// in one atomic batch; before it otherwise), for benchmarks and tests,
	// from the publishing goroutine: the publisher's, or that of the
	// Quotes call publishing inline.
	OnPublished func(policy, planID string, orders int)
	// InlinePublishTimeout bounds the publish a price tick does itself:
	// when the quotes a feed delivers make a plan while the outbox is
	// otherwise empty and NATS is connected, the feed's goroutine
	// publishes it at once instead of waking the publisher goroutine (a
	// hand-off that costs a goroutine wake-up), and hands it to the
	// publisher if JetStream has not acknowledged it within this time
	// (default 1s; the publisher retries under the same ids). Negative:
	// every plan goes through the publisher.
	InlinePublishTimeout time.Duration
	// HouseholdMetrics caps the households that get metrics of their own
	// (sleeve weights, price ages, blocks by reason, pending orders): the
	// first ones by name (default 1,000; negative: no cap). Aggregates
	// (rebalancerd_households, _households_breaching,
	// _households_blocked, rebalancerd_evaluation_seconds) cover every
	// household.
	HouseholdMetrics int
	// MaxSkew is how far a report may be dated after the clock, and a
	// fill before its order's creation (default ledger.DefaultMaxSkew).
	MaxSkew time.Duration
	// FillCollar is how far a fill's price may be from its order's
	// reference price, as a fraction of it (default ledger.DefaultCollar).
	FillCollar decimal.Decimal
}

// Loaded is one policy ready to run: the parsed policy and the holdings file
// that seeds its ledger.
type Loaded struct {
	Policy       *policy.Policy
	Holdings     *portfolio.Holdings
	HoldingsHash string
}

// Engine runs policies. Create it with New, give it policies with Load, and
// call Run.
type Engine struct {
	opts  Options
	log   *zap.Logger
	clk   clock.Clock
	chain cron.Chain

	mu       sync.Mutex
	policies map[string]*runtime
	names    []string // sorted
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup // calendar goroutines
	outbox   []*batch
	wake     chan struct{}
	natsUp   bool
	lastTick time.Time
	halt     *Halt // the kill switch, when engaged
	// pubCancel cancels the publish attempt in flight, if any.
	pubCancel context.CancelFunc
	// pubCtx is the publisher's context while Run runs (nil otherwise);
	// pubBusy is set while a goroutine publishes outbox[0] (the
	// publisher, or a tick publishing inline).
	pubCtx  context.Context
	pubBusy bool
	// holdWake is set while Quotes evaluates: a batch it queues is
	// published by Quotes itself when the publisher is idle, so enqueue
	// does not wake the publisher (Quotes does, when it cannot publish).
	holdWake bool
	driftOut []events.Drift
	// bySymbol indexes e.names by the instruments each policy needs
	// (nil: to be rebuilt); see affected.
	bySymbol map[string][]int
	// driftAt indexes driftOut by policy: one pending event per policy,
	// found without a search (a search made each tick quadratic).
	driftAt map[string]int
}

// runtime is one loaded policy.
type runtime struct {
	pol     *policy.Policy
	ledger  *ledger.Ledger
	guard   *feeds.Guard
	symbols []string // instruments whose prices the policy needs
	// value holds back a valuation that moved more than
	// limits.max_value_change (see valuation.go); limitBase is the
	// valuation the last plan's limits are judged against.
	value     *valueCheck
	limitBase decimal.Decimal
	stop      context.CancelFunc

	lastCheck time.Time
	lastEval  time.Time
	dirty     bool    // prices changed since the last evaluation
	due       *firing // a calendar firing not yet acted on
	// waiting is the new money the cash phases hold back at the last
	// evaluation.
	waiting   []plan.Waiting
	blocked   []Block
	breaching []string
	snapshot  *drift.Snapshot
	lastError string
	// rejected is the last plan's broken risk limits, at rejectedAt.
	rejected   []risk.Violation
	rejectedAt time.Time
	// unsaved is set while the ledger could not be saved.
	unsaved bool
	// journalErr is the error of the last journal write when it failed:
	// no plan can be published while writes fail.
	journalErr string
	// adopted and recovered count the orders Reconcile adopted from the
	// orders stream and the fills it recovered from the reports stream.
	adopted, recovered int
	// ignoredHash is the holdings file last ignored as older than the
	// ledger, so that it is reported once.
	ignoredHash string
	// eff is the policy with the targets in effect on effDate (glide
	// path and tilts applied; pol itself without them), explained by
	// explain.
	eff     *policy.Policy
	effFrom *policy.Policy // the pol eff was computed from
	effDate string
	effStep int // the phase-in step eff has (0 without a phase)
	explain *targets.Explanation
	// corr is the correlation watch, when the policy has one.
	corr *corrWatch
	// contribStop stops the calendars of the policy's contributions,
	// started for contribSpecs.
	contribStop  context.CancelFunc
	contribSpecs string
	// metered is set for the households that get metrics of their own
	// (Options.HouseholdMetrics).
	metered bool
	// phase is the phase-in in progress (nil when none), phaseStep where
	// it stood at the last evaluation, applied what was last applied.
	phase     *targets.Phase
	phaseStep *targets.PhaseStep
	applied   phaseDoc
}

type firing struct {
	trigger string
	at      time.Time
}

// Block is a reason a policy cannot be planned now.
type Block struct {
	Reason string `json:"reason"` // one of metrics.BlockReasons
	Detail string `json:"detail"`
}

// batch is one plan's events on their way to JetStream.
type batch struct {
	policy string
	plan   events.Plan
	orders []events.Order
	start  time.Time
	// ordersAcked is set once JetStream has acknowledged every order.
	ordersAcked bool
	// attempts counts the publish attempts of the orders; a batch queued
	// again at start counts as attempted (it may have been sent).
	attempts int
}

// New returns an engine with no policies.
func New(opts Options) *Engine {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Tick <= 0 {
		opts.Tick = time.Second
	}
	if opts.PublishRetry <= 0 {
		opts.PublishRetry = time.Second
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = 10 * time.Second
	}
	if opts.DedupeWindow <= 0 {
		opts.DedupeWindow = 24 * time.Hour
	}
	if opts.Retention <= 0 {
		opts.Retention = 7 * 24 * time.Hour
	}
	if opts.MaxSkew <= 0 {
		opts.MaxSkew = ledger.DefaultMaxSkew
	}
	if opts.FillCollar.Sign() <= 0 {
		opts.FillCollar = ledger.DefaultCollar
	}
	if opts.HouseholdMetrics == 0 {
		opts.HouseholdMetrics = 1000
	}
	if opts.InlinePublishTimeout == 0 {
		opts.InlinePublishTimeout = time.Second
	}
	logger := cronLogger{opts.Log}
	ctx, cancel := context.WithCancel(context.Background())
	return &Engine{
		opts: opts,
		log:  opts.Log,
		clk:  opts.Clock,
		// SkipIfStillRunning outside Recover: the other way round, a panic
		// skips SkipIfStillRunning's release and every later firing is
		// skipped forever.
		chain:    cron.NewChain(cron.SkipIfStillRunning(logger), cron.Recover(logger)),
		policies: map[string]*runtime{},
		ctx:      ctx,
		cancel:   cancel,
		wake:     make(chan struct{}, 1),
		natsUp:   true,
	}
}

// Load replaces the running policies with set, all at once: policies not in
// set stop, new ones start, changed ones keep their ledger and prices and
// run under the new version. A holdings file whose content changed and
// whose as_of is newer than the ledger's replaces the ledger's holdings.
// Load checks set first and changes nothing when it returns an error.
func (e *Engine) Load(set []Loaded) error {
	seen := map[string]string{}
	for _, l := range set {
		if prev, ok := seen[l.Policy.Name]; ok {
			return fmt.Errorf("policy %q is defined in both %s and %s", l.Policy.Name, prev, l.Policy.File)
		}
		seen[l.Policy.Name] = l.Policy.File
	}
	// Load saved ledgers outside the lock: they only depend on the store.
	// Only for policies new to the engine: a running policy's ledger is
	// the one in memory (and, in high availability, reading it again
	// would claim the shared state anew).
	e.mu.Lock()
	running := make(map[string]bool, len(e.policies))
	for name := range e.policies {
		running[name] = true
	}
	e.mu.Unlock()
	saved := map[string]*ledger.Ledger{}
	for _, l := range set {
		if running[l.Policy.Name] {
			continue
		}
		led, ok, err := e.opts.Store.Load(l.Policy.Name)
		if err != nil {
			return err
		}
		if ok {
			saved[l.Policy.Name] = led
		}
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clk.Now()
	next := make(map[string]*runtime, len(set))
	for _, l := range set {
		name := l.Policy.Name
		rt, ok := e.policies[name]
		if !ok {
			rt = &runtime{ledger: saved[name]}
			if rt.ledger == nil {
				rt.ledger = ledger.New(name)
			}
			e.requeue(rt.ledger)
		} else if rt.pol.Version != l.Policy.Version {
			e.log.Info("policy changed", zap.String("policy", name), zap.String("file", l.Policy.File),
				zap.String("old_version", rt.pol.Version), zap.String("version", l.Policy.Version))
		}
		if pr := l.Policy.Prices; rt.guard == nil || !samePriceRules(rt.pol.Prices, pr) {
			guard := feeds.NewGuard(pr.MaxAge, pr.MaxMove, pr.ConfirmAfter)
			if rt.guard != nil {
				// Held moves are dropped: their confirmation starts again.
				for _, sym := range rt.symbols {
					if q, ok := rt.guard.Quote(sym); ok {
						guard.Offer(q, now)
					}
				}
			}
			rt.guard = guard
		}
		if rt.value == nil || !sameValueRules(rt.pol, l.Policy) {
			rt.value = newValueCheck(l.Policy, rt.ledger, now)
		}
		if l.Holdings != nil && l.HoldingsHash != rt.ledger.BaseHash {
			switch {
			// A ledger dated after the clock (saved by a version that took
			// a fill's date as it came) cannot be compared: the file
			// replaces it.
			case rt.ledger.BaseAsOf.IsZero() || l.Holdings.AsOf.After(rt.ledger.AsOf) || rt.ledger.AsOf.After(now):
				rt.ledger.SetBase(l.Holdings.AsOf, l.HoldingsHash, ledger.FromHoldings(l.Holdings), now)
				e.log.Info("holdings loaded", zap.String("policy", name), zap.String("file", l.Holdings.File),
					zap.Time("as_of", l.Holdings.AsOf))
				// Not durable: should a power loss take this save, the next
				// start finds the same holdings file newer than the ledger
				// and loads it again. An fsync per household made starting
				// 100,000 households take minutes.
				e.save(rt, false)
			case rt.ignoredHash == l.HoldingsHash:
				// Said so already.
			default:
				rt.ignoredHash = l.HoldingsHash
				e.log.Warn("holdings file ignored: the ledger is newer", zap.String("policy", name),
					zap.String("file", l.Holdings.File), zap.Time("file_as_of", l.Holdings.AsOf),
					zap.Time("ledger_as_of", rt.ledger.AsOf))
			}
		}
		old := rt.pol
		rt.pol = l.Policy
		rt.ledger.HistoryDays = historyDays(rt.pol)
		rt.ledger.Zone = rt.pol.TradeZone()         // fills dated on the investor's day
		rt.ledger.Wash = ledger.WashRulesOf(rt.pol) // fills book wash sales in the lots
		e.setSymbols(rt)
		if old == nil || old.Version != rt.pol.Version {
			e.loadCorrelation(rt)
			e.loadPhase(rt, old, now)
			e.startContributions(rt)
		}
		if old == nil || old.Rebalance.Schedule != rt.pol.Rebalance.Schedule || old.Rebalance.Trigger != rt.pol.Rebalance.Trigger || rt.stop == nil {
			e.startCalendar(rt)
		}
		next[name] = rt
	}
	for name, rt := range e.policies {
		if _, ok := next[name]; !ok {
			if rt.stop != nil {
				rt.stop()
			}
			if rt.contribStop != nil {
				rt.contribStop()
			}
			if e.opts.Metrics != nil {
				e.opts.Metrics.ForgetPolicy(name)
			}
			e.log.Info("policy removed", zap.String("policy", name))
		}
	}
	e.policies = next
	e.names = e.names[:0]
	for name := range next {
		e.names = append(e.names, name)
	}
	sort.Strings(e.names)
	e.bySymbol = nil // the set of policies changed: rebuilt at the next offer
	for i, name := range e.names {
		rt := e.policies[name]
		metered := e.opts.HouseholdMetrics < 0 || i < e.opts.HouseholdMetrics
		if rt.metered && !metered && e.opts.Metrics != nil {
			e.opts.Metrics.ForgetPolicy(name) // pushed past the cap
		}
		rt.metered = metered
	}
	if e.opts.Metrics != nil {
		e.opts.Metrics.PoliciesLoaded.Set(float64(len(next)))
		e.opts.Metrics.Households.Set(float64(len(next)))
	}
	return nil
}

// startCalendar (re)starts the calendar goroutine of a policy with a
// schedule. Called with e.mu held.
func (e *Engine) startCalendar(rt *runtime) {
	if rt.stop != nil {
		rt.stop()
		rt.stop = nil
	}
	sched := rt.pol.Rebalance.Cron
	if sched == nil || rt.pol.Rebalance.Trigger == policy.TriggerThreshold {
		rt.stop = func() {}
		return
	}
	if e.ctx.Err() != nil {
		rt.stop = func() {} // stopping: no new calendar
		return
	}
	ctx, cancel := context.WithCancel(e.ctx)
	rt.stop = cancel
	name, spec := rt.pol.Name, rt.pol.Rebalance.Schedule
	e.goCalendar(ctx, sched, func(at time.Time) { e.fire(name, spec, sched, at) })
}

// goCalendar runs fire at every firing of sched, in a goroutine the
// engine waits for on Close, until ctx ends. Called with e.mu held.
func (e *Engine) goCalendar(ctx context.Context, sched cron.Schedule, fire func(at time.Time)) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		runCalendar(ctx, e.clk, sched, e.chain, fire)
	}()
}

// fire is a calendar firing of policy name.
func (e *Engine) fire(name, spec string, sched cron.Schedule, at time.Time) {
	defer e.flushDrift() // after the unlock: publishing must not hold the engine
	e.mu.Lock()
	defer e.mu.Unlock()
	rt, ok := e.policies[name]
	if !ok || rt.pol.Rebalance.Schedule != spec || rt.pol.Rebalance.Trigger == policy.TriggerThreshold {
		// Removed or rescheduled meanwhile. (A reload that keeps the
		// schedule keeps this calendar: the spec text is compared, not
		// the parsed schedule, which each reload parses anew.)
		return
	}
	key := fireKey(sched, at)
	if key == rt.ledger.LastFire {
		e.log.Info("calendar firing ignored: this wall-clock time already fired (DST fall-back repeat)",
			zap.String("policy", name), zap.String("local_time", key), zap.Time("at", at))
		return
	}
	rt.ledger.LastFire = key
	rt.due = &firing{trigger: trigger.ForFiring(rt.pol.Rebalance.Trigger), at: at}
	e.log.Info("calendar firing", zap.String("policy", name), zap.String("trigger", rt.due.trigger), zap.String("local_time", key))
	e.evaluate(rt, e.clk.Now())
	e.save(rt, true)
}

// RebalanceNow asks for a rebalance of policy name to its destination at
// the next evaluation, as a calendar firing would; it is evaluated at once.
func (e *Engine) RebalanceNow(name string) error {
	defer e.flushDrift() // after the unlock: publishing must not hold the engine
	e.mu.Lock()
	defer e.mu.Unlock()
	rt, ok := e.policies[name]
	if !ok {
		return fmt.Errorf("no policy %q", name)
	}
	now := e.clk.Now()
	before := rt.ledger.LastPlanID
	rt.due = &firing{trigger: TriggerManual, at: now}
	e.evaluate(rt, now)
	return manualOutcome(rt, before, now)
}

// ErrRebalanceSkipped is returned by RebalanceNow when it planned nothing:
// something blocks the policy, it is in its cooldown, or its prices are
// not usable yet (then the request stays due and runs once they are).
var ErrRebalanceSkipped = errors.New("rebalance skipped")

// manualOutcome says whether the manual rebalance just evaluated made a
// plan (the last plan id moved from before), and if not why. Called with
// e.mu held.
func manualOutcome(rt *runtime, before string, now time.Time) error {
	if rt.ledger.LastPlanID != before {
		return nil
	}
	var why []string
	for _, b := range rt.blocked {
		why = append(why, b.Reason+": "+b.Detail)
	}
	switch {
	case rt.due != nil && rt.due.trigger == TriggerManual:
		return fmt.Errorf("%w for now: prices not usable (%s); it runs once they are", ErrRebalanceSkipped, strings.Join(why, "; "))
	case len(why) > 0:
		return fmt.Errorf("%w: blocked: %s", ErrRebalanceSkipped, strings.Join(why, "; "))
	case !rt.ledger.LastRebalance.IsZero() && now.Before(rt.ledger.LastRebalance.Add(rt.pol.Rebalance.Cooldown)):
		return fmt.Errorf("%w: in cooldown until %s", ErrRebalanceSkipped,
			rt.ledger.LastRebalance.Add(rt.pol.Rebalance.Cooldown).UTC().Format(time.RFC3339))
	}
	return nil // planned, with nothing to trade
}

// neededSymbols lists the instruments whose prices the policy needs: those
// held and those in a sleeve with a target above zero.
func neededSymbols(p *policy.Policy, l *ledger.Ledger) []string {
	need := map[string]bool{}
	for _, in := range p.Instruments {
		if p.Sleeves[in.Sleeve].Target.Sign() > 0 {
			need[in.Symbol] = true
		}
	}
	for _, a := range l.Accounts {
		for sym, q := range a.Positions {
			if !q.IsZero() {
				need[sym] = true
			}
		}
	}
	out := make([]string, 0, len(need))
	for s := range need {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Quotes offers quotes to every policy and evaluates the policies whose
// check is due. Feeds call it from their goroutines.
//
// A plan the quotes cause is published by the calling goroutine when the
// publisher is idle (see Options.InlinePublishTimeout): Quotes then
// returns once JetStream has acknowledged it, or once it has handed it to
// the publisher.
func (e *Engine) Quotes(qs []feeds.Quote) {
	start := time.Now() // a duration for the histogram, not a clock reading the logic uses
	e.mu.Lock()
	queued := len(e.outbox) // offer only appends to it
	e.holdWake = e.opts.InlinePublishTimeout > 0
	e.offer(qs)
	if m := e.opts.Metrics; m != nil {
		m.BatchEvaluationSeconds.Observe(time.Since(start).Seconds())
	}
	e.holdWake = false
	var job *pubJob
	if len(e.outbox) > queued {
		job = e.claim(true)
		if job == nil {
			e.wakeLocked() // enqueue did not
		}
	}
	e.mu.Unlock()
	if job != nil {
		e.publishInline(job)
	}
	e.flushDrift() // after the unlock: publishing must not hold the engine
}

// setSymbols recomputes the instruments whose prices a policy needs, and
// has the index of policies by instrument rebuilt. Called with e.mu held.
func (e *Engine) setSymbols(rt *runtime) {
	syms := neededSymbols(rt.pol, rt.ledger)
	if !slices.Equal(syms, rt.symbols) {
		e.bySymbol = nil
	}
	rt.symbols = syms
}

// affected returns the policies that need a price of qs, in name order,
// from an index of policies by instrument (built when missing): a quote
// reaches only the households that hold or target its instrument. Called
// with e.mu held.
func (e *Engine) affected(qs []feeds.Quote) []*runtime {
	if e.bySymbol == nil {
		e.bySymbol = map[string][]int{}
		for i, name := range e.names {
			for _, sym := range e.policies[name].symbols {
				e.bySymbol[sym] = append(e.bySymbol[sym], i)
			}
		}
	}
	mark := make([]bool, len(e.names))
	n := 0
	for _, q := range qs {
		for _, i := range e.bySymbol[q.Symbol] {
			if !mark[i] {
				mark[i] = true
				n++
			}
		}
	}
	out := make([]*runtime, 0, n)
	for i, name := range e.names {
		if mark[i] {
			out = append(out, e.policies[name])
		}
	}
	return out
}

// offer gives quotes to the policies that need them and evaluates those
// due. Called with e.mu held.
func (e *Engine) offer(qs []feeds.Quote) {
	now := e.clk.Now()
	for _, rt := range e.affected(qs) {
		name := rt.pol.Name
		changed := false
		for _, q := range qs {
			if _, ok := slices.BinarySearch(rt.symbols, q.Symbol); !ok {
				continue
			}
			switch v := rt.guard.Offer(q, now); v {
			case feeds.Accepted:
				rt.recordQuote(q)
				changed = true
			case feeds.Quarantined:
				e.log.Warn("price quarantined: moved more than max_move; unconfirmed until it persists for confirm_after or another feed reports it",
					zap.String("policy", name), zap.String("symbol", q.Symbol), zap.String("price", q.Price.String()),
					zap.String("source", q.Source), zap.Duration("confirm_after", rt.pol.Prices.ConfirmAfter))
				changed = true
			case feeds.Confirmed:
				e.log.Info("price move confirmed", zap.String("policy", name), zap.String("symbol", q.Symbol),
					zap.String("price", q.Price.String()), zap.String("source", q.Source))
				changed = true
			case feeds.Ignored, feeds.Agreeing:
			default:
				changed = true
			}
		}
		if changed {
			rt.dirty = true
			if rt.due != nil || !now.Before(rt.lastCheck.Add(rt.pol.Rebalance.CheckEvery)) {
				e.evaluate(rt, now)
			}
		}
	}
}

// tick evaluates the policies whose check is due and whose prices changed
// since their last evaluation; for the others it only refreshes what
// blocks them (a price going stale), so that a quote arriving later is
// evaluated at once.
func (e *Engine) tick() {
	defer e.flushDrift()  // after the unlock: publishing must not hold the engine
	defer e.flushAlerts() // likewise
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clk.Now()
	e.lastTick = now
	for _, name := range e.names {
		rt := e.policies[name]
		switch {
		case rt.dirty && !now.Before(rt.lastCheck.Add(rt.pol.Rebalance.CheckEvery)):
			e.evaluate(rt, now)
		case rt.due != nil:
			e.evaluate(rt, now)
		default:
			e.refreshBlocks(rt, now)
		}
	}
	e.watchCorrelations(now)
	e.exportAggregates()
}

// exportAggregates sets the metrics that count households: breaching, and
// blocked by reason. Called with e.mu held, once a tick.
func (e *Engine) exportAggregates() {
	m := e.opts.Metrics
	if m == nil {
		return
	}
	breaching := 0
	blocked := make(map[string]int, len(metrics.BlockReasons))
	for _, name := range e.names {
		rt := e.policies[name]
		if len(rt.breaching) > 0 {
			breaching++
		}
		for k, b := range rt.blocked {
			if !hasReason(rt.blocked[:k], b.Reason) { // a household once per reason
				blocked[b.Reason]++
			}
		}
	}
	m.HouseholdsBreaching.Set(float64(breaching))
	for _, r := range metrics.BlockReasons {
		m.HouseholdsBlocked.WithLabelValues(r).Set(float64(blocked[r]))
	}
}

// refreshBlocks re-checks prices and pending orders without valuing the
// policy. Called with e.mu held.
func (e *Engine) refreshBlocks(rt *runtime, now time.Time) {
	for _, o := range rt.ledger.Expire(now) {
		e.log.Warn("order expired without a final fill", zap.String("policy", rt.pol.Name), zap.String("order_id", o.OrderID))
	}
	if rt.valueConfirmable(now) {
		e.evaluate(rt, now) // a held valuation may be confirmed now
		return
	}
	problems := rt.guard.Check(rt.symbols, now)
	if len(problems) == 0 && !blocksPrices(rt.blocked) && len(rt.ledger.Pending()) == 0 == !hasReason(rt.blocked, metrics.BlockPendingOrders) {
		return // nothing changed that matters
	}
	e.evaluate(rt, now)
}

func hasReason(blocks []Block, reason string) bool {
	for _, b := range blocks {
		if b.Reason == reason {
			return true
		}
	}
	return false
}

// Alive reports whether Run's loop has ticked within the last few ticks:
// the systemd watchdog's health check.
func (e *Engine) Alive() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastTick.IsZero() || e.clk.Now().Sub(e.lastTick) < 10*e.opts.Tick+5*time.Second
}

// EvaluateAll evaluates every policy now, whatever its check_every (for
// benchmarks and the HTTP status).
func (e *Engine) EvaluateAll() {
	defer e.flushDrift() // after the unlock: publishing must not hold the engine
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clk.Now()
	for _, name := range e.names {
		e.evaluate(e.policies[name], now)
	}
}

// evaluate computes a policy's drift and, when its trigger says so and
// nothing blocks it, plans and queues a rebalance. Called with e.mu held.
func (e *Engine) evaluate(rt *runtime, now time.Time) {
	name := rt.pol.Name
	rt.lastEval = now
	rt.dirty = false
	m := e.opts.Metrics
	if m != nil {
		if rt.metered {
			m.Evaluations.WithLabelValues(name).Inc()
		}
		start := time.Now() // a duration for the histogram, not a clock reading the logic uses
		defer func() { m.EvaluationSeconds.Observe(time.Since(start).Seconds()) }()
	}
	for _, o := range rt.ledger.Expire(now) {
		e.log.Warn("order expired without a final fill", zap.String("policy", name), zap.String("order_id", o.OrderID),
			zap.String("filled", o.Filled.String()), zap.String("quantity", o.Quantity.String()))
	}
	var blocks []Block
	if len(rt.ledger.Unknown) > 0 {
		blocks = append(blocks, Block{metrics.BlockUnknownOrderState,
			fmt.Sprintf("holdings uncertain (%s): waiting for a positions snapshot", shortlist.Join(rt.ledger.Unknown, shortlist.Max, ", "))})
	}
	if rt.ledger.Refused != "" {
		blocks = append(blocks, Block{metrics.BlockInvalidPolicy, rt.ledger.Refused})
	}
	for _, p := range rt.guard.Check(rt.symbols, now) {
		blocks = append(blocks, Block{priceBlock(p.Reason), p.Symbol + ": " + p.Detail})
	}
	eff, err := e.effective(rt, now)
	if err != nil {
		blocks = append(blocks, Block{metrics.BlockInvalidPolicy, "effective targets: " + err.Error()})
	}
	var snap *drift.Snapshot
	if !hasPriceBlock(blocks) && eff != nil {
		book, err := portfolio.Bind(eff, rt.ledger.Holdings(), e.prices(rt))
		if err != nil {
			blocks = append(blocks, Block{metrics.BlockInvalidPolicy, err.Error()})
		} else {
			rt.waiting = plan.WaitingAt(rt.ledger.CashPhases, now)
			snap = drift.Compute(plan.HoldBack(book, rt.waiting))
		}
	}
	if snap != nil {
		rt.lastCheck = now
		rt.snapshot = snap
		rt.breaching = snap.Breaching()
		// Queued, and published once the engine is unlocked: the drift
		// event is informational and must not delay the orders.
		defer e.publishDrift(rt, snap, now)
		e.checkValuation(rt, snap.Total, now)
	}
	if b, held := rt.valueBlock(); held {
		blocks = append(blocks, b)
	}
	pending := rt.ledger.Pending()
	if len(pending) > 0 {
		blocks = append(blocks, Block{metrics.BlockPendingOrders, fmt.Sprintf("%d orders of plan %s not yet filled, cancelled or expired", len(pending), rt.ledger.LastPlanID)})
	}
	if !e.natsUp {
		blocks = append(blocks, Block{metrics.BlockNATSDown, "not connected to NATS"})
	}
	if h := e.halt; h != nil {
		blocks = append(blocks, Block{metrics.BlockHalted, fmt.Sprintf("kill switch engaged at %s by %q: %s",
			h.At.UTC().Format(time.RFC3339), h.By, h.Reason)})
	}
	if rt.unsaved {
		blocks = append(blocks, Block{metrics.BlockUnknownOrderState, "the ledger could not be saved: " + rt.lastError})
	}
	if rt.rejected != nil {
		if now.Before(rt.rejectedAt.Add(rt.pol.Rebalance.Cooldown)) {
			blocks = append(blocks, e.riskBlock(rt))
		} else {
			rt.rejected = nil // try again: prices or the policy may have changed
		}
	}
	e.setBlocked(rt, blocks)
	if snap == nil {
		return
	}
	if len(rt.ledger.PendingFlows) > 0 {
		// A cash flow goes first, and does not wait for the cooldown or a
		// breach; it waits for anything else that blocks planning.
		if len(blocks) == 0 {
			e.cashFlow(rt, snap, now)
		}
		return
	}
	if len(blocks) == 0 && len(rt.ledger.CashPhases) == 0 {
		if phases := plan.FirstInvestment(snap, rt.pol.PhaseIn, now); phases != nil {
			e.log.Info("first investment: invested in steps (phase_in)", zap.String("policy", name),
				zap.Int("steps", rt.pol.PhaseIn.Steps), zap.String("over", policy.FormatDays(rt.pol.PhaseIn.Over)))
			snap = e.startCashPhases(rt, snap, phases, now)
		}
	}
	if targets.StepDue(rt.ledger.CashPhases, now) {
		// A step of new money is invested whatever the bands say, and
		// like a cash flow does not wait for the cooldown.
		if len(blocks) == 0 {
			e.investStep(rt, snap, now)
		}
		return
	}

	in := trigger.Input{Kind: rt.pol.Rebalance.Trigger, Breaching: len(rt.breaching) > 0,
		// A firing waits for a held valuation as it waits for prices.
		Blocked: len(blocks) > 0, PriceBlocked: blocksPrices(blocks) || hasReason(blocks, metrics.BlockValueChange),
		LastRebalance: rt.ledger.LastRebalance, Cooldown: rt.pol.Rebalance.Cooldown, Now: now}
	if rt.due != nil {
		in.Due = rt.due.trigger
	}
	d := trigger.Decide(in)
	if d.Consumed {
		rt.due = nil
	}
	switch d.Skip {
	case trigger.NoBreach:
		e.log.Info("hybrid firing: no sleeve breaches its band, nothing to do", zap.String("policy", name))
	case trigger.Blocked:
		e.log.Warn("rebalance skipped", zap.String("policy", name), zap.String("trigger", in.Due), zap.Any("blocked", blocks))
	case trigger.InCooldown:
		e.log.Info("rebalance skipped: in cooldown", zap.String("policy", name), zap.String("trigger", in.Due),
			zap.Time("last_rebalance", rt.ledger.LastRebalance), zap.Duration("cooldown", rt.pol.Rebalance.Cooldown))
	}
	if d.Trigger == "" {
		return
	}
	opts := plan.Options{History: taxHistory(rt, now)}
	if d.Trigger == TriggerPhaseIn {
		opts.Destination = policy.DestinationTarget // the step's targets, whatever the bands say
	}
	p := plan.MakeWith(snap, opts)
	p.Waiting = rt.waiting
	e.rebalance(rt, p, d.Trigger, now)
}

// cashFlow plans the oldest pending cash flow: a deposit is invested
// without selling, a withdrawal raised without buying. After a withdrawal
// the policy is blocked until a positions snapshot shows the money gone:
// until then the ledger still counts the cash raised, which planning must
// not reinvest. Called with e.mu held.
func (e *Engine) cashFlow(rt *runtime, snap *drift.Snapshot, now time.Time) {
	c := rt.ledger.PendingFlows[0]
	opts := plan.Options{History: taxHistory(rt, now)}
	var p *plan.Plan
	if (c.Kind == events.CashFlowDeposit || c.Kind == CashFlowContribution) && rt.pol.PhaseIn.IsPhased(c.Amount) {
		e.log.Info("cash flow: invested in steps (phase_in.deposits_above)", zap.String("policy", rt.pol.Name),
			zap.String("cashflow_id", c.CashFlowID), zap.String("account", c.Account), zap.String("amount", c.Amount.String()),
			zap.Int("steps", rt.pol.PhaseIn.Steps), zap.String("over", policy.FormatDays(rt.pol.PhaseIn.Over)))
		rt.ledger.PendingFlows = rt.ledger.PendingFlows[1:]
		snap = e.startCashPhases(rt, snap, []targets.CashPhase{targets.NewCashPhase(c.CashFlowID, c.Account, c.Amount, now, rt.pol.PhaseIn)}, now)
		e.investStep(rt, snap, now)
		return
	}
	if c.Kind == events.CashFlowDeposit || c.Kind == CashFlowContribution {
		if a, ok := rt.pol.AccountIndex(c.Account); ok && c.Kind == CashFlowContribution && snap.Book.FreeCash(a).LessThan(c.Amount) {
			e.log.Warn("scheduled contribution: the account's free cash is less than the amount; investing what there is",
				zap.String("policy", rt.pol.Name), zap.String("account", c.Account), zap.String("amount", c.Amount.String()),
				zap.String("free_cash", snap.Book.FreeCash(a).String()))
		}
		p = plan.Invest(snap, opts)
	} else {
		var err error
		if p, err = plan.Withdraw(snap, opts, plan.Withdrawal{Account: c.Account, Amount: c.Amount}); err != nil {
			e.log.Error("withdrawal not planned; dropped", zap.String("policy", rt.pol.Name),
				zap.String("cashflow_id", c.CashFlowID), zap.Error(err))
			rt.ledger.PendingFlows = rt.ledger.PendingFlows[1:]
			_ = e.save(rt, true)
			return
		}
	}
	e.log.Info("cash flow", zap.String("policy", rt.pol.Name), zap.String("cashflow_id", c.CashFlowID),
		zap.String("kind", c.Kind), zap.String("account", c.Account), zap.String("amount", c.Amount.String()))
	if !e.rebalance(rt, p, TriggerCashFlow, now) {
		return // not journaled: the cash flow stays pending
	}
	rt.ledger.PendingFlows = rt.ledger.PendingFlows[1:]
	if c.Kind == events.CashFlowWithdrawal {
		rt.ledger.Unknown = append(rt.ledger.Unknown, fmt.Sprintf("withdrawal %s of %s from %s: waiting for a positions snapshot without the money",
			c.CashFlowID, c.Amount, c.Account))
	}
	_ = e.save(rt, true)
}

// taxHistory is the household's recent trades for the wash-sale guard:
// buys in every account, loss sales in taxable accounts only (a sale in a
// tax-advantaged account realizes no loss).
func taxHistory(rt *runtime, now time.Time) tax.History {
	h := rt.ledger.TaxHistory(now)
	h.LossSales = slices.DeleteFunc(h.LossSales, func(t tax.Trade) bool {
		a, ok := rt.pol.AccountIndex(t.Account)
		return ok && rt.pol.Accounts[a].Type.TaxAdvantaged()
	})
	return h
}

// historyDays is how many days of trades the ledger keeps for the policy's
// wash-sale windows: the ledger's default or the longest window.
func historyDays(p *policy.Policy) int {
	days := ledger.DefaultHistoryDays
	if p.Tax != nil {
		w := p.Tax.WashSale
		days = max(days, 2*w.Window+1)
		for _, d := range w.Windows {
			days = max(days, 2*d+1)
		}
	}
	return days
}

// effective returns the policy with the targets in effect at now: its
// glide path and tilts applied for now's day (UTC). It is computed once a
// day and when the policy changes; a change of targets is logged, and so
// is each tilt that expires. Called with e.mu held.
func (e *Engine) effective(rt *runtime, now time.Time) (*policy.Policy, error) {
	day := rt.pol.Day(now).Format(time.DateOnly) // the investor's day
	step := rt.phaseStepAt(now)
	if rt.effFrom == rt.pol && rt.effDate == day && rt.effStep == step {
		return rt.eff, nil
	}
	eff, ex, err := targets.Effective(rt.pol, now)
	if err != nil {
		rt.eff, rt.effFrom, rt.effDate = nil, nil, ""
		return nil, err
	}
	if rt.effFrom == rt.pol && rt.explain != nil {
		for _, t := range targets.NewlyExpired(rt.explain, ex) {
			e.log.Info("tilt expired: its sleeve returns to the strategic target", zap.String("policy", rt.pol.Name),
				zap.String("sleeve", t.Sleeve), zap.String("tilt", t.Tilt.String()), zap.String("until", t.Until),
				zap.String("reason", t.Reason))
		}
	}
	if eff, err = e.phased(rt, eff, now); err != nil {
		rt.eff, rt.effFrom, rt.effDate = nil, nil, ""
		return nil, err
	}
	if (rt.pol.HasStrategy() || rt.phase != nil) && (rt.eff == nil || rt.eff.Version != eff.Version) {
		fields := []zap.Field{zap.String("policy", rt.pol.Name), zap.String("date", ex.Date),
			zap.String("policy_version", eff.Version), zap.Int("active_tilts", len(ex.Active))}
		if g := ex.Glide; g != nil {
			fields = append(fields, zap.String("age", g.Age.String()), zap.Int("glide_from_age", g.FromAge),
				zap.Int("glide_to_age", g.ToAge), zap.String("glide_fraction", g.Fraction.String()))
		}
		if st := rt.phaseStep; st != nil {
			fields = append(fields, zap.Int("phase_step", st.Step), zap.Int("phase_steps", st.Steps))
		}
		e.log.Info("effective targets", fields...)
	}
	rt.eff, rt.effFrom, rt.effDate, rt.effStep, rt.explain = eff, rt.pol, day, step, ex
	e.noteApplied(rt, eff)
	return eff, nil
}

// riskBlock describes the last rejection.
func (e *Engine) riskBlock(rt *runtime) Block {
	parts := make([]string, len(rt.rejected))
	for i, v := range rt.rejected {
		parts[i] = v.Rule + ": " + v.Detail
	}
	return Block{metrics.BlockRiskLimit, fmt.Sprintf("plan rejected at %s (retried after the cooldown): %s",
		rt.rejectedAt.UTC().Format(time.RFC3339), strings.Join(parts, "; "))}
}

// hasPriceBlock reports whether blocks stop valuation (prices unusable).
func hasPriceBlock(blocks []Block) bool { return blocksPrices(blocks) }

func blocksPrices(blocks []Block) bool {
	for _, b := range blocks {
		switch b.Reason {
		case metrics.BlockStalePrice, metrics.BlockMissingPrice, metrics.BlockQuarantinedPrice:
			return true
		}
	}
	return false
}

func priceBlock(r feeds.Reason) string {
	switch r {
	case feeds.ReasonMissing:
		return metrics.BlockMissingPrice
	case feeds.ReasonStale:
		return metrics.BlockStalePrice
	default:
		return metrics.BlockQuarantinedPrice
	}
}

// setBlocked records the blocks and logs when they change.
func (e *Engine) setBlocked(rt *runtime, blocks []Block) {
	if !slices.Equal(rt.blocked, blocks) {
		name := rt.pol.Name
		switch {
		case len(blocks) == 0:
			e.log.Info("planning unblocked", zap.String("policy", name))
		case len(blocks) == 1 && blocks[0].Reason == metrics.BlockPendingOrders:
			e.log.Info("planning paused: orders pending", zap.String("policy", name), zap.String("detail", blocks[0].Detail))
		default:
			e.log.Warn("planning blocked", zap.String("policy", name), zap.Any("blocked", blocks))
		}
	}
	rt.blocked = blocks
	if m := e.opts.Metrics; m != nil && rt.metered {
		reasons := make([]string, len(blocks))
		for i, b := range blocks {
			reasons[i] = b.Reason
		}
		_ = m.SetPlanningBlocked(rt.pol.Name, reasons...)
		m.PendingOrders.WithLabelValues(rt.pol.Name).Set(float64(len(rt.ledger.Pending())))
	}
}

// prices returns the guard's accepted quotes of the policy's symbols; AsOf
// is the oldest of them.
func (e *Engine) prices(rt *runtime) *portfolio.Prices {
	q := &portfolio.Prices{File: "feeds", Quotes: make(map[string]portfolio.Quote, len(rt.symbols))}
	for _, sym := range rt.symbols {
		if fq, ok := rt.guard.Quote(sym); ok {
			q.Quotes[sym] = portfolio.Quote{Price: fq.Price, At: fq.At}
			if q.AsOf.IsZero() || fq.At.Before(q.AsOf) {
				q.AsOf = fq.At
			}
		}
	}
	return q
}

// publishDrift sets the drift metrics and queues the drift event.
func (e *Engine) publishDrift(rt *runtime, s *drift.Snapshot, now time.Time) {
	d := events.Drift{
		SchemaVersion: events.SchemaVersion,
		Policy:        rt.pol.Name,
		PolicyVersion: s.Book.Policy.Version,
		EvaluatedAt:   now.UTC(),
		PricesAsOf:    s.AsOf.UTC(),
		HoldingsAsOf:  s.Book.HoldingsAsOf.UTC(),
		Currency:      rt.pol.Currency,
		Total:         s.Total,
		Sleeves:       make([]events.DriftSleeve, len(s.Sleeves)),
		Breaching:     rt.breaching,
	}
	if d.Breaching == nil {
		d.Breaching = []string{}
	}
	m := e.opts.Metrics
	if !rt.metered {
		m = nil // past the cap of households with metrics of their own
	}
	for i, sl := range s.Sleeves {
		d.Sleeves[i] = events.DriftSleeve{Sleeve: sl.Path, Target: sl.Target, Weight: sl.Weight, Deviation: sl.Deviation,
			BandLow: sl.BandLow, BandHigh: sl.BandHigh, Breach: sl.Breach, Value: sl.Value}
		if m != nil {
			m.SleeveWeight.WithLabelValues(rt.pol.Name, sl.Path).Set(sl.Weight.InexactFloat64())
			m.SleeveTarget.WithLabelValues(rt.pol.Name, sl.Path).Set(sl.Target.InexactFloat64())
			m.SleeveDeviation.WithLabelValues(rt.pol.Name, sl.Path).Set(sl.Deviation.InexactFloat64())
			breach := 0.0
			if sl.Breach {
				breach = 1
			}
			m.SleeveBreach.WithLabelValues(rt.pol.Name, sl.Path).Set(breach)
		}
	}
	if m != nil {
		for _, sym := range rt.symbols {
			if q, ok := rt.guard.Quote(sym); ok {
				m.PriceAge.WithLabelValues(rt.pol.Name, sym).Set(now.Sub(q.At).Seconds())
			}
		}
	}
	// One pending event per policy: the latest evaluation's.
	if i, ok := e.driftAt[d.Policy]; ok {
		e.driftOut[i] = d
		return
	}
	if e.driftAt == nil {
		e.driftAt = map[string]int{}
	}
	e.driftAt[d.Policy] = len(e.driftOut)
	e.driftOut = append(e.driftOut, d)
}

// flushDrift publishes the drift events queued by evaluations. Called
// without e.mu held.
//
// While orders are being published the drift events wait: the publisher
// sends them once the outbox is empty, so that an informational event
// never delays orders (it cost a fifth of the time from a price tick to
// the acknowledged orders). While the outbox cannot drain (halted, NATS
// down) they go out as usual.
func (e *Engine) flushDrift() {
	e.mu.Lock()
	if len(e.outbox) > 0 && e.halt == nil && e.natsUp {
		e.mu.Unlock()
		return // the publisher flushes them once the outbox is empty
	}
	out := e.driftOut
	e.driftOut = nil
	clear(e.driftAt)
	e.mu.Unlock()
	for _, d := range out {
		if err := e.mayPublish(); err != nil {
			e.log.Debug("drift event not published", zap.String("policy", d.Policy), zap.Error(err))
			continue // informational: the next evaluation sends a newer one
		}
		if err := e.opts.Publisher.PublishDrift(d); err != nil {
			e.log.Debug("drift event not published", zap.String("policy", d.Policy), zap.Error(err))
		}
	}
}

// rebalance plans, journals and queues the orders. Called with e.mu held.
//
// It reports whether the plan was journaled (or had nothing to trade).
func (e *Engine) rebalance(rt *runtime, p *plan.Plan, trigger string, now time.Time) bool {
	name := rt.pol.Name
	fields := []zap.Field{zap.String("policy", name), zap.String("trigger", trigger),
		zap.Strings("breaching", rt.breaching), zap.Int("orders", len(p.Orders)), zap.String("plan_id", p.ID),
		zap.String("policy_version", p.PolicyVersion), zap.String("destination", string(p.Destination))}
	if len(p.Unresolved) > 0 {
		un := make([]string, len(p.Unresolved))
		for i, u := range p.Unresolved {
			un[i] = u.Sleeve + ": " + u.Reason
		}
		fields = append(fields, zap.Strings("unresolved", un))
	}
	if len(p.Orders) == 0 {
		e.log.Info("rebalance: nothing to trade", fields...)
		return true
	}
	if v := risk.Check(p, rt.pol.Limits, rt.limitBase, rt.ledger.PlanTimes(), now); len(v) > 0 {
		rt.rejected, rt.rejectedAt = v, now
		e.log.Error("plan rejected by the policy's risk limits; not published", append(fields, zap.Any("violations", v))...)
		if m := e.opts.Metrics; m != nil {
			for _, x := range v {
				m.PlansRejected.WithLabelValues(name, x.Rule).Inc()
			}
		}
		e.setBlocked(rt, append(rt.blocked, e.riskBlock(rt)))
		return false
	}
	rt.rejected = nil
	created := now.UTC()
	orders := events.OrdersOf(p, trigger, created, rt.pol.Rebalance.OrderTTL)
	if _, dup := rt.ledger.Order(orders[0].OrderID); dup {
		// The same inputs gave the same plan again (same ids): it is
		// journaled already and must not be sent twice.
		e.log.Info("rebalance: plan already journaled", fields...)
		return true
	}
	ev := events.Plan{SchemaVersion: events.SchemaVersion, Trigger: trigger, CreatedAt: created, Breaching: rt.breaching, Plan: p}
	if ev.Breaching == nil {
		ev.Breaching = []string{}
	}
	// The plan event is journaled with its orders, so that it is published
	// even if the process dies before it is.
	evData, err := json.Marshal(ev)
	if err != nil {
		rt.lastError = err.Error()
		e.log.Error("rebalance not published: plan event not encodable", append(fields, zap.Error(err))...)
		return false
	}
	if err := e.opts.Store.Append(name, state.Entry{PlanID: p.ID, At: now, Orders: orders, Plan: evData}); err != nil {
		// Without a journal entry a crash could lose track of the orders:
		// do not publish them.
		rt.lastError, rt.journalErr = err.Error(), err.Error()
		e.log.Error("rebalance not published: journal write failed", append(fields, zap.Error(err))...)
		return false
	}
	rt.journalErr = ""
	if !rt.unsaved {
		rt.lastError = "" // recovered
	}
	rt.ledger.AddOrders(orders, now)
	for _, o := range p.Orders {
		if len(o.Lots) == 0 {
			continue
		}
		// The lots the plan chose: fills sell them (indices as Holdings
		// returned them in this evaluation, under the same lock).
		if err := rt.ledger.SetLots(o.ID, o.Lots); err != nil {
			e.log.Warn("lot selection not recorded; fills sell lots in the tax order",
				zap.String("policy", name), zap.String("order_id", o.ID), zap.Error(err))
		}
	}
	rt.ledger.AddPlan(p.ID, evData)
	rt.ledger.LastRebalance, rt.ledger.LastPlanID = now, p.ID
	e.log.Info("rebalance", fields...)
	if m := e.opts.Metrics; m != nil {
		m.PendingOrders.WithLabelValues(name).Set(float64(len(rt.ledger.Pending())))
	}
	rt.blocked = append(rt.blocked, Block{metrics.BlockPendingOrders, fmt.Sprintf("%d orders of plan %s just planned", len(orders), p.ID)})
	e.enqueue(&batch{policy: name, plan: ev, orders: orders, start: now})
	return true
}

// requeue queues what a ledger loaded from the state directory had not
// published before a crash or shutdown: plan events whose orders were
// acknowledged, then the journaled orders not yet acknowledged, each with
// its plan event. Both go out under their original ids. Called with e.mu
// held.
func (e *Engine) requeue(l *ledger.Ledger) {
	byPlan := map[string][]events.Order{}
	var plans []string
	now := e.clk.Now()
	for _, o := range l.Orders {
		if o.Status == ledger.Outbox && now.Sub(o.CreatedAt) > e.opts.DedupeWindow-time.Minute {
			e.log.Error("journaled order older than the dedupe window not published again: it may or may not have "+
				"reached JetStream; planning stops until a positions snapshot arrives",
				zap.String("policy", l.Policy), zap.String("order_id", o.OrderID), zap.Time("created_at", o.CreatedAt))
			o.Status, o.Updated = ledger.Expired, now
			l.Unknown = append(l.Unknown, "order "+o.OrderID+" not known to be published")
			l.ForgetPlan(o.PlanID)
			continue
		}
		if o.Status == ledger.Outbox {
			if _, ok := byPlan[o.PlanID]; !ok {
				plans = append(plans, o.PlanID)
			}
			byPlan[o.PlanID] = append(byPlan[o.PlanID], o.Order)
		}
	}
	planEvents := map[string]events.Plan{}
	for _, pe := range slices.Clone(l.Plans) {
		var ev events.Plan
		if err := json.Unmarshal(pe.Event, &ev); err != nil || ev.Plan == nil || ev.ID != pe.ID {
			e.log.Error("journaled plan event unreadable; not published", zap.String("policy", l.Policy),
				zap.String("plan_id", pe.ID), zap.Error(err))
			l.ForgetPlan(pe.ID)
			continue
		}
		if _, ok := byPlan[pe.ID]; ok {
			planEvents[pe.ID] = ev
			continue
		}
		e.log.Warn("publishing a plan event journaled before the last stop", zap.String("policy", l.Policy),
			zap.String("plan_id", pe.ID))
		e.enqueue(&batch{policy: l.Policy, plan: ev, start: now, ordersAcked: true})
	}
	for _, id := range plans {
		// The ledger keeps its own lot selection under "lots": the order
		// events' lots come back from the plan event.
		if ev := planEvents[id]; ev.Plan != nil {
			for k := range byPlan[id] {
				for x := range ev.Plan.Orders {
					if ev.Plan.Orders[x].ID == byPlan[id][k].OrderID {
						byPlan[id][k].Lots = events.LotsOf(&ev.Plan.Orders[x])
					}
				}
			}
		}
		e.log.Warn("publishing orders journaled before the last stop", zap.String("policy", l.Policy),
			zap.String("plan_id", id), zap.Int("orders", len(byPlan[id])))
		e.enqueue(&batch{policy: l.Policy, plan: planEvents[id], orders: byPlan[id], start: now, attempts: 1})
	}
}

func (e *Engine) enqueue(b *batch) {
	e.outbox = append(e.outbox, b)
	if !e.holdWake { // else Quotes publishes it, or wakes the publisher
		e.wakeLocked()
	}
}

// wakeLocked wakes the publisher.
func (e *Engine) wakeLocked() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// save writes the ledger; while a save fails the policy is not planned
// (its state on disk is behind what it acted on). It may run before the
// policy is set (the first load of a policy saves its seeded ledger), so
// it names the policy by its ledger.
func (e *Engine) save(rt *runtime, durable bool) error {
	if err := e.opts.Store.Save(rt.ledger, durable); err != nil {
		rt.lastError = err.Error()
		rt.unsaved = true
		e.log.Error("state not saved", zap.String("policy", rt.ledger.Policy), zap.Error(err))
		return err
	}
	if rt.unsaved && rt.journalErr == "" {
		rt.lastError = "" // recovered
	}
	rt.unsaved = false
	return nil
}

// Halt is an engaged kill switch: who engaged it, when and why.
type Halt struct {
	Reason string    `json:"reason"`
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at"`
}

// SetHalt engages the kill switch (h not nil) or releases it (nil). While
// it is engaged no plan is made and nothing is published, queued batches
// included; a publish attempt in flight is cancelled (messages already
// handed to NATS may still be stored) and retried under the same ids after
// the release. The caller persists it.
func (e *Engine) SetHalt(h *Halt) {
	defer e.flushDrift() // after the unlock: publishing must not hold the engine
	e.mu.Lock()
	defer e.mu.Unlock()
	e.halt = h
	if h != nil {
		if e.pubCancel != nil {
			e.pubCancel() // an attempt in flight stops; it is retried, same ids, after the release
		}
		e.wakeLocked() // a publisher waiting to retry decides again: a stopping one stops at once
		e.log.Warn("kill switch engaged: publishing halted", zap.String("reason", h.Reason), zap.String("by", h.By))
	} else {
		e.log.Warn("kill switch released: publishing resumes")
		e.wakeLocked()
	}
	for _, name := range e.names {
		e.evaluate(e.policies[name], e.clk.Now())
	}
}

// Halted returns the engaged kill switch, or nil.
func (e *Engine) Halted() *Halt {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.halt
}

// SetNATSConnected records the connection state; while disconnected,
// policies are not planned (their orders could not be published).
func (e *Engine) SetNATSConnected(up bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	changed := e.natsUp != up
	e.natsUp = up
	if changed {
		// Show (or clear) the block at once, not at the next evaluation.
		for _, name := range e.names {
			rt := e.policies[name]
			blocks := make([]Block, 0, len(rt.blocked)+1)
			for _, b := range rt.blocked {
				if b.Reason != metrics.BlockNATSDown {
					blocks = append(blocks, b)
				}
			}
			if !up {
				blocks = append(blocks, Block{metrics.BlockNATSDown, "not connected to NATS"})
			}
			e.setBlocked(rt, blocks)
		}
	}
	if m := e.opts.Metrics; m != nil {
		v := 0.0
		if up {
			v = 1
		}
		m.NATSConnected.Set(v)
	}
}

// Close stops the calendars and waits for them. Run calls it when its
// context ends; call it yourself when Run never ran.
func (e *Engine) Close() {
	e.mu.Lock()
	e.cancel() // under the lock: startCalendar then sees it, never Adds during Wait
	for _, rt := range e.policies {
		e.saveCorrelation(rt) // the price history gathered since the last save
	}
	e.mu.Unlock()
	e.wg.Wait()
}

// Run publishes queued batches and evaluates due policies every Tick until
// ctx ends. It then stops the calendars, keeps publishing for up to
// ShutdownGrace, and returns.
func (e *Engine) Run(ctx context.Context) error {
	pubDone := make(chan struct{})
	pubCtx, cancelPub := context.WithCancel(context.Background())
	defer cancelPub()
	e.mu.Lock()
	e.pubCtx = pubCtx // until publishLoop stops
	e.mu.Unlock()
	go func() {
		defer close(pubDone)
		e.publishLoop(pubCtx, ctx)
	}()
	c, stop := e.clk.After(e.opts.Tick)
	for {
		select {
		case <-ctx.Done():
			stop()
			e.Close()
			grace := time.AfterFunc(e.opts.ShutdownGrace, cancelPub)
			<-pubDone
			grace.Stop()
			e.mu.Lock()
			left, plans := 0, 0
			for _, b := range e.outbox {
				if b.ordersAcked {
					plans++ // its orders are stored; only the plan event is pending
					continue
				}
				left += len(b.orders)
			}
			e.mu.Unlock()
			if left > 0 {
				e.log.Warn("stopping with unacknowledged orders; they are journaled and will be published at the next start", zap.Int("orders", left))
			}
			if plans > 0 {
				e.log.Warn("stopping with unpublished plan events; their orders are acknowledged, and the events are published at the next start", zap.Int("plans", plans))
			}
			return nil
		case <-c:
			e.tick()
			c, stop = e.clk.After(e.opts.Tick)
		}
	}
}

// publishLoop sends queued batches in order. It runs until ctx ends; once
// done is closed it stops when the queue is empty and no inline publish
// is in flight. It ends inline publishing when it stops.
func (e *Engine) publishLoop(ctx, done context.Context) {
	defer func() {
		e.mu.Lock()
		e.pubCtx = nil // no more inline publishing: queued batches stay journaled
		e.mu.Unlock()
	}()
	for {
		e.mu.Lock()
		job := e.claim(false)
		busy := e.pubBusy
		// Decided under the lock that Quotes claims under: once the
		// publisher stops, no inline publish starts. done is read once:
		// read again after the unlock, it could have ended meanwhile, and
		// the loop would wait for an inline publish that is not in flight.
		ending := done.Err() != nil
		stopping := job == nil && !busy && ending
		if stopping {
			e.pubCtx = nil
		}
		e.mu.Unlock()
		if job == nil {
			e.flushDrift() // batches dropped as stale may have emptied the outbox
			if stopping {
				return
			}
			if ending {
				// An inline publish is in flight: it wakes us when it ends.
				select {
				case <-ctx.Done():
					return
				case <-e.wake:
				}
				continue
			}
			select {
			case <-ctx.Done():
				return
			case <-done.Done(): // decide again, under the lock
			case <-e.wake:
			}
			continue
		}
		if err := e.publishClaimed(job); err != nil {
			if ctx.Err() != nil {
				return
			}
			e.log.Warn("publish failed; retrying with the same ids", zap.String("policy", job.b.policy), zap.Error(err))
			if m := e.opts.Metrics; m != nil {
				m.PublishErrors.WithLabelValues(job.b.policy).Inc()
			}
			c, stop := e.clk.After(e.opts.PublishRetry)
			// Run's context ending cuts the pause short, so that a halted
			// publisher (a step-down) stops at once instead of after the
			// pause; once it has ended, the pause is kept unless halted.
			ended := done.Done()
			if done.Err() != nil {
				if e.Halted() != nil {
					continue // decide at once, under the lock
				}
				ended = nil
			}
			select {
			case <-ctx.Done():
				stop()
				return
			case <-c:
			case <-e.wake: // released after a halt, say
				stop()
			case <-ended: // decide again, under the lock
				stop()
			}
		}
	}
}

// pubJob is the head of the outbox claimed by one goroutine for one
// publish attempt.
type pubJob struct {
	b       *batch
	attempt context.Context
	cancel  context.CancelFunc
}

// claim takes the head of the outbox for a publish attempt, or returns nil
// when there is nothing to publish, publishing is halted, another
// goroutine is publishing, or Run is not running. Batches at the head that
// must not be sent any more are dropped first (dropStale). An inline claim
// (by Quotes) takes only a batch never attempted, alone in the outbox,
// while NATS is connected, and its attempt is bounded by
// Options.InlinePublishTimeout. Called with e.mu held.
func (e *Engine) claim(inline bool) *pubJob {
	if e.pubBusy || e.halt != nil || e.pubCtx == nil || e.pubCtx.Err() != nil {
		return nil
	}
	if inline && (e.opts.InlinePublishTimeout <= 0 || !e.natsUp || len(e.outbox) != 1 || e.outbox[0].attempts > 0) {
		// Only a plan just made, alone in the outbox, on a connection
		// that is up: a tick never waits on an outage or a backlog.
		return nil
	}
	for len(e.outbox) > 0 && e.dropStale(e.outbox[0]) {
		e.outbox = e.outbox[1:]
	}
	if len(e.outbox) == 0 {
		return nil
	}
	job := &pubJob{b: e.outbox[0]}
	if inline {
		job.attempt, job.cancel = context.WithTimeout(e.pubCtx, e.opts.InlinePublishTimeout)
	} else {
		job.attempt, job.cancel = context.WithCancel(e.pubCtx)
	}
	e.pubBusy = true
	e.pubCancel = job.cancel // the kill switch cancels the attempt (SetHalt)
	return job
}

// publishClaimed makes one publish attempt of a claimed batch and
// releases the claim; on success the batch leaves the outbox.
func (e *Engine) publishClaimed(job *pubJob) error {
	defer job.cancel()
	b := job.b
	err := e.mayPublish()
	if err == nil {
		if !b.ordersAcked {
			e.mu.Lock()
			b.attempts++ // from now on the orders may be on the stream
			e.mu.Unlock()
		}
		err = e.publish(job.attempt, b)
	}
	e.mu.Lock()
	e.pubCancel = nil
	e.pubBusy = false
	if err == nil {
		// The claim kept the batch at the head: nothing else removes it.
		if i := slices.Index(e.outbox, b); i == 0 {
			e.outbox = e.outbox[1:]
		} else {
			e.log.Error("published batch was not at the head of the outbox", zap.String("policy", b.policy), zap.Int("index", i))
			if i > 0 {
				e.outbox = slices.Delete(e.outbox, i, i+1)
			}
		}
	}
	e.mu.Unlock()
	if err == nil {
		e.flushDrift() // held back while the outbox was not empty
	}
	return err
}

// publishInline publishes a batch claimed by Quotes from the calling
// goroutine. Whatever the outcome, the publisher is woken: it retries a
// failed attempt, sends the batches queued behind this one, and at
// shutdown waits for this attempt to end.
func (e *Engine) publishInline(job *pubJob) {
	err := e.publishClaimed(job)
	e.mu.Lock()
	e.wakeLocked()
	e.mu.Unlock()
	if err != nil {
		e.log.Warn("publish from the price tick failed; the publisher retries with the same ids",
			zap.String("policy", job.b.policy), zap.Error(err))
		if m := e.opts.Metrics; m != nil {
			m.PublishErrors.WithLabelValues(job.b.policy).Inc()
		}
	}
}

// sendable reports why a message must not be sent now under the publish
// attempt ctx, or nil. It reads the clock: an attempt whose deadline passed
// while the process was paused has expired even if its timer has not fired
// yet (then ctx.Err is still nil).
func (e *Engine) sendable(ctx context.Context) error {
	if err := clock.ContextErr(ctx); err != nil {
		return err
	}
	return e.mayPublish()
}

// mayPublish asks Options.MayPublish, if set.
func (e *Engine) mayPublish() error {
	if e.opts.MayPublish == nil {
		return nil
	}
	if err := e.opts.MayPublish(); err != nil {
		return fmt.Errorf("not publishing: %w", err)
	}
	return nil
}

// dropStale reports whether a queued batch must not be (re)sent, and if so
// settles its orders in the ledger. Orders past their expiry are not sent
// late: they are expired. Orders attempted before but older than the
// stream's dedupe window are not sent again either, since JetStream would
// take them as new: they become an unknown order state that stops the
// policy until a positions snapshot. Called with e.mu held.
func (e *Engine) dropStale(b *batch) bool {
	if b.ordersAcked {
		return false
	}
	now := e.clk.Now()
	first := b.orders[0]
	beyondWindow := b.attempts > 0 && now.Sub(first.CreatedAt) > e.opts.DedupeWindow-time.Minute
	expired := !now.Before(first.ExpiresAt)
	if !beyondWindow && !expired {
		return false
	}
	rt, ok := e.policies[b.policy]
	if !ok {
		return false // removed: it keeps its journal; the next load decides
	}
	for _, o := range b.orders {
		if lo, found := rt.ledger.Order(o.OrderID); found && lo.Status == ledger.Outbox {
			lo.Status, lo.Updated = ledger.Expired, now
		}
	}
	rt.ledger.ForgetPlan(first.PlanID) // its orders were not sent: neither is it
	if beyondWindow {
		rt.ledger.Unknown = append(rt.ledger.Unknown, "plan "+first.PlanID+" not known to be published")
		e.log.Error("orders not sent again: older than the dedupe window, they may have been stored already; planning stops until a positions snapshot arrives",
			zap.String("policy", b.policy), zap.String("plan_id", first.PlanID), zap.Time("created_at", first.CreatedAt))
	} else {
		e.log.Warn("orders not sent: expired before they could be published", zap.String("policy", b.policy),
			zap.String("plan_id", first.PlanID), zap.Time("expires_at", first.ExpiresAt))
	}
	_ = e.save(rt, true)
	e.evaluate(rt, now)
	return true
}

// publish sends one batch and records the acknowledgement: orders and plan
// event in one call when the Publisher stores them together (an atomic
// batch), else the orders, then the event. A retry after a failed plan
// event publish does not send the orders again.
func (e *Engine) publish(ctx context.Context, b *batch) error {
	if !b.ordersAcked {
		planID := b.orders[0].PlanID
		if err := e.sendable(ctx); err != nil {
			return err // halted, stopping or no longer the planner since the claim: send nothing
		}
		var withPlan *events.Plan
		if b.plan.Plan != nil {
			withPlan = &b.plan
		}
		planSent, err := e.opts.Publisher.PublishOrders(ctx, b.orders, withPlan)
		if err != nil {
			return fmt.Errorf("orders: %w", err)
		}
		if err := e.mayPublish(); err != nil {
			// Stored, but this instance may no longer record it (high
			// availability: its successor publishes them again under the
			// same ids, which JetStream drops as duplicates).
			return fmt.Errorf("orders acknowledged, not recorded: %w", err)
		}
		b.ordersAcked = true
		if e.opts.OnPublished != nil {
			e.opts.OnPublished(b.policy, planID, len(b.orders))
		}
		e.markPublished(b, planSent)
		if planSent {
			return nil
		}
	}
	if b.plan.Plan != nil {
		if err := e.sendable(ctx); err != nil {
			return fmt.Errorf("plan: %w", err)
		}
		if err := e.opts.Publisher.PublishPlan(ctx, b.plan); err != nil {
			return fmt.Errorf("plan: %w", err)
		}
		e.planPublished(b)
	}
	return nil
}

// planPublished drops a published plan event from the ledger.
func (e *Engine) planPublished(b *batch) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if rt, ok := e.policies[b.policy]; ok {
		rt.ledger.ForgetPlan(b.plan.ID)
		e.save(rt, false)
	}
}

// markPublished records that a batch's orders are acknowledged, and its
// plan event with them when planSent, and saves the ledger durably.
func (e *Engine) markPublished(b *batch, planSent bool) {
	ids := make([]string, len(b.orders))
	for i, o := range b.orders {
		ids[i] = o.OrderID
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if m := e.opts.Metrics; m != nil {
		m.Rebalances.WithLabelValues(b.policy, b.orders[0].Trigger).Inc()
		m.OrdersPublished.WithLabelValues(b.policy).Add(float64(len(b.orders)))
		m.TriggerLatency.Observe(e.clk.Now().Sub(b.start).Seconds())
	}
	rt, ok := e.policies[b.policy]
	if !ok {
		// Removed while publishing: update its saved ledger directly.
		l, found, err := e.opts.Store.Load(b.policy)
		if err != nil || !found {
			return
		}
		l.MarkPublished(ids, e.clk.Now())
		if planSent {
			l.ForgetPlan(b.plan.ID)
		}
		_ = e.opts.Store.Save(l, true)
		return
	}
	rt.ledger.MarkPublished(ids, e.clk.Now())
	if planSent {
		rt.ledger.ForgetPlan(b.plan.ID)
	}
	rt.ledger.Prune(e.clk.Now().Add(-e.opts.Retention))
	e.save(rt, true)
	e.log.Info("orders acknowledged by JetStream", zap.String("policy", b.policy), zap.String("plan_id", b.orders[0].PlanID),
		zap.Int("orders", len(ids)), zap.Bool("with_plan_event", planSent))
}

// cronLogger adapts zap to cron.Logger for the Recover and
// SkipIfStillRunning wrappers.
type cronLogger struct{ l *zap.Logger }

// Info logs cron's informational messages (a skipped firing).
func (c cronLogger) Info(msg string, kv ...any) { c.l.Sugar().Infow("cron: "+msg, kv...) }

// Error logs cron's errors (a recovered panic).
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Sugar().Errorw("cron: "+msg, append(kv, "error", err)...)
}
