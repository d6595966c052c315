package targets

import (
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/policy"
)

// Phase is a move in progress to new targets (a phase-in): the weight
// each sleeve had within its parent when it began, by sleeve path, and
// when it began. It is plain data, persisted by the daemon.
type Phase struct {
	From  map[string]decimal.Decimal `json:"from"`
	Start time.Time                  `json:"start"`
}

// PhaseStep says where a phase-in stands at a time.
type PhaseStep struct {
	// Step is the step in effect, from 1 to Steps.
	Step  int `json:"step"`
	Steps int `json:"steps"`
	// Start is when the phase began; Next when the next step applies
	// (zero once the last one does).
	Start time.Time `json:"start"`
	Next  time.Time `json:"next,omitzero"`
	// Done is set once the targets are reached (Step == Steps), or when
	// the phase could not apply (Skipped says why): the targets then apply
	// in full.
	Done    bool   `json:"done"`
	Skipped string `json:"skipped,omitempty"`
}

// LocalsOf returns the weight of each of p's sleeves within its parent, by
// path: the starting point of a phase that begins from p's targets.
func LocalsOf(p *policy.Policy) map[string]decimal.Decimal {
	out := make(map[string]decimal.Decimal, len(p.Sleeves))
	for i := range p.Sleeves {
		out[p.Sleeves[i].Path] = p.Sleeves[i].Local
	}
	return out
}

// Phased returns the targets in effect at time at during a phase-in
// towards to (the effective targets of the policy, glide path and tilts
// applied): step k of rule.Steps applies from rule.StepTime(ph.Start, k):
// the first at once, then one every rule.Every, the last at ph.Start +
// rule.Over exactly. At step k each level's weights are
//
//	from x (Steps-k)/Steps + to x k/Steps
//
// rounded down to Places decimal places within their parent, the residue
// to the largest (the first on ties), so each level sums to exactly 100%.
// At the last step it returns to itself.
//
// A phase whose starting weights do not name exactly to's sleeves (the
// edit added or removed a sleeve) cannot apply: Phased returns to with
// Done and Skipped set. A time before ph.Start counts as the first step.
func Phased(to *policy.Policy, ph Phase, rule policy.PhaseIn, at time.Time) (*policy.Policy, PhaseStep, error) {
	n := rule.Steps
	st := PhaseStep{Steps: n, Start: ph.Start}
	if n < 1 || rule.Every <= 0 {
		return nil, st, fmt.Errorf("phase-in of %d steps every %s", n, rule.Every)
	}
	k, next := rule.StepAt(ph.Start, at)
	st.Step = k
	if k == n {
		st.Done = true
		return to, st, nil
	}
	st.Next = next
	if len(ph.From) != len(to.Sleeves) {
		st.Done, st.Skipped = true, fmt.Sprintf("the sleeves changed (%d before, %d now)", len(ph.From), len(to.Sleeves))
		return to, st, nil
	}
	for i := range to.Sleeves {
		if _, ok := ph.From[to.Sleeves[i].Path]; !ok {
			st.Done, st.Skipped = true, fmt.Sprintf("sleeve %s is new", to.Sleeves[i].Path)
			return to, st, nil
		}
	}
	local := make([]decimal.Decimal, len(to.Sleeves))
	kd, rest := decimal.NewFromInt(int64(k)), decimal.NewFromInt(int64(n-k))
	w := make([]decimal.Decimal, 0, 8)
	out := make([]decimal.Decimal, 0, 8)
	for _, level := range to.Levels() {
		w = w[:0]
		for _, i := range level {
			w = append(w, ph.From[to.Sleeves[i].Path].Mul(rest).Add(to.Sleeves[i].Local.Mul(kd)))
		}
		out = distribute(out[:0], one, w)
		for j, i := range level {
			local[i] = out[j]
		}
	}
	same := true
	for i := range to.Sleeves {
		same = same && local[i].Equal(to.Sleeves[i].Local)
	}
	if same {
		return to, st, nil // this step is already the end targets (from equals to)
	}
	q, err := to.WithLocals(local, version(to, local, nil))
	if err != nil {
		return nil, st, fmt.Errorf("phase-in step %d of %d: %w", k, n, err)
	}
	return q, st, nil
}

// CashPhase is new money invested in steps (dollar-cost averaging): a
// deposit above the policy's phase_in.deposits_above, or a household's
// first investment, invested in equal steps on the phase_in schedule
// (policy.PhaseIn.StepAt). It is plain data, persisted by the daemon with
// the rule it began with, so that neither a restart nor a reload that
// edits phase_in changes a phase in progress.
type CashPhase struct {
	// ID names the money: the cash flow's id, or first-investment.
	ID      string          `json:"id"`
	Account string          `json:"account"`
	Amount  decimal.Decimal `json:"amount"`
	Start   time.Time       `json:"start"`
	Over    time.Duration   `json:"over"`
	Every   time.Duration   `json:"every"`
	// Invested is the last step whose investment was planned; 0 before
	// the first.
	Invested int `json:"invested"`
}

// NewCashPhase returns the phase of amount in account under rule, begun
// at start.
func NewCashPhase(id, account string, amount decimal.Decimal, start time.Time, rule *policy.PhaseIn) CashPhase {
	return CashPhase{ID: id, Account: account, Amount: amount, Start: start, Over: rule.Over, Every: rule.Every}
}

// Rule returns the phase_in rule the phase began with.
func (c *CashPhase) Rule() policy.PhaseIn {
	r := policy.PhaseIn{Over: c.Over, Every: c.Every, Steps: 1}
	if c.Every > 0 {
		r.Steps = int((c.Over+c.Every-1)/c.Every) + 1
	}
	return r
}

// At returns the step of the phase at time at; Done once the last step
// applies.
func (c *CashPhase) At(at time.Time) PhaseStep {
	r := c.Rule()
	k, next := r.StepAt(c.Start, at)
	return PhaseStep{Step: k, Steps: r.Steps, Start: c.Start, Next: next, Done: k == r.Steps}
}

// Waiting returns the money step k leaves waiting for later steps: the
// amount less amount x k / Steps rounded down to cents (each step invests
// an equal part, to the cent), nothing from the last step on.
func (c *CashPhase) Waiting(k int) decimal.Decimal {
	n := c.Rule().Steps
	if k >= n {
		return decimal.Zero
	}
	// QuoRem truncates to cents, which is rounding down: both are
	// positive.
	released, _ := c.Amount.Mul(decimal.NewFromInt(int64(max(k, 0)))).QuoRem(decimal.NewFromInt(int64(n)), 2)
	return c.Amount.Sub(released)
}
