package nats

import (
	"fmt"
	"testing"
	"time"
)

// TestConsumeReportsElsewhere runs two instances of a partitioned group on
// the one durable consumer: each hands back (ErrElsewhere) the reports of
// the other's household. Every report reaches the instance that holds its
// household and is acknowledged there; none is terminated or handled by
// the other.
func TestConsumeReportsElsewhere(t *testing.T) {
	ts := newTestServer(t)
	holds := map[string]string{"a": "alice", "b": "bob"}
	consumers := map[string]*consumer{}
	handled := map[string]*consumer{}
	for name, household := range holds {
		b := newBus(t, connect(t, ts.url()), fastConfig())
		c := startConsumer(t, b, func(r Report) error {
			if r.Policy != household {
				return fmt.Errorf("%w: %s is not held by %s", ErrElsewhere, r.Policy, name)
			}
			return nil
		})
		consumers[name], handled[household] = c, c
	}
	pub := connect(t, ts.url())
	const n = 20
	for i := range n {
		publish(t, pub, "rebalance.fills.alice.taxable", fillJSON(t, fmt.Sprintf("fa%d", i), "o"))
		publish(t, pub, "rebalance.fills.bob.taxable", fillJSON(t, fmt.Sprintf("fb%d", i), "o"))
	}
	checkFor(t, 20*time.Second, func() error {
		info, err := consumerInfo(pub, "REBALANCE_REPORTS", DefaultConsumer)
		if err != nil {
			return err
		}
		if info.NumAckPending != 0 || info.AckFloor.Stream != 2*n {
			return fmt.Errorf("ack pending %d, ack floor %d (want %d)", info.NumAckPending, info.AckFloor.Stream, 2*n)
		}
		return nil
	})
	for household, c := range handled {
		got := map[string]bool{}
		for _, r := range c.seen() {
			if r.Policy == household {
				got[r.Fill.FillID] = true
			}
		}
		if len(got) != n {
			t.Errorf("%s's holder handled %d of its %d fills", household, len(got), n)
		}
	}
}
