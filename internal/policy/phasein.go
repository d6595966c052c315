package policy

import (
	"time"

	"github.com/shopspring/decimal"
	"go.yaml.in/yaml/v3"
)

// MaxPhaseSteps bounds the steps of a phase-in.
const MaxPhaseSteps = 120

// PhaseIn says how the daemon moves to new targets when an edit of the
// policy changes them, and how it invests new money (dollar-cost
// averaging): in Steps equal steps, the first at once, then one every
// Every, the last exactly at Over (StepAt).
type PhaseIn struct {
	Over, Every time.Duration
	// Steps is Over / Every rounded up, plus one for the step at once:
	// 180d every 30d is seven steps, at days 0, 30, ..., 180.
	Steps int
	// Deposits says that deposits above DepositsAbove are invested in
	// steps too (deposits_above); without it, deposits are invested at
	// once. A household's first investment (all its money in cash) is
	// always invested in steps.
	Deposits      bool
	DepositsAbove decimal.Decimal
	Line          int
}

// StepTime returns when step k (1 to Steps) of a phase begun at start
// applies: start + (k-1) x Every, and the last step at start + Over
// exactly.
func (ph *PhaseIn) StepTime(start time.Time, k int) time.Time {
	if k >= ph.Steps {
		return start.Add(ph.Over)
	}
	return start.Add(min(time.Duration(k-1)*ph.Every, ph.Over))
}

// StepAt returns the step in effect at time at of a phase begun at start
// (1 at or before start, Steps from start + Over on) and when the next
// one applies (zero once the last does).
func (ph *PhaseIn) StepAt(start, at time.Time) (step int, next time.Time) {
	k := 1
	if at.After(start) && ph.Every > 0 {
		k = min(ph.Steps, int(at.Sub(start)/ph.Every)+1)
	}
	if k < ph.Steps && !at.Before(start.Add(ph.Over)) {
		k = ph.Steps
	}
	if k < ph.Steps {
		next = ph.StepTime(start, k+1)
	}
	return k, next
}

// IsPhased reports whether a deposit of amount is invested in steps.
func (ph *PhaseIn) IsPhased(amount decimal.Decimal) bool {
	return ph != nil && ph.Deposits && amount.GreaterThan(ph.DepositsAbove)
}

// phaseIn reads the optional phase_in block; n is nil when absent.
func (c *compiler) phaseIn(n *yaml.Node) {
	if n == nil {
		return
	}
	const field = "phase_in"
	f := c.r.Object(n, field, "over", "every", "deposits_above")
	ph := &PhaseIn{Line: n.Line}
	ok := plainMapping(n)
	for _, k := range []struct {
		key string
		d   *time.Duration
	}{{"over", &ph.Over}, {"every", &ph.Every}} {
		v, found := f[k.key]
		if !found {
			if ok {
				c.r.Errorf(n, field+"."+k.key, "required field is missing (a duration like 180d or 30d)")
			}
			ok = false
			continue
		}
		d, read := c.spanDuration(v, field+"."+k.key)
		*k.d, ok = d, ok && read
	}
	if v, found := f["deposits_above"]; found {
		amt, read := c.r.NonNegative(v, field+".deposits_above")
		ph.Deposits, ph.DepositsAbove, ok = true, amt, ok && read
	}
	if !ok {
		return
	}
	if ph.Over < ph.Every {
		c.r.Errorf(f["over"], field+".over", "%s is shorter than every (%s)", FormatDays(ph.Over), FormatDays(ph.Every))
		return
	}
	ph.Steps = int((ph.Over+ph.Every-1)/ph.Every) + 1
	if ph.Steps > MaxPhaseSteps {
		c.r.Errorf(f["every"], field+".every", "%d steps over %s: at most %d", ph.Steps, FormatDays(ph.Over), MaxPhaseSteps)
		return
	}
	c.p.PhaseIn = ph
}
