package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	natstest "github.com/nats-io/nats-server/v2/test"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/rebalancerd/rebalancerd/internal/config"
	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	rnats "github.com/rebalancerd/rebalancerd/internal/nats"
	"github.com/rebalancerd/rebalancerd/internal/partition"
	"github.com/rebalancerd/rebalancerd/internal/state"
)

// TestPartitionRetakenReloads is the race of review finding F4. Instance
// a holds the test household's partition and has a plan journaled but not
// published (NATS refuses it). A load is in progress (the test holds
// loadMu, as a repartition loading many households would), so the
// partition manager's callback for the changes below waits. Meanwhile:
// another instance b takes the partition (a's lease is overwritten, as
// after its expiry), claims the household's state, expires a's plan and
// journals one of its own, then releases the partition; a takes it back
// under a new term and NATS accepts publishes again.
//
// On the old code a kept the household's runtime and outbox through all
// this (it was running before and after: nothing to load) and published
// its expired plan under the new term. Now nothing of the household is
// published while its state was claimed under the old term, and once the
// load ends the household is loaded afresh: a publishes b's plan, never
// its own expired one.
func TestPartitionRetakenReloads(t *testing.T) {
	opts := natstest.DefaultTestOptions
	opts.Port, opts.JetStream, opts.StoreDir = -1, true, t.TempDir()
	srv := natstest.RunServer(&opts)
	t.Cleanup(srv.Shutdown)

	const household = "test-household"
	const parts = 2
	part := partition.Of(household, parts)
	pub := &switchablePublisher{}
	pub.down.Store(true)
	pol := policyText("threshold", "")
	d := startDaemon(t, pol, monday0959, func(c *config.Config, m *Main) {
		c.NATS.URL = srv.ClientURL()
		c.HA = config.HA{Enabled: true, Instance: "a", LeaseTTL: 3 * time.Second, Partitions: parts}
		m.WrapPublisher = func(p engine.Publisher) engine.Publisher { pub.Publisher = p; return pub }
	})
	m := d.Main
	checkFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if !(*m.ownedNames.Load())[household] {
			return fmt.Errorf("%s not loaded; partitions held %v", household, m.parts.Held())
		}
		return nil
	})
	firstTerm, _ := m.parts.HeldTerm(household)

	// a plans; NATS refuses the orders: they stay journaled and queued.
	d.prices("VTI", "130", "BND", "100")
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if d.policyStatus().Unacked == 0 {
			return fmt.Errorf("no journaled orders yet")
		}
		return nil
	})
	stale := d.policyStatus().LastPlanID

	// A load in progress: the callbacks below wait for it.
	m.loadMu.Lock()
	locked := true
	defer func() {
		if locked {
			m.loadMu.Unlock()
		}
	}()

	ctx := t.Context()
	js, err := jetstream.New(d.client())
	if err != nil {
		t.Fatal(err)
	}
	leases, err := js.KeyValue(ctx, m.haBase()+"_LEASE")
	if err != nil {
		t.Fatal(err)
	}
	b := holdPartitionAs(t, leases, part, "b")
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if slices.Contains(m.parts.Held(), part) {
			return fmt.Errorf("a still holds partition %d", part)
		}
		return nil
	})

	// b claims the household's state under its term, expires a's plan
	// and journals its own (the same orders under new ids).
	nc, err := natsgo.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cfg := m.Config
	bus, err := rnats.NewBus(ctx, nc, rnats.StreamConfig{Prefix: cfg.NATS.Prefix, Replicas: cfg.NATS.Replicas,
		MaxAge: cfg.NATS.MaxAge, Duplicates: cfg.NATS.Duplicates, NoAtomicBatches: !cfg.NATS.AtomicBatches}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	bState, err := rnats.NewStateStore(ctx, bus, rnats.StateStoreConfig{Bucket: m.haBase() + "_STATE",
		TermFor: func(string) (uint64, error) { return b.term, nil }})
	if err != nil {
		t.Fatal(err)
	}
	l, ok, err := bState.Load(household)
	if err != nil || !ok {
		t.Fatalf("b's load: %v %v", ok, err)
	}
	now := d.clock.Now()
	var replaced []string
	var replacement state.Entry
	for _, o := range l.Orders {
		if o.PlanID != stale {
			continue
		}
		o.Status, o.Updated = ledger.Expired, now
		replaced = append(replaced, o.OrderID)
		n := o.Order
		n.OrderID, n.PlanID = o.OrderID+"-b", stale+"-b"
		replacement.Orders = append(replacement.Orders, n)
	}
	if len(replaced) == 0 {
		t.Fatalf("plan %s not in the shared state", stale)
	}
	l.ForgetPlan(stale)
	replacement.PlanID, replacement.At = stale+"-b", now
	if err := bState.Save(l, true); err != nil {
		t.Fatal(err)
	}
	if err := bState.Append(household, replacement); err != nil {
		t.Fatal(err)
	}
	b.release(t)

	// a takes the partition back, under a new term; NATS is back.
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if term, ok := m.parts.HeldTerm(household); !ok || term == firstTerm {
			return fmt.Errorf("partition %d not taken back (held %v)", part, m.parts.Held())
		}
		return nil
	})
	// While the load waits, nothing of the household may be published:
	// its state in memory was claimed under the old term.
	if err := m.kvState.MayPublish(household); !errors.Is(err, rnats.ErrStaleTerm) {
		t.Fatalf("publishing allowed for a household claimed under the old term: %v", err)
	}
	if err := m.reportElsewhere(household); !errors.Is(err, rnats.ErrElsewhere) {
		t.Fatalf("a report taken for a household claimed under the old term: %v", err)
	}
	w := d.watchOrders()
	pub.down.Store(false)
	d.clock.Advance(time.Second) // a publish retry; the old code published the stale plan
	m.loadMu.Unlock()
	locked = false

	found := func() (stale, fresh int) {
		for _, o := range w.snapshot() {
			switch {
			case slices.Contains(replaced, o.OrderID):
				stale++
			case o.PlanID == replacement.PlanID:
				fresh++
			}
		}
		return stale, fresh
	}
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if s, f := found(); s == 0 && f < len(replacement.Orders) {
			d.clock.Advance(time.Second)
			return fmt.Errorf("%d of b's %d orders published", f, len(replacement.Orders))
		}
		return nil
	})
	if s, _ := found(); s > 0 {
		t.Fatalf("a published %d orders of its plan %s, expired by the instance that held the partition meanwhile", s, stale)
	}
	claimed, _ := m.kvState.ClaimedTerm(household)
	if term, _ := m.parts.HeldTerm(household); claimed != term {
		t.Errorf("the household's state claimed in term %d, the partition held in term %d", claimed, term)
	}
}

