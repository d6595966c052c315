package feeds

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.uber.org/zap"
)

// PollConfig says how a Poller polls.
type PollConfig struct {
	// Interval is the time between the starts of two polls. The first
	// poll is made at once.
	Interval time.Duration
	// Timeout bounds each attempt.
	Timeout time.Duration
	// Retries is the number of extra attempts within one poll.
	Retries int
	// BackoffBase and BackoffMax shape the wait before retry n (from 0):
	// a random duration in [0, min(BackoffMax, BackoffBase*2^n)) ("full
	// jitter").
	BackoffBase, BackoffMax time.Duration
	// BreakerFailures is the number of consecutive failed polls that opens
	// the circuit breaker.
	BreakerFailures int
	// BreakerCooldown is how long an open breaker skips polls before it
	// allows one trial poll.
	BreakerCooldown time.Duration
	// MaxSkew is how far ahead of Clock a quote's time may be; a batch with
	// a quote further ahead fails.
	MaxSkew time.Duration
	// Clock gives the time for the check of quote times, the status and
	// the breaker's cooldown (the waits between polls use timers). Nil
	// means time.Now.
	Clock func() time.Time
	// Rand returns a random number in [0, n), for jitter. Nil means
	// math/rand/v2's Int64N.
	Rand func(n int64) int64
}

// DefaultPollConfig returns the defaults: a poll a minute, 10 s per
// attempt, 2 retries after 0.5 s, 1 s… up to 10 s of backoff, and a breaker
// that opens after 5 failed polls for 5 minutes.
func DefaultPollConfig() PollConfig {
	return PollConfig{
		Interval:        time.Minute,
		Timeout:         10 * time.Second,
		Retries:         2,
		BackoffBase:     500 * time.Millisecond,
		BackoffMax:      10 * time.Second,
		BreakerFailures: 5,
		BreakerCooldown: 5 * time.Minute,
		MaxSkew:         MaxClockSkew,
		Clock:           time.Now,
		Rand:            rand.Int64N,
	}
}

// Validate reports the first setting that makes no sense. Nil Clock and
// Rand are valid: they mean the defaults.
func (c PollConfig) Validate() error {
	switch {
	case c.Interval <= 0:
		return fmt.Errorf("poll interval must be positive, got %s", c.Interval)
	case c.Timeout <= 0:
		return fmt.Errorf("poll timeout must be positive, got %s", c.Timeout)
	case c.Retries < 0:
		return fmt.Errorf("retries must not be negative, got %d", c.Retries)
	case c.BackoffBase <= 0:
		return fmt.Errorf("backoff base must be positive, got %s", c.BackoffBase)
	case c.BackoffMax < c.BackoffBase:
		return fmt.Errorf("backoff max %s is less than the backoff base %s", c.BackoffMax, c.BackoffBase)
	case c.BreakerFailures < 1:
		return fmt.Errorf("breaker failures must be at least 1, got %d", c.BreakerFailures)
	case c.BreakerCooldown <= 0:
		return fmt.Errorf("breaker cooldown must be positive, got %s", c.BreakerCooldown)
	case c.MaxSkew < 0:
		return fmt.Errorf("max skew must not be negative, got %s", c.MaxSkew)
	}
	return nil
}

// backoff returns the upper bound of the wait before retry n (from 0):
// min(BackoffMax, BackoffBase*2^n), without overflow.
func (c PollConfig) backoff(n int) time.Duration {
	d := c.BackoffBase
	for range n {
		if d >= c.BackoffMax/2 {
			return c.BackoffMax
		}
		d *= 2
	}
	return min(d, c.BackoffMax)
}

// Breaker states.
const (
	breakerClosed   = iota
	breakerOpen     // polls are skipped until openUntil
	breakerHalfOpen // one trial poll is running
)

// Poller is a Source that polls a Fetcher: one poll at start, then one
// every Interval; each poll makes up to 1+Retries attempts, each bounded by
// Timeout, with jittered exponential backoff between them. After
// BreakerFailures consecutive failed polls the circuit breaker opens: polls
// are skipped for BreakerCooldown, then one trial poll of a single attempt
// is made (half-open); its success closes the breaker, its failure opens it
// again.
//
// A poll succeeds when the fetcher returns at least one quote and every
// quote is valid (symbol, positive price, a time at most MaxSkew ahead);
// the batch is then delivered with Source set to the poller's name.
type Poller struct {
	name, kind string
	f          Fetcher
	cfg        PollConfig
	log        *zap.Logger

	mu     sync.Mutex
	status Status
	state  int
}

