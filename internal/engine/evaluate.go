// Evaluation: from a household's policy, ledger and prices to its blocks,
// drift and, when a trigger fires, its plan. The arithmetic is in the pure
// packages (drift, plan, trigger); this file gathers their inputs.

package engine

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/feeds"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/metrics"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/shortlist"
	"github.com/rebalancerd/rebalancerd/internal/targets"
	"github.com/rebalancerd/rebalancerd/internal/tax"
	"github.com/rebalancerd/rebalancerd/internal/trigger"
)

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
	if e.pricesUsable(rt, now) && !blocksPrices(rt.blocked) && len(rt.ledger.Pending()) == 0 == !hasReason(rt.blocked, metrics.BlockPendingOrders) {
		rt.quietUntil = rt.nextChange()
		return // nothing changed that matters
	}
	e.evaluate(rt, now)
}

// nextChange is the first time at which refreshBlocks may find something
// that the clock alone changes: an accepted price going stale, a
// published order expiring, a held valuation becoming confirmable. Called
// with e.mu held, when the household's prices have no problem.
func (rt *runtime) nextChange() time.Time {
	var next time.Time
	earliest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	gidx := rt.numbers() // before current: it may number a symbol
	ep := rt.guard.current()
	for _, k := range gidx {
		if ep.has[k] {
			earliest(ep.quotes[k].At.Add(rt.pol.Prices.MaxAge + time.Nanosecond)) // stale after MaxAge (feeds.Guard.Check)
		}
	}
	for _, o := range rt.ledger.Orders {
		if o.Status.Pending() && !o.ExpiresAt.IsZero() { // an order in the outbox is published later
			earliest(o.ExpiresAt)
		}
	}
	if h, held := rt.value.c.Held(); held {
		earliest(h.ConfirmableAt)
	}
	return next
}

func hasReason(blocks []Block, reason string) bool {
	for _, b := range blocks {
		if b.Reason == reason {
			return true
		}
	}
	return false
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
	rt.quietUntil = time.Time{}
	defer e.schedule(rt) // the next tick looks at it (or at its quiet time's end)
	m := e.opts.Metrics
	if m != nil {
		if rt.metered {
			m.Evaluations.WithLabelValues(name).Inc()
		}
		start := time.Now() // a duration for the histogram, not a clock reading the logic uses
		defer func() { m.EvaluationSeconds.Observe(time.Since(start).Seconds()) }()
	}
	if e.bounded(rt, now) {
		// Prices moved within the bound of the household's breach
		// screen: settled without arithmetic, and nothing blocks it.
		e.setBlocked(rt, nil)
		e.settledDrift(rt, now)
		// What the next tick's refreshBlocks would find (no block, no
		// order that may expire, no held valuation): quiet until a price
		// goes stale. The tick then skips it. The guard's oldest quote
		// needed goes stale first or with the household's (the tick
		// looks then, and refreshBlocks finds the household's own time).
		rt.quietUntil = rt.guard.current().oldest.Add(rt.pol.Prices.MaxAge + time.Nanosecond)
		return
	}
	defer e.recount(rt) // the aggregates follow breaches and blocks
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
	if rt.invalid != "" {
		blocks = append(blocks, Block{metrics.BlockInvalidPolicy, rt.invalid})
	}
	if !e.pricesUsable(rt, now) {
		for _, p := range rt.guard.Check(rt.symbols, now) {
			blocks = append(blocks, Block{priceBlock(p.Reason), p.Symbol + ": " + p.Detail})
		}
	}
	eff, err := e.effective(rt, now)
	if err != nil {
		blocks = append(blocks, Block{metrics.BlockInvalidPolicy, "effective targets: " + err.Error()})
	}
	var snap *drift.Snapshot
	// The breach screen settles most evaluations of households that do
	// not breach (screen.go); the others are valued in full.
	if !hasPriceBlock(blocks) && eff != nil && e.screened(rt, eff, now) {
		defer e.settledDrift(rt, now) // as the full evaluation's below: after the blocks
	} else if !hasPriceBlock(blocks) && eff != nil {
		rt.settleValuation() // checkValuation reads it
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
		rt.snapshot, rt.snapStale = snap, false
		rt.breaching = snap.Breaching()
		// Queued, and published once the engine is unlocked: the drift
		// event is informational and must not delay the orders.
		defer e.publishDrift(rt, snap, now)
		e.checkValuation(rt, snap.Total, now)
		e.buildScreen(rt, eff, snap)
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

// settledDrift queues the drift event of an evaluation the breach screen
// settled, when one is due: from the snapshot of the settled prices,
// which is the full evaluation's (not kept: see snapshotOf). Called with
// e.mu held.
func (e *Engine) settledDrift(rt *runtime, now time.Time) {
	if !e.driftDue(rt, now) {
		return
	}
	if snap := rt.snapshotOf(); snap != nil {
		e.publishDrift(rt, snap, now)
	}
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
	if eff, ok := rt.effectiveToday(now); ok {
		return eff, nil // the same day: no date formatted at each evaluation
	}
	step := rt.phaseStepAt(now)
	date := rt.pol.Day(now) // the investor's day
	day := date.Format(time.DateOnly)
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
	loc, _ := rt.pol.Zone()
	rt.effDayStart = time.Date(date.Year(), date.Month(), date.Day(), 0, 0, 0, 0, loc)
	rt.effDayEnd = rt.effDayStart.AddDate(0, 0, 1)
	if now.Before(rt.effDayStart) || !now.Before(rt.effDayEnd) {
		rt.effDayStart, rt.effDayEnd = time.Time{}, time.Time{} // a day the zone does not start at midnight: no fast path
	}
	e.noteApplied(rt, eff)
	return eff, nil
}

// effectiveToday returns the effective policy computed last when it is
// still the one in effect at now (the same policy, day and phase-in
// step); ok is false when effective must compute it.
func (rt *runtime) effectiveToday(now time.Time) (*policy.Policy, bool) {
	if rt.effFrom == rt.pol && rt.effStep == rt.phaseStepAt(now) && !now.Before(rt.effDayStart) && now.Before(rt.effDayEnd) {
		return rt.eff, true
	}
	return nil, false
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
	e.recount(rt)
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
