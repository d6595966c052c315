package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/events"
)

// Ack is JetStream's acknowledgement that an order is stored.
type Ack struct {
	OrderID  string
	Stream   string
	Sequence uint64
	// Duplicate is true when the stream already held a message with this
	// order id, stored by an earlier call or by an earlier attempt of this
	// call whose acknowledgement was lost: the order is stored once.
	Duplicate bool
}

// UnackedError reports messages that JetStream did not acknowledge before
// the publishing call had to stop. Each may or may not be stored: publish
// them again with the same ids (within the stream's Duplicates window) or
// reconcile against the stream.
type UnackedError struct {
	// IDs are the Nats-Msg-Id of the unacknowledged messages: order ids
	// for PublishOrders, "plan-<id>" for PublishPlan.
	IDs []string
	// Err is why the call stopped: its context's error or a closed
	// connection.
	Err error
	// Last is the last publish error seen, if any.
	Last error
}

// Error lists the unacknowledged ids.
func (e *UnackedError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "nats: %d message(s) not acknowledged by JetStream (%s): %v",
		len(e.IDs), strings.Join(e.IDs, ", "), e.Err)
	if e.Last != nil {
		fmt.Fprintf(&sb, " (last publish error: %v)", e.Last)
	}
	return sb.String()
}

// Unwrap returns the cause and the last publish error.
func (e *UnackedError) Unwrap() []error {
	if e.Last == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.Last}
}

// outMsg is one message to publish with acknowledgement.
type outMsg struct {
	id      string // Nats-Msg-Id
	subject string
	data    []byte
}

// PublishOrders publishes orders to JetStream, each on
// Subjects.Order(policy, account) with Nats-Msg-Id set to its OrderID, and
// returns their acks in the order of orders.
//
// The publishes are concurrent. One that fails or times out is retried,
// with the same id and a growing pause, until acknowledged or ctx ends: a
// timeout does not mean the order was not stored, and the stream's dedupe
// makes the retry safe (its Ack then says Duplicate). When ctx ends first,
// it returns the acks received so far and an *UnackedError naming the
// others. An invalid order (empty id, a policy or account that is not a
// subject token, a schema version other than events.SchemaVersion, an id
// twice in the batch) fails the whole call before anything is published.
func (b *Bus) PublishOrders(ctx context.Context, orders []events.Order) ([]Ack, error) {
	msgs := make([]outMsg, len(orders))
	seen := make(map[string]bool, len(orders))
	for i, o := range orders {
		switch {
		case o.OrderID == "":
			return nil, fmt.Errorf("nats: order %d of %d: empty order id", i+1, len(orders))
		case seen[o.OrderID]:
			return nil, fmt.Errorf("nats: order %s appears twice in the batch", o.OrderID)
		case o.SchemaVersion != events.SchemaVersion:
			return nil, fmt.Errorf("nats: order %s: schema version %d, want %d", o.OrderID, o.SchemaVersion, events.SchemaVersion)
		}
		seen[o.OrderID] = true
		if err := checkToken(o.Policy); err != nil {
			return nil, fmt.Errorf("nats: order %s: policy: %w", o.OrderID, err)
		}
		if err := checkToken(o.Account); err != nil {
			return nil, fmt.Errorf("nats: order %s: account: %w", o.OrderID, err)
		}
		data, err := json.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("nats: order %s: encode: %w", o.OrderID, err)
		}
		msgs[i] = outMsg{id: o.OrderID, subject: b.subjects.Order(o.Policy, o.Account), data: data}
	}
	packs, err := b.publishAcked(ctx, "orders", msgs)
	acks := make([]Ack, 0, len(orders))
	dups := 0
	for i, pa := range packs {
		if pa == nil {
			continue
		}
		acks = append(acks, Ack{OrderID: orders[i].OrderID, Stream: pa.Stream, Sequence: pa.Sequence, Duplicate: pa.Duplicate})
		if pa.Duplicate {
			dups++
		}
	}
	if err != nil {
		return acks, err
	}
	if len(orders) > 0 {
		b.log.Debug("orders published", zap.Int("orders", len(orders)), zap.Int("duplicates", dups),
			zap.String("plan_id", orders[0].PlanID))
	}
	return acks, nil
}

// PublishPlan publishes a plan to JetStream on Subjects.Plan(policy) with
// Nats-Msg-Id "plan-"+ID, retrying like PublishOrders until acknowledged or
// ctx ends (then the error is an *UnackedError).
func (b *Bus) PublishPlan(ctx context.Context, p events.Plan) error {
	if p.Plan == nil {
		return errors.New("nats: plan: no plan")
	}
	if p.ID == "" {
		return errors.New("nats: plan: empty plan id")
	}
	if p.SchemaVersion != events.SchemaVersion {
		return fmt.Errorf("nats: plan %s: schema version %d, want %d", p.ID, p.SchemaVersion, events.SchemaVersion)
	}
	if err := checkToken(p.Policy); err != nil {
		return fmt.Errorf("nats: plan %s: policy: %w", p.ID, err)
	}
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("nats: plan %s: encode: %w", p.ID, err)
	}
	_, err = b.publishAcked(ctx, "plan", []outMsg{{id: "plan-" + p.ID, subject: b.subjects.Plan(p.Policy), data: data}})
	return err
}

// PublishAlert publishes an alert to JetStream on Subjects.Alert(policy)
// with Nats-Msg-Id = AlertID, retrying like PublishOrders until
// acknowledged or ctx ends (then the error is an *UnackedError).
func (b *Bus) PublishAlert(ctx context.Context, a events.Alert) error {
	if a.AlertID == "" {
		return errors.New("nats: alert: empty alert id")
	}
	if err := checkToken(a.Policy); err != nil {
		return fmt.Errorf("nats: alert %s: policy: %w", a.AlertID, err)
	}
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("nats: alert %s: encode: %w", a.AlertID, err)
	}
	_, err = b.publishAcked(ctx, "alert", []outMsg{{id: a.AlertID, subject: b.subjects.Alert(a.Policy), data: data}})
	return err
}

