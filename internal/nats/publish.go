package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/shortlist"
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
		len(e.IDs), shortlist.Join(e.IDs, shortlist.Max, ", "), e.Err)
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
	msgs, err := b.orderMsgs(orders)
	if err != nil {
		return nil, err
	}
	return b.publishOrderMsgs(ctx, orders, msgs)
}

// orderMsgs checks orders and encodes them as messages.
func (b *Bus) orderMsgs(orders []events.Order) ([]outMsg, error) {
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
	return msgs, nil
}

// publishOrderMsgs publishes the messages of orders one by one and turns
// their acks into Acks.
func (b *Bus) publishOrderMsgs(ctx context.Context, orders []events.Order, msgs []outMsg) ([]Ack, error) {
	packs, err := b.publishAcked(ctx, "orders", msgs)
	acks := orderAcks(orders, packs)
	if err != nil {
		return acks, err
	}
	if len(orders) > 0 {
		b.log.Debug("orders published", zap.Int("orders", len(orders)), zap.Int("duplicates", countDuplicates(acks)),
			zap.String("plan_id", orders[0].PlanID))
	}
	return acks, nil
}

// orderAcks returns the Acks of the orders whose message has an ack
// (packs[i] is that of orders[i]; it may be longer, with the plan event).
func orderAcks(orders []events.Order, packs []*jetstream.PubAck) []Ack {
	acks := make([]Ack, 0, len(orders))
	for i, o := range orders {
		if pa := packs[i]; pa != nil {
			acks = append(acks, Ack{OrderID: o.OrderID, Stream: pa.Stream, Sequence: pa.Sequence, Duplicate: pa.Duplicate})
		}
	}
	return acks
}

func countDuplicates(acks []Ack) int {
	n := 0
	for _, a := range acks {
		if a.Duplicate {
			n++
		}
	}
	return n
}

// maxAtomicBatch is the most messages nats-server stores in one atomic
// batch by default.
const maxAtomicBatch = 1000

// Batches the server refused as batches.
var (
	// errNoAtomic: the server does not take atomic batches (any more).
	errNoAtomic = errors.New("nats: atomic batch refused")
	// errBatchTooLarge: the server takes smaller batches than this one.
	errBatchTooLarge = errors.New("nats: atomic batch too large for the server")
)

// PublishPlanOrders publishes a plan's orders like PublishOrders and, when
// the orders stream takes atomic batches (AtomicBatches), the plan event
// with them in one batch: JetStream stores all of them or none, the plan
// event last, carrying the batch's commit, so that no plan is ever stored
// in part, and a server with sync_interval always syncs its disk once for
// the whole plan (nats-server 2.15 or later; earlier ones once per
// message). Every message keeps its Nats-Msg-Id: when an earlier attempt
// was stored but its ack lost, the server refuses the retried batch whole
// as containing a duplicate id, and each message is then confirmed alone
// by its id, acknowledged as a duplicate.
//
// planSent reports whether the plan event was stored with the orders. It
// is false when plan is nil, without atomic batches (a server older than
// 2.12.1, StreamConfig.NoAtomicBatches, a plan larger than a batch, or a
// server that refuses the batch): then only the orders are published, and
// the caller publishes the plan event with PublishPlan. Errors are those of
// PublishOrders; the *UnackedError of a batch names every message of it,
// since it was stored whole or not at all.
func (b *Bus) PublishPlanOrders(ctx context.Context, orders []events.Order, plan *events.Plan) (acks []Ack, planSent bool, err error) {
	msgs, err := b.orderMsgs(orders)
	if err != nil {
		return nil, false, err
	}
	if plan == nil || !b.atomic.Load() {
		acks, err := b.publishOrderMsgs(ctx, orders, msgs)
		return acks, false, err
	}
	pm, err := b.planMsg(*plan)
	if err != nil {
		return nil, false, err
	}
	for _, o := range orders {
		if o.PlanID != plan.ID {
			return nil, false, fmt.Errorf("nats: order %s is of plan %s, not %s", o.OrderID, o.PlanID, plan.ID)
		}
	}
	if len(msgs)+1 > maxAtomicBatch {
		b.log.Warn("plan too large for one atomic batch; its orders are published one by one, then its event",
			zap.String("plan_id", plan.ID), zap.Int("orders", len(orders)), zap.Int("max_batch", maxAtomicBatch))
		acks, err := b.publishOrderMsgs(ctx, orders, msgs)
		return acks, false, err
	}
	packs, err := b.publishAtomic(ctx, append(msgs, pm))
	if errors.Is(err, errNoAtomic) || errors.Is(err, errBatchTooLarge) {
		// Nothing of the batch was stored: one message at a time then.
		msg := "plan too large for the server's atomic batches; its orders are published one by one, then its event"
		if errors.Is(err, errNoAtomic) {
			b.atomic.Store(false)
			msg = "the server refused an atomic batch; plans are published one message at a time from now on"
		}
		b.log.Warn(msg, zap.String("plan_id", plan.ID), zap.Int("orders", len(orders)), zap.Error(err))
		acks, err := b.publishOrderMsgs(ctx, orders, msgs)
		return acks, false, err
	}
	acks = orderAcks(orders, packs)
	if err != nil {
		return acks, false, err
	}
	b.log.Debug("plan published as one atomic batch", zap.String("plan_id", plan.ID), zap.Int("orders", len(orders)),
		zap.Int("duplicates", countDuplicates(acks)))
	return acks, true, nil
}

