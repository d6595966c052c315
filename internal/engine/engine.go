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
	"fmt"
	"maps"
	goruntime "runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/shopspring/decimal"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/metrics"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/risk"
	"github.com/rebalancerd/rebalancerd/internal/state"
	"github.com/rebalancerd/rebalancerd/internal/targets"
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
	// DriftEvery is how often a household's drift event is published at
	// most (default 1m; negative: at every evaluation that values it). The
	// latest evaluation's is sent; a change of the breaching sleeves is
	// sent at once. Households start at different points of the period
	// (by a hash of their name), so that their events spread over it.
	DriftEvery time.Duration
	// MaxSkew is how far a report may be dated after the clock, and a
	// fill before its order's creation (default ledger.DefaultMaxSkew).
	MaxSkew time.Duration
	// FillCollar is how far a fill's price may be from its order's
	// reference price, as a fraction of it (default ledger.DefaultCollar).
	FillCollar decimal.Decimal
	// MayPublishPolicy, when set, is asked before a policy's batch is
	// taken from the outbox: while it returns an error the batch stays
	// queued and those of other policies go first (a partitioned group:
	// the policy's partition is not held with the lease's margin left).
	MayPublishPolicy func(policy string) error
	// Partitioned is set for an instance of a partitioned group, whose
	// households come and go with the partitions it holds. Load then
	// takes the queued batches of a policy it removes out of the outbox
	// (its partition went to another instance, which finds them in the
	// shared journal and publishes them under the same ids), and a policy
	// whose saved state cannot be read (its partition was lost meanwhile)
	// is left out of the load instead of failing it: Load loads the
	// others and returns a *PartialLoadError naming it.
	Partitioned bool
}

// Loaded is one policy ready to run: the parsed policy and the holdings file
// that seeds its ledger.
type Loaded struct {
	Policy       *policy.Policy
	Holdings     *portfolio.Holdings
	HoldingsHash string
	// Blocked, when set, says why the files on disk cannot replace Policy
	// (the last version accepted): the policy keeps its state and is not
	// planned (invalid_policy) until they can.
	Blocked string
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
	names    []string   // sorted
	rts      []*runtime // the policies in names' order
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
	// guards are the price guards by price rules, guardList the same in
	// the order they were made (see priceGuard).
	guards    map[guardKey]*priceGuard
	guardList []*priceGuard
	// bySymbol indexes e.names by the instruments each policy needs
	// (nil: to be rebuilt); see affected.
	bySymbol map[string][]int
	// soon are the households the next tick looks at, attn those it looks
	// at from a time on, tickBuf the tick's working memory (see
	// attention.go); corrRTs the households with a correlation watch.
	soon    []*runtime
	attn    attnHeap
	tickBuf []*runtime
	corrRTs []*runtime
	// mark, affectedIdx and affectedBuf are affected's working memory.
	mark        []bool
	affectedIdx []int
	affectedBuf []*runtime
	// driftAt indexes driftOut by policy: one pending event per policy,
	// found without a search (a search made each tick quadratic).
	driftAt map[string]int
	// counts are the aggregates of breaching and blocked households.
	counts counts
	// scratch is the breach screen's working memory.
	scratch screenScratch
	// boundSettled counts the evaluations the bound of the breach
	// screen settled (see bounded), for tests and benchmarks.
	boundSettled int
	// walkAll has the tick look at every household, as it did before it
	// kept its attention (for tests comparing the two).
	walkAll bool
	// noScreen turns the breach screen off: every evaluation in full (for
	// tests comparing the two).
	noScreen bool
}

