package targets

import "time"

// StepDue reports whether a phase of new money has reached, at now, a step
// not yet invested.
func StepDue(phases []CashPhase, now time.Time) bool {
	for k := range phases {
		if phases[k].At(now).Step > phases[k].Invested {
			return true
		}
	}
	return false
}

// Invested records that the steps the phases have reached at now are
// invested, and returns the phases still in progress (nil when none). It
// reuses phases' backing array.
func Invested(phases []CashPhase, now time.Time) []CashPhase {
	kept := phases[:0]
	for _, c := range phases {
		st := c.At(now)
		c.Invested = st.Step
		if !st.Done {
			kept = append(kept, c)
		}
	}
	if len(kept) == 0 {
		return nil
	}
	return kept
}
