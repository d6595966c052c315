package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// LeaseConfig configures a Lease.
type LeaseConfig struct {
	// Bucket is the key-value bucket holding the lease, created if absent
	// with TTL as its max age.
	Bucket string
	// Key names the lease in the bucket.
	Key string
	// Holder names this instance; it is stored in the lease for operators.
	Holder string
	// TTL bounds how long the lease outlives a dead holder: the key
	// expires two thirds of TTL after its last renewal, and the rest
	// covers a standby's polling and the server's expiry.
	TTL time.Duration
	// Replicas of the bucket in a cluster; default 1.
	Replicas int
}

// errLeaseTTL: instances of one group disagree on the lease TTL.
var errLeaseTTL = errors.New("lease TTL mismatch")

// ErrLeaseLost is returned by Hold when the lease could not be renewed
// before it expired, or another instance holds it.
var ErrLeaseLost = errors.New("lease lost")

// ErrNotHolder is returned by Term (and by the writes fenced with it) when
// this instance does not hold the lease with the safety margin left.
var ErrNotHolder = errors.New("not the lease holder")

// Lease is a lease on a key of a JetStream key-value bucket: at most one
// instance holds it at a time. Acquire creates the key only if it is
// absent (a create-if-absent write); Hold renews it by compare-and-set on
// the revision it last wrote, ten times per TTL. The bucket's max age is
// two thirds of the TTL, so a key that is not renewed disappears then
// and a standby, polling twenty times per TTL, acquires it within the TTL
// of the holder's death.
//
// The holder stops considering itself the holder well before the server
// can let the key expire: Valid reports false once the key's life minus a
// safety margin of a fifth of the TTL has passed since the start of the
// last confirmed renewal, measured on this process's monotonic clock.
//
// Every value the holder writes carries a token drawn at acquisition, so a
// renewal whose reply was lost (a NATS outage: the client buffers the
// renewals that time out and flushes them all on reconnect, each expecting
// the same revision; the first is stored, the others are refused) is
// recognised by the token, whichever of them was stored: Hold steps down
// only when the key is gone or holds another acquisition's token, or when
// no renewal was confirmed for a whole TTL (the key has expired at the
// server by then). Between the end of validity and that, the holder does
// not publish but keeps renewing, and becomes valid again when a renewal
// is confirmed.
type Lease struct {
	kv  jetstream.KeyValue
	cfg LeaseConfig
	log *zap.Logger

	mu       sync.Mutex
	rev      uint64
	term     uint64    // the key's revision at acquisition
	token    string    // drawn at acquisition, written with every renewal
	renewed  time.Time // start of the last confirmed write
	acquired time.Time
	seen     string // the holder last seen (Holder)
}

// leaseValue is what the lease key holds.
type leaseValue struct {
	Holder string `json:"holder"`
	// Token identifies one acquisition by one instance.
	Token    string    `json:"token,omitempty"`
	Acquired time.Time `json:"acquired"`
	Renewed  time.Time `json:"renewed"`
}

// NewLease creates (or updates) the bucket and returns an unheld lease.
func NewLease(ctx context.Context, b *Bus, cfg LeaseConfig) (*Lease, error) {
	if cfg.Key == "" || cfg.Holder == "" {
		return nil, errors.New("nats: lease: bucket, key and holder are required")
	}
	lb, err := OpenLeaseBucket(ctx, b, cfg)
	if err != nil {
		return nil, err
	}
	return lb.Lease(cfg.Key, cfg.Holder), nil
}

// LeaseBucket is a key-value bucket of leases that share one TTL: the
// planner lease of an active/standby group, or the partition leases and
// member keys of a partitioned group (Partitions).
type LeaseBucket struct {
	kv  jetstream.KeyValue
	cfg LeaseConfig
	log *zap.Logger
}

