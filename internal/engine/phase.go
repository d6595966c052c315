package engine

import (
	"maps"
	"time"

	"github.com/shopspring/decimal"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/targets"
)

// phaseDoc is what the engine keeps of a policy's targets between runs
// (AuxStore document <policy>.phase): the phase-in in progress, and the
// weights last applied with the policy file version they came from, so
// that an edit made while the daemon was down is phased in too.
type phaseDoc struct {
	Phase   *targets.Phase             `json:"phase,omitempty"`
	Version string                     `json:"version"`
	Applied map[string]decimal.Decimal `json:"applied"`
}

func phaseName(policy string) string { return policy + ".phase" }

// phaseStepAt is the step of the phase in progress at now, 0 without one
// (part of the cache key of the effective targets). Called with e.mu held.
func (rt *runtime) phaseStepAt(now time.Time) int {
	if rt.phase == nil || rt.pol.PhaseIn == nil {
		return 0
	}
	k, _ := rt.pol.PhaseIn.StepAt(rt.phase.Start, now)
	return k
}

// loadPhase sets up the phase-in of a policy that was loaded or changed.
// An edit of a running policy with a phase_in block starts a phase from
// the targets applied until now (phased or not: an edit mid-way restarts
// from the current position). At start, a phase saved before resumes if
// the policy is the one it phases to; if the policy was edited while the
// daemon was down, a phase starts from the weights last applied. Called
// with e.mu held.
func (e *Engine) loadPhase(rt *runtime, old *policy.Policy, now time.Time) {
	name := rt.pol.Name
	if old == nil {
		rt.applied = phaseDoc{}
		if s := e.opts.Aux; s != nil {
			if _, err := s.ReadJSON(phaseName(name), &rt.applied); err != nil {
				e.log.Warn("phase-in state not read; the targets apply in full", zap.String("policy", name), zap.Error(err))
				rt.applied = phaseDoc{}
			}
		}
		switch {
		case rt.applied.Version == rt.pol.Version:
			rt.phase = rt.applied.Phase // resumes (nil: none)
		case rt.applied.Version != "" && rt.applied.Applied != nil:
			e.startPhase(rt, rt.applied.Applied, now, "edited while the daemon was stopped")
		default:
			rt.phase = nil
		}
		return
	}
	if rt.eff == nil {
		rt.phase = nil
		return
	}
	e.startPhase(rt, targets.LocalsOf(rt.eff), now, "policy edited")
}

// startPhase begins a phase-in from the weights from, if the policy has a
// phase_in block; without one, a phase in progress ends. Called with e.mu
// held.
func (e *Engine) startPhase(rt *runtime, from map[string]decimal.Decimal, now time.Time, why string) {
	ph := rt.pol.PhaseIn
	if ph == nil {
		if rt.phase != nil {
			e.log.Info("phase-in ended: the policy no longer has one; its targets apply in full", zap.String("policy", rt.pol.Name))
		}
		rt.phase = nil
		return
	}
	if to, _, err := targets.Effective(rt.pol, now); err == nil && maps.EqualFunc(targets.LocalsOf(to), from, decimal.Decimal.Equal) {
		rt.phase = nil // the targets did not change: nothing to phase
		e.savePhase(rt)
		return
	}
	rt.phase = &targets.Phase{From: maps.Clone(from), Start: now}
	rt.phaseStep = nil
	rt.due = &firing{trigger: TriggerPhaseIn, at: now} // the first step, at once
	e.log.Info("phase-in started: moving to the new targets in steps", zap.String("policy", rt.pol.Name),
		zap.String("why", why), zap.Int("steps", ph.Steps), zap.String("every", policy.FormatDays(ph.Every)),
		zap.String("over", policy.FormatDays(ph.Over)), zap.Time("start", now))
	e.savePhase(rt)
}

