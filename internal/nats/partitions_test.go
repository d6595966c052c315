package nats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/partition"
)

// testMember is one instance of a partitioned group in a test.
type testMember struct {
	name    string
	parts   *Partitions
	nc      interface{ Close() }
	cancel  context.CancelFunc
	done    chan error
	changes atomic.Int32
	held    atomic.Pointer[[]int] // as OnChange last said
}

func startMember(t *testing.T, ts *testServer, name string, n int, ttl time.Duration) *testMember {
	t.Helper()
	nc := connect(t, ts.url())
	m := &testMember{name: name, nc: nc, done: make(chan error, 1)}
	m.held.Store(&[]int{})
	var err error
	m.parts, err = NewPartitions(t.Context(), newBus(t, nc, fastConfig()), PartitionsConfig{Bucket: "TEST_LEASE", Instance: name,
		Partitions: n, TTL: ttl, OnChange: func(held []int) { m.changes.Add(1); m.held.Store(&held) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() { m.done <- m.parts.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-m.done })
	return m
}

// householdIn returns a household name in each of n partitions.
func householdsIn(n int) []string {
	out := make([]string, n)
	for i, found := 0, 0; found < n; i++ {
		name := fmt.Sprintf("h%d", i)
		if p := partition.Of(name, n); out[p] == "" {
			out[p] = name
			found++
		}
	}
	return out
}

// TestPartitionsSpreadAndFailover runs three members of a group of 12
// partitions: each joining member gets its share from the others
// (12, then 6+6, then 4+4+4), a member whose connection dies loses its
// partitions to the others within the TTL, and at no time may two members
// publish for the same partition (MayPublish, sampled every millisecond).
// Once balanced, nothing moves.
func TestPartitionsSpreadAndFailover(t *testing.T) {
	ts := newTestServer(t)
	const n, ttl = 12, 2 * time.Second
	homes := householdsIn(n)
	var members []*testMember
	var mu sync.Mutex
	overlap := make(chan string, 1)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			mu.Lock()
			ms := slices.Clone(members)
			mu.Unlock()
			for p, h := range homes {
				var may []string
				for _, m := range ms {
					if m.parts.MayPublish(h) == nil {
						may = append(may, m.name)
					}
				}
				if len(may) > 1 {
					select {
					case overlap <- fmt.Sprintf("partition %d publishable by %v", p, may):
					default:
					}
				}
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()
	add := func(name string) *testMember {
		m := startMember(t, ts, name, n, ttl)
		mu.Lock()
		members = append(members, m)
		mu.Unlock()
		return m
	}
	// shares waits until the members hold want partitions each, all of
	// them, as OnChange said.
	shares := func(want map[*testMember]int) {
		t.Helper()
		checkFor(t, 5*ttl, func() error {
			seen := map[int]string{}
			for m, w := range want {
				held := *m.held.Load()
				if !slices.Equal(held, m.parts.Held()) {
					return fmt.Errorf("%s: OnChange said %v, holds %v", m.name, held, m.parts.Held())
				}
				if len(held) != w {
					return fmt.Errorf("%s holds %d partitions, want %d", m.name, len(held), w)
				}
				for _, p := range held {
					if other, ok := seen[p]; ok {
						return fmt.Errorf("partition %d held by %s and %s", p, other, m.name)
					}
					seen[p] = m.name
				}
			}
			if len(seen) != n {
				return fmt.Errorf("%d of %d partitions held", len(seen), n)
			}
			return nil
		})
	}
	a := add("a")
	shares(map[*testMember]int{a: 12})
	b := add("b")
	shares(map[*testMember]int{a: 6, b: 6})
	c := add("c")
	shares(map[*testMember]int{a: 4, b: 4, c: 4})

	// Balanced: nothing moves for a while.
	before := a.changes.Load() + b.changes.Load() + c.changes.Load()
	time.Sleep(ttl)
	if after := a.changes.Load() + b.changes.Load() + c.changes.Load(); after != before {
		t.Errorf("a balanced group moved partitions: %d changes", after-before)
	}

	// c's connection dies: a and b take its partitions.
	lost := *c.held.Load()
	died := time.Now()
	c.nc.Close()
	shares(map[*testMember]int{a: 6, b: 6})
	took := time.Since(died)
	t.Logf("c's %d partitions taken over %v after its connection died (TTL %v)", len(lost), took.Round(time.Millisecond), ttl)
	if took > 2*ttl {
		t.Errorf("takeover took %v, TTL %v", took, ttl)
	}
	checkFor(t, 2*ttl, func() error {
		if h := *c.held.Load(); len(h) != 0 {
			return fmt.Errorf("c still says it holds %v", h)
		}
		return nil
	})
	select {
	case o := <-overlap:
		t.Fatal(o)
	default:
	}

	// b stops cleanly: it releases at once, a takes everything.
	b.cancel()
	if err := <-b.done; err != nil {
		t.Fatal(err)
	}
	b.done <- nil // for the cleanup
	shares(map[*testMember]int{a: 12})
	select {
	case o := <-overlap:
		t.Fatal(o)
	default:
	}
}

// TestPartitionsFenceState checks that the shared state of a household is
// written under its own partition's term: refused for a household whose
// partition this instance does not hold, and refused once the partition is
// dropped (another instance wrote its state).
func TestPartitionsFenceState(t *testing.T) {
	ts := newTestServer(t)
	const n, ttl = 4, 2 * time.Second
	homes := householdsIn(n)
	a := startMember(t, ts, "a", n, ttl)
	checkFor(t, 5*ttl, func() error {
		if h := a.parts.Held(); len(h) != n {
			return fmt.Errorf("a holds %v", h)
		}
		return nil
	})
	var fenced atomic.Value
	s, err := NewStateStore(t.Context(), newBus(t, connect(t, ts.url()), fastConfig()), StateStoreConfig{Bucket: "TEST_STATE",
		TermFor:   a.parts.Term,
		FencedFor: func(policy string, err error) { fenced.Store(policy); a.parts.Drop(a.parts.Of(policy), err) }})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range homes {
		if _, _, err := s.Load(h); err != nil {
			t.Fatal(err)
		}
		if err := s.Save(ledger.New(h), false); err != nil {
			t.Fatal(err)
		}
	}
	// Another instance, holding a newer term for homes[0]'s partition,
	// claims its state: a's next write is fenced and a drops the partition,
	// keeping the others.
	other, err := NewStateStore(t.Context(), newBus(t, connect(t, ts.url()), fastConfig()), StateStoreConfig{Bucket: "TEST_STATE",
		TermFor: func(string) (uint64, error) { return 1 << 40, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := other.Load(homes[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ledger.New(homes[0]), false); !errors.Is(err, ErrFenced) {
		t.Fatalf("write after another instance's claim: %v", err)
	}
	if got := fenced.Load(); got != homes[0] {
		t.Errorf("FencedFor called for %v, want %s", got, homes[0])
	}
	checkFor(t, 5*ttl, func() error {
		if slices.Contains(a.parts.Held(), 0) {
			return fmt.Errorf("a still holds partition 0: %v", a.parts.Held())
		}
		return nil
	})
	if err := s.Save(ledger.New(homes[1]), false); err != nil {
		t.Errorf("write of a household in a partition still held: %v", err)
	}
	s.Forget(homes[0])
	if _, _, err := s.Load(homes[0]); !errors.Is(err, ErrNotHolder) && !errors.Is(err, ErrFenced) {
		t.Errorf("claim of a household whose partition was dropped: %v", err)
	}
}

// TestPartitionsRefuseMixedGroups checks that a partitioned instance and
// an active/standby one, or two partitioned ones with different counts,
// refuse to run in one group: they would map households differently.
func TestPartitionsRefuseMixedGroups(t *testing.T) {
	ts := newTestServer(t)
	const ttl = 2 * time.Second
	a := startMember(t, ts, "a", 8, ttl)
	checkFor(t, 5*ttl, func() error {
		if len(a.parts.Held()) == 0 {
			return errors.New("a holds nothing yet")
		}
		return nil
	})
	b := newBus(t, connect(t, ts.url()), fastConfig())
	if _, err := NewPartitions(t.Context(), b, PartitionsConfig{Bucket: "TEST_LEASE", Instance: "b", Partitions: 16, TTL: ttl}); !errors.Is(err, ErrPartitionMode) {
		t.Errorf("another partition count: %v", err)
	}
	lb, err := OpenLeaseBucket(t.Context(), b, LeaseConfig{Bucket: "TEST_LEASE", TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	if err := lb.CheckNoPartitions(t.Context()); !errors.Is(err, ErrPartitionMode) {
		t.Errorf("an active/standby instance beside a partitioned group: %v", err)
	}
	// And the reverse: a planner lease held.
	ts2 := newTestServer(t)
	b2 := newBus(t, connect(t, ts2.url()), fastConfig())
	lb2, err := OpenLeaseBucket(t.Context(), b2, LeaseConfig{Bucket: "TEST_LEASE", TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	if err := lb2.Lease("planner", "p").Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := NewPartitions(t.Context(), b2, PartitionsConfig{Bucket: "TEST_LEASE", Instance: "b", Partitions: 8, TTL: ttl}); !errors.Is(err, ErrPartitionMode) {
		t.Errorf("a partitioned instance beside a planner lease: %v", err)
	}
}
