package nats

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/events"
)

// Defaults of StreamConfig.
const (
	DefaultReplicas     = 1
	DefaultMaxAge       = 30 * 24 * time.Hour
	DefaultDuplicates   = 24 * time.Hour
	DefaultConsumer     = "rebalancerd"
	DefaultAckWait      = 5 * time.Second
	DefaultNakDelay     = time.Second
	DefaultMaxNakDelay  = time.Minute
	DefaultAckTimeout   = 5 * time.Second
	DefaultRetryWait    = 100 * time.Millisecond
	DefaultMaxRetryWait = 5 * time.Second
	DefaultMaxInFlight  = 256
)

// StreamConfig configures the JetStream streams and consumer of a Bus and
// how it retries. Both streams always use file storage.
type StreamConfig struct {
	// Prefix is the subject prefix; default events.DefaultPrefix. Stream
	// names derive from it: "rebalance" gives REBALANCE_ORDERS and
	// REBALANCE_REPORTS.
	Prefix string
	// Replicas is the number of copies of each stream in a cluster;
	// default 1. Production clusters want 3.
	Replicas int
	// MaxAge is how long messages are kept; default 30 days.
	MaxAge time.Duration
	// Duplicates is the window in which JetStream drops a message whose
	// Nats-Msg-Id it has already stored; default 24h, at most MaxAge.
	Duplicates time.Duration

	// Consumer is the durable consumer name on the reports stream; default
	// "rebalancerd".
	Consumer string
	// AckWait is how long the server waits for the ack of a report before
	// redelivering it; default 5s (handling a report is one durable save,
	// and a redelivery is recognised by its fill id).
	AckWait time.Duration
	// NakDelay is the redelivery delay after a handler error, doubled at
	// each further delivery up to MaxNakDelay; defaults 1s and 1m.
	NakDelay, MaxNakDelay time.Duration

	// AckTimeout bounds the wait for one publish acknowledgement before
	// the publish is retried; default 5s.
	AckTimeout time.Duration
	// RetryWait is the first pause before retrying unacknowledged
	// publishes (and failed stream or consumer set-up), doubled at each
	// round up to MaxRetryWait; defaults 100ms and 5s.
	RetryWait, MaxRetryWait time.Duration
	// MaxInFlight bounds the publishes of one call awaiting their ack;
	// default 256.
	MaxInFlight int
	// NoAtomicBatches keeps every publish one message at a time, even on
	// a server that stores atomic batches (nats-server 2.12.1 or later):
	// PublishPlanOrders then never sends the plan event with its orders.
	NoAtomicBatches bool

	// Rejected, when set, is called with the reason (Report* constants, or
	// a handler's own) of each report refused for good, for metrics.
	Rejected func(reason string)
}

// withDefaults returns cfg with defaults applied, or an error for a
// configuration JetStream would reject or that would lose dedupe.
func (cfg StreamConfig) withDefaults() (StreamConfig, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = events.DefaultPrefix
	}
	for _, tok := range strings.Split(cfg.Prefix, ".") {
		if err := checkToken(tok); err != nil {
			return cfg, fmt.Errorf("subject prefix %q: %w", cfg.Prefix, err)
		}
	}
	setDefault(&cfg.Replicas, DefaultReplicas)
	setDefault(&cfg.MaxAge, DefaultMaxAge)
	setDefault(&cfg.Duplicates, DefaultDuplicates)
	setDefault(&cfg.Consumer, DefaultConsumer)
	setDefault(&cfg.AckWait, DefaultAckWait)
	setDefault(&cfg.NakDelay, DefaultNakDelay)
	setDefault(&cfg.MaxNakDelay, DefaultMaxNakDelay)
	setDefault(&cfg.AckTimeout, DefaultAckTimeout)
	setDefault(&cfg.RetryWait, DefaultRetryWait)
	setDefault(&cfg.MaxRetryWait, DefaultMaxRetryWait)
	setDefault(&cfg.MaxInFlight, DefaultMaxInFlight)
	for _, d := range []time.Duration{cfg.MaxAge, cfg.Duplicates, cfg.AckWait, cfg.NakDelay, cfg.AckTimeout, cfg.RetryWait} {
		if d < 0 {
			return cfg, fmt.Errorf("negative duration %s", d)
		}
	}
	cfg.MaxNakDelay = max(cfg.MaxNakDelay, cfg.NakDelay)
	cfg.MaxRetryWait = max(cfg.MaxRetryWait, cfg.RetryWait)
	switch {
	case cfg.Replicas < 1 || cfg.Replicas > 5:
		return cfg, fmt.Errorf("replicas %d: must be 1 to 5", cfg.Replicas)
	case cfg.Duplicates > cfg.MaxAge:
		return cfg, fmt.Errorf("duplicates window %s exceeds max age %s", cfg.Duplicates, cfg.MaxAge)
	case strings.ContainsAny(cfg.Consumer, ".*> \t\r\n/\\"):
		return cfg, fmt.Errorf("consumer name %q: must not contain '.', '*', '>', '/', '\\' or spaces", cfg.Consumer)
	case cfg.MaxInFlight < 1:
		return cfg, fmt.Errorf("max in flight %d: must be positive", cfg.MaxInFlight)
	}
	return cfg, nil
}

