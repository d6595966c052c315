package nats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
	"github.com/rebalancerd/rebalancerd/internal/events"
)

// ErrMalformed marks a report that can never be processed. ConsumeReports
// terminates such a message (no redelivery) instead of retrying it; a
// handler may return an error wrapping ErrMalformed for the same effect.
var ErrMalformed = errors.New("malformed report")

// Report is one message from the reports stream: a fill or a positions
// snapshot, exactly one of Fill and Positions being set.
type Report struct {
	Subject string
	// Policy is parsed from the subject; Account too, for fills only.
	Policy, Account string
	Fill            *events.Fill
	Positions       *events.Positions
	CashFlow        *events.CashFlow
	// Sequence is the message's sequence in the reports stream, the same
	// on every delivery.
	Sequence uint64
	// Delivered counts the deliveries of this message, 1 the first time.
	Delivered uint64
	// Stored is when the stream stored the message.
	Stored time.Time
	// Handled is set by ReportsSince only: the daemon's reports consumer
	// acknowledged the message, which will not be delivered again.
	Handled bool
}

// ConsumeReports delivers the reports stream to handle, one message at a
// time, through the durable consumer StreamConfig.Consumer (explicit ack,
// every message from the start of the stream the first time, then from
// where it left off). Delivery is at least once: handle must be idempotent
// (Fill.FillID, Sequence).
//
// A message is acknowledged when handle returns nil. On another error it is
// negatively acknowledged with a delay (NakDelay, doubled per delivery up
// to MaxNakDelay) and redelivered then, possibly after later messages. A
// message that cannot be parsed (unknown subject shape, bad JSON, wrong
// schema_version, missing identifiers), or for which handle returns an
// error wrapping ErrMalformed, is logged and terminated: never redelivered.
//
// It runs until ctx ends, then returns nil, across server restarts and
// reconnects: when consuming fails it sets the consumer up and consumes
// again. It returns an error only when the connection is closed. Run one
// ConsumeReports per consumer name.
func (b *Bus) ConsumeReports(ctx context.Context, handle func(Report) error) error {
	if handle == nil {
		return errors.New("nats: consume reports: no handler")
	}
	bo := b.newBackoff()
	for {
		handled, err := b.consumeOnce(ctx, handle)
		if ctx.Err() != nil {
			return nil
		}
		if b.nc.IsClosed() {
			return fmt.Errorf("nats: consume reports from %s: %w", b.reportsStream, natsgo.ErrConnectionClosed)
		}
		if handled {
			bo = b.newBackoff()
		}
		wait := bo.next()
		b.log.Warn("consuming reports interrupted; consuming again", zap.String("stream", b.reportsStream),
			zap.String("consumer", b.cfg.Consumer), zap.Duration("retry_in", wait), zap.Error(err))
		if sleepCtx(ctx, wait) != nil {
			return nil
		}
	}
}

// consumeOnce sets up the consumer and handles messages until an error;
// handled says whether any message was handled.
func (b *Bus) consumeOnce(ctx context.Context, handle func(Report) error) (handled bool, err error) {
	actx, cancel := context.WithTimeout(ctx, b.cfg.AckTimeout)
	cons, err := b.js.CreateOrUpdateConsumer(actx, b.reportsStream, jetstream.ConsumerConfig{
		Durable:       b.cfg.Consumer,
		Description:   "rebalancerd: fills and positions",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       b.cfg.AckWait,
		MaxDeliver:    -1,
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		// Deleted behind our back: the daemon declared it, so declare it
		// again; reports published meanwhile were not captured.
		b.log.Error("reports stream missing; creating it again", zap.String("stream", b.reportsStream))
		_, err = b.js.CreateOrUpdateStream(actx, b.reportsStreamConfig())
		if err == nil {
			err = fmt.Errorf("stream %s was missing and has been created again", b.reportsStream)
		}
	}
	cancel()
	if err != nil {
		return false, fmt.Errorf("consumer %s on %s: %w", b.cfg.Consumer, b.reportsStream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(64))
	if err != nil {
		return false, fmt.Errorf("consume %s on %s: %w", b.cfg.Consumer, b.reportsStream, err)
	}
	defer it.Stop()
	b.log.Info("consuming reports", zap.String("stream", b.reportsStream), zap.String("consumer", b.cfg.Consumer))
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return handled, err
		}
		handled = true
		b.handleReport(ctx, msg, handle)
	}
}