// runtime is one loaded policy.
type runtime struct {
	pol     *policy.Policy
	ledger  *ledger.Ledger
	guard   *priceGuard // shared by the households with the same price rules
	symbols []string    // instruments whose prices the policy needs
	// gidx are the guard's numbers of symbols (see numbers), valid while
	// gidxOK is set.
	gidx   []int32
	gidxOK bool
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
	// invalid is Loaded.Blocked: why the files on disk are not running.
	invalid string
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
	// effDayStart and effDayEnd bound effDate's day in the policy's zone.
	effDayStart, effDayEnd time.Time
	effStep                int // the phase-in step eff has (0 without a phase)
	explain                *targets.Explanation
	// corr is the correlation watch, when the policy has one.
	corr *corrWatch
	// contribStop stops the calendars of the policy's contributions,
	// started for contribSpecs.
	contribStop  context.CancelFunc
	contribSpecs string
	// metered is set for the households that get metrics of their own
	// (Options.HouseholdMetrics).
	metered bool
	// scr is the breach screen's state (nil: none; see screen.go);
	// snapStale is set when the last evaluation was screened: snapshot is
	// then nil, and snapshotOf computes it.
	scr       *screen
	snapStale bool
	// counted is what the household adds to the engine's counts.
	counted counted
	// idx is the household's place in e.rts; gone is set once Load
	// removed it. soon, attnAt and inTick are its place in the tick's
	// attention (see schedule).
	idx    int
	gone   bool
	soon   bool
	inTick bool
	attnAt time.Time
	// quietUntil is when the tick must look at the household again
	// though no input arrived (a price going stale, an order expiring, a
	// held valuation becoming confirmable); zero: at the next tick.
	quietUntil time.Time
	// driftNext is when the household's next drift event is due;
	// driftBreaching the breaching sleeves of the last one queued.
	driftNext      time.Time
	driftBreaching []string
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
	if opts.DriftEvery == 0 {
		opts.DriftEvery = time.Minute
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
	var names []string
	for _, l := range set {
		if !running[l.Policy.Name] {
			names = append(names, l.Policy.Name)
		}
	}
	saved, failed := e.loadSaved(names)
	var partial *PartialLoadError
	for _, name := range names {
		if err := failed[name]; err != nil && !e.opts.Partitioned {
			return err
		}
	}
	if len(failed) > 0 {
		partial = &PartialLoadError{Failed: failed}
		set = slices.DeleteFunc(slices.Clone(set), func(l Loaded) bool { return partial.Failed[l.Policy.Name] != nil })
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
		} else if rt.dropScreen(); rt.pol.Version != l.Policy.Version {
			e.log.Info("policy changed", zap.String("policy", name), zap.String("file", l.Policy.File),
				zap.String("old_version", rt.pol.Version), zap.String("version", l.Policy.Version))
		}
		e.useGuard(rt, l.Policy.Prices, now)
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
		rt.pol, rt.invalid = l.Policy, l.Blocked
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
	forget := map[string]bool{} // metrics of households removed or pushed past the cap: one pass for all
	for name, rt := range e.policies {
		if _, ok := next[name]; !ok {
			if rt.stop != nil {
				rt.stop()
			}
			if rt.contribStop != nil {
				rt.contribStop()
			}
			e.uncount(rt)
			e.dropGuard(rt)
			rt.gone = true
			forget[name] = true
			e.log.Info("policy removed", zap.String("policy", name))
		}
	}
	if e.opts.Partitioned {
		e.dropUnloaded(next)
	}
	e.policies = next
	e.names = e.names[:0]
	for name := range next {
		e.names = append(e.names, name)
	}
	sort.Strings(e.names)
	e.bySymbol = nil // the set of policies changed: rebuilt at the next offer
	e.rts = e.rts[:0]
	e.corrRTs = e.corrRTs[:0]
	for i, name := range e.names {
		rt := e.policies[name]
		e.rts = append(e.rts, rt)
		rt.idx = i
		if rt.corr != nil {
			e.corrRTs = append(e.corrRTs, rt)
		}
		e.schedule(rt) // new, or changed: its firing or state may be due
		metered := e.opts.HouseholdMetrics < 0 || i < e.opts.HouseholdMetrics
		if rt.metered && !metered {
			forget[name] = true // pushed past the cap
		}
		rt.metered = metered
	}
	if e.opts.Metrics != nil {
		e.opts.Metrics.ForgetPolicies(forget)
	}
	if e.opts.Metrics != nil {
		e.opts.Metrics.PoliciesLoaded.Set(float64(len(next)))
		e.opts.Metrics.Households.Set(float64(len(next)))
	}
	if partial != nil {
		return partial
	}
	return nil
}

// loadSaved reads the saved ledgers of the policies named, on as many
// goroutines as there are CPUs (decoding them is most of a restart with
// many households), and returns those found and the errors of those that
// could not be read.
func (e *Engine) loadSaved(names []string) (saved map[string]*ledger.Ledger, failed map[string]error) {
	ledgers := make([]*ledger.Ledger, len(names))
	errs := make([]error, len(names))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(goruntime.GOMAXPROCS(0), len(names)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(names); i = int(next.Add(1) - 1) {
				l, ok, err := e.opts.Store.Load(names[i])
				switch {
				case err != nil:
					errs[i] = err
				case ok:
					ledgers[i] = l
				}
			}
		})
	}
	wg.Wait()
	saved = make(map[string]*ledger.Ledger, len(names))
	for i, l := range ledgers {
		if errs[i] != nil {
			if failed == nil {
				failed = map[string]error{}
			}
			failed[names[i]] = errs[i]
		} else if l != nil {
			saved[names[i]] = l
		}
	}
	return saved, failed
}

// PartialLoadError is Load's error, with Options.Partitioned, when the
// saved state of some policies could not be read: the others were loaded.
type PartialLoadError struct {
	// Failed maps each policy left out to its error.
	Failed map[string]error
}

// Error names a few of the policies left out and the first error.
func (e *PartialLoadError) Error() string {
	names := slices.Sorted(maps.Keys(e.Failed))
	return fmt.Sprintf("%d policies not loaded (%s): %v", len(names), listed(names), e.Failed[names[0]])
}

// Alive reports whether Run's loop has ticked within the last few ticks:
// the systemd watchdog's health check.
func (e *Engine) Alive() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lastTick.IsZero() || e.clk.Now().Sub(e.lastTick) < 10*e.opts.Tick+5*time.Second
}

// save writes the ledger; while a save fails the policy is not planned
// (its state on disk is behind what it acted on). It may run before the
// policy is set (the first load of a policy saves its seeded ledger), so
// it names the policy by its ledger.
func (e *Engine) save(rt *runtime, durable bool) error {
	rt.settleValuation() // the screen's last accepted valuation
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

// saveAll saves ledgers durably. With a store that group-commits
// (state.Store, which has Sync) each is queued first, without waiting, so
// that they share commits; the durable save that follows then only waits
// for the commit holding it (a ledger equal to the one queued is not
// written again) and reports its error. Called with e.mu held.
func (e *Engine) saveAll(rts []*runtime) {
	if _, ok := e.opts.Store.(interface{ Sync() error }); ok {
		for _, rt := range rts {
			_ = e.opts.Store.Save(rt.ledger, false) // its error is the durable save's below
		}
	}
	for _, rt := range rts {
		e.save(rt, true)
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