// setDefault sets *v to def when it is the zero value.
func setDefault[T int | string | time.Duration](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Bus publishes the daemon's events to NATS and consumes the executors'
// reports. It is safe for concurrent use; it owns no goroutine and needs
// no closing beyond its connection.
type Bus struct {
	nc  *natsgo.Conn
	js  jetstream.JetStream
	cfg StreamConfig
	log *zap.Logger

	subjects      events.Subjects
	ordersStream  string
	reportsStream string
	// atomic is set while the orders stream takes atomic batches: decided
	// by NewBus, cleared if the server later refuses one.
	atomic atomic.Bool

	gate        atomic.Pointer[func() error]               // SetGate
	subjectGate atomic.Pointer[func(subject string) error] // SetSubjectGate
}

// StreamNames returns the names of the orders and reports streams for a
// subject prefix: the prefix upper-cased, every character outside
// [A-Z0-9_] replaced by '_', then _ORDERS or _REPORTS.
func StreamNames(prefix string) (orders, reports string) {
	base := strings.Map(func(r rune) rune {
		switch {
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			return r
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		}
		return '_'
	}, prefix)
	return base + "_ORDERS", base + "_REPORTS"
}

// NewBus creates, or updates to cfg, the two streams of the daemon:
//
//   - <PREFIX>_ORDERS on <prefix>.orders.>, <prefix>.plans.> and
//     <prefix>.alerts.>: what the daemon decides and warns of,
//     deduplicated on Nats-Msg-Id within cfg.Duplicates;
//   - <PREFIX>_REPORTS on <prefix>.fills.>, <prefix>.positions.> and
//     <prefix>.cashflows.>: what executors report, captured even while
//     the daemon is down.
//
// While NATS is unreachable it retries until ctx ends; it fails at once on
// an invalid cfg or a definite refusal by the server (such as subjects
// already bound to another stream).
func NewBus(ctx context.Context, nc *natsgo.Conn, cfg StreamConfig, log *zap.Logger) (*Bus, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("nats: stream config: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(cfg.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("nats: jetstream: %w", err)
	}
	b := &Bus{
		nc:       nc,
		js:       js,
		cfg:      cfg,
		log:      log,
		subjects: events.Subjects{Prefix: cfg.Prefix},
	}
	b.ordersStream, b.reportsStream = StreamNames(cfg.Prefix)
	var version, why string
	for _, mk := range []func() jetstream.StreamConfig{b.ordersStreamConfig, b.reportsStreamConfig} {
		sc := mk()
		if err := b.retry(ctx, "create or update stream "+sc.Name, func(ctx context.Context) error {
			if sc.Name == b.ordersStream {
				// Decided once connected (the retry waits for that), from
				// the server this connection reached.
				version = nc.ConnectedServerVersion()
				sc.AllowAtomicPublish, why = atomicBatches(version, cfg.NoAtomicBatches)
			}
			st, err := js.CreateOrUpdateStream(ctx, sc)
			if err == nil && sc.AllowAtomicPublish {
				// A server that does not know the setting drops it.
				kept := st.CachedInfo().Config.AllowAtomicPublish
				b.atomic.Store(kept)
				if !kept {
					why = "the server did not keep allow_atomic on the stream"
				}
			}
			return err
		}); err != nil {
			return nil, fmt.Errorf("nats: stream %s (%s): %w", sc.Name, strings.Join(sc.Subjects, ", "), err)
		}
	}
	log.Info("JetStream streams ready",
		zap.String("orders_stream", b.ordersStream), zap.String("reports_stream", b.reportsStream),
		zap.Int("replicas", cfg.Replicas), zap.Duration("max_age", cfg.MaxAge),
		zap.Duration("duplicates", cfg.Duplicates), zap.String("server_version", version),
		zap.Bool("atomic_batches", b.atomic.Load()), zap.String("atomic_batches_reason", why))
	return b, nil
}

// minAtomicVersion is the first nats-server release whose atomic batches
// take Nats-Msg-Id (2.12.0 refuses the header in a batch): without it a
// retried batch could not be recognised as stored already.
var minAtomicVersion = [3]int{2, 12, 1}

// atomicBatches decides whether to publish plans as atomic batches on a
// server of this version, and says why for the log.
func atomicBatches(version string, disabled bool) (bool, string) {
	if disabled {
		return false, "disabled in the configuration"
	}
	v, ok := parseVersion(version)
	if !ok {
		return false, fmt.Sprintf("server version %q not understood", version)
	}
	for i := range v {
		if v[i] != minAtomicVersion[i] {
			if v[i] < minAtomicVersion[i] {
				return false, fmt.Sprintf("server %s is older than 2.12.1: plans are published one message at a time", version)
			}
			break
		}
	}
	return true, fmt.Sprintf("server %s stores each plan's orders and event all or none", version)
}

// parseVersion reads the major, minor and patch numbers of a server
// version such as "2.12.1" or "2.14.0-RC.1".
func parseVersion(s string) ([3]int, bool) {
	var v [3]int
	core, _, _ := strings.Cut(s, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, false
		}
		v[i] = n
	}
	return v, true
}

