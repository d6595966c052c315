package engine

import (
	"fmt"
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/state"
)

// BenchmarkStartup: parsing n household policies and loading them, on a
// first start (no saved state: each ledger is seeded from its holdings
// and saved) and on a restart (each ledger read back), with the state in
// the former directory layout (state.Dir, a file per household) and in
// the state file (state.Store), back to back. Besides the whole start
// (ns/op), it reports the engine's Load alone (load-s, the part the store
// changes) and the heap the loaded engine holds (heap-MiB). 1,000 and
// 10,000 households; 100,000 too with -scale.
func BenchmarkStartup(b *testing.B) {
	clk := clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC))
	open := func(b *testing.B, kind, dir string) (Store, func() error) {
		if kind == "dir" {
			d, err := state.OpenDir(dir)
			if err != nil {
				b.Fatal(err)
			}
			return d, d.Close
		}
		s, err := state.Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		return s, s.Close
	}
	start := func(b *testing.B, kind, dir string, n int) {
		store, closeStore := open(b, kind, dir)
		set := householdSet(b, n)
		t0 := time.Now()
		e := New(Options{Clock: clk, Publisher: nopPublisher{}, Store: store})
		if err := e.Load(set); err != nil {
			b.Fatal(err)
		}
		load := time.Since(t0)
		b.ReportMetric(heapMiB(), "heap-MiB") // the heap the loaded engine holds
		b.ReportMetric(load.Seconds(), "load-s")
		e.Close()
		if err := closeStore(); err != nil { // commits what is queued: part of the start's cost
			b.Fatal(err)
		}
	}
	for _, n := range scaleSizes() {
		for _, kind := range []string{"dir", "store"} {
			b.Run(fmt.Sprintf("%s/first/households=%d", kind, n), func(b *testing.B) {
				for b.Loop() {
					start(b, kind, b.TempDir(), n)
				}
			})
			b.Run(fmt.Sprintf("%s/saved/households=%d", kind, n), func(b *testing.B) {
				dir := b.TempDir()
				start(b, kind, dir, n)
				b.ResetTimer()
				for b.Loop() {
					start(b, kind, dir, n)
				}
			})
		}
	}
}
