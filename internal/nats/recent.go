package nats

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
	"github.com/rebalancerd/rebalancerd/internal/events"
)

// RecentOrders reads back the order events of one policy stored in the
// orders stream since the given time, oldest first. The daemon reconciles
// its journal against them at start: an order the stream holds but the
// journal lost (a power loss between the publish and the journal's fsync)
// is still pending. It reads with an ordered consumer and stops when it has
// caught up with the stream.
func (b *Bus) RecentOrders(ctx context.Context, policy string, since time.Time) ([]events.Order, error) {
	if err := checkToken(policy); err != nil {
		return nil, fmt.Errorf("nats: recent orders: policy: %w", err)
	}
	subject := b.subjects.Order(policy, "*")
	cons, err := b.js.OrderedConsumer(ctx, b.ordersStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &since,
	})
	if err != nil {
		return nil, fmt.Errorf("nats: recent orders of %s: %w", policy, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("nats: recent orders of %s: %w", policy, err)
	}
	pending := info.NumPending
	var out []events.Order
	for pending > 0 {
		batch, err := cons.Fetch(int(min(pending, 256)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("nats: recent orders of %s: %w", policy, err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			pending--
			var o events.Order
			if err := decimaltext.Unmarshal(msg.Data(), &o); err != nil {
				b.log.Warn("undecodable order event in the orders stream; skipped")
				continue
			}
			out = append(out, o)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("nats: recent orders of %s: %w", policy, err)
		}
		if n == 0 {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
