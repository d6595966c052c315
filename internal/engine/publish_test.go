package engine

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/state"
)

// gatedPublisher records order publishes. While gate is set, an orders
// publish waits for the gate to close or its context to end (then it
// fails with the context's error); entered receives one value per
// publish that reached the gate.
type gatedPublisher struct {
	mu      sync.Mutex
	gate    chan struct{}
	entered chan struct{}
	calls   [][]string // order ids per PublishOrders call
	acked   [][]string // those that returned nil
}

func (p *gatedPublisher) PublishOrders(ctx context.Context, orders []events.Order) error {
	ids := make([]string, len(orders))
	for i, o := range orders {
		ids[i] = o.OrderID
	}
	p.mu.Lock()
	p.calls = append(p.calls, ids)
	gate := p.gate
	p.mu.Unlock()
	if gate != nil {
		p.entered <- struct{}{}
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p.mu.Lock()
	p.acked = append(p.acked, ids)
	p.mu.Unlock()
	return nil
}

func (p *gatedPublisher) PublishPlan(context.Context, events.Plan) error { return nil }
func (p *gatedPublisher) PublishDrift(events.Drift) error                { return nil }

// open lets the publish waiting at the gate, and every later one, through.
func (p *gatedPublisher) open() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate != nil {
		close(p.gate)
		p.gate = nil
	}
}

func (p *gatedPublisher) snapshot() (calls, acked [][]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls), slices.Clone(p.acked)
}

// runHousehold runs an engine with one household policy on a fake clock
// and returns it with a function that sends a breaching tick.
func runHousehold(t *testing.T, pub Publisher, inline time.Duration) (e *Engine, breach func(), stop func()) {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC))
	store, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e = New(Options{Clock: clk, Publisher: pub, Store: store, InlinePublishTimeout: inline,
		PublishRetry: time.Millisecond})
	h, err := portfolio.ParseHoldings("h.yaml", []byte(balancedHoldings))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(householdPolicy, "NAME", "household", 1) + "prices: {max_move: 50%}\n"
	p, err := policy.Parse("household.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Load([]Loaded{{Policy: p, Holdings: h, HoldingsHash: "h"}}); err != nil {
		t.Fatal(err)
	}
	e.Quotes(quotes(clk.Now(), 0)) // balanced: no plan
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx)
	}()
	// Run publishes only once it has set up its publisher context.
	waitFor(t, "Run to start", func() bool { e.mu.Lock(); defer e.mu.Unlock(); return e.pubCtx != nil })
	breach = func() {
		clk.Advance(2 * time.Minute) // past check_every
		qs := quotes(clk.Now(), 0)
		for i := range qs {
			if qs[i].Symbol == "VTI" {
				qs[i].Price = decimal.RequireFromString("200") // equities below their band
			}
		}
		e.Quotes(qs)
	}
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return e, breach, sync.OnceFunc(stop)
}

