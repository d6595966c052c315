package engine

import (
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/metrics"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/policy"
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
	// AcceptedValuation is the last accepted valuation, which risk
	// limits are judged against and limits.max_value_change measures
	// moves from; nil before the first.
	AcceptedValuation *ledger.Valuation `json:"accepted_valuation,omitempty"`
	Breaching         []string          `json:"breaching"`
	// Blocked lists why the policy cannot be planned now; empty when it can.
	Blocked       []Block         `json:"blocked"`
	PendingOrders []*ledger.Order `json:"pending_orders"`
	LastRebalance time.Time       `json:"last_rebalance,omitzero"`
	LastPlanID    string          `json:"last_plan_id,omitempty"`
	CalendarDue   bool            `json:"calendar_due"`
	LastError     string          `json:"last_error,omitempty"`
	Unacked       int             `json:"unacknowledged_orders"`
	// AdoptedOrders and RecoveredFills count what the reconciliation at
	// start took from the streams: orders the ledger did not know, and
	// fills of its unsettled orders it had not applied.
	AdoptedOrders  int `json:"adopted_orders"`
	RecoveredFills int `json:"recovered_fills"`
	// Holdings are the ledger's accounts: the base snapshot plus fills.
	Holdings map[string]ledger.Account `json:"holdings"`
	// Sleeves is the drift of every sleeve at the last evaluation that
	// could value the household, in policy order (a parent before its
	// sub-sleeves); empty until then.
	Sleeves []SleeveStatus `json:"sleeves"`
	// Prices are the quotes the policy plans on, one per instrument, with
	// their age at the status' time.
	Prices []PriceStatus `json:"prices"`
	// NextFiring is the next firing of the calendar (calendar and hybrid
	// triggers); NextTrigger is what it would start ("calendar"; "hybrid"
	// rebalances only if a sleeve breaches then).
	NextFiring  time.Time `json:"next_firing,omitzero"`
	NextTrigger string    `json:"next_trigger,omitempty"`
	// LastPlanOrders are the orders of the last plan still in the ledger
	// (finished ones included), in plan order.
	LastPlanOrders []*ledger.Order `json:"last_plan_orders"`
}

// SleeveStatus is one sleeve's drift: fractions of the investable total
// as decimal strings (weights and deviations rounded to 6 places, half
// away from zero; breaches are decided on exact values).
type SleeveStatus struct {
	Sleeve string `json:"sleeve"`
	// Parent is the path of the sleeve's parent; empty at top level.
	Parent    string `json:"parent,omitempty"`
	Target    string `json:"target"`
	Weight    string `json:"weight"`
	Deviation string `json:"deviation"`
	BandLow   string `json:"band_low"`
	BandHigh  string `json:"band_high"`
	Breach    bool   `json:"breach"`
	// Value is the sleeve's value in the policy currency, to 2 places.
	Value string `json:"value"`
}

// PriceStatus is the quote of one instrument a policy plans on.
type PriceStatus struct {
	Symbol string `json:"symbol"`
	// Price, At and Source are the last accepted quote; empty without one.
	Price  string    `json:"price,omitempty"`
	At     time.Time `json:"at,omitzero"`
	Source string    `json:"source,omitempty"`
	// Age is the status' time minus At, in whole seconds (a Go duration).
	Age string `json:"age,omitempty"`
	// Quarantined is a newer quote held back as a jump, if any.
	Quarantined string `json:"quarantined,omitempty"`
}

// SleeveTarget is a sleeve's target in effect.
type SleeveTarget struct {
	Sleeve string `json:"sleeve"`
	Target string `json:"target"`
}

// Status is the engine's state for the status endpoint.
type Status struct {
	// At is the engine's clock when the status was taken; ages are
	// relative to it.
	At            time.Time      `json:"at"`
	NATSConnected bool           `json:"nats_connected"`
	Halt          *Halt          `json:"halt"`
	Outbox        int            `json:"outbox_batches"`
	Policies      []PolicyStatus `json:"policies"`
}