// PublishDrift publishes a drift snapshot with a core publish on
// Subjects.Drift(policy): informational, at most once, not stored.
func (b *Bus) PublishDrift(d events.Drift) error {
	if err := checkToken(d.Policy); err != nil {
		return fmt.Errorf("nats: drift: policy: %w", err)
	}
	data, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("nats: drift of %s: encode: %w", d.Policy, err)
	}
	subject := b.subjects.Drift(d.Policy)
	if err := b.sendable(context.Background()); err != nil {
		return fmt.Errorf("nats: publish %s: %w", subject, err)
	}
	if err := b.nc.Publish(subject, data); err != nil {
		return fmt.Errorf("nats: publish %s: %w", subject, err)
	}
	return nil
}

// pending is one publish awaiting its ack.
type pending struct {
	i int
	f jetstream.PubAckFuture
}

// publishAcked publishes msgs to the orders stream until each is
// acknowledged or ctx ends. acks[i] is the ack of msgs[i], nil if none.
func (b *Bus) publishAcked(ctx context.Context, kind string, msgs []outMsg) (acks []*jetstream.PubAck, err error) {
	acks = make([]*jetstream.PubAck, len(msgs))
	if limit := b.nc.MaxPayload(); limit > 0 {
		for _, m := range msgs {
			if n := len(m.data); int64(n) > limit {
				return acks, fmt.Errorf("nats: %s %s: %d bytes exceeds the server's max payload %d", kind, m.id, n, limit)
			}
		}
	}
	todo := make([]int, len(msgs))
	for i := range todo {
		todo[i] = i
	}
	bo := b.newBackoff()
	var last error
	for round := 1; ; round++ {
		failed, errs, stop := b.publishRound(ctx, msgs, todo, acks)
		if len(errs) > 0 {
			last = errs[len(errs)-1]
		}
		if stop == nil && len(failed) == 0 {
			if round > 1 {
				b.log.Info("JetStream publish acknowledged after retries", zap.String("kind", kind),
					zap.Int("messages", len(msgs)), zap.Int("rounds", round))
			}
			return acks, nil
		}
		if stop == nil {
			wait := bo.next()
			b.log.Warn("JetStream publish not acknowledged; retrying with the same message ids",
				zap.String("kind", kind), zap.Int("unacknowledged", len(failed)), zap.Int("of", len(msgs)),
				zap.Strings("ids", firstIDs(msgs, failed, 10)), zap.Int("round", round),
				zap.Duration("retry_in", wait), zap.Error(last))
			stop = sleepCtx(ctx, wait)
		}
		if stop != nil {
			var ids []string
			for i, a := range acks {
				if a == nil {
					ids = append(ids, msgs[i].id)
				}
			}
			return acks, &UnackedError{IDs: ids, Err: stop, Last: last}
		}
		todo = failed
	}
}

// publishRound publishes msgs[todo] asynchronously, at most MaxInFlight
// awaiting their ack at a time, and waits for each ack. It records acks
// and returns the indices that failed with their errors. stop is not nil
// when the call must end: ctx ended or the connection is closed.
func (b *Bus) publishRound(ctx context.Context, msgs []outMsg, todo []int, acks []*jetstream.PubAck) (failed []int, errs []error, stop error) {
	window := make([]pending, 0, min(len(todo), b.cfg.MaxInFlight))
	next := 0
	for next < len(todo) || len(window) > 0 {
		for next < len(todo) && len(window) < b.cfg.MaxInFlight {
			if err := b.sendable(ctx); err != nil {
				// Halted, stopping or no longer the lease holder: send
				// nothing more (PublishMsgAsync does not look at ctx).
				return failed, errs, err
			}
			i := todo[next]
			next++
			m := msgs[i]
			// A fresh message each attempt: the client keeps the one it
			// publishes until its ack or timeout.
			f, err := b.js.PublishMsgAsync(&natsgo.Msg{Subject: m.subject, Data: m.data},
				jetstream.WithMsgID(m.id), jetstream.WithExpectStream(b.ordersStream))
			if err != nil {
				if errors.Is(err, natsgo.ErrConnectionClosed) {
					return failed, append(errs, err), err
				}
				failed, errs = append(failed, i), append(errs, fmt.Errorf("%s: %w", m.id, err))
				continue
			}
			window = append(window, pending{i: i, f: f})
		}
		if len(window) == 0 {
			continue
		}
		// Acks mostly come back in order: waiting on the oldest keeps the
		// window full without a goroutine per message.
		p := window[0]
		window = window[1:]
		select {
		case a := <-p.f.Ok():
			acks[p.i] = a
		case err := <-p.f.Err():
			failed, errs = append(failed, p.i), append(errs, fmt.Errorf("%s: %w", msgs[p.i].id, err))
		case <-ctx.Done():
			return failed, errs, ctx.Err()
		}
	}
	if b.nc.IsClosed() && len(failed) > 0 {
		return failed, errs, natsgo.ErrConnectionClosed
	}
	return failed, errs, nil
}

// firstIDs returns the ids of at most n of msgs[idx], for logs.
func firstIDs(msgs []outMsg, idx []int, n int) []string {
	ids := make([]string, 0, min(len(idx), n))
	for _, i := range idx[:min(len(idx), n)] {
		ids = append(ids, msgs[i].id)
	}
	return ids
}
