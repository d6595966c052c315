package correlation

import (
	"time"

	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/policy"
)

// Kind is what a transition of a pair's alert says.
type Kind string

// The transitions of a pair's alert; their values are the events.Alert
// kinds.
const (
	// High: the correlation has stayed above the threshold for the
	// policy's time; diversification is failing.
	High Kind = events.AlertCorrelationHigh
	// Normal: a raised correlation has come back below clear_below.
	Normal Kind = events.AlertCorrelationNormal
)

// State is the alert state of a policy's pairs between evaluations. It is
// plain data, encoded as JSON for persistence; the zero State has no pair.
type State struct {
	Pairs []PairState `json:"pairs"`
}

// PairState is one pair's alert state.
type PairState struct {
	Sleeves [2]string `json:"sleeves"`
	// AboveSince is the AsOf of the first measurement of the current
	// unbroken run above the threshold; zero when the last measurement was
	// not above it.
	AboveSince time.Time `json:"above_since,omitzero"`
	// Raised says that the alert is raised.
	Raised bool `json:"raised"`
	// Since is when the raised alert's run above the threshold began;
	// zero when not raised.
	Since time.Time `json:"since,omitzero"`
}

// Transition is a change of a pair's alert.
type Transition struct {
	Kind Kind
	// Measurement is the evaluation that made the change.
	Measurement Measurement
	// Since is when the correlation went above the threshold: the start
	// of the episode that this transition raises or ends.
	Since time.Time
	At    time.Time
}

// Step applies one evaluation at time at to the state and returns the
// alerts that change, in the order of ms. For each pair:
//
//   - a measurement above Threshold starts a run (AboveSince = its AsOf)
//     or continues one; once at - AboveSince >= For, the alert is raised
//     (High), exactly at For included;
//   - any other measurement, an insufficient one included, ends the run:
//     a later run starts again from zero;
//   - a raised alert is cleared (Normal) by a measurement below
//     ClearBelow. Between ClearBelow and Threshold it stays raised: that
//     hysteresis keeps a correlation that hovers at the threshold from
//     raising and clearing day after day. An insufficient measurement
//     neither clears it nor raises it: missing prices prove nothing.
//
// Runs count from the data's time (AsOf), not from when the daemon
// happened to evaluate, so the timing does not depend on how often it
// does. Pairs not in ms (no longer watched) are dropped from the state
// without a transition.
func (s *State) Step(r Rules, ms []Measurement, at time.Time) []Transition {
	old := make(map[[2]string]PairState, len(s.Pairs))
	for _, ps := range s.Pairs {
		old[ps.Sleeves] = ps
	}
	next := make([]PairState, 0, len(ms))
	var out []Transition
	for _, m := range ms {
		key := [2]string{m.Pair.A, m.Pair.B}
		ps := old[key]
		ps.Sleeves = key
		above := m.Sufficient() && m.Pearson.Above(r.Threshold)
		switch {
		case above:
			if ps.AboveSince.IsZero() {
				ps.AboveSince = m.AsOf
			}
			if !ps.Raised && at.Sub(ps.AboveSince) >= r.For {
				ps.Raised, ps.Since = true, ps.AboveSince
				out = append(out, Transition{Kind: High, Measurement: m, Since: ps.Since, At: at})
			}
		default:
			ps.AboveSince = time.Time{}
			if ps.Raised && m.Sufficient() && m.Pearson.Below(r.ClearBelow) {
				out = append(out, Transition{Kind: Normal, Measurement: m, Since: ps.Since, At: at})
				ps.Raised, ps.Since = false, time.Time{}
			}
		}
		next = append(next, ps)
	}
	s.Pairs = next
	return out
}

// Raised reports whether the pair's alert is raised.
func (s *State) Raised(p Pair) bool {
	for _, ps := range s.Pairs {
		if ps.Sleeves == [2]string{p.A, p.B} {
			return ps.Raised
		}
	}
	return false
}

// Alert returns the event that announces a transition of this watch. Its
// id is the same whenever the same transition is computed again (after a
// restart that lost the state saved after publishing), so a JetStream
// publish with it as the message id stores it once.
func (w *Watch) Alert(t Transition) events.Alert {
	m := t.Measurement
	return events.Alert{
		SchemaVersion: events.SchemaVersion,
		AlertID: "corr-" + w.policy + "-" + m.Pair.A + "~" + m.Pair.B + "-" + string(t.Kind) + "-" +
			t.Since.UTC().Format("20060102T150405Z"),
		Policy:      w.policy,
		Kind:        string(t.Kind),
		Sleeves:     []string{m.Pair.A, m.Pair.B},
		Correlation: m.Value(),
		Threshold:   w.cfg.Threshold,
		ClearBelow:  w.cfg.ClearBelow,
		Window:      policy.FormatDays(w.cfg.Window),
		Interval:    policy.FormatDays(w.cfg.Interval),
		Returns:     m.Returns,
		Since:       t.Since.UTC(),
		At:          t.At.UTC(),
	}
}
