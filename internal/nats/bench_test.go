package nats

import (
	"fmt"
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
			s, err := StartEmbedded(EmbeddedConfig{Port: -1, StoreDir: b.TempDir(), SyncInterval: bc.sync}, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				s.Shutdown()
				s.WaitForShutdown()
			})
			var nc *natsgo.Conn
			if bc.inProcess {
				nc, err = ConnectEmbedded(s, nil, nil)
			} else {
				nc, err = Connect(ConnConfig{URL: s.ClientURL()}, nil, nil)
			}
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(nc.Close)
			bus, err := NewBus(b.Context(), nc, StreamConfig{}, nil)
			if err != nil {
				b.Fatal(err)
			}
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
