package policy

import (
	"go.yaml.in/yaml/v3"

	"time"
)

// MaxPhaseSteps bounds the steps of a phase-in.
const MaxPhaseSteps = 120

// PhaseIn says how the daemon moves to new targets when an edit of the
// policy changes them: in Steps equal steps, one every Every, the first at
// once, so that the last applies at (Steps-1) x Every and the move spans
// Over.
type PhaseIn struct {
	Over, Every time.Duration
	// Steps is Over / Every rounded up.
	Steps int
	Line  int
}

// phaseIn reads the optional phase_in block; n is nil when absent.
func (c *compiler) phaseIn(n *yaml.Node) {
	if n == nil {
		return
	}
	const field = "phase_in"
	f := c.r.Object(n, field, "over", "every")
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
	if !ok {
		return
	}
	if ph.Over < ph.Every {
		c.r.Errorf(f["over"], field+".over", "%s is shorter than every (%s)", FormatDays(ph.Over), FormatDays(ph.Every))
		return
	}
	ph.Steps = int((ph.Over + ph.Every - 1) / ph.Every)
	if ph.Steps > MaxPhaseSteps {
		c.r.Errorf(f["every"], field+".every", "%d steps over %s: at most %d", ph.Steps, FormatDays(ph.Over), MaxPhaseSteps)
		return
	}
	c.p.PhaseIn = ph
}
