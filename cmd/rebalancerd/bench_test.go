package main

import (
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/config"
	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/feeds"
)

// BenchmarkTickToAck measures, for one household on the embedded server,
// the time from a price update reaching the engine to JetStream's
// acknowledgement of the plan's order events: price check, drift, plan,
// journal write, publish and acks. With atomic batches (the default on
// this server) the plan event is the batch's commit and is timed with the
// orders; with batch=off (the path for servers older than 2.12.1) it
// follows the acks and is not timed. Each iteration moves VTI across its band, waits for the
// acks, then fills the orders (untimed) so that the next tick may plan
// again. It reports p50 and p99 over the run.
//
// The price tick publishes the plan itself when the publisher is idle
// (engine.Options.InlinePublishTimeout); the publisher=goroutine cases
// measure the hand-off to the publisher goroutine instead, for comparison.
func BenchmarkTickToAck(b *testing.B) {
	for _, bc := range []struct {
		name         string
		sync         time.Duration // of the embedded server's JetStream
		journalFsync bool
		inline       time.Duration // engine.Options.InlinePublishTimeout
		noBatch      bool          // nats.stream.atomic_batches: false
	}{
		// The defaults: every acknowledged order and every journaled plan
		// survives a power loss.
		{"sync=always/journal=fsync", 0, true, 0, false},
		// nats-server's own default (fsync every 2 minutes), where a
		// JetStream ack costs about 20 µs, with the journal likewise
		// written without fsync (it survives a crash of the process).
		{"sync=2m/journal=write", 2 * time.Minute, false, 0, false},
		{"sync=2m/journal=fsync", 2 * time.Minute, true, 0, false},
		{"sync=2m/journal=write/publisher=goroutine", 2 * time.Minute, false, -1, false},
		// The same without atomic batches: one message at a time, as
		// before them and on servers older than 2.12.1.
		{"sync=always/journal=fsync/batch=off", 0, true, 0, true},
		{"sync=2m/journal=write/batch=off", 2 * time.Minute, false, 0, true},
	} {
		b.Run(bc.name, func(b *testing.B) { benchTickToAck(b, bc.sync, bc.journalFsync, bc.inline, bc.noBatch) })
	}
}

func benchTickToAck(b *testing.B, sync time.Duration, journalFsync bool, inline time.Duration, noBatch bool) {
	acked := make(chan time.Duration, 1)
	var start time.Time // set before each tick; read in the callback after
	pol := policyText("threshold", "")
	d := startDaemon(b, pol, monday0959, func(c *config.Config, m *Main) {
		c.NATS.EmbeddedSync = sync
		c.JournalFsync = journalFsync
		c.NATS.AtomicBatches = !noBatch
		m.InlinePublishTimeout = inline
		// The time is taken in the callback: the moment JetStream has
		// acknowledged the orders, not when this goroutine wakes up.
		m.OnPublished = func(_, _ string, _ int) { acked <- time.Since(start) }
		m.Log = zap.NewNop() // measure the daemon, not the test log
		// Keep the ledger the size of a real day's: the benchmark makes a
		// plan every two minutes of fake time.
		m.Retention = time.Minute
	})
	price := func(p string) []feeds.Quote {
		now := d.clock.Now()
		return []feeds.Quote{
			{Symbol: "VTI", Price: decimal.RequireFromString(p), At: now, Source: "bench"},
			{Symbol: "BND", Price: decimal.RequireFromString("100"), At: now, Source: "bench"},
		}
	}
	d.Engine.Quotes(price("100"))
	// Write back what earlier benchmarks left dirty (the fsync=always
	// case leaves megabytes) so that the kernel's writeback does not run
	// during this one's timed ticks.
	syscall.Sync()
	var lat []time.Duration
	prices := []string{"130", "100"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		d.clock.Advance(2 * time.Minute) // past check_every and cooldown
		qs := price(prices[i%2])
		start = time.Now()
		d.Engine.Quotes(qs)
		select {
		case l := <-acked:
			lat = append(lat, l)
		case <-time.After(10 * time.Second):
			b.Fatalf("iteration %d: no acknowledged plan (status %+v)", i, d.policyStatus())
		}
		b.StopTimer()
		// Let the publisher finish with this plan (the durable ledger
		// save, the plan event) before the next tick: ticks are minutes
		// apart in real life, and the overlap would measure contention
		// the benchmark creates.
		for st := d.Engine.Status(); st.Outbox > 0 || st.Policies[0].Unacked > 0; st = d.Engine.Status() {
			time.Sleep(50 * time.Microsecond)
		}
		for _, o := range d.policyStatus().PendingOrders {
			err := d.Engine.HandleReport(engine.Report{Policy: o.Policy, Account: o.Account, Fill: &events.Fill{
				SchemaVersion: 1, FillID: "f-" + o.OrderID, OrderID: o.OrderID, Status: events.FillFilled,
				Quantity: o.Quantity, Price: o.Price, Fees: decimal.Zero, At: d.clock.Now()}})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