// AtomicBatches reports whether PublishPlanOrders stores a plan's orders
// and its event as one atomic batch.
func (b *Bus) AtomicBatches() bool { return b.atomic.Load() }

// OrdersStream is the name of the stream holding orders and plans.
func (b *Bus) OrdersStream() string { return b.ordersStream }

// ReportsStream is the name of the stream holding fills and positions.
func (b *Bus) ReportsStream() string { return b.reportsStream }

func (b *Bus) ordersStreamConfig() jetstream.StreamConfig {
	return b.streamConfig(b.ordersStream, "Orders, plans and alerts published by rebalancerd",
		b.subjects.Orders(), b.subjects.Plans(), b.subjects.Alerts())
}

func (b *Bus) reportsStreamConfig() jetstream.StreamConfig {
	return b.streamConfig(b.reportsStream, "Fills, positions and cash flows reported to rebalancerd",
		b.subjects.Fills(), b.subjects.AllPositions(), b.subjects.CashFlows())
}

func (b *Bus) streamConfig(name, desc string, subjects ...string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        name,
		Description: desc,
		Subjects:    subjects,
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Replicas:    b.cfg.Replicas,
		MaxAge:      b.cfg.MaxAge,
		Duplicates:  b.cfg.Duplicates,
	}
}

// retry runs op until it succeeds, fails permanently, or ctx ends, with
// exponential backoff between attempts.
func (b *Bus) retry(ctx context.Context, what string, op func(context.Context) error) error {
	bo := b.newBackoff()
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, b.cfg.AckTimeout)
		err := op(actx)
		cancel()
		if err == nil {
			if attempt > 1 {
				b.log.Info("NATS operation succeeded after retries", zap.String("op", what), zap.Int("attempts", attempt))
			}
			return nil
		}
		if permanent(err) || b.nc.IsClosed() {
			return err
		}
		wait := bo.next()
		b.log.Warn("NATS operation failed; retrying", zap.String("op", what),
			zap.Int("attempt", attempt), zap.Duration("retry_in", wait), zap.Error(err))
		if werr := sleepCtx(ctx, wait); werr != nil {
			return fmt.Errorf("%w (last error: %w)", werr, err)
		}
	}
}

// permanent reports whether err is a definite refusal by the JetStream API
// (a 4xx answer: invalid or conflicting configuration) or a closed
// connection, which retrying cannot fix.
func permanent(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code >= 400 && apiErr.Code < 500 {
		return true
	}
	return errors.Is(err, natsgo.ErrConnectionClosed) || errors.Is(err, errLeaseTTL)
}

// backoff yields exponentially growing, jittered waits.
type backoff struct {
	cur, max time.Duration
}

func (b *Bus) newBackoff() *backoff {
	return &backoff{cur: b.cfg.RetryWait, max: b.cfg.MaxRetryWait}
}

// next returns a wait in [cur/2, cur] and doubles cur up to max.
func (bo *backoff) next() time.Duration {
	d := bo.cur/2 + rand.N(bo.cur/2+1)
	bo.cur = min(2*bo.cur, bo.max)
	return d
}

// sleepCtx waits for d or until ctx ends, returning ctx's error then.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkToken checks that s can be one token of a NATS subject.
func checkToken(s string) error {
	if s == "" {
		return errors.New("empty subject token")
	}
	for _, r := range s {
		if r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f {
			return fmt.Errorf("subject token %q contains %q", s, r)
		}
	}
	return nil
}
