package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/partition"
)

// PartitionsConfig configures Partitions.
type PartitionsConfig struct {
	// Bucket is the lease bucket (LeaseConfig.Bucket), shared with the
	// active/standby mode's planner lease.
	Bucket string
	// Instance names this instance; it must be unique in the group.
	Instance string
	// Partitions is the number of partitions, the same for every
	// instance of the group (from 2 to partition.Max).
	Partitions int
	// TTL is the leases' TTL (LeaseConfig.TTL).
	TTL time.Duration
	// Replicas of the bucket in a cluster; default 1.
	Replicas int
	// OnChange is called from a goroutine of Run's, one call at a time,
	// after the set of partitions this instance holds has changed, with
	// the set in ascending order (changes made while it runs are
	// coalesced into the next call). It may take long (loading the
	// households of the partitions acquired): Run goes on meanwhile. A
	// partition leaves the set when its lease is released or lost, and
	// Term and MayPublish refuse its households from that moment on,
	// before OnChange is called. A partition lost and acquired again
	// between two calls is in both sets, under a new term (HeldTerm):
	// what was loaded of it under the old one must be loaded afresh.
	OnChange func(held []int)
}

// Partitions spreads the partitions of a group over its live instances
// with JetStream key-value leases, one per partition, in the lease bucket:
// key "partition.<n>" is a Lease (create-if-absent, renewed by
// compare-and-set, fenced by its term), key "member.<instance>" says that
// an instance is alive (written every tenth of the TTL, it expires two
// thirds of the TTL after its last write, like a lease).
//
// Every tenth of the TTL, Run reads the bucket and aims at
// partition.Target(partitions, live instances): below it, it acquires free
// partitions (starting at an offset drawn from its name, so that instances
// do not all race for the same ones); above it (an instance joined), it
// releases the extra ones, its highest-numbered. Nothing else moves a
// partition, so a group whose membership does not change does not move
// any (with 64 partitions over 3 instances: 22, 22 and 20). A dead
// instance's leases expire two thirds of the TTL after its last renewal and
// the others take its partitions at their next read.
type Partitions struct {
	cfg    PartitionsConfig
	bucket *LeaseBucket
	log    *zap.Logger
	token  string // this run's member token
	offset int

	mu     sync.Mutex
	leases map[int]*heldPartition
	live   int

	lost    chan lostPartition
	changes chan struct{} // a change for OnChange, buffered 1
	done    chan struct{} // closed when Run ends
}

// heldPartition is a partition lease this instance holds, with the
// goroutine renewing it.
type heldPartition struct {
	lease  *Lease
	cancel context.CancelFunc
	held   chan struct{} // closed when Hold has returned
}

// lostPartition reports a partition lease lost (Hold failed) or a
// household whose state another instance wrote (Drop).
type lostPartition struct {
	part  int
	lease *Lease // nil from Drop
	err   error
}

// memberValue is what a member key holds.
type memberValue struct {
	Instance   string    `json:"instance"`
	Token      string    `json:"token"`
	Partitions int       `json:"partitions"`
	Started    time.Time `json:"started"`
}

// Keys of the lease bucket.
const (
	plannerKey   = "planner" // the active/standby mode's lease
	memberPrefix = "member."
	partPrefix   = "partition."
)

func partKey(p int) string { return partPrefix + strconv.Itoa(p) }

// ErrPartitionMode is returned by NewPartitions when the group's bucket
// shows instances of another mode or partition count: two instances
// mapping households differently could plan the same one.
var ErrPartitionMode = errors.New("partitioned group mismatch")

// NewPartitions opens the lease bucket and checks that the group agrees
// with cfg: no active/standby planner lease, no live member with another
// number of partitions.
func NewPartitions(ctx context.Context, b *Bus, cfg PartitionsConfig) (*Partitions, error) {
	if cfg.Partitions < 2 || cfg.Partitions > partition.Max {
		return nil, fmt.Errorf("nats: partitions %d: from 2 to %d", cfg.Partitions, partition.Max)
	}
	if err := checkToken(cfg.Instance); err != nil {
		return nil, fmt.Errorf("nats: partitions: instance %q: %w", cfg.Instance, err)
	}
	lb, err := OpenLeaseBucket(ctx, b, LeaseConfig{Bucket: cfg.Bucket, TTL: cfg.TTL, Replicas: cfg.Replicas})
	if err != nil {
		return nil, err
	}
	var tok [8]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return nil, fmt.Errorf("nats: partitions: token: %w", err)
	}
	p := &Partitions{cfg: cfg, bucket: lb, log: b.log.With(zap.String("partitions", cfg.Bucket)),
		token: hex.EncodeToString(tok[:]), offset: partition.Of(cfg.Instance, cfg.Partitions),
		leases: map[int]*heldPartition{}, lost: make(chan lostPartition, 16), changes: make(chan struct{}, 1),
		done: make(chan struct{})}
	snap, err := p.read(ctx)
	if err != nil {
		return nil, err
	}
	if err := p.check(snap); err != nil {
		return nil, err
	}
	return p, nil
}