// publishAtomic stores msgs as one atomic batch on the orders stream,
// retrying (in a new batch, with the same message ids) until JetStream
// acknowledges it or ctx ends. acks[i] is the ack of msgs[i], nil if none.
func (b *Bus) publishAtomic(ctx context.Context, msgs []outMsg) ([]*jetstream.PubAck, error) {
	const kind = "plan batch"
	acks := make([]*jetstream.PubAck, len(msgs))
	if err := b.checkPayloads(kind, msgs); err != nil {
		return acks, err
	}
	bo := b.newBackoff()
	for round := 1; ; round++ {
		ack, err := b.sendBatch(ctx, msgs)
		var apiErr *jetstream.APIError
		errors.As(err, &apiErr)
		switch {
		case err == nil:
			// A batch takes consecutive sequences; the ack has the last.
			first := ack.Sequence + 1 - uint64(len(msgs))
			for i := range acks {
				acks[i] = &jetstream.PubAck{Stream: ack.Stream, Sequence: first + uint64(i), Domain: ack.Domain}
			}
			if round > 1 {
				b.log.Info("JetStream publish acknowledged after retries", zap.String("kind", kind),
					zap.Int("messages", len(msgs)), zap.Int("rounds", round))
			}
			return acks, nil
		case apiErr != nil && apiErr.ErrorCode == jetstreamext.JSErrCodeBatchPublishDuplicateMsgID:
			// Stored by an earlier attempt whose ack was lost: alone, each
			// message is acknowledged as a duplicate. (One missing, which
			// only an earlier one-by-one attempt could leave, is stored.)
			b.log.Info("plan batch already stored by an earlier attempt; confirming its messages by id",
				zap.Strings("ids", firstIDs(msgs, indices(len(msgs)), 10)), zap.Int("round", round))
			return b.publishAcked(ctx, kind, msgs)
		case apiErr != nil && apiErr.ErrorCode == jetstreamext.JSErrCodeBatchPublishExceedsLimit:
			return acks, fmt.Errorf("%w: %w", errBatchTooLarge, err)
		case apiErr != nil && slices.Contains([]jetstream.ErrorCode{jetstreamext.JSErrCodeBatchPublishNotEnabled,
			jetstreamext.JSErrCodeBatchPublishUnsupportedHeader}, apiErr.ErrorCode),
			errors.Is(err, jetstreamext.ErrInvalidBatchAck):
			// An invalid ack is a server that took the messages one by
			// one, ignoring the batch headers: each is stored once, by id.
			return acks, fmt.Errorf("%w: %w", errNoAtomic, err)
		}
		var stop error
		switch {
		case errors.Is(err, natsgo.ErrConnectionClosed) || b.nc.IsClosed():
			stop = natsgo.ErrConnectionClosed
		case ctx.Err() != nil:
			stop = ctx.Err()
		case errors.Is(err, errNotSent):
			stop = err
		default:
			wait := bo.next()
			b.log.Warn(logRetry, zap.String("kind", kind), zap.Int("unacknowledged", len(msgs)), zap.Int("of", len(msgs)),
				zap.Strings("ids", firstIDs(msgs, indices(len(msgs)), 10)), zap.Int("round", round),
				zap.Duration("retry_in", wait), zap.Error(err))
			stop = sleepCtx(ctx, wait)
		}
		if stop != nil {
			ids := make([]string, len(msgs))
			for i, m := range msgs {
				ids[i] = m.id
			}
			return acks, &UnackedError{IDs: ids, Err: stop, Last: err}
		}
	}
}

// sendBatch makes one attempt to store msgs as an atomic batch: each
// message but the last is sent without waiting (the server stages it), the
// last commits the batch and waits at most AckTimeout for the ack, so one
// round trip per plan.
func (b *Bus) sendBatch(ctx context.Context, msgs []outMsg) (*jetstreamext.BatchAck, error) {
	// No flow control (jetstreamext's default waits for the server's
	// reply to the first message): a plan is far below the server's
	// batch limit, and every message but the commit goes out as a core
	// publish. What a batch costs beyond that round trip is the server's
	// staging of it (docs/BENCHMARKS.md).
	bp, err := jetstreamext.NewBatchPublisher(b.js, jetstreamext.BatchFlowControl{AckFirst: false, AckEvery: 0, AckTimeout: b.cfg.AckTimeout})
	if err != nil {
		return nil, fmt.Errorf("nats: batch publisher: %w", err)
	}
	expect := jetstreamext.WithBatchExpectStream(b.ordersStream)
	for i, m := range msgs {
		if err := b.beforeSend(ctx, m.subject); err != nil {
			_ = bp.Discard() // the server drops the staged part after its timeout
			return nil, err
		}
		nm := &natsgo.Msg{Subject: m.subject, Data: m.data, Header: natsgo.Header{jetstream.MsgIDHeader: []string{m.id}}}
		if i < len(msgs)-1 {
			if err := bp.AddMsg(nm, expect); err != nil {
				_ = bp.Discard()
				return nil, fmt.Errorf("%s: %w", m.id, err)
			}
			continue
		}
		actx, cancel := context.WithTimeout(ctx, b.cfg.AckTimeout)
		defer cancel()
		return bp.CommitMsg(actx, nm, expect)
	}
	return nil, errors.New("nats: empty batch")
}

