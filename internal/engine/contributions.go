package engine

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/events"
)

// CashFlowContribution is the kind of the pending cash flow a scheduled
// contribution queues: invest the free cash without selling, crediting
// nothing (the broker reports the money when it arrives).
const CashFlowContribution = "contribution"

// startContributions (re)starts the calendars of a policy's scheduled
// contributions when their schedules changed. Called with e.mu held.
func (e *Engine) startContributions(rt *runtime) {
	var specs []string
	for _, k := range rt.pol.Contributions {
		specs = append(specs, rt.pol.Accounts[k.Account].Name+" "+k.Amount.String()+" "+k.Schedule)
	}
	joined := strings.Join(specs, "\n")
	if joined == rt.contribSpecs && rt.contribStop != nil {
		return
	}
	if rt.contribStop != nil {
		rt.contribStop()
		rt.contribStop = nil
	}
	rt.contribSpecs = joined
	if len(specs) == 0 || e.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(e.ctx)
	rt.contribStop = cancel
	name := rt.pol.Name
	for i, spec := range specs {
		sched := rt.pol.Contributions[i].Cron
		e.goCalendar(ctx, sched, func(at time.Time) { e.contribute(name, spec, sched, at) })
	}
}

// contribute queues a scheduled contribution as a pending cash flow. Its
// id is the account and the local wall-clock time of the firing, so that
// a DST repeat or a restart does not queue it twice.
func (e *Engine) contribute(name, spec string, sched cron.Schedule, at time.Time) {
	defer e.flushDrift() // after the unlock: publishing must not hold the engine
	e.mu.Lock()
	defer e.mu.Unlock()
	rt, ok := e.policies[name]
	if !ok {
		return
	}
	i := slices.Index(strings.Split(rt.contribSpecs, "\n"), spec)
	if i < 0 || i >= len(rt.pol.Contributions) {
		return // changed meanwhile
	}
	k := rt.pol.Contributions[i]
	account := rt.pol.Accounts[k.Account].Name
	c := &events.CashFlow{SchemaVersion: events.SchemaVersion, CashFlowID: "contribution-" + account + "-" + fireKey(sched, at),
		Kind: CashFlowContribution, Account: account, Amount: k.Amount, At: at}
	applied, err := rt.ledger.ApplyCashFlow(c, e.clk.Now())
	if err != nil || !applied {
		return
	}
	e.log.Info("scheduled contribution: investing the free cash without selling", zap.String("policy", name),
		zap.String("account", account), zap.String("amount", k.Amount.String()), zap.Time("at", at))
	now := e.clk.Now()
	e.evaluate(rt, now)
	_ = e.save(rt, true)
}
