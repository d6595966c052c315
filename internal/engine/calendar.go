package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/trigger"
)

// runCalendar calls fire at every firing of sched until ctx ends.
//
// robfig/cron's Cron runner reads the system clock and cannot be given
// another, so the loop that waits for the next firing is written here
// against clock.Clock (which tests control); the cron library still
// parses the schedule and computes every firing (Schedule.Next), and the
// job runs wrapped in chain (cron's Recover and SkipIfStillRunning: a
// panic is logged, and a firing that comes while the previous one still
// runs is skipped).
//
// DST: Next works in the schedule's zone (CRON_TZ=...). On the
// spring-forward day a time in the skipped hour (02:30 in New York) does
// not occur and that day's firing is skipped; on the fall-back day a time
// in the repeated hour (01:30) occurs twice and Next returns both. fire
// receives the firing time and the engine keeps the local wall-clock time
// of the last firing it acted on, so the repeat is ignored.
func runCalendar(ctx context.Context, clk clock.Clock, sched cron.Schedule, chain cron.Chain, fire func(at time.Time)) {
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		at time.Time // the firing the job acts on
	)
	defer wg.Wait()
	job := chain.Then(cron.FuncJob(func() {
		mu.Lock()
		t := at
		mu.Unlock()
		fire(t)
	}))
	for {
		now := clk.Now()
		next := sched.Next(now)
		if next.IsZero() {
			return // never fires again (rejected at parse time; kept as a guard)
		}
		c, stop := clk.After(next.Sub(now))
		select {
		case <-ctx.Done():
			stop()
			return
		case <-c:
		}
		mu.Lock()
		at = next
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			job.Run()
		}()
	}
}

// fireKey is the local wall-clock time of a firing in the schedule's zone,
// to the minute: two firings with the same key are the DST repeat of one.
func fireKey(sched cron.Schedule, at time.Time) string {
	if s, ok := sched.(*cron.SpecSchedule); ok && s.Location != nil {
		at = at.In(s.Location)
	}
	return at.Format("2006-01-02 15:04")
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

// cronLogger adapts zap to cron.Logger for the Recover and
// SkipIfStillRunning wrappers.
type cronLogger struct{ l *zap.Logger }

// Info logs cron's informational messages (a skipped firing).
func (c cronLogger) Info(msg string, kv ...any) { c.l.Sugar().Infow("cron: "+msg, kv...) }

// Error logs cron's errors (a recovered panic).
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Sugar().Errorw("cron: "+msg, append(kv, "error", err)...)
}