// indices returns 0..n-1.
func indices(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// PublishPlan publishes a plan to JetStream on Subjects.Plan(policy) with
// Nats-Msg-Id "plan-"+ID, retrying like PublishOrders until acknowledged or
// ctx ends (then the error is an *UnackedError).
func (b *Bus) PublishPlan(ctx context.Context, p events.Plan) error {
	m, err := b.planMsg(p)
	if err != nil {
		return err
	}
	_, err = b.publishAcked(ctx, "plan", []outMsg{m})
	return err
}

// planMsg checks a plan event and encodes it as a message.
func (b *Bus) planMsg(p events.Plan) (outMsg, error) {
	if p.Plan == nil {
		return outMsg{}, errors.New("nats: plan: no plan")
	}
	if p.ID == "" {
		return outMsg{}, errors.New("nats: plan: empty plan id")
	}
	if p.SchemaVersion != events.SchemaVersion {
		return outMsg{}, fmt.Errorf("nats: plan %s: schema version %d, want %d", p.ID, p.SchemaVersion, events.SchemaVersion)
	}
	if err := checkToken(p.Policy); err != nil {
		return outMsg{}, fmt.Errorf("nats: plan %s: policy: %w", p.ID, err)
	}
	data, err := json.Marshal(p)
	if err != nil {
		return outMsg{}, fmt.Errorf("nats: plan %s: encode: %w", p.ID, err)
	}
	return outMsg{id: "plan-" + p.ID, subject: b.subjects.Plan(p.Policy), data: data}, nil
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
	if err := b.beforeSend(context.Background(), subject); err != nil {
		return fmt.Errorf("nats: publish %s: %w", subject, err)
	}
	if err := b.nc.Publish(subject, data); err != nil {
		return fmt.Errorf("nats: publish %s: %w", subject, err)
	}
	return nil
}

// logRetry is logged when a publish is retried.
const logRetry = "JetStream publish not acknowledged; retrying with the same message ids"

// pending is one publish awaiting its ack.
type pending struct {
	i int
	f jetstream.PubAckFuture
}

// publishAcked publishes msgs to the orders stream until each is
// acknowledged or ctx ends. acks[i] is the ack of msgs[i], nil if none.
func (b *Bus) publishAcked(ctx context.Context, kind string, msgs []outMsg) (acks []*jetstream.PubAck, err error) {
	acks = make([]*jetstream.PubAck, len(msgs))
	if err := b.checkPayloads(kind, msgs); err != nil {
		return acks, err
	}
	todo := indices(len(msgs))
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
			b.log.Warn(logRetry,
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
			if err := b.beforeSend(ctx, msgs[todo[next]].subject); err != nil {
				// Halted or stopping: send nothing more (PublishMsgAsync
				// does not look at ctx).
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

// checkPayloads refuses messages larger than the server takes.
func (b *Bus) checkPayloads(kind string, msgs []outMsg) error {
	if limit := b.nc.MaxPayload(); limit > 0 {
		for _, m := range msgs {
			if n := len(m.data); int64(n) > limit {
				return fmt.Errorf("nats: %s %s: %d bytes exceeds the server's max payload %d", kind, m.id, n, limit)
			}
		}
	}
	return nil
}

// beforeSend is called before each message of every publish goes out,
// one by one or in an atomic batch: the one place that may stop a publish
// between two messages. It returns ctx's error once ctx has ended (the
// kill switch, shutdown) or its deadline has passed on the clock (a
// process resumed after a pause runs before its timers), or the gate's
// (SetGate: a high-availability holder whose lease lapsed; SetSubjectGate:
// the partition of subject's household is no longer held), and nothing
// more is sent.
func (b *Bus) beforeSend(ctx context.Context, subject string) error {
	err := clock.ContextErr(ctx)
	if g := b.gate.Load(); err == nil && g != nil {
		err = (*g)()
	}
	if g := b.subjectGate.Load(); err == nil && g != nil {
		err = (*g)(subject)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errNotSent, err)
	}
	return nil
}

// errNotSent marks beforeSend's errors: the publish stops, it is not
// retried.
var errNotSent = errors.New("nats: not sending")

// firstIDs returns the ids of at most n of msgs[idx], for logs.
func firstIDs(msgs []outMsg, idx []int, n int) []string {
	ids := make([]string, 0, min(len(idx), n))
	for _, i := range idx[:min(len(idx), n)] {
		ids = append(ids, msgs[i].id)
	}
	return ids
}