// waitFor polls cond until it holds, failing the test after 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// recv waits for a value on ch, failing the test after 5 seconds.
func recv(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func drained(e *Engine) bool {
	st := e.Status()
	return st.Outbox == 0 && st.Policies[0].Unacked == 0
}

// TestQuotesPublishInline: with the publisher idle, the tick that plans
// publishes the orders itself, so they are acknowledged when Quotes
// returns; with inline publishing off, the publisher goroutine does it.
func TestQuotesPublishInline(t *testing.T) {
	pub := &gatedPublisher{}
	e, breach, _ := runHousehold(t, pub, 0)
	breach()
	calls, acked := pub.snapshot()
	if len(calls) != 1 || len(acked) != 1 {
		t.Fatalf("when Quotes returned: %d publishes, %d acknowledged; want the plan published inline", len(calls), len(acked))
	}
	if st := e.Status(); st.Outbox != 0 || st.Policies[0].Unacked != 0 || len(st.Policies[0].PendingOrders) != len(acked[0]) {
		t.Fatalf("when Quotes returned: outbox %d, unacknowledged %d, pending %d; want 0, 0, %d",
			st.Outbox, st.Policies[0].Unacked, len(st.Policies[0].PendingOrders), len(acked[0]))
	}

	pub2 := &gatedPublisher{}
	e2, breach2, _ := runHousehold(t, pub2, -1)
	breach2()
	waitFor(t, "the publisher goroutine to publish", func() bool { return drained(e2) })
	if calls, acked := pub2.snapshot(); len(calls) != 1 || len(acked) != 1 {
		t.Fatalf("publisher goroutine: %d publishes, %d acknowledged; want 1, 1", len(calls), len(acked))
	}
}

// TestInlinePublishHandsOver: an inline publish that JetStream does not
// acknowledge in time is handed to the publisher, which sends the same
// order ids again.
func TestInlinePublishHandsOver(t *testing.T) {
	pub := &gatedPublisher{gate: make(chan struct{}), entered: make(chan struct{}, 10)}
	e, breach, _ := runHousehold(t, pub, 20*time.Millisecond)
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		breach()
	}()
	recv(t, "the inline attempt", pub.entered)
	recv(t, "Quotes to return once its inline publish timed out", returned)
	recv(t, "the publisher's retry", pub.entered)
	pub.open()
	waitFor(t, "the publisher's retry to be acknowledged", func() bool { return drained(e) })
	calls, acked := pub.snapshot()
	if len(calls) < 2 || len(acked) != 1 {
		t.Fatalf("%d publishes, %d acknowledged; want the timed-out attempt then one acknowledged retry", len(calls), len(acked))
	}
	for _, c := range calls[1:] {
		if !slices.Equal(c, calls[0]) {
			t.Fatalf("retry published %v, first attempt %v: want the same order ids", c, calls[0])
		}
	}
}

// TestHaltCancelsInlinePublish: the kill switch cancels an inline publish
// in flight; nothing is published until it is released, and then the
// same orders go out.
func TestHaltCancelsInlinePublish(t *testing.T) {
	pub := &gatedPublisher{gate: make(chan struct{}), entered: make(chan struct{}, 10)}
	e, breach, _ := runHousehold(t, pub, time.Hour)
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		breach()
	}()
	recv(t, "the inline attempt", pub.entered)
	e.SetHalt(&Halt{Reason: "test", At: time.Now()})
	recv(t, "the kill switch to stop the inline publish", returned)
	if _, acked := pub.snapshot(); len(acked) != 0 {
		t.Fatalf("%d publishes acknowledged under the kill switch", len(acked))
	}
	if st := e.Status(); st.Outbox != 1 {
		t.Fatalf("outbox %d under the kill switch, want the plan kept", st.Outbox)
	}
	pub.open()
	e.SetHalt(nil)
	waitFor(t, "the orders to go out after the release", func() bool { return drained(e) })
	calls, acked := pub.snapshot()
	if len(acked) != 1 || !slices.Equal(acked[0], calls[0]) {
		t.Fatalf("after the release: acknowledged %v, first attempt %v; want the same orders once", acked, calls[0])
	}
}

// TestShutdownWaitsForInlinePublish: Run, stopping, lets an inline
// publish in flight finish instead of abandoning it.
func TestShutdownWaitsForInlinePublish(t *testing.T) {
	pub := &gatedPublisher{gate: make(chan struct{}), entered: make(chan struct{}, 10)}
	e, breach, stop := runHousehold(t, pub, time.Hour)
	go breach()
	recv(t, "the inline attempt", pub.entered)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		stop()
	}()
	// Once the calendars are stopped, Run waits for the publisher, which
	// waits for the inline attempt.
	waitFor(t, "Run to begin stopping", func() bool { return e.ctx.Err() != nil })
	pub.open()
	recv(t, "Run to return", stopped)
	if !drained(e) {
		st := e.Status()
		t.Fatalf("after stopping: outbox %d, unacknowledged %d; want the inline publish completed", st.Outbox, st.Policies[0].Unacked)
	}
	if _, acked := pub.snapshot(); len(acked) != 1 {
		t.Fatalf("%d acknowledged publishes, want 1", len(acked))
	}
}