// snapshot is the lease bucket as read: live members and held partitions.
type snapshot struct {
	members map[string]memberValue
	taken   map[int]bool
	planner bool
}

// read reads every key of the bucket.
func (p *Partitions) read(ctx context.Context) (snapshot, error) { return p.bucket.read(ctx) }

// CheckNoPartitions refuses to run an active/standby instance in a group
// whose bucket shows live instances of a partitioned group.
func (lb *LeaseBucket) CheckNoPartitions(ctx context.Context) error {
	s, err := lb.read(ctx)
	if err != nil {
		return err
	}
	for name, m := range s.members {
		return fmt.Errorf("%w: instance %s runs with ha.partitions %d in %s, this one with one planner: every instance of a group needs the same ha.partitions",
			ErrPartitionMode, name, m.Partitions, lb.cfg.Bucket)
	}
	return nil
}

// read reads every key of the bucket.
func (lb *LeaseBucket) read(ctx context.Context) (snapshot, error) {
	s := snapshot{members: map[string]memberValue{}, taken: map[int]bool{}}
	ctx, cancel := context.WithTimeout(ctx, max(lb.cfg.TTL/2, time.Second))
	defer cancel()
	w, err := lb.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return s, fmt.Errorf("nats: partitions: read %s: %w", lb.cfg.Bucket, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return s, fmt.Errorf("nats: partitions: read %s: %w", lb.cfg.Bucket, ctx.Err())
		case e := <-w.Updates():
			if e == nil {
				return s, nil
			}
			key := e.Key()
			switch {
			case key == plannerKey:
				s.planner = true
			case strings.HasPrefix(key, memberPrefix):
				var m memberValue
				if json.Unmarshal(e.Value(), &m) == nil {
					s.members[strings.TrimPrefix(key, memberPrefix)] = m
				}
			case strings.HasPrefix(key, partPrefix):
				if n, err := strconv.Atoi(strings.TrimPrefix(key, partPrefix)); err == nil {
					s.taken[n] = true
				}
			}
		}
	}
}

// check refuses a group that does not agree with this instance.
func (p *Partitions) check(s snapshot) error {
	if s.planner {
		return fmt.Errorf("%w: an active/standby instance (ha.partitions 1) holds the planner lease in %s: "+
			"every instance of a group needs the same ha.partitions", ErrPartitionMode, p.cfg.Bucket)
	}
	for name, m := range s.members {
		if m.Partitions != p.cfg.Partitions {
			return fmt.Errorf("%w: instance %s runs with ha.partitions %d, this one with %d: every instance of a group needs the same ha.partitions",
				ErrPartitionMode, name, m.Partitions, p.cfg.Partitions)
		}
	}
	return nil
}

// Run keeps this instance's membership and its share of the partitions
// until ctx ends, then releases every partition it holds (call it once
// nothing is published any more) and returns nil. It returns an error
// when the group stops agreeing with this instance (ErrPartitionMode),
// after releasing its partitions.
func (p *Partitions) Run(ctx context.Context) error {
	defer close(p.done)
	var wg sync.WaitGroup
	beatCtx, stopBeat := context.WithCancel(context.WithoutCancel(ctx))
	wg.Go(func() { p.heartbeat(beatCtx) })
	wg.Go(func() { p.notify(beatCtx) })
	defer func() {
		p.releaseAll()
		stopBeat()
		wg.Wait()
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = p.bucket.kv.Delete(dctx, memberPrefix+p.cfg.Instance)
		cancel()
	}()
	// Let instances started at about the same time register before the
	// first count: an instance counting itself alone takes every
	// partition and gives most of them back soon after.
	if sleepCtx(ctx, p.cfg.TTL/2) != nil {
		return nil
	}
	t := time.NewTicker(p.poll())
	defer t.Stop()
	for {
		snap, err := p.read(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			p.log.Warn("partitions: reading the group failed; retrying", zap.Error(err))
		default:
			if err := p.check(snap); err != nil {
				p.log.Error("partitions: the group no longer agrees with this instance; releasing every partition", zap.Error(err))
				return err
			}
			p.balance(ctx, snap)
		}
		select {
		case <-ctx.Done():
			return nil
		case l := <-p.lost:
			p.forget(l)
		case <-t.C:
		}
	}
}

