package state

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
)

// benchStore is what the benchmarks write to: the former directory (Dir)
// or the state file (Store).
type benchStore interface {
	Save(l *ledger.Ledger, durable bool) error
	Append(policy string, e Entry) error
	Close() error
}

// openBench opens a store of the kind named, journaling durably.
func openBench(b *testing.B, kind string) (benchStore, func() error) {
	b.Helper()
	switch kind {
	case "dir":
		d, err := OpenDir(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		d.SyncJournal = true
		return d, func() error { return nil }
	default:
		s, err := Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		return s, s.Sync
	}
}

// benchLedgers returns n household ledgers.
func benchLedgers(n int) []*ledger.Ledger {
	out := make([]*ledger.Ledger, n)
	for i := range out {
		out[i] = testLedger(fmt.Sprintf("household-%06d", i), fmt.Sprintf("%d.25", i))
	}
	return out
}

// BenchmarkSaveMany: saving 1,000 households' changed ledgers, one op:
// without durability (the first start's seeding; the store's time
// includes the commit of all of them), durably one after the other (the
// engine's fills and plans, under its lock), and durably from 16
// goroutines at once.
func BenchmarkSaveMany(b *testing.B) {
	const n = 1000
	ls := benchLedgers(n)
	for _, kind := range []string{"dir", "store"} {
		for _, mode := range []string{"seed", "durable", "durable-16-writers"} {
			b.Run(kind+"/"+mode, func(b *testing.B) {
				s, sync := openBench(b, kind)
				defer s.Close()
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					for _, l := range ls {
						l.LastFire = fmt.Sprint(i) // a change: nothing is skipped
					}
					var err error
					switch mode {
					case "seed":
						for _, l := range ls {
							if err = s.Save(l, false); err != nil {
								break
							}
						}
						if err == nil {
							err = sync()
						}
					case "durable":
						for _, l := range ls {
							if err = s.Save(l, true); err != nil {
								break
							}
						}
					default:
						err = parallel(16, n, func(k int) error { return s.Save(ls[k], true) })
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/household")
			})
		}
	}
}

// BenchmarkAppendMany: journaling a plan (one entry, two orders) for 1,000
// households durably, one after the other and from 16 goroutines.
func BenchmarkAppendMany(b *testing.B) {
	const n = 1000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("household-%06d", i)
	}
	entry := func(i, k int) Entry {
		id := fmt.Sprintf("%s-plan%d", names[k], i)
		return Entry{PlanID: id, At: testAt.Add(time.Duration(i) * time.Second),
			Orders: []events.Order{{OrderID: id + "-1", Policy: names[k]}, {OrderID: id + "-2", Policy: names[k]}}}
	}
	for _, kind := range []string{"dir", "store"} {
		for _, writers := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/writers=%d", kind, writers), func(b *testing.B) {
				s, _ := openBench(b, kind)
				defer s.Close()
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if err := parallel(writers, n, func(k int) error { return s.Append(names[k], entry(i, k)) }); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/household")
			})
		}
	}
}

// parallel runs f(0..n-1) on the given number of goroutines and returns
// the first error.
func parallel(goroutines, n int, f func(k int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for k := g; k < n; k += goroutines {
				if err := f(k); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}
