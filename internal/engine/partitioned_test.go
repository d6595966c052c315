package engine

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/state"
)

// published records the policies whose orders were acknowledged
// (Options.OnPublished).
type published struct{ m sync.Map }

func (p *published) record(policy, _ string, _ int) { p.m.Store(policy, true) }

func (p *published) has(policy string) bool { _, ok := p.m.Load(policy); return ok }

// TestPartitionedOutboxSkipsHeldBack: the batch of a household whose
// partition may not publish now waits while another household's batch,
// queued behind it, is published; it goes out once its partition may
// publish again. (A FIFO outbox retried the head batch and published
// nothing else meanwhile.)
func TestPartitionedOutboxSkipsHeldBack(t *testing.T) {
	var blocked atomic.Bool
	blocked.Store(true)
	pub := &gatedPublisher{}
	var done published
	te := runPolicies(t, pub, Options{Partitioned: true, InlinePublishTimeout: -1, PublishRetry: 1, OnPublished: done.record,
		MayPublishPolicy: func(p string) error {
			if p == "p1" && blocked.Load() {
				return errors.New("test: partition of p1 not held")
			}
			return nil
		}}, map[string]string{"p1": "1m", "p2": "1m"})
	te.breach(2 * 60e9)
	waitFor(t, "p2's orders published", func() bool { return done.has("p2") })
	if done.has("p1") {
		t.Fatal("p1's orders published while its partition may not publish")
	}
	// p2's batch leaves the outbox once recorded, after OnPublished.
	waitFor(t, "p1's batch alone in the outbox", func() bool {
		te.mu.Lock()
		defer te.mu.Unlock()
		return len(te.outbox) == 1 && te.outbox[0].policy == "p1"
	})
	blocked.Store(false)
	// The publisher looks again after PublishRetry on the fake clock.
	waitFor(t, "p1's orders published", func() bool { te.clk.Advance(time.Millisecond); return done.has("p1") })
}

// TestPartitionedLoadDropsQueued: when Load removes a household (its
// partition went elsewhere) its queued batch leaves the outbox and is not
// published, with Options.Partitioned; without it, it still is.
func TestPartitionedLoadDropsQueued(t *testing.T) {
	for _, partitioned := range []bool{true, false} {
		var blocked atomic.Bool
		blocked.Store(true)
		pub := &gatedPublisher{}
		var done published
		opts := Options{Partitioned: partitioned, InlinePublishTimeout: -1, PublishRetry: 1, OnPublished: done.record}
		var gate func() error
		if partitioned {
			opts.MayPublishPolicy = func(p string) error {
				if p == "p1" && blocked.Load() {
					return errors.New("test: held back")
				}
				return nil
			}
		} else {
			// The engine-wide check holds everything back instead.
			gate = func() error {
				if blocked.Load() {
					return errors.New("test: held back")
				}
				return nil
			}
			opts.MayPublish = func() error { return gate() }
		}
		te := runPolicies(t, pub, opts, map[string]string{"p1": "1m", "p2": "1m"})
		te.breach(2 * 60e9)
		waitFor(t, "both plans queued", func() bool {
			te.mu.Lock()
			defer te.mu.Unlock()
			return len(te.outbox) == 2 || (partitioned && len(te.outbox) == 1 && done.has("p2"))
		})
		te.mu.Lock()
		p2 := te.policies["p2"].pol
		te.mu.Unlock()
		if err := te.Load([]Loaded{{Policy: p2}}); err != nil {
			t.Fatal(err)
		}
		blocked.Store(false)
		// A publisher that was refused retries after PublishRetry on the
		// fake clock.
		waitFor(t, "p2's orders published", func() bool { te.clk.Advance(time.Millisecond); return done.has("p2") })
		waitFor(t, "the outbox drained", func() bool { te.clk.Advance(time.Millisecond); return drained(te.Engine) })
		if got := done.has("p1"); got == partitioned {
			t.Errorf("partitioned %v: p1's orders published after p1 was unloaded: %v", partitioned, got)
		}
		te.stop()
	}
}

// failingLoadStore fails Load for one policy.
type failingLoadStore struct {
	*state.Store
	fail string
}

func (s *failingLoadStore) Load(name string) (*ledger.Ledger, bool, error) {
	if name == s.fail {
		return nil, false, errors.New("test: partition lost")
	}
	return s.Store.Load(name)
}