// poll is how often Run reads the group.
func (p *Partitions) poll() time.Duration { return p.cfg.TTL / 10 }

// heartbeat writes this instance's member key every tenth of the TTL
// until ctx ends.
func (p *Partitions) heartbeat(ctx context.Context) {
	v, _ := json.Marshal(memberValue{Instance: p.cfg.Instance, Token: p.token, Partitions: p.cfg.Partitions, Started: time.Now().UTC()})
	for {
		wctx, cancel := context.WithTimeout(ctx, keyLife(p.cfg.TTL)/2)
		_, err := p.bucket.kv.Put(wctx, memberPrefix+p.cfg.Instance, v)
		cancel()
		if err != nil && ctx.Err() == nil {
			p.log.Warn("partitions: membership not renewed; retrying", zap.Error(err))
		}
		if sleepCtx(ctx, p.poll()) != nil {
			return
		}
	}
}

// balance acquires free partitions up to the target, or releases those
// above it.
func (p *Partitions) balance(ctx context.Context, s snapshot) {
	live := len(s.members)
	if _, ok := s.members[p.cfg.Instance]; !ok {
		live++ // this instance's first write may not be visible yet
	}
	target := partition.Target(p.cfg.Partitions, live)
	p.mu.Lock()
	p.live = live
	held := len(p.leases)
	p.mu.Unlock()
	switch {
	case held < target:
		acquired := 0
		for i := range p.cfg.Partitions {
			if held+acquired == target || ctx.Err() != nil {
				break
			}
			part := (p.offset + i) % p.cfg.Partitions
			if s.taken[part] || p.holds(part) {
				continue
			}
			l := p.bucket.Lease(partKey(part), p.cfg.Instance)
			ok, err := l.TryAcquire(ctx)
			if err != nil {
				p.log.Warn("partitions: acquire failed", zap.Int("partition", part), zap.Error(err))
				continue
			}
			if ok {
				p.hold(part, l)
				acquired++
			}
		}
		if acquired > 0 {
			p.log.Info("partitions acquired", zap.Int("acquired", acquired), zap.Int("held", held+acquired),
				zap.Int("target", target), zap.Int("live_instances", live))
			p.changed()
		}
	case held > target:
		p.mu.Lock()
		parts := make([]int, 0, len(p.leases))
		for part := range p.leases {
			parts = append(parts, part)
		}
		sort.Sort(sort.Reverse(sort.IntSlice(parts)))
		parts = parts[:held-target]
		out := make([]*heldPartition, len(parts))
		for i, part := range parts {
			out[i] = p.leases[part]
			delete(p.leases, part) // from now on Term and Valid refuse it
		}
		p.mu.Unlock()
		p.log.Info("partitions released to a joining instance", zap.Ints("partitions", parts), zap.Int("held", target),
			zap.Int("target", target), zap.Int("live_instances", live))
		// Term and MayPublish refuse them already: what the engine still
		// does for their households is neither written nor published,
		// as after a lease's expiry.
		p.changed()
		for _, h := range out {
			h.release()
		}
	}
}

// holds reports whether this instance holds part.
func (p *Partitions) holds(part int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.leases[part]
	return ok
}

// hold records a lease just acquired and renews it until it is released
// or lost.
func (p *Partitions) hold(part int, l *Lease) {
	ctx, cancel := context.WithCancel(context.Background())
	h := &heldPartition{lease: l, cancel: cancel, held: make(chan struct{})}
	p.mu.Lock()
	p.leases[part] = h
	p.mu.Unlock()
	go func() {
		err := l.Hold(ctx)
		close(h.held) // before reporting: forget waits for it
		if err != nil {
			select {
			case p.lost <- lostPartition{part: part, lease: l, err: err}:
			case <-p.done:
			}
		}
	}()
}

