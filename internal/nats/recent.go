package nats

import (
	"context"
	"errors"
	"fmt"
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
	err := b.readSince(ctx, b.ordersStream, b.subjects.Orders(), since, func(msg jetstream.Msg) {
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
	err = b.readSince(ctx, b.reportsStream, b.subjects.Fills(), since, func(msg jetstream.Msg) {
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

// readSince hands each message of a stream's subject stored since the
// given time to each, oldest first, through one ordered consumer, and
// returns once it has caught up with what the stream held when it began.
func (b *Bus) readSince(ctx context.Context, stream, subject string, since time.Time, each func(jetstream.Msg)) error {
	cons, err := b.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
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
