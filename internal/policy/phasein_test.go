package policy

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// TestPhaseIn: 180 days every 30 days is seven steps (days 0, 30, ...,
// 180); a move that is not a whole number of steps rounds the steps up and
// ends at over all the same. deposits_above is read.
func TestPhaseIn(t *testing.T) {
	data, err := os.ReadFile("testdata/phase_in.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse("phase_in.good.yml", data)
	if err != nil {
		t.Fatal(err)
	}
	if ph := p.PhaseIn; ph == nil || ph.Over != 180*24*time.Hour || ph.Every != 30*24*time.Hour || ph.Steps != 7 || ph.Line != 17 || ph.Deposits {
		t.Fatalf("phase_in = %+v", p.PhaseIn)
	}
	head := string(data[:len(data)-len("phase_in: {over: 180d, every: 30d}\n")])
	if p, err = Parse("odd.yml", []byte(head+"phase_in: {over: 100d, every: 30d}\n")); err != nil || p.PhaseIn.Steps != 5 {
		t.Fatalf("100d every 30d: %+v, %v", p.PhaseIn, err)
	}
	p, err = Parse("dca.yml", []byte(head+`phase_in: {over: 180d, every: 30d, deposits_above: "10000"}`+"\n"))
	if err != nil || !p.PhaseIn.Deposits || !p.PhaseIn.DepositsAbove.Equal(decimal.NewFromInt(10000)) ||
		p.PhaseIn.IsPhased(decimal.NewFromInt(10000)) || !p.PhaseIn.IsPhased(decimal.RequireFromString("10000.01")) {
		t.Fatalf("deposits_above: %+v, %v", p.PhaseIn, err)
	}
	_, err = Parse("dca.yml", []byte(head+`phase_in: {over: 180d, every: 30d, deposits_above: "-1"}`+"\n"))
	if err == nil || !strings.Contains(err.Error(), "phase_in.deposits_above") {
		t.Errorf("negative deposits_above: %v", err)
	}
}

// TestStepAt: over 180 days every 30 days, the last step applies on day
// 180 exactly (it applied on day 150 before); over 100 days every 30
// days, steps at days 0, 30, 60, 90 and 100.
func TestStepAt(t *testing.T) {
	day := 24 * time.Hour
	start := time.Date(2026, 1, 1, 15, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		over, at time.Duration
		step     int
		next     time.Duration // from start; -1 for none
	}{
		{180 * day, -day, 1, 30 * day},
		{180 * day, 0, 1, 30 * day},
		{180 * day, 30*day - 1, 1, 30 * day},
		{180 * day, 30 * day, 2, 60 * day},
		{180 * day, 150 * day, 6, 180 * day},
		{180*day - 1, 179 * day, 6, 180*day - 1},
		{180 * day, 180*day - 1, 6, 180 * day},
		{180 * day, 180 * day, 7, -1},
		{180 * day, 900 * day, 7, -1},
		{100 * day, 90 * day, 4, 100 * day},
		{100 * day, 100 * day, 5, -1},
	} {
		ph := PhaseIn{Over: tc.over, Every: 30 * day}
		ph.Steps = int((ph.Over+ph.Every-1)/ph.Every) + 1
		k, next := ph.StepAt(start, start.Add(tc.at))
		want := time.Time{}
		if tc.next >= 0 {
			want = start.Add(tc.next)
		}
		if k != tc.step || !next.Equal(want) {
			t.Errorf("over %v at %v: step %d next %v, want %d %v", tc.over, tc.at, k, next, tc.step, want)
		}
	}
}
