package engine

import (
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/metrics"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/targets"
)

// PolicyStatus is what the status endpoint shows of one policy.
type PolicyStatus struct {
	Policy  string `json:"policy"`
	Version string `json:"policy_version"`
	// EffectiveVersion is the version of the targets in effect (glide
	// path and tilts applied), which order ids derive from; Targets says
	// how they came about. Both are empty before the first evaluation.
	EffectiveVersion string               `json:"effective_policy_version,omitempty"`
	Targets          *targets.Explanation `json:"targets,omitempty"`
	// EffectiveTargets are the targets in effect, as fractions of the
	// whole portfolio, in sleeve order.
	EffectiveTargets []SleeveTarget `json:"effective_targets,omitempty"`
	// Phase is where the phase-in in progress stands; nil without one.
	Phase *targets.PhaseStep `json:"phase_in,omitempty"`
	// Waiting is the new money a phase-in holds back for later steps
	// (deposits above phase_in.deposits_above, a first investment).
	Waiting       []plan.Waiting `json:"waiting_cash,omitempty"`
	File          string         `json:"file"`
	Trigger       string         `json:"trigger"`
	Schedule      string         `json:"schedule,omitempty"`
	Destination   string         `json:"destination"`
	LastEvaluated time.Time      `json:"last_evaluated,omitzero"`
	PricesAsOf    time.Time      `json:"prices_as_of,omitzero"`
	HoldingsAsOf  time.Time      `json:"holdings_as_of,omitzero"`
	TotalValue    string         `json:"total_value,omitempty"`
	Breaching     []string       `json:"breaching"`
	// Blocked lists why the policy cannot be planned now; empty when it can.
	Blocked       []Block         `json:"blocked"`
	PendingOrders []*ledger.Order `json:"pending_orders"`
	LastRebalance time.Time       `json:"last_rebalance,omitzero"`
	LastPlanID    string          `json:"last_plan_id,omitempty"`
	CalendarDue   bool            `json:"calendar_due"`
	LastError     string          `json:"last_error,omitempty"`
	Unacked       int             `json:"unacknowledged_orders"`
	// Holdings are the ledger's accounts: the base snapshot plus fills.
	Holdings map[string]ledger.Account `json:"holdings"`
}

// SleeveTarget is a sleeve's target in effect.
type SleeveTarget struct {
	Sleeve string `json:"sleeve"`
	Target string `json:"target"`
}

// Status is the engine's state for the status endpoint.
type Status struct {
	NATSConnected bool           `json:"nats_connected"`
	Halt          *Halt          `json:"halt"`
	Outbox        int            `json:"outbox_batches"`
	Policies      []PolicyStatus `json:"policies"`
}

// Status returns a copy of the engine's state.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := Status{NATSConnected: e.natsUp, Halt: e.halt, Outbox: len(e.outbox), Policies: make([]PolicyStatus, 0, len(e.names))}
	for _, name := range e.names {
		rt := e.policies[name]
		ps := PolicyStatus{
			Policy: name, Version: rt.pol.Version, File: rt.pol.File, Trigger: string(rt.pol.Rebalance.Trigger),
			Schedule: rt.pol.Rebalance.Schedule, Destination: string(rt.pol.Rebalance.Destination),
			LastEvaluated: rt.lastEval, Breaching: append([]string{}, rt.breaching...),
			Blocked: append([]Block{}, rt.blocked...), LastRebalance: rt.ledger.LastRebalance,
			LastPlanID: rt.ledger.LastPlanID, CalendarDue: rt.due != nil, LastError: rt.lastError,
			HoldingsAsOf: rt.ledger.AsOf,
		}
		if rt.eff != nil {
			ps.EffectiveVersion, ps.Targets = rt.eff.Version, rt.explain
			for _, sl := range rt.eff.Sleeves {
				ps.EffectiveTargets = append(ps.EffectiveTargets, SleeveTarget{Sleeve: sl.Path, Target: sl.Target.String()})
			}
		}
		if rt.phase != nil && rt.phaseStep != nil {
			st := *rt.phaseStep
			ps.Phase = &st
		}
		ps.Waiting = append([]plan.Waiting(nil), rt.waiting...)
		if rt.snapshot != nil {
			ps.PricesAsOf = rt.snapshot.AsOf
			ps.TotalValue = rt.snapshot.Total.StringFixed(2)
		}
		ps.Holdings = make(map[string]ledger.Account, len(rt.ledger.Accounts))
		for name, a := range rt.ledger.Accounts {
			c := ledger.Account{Cash: a.Cash, Positions: make(map[string]decimal.Decimal, len(a.Positions))}
			for sym, q := range a.Positions {
				c.Positions[sym] = q
			}
			ps.Holdings[name] = c
		}
		for _, o := range rt.ledger.Pending() {
			c := *o
			ps.PendingOrders = append(ps.PendingOrders, &c)
			if o.Status == ledger.Outbox {
				ps.Unacked++
			}
		}
		if ps.PendingOrders == nil {
			ps.PendingOrders = []*ledger.Order{}
		}
		st.Policies = append(st.Policies, ps)
	}
	return st
}

// Ready returns why the engine is not ready to trade, or nothing: at least
// one policy loaded, NATS connected, and every policy's prices fresh.
func (e *Engine) Ready() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	if len(e.names) == 0 {
		out = append(out, "no policy loaded")
	}
	if !e.natsUp {
		out = append(out, "not connected to NATS")
	}
	if e.halt != nil {
		out = append(out, "kill switch engaged: "+e.halt.Reason)
	}
	for _, name := range e.names {
		rt := e.policies[name]
		if rt.lastEval.IsZero() {
			out = append(out, name+": not evaluated yet")
			continue
		}
		for _, b := range rt.blocked {
			if b.Reason != metrics.BlockPendingOrders && b.Reason != metrics.BlockHalted {
				out = append(out, name+": "+b.Reason+": "+b.Detail)
			}
		}
	}
	return out
}