// handleReport parses one message, hands it to handle and acks, naks or
// terminates it.
func (b *Bus) handleReport(ctx context.Context, msg jetstream.Msg, handle func(Report) error) {
	r, err := parseReport(b.cfg.Prefix, msg.Subject(), msg.Data())
	if meta, merr := msg.Metadata(); merr == nil {
		r.Sequence, r.Delivered, r.Stored = meta.Sequence.Stream, meta.NumDelivered, meta.Timestamp
	}
	if err == nil {
		err = handle(r)
	}
	fields := []zap.Field{zap.String("subject", r.Subject), zap.Uint64("seq", r.Sequence), zap.Uint64("delivered", r.Delivered)}
	switch {
	case errors.Is(err, ErrMalformed):
		if b.cfg.Rejected != nil {
			b.cfg.Rejected(RejectReason(err))
		}
		b.log.Error("report rejected; terminating it (it will not be redelivered)",
			append(fields, zap.Error(err), zap.ByteString("data", truncate(msg.Data(), 512)))...)
		if terr := msg.TermWithReason(truncateString(err.Error(), 256)); terr != nil {
			b.log.Warn("terminating report failed; it will be redelivered and rejected again", append(fields, zap.Error(terr))...)
		}
	case errors.Is(err, ErrElsewhere):
		// Not this instance's: back to the consumer at once for another
		// instance to take, a little later each time so that a report no
		// instance holds yet (a partition between two holders) does not
		// circulate quickly.
		delay := min(b.cfg.NakDelay/10<<min(max(r.Delivered, 1)-1, 10), b.cfg.NakDelay)
		b.log.Debug("report for another instance; handing it back", append(fields, zap.Duration("redeliver_in", delay), zap.Error(err))...)
		if nerr := msg.NakWithDelay(delay); nerr != nil {
			b.log.Warn("nak failed; the report will be redelivered after the ack wait", append(fields, zap.Error(nerr))...)
		}
	case err != nil:
		delay := b.nakDelay(r.Delivered)
		b.log.Warn("report handler failed; redelivering later", append(fields, zap.Duration("redeliver_in", delay), zap.Error(err))...)
		if nerr := msg.NakWithDelay(delay); nerr != nil {
			b.log.Warn("nak failed; the report will be redelivered after the ack wait", append(fields, zap.Error(nerr))...)
		}
	default:
		// Confirmed ack, even during shutdown: the report was applied.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.AckTimeout)
		defer cancel()
		if aerr := msg.DoubleAck(actx); aerr != nil {
			b.log.Warn("ack of a handled report not confirmed; it may be delivered again", append(fields, zap.Error(aerr))...)
		}
	}
}

// nakDelay is the redelivery delay after the delivered-th delivery failed.
func (b *Bus) nakDelay(delivered uint64) time.Duration {
	d := b.cfg.NakDelay
	for n := uint64(1); n < delivered && d < b.cfg.MaxNakDelay; n++ {
		d *= 2
	}
	return min(d, b.cfg.MaxNakDelay)
}

// ErrElsewhere marks a report that another instance of a partitioned
// group must handle (its household is in a partition this instance does
// not hold). ConsumeReports negatively acknowledges it at once with a
// short delay, so that the instance holding the partition, which pulls from
// the same durable consumer, receives it.
var ErrElsewhere = errors.New("report for another instance")

// Reasons a report is rejected, passed to StreamConfig.Rejected.
const (
	ReportNotJSON       = "malformed"      // not JSON, or wrong JSON types
	ReportSchema        = "schema_version" // a schema version this daemon does not read
	ReportMissingField  = "missing_field"  // fill_id, order_id, as_of or accounts missing
	ReportUnknownStatus = "unknown_status" // a fill status other than partial, filled, cancelled
	ReportBadSubject    = "bad_subject"    // a subject outside the fills and positions layout
	ReportBadNumber     = "bad_number"     // a decimal longer than 40 characters or with an exponent
	ReportOther         = "other"          // rejected without a reason
)

// RejectedReport is a report refused for good, with the reason. It
// matches ErrMalformed.
type RejectedReport struct {
	Reason string
	Err    error
}

// Error returns the reason's error, marked as a malformed report.
func (e *RejectedReport) Error() string { return ErrMalformed.Error() + ": " + e.Err.Error() }

// Unwrap returns ErrMalformed and the cause.
func (e *RejectedReport) Unwrap() []error { return []error{ErrMalformed, e.Err} }

