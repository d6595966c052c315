package targets

import (
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/policy"
)

// phasePolicy is a policy with the targets stocks/bonds/cash given.
func phasePolicy(t *testing.T, stocks, bonds, cash string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("phase.yml", []byte(`policy: phased
currency: USD
targets: {stocks: `+stocks+`, bonds: `+bonds+`, cash: `+cash+`}
bands: {absolute: 5%}
rebalance: {trigger: threshold}
instruments:
  VTI: {sleeve: stocks}
  BND: {sleeve: bonds}
accounts:
  ira: {type: traditional_ira}
`))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func targetsOf(p *policy.Policy) string {
	var parts []string
	for _, s := range p.Sleeves {
		parts = append(parts, s.Path+"="+s.Local.String())
	}
	return strings.Join(parts, " ")
}

// TestPhased: from 60/35/5 to 40/55/5 over 90 days every 30 days: four
// steps, at days 0, 30, 60 and 90.
// Step k is from x (4-k)/4 + to x k/4:
//
//	k=1 (at once):   stocks 60x3/4 + 40/4 = 55,   bonds 35x3/4 + 55/4 = 40,   cash 5
//	k=2 (day 30):    stocks 60/2 + 40/2 = 50,      bonds 35/2 + 55/2 = 45,     cash 5
//	k=3 (day 60):    stocks 60/4 + 40x3/4 = 45,   bonds 35/4 + 55x3/4 = 50,   cash 5
//	k=4 (day 90):    the new targets, 40/55/5, and the phase is done.
func TestPhased(t *testing.T) {
	from, to := phasePolicy(t, "60%", "35%", "5%"), phasePolicy(t, "40%", "55%", "5%")
	start := time.Date(2026, 11, 2, 15, 0, 0, 0, time.UTC)
	ph := Phase{From: LocalsOf(from), Start: start}
	rule := policy.PhaseIn{Over: 90 * 24 * time.Hour, Every: 30 * 24 * time.Hour, Steps: 4}
	day := 24 * time.Hour
	for _, tc := range []struct {
		at   time.Duration
		step int
		want string
		done bool
	}{
		{-time.Hour, 1, "stocks=0.55 bonds=0.4 cash=0.05", false},
		{0, 1, "stocks=0.55 bonds=0.4 cash=0.05", false},
		{30*day - time.Nanosecond, 1, "stocks=0.55 bonds=0.4 cash=0.05", false},
		{30 * day, 2, "stocks=0.5 bonds=0.45 cash=0.05", false},
		{60 * day, 3, "stocks=0.45 bonds=0.5 cash=0.05", false},
		{90 * day, 4, "stocks=0.4 bonds=0.55 cash=0.05", true},
		{400 * day, 4, "stocks=0.4 bonds=0.55 cash=0.05", true},
	} {
		got, st, err := Phased(to, ph, rule, start.Add(tc.at))
		if err != nil {
			t.Fatal(err)
		}
		if targetsOf(got) != tc.want || st.Step != tc.step || st.Done != tc.done || st.Steps != 4 {
			t.Errorf("at %v: %s, step %+v; want %s, step %d", tc.at, targetsOf(got), st, tc.want, tc.step)
		}
		if tc.done != (got == to) {
			t.Errorf("at %v: returned the target policy itself: %v", tc.at, got == to)
		}
		if !tc.done && (got.Version == to.Version || !st.Next.Equal(start.Add(time.Duration(tc.step)*30*day))) {
			t.Errorf("at %v: version %s (target %s), next %v", tc.at, got.Version, to.Version, st.Next)
		}
	}
}

// TestPhasedRounding: from 50/50/0 to 0/100/0 in three steps, step 1 is a
// third of the way: stocks 1/3 rounds down to 0.33333333, bonds 2/3 to
// 0.66666666, and the residue 0.00000001 goes to the largest, bonds.
func TestPhasedRounding(t *testing.T) {
	from, to := phasePolicy(t, "50%", "50%", "0%"), phasePolicy(t, "0%", "100%", "0%")
	ph := Phase{From: LocalsOf(from), Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	got, _, err := Phased(to, ph, policy.PhaseIn{Over: 60 * 24 * time.Hour, Every: 30 * 24 * time.Hour, Steps: 3}, ph.Start)
	if err != nil {
		t.Fatal(err)
	}
	if s := targetsOf(got); s != "stocks=0.33333333 bonds=0.66666667 cash=0" {
		t.Fatalf("step 1: %s", s)
	}
	sum := decimal.Zero
	for _, s := range got.Sleeves {
		sum = sum.Add(s.Target)
	}
	if !sum.Equal(decimal.NewFromInt(1)) {
		t.Errorf("targets sum to %s", sum)
	}
}

// TestPhasedSkipsAChangedTree: starting weights of other sleeves cannot be
// phased from; the new targets apply at once and the step says why.
func TestPhasedSkipsAChangedTree(t *testing.T) {
	to := phasePolicy(t, "40%", "55%", "5%")
	ph := Phase{From: map[string]decimal.Decimal{"stocks": decimal.NewFromInt(1), "cash": decimal.Zero, "gold": decimal.Zero},
		Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	got, st, err := Phased(to, ph, policy.PhaseIn{Over: 30 * 24 * time.Hour, Every: 30 * 24 * time.Hour, Steps: 2}, ph.Start)
	if err != nil || got != to || !st.Done || !strings.Contains(st.Skipped, "bonds is new") {
		t.Fatalf("got %s, step %+v, err %v", targetsOf(got), st, err)
	}
}
