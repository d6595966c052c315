// Package trigger decides, from a policy's trigger and what an evaluation
// found, whether the policy rebalances now and, if not, why. It is pure:
// the daemon's engine and the backtest call the same Decide, so that a
// replay of history fires exactly when the daemon would.
package trigger

import (
	"time"

	"github.com/rebalancerd/rebalancerd/internal/policy"
)

// Triggers of a rebalance, as they appear in events.
const (
	Calendar  = "calendar"
	Threshold = "threshold"
	Hybrid    = "hybrid"
	Manual    = "manual"
	// CashFlow is a deposit or withdrawal on <prefix>.cashflows.
	CashFlow = "cashflow"
	// PhaseIn is a step of a phase-in: of new targets (the plan goes to
	// the step's targets whatever the bands say) or of new money invested
	// in steps (an investment of the step's cash).
	PhaseIn = "phase_in"
)

// ForFiring is the trigger a calendar firing of a policy with kind k
// stands for: hybrid for a hybrid policy, calendar otherwise.
func ForFiring(k policy.Trigger) string {
	if k == policy.TriggerHybrid {
		return Hybrid
	}
	return Calendar
}

// Input is what Decide needs to know about one evaluation.
type Input struct {
	// Kind is the policy's trigger (calendar, threshold or hybrid).
	Kind policy.Trigger
	// Due is the trigger of a firing not yet acted on (Calendar, Hybrid or
	// Manual), or "" when none is due.
	Due string
	// Breaching is set when a sleeve is outside its band.
	Breaching bool
	// Blocked is set when something blocks planning (prices, pending
	// orders, the kill switch, ...); PriceBlocked when a price is among
	// them. A due firing blocked by anything but prices is dropped; one
	// blocked by prices waits for them.
	Blocked, PriceBlocked bool
	// LastRebalance, Cooldown and Now give the cooldown: no rebalance
	// before LastRebalance + Cooldown (a zero LastRebalance has none).
	LastRebalance time.Time
	Cooldown      time.Duration
	Now           time.Time
}

// Skip says why a due firing did not rebalance.
type Skip string

// Reasons a due firing is dropped without a rebalance.
const (
	// NoBreach: a hybrid firing found every sleeve inside its band.
	NoBreach Skip = "no_breach"
	// Blocked: something other than prices blocks planning.
	Blocked Skip = "blocked"
	// InCooldown: the last rebalance is more recent than the cooldown.
	InCooldown Skip = "cooldown"
)

// Decision is what Decide returns.
type Decision struct {
	// Trigger is the trigger of the rebalance to plan now, or "" for none.
	Trigger string
	// Consumed is set when a due firing is used up (acted on or dropped);
	// otherwise it stays due for the next evaluation.
	Consumed bool
	// Skip says why a due firing was dropped ("" when it was not).
	Skip Skip
}

// Decide applies, in order: a due firing (hybrid only with a breach), a
// threshold breach, what blocks planning, and the cooldown.
func Decide(in Input) Decision {
	var d Decision
	switch {
	case in.Due != "" && (in.Due != Hybrid || in.Breaching):
		d.Trigger = in.Due
	case in.Due != "":
		return Decision{Consumed: true, Skip: NoBreach}
	case in.Kind == policy.TriggerThreshold && in.Breaching:
		d.Trigger = Threshold
	default:
		return d
	}
	if in.Blocked {
		if in.Due != "" && !in.PriceBlocked {
			return Decision{Consumed: true, Skip: Blocked}
		}
		return Decision{}
	}
	if !in.LastRebalance.IsZero() && in.Now.Before(in.LastRebalance.Add(in.Cooldown)) {
		if in.Due != "" {
			return Decision{Consumed: true, Skip: InCooldown}
		}
		return Decision{}
	}
	d.Consumed = in.Due != ""
	return d
}
