package engine

import (
	"flag"
	"fmt"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/state"
)

var startupHouseholds = flag.String("startup-households", "10000",
	"BenchmarkStartup: comma-separated numbers of households (e.g. 10000,100000)")

// BenchmarkStartup: parsing n household policies and loading them, on a
// first start (no saved state: each ledger is seeded from its holdings
// and saved) and on a restart (each ledger read back), with the state in
// the former directory layout (state.Dir, a file per household) and in
// the state file (state.Store), back to back. Besides the whole start
// (ns/op), it reports the engine's Load alone (load-s, the part the store
// changes) and the heap the loaded engine holds (heap-MiB).
func BenchmarkStartup(b *testing.B) {
	clk := clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC))
	var counts []int
	for _, f := range strings.Split(*startupHouseholds, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("-startup-households: %q is not a number of households", f)
		}
		counts = append(counts, n)
	}
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
		// The heap the loaded engine holds, after a collection.
		goruntime.GC()
		var ms goruntime.MemStats
		goruntime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
		b.ReportMetric(load.Seconds(), "load-s")
		e.Close()
		if err := closeStore(); err != nil { // commits what is queued: part of the start's cost
			b.Fatal(err)
		}
	}
	for _, n := range counts {
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
