package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestRiskLimitRejectsPlan: a plan whose turnover exceeds the policy's
// limit is not published; the rejection shows in the status, /readyz and
// the metrics. Raising the limit (a policy edit) lets the next plan out.
func TestRiskLimitRejectsPlan(t *testing.T) {
	pol := policyText("threshold", "") + "limits:\n  max_turnover: 5%\n"
	d := startDaemon(t, pol, monday0959, nil)
	w := d.watchOrders()
	// VTI at 130: the plan sells 5 VTI (650) and buys 6 BND (600), 1250
	// of 11800: 10.6% turnover, above 5%.
	d.prices("VTI", "130", "BND", "100")
	d.waitBlocked("risk_limit")
	st := d.policyStatus()
	if len(st.Blocked) != 1 || !strings.Contains(st.Blocked[0].Detail, "max_turnover: orders total 1250, 10.59% of the portfolio's 11800.00; limit 5%") {
		t.Errorf("blocked %+v", st.Blocked)
	}
	if _, body := d.httpGet("/metrics"); !strings.Contains(body, `rebalancerd_plans_rejected_total{policy="test-household",rule="max_turnover"} 1`) {
		t.Error("rejection not counted in the metrics")
	}
	if code, body := d.httpGet("/readyz"); code != 503 || !strings.Contains(body, "risk_limit") {
		t.Errorf("/readyz %d %q", code, body)
	}
	d.Engine.EvaluateAll()
	if n := len(w.snapshot()); n != 0 || d.streamOrders() != 0 {
		t.Fatalf("%d orders published despite the limit", n)
	}

	// Raise the limit; after the cooldown the next evaluation publishes.
	writeFile(t, d.policy, strings.Replace(pol, "max_turnover: 5%", "max_turnover: 20%", 1))
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if d.policyStatus().Version == st.Version {
			return fmt.Errorf("not reloaded yet")
		}
		return nil
	})
	d.clock.Advance(time.Minute) // the cooldown
	d.prices("VTI", "130", "BND", "100")
	w.waitOrders(t, 2)
}