// Status returns a copy of the engine's state.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clk.Now()
	st := Status{At: now.UTC(), NATSConnected: e.natsUp, Halt: e.halt, Outbox: len(e.outbox), Policies: make([]PolicyStatus, 0, len(e.names))}
	for _, name := range e.names {
		rt := e.policies[name]
		rt.settleValuation()
		ps := PolicyStatus{
			Policy: name, Version: rt.pol.Version, File: rt.pol.File, Trigger: string(rt.pol.Rebalance.Trigger),
			Schedule: rt.pol.Rebalance.Schedule, Destination: string(rt.pol.Rebalance.Destination),
			LastEvaluated: rt.lastEval, Breaching: append([]string{}, rt.breaching...),
			Blocked: append([]Block{}, rt.blocked...), LastRebalance: rt.ledger.LastRebalance,
			LastPlanID: rt.ledger.LastPlanID, CalendarDue: rt.due != nil, LastError: rt.lastError,
			HoldingsAsOf: rt.ledger.AsOf, AdoptedOrders: rt.adopted, RecoveredFills: rt.recovered,
		}
		if v := rt.ledger.Valuation; v != nil {
			c := *v
			ps.AcceptedValuation = &c
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
		if snap := rt.snapshotOf(); snap != nil {
			ps.PricesAsOf = snap.AsOf
			ps.TotalValue = snap.Total.StringFixed(2)
			ps.Sleeves = sleeveStatus(snap)
		}
		if ps.Sleeves == nil {
			ps.Sleeves = []SleeveStatus{}
		}
		ps.Prices = priceStatus(rt, now)
		if sched := rt.pol.Rebalance.Cron; sched != nil && rt.pol.Rebalance.Trigger != policy.TriggerThreshold {
			ps.NextFiring = sched.Next(now).UTC()
			ps.NextTrigger = string(rt.pol.Rebalance.Trigger)
		}
		ps.LastPlanOrders = []*ledger.Order{}
		for _, o := range rt.ledger.Orders {
			if rt.ledger.LastPlanID != "" && o.PlanID == rt.ledger.LastPlanID {
				c := *o
				ps.LastPlanOrders = append(ps.LastPlanOrders, &c)
			}
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

// sleeveStatus describes every sleeve of a drift snapshot.
func sleeveStatus(s *drift.Snapshot) []SleeveStatus {
	p := s.Book.Policy
	out := make([]SleeveStatus, len(s.Sleeves))
	for i, sl := range s.Sleeves {
		out[i] = SleeveStatus{Sleeve: sl.Path, Target: sl.Target.String(), Weight: sl.Weight.String(),
			Deviation: sl.Deviation.String(), BandLow: sl.BandLow.String(), BandHigh: sl.BandHigh.String(),
			Breach: sl.Breach, Value: sl.Value.StringFixed(2)}
		if par := p.Sleeves[i].Parent; par >= 0 {
			out[i].Parent = p.Sleeves[par].Path
		}
	}
	return out
}

// priceStatus describes the quote of every instrument the policy needs,
// its age taken at now.
func priceStatus(rt *runtime, now time.Time) []PriceStatus {
	out := make([]PriceStatus, 0, len(rt.symbols))
	for _, sym := range rt.symbols {
		ps := PriceStatus{Symbol: sym}
		if q, ok := rt.guard.Quote(sym); ok {
			ps.Price, ps.At, ps.Source = q.Price.String(), q.At.UTC(), q.Source
			ps.Age = now.Sub(q.At).Truncate(time.Second).String()
		}
		if q, ok := rt.guard.Pending(sym); ok {
			ps.Quarantined = q.Price.String() + " at " + q.At.UTC().Format(time.RFC3339)
		}
		out = append(out, ps)
	}
	return out
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
		if rt.journalErr != "" {
			out = append(out, name+": journal write failed: "+rt.journalErr)
		}
	}
	return out
}