// NewPoller returns a Poller of f. Nil cfg.Clock and cfg.Rand take their
// defaults; the rest of cfg is checked by Run. A nil log discards logs.
func NewPoller(name, kind string, f Fetcher, cfg PollConfig, log *zap.Logger) *Poller {
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Int64N
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Poller{
		name:   name,
		kind:   kind,
		f:      f,
		cfg:    cfg,
		log:    log.With(zap.String("feed", name), zap.String("kind", kind)),
		status: Status{Name: name, Kind: kind},
	}
}

// Name returns the poller's name.
func (p *Poller) Name() string { return p.name }

// Status returns a snapshot of the poller's health.
func (p *Poller) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status.clone()
}

// Run polls until ctx ends, delivering each good batch to sink, and then
// returns nil. It returns an error at once if the configuration is
// invalid. A Poller must not be run twice at the same time.
func (p *Poller) Run(ctx context.Context, sink func([]Quote)) error {
	if err := p.cfg.Validate(); err != nil {
		return fmt.Errorf("feed %s: %w", p.name, err)
	}
	tick := time.NewTicker(p.cfg.Interval)
	defer tick.Stop()
	for {
		p.tick(ctx, sink)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// tick makes one poll, or skips it while the breaker is open.
func (p *Poller) tick(ctx context.Context, sink func([]Quote)) {
	now := p.cfg.Clock()
	attempts := 1 + p.cfg.Retries
	p.mu.Lock()
	if p.state == breakerOpen {
		if now.Before(p.status.BreakerUntil) {
			p.status.Skipped++
			p.mu.Unlock()
			return
		}
		p.state = breakerHalfOpen
	}
	trial := p.state == breakerHalfOpen
	p.mu.Unlock()
	if trial {
		attempts = 1
		p.log.Warn("feed breaker half-open: trial poll")
	}

	quotes, err := p.poll(ctx, attempts)
	if ctx.Err() != nil {
		return // stopping: neither a success nor a failure
	}
	now = p.cfg.Clock()
	p.mu.Lock()
	p.status.Polls++
	if err == nil {
		wasOpen := p.state != breakerClosed
		p.state = breakerClosed
		p.status.LastSuccess = now
		p.status.ConsecutiveFailures = 0
		p.status.BreakerOpen = false
		p.status.BreakerUntil = time.Time{}
		p.mu.Unlock()
		if wasOpen {
			p.log.Warn("feed breaker closed: poll succeeded")
		}
		sink(quotes)
		return
	}
	p.status.Failures++
	p.status.countRejection(err)
	p.status.ConsecutiveFailures++
	p.status.LastError = err.Error()
	p.status.LastErrorAt = now
	failures := p.status.ConsecutiveFailures
	opens := trial || failures >= p.cfg.BreakerFailures
	if opens {
		p.state = breakerOpen
		p.status.BreakerOpen = true
		p.status.BreakerUntil = now.Add(p.cfg.BreakerCooldown)
	}
	p.mu.Unlock()
	p.log.Error("feed poll failed", zap.Int("consecutive_failures", failures), zap.Error(err))
	if opens {
		p.log.Warn("feed breaker open: skipping polls",
			zap.Int("consecutive_failures", failures), zap.Duration("cooldown", p.cfg.BreakerCooldown))
	}
}

// poll makes up to attempts attempts and returns the first good batch, or
// the last error.
func (p *Poller) poll(ctx context.Context, attempts int) ([]Quote, error) {
	var err error
	for n := range attempts {
		if n > 0 {
			wait := time.Duration(0)
			if bound := int64(p.cfg.backoff(n - 1)); bound > 0 {
				wait = time.Duration(p.cfg.Rand(bound))
			}
			if !sleep(ctx, wait) {
				return nil, ctx.Err()
			}
		}
		var quotes []Quote
		quotes, err = p.attempt(ctx)
		if err == nil {
			return quotes, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		p.log.Warn("feed attempt failed", zap.Int("attempt", n+1), zap.Int("attempts", attempts), zap.Error(err))
	}
	return nil, err
}

// attempt makes one fetch within Timeout and checks its quotes.
func (p *Poller) attempt(ctx context.Context) ([]Quote, error) {
	actx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	quotes, err := p.f.Fetch(actx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, fmt.Errorf("timed out after %s: %w", p.cfg.Timeout, err)
		}
		return nil, err
	}
	if len(quotes) == 0 {
		return nil, errors.New("the source returned no quotes")
	}
	now := p.cfg.Clock()
	out := make([]Quote, len(quotes))
	for i, q := range quotes {
		if err := checkQuote(q, now, p.cfg.MaxSkew); err != nil {
			return nil, err
		}
		q.Source = p.name
		out[i] = q
	}
	return out, nil
}

// sleep waits for d or until ctx ends; it reports whether it waited the
// whole d.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