// phased applies the phase-in in progress to the effective targets eff.
// Called with e.mu held.
func (e *Engine) phased(rt *runtime, eff *policy.Policy, now time.Time) (*policy.Policy, error) {
	if rt.phase == nil || rt.pol.PhaseIn == nil {
		rt.phaseStep = nil
		return eff, nil
	}
	out, st, err := targets.Phased(eff, *rt.phase, *rt.pol.PhaseIn, now)
	if err != nil {
		return nil, err
	}
	if prev := rt.phaseStep; prev == nil || prev.Step != st.Step {
		e.log.Info("phase-in step", zap.String("policy", rt.pol.Name), zap.Int("step", st.Step), zap.Int("steps", st.Steps),
			zap.Time("next", st.Next), zap.String("skipped", st.Skipped))
		if prev != nil && st.Skipped == "" {
			// Each step trades to its targets, whatever the bands say.
			rt.due = &firing{trigger: TriggerPhaseIn, at: now}
		}
	}
	rt.phaseStep = &st
	if st.Done {
		e.log.Info("phase-in complete: the new targets apply in full", zap.String("policy", rt.pol.Name), zap.String("skipped", st.Skipped))
		rt.phase = nil
		e.savePhase(rt)
	}
	return out, nil
}

// noteApplied records the weights applied, when they changed, for a
// policy with a phase_in block. Called with e.mu held.
func (e *Engine) noteApplied(rt *runtime, eff *policy.Policy) {
	if rt.pol.PhaseIn == nil {
		return // only a phase-in needs to know where the targets were
	}
	applied := targets.LocalsOf(eff)
	if rt.applied.Version == rt.pol.Version && maps.EqualFunc(rt.applied.Applied, applied, decimal.Decimal.Equal) {
		return
	}
	rt.applied.Version, rt.applied.Applied = rt.pol.Version, applied
	e.savePhase(rt)
}

// savePhase writes the phase-in state. Called with e.mu held.
func (e *Engine) savePhase(rt *runtime) {
	rt.applied.Phase = rt.phase
	if rt.phase != nil {
		rt.applied.Version = rt.pol.Version
	}
	s := e.opts.Aux
	if s == nil {
		return
	}
	if err := s.WriteJSON(phaseName(rt.pol.Name), &rt.applied); err != nil {
		e.log.Warn("phase-in state not saved", zap.String("policy", rt.pol.Name), zap.Error(err))
	}
}

// startCashPhases adds phases of new money to the ledger, saves it, and
// returns snap with what they hold back at now taken out. Called with
// e.mu held.
func (e *Engine) startCashPhases(rt *runtime, snap *drift.Snapshot, phases []targets.CashPhase, now time.Time) *drift.Snapshot {
	rt.ledger.CashPhases = append(rt.ledger.CashPhases, phases...)
	w := plan.WaitingAt(phases, now)
	rt.waiting = append(rt.waiting, w...)
	_ = e.save(rt, true)
	return drift.Compute(plan.HoldBack(snap.Book, w))
}

// investStep invests the cash the phases of new money released at now:
// an investment plan (plan.Invest) of the free cash, waiting cash held
// back, whatever the bands say. Once the plan is journaled (or has
// nothing to trade), each phase records the step invested, and a phase
// whose last step is invested ends. Called with e.mu held.
func (e *Engine) investStep(rt *runtime, snap *drift.Snapshot, now time.Time) {
	p := plan.Invest(snap, plan.Options{History: taxHistory(rt, now)})
	p.Waiting = rt.waiting
	if !e.rebalance(rt, p, TriggerPhaseIn, now) {
		return // not journaled: the step stays due
	}
	for _, c := range rt.ledger.CashPhases {
		st := c.At(now)
		e.log.Info("phase-in of new money: step invested", zap.String("policy", rt.pol.Name), zap.String("id", c.ID),
			zap.String("account", c.Account), zap.Int("step", st.Step), zap.Int("steps", st.Steps),
			zap.String("waiting", c.Waiting(st.Step).String()), zap.Time("next", st.Next))
	}
	rt.ledger.CashPhases = targets.Invested(rt.ledger.CashPhases, now)
	_ = e.save(rt, true)
}
