package trigger

import (
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/policy"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 3, 2, 15, 0, 0, 0, time.UTC)
	recent := now.Add(-time.Hour)
	for _, c := range []struct {
		name string
		in   Input
		want Decision
	}{
		{"threshold, nothing out of band", Input{Kind: policy.TriggerThreshold, Now: now}, Decision{}},
		{"threshold breach", Input{Kind: policy.TriggerThreshold, Breaching: true, Now: now}, Decision{Trigger: Threshold}},
		{"calendar policy ignores a breach between firings", Input{Kind: policy.TriggerCalendar, Breaching: true, Now: now}, Decision{}},
		{"hybrid policy ignores a breach between firings", Input{Kind: policy.TriggerHybrid, Breaching: true, Now: now}, Decision{}},
		{"calendar firing without a breach", Input{Kind: policy.TriggerCalendar, Due: Calendar, Now: now}, Decision{Trigger: Calendar, Consumed: true}},
		{"hybrid firing without a breach", Input{Kind: policy.TriggerHybrid, Due: Hybrid, Now: now}, Decision{Consumed: true, Skip: NoBreach}},
		{"hybrid firing with a breach", Input{Kind: policy.TriggerHybrid, Due: Hybrid, Breaching: true, Now: now}, Decision{Trigger: Hybrid, Consumed: true}},
		{"manual on a threshold policy", Input{Kind: policy.TriggerThreshold, Due: Manual, Now: now}, Decision{Trigger: Manual, Consumed: true}},
		{"blocked breach waits", Input{Kind: policy.TriggerThreshold, Breaching: true, Blocked: true, Now: now}, Decision{}},
		{"blocked firing is dropped", Input{Kind: policy.TriggerCalendar, Due: Calendar, Blocked: true, Now: now}, Decision{Consumed: true, Skip: Blocked}},
		{"firing blocked by prices waits", Input{Kind: policy.TriggerCalendar, Due: Calendar, Blocked: true, PriceBlocked: true, Now: now}, Decision{}},
		{"breach in cooldown waits", Input{Kind: policy.TriggerThreshold, Breaching: true, LastRebalance: recent, Cooldown: 2 * time.Hour, Now: now}, Decision{}},
		{"firing in cooldown is dropped", Input{Kind: policy.TriggerCalendar, Due: Calendar, LastRebalance: recent, Cooldown: 2 * time.Hour, Now: now}, Decision{Consumed: true, Skip: InCooldown}},
		{"cooldown ends at its last instant", Input{Kind: policy.TriggerThreshold, Breaching: true, LastRebalance: recent, Cooldown: time.Hour, Now: now}, Decision{Trigger: Threshold}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Decide(c.in); got != c.want {
				t.Fatalf("Decide(%+v) = %+v, want %+v", c.in, got, c.want)
			}
		})
	}
}

func TestForFiring(t *testing.T) {
	if ForFiring(policy.TriggerHybrid) != Hybrid || ForFiring(policy.TriggerCalendar) != Calendar {
		t.Fatal("ForFiring")
	}
}
