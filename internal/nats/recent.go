package nats

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
	"github.com/rebalancerd/rebalancerd/internal/events"
)

// OrdersSince reads back the order events stored in the orders stream
// since the given time, of every policy, oldest first. The daemon
// reconciles its ledgers against them at start: an order the stream holds
// but a ledger lost (a power loss before the journal's fsync, a deleted or
// restored state directory) may have been executed.
//
// It reads with one ordered consumer over <prefix>.orders.>, whatever the
// number of policies (the server limits consumers per stream; see
// docs/OPERATIONS.md), and stops when it has caught up with the stream.
func (b *Bus) OrdersSince(ctx context.Context, since time.Time) ([]events.Order, error) {
	var out []events.Order
	err := b.readSince(ctx, b.ordersStream, []string{b.subjects.Orders()}, since, func(msg jetstream.Msg) {
		var o events.Order
		if err := decimaltext.Unmarshal(msg.Data(), &o); err != nil {
			b.log.Warn("undecodable order event in the orders stream; skipped", zap.String("subject", msg.Subject()))
			return
		}
		out = append(out, o)
	})
	if err != nil {
		return nil, fmt.Errorf("nats: orders since %s: %w", since.UTC().Format(time.RFC3339), err)
	}
	return out, nil
}

// FillsSince reads back the fills stored in the reports stream since the
// given time, oldest first, as ConsumeReports would deliver them (the
// stream keeps every report until its max_age, acknowledged or not), with
// one ordered consumer over <prefix>.fills.>. Messages that do not parse
// are skipped. complete is false when the stream may have dropped fills
// stored since then: it removed messages (its limits) and holds none from
// before since.
func (b *Bus) FillsSince(ctx context.Context, since time.Time) (fills []Report, complete bool, err error) {
	info, err := b.streamInfo(ctx, b.reportsStream)
	if err != nil {
		return nil, false, fmt.Errorf("nats: fills since %s: %w", since.UTC().Format(time.RFC3339), err)
	}
	st := info.State
	complete = true
	if removed := st.FirstSeq > 1 || (st.Msgs == 0 && st.LastSeq > 0); removed {
		first := st.FirstTime
		if st.Msgs == 0 {
			first = st.LastTime
		}
		complete = !first.After(since)
	}
	err = b.readSince(ctx, b.reportsStream, []string{b.subjects.Fills()}, since, func(msg jetstream.Msg) {
		r, err := parseReport(b.cfg.Prefix, msg.Subject(), msg.Data())
		if err != nil || r.Fill == nil {
			return // refused when it was consumed, and logged then
		}
		if meta, merr := msg.Metadata(); merr == nil {
			r.Sequence, r.Stored = meta.Sequence.Stream, meta.Timestamp
		}
		fills = append(fills, r)
	})
	if err != nil {
		return nil, false, fmt.Errorf("nats: fills since %s: %w", since.UTC().Format(time.RFC3339), err)
	}
	return fills, complete, nil
}

// ReportsSince reads back the positions snapshots and cash flows stored in
// the reports stream since the given time, oldest first, with one ordered
// consumer over <prefix>.positions.> and <prefix>.cashflows.>. Messages
// that do not parse are skipped (they were refused when consumed).
//
// Each report's Handled says whether the daemon's durable consumer
// (StreamConfig.Consumer) has acknowledged it, so that it will not be
// delivered again: its stream sequence is at or below the consumer's ack
// floor. When messages above the floor were acknowledged out of order (a
// report negatively acknowledged and redelivered after later ones), which
// of the delivered ones were is not known: every delivered report is then
// taken as handled, which errs on the side of distrusting the ledger. A
// consumer that does not exist has handled nothing.
func (b *Bus) ReportsSince(ctx context.Context, since time.Time) ([]Report, error) {
	handled, err := b.reportsHandled(ctx)
	if err != nil {
		return nil, fmt.Errorf("nats: reports since %s: %w", since.UTC().Format(time.RFC3339), err)
	}
	var out []Report
	subjects := []string{b.subjects.AllPositions(), b.subjects.CashFlows()}
	err = b.readSince(ctx, b.reportsStream, subjects, since, func(msg jetstream.Msg) {
		r, err := parseReport(b.cfg.Prefix, msg.Subject(), msg.Data())
		if err != nil || r.Positions == nil && r.CashFlow == nil {
			return // refused when it was consumed, and logged then
		}
		meta, err := msg.Metadata()
		if err != nil {
			return // an ordered consumer's messages have metadata
		}
		r.Sequence, r.Stored = meta.Sequence.Stream, meta.Timestamp
		r.Handled = handled(r.Sequence)
		out = append(out, r)
	})
	if err != nil {
		return nil, fmt.Errorf("nats: reports since %s: %w", since.UTC().Format(time.RFC3339), err)
	}
	return out, nil
}

// reportsHandled returns whether the durable reports consumer has
// acknowledged the message of a stream sequence, as ReportsSince explains.
func (b *Bus) reportsHandled(ctx context.Context) (func(seq uint64) bool, error) {
	var info *jetstream.ConsumerInfo
	err := b.retry(ctx, "consumer info "+b.cfg.Consumer, func(ctx context.Context) error {
		c, err := b.js.Consumer(ctx, b.reportsStream, b.cfg.Consumer)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		info, err = c.Info(ctx)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			info, err = nil, nil
		}
		return err
	})
	if err != nil || info == nil {
		return func(uint64) bool { return false }, err
	}
	floor, delivered := info.AckFloor.Stream, info.Delivered.Stream
	// The delivered sequences above the floor not awaiting an ack were
	// acknowledged out of order (or are gaps in the stream).
	outOfOrder := delivered > floor && delivered-floor > uint64(max(info.NumAckPending, 0))
	return func(seq uint64) bool {
		return seq <= floor || outOfOrder && seq <= delivered
	}, nil
}

// streamInfo returns a stream's info, retrying passing failures.
func (b *Bus) streamInfo(ctx context.Context, name string) (*jetstream.StreamInfo, error) {
	var info *jetstream.StreamInfo
	err := b.retry(ctx, "stream info "+name, func(ctx context.Context) error {
		s, err := b.js.Stream(ctx, name)
		if err != nil {
			return err
		}
		info, err = s.Info(ctx)
		return err
	})
	return info, err
}

// readSince hands each message of a stream's subjects stored since the
// given time to each, oldest first, through one ordered consumer, and
// returns once it has caught up with what the stream held when it began.
func (b *Bus) readSince(ctx context.Context, stream string, subjects []string, since time.Time, each func(jetstream.Msg)) error {
	subject := strings.Join(subjects, ", ")
	cons, err := b.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: subjects,
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &since,
	})
	if err != nil {
		return err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	pending := info.NumPending
	for pending > 0 {
		batch, err := cons.Fetch(int(min(pending, 256)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return err
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			pending--
			each(msg)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return err
		}
		if n == 0 {
			// Less than the stream held: what was read cannot be
			// taken for all there is.
			return fmt.Errorf("read of %s on %s stopped with %d messages left", subject, stream, pending)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}
