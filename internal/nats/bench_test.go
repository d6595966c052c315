package nats

import (
	"fmt"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
)

// BenchmarkPublishOrders publishes one household's rebalance, 5 orders,
// per op to an embedded server and waits for every ack, back to back, with
// the embedded default (fsync every write) and with a periodic fsync, over
// loopback TCP and in process (how the daemon connects to its embedded
// server).
func BenchmarkPublishOrders(b *testing.B) {
	for _, bc := range []struct {
		name      string
		sync      time.Duration
		inProcess bool
	}{
		{"tcp/sync=always", 0, false}, {"tcp/sync=2m", 2 * time.Minute, false},
		{"inprocess/sync=always", 0, true}, {"inprocess/sync=2m", 2 * time.Minute, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bus := benchBus(b, bc.sync, bc.inProcess, StreamConfig{})
			template := householdOrders("bench", 5)
			batch := append(template[:0:0], template...)
			ctx := b.Context()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				for j := range batch {
					batch[j].OrderID = fmt.Sprintf("bench-%d-%d", i, j)
				}
				acks, err := bus.PublishOrders(ctx, batch)
				if err != nil || len(acks) != len(batch) || acks[0].Duplicate {
					b.Fatalf("op %d: %d acks, err %v", i, len(acks), err)
				}
			}
			b.ReportMetric(float64(5*b.N)/b.Elapsed().Seconds(), "orders/s")
		})
	}
}

// BenchmarkPublishPlan publishes one household's plan per op, 2 orders
// and the plan event, in process to an embedded server, and waits for the
// acks: as one atomic batch, and one message at a time (orders, then the
// event once they are acknowledged), with each sync setting.
func BenchmarkPublishPlan(b *testing.B) {
	for _, bc := range []struct {
		name    string
		sync    time.Duration
		noBatch bool
	}{
		{"sync=always/batch", 0, false}, {"sync=always/one-by-one", 0, true},
		{"sync=2m/batch", 2 * time.Minute, false}, {"sync=2m/one-by-one", 2 * time.Minute, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bus := benchBus(b, bc.sync, true, StreamConfig{NoAtomicBatches: bc.noBatch})
			ctx := b.Context()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				id := fmt.Sprintf("bench-%d", i)
				orders := householdOrders(id, 2)
				if _, _, err := publishPlan(ctx, bus, orders, testPlan(id, orders)); err != nil {
					b.Fatalf("op %d: %v", i, err)
				}
			}
		})
	}
}

// benchBus starts an embedded server with the given sync interval and
// returns a bus connected to it, in process or over loopback TCP.
func benchBus(b *testing.B, sync time.Duration, inProcess bool, cfg StreamConfig) *Bus {
	b.Helper()
	s, err := StartEmbedded(EmbeddedConfig{Port: -1, StoreDir: b.TempDir(), SyncInterval: sync}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	var nc *natsgo.Conn
	if inProcess {
		nc, err = ConnectEmbedded(s, nil, nil)
	} else {
		nc, err = Connect(ConnConfig{URL: s.ClientURL()}, nil, nil)
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	bus, err := NewBus(b.Context(), nc, cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	return bus
}

// BenchmarkParseReportHugeQuantity decodes a fill whose quantity has
// 1,000,000 digits: refused by decimaltext's length check before any
// decimal is parsed (parsing it takes seconds; see
// BenchmarkUnmarshalHugeQuantity in internal/decimaltext).
func BenchmarkParseReportHugeQuantity(b *testing.B) {
	data := []byte(`{"schema_version":1,"fill_id":"f1","order_id":"o1","status":"filled","quantity":"` +
		strings.Repeat("1", 1_000_000) + `"}`)
	for b.Loop() {
		if _, err := parseReport("rebalance", "rebalance.fills.p.a", data); RejectReason(err) != ReportBadNumber {
			b.Fatalf("parseReport: %v, want reason %s", err, ReportBadNumber)
		}
	}
}
