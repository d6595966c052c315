package feeds

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
	"github.com/rebalancerd/rebalancerd/internal/events"
)

// natsBuffer is the number of messages a NATSFeed buffers for its Run loop
// before nats.go drops new ones as a slow consumer.
const natsBuffer = 1024

// NATSFeed is a Source of prices pushed on NATS: each message on its
// subject is an events.Price. It uses a core subscription: prices are
// informational, a lost one is replaced by the next, and the Guard catches
// a feed that falls silent.
type NATSFeed struct {
	nc      *nats.Conn
	subject string
	name    string
	clock   func() time.Time
	log     *zap.Logger

	mu     sync.Mutex
	status Status
}

// NATSOption configures a NATSFeed.
type NATSOption func(*NATSFeed)

// WithNATSName sets the feed's name (default "nats").
func WithNATSName(name string) NATSOption { return func(f *NATSFeed) { f.name = name } }

// WithNATSClock sets the clock used for status times and the check of
// quote times against MaxClockSkew (default time.Now).
func WithNATSClock(clock func() time.Time) NATSOption {
	return func(f *NATSFeed) { f.clock = clock }
}

// NewNATSFeed returns a feed of the price messages on subject, such as
// events.Subjects{Prefix: p}.Prices(). A nil log discards logs.
func NewNATSFeed(nc *nats.Conn, subject string, log *zap.Logger, opts ...NATSOption) *NATSFeed {
	f := &NATSFeed{nc: nc, subject: subject, name: "nats", clock: time.Now}
	for _, o := range opts {
		o(f)
	}
	if log == nil {
		log = zap.NewNop()
	}
	f.log = log.With(zap.String("feed", f.name), zap.String("subject", subject))
	f.status = Status{Name: f.name, Kind: "nats"}
	return f
}

// Name returns the feed's name.
func (f *NATSFeed) Name() string { return f.name }

// Status returns a snapshot of the feed's health. Polls counts the
// messages received and Failures the bad ones.
func (f *NATSFeed) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status.clone()
}

// Run subscribes to the subject and delivers each valid price, as a batch
// of one quote, to sink until ctx ends; then it unsubscribes and returns
// nil. A message that is not a valid events.Price is counted as a failure,
// logged and skipped.
func (f *NATSFeed) Run(ctx context.Context, sink func([]Quote)) error {
	ch := make(chan *nats.Msg, natsBuffer)
	sub, err := f.nc.ChanSubscribe(f.subject, ch)
	if err != nil {
		return fmt.Errorf("feed %s: subscribe to %s: %w", f.name, f.subject, err)
	}
	defer func() {
		f.noteDropped(sub)
		if err := sub.Unsubscribe(); err != nil {
			f.log.Debug("unsubscribe", zap.Error(err))
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-ch:
			f.noteDropped(sub)
			q, err := f.decode(m)
			if err == nil {
				// Deliver first: once Status counts a message, the
				// engine has it.
				sink([]Quote{q})
			}
			now := f.clock()
			f.mu.Lock()
			f.status.Polls++
			if err != nil {
				f.status.Failures++
				f.status.countRejection(err)
				f.status.ConsecutiveFailures++
				f.status.LastError = err.Error()
				f.status.LastErrorAt = now
			} else {
				f.status.ConsecutiveFailures = 0
				f.status.LastSuccess = now
			}
			f.mu.Unlock()
			if err != nil {
				f.log.Warn("bad price message", zap.String("msg_subject", m.Subject), zap.Error(err))
			}
		}
	}
}

// noteDropped records how many messages nats.go dropped for sub.
func (f *NATSFeed) noteDropped(sub *nats.Subscription) {
	n, err := sub.Dropped()
	if err != nil || n < 0 {
		return
	}
	f.mu.Lock()
	f.status.Dropped = uint64(n)
	f.mu.Unlock()
}

// decode reads and checks one price message.
func (f *NATSFeed) decode(m *nats.Msg) (Quote, error) {
	var p events.Price
	if err := decimaltext.Unmarshal(m.Data, &p); err != nil {
		if errors.Is(err, decimaltext.ErrTooLong) || errors.Is(err, decimaltext.ErrNotPlain) {
			return Quote{}, reject(RejectPrice, fmt.Errorf("message on %s: %w", m.Subject, err))
		}
		// Not %w: decoding errors quote the input, which may be long.
		return Quote{}, reject(RejectMalformed, fmt.Errorf("message on %s is not a price: %s", m.Subject, truncate(err.Error(), 200)))
	}
	if p.SchemaVersion < 0 {
		return Quote{}, reject(RejectSchema, fmt.Errorf("message on %s has schema_version %d, below 0", m.Subject, p.SchemaVersion))
	}
	if p.SchemaVersion > events.SchemaVersion {
		return Quote{}, reject(RejectSchema, fmt.Errorf("message on %s has schema_version %d, newer than %d", m.Subject, p.SchemaVersion, events.SchemaVersion))
	}
	q := Quote{Symbol: p.Symbol, Price: p.Price, At: p.At.UTC(), Source: f.name}
	if err := checkQuote(q, f.clock(), MaxClockSkew); err != nil {
		return Quote{}, fmt.Errorf("message on %s: %w", m.Subject, err)
	}
	return q, nil
}

// truncate shortens s to at most n bytes (plus an ellipsis), on a rune
// boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