// release stops renewing a partition's lease and deletes it.
func (h *heldPartition) release() {
	h.cancel()
	<-h.held
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := h.lease.Release(ctx); err != nil {
		h.lease.log.Warn("partition lease not released; another instance takes it when it expires", zap.Error(err))
	}
}

// forget takes a lost partition out.
func (p *Partitions) forget(l lostPartition) {
	p.mu.Lock()
	h, ok := p.leases[l.part]
	if ok && (l.lease == nil || h.lease == l.lease) {
		delete(p.leases, l.part)
	} else {
		ok = false
	}
	p.mu.Unlock()
	if !ok {
		return
	}
	p.log.Error("partition lost; its households stop here", zap.Int("partition", l.part), zap.Error(l.err))
	p.changed()
	h.release() // a no-op for the key when it is no longer this instance's
}

// Drop takes part away from this instance at once, because another
// instance wrote the state of one of its households (the StateStore's
// FencedFor). It may be called from any goroutine, with any lock held.
func (p *Partitions) Drop(part int, err error) {
	p.mu.Lock()
	h, ok := p.leases[part]
	p.mu.Unlock()
	if !ok {
		return
	}
	h.lease.lose() // Term and Valid refuse it from now on
	go func() {
		select {
		case p.lost <- lostPartition{part: part, err: err}:
		case <-p.done:
		}
	}()
}

// releaseAll releases every partition, telling OnChange first.
func (p *Partitions) releaseAll() {
	p.mu.Lock()
	all := p.leases
	p.leases = map[int]*heldPartition{}
	p.mu.Unlock()
	p.changed()
	for _, h := range all {
		h.release()
	}
	if len(all) > 0 {
		p.log.Info("partitions released", zap.Int("released", len(all)))
	}
}

// changed has OnChange called with the partitions held then.
func (p *Partitions) changed() {
	select {
	case p.changes <- struct{}{}:
	default: // one is pending: it reads the set when it runs
	}
}

// notify calls OnChange after changes until ctx ends, and once more then
// if a change is pending.
func (p *Partitions) notify(ctx context.Context) {
	for {
		select {
		case <-p.changes:
		case <-ctx.Done():
			select {
			case <-p.changes:
				if p.cfg.OnChange != nil {
					p.cfg.OnChange(p.Held())
				}
			default:
			}
			return
		}
		if p.cfg.OnChange != nil {
			p.cfg.OnChange(p.Held())
		}
	}
}

// Held returns the partitions this instance holds, in ascending order.
func (p *Partitions) Held() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]int, 0, len(p.leases))
	for part := range p.leases {
		out = append(out, part)
	}
	slices.Sort(out)
	return out
}

// Live returns the number of live instances Run last counted.
func (p *Partitions) Live() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.live
}

// Of returns the partition of a household.
func (p *Partitions) Of(household string) int { return partition.Of(household, p.cfg.Partitions) }

// Term returns the term of the lease on household's partition, for the
// writes of its state (StateStoreConfig.TermFor), or an error wrapping
// ErrNotHolder when this instance does not hold it with its margin left.
func (p *Partitions) Term(household string) (uint64, error) {
	part := p.Of(household)
	p.mu.Lock()
	h, ok := p.leases[part]
	p.mu.Unlock()
	if !ok {
		return 0, fmt.Errorf("%w: partition %d of %s is not held by this instance", ErrNotHolder, part, household)
	}
	t, err := h.lease.Term()
	if err != nil {
		return 0, fmt.Errorf("partition %d: %w", part, err)
	}
	return t, nil
}

// HeldTerm returns the term of the lease this instance holds on
// household's partition, valid or not at the moment; ok is false when it
// does not hold it. A term that differs from the one the household's state
// was claimed under means that the partition was lost and acquired again
// since.
func (p *Partitions) HeldTerm(household string) (term uint64, ok bool) {
	p.mu.Lock()
	h, ok := p.leases[p.Of(household)]
	p.mu.Unlock()
	if !ok {
		return 0, false
	}
	h.lease.mu.Lock()
	defer h.lease.mu.Unlock()
	return h.lease.term, true
}

// MayPublish reports why a message of household must not be published
// now (its partition is not held with the lease's margin left), or nil.
// StateStore.MayPublish adds the check that the household's state was
// claimed under the partition's current term.
func (p *Partitions) MayPublish(household string) error {
	_, err := p.Term(household)
	return err
}