// OpenLeaseBucket creates (or updates) the bucket of cfg (Bucket, TTL,
// Replicas; Key and Holder are not used). Every instance of a group must
// give the same TTL: the bucket's max age is the keys' life.
func OpenLeaseBucket(ctx context.Context, b *Bus, cfg LeaseConfig) (*LeaseBucket, error) {
	if cfg.TTL < time.Second {
		return nil, fmt.Errorf("nats: lease TTL %v: at least 1s", cfg.TTL)
	}
	if cfg.Bucket == "" {
		return nil, errors.New("nats: lease: bucket, key and holder are required")
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	var kv jetstream.KeyValue
	err := b.retry(ctx, "create or update lease bucket "+cfg.Bucket, func(ctx context.Context) error {
		// Every instance of the group must agree on the TTL: the bucket's
		// max age is the key's life, and an instance with a shorter TTL
		// would shorten the holder's lease under it.
		if existing, err := b.js.KeyValue(ctx, cfg.Bucket); err == nil {
			st, err := existing.Status(ctx)
			if err != nil {
				return err
			}
			if st.TTL() != keyLife(cfg.TTL) {
				return fmt.Errorf("%w: lease_ttl %v does not match the group's (the bucket keeps keys %v, a lease_ttl of %v): "+
					"give every instance the same lease_ttl", errLeaseTTL, cfg.TTL, st.TTL(), st.TTL()*3/2)
			}
		} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return err
		}
		var err error
		kv, err = b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      cfg.Bucket,
			Description: "rebalancerd leases: which instance plans and publishes",
			History:     1,
			TTL:         keyLife(cfg.TTL),
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("nats: lease bucket %s: %w", cfg.Bucket, err)
	}
	return &LeaseBucket{kv: kv, cfg: cfg, log: b.log}, nil
}

// Lease returns an unheld lease on key, held under the name holder.
func (lb *LeaseBucket) Lease(key, holder string) *Lease {
	cfg := lb.cfg
	cfg.Key, cfg.Holder = key, holder
	return &Lease{kv: lb.kv, cfg: cfg, log: lb.log.With(zap.String("lease", cfg.Bucket+"/"+cfg.Key))}
}

// keyLife is how long the lease key lives after its last write.
func keyLife(ttl time.Duration) time.Duration { return ttl * 2 / 3 }

// ReconnectWait is the pause between a lease holder's NATS reconnect
// attempts: a tenth of the TTL, at most DefaultReconnectWait. With the
// client's default of 2s a lease shorter than about 4.3s lapsed in every
// NATS restart, however short, before the client even tried to reconnect.
// With it, a holder keeps its lease through an outage of up to about 0.4
// TTL (docs/OPERATIONS.md, "High availability").
func ReconnectWait(ttl time.Duration) time.Duration { return min(DefaultReconnectWait, ttl/10) }

// validFor is how long after the start of its last successful write the
// holder considers the lease its own: the key's life minus a margin.
func (l *Lease) validFor() time.Duration { return keyLife(l.cfg.TTL) - l.cfg.TTL/5 }

// renewEvery is how often the holder renews.
func (l *Lease) renewEvery() time.Duration { return l.cfg.TTL / 10 }

// poll is how often a waiting instance tries to acquire.
func (l *Lease) poll() time.Duration { return l.cfg.TTL / 20 }

// Acquire blocks until this instance holds the lease or ctx ends.
func (l *Lease) Acquire(ctx context.Context) error {
	waiting := ""
	for {
		ok, err := l.TryAcquire(ctx)
		if ok {
			return nil
		}
		if err != nil {
			l.log.Warn("lease: acquire failed; retrying", zap.Error(err))
		} else if h := l.holder(ctx); h != waiting {
			waiting = h
			l.mu.Lock()
			l.seen = h
			l.mu.Unlock()
			l.log.Info("lease held by another instance; standing by", zap.String("holder", h))
		}
		if err := sleepCtx(ctx, l.poll()); err != nil {
			return err
		}
	}
}

// TryAcquire makes one attempt to acquire the lease: ok is true when this
// instance now holds it, false with a nil error when another instance
// does.
func (l *Lease) TryAcquire(ctx context.Context) (ok bool, err error) {
	start := time.Now()
	token, err := newToken(l.cfg.Holder)
	if err != nil {
		return false, err
	}
	v, _ := json.Marshal(leaseValue{Holder: l.cfg.Holder, Token: token, Acquired: start.UTC(), Renewed: start.UTC()})
	rev, err := l.kv.Create(ctx, l.cfg.Key, v)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	l.mu.Lock()
	l.rev, l.term, l.token, l.renewed, l.acquired = rev, rev, token, start, start
	l.seen = l.cfg.Holder
	l.mu.Unlock()
	l.log.Info("lease acquired", zap.String("holder", l.cfg.Holder), zap.Duration("ttl", l.cfg.TTL),
		zap.Uint64("term", rev))
	return true, nil
}

// newToken draws the token of one acquisition.
func newToken(holder string) (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("nats: lease token: %w", err)
	}
	return holder + "/" + hex.EncodeToString(b[:]), nil
}

// holder returns the current holder's name, or "" if unknown.
func (l *Lease) holder(ctx context.Context) string {
	e, err := l.kv.Get(ctx, l.cfg.Key)
	if err != nil {
		return ""
	}
	var v leaseValue
	if json.Unmarshal(e.Value(), &v) != nil {
		return ""
	}
	return v.Holder
}

// Holder returns the holder of the lease as this instance last saw it:
// itself once it acquired the lease, else the holder Acquire last read
// ("" before that). It reads nothing from NATS (health checks call it).
func (l *Lease) Holder() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen
}

// Valid reports whether this instance holds the lease with a safety margin
// left before the server could let it expire. It reads the time on every
// call (the monotonic clock, which runs on while the process is paused),
// so a holder resumed after a long pause sees that its lease has lapsed
// before any timer has fired.
func (l *Lease) Valid() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.validLocked()
}

func (l *Lease) validLocked() bool {
	return l.rev != 0 && time.Since(l.renewed) < l.validFor()
}

