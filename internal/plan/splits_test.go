package plan_test

import (
	"strings"
	"testing"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// TestUnrestorableSplitUnresolved: with destination target, a split
// between instruments outside its tolerance that no plan can restore is
// listed in unresolved, with what stops it (the sixth case of issue 11
// made it possible to leave a split; leaving it may not be silent).
func TestUnrestorableSplitUnresolved(t *testing.T) {
	pol := `policy: split
currency: USD
targets: {stocks: 50%, bonds: 48%, cash: 2%}
bands: {absolute: 5%, relative: 25%}
rebalance: {trigger: threshold, destination: target}
instruments:
  VTI: {sleeve: stocks}
  BND: {sleeve: bonds, share: 70%}
  BNDX: {sleeve: bonds, share: 30%}
accounts:
  ira: {type: traditional_ira}
  tx: {type: taxable}
tax: {}
`
	hold := stamp + `accounts:
  ira: {cash: "2000", positions: {VTI: "500", BND: "1000"}}
  tx: {cash: "0"}
`
	prices := stamp + `prices: {VTI: "100", BND: "48", BNDX: "50"}`
	// All of bonds is in BND (100% against 70%, tolerance 10.42%), and a
	// loss sale of BNDX in tx ten days ago keeps it from being bought.
	h := tax.History{LossSales: []tax.Trade{{Instrument: "BNDX", Account: "tx", Date: tax.NewDate(2026, 11, 10)}}}
	b := book(t, pol, hold, prices)
	p := plan.MakeWith(drift.Compute(b), plan.Options{History: h})
	checkInvariants(t, b, p)
	u := unresolvedOf(p, "bonds")
	if u == nil || !strings.Contains(u.Reason, "BND is 100.00% of it against a share of 70.00%, BNDX is 0.00% of it against a share of 30.00%") ||
		!strings.Contains(u.Reason, "the wash-sale rule keeps BNDX from being bought") {
		t.Errorf("unresolved = %+v, want bonds with its split and what stops it", p.Unresolved)
	}

	// Without the loss sale nothing stops it, and the split is not listed
	// (restored, or left by the polish for fewer orders, docs/PLANNING.md).
	p = plan.MakeWith(drift.Compute(b), plan.Options{})
	checkInvariants(t, b, p)
	if len(p.Unresolved) != 0 {
		t.Errorf("unresolved = %+v, want none", p.Unresolved)
	}
}
