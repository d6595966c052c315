// Outbox: a plan becomes a batch journaled in the household's ledger
// before anything is published; the publish loop sends batches in order,
// drops stale ones, and marks them published once the stream acknowledged
// them.

package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/metrics"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/risk"
	"github.com/rebalancerd/rebalancerd/internal/state"
)

// batch is one plan's events on their way to JetStream.
type batch struct {
	policy string
	// ledger is the ledger of the runtime that queued it: with
	// Options.Partitioned, a batch whose household was unloaded and loaded
	// again since (a new runtime, its state read afresh) is not sent.
	ledger *ledger.Ledger
	plan   events.Plan
	orders []events.Order
	start  time.Time
	// ordersAcked is set once JetStream has acknowledged every order.
	ordersAcked bool
	// attempts counts the publish attempts of the orders; a batch queued
	// again at start counts as attempted (it may have been sent).
	attempts int
}

// planID names the batch's plan: a batch holds orders, or a plan event
// alone (its orders were acknowledged before a restart), or both.
func (b *batch) planID() string {
	if len(b.orders) > 0 {
		return b.orders[0].PlanID
	}
	if b.plan.Plan != nil {
		return b.plan.ID
	}
	return ""
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
	e.recount(rt)
	e.enqueue(&batch{policy: name, ledger: rt.ledger, plan: ev, orders: orders, start: now})
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
		e.enqueue(&batch{policy: l.Policy, ledger: l, plan: ev, start: now, ordersAcked: true})
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
		e.enqueue(&batch{policy: l.Policy, ledger: l, plan: planEvents[id], orders: byPlan[id], start: now, attempts: 1})
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
		// Batches held back (their households may not publish now, or
		// publishing is halted): look again after a pause.
		heldBack := job == nil && len(e.outbox) > 0 && e.opts.MayPublishPolicy != nil
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
			var again <-chan time.Time
			stopAgain := func() {}
			if heldBack {
				again, stopAgain = e.clk.After(e.opts.PublishRetry)
			}
			select {
			case <-ctx.Done():
				stopAgain()
				return
			case <-done.Done(): // decide again, under the lock
			case <-e.wake:
			case <-again:
			}
			stopAgain()
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
	i := 0
	for i < len(e.outbox) {
		b := e.outbox[i]
		switch {
		case e.unloaded(b):
			e.outbox = slices.Delete(e.outbox, i, i+1)
		case !e.policyPublishable(b.policy):
			// Partitioned: its partition is not held with the lease's
			// margin now; the batches of other households go first.
			i++
		case e.dropStale(b):
			e.outbox = slices.Delete(e.outbox, i, i+1)
		default:
			goto found
		}
	}
	return nil
found:
	job := &pubJob{b: e.outbox[i]}
	if inline {
		job.attempt, job.cancel = context.WithTimeout(e.pubCtx, e.opts.InlinePublishTimeout)
	} else {
		job.attempt, job.cancel = context.WithCancel(e.pubCtx)
	}
	e.pubBusy = true
	e.pubCancel = job.cancel // the kill switch cancels the attempt (SetHalt)
	return job
}

// policyPublishable asks Options.MayPublishPolicy, if set.
func (e *Engine) policyPublishable(policy string) bool {
	return e.opts.MayPublishPolicy == nil || e.opts.MayPublishPolicy(policy) == nil
}

// unloaded reports whether b is the batch of a policy Load removed, to
// be dropped with Options.Partitioned (a publish attempt that was in
// flight when Load ran), or of a runtime Load replaced since (the
// household was unloaded and loaded afresh: its new runtime queued what
// its state holds now). Called with e.mu held.
func (e *Engine) unloaded(b *batch) bool {
	if !e.opts.Partitioned {
		return false
	}
	rt := e.policies[b.policy]
	return rt == nil || rt.ledger != b.ledger
}

// current returns the runtime b belongs to: the policy's, unless b is a
// batch of a runtime unloaded since (see unloaded), whose outcome must not
// be recorded in its household's new ledger. Called with e.mu held.
func (e *Engine) current(b *batch) (*runtime, bool) {
	rt, ok := e.policies[b.policy]
	if ok && e.opts.Partitioned && rt.ledger != b.ledger {
		return nil, false
	}
	return rt, ok
}

// dropUnloaded takes the batches of policies not in running out of the
// outbox, but the one a publish attempt holds (claim drops it if the
// attempt fails), whose attempt is cancelled: what it has not sent yet is
// not sent. Called with e.mu held.
func (e *Engine) dropUnloaded(running map[string]*runtime) {
	kept := e.outbox[:0]
	for i, b := range e.outbox {
		if _, ok := running[b.policy]; ok {
			kept = append(kept, b)
			continue
		}
		if i == 0 && e.pubBusy {
			kept = append(kept, b)
			if e.pubCancel != nil {
				e.pubCancel()
			}
			continue
		}
		e.log.Info("queued orders left to the household's next holder", zap.String("policy", b.policy),
			zap.String("plan_id", b.planID()))
	}
	clear(e.outbox[len(kept):])
	e.outbox = kept
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
		if i := slices.Index(e.outbox, b); i == 0 || (i > 0 && e.opts.MayPublishPolicy != nil) {
			e.outbox = slices.Delete(e.outbox, i, i+1) // not at the head when others were held back
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
	if rt, ok := e.current(b); ok {
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
	rt, ok := e.current(b)
	if !ok && e.policies[b.policy] != nil {
		// Unloaded and loaded afresh while publishing: its new ledger is
		// the shared state as read then, which the holder of the meantime
		// decided; if its journal still has these orders, they are
		// published again under the same ids.
		e.log.Warn("orders acknowledged for a household loaded afresh since; not recorded", zap.String("policy", b.policy),
			zap.String("plan_id", b.orders[0].PlanID))
		return
	}
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
