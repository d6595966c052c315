package policy

import (
	"os"
	"testing"
	"time"
)

// TestPhaseIn: 180 days in steps of 30 days is six steps; a move that is
// not a whole number of steps rounds the steps up.
func TestPhaseIn(t *testing.T) {
	data, err := os.ReadFile("testdata/phase_in.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse("phase_in.good.yml", data)
	if err != nil {
		t.Fatal(err)
	}
	if ph := p.PhaseIn; ph == nil || ph.Over != 180*24*time.Hour || ph.Every != 30*24*time.Hour || ph.Steps != 6 || ph.Line != 17 {
		t.Fatalf("phase_in = %+v", p.PhaseIn)
	}
	odd := []byte(string(data[:len(data)-len("phase_in: {over: 180d, every: 30d}\n")]) + "phase_in: {over: 100d, every: 30d}\n")
	if p, err = Parse("odd.yml", odd); err != nil || p.PhaseIn.Steps != 4 {
		t.Fatalf("100d every 30d: %+v, %v", p.PhaseIn, err)
	}
}