// Term returns the lease's term, the key's revision when this instance
// acquired it (terms grow with each acquisition), while Valid holds;
// otherwise an error wrapping ErrNotHolder. Writes to the shared state
// carry it (StateStoreConfig.Term).
func (l *Lease) Term() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.validLocked() {
		if l.rev == 0 {
			return 0, fmt.Errorf("%w: the lease is not held", ErrNotHolder)
		}
		return 0, fmt.Errorf("%w: no renewal confirmed for %v", ErrNotHolder, time.Since(l.renewed).Round(time.Millisecond))
	}
	return l.term, nil
}

// Hold renews the lease until ctx ends (then it returns nil, still holding
// the lease: call Release) or the lease is lost (ErrLeaseLost): the key
// is gone or holds another acquisition, or no renewal was confirmed for a
// whole TTL.
func (l *Lease) Hold(ctx context.Context) error {
	t := time.NewTicker(l.renewEvery())
	defer t.Stop()
	var pending time.Time // start of the first renewal since the last confirmed one whose outcome is unknown
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		l.mu.Lock()
		rev, acquired, token, renewed := l.rev, l.acquired, l.token, l.renewed
		l.mu.Unlock()
		if rev == 0 {
			return fmt.Errorf("%w: not held", ErrLeaseLost)
		}
		start := time.Now()
		v, _ := json.Marshal(leaseValue{Holder: l.cfg.Holder, Token: token, Acquired: acquired.UTC(), Renewed: start.UTC()})
		// Not cancelled with ctx: a renewal cut short could be stored
		// without this instance learning the new revision, and Release
		// would then fail.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.renewEvery())
		next, err := l.kv.Update(rctx, l.cfg.Key, v, rev)
		cancel()
		if err == nil {
			l.confirm(rev, next, start)
			pending = time.Time{}
			continue
		}
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			// Written since rev: by a renewal of this acquisition whose
			// reply was lost (it may be any of those in flight), or by
			// another instance after the key expired.
			e, gerr := l.read()
			switch {
			case gerr == nil && e.mine:
				if pending.IsZero() {
					pending = renewed // no renewal of ours is unknown: keep the confirmed start
				}
				l.confirm(rev, e.rev, pending) // stored no earlier than it started
				pending = time.Time{}
				l.log.Info("lease: a renewal whose reply was lost was stored; keeping the lease", zap.Uint64("revision", e.rev))
				continue
			case gerr == nil:
				l.lose()
				return fmt.Errorf("%w: the key changed (holder now %q): %v", ErrLeaseLost, e.holder, err)
			}
			err = fmt.Errorf("%w (and reading the key: %v)", err, gerr)
		}
		if pending.IsZero() {
			pending = start
		}
		if since := time.Since(renewed); since >= l.cfg.TTL {
			l.lose()
			return fmt.Errorf("%w: no renewal confirmed for %v, the lease TTL (the key has expired at the server): %v",
				ErrLeaseLost, since.Round(time.Millisecond), err)
		}
		l.log.Warn("lease: renewal not confirmed; retrying", zap.Bool("valid", l.Valid()), zap.Error(err))
	}
}

// confirm records that the key holds a write of this acquisition at
// revision next, which started at start, unless the lease was released or
// lost since rev was read.
func (l *Lease) confirm(rev, next uint64, start time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.rev != rev {
		return
	}
	l.rev = next
	if start.After(l.renewed) {
		l.renewed = start
	}
}

// keyState is the lease key as read.
type keyState struct {
	rev    uint64
	holder string // "" when the key is gone
	mine   bool   // written by this acquisition
}

// read reads the lease key. A key that is gone is not an error: its
// holder is "".
func (l *Lease) read() (keyState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), l.renewEvery())
	defer cancel()
	e, err := l.kv.Get(ctx, l.cfg.Key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return keyState{}, nil
	}
	if err != nil {
		return keyState{}, err
	}
	var got leaseValue
	if err := json.Unmarshal(e.Value(), &got); err != nil {
		return keyState{rev: e.Revision(), holder: "(unreadable)"}, nil
	}
	l.mu.Lock()
	token := l.token
	l.mu.Unlock()
	return keyState{rev: e.Revision(), holder: got.Holder, mine: got.Holder == l.cfg.Holder && token != "" && got.Token == token}, nil
}

// lose forgets the lease.
func (l *Lease) lose() {
	l.mu.Lock()
	l.rev = 0
	l.mu.Unlock()
}

// Release deletes the lease if this instance still holds it, so that a
// standby takes over at once instead of after the TTL.
func (l *Lease) Release(ctx context.Context) error {
	l.mu.Lock()
	rev := l.rev
	l.rev = 0
	l.mu.Unlock()
	if rev == 0 {
		return nil
	}
	if err := l.kv.Delete(ctx, l.cfg.Key, jetstream.LastRevision(rev)); err != nil {
		return fmt.Errorf("nats: release lease %s/%s: %w", l.cfg.Bucket, l.cfg.Key, err)
	}
	l.log.Info("lease released")
	return nil
}
