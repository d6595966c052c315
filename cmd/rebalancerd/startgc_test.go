package main

import (
	"runtime/debug"
	"testing"
)

// gcPercent reads GOGC's current value.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestStartGC: the load at start runs at startGCPercent and the setting
// before it comes back after; an operator's GOGC is left alone.
func TestStartGC(t *testing.T) {
	before := gcPercent()
	t.Setenv("GOGC", "")
	restore := startGC()
	if got := gcPercent(); got != startGCPercent {
		t.Errorf("GOGC during the load: %d, want %d", got, startGCPercent)
	}
	restore()
	if got := gcPercent(); got != before {
		t.Errorf("GOGC after the load: %d, want %d as before", got, before)
	}

	// Two starts that overlap (Mains in one test process): the first to
	// finish leaves startGCPercent for the other, the last sets it back.
	first, second := startGC(), startGC()
	first()
	first() // a second call changes nothing
	if got := gcPercent(); got != startGCPercent {
		t.Errorf("GOGC while a second start runs: %d, want %d", got, startGCPercent)
	}
	second()
	if got := gcPercent(); got != before {
		t.Errorf("GOGC after both starts: %d, want %d as before", got, before)
	}

	t.Setenv("GOGC", "150")
	restore = startGC()
	if got := gcPercent(); got != before {
		t.Errorf("GOGC during the load with GOGC set by the operator: %d, want %d untouched", got, before)
	}
	restore()
}