// Reject marks err as the reason to refuse a report for good. Handlers
// passed to ConsumeReports may return it with a reason of their own.
func Reject(reason string, err error) error { return &RejectedReport{Reason: reason, Err: err} }

// RejectReason returns the reason of a refused report: the one given to
// Reject, or ReportOther.
func RejectReason(err error) string {
	var r *RejectedReport
	if errors.As(err, &r) && r.Reason != "" {
		return r.Reason
	}
	return ReportOther
}

// parseReport decodes a message of the reports stream by its subject:
// <prefix>.fills.<policy>.<account> or <prefix>.positions.<policy>. Errors
// wrap ErrMalformed.
func parseReport(prefix, subject string, data []byte) (Report, error) {
	r := Report{Subject: subject}
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok {
		return r, Reject(ReportBadSubject, fmt.Errorf("subject %s is not under %s", subject, prefix))
	}
	toks := strings.Split(rest, ".")
	if slices.Contains(toks, "") { // "rebalance.cashflows." names no policy
		return r, Reject(ReportBadSubject, fmt.Errorf("subject %s has an empty token", subject))
	}
	switch {
	case toks[0] == "fills" && len(toks) == 3:
		var f events.Fill
		if err := decodeReport(data, &f, &f.SchemaVersion); err != nil {
			return r, err
		}
		switch {
		case f.FillID == "":
			return r, Reject(ReportMissingField, errors.New("fill without fill_id"))
		case f.OrderID == "":
			return r, Reject(ReportMissingField, fmt.Errorf("fill %s without order_id", f.FillID))
		case f.Status != events.FillPartial && f.Status != events.FillFilled && f.Status != events.FillCancelled:
			return r, Reject(ReportUnknownStatus, fmt.Errorf("fill %s: unknown status %q", f.FillID, f.Status))
		}
		r.Policy, r.Account, r.Fill = toks[1], toks[2], &f
	case toks[0] == "positions" && len(toks) == 2:
		var p events.Positions
		if err := decodeReport(data, &p, &p.SchemaVersion); err != nil {
			return r, err
		}
		switch {
		case p.AsOf.IsZero():
			return r, Reject(ReportMissingField, errors.New("positions without as_of"))
		case len(p.Accounts) == 0:
			return r, Reject(ReportMissingField, errors.New("positions without accounts"))
		}
		r.Policy, r.Positions = toks[1], &p
	case toks[0] == "cashflows" && len(toks) == 2:
		var c events.CashFlow
		if err := decodeReport(data, &c, &c.SchemaVersion); err != nil {
			return r, err
		}
		switch {
		case c.CashFlowID == "" || c.Account == "" || c.At.IsZero():
			return r, Reject(ReportMissingField, errors.New("cash flow without cashflow_id, account or at"))
		case c.Kind != events.CashFlowDeposit && c.Kind != events.CashFlowWithdrawal:
			return r, Reject(ReportUnknownStatus, fmt.Errorf("cash flow %s: unknown kind %q", c.CashFlowID, c.Kind))
		case c.Amount.Sign() <= 0:
			return r, Reject(ReportMissingField, fmt.Errorf("cash flow %s: amount %s is not positive", c.CashFlowID, c.Amount))
		}
		r.Policy, r.Account, r.CashFlow = toks[1], c.Account, &c
	default:
		return r, Reject(ReportBadSubject, fmt.Errorf("unknown subject shape %s (want %s.fills.<policy>.<account>, %s.positions.<policy> or %s.cashflows.<policy>)",
			subject, prefix, prefix, prefix))
	}
	return r, nil
}

// decodeReport decodes JSON into v, ignoring unknown fields, and checks the
// schema version it decoded into version. Decimals longer than
// decimaltext.MaxLen or with an exponent are refused before any is parsed.
func decodeReport(data []byte, v any, version *int) error {
	if err := decimaltext.Unmarshal(data, v); err != nil {
		if errors.Is(err, decimaltext.ErrTooLong) || errors.Is(err, decimaltext.ErrNotPlain) {
			return Reject(ReportBadNumber, err)
		}
		return Reject(ReportNotJSON, err)
	}
	if *version != events.SchemaVersion {
		return Reject(ReportSchema, fmt.Errorf("schema_version %d, want %d", *version, events.SchemaVersion))
	}
	return nil
}

func truncate(b []byte, n int) []byte { return b[:min(len(b), n)] }

func truncateString(s string, n int) string { return s[:min(len(s), n)] }