// TestPartitionedPartialLoad: with Options.Partitioned, a household whose
// saved state cannot be read is left out of the load and named in a
// *PartialLoadError, and the others run; without it the load fails and
// changes nothing.
func TestPartitionedPartialLoad(t *testing.T) {
	h, err := portfolio.ParseHoldings("h.yaml", []byte(balancedHoldings))
	if err != nil {
		t.Fatal(err)
	}
	var set []Loaded
	for _, name := range []string{"p1", "p2", "p3"} {
		p, err := policy.Parse(name+".yaml", []byte(strings.Replace(householdPolicy, "NAME", name, 1)))
		if err != nil {
			t.Fatal(err)
		}
		set = append(set, Loaded{Policy: p, Holdings: h, HoldingsHash: "h"})
	}
	for _, partitioned := range []bool{true, false} {
		s, err := state.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		e := New(Options{Store: &failingLoadStore{Store: s, fail: "p2"}, Publisher: nopPublisher{}, Partitioned: partitioned})
		err = e.Load(set)
		var running []string
		for _, p := range e.Status().Policies {
			running = append(running, p.Policy)
		}
		var partial *PartialLoadError
		switch {
		case partitioned && (!errors.As(err, &partial) || len(partial.Failed) != 1 || partial.Failed["p2"] == nil):
			t.Errorf("partitioned load: %v, want a partial load naming p2", err)
		case partitioned && !slices.Equal(running, []string{"p1", "p3"}):
			t.Errorf("partitioned load runs %v, want p1 and p3", running)
		case !partitioned && (err == nil || errors.As(err, &partial) || len(running) != 0):
			t.Errorf("load: %v, running %v; want an error and nothing loaded", err, running)
		}
		e.Close()
	}
}

// TestPartitionedUnloadCancelsInFlight: when Load takes out a household
// whose batch a publish attempt holds (its partition was lost while the
// attempt waited for JetStream), the attempt is cancelled: what it has not
// sent yet is not sent, and the batch is dropped, not retried. The old
// code let the attempt run to the end and record it. Loaded again, the
// household publishes what its state holds then, once.
func TestPartitionedUnloadCancelsInFlight(t *testing.T) {
	pub := &gatedPublisher{gate: make(chan struct{}), entered: make(chan struct{}, 10)}
	var done published
	te := runPolicies(t, pub, Options{Partitioned: true, InlinePublishTimeout: -1, PublishRetry: 1, OnPublished: done.record},
		map[string]string{"p1": "1m", "p2": "1m"})
	te.breach(2 * 60e9)
	<-pub.entered // the first batch's attempt waits for JetStream
	te.mu.Lock()
	first := te.outbox[0].policy
	other := "p1"
	if first == "p1" {
		other = "p2"
	}
	keep := te.policies[other].pol
	gone := te.policies[first].pol
	te.mu.Unlock()
	if err := te.Load([]Loaded{{Policy: keep}}); err != nil {
		t.Fatal(err)
	}
	close(pub.gate)
	waitFor(t, other+"'s orders published", func() bool { te.clk.Advance(time.Millisecond); return done.has(other) })
	if done.has(first) {
		t.Fatalf("%s's orders published by an attempt in flight when %s was unloaded", first, first)
	}
	// Loaded again: its journal publishes the same orders, once.
	if err := te.Load([]Loaded{{Policy: keep}, {Policy: gone}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, first+"'s orders published", func() bool { te.clk.Advance(time.Millisecond); return done.has(first) })
	waitFor(t, "the outbox drained", func() bool { te.clk.Advance(time.Millisecond); return drained(te.Engine) })
	pub.mu.Lock()
	defer pub.mu.Unlock()
	counts := map[string]int{}
	for _, ids := range pub.acked {
		for _, id := range ids {
			counts[id]++
		}
	}
	for id, n := range counts {
		if n != 1 {
			t.Errorf("order %s acknowledged %d times", id, n)
		}
	}
}

// TestPartitionedUnloadPlanOnlyBatch: Load takes out a household whose
// queued batch is a plan event alone (its orders were acknowledged before
// a restart). The old code named the batch by its first order and
// panicked with an index out of range.
func TestPartitionedUnloadPlanOnlyBatch(t *testing.T) {
	te := runPolicies(t, &gatedPublisher{}, Options{Partitioned: true, InlinePublishTimeout: -1, PublishRetry: 1,
		MayPublishPolicy: func(string) error { return errors.New("test: held back") }}, map[string]string{"p1": "1m", "p2": "1m"})
	te.mu.Lock()
	keep := te.policies["p2"].pol
	te.enqueue(&batch{policy: "p1", ledger: te.policies["p1"].ledger, ordersAcked: true})
	te.mu.Unlock()
	if err := te.Load([]Loaded{{Policy: keep}}); err != nil {
		t.Fatal(err)
	}
	te.mu.Lock()
	defer te.mu.Unlock()
	if len(te.outbox) != 0 {
		t.Errorf("outbox holds %d batches after p1 was unloaded", len(te.outbox))
	}
}