// stolenLease is a partition lease taken by a test as another instance
// would: written over the current holder's, renewed until released.
type stolenLease struct {
	kv     jetstream.KeyValue
	key    string
	term   uint64
	mu     sync.Mutex
	rev    uint64
	cancel context.CancelFunc
	done   chan struct{}
}

// holdPartitionAs writes partition part's lease as held by holder, as if
// the holder's lease had expired and holder had acquired it, and renews it
// until release.
func holdPartitionAs(t *testing.T, kv jetstream.KeyValue, part int, holder string) *stolenLease {
	t.Helper()
	key := fmt.Sprintf("partition.%d", part)
	now := time.Now().UTC()
	v, _ := json.Marshal(map[string]any{"holder": holder, "token": holder + "/test", "acquired": now, "renewed": now})
	rev, err := kv.Put(t.Context(), key, v)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &stolenLease{kv: kv, key: key, term: rev, rev: rev, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			s.mu.Lock()
			if next, err := kv.Update(ctx, key, v, s.rev); err == nil {
				s.rev = next
			}
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-s.done })
	return s
}

// release stops renewing the lease and deletes it.
func (s *stolenLease) release(t *testing.T) {
	t.Helper()
	s.cancel()
	<-s.done
	if err := s.kv.Delete(t.Context(), s.key, jetstream.LastRevision(s.rev)); err != nil {
		t.Fatal(err)
	}
}
