package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/state"
)

// gatedPublisher records order publishes. While gate is set, an orders
// publish waits for the gate to close or its context to end (then it
// fails with the context's error); entered receives one value per
// publish that reached the gate. While failing is set, orders publishes
// fail at once. halted, when set, tells whether the kill switch is
// engaged: publishes made while it is are counted in underHalt.
type gatedPublisher struct {
	mu        sync.Mutex
	gate      chan struct{}
	entered   chan struct{}
	failing   bool
	halted    func() bool
	underHalt int
	calls     [][]string // order ids per PublishOrders call
	acked     [][]string // those that returned nil
}

func (p *gatedPublisher) PublishOrders(ctx context.Context, orders []events.Order, _ *events.Plan) (bool, error) {
	ids := make([]string, len(orders))
	for i, o := range orders {
		ids[i] = o.OrderID
	}
	halted := p.halted != nil && p.halted()
	p.mu.Lock()
	p.calls = append(p.calls, ids)
	if halted {
		p.underHalt++
	}
	gate, failing := p.gate, p.failing
	p.mu.Unlock()
	if failing {
		return false, errors.New("test: publish refused")
	}
	if gate != nil {
		p.entered <- struct{}{}
		select {
		case <-gate:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	p.mu.Lock()
	p.acked = append(p.acked, ids)
	p.mu.Unlock()
	return false, nil
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

func (p *gatedPublisher) setFailing(v bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failing = v
}

func (p *gatedPublisher) snapshot() (calls, acked [][]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls), slices.Clone(p.acked)
}

// testEngine is an engine running household policies on a fake clock.
type testEngine struct {
	*Engine
	clk  *clock.Fake
	stop func() // stops Run and waits for it; once
}

// runPolicies runs an engine with a copy of the household policy per
// entry of checkEvery (policy name to its check_every), each in balance
// at the start. opts' Clock, Publisher and Store are set here.
func runPolicies(t *testing.T, pub Publisher, opts Options, checkEvery map[string]string) *testEngine {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC))
	store, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	opts.Clock, opts.Publisher, opts.Store = clk, pub, store
	e := New(opts)
	h, err := portfolio.ParseHoldings("h.yaml", []byte(balancedHoldings))
	if err != nil {
		t.Fatal(err)
	}
	var set []Loaded
	for name, every := range checkEvery {
		text := strings.Replace(householdPolicy, "NAME", name, 1) + "prices: {max_move: 50%}\n"
		text = strings.Replace(text, "check_every: 1m", "check_every: "+every, 1)
		p, err := policy.Parse(name+".yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		set = append(set, Loaded{Policy: p, Holdings: h, HoldingsHash: "h"})
	}
	if err := e.Load(set); err != nil {
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
	te := &testEngine{Engine: e, clk: clk, stop: sync.OnceFunc(func() {
		cancel()
		<-done
	})}
	t.Cleanup(te.stop)
	return te
}

// runHousehold runs one household policy, "household", with check_every
// 1m, publishing inline with the given timeout.
func runHousehold(t *testing.T, pub Publisher, inline time.Duration) *testEngine {
	return runPolicies(t, pub, Options{InlinePublishTimeout: inline, PublishRetry: time.Millisecond},
		map[string]string{"household": "1m"})
}

// breach moves the clock on by d and sends a tick that puts equities
// below their band in every policy.
func (te *testEngine) breach(d time.Duration) {
	te.clk.Advance(d)
	qs := quotes(te.clk.Now(), 0)
	for i := range qs {
		if qs[i].Symbol == "VTI" {
			qs[i].Price = decimal.RequireFromString("200")
		}
	}
	te.Quotes(qs)
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
	for _, p := range st.Policies {
		if p.Unacked > 0 {
			return false
		}
	}
	return st.Outbox == 0
}

// TestQuotesPublishInline: with the publisher idle, the tick that plans
// publishes the orders itself, so they are acknowledged when Quotes
// returns; with inline publishing off, the publisher goroutine does it.
func TestQuotesPublishInline(t *testing.T) {
	pub := &gatedPublisher{}
	te := runHousehold(t, pub, 0)
	te.breach(2 * time.Minute)
	calls, acked := pub.snapshot()
	if len(calls) != 1 || len(acked) != 1 {
		t.Fatalf("when Quotes returned: %d publishes, %d acknowledged; want the plan published inline", len(calls), len(acked))
	}
	if st := te.Status(); st.Outbox != 0 || st.Policies[0].Unacked != 0 || len(st.Policies[0].PendingOrders) != len(acked[0]) {
		t.Fatalf("when Quotes returned: outbox %d, unacknowledged %d, pending %d; want 0, 0, %d",
			st.Outbox, st.Policies[0].Unacked, len(st.Policies[0].PendingOrders), len(acked[0]))
	}

	pub2 := &gatedPublisher{}
	te2 := runHousehold(t, pub2, -1)
	te2.breach(2 * time.Minute)
	waitFor(t, "the publisher goroutine to publish", func() bool { return drained(te2.Engine) })
	if calls, acked := pub2.snapshot(); len(calls) != 1 || len(acked) != 1 {
		t.Fatalf("publisher goroutine: %d publishes, %d acknowledged; want 1, 1", len(calls), len(acked))
	}
}

// TestInlinePublishHandsOver: an inline publish that JetStream does not
// acknowledge in time is handed to the publisher, which sends the same
// order ids again.
func TestInlinePublishHandsOver(t *testing.T) {
	pub := &gatedPublisher{gate: make(chan struct{}), entered: make(chan struct{}, 10)}
	te := runHousehold(t, pub, 20*time.Millisecond)
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		te.breach(2 * time.Minute)
	}()
	recv(t, "the inline attempt", pub.entered)
	recv(t, "Quotes to return once its inline publish timed out", returned)
	recv(t, "the publisher's retry", pub.entered)
	pub.open()
	waitFor(t, "the publisher's retry to be acknowledged", func() bool { return drained(te.Engine) })
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

// TestInlineRefusedWakesPublisher: a plan made while an earlier one waits
// for its retry is not published inline (it would overtake it); the tick
// wakes the publisher instead, which sends both, in order, without waiting
// out its retry pause.
func TestInlineRefusedWakesPublisher(t *testing.T) {
	pub := &gatedPublisher{failing: true}
	// The retry pause and the engine's tick never pass on the fake clock:
	// only a wake-up moves the publisher on.
	te := runPolicies(t, pub, Options{PublishRetry: time.Hour, Tick: 24 * time.Hour},
		map[string]string{"first": "1m", "second": "10m"})
	te.breach(2 * time.Minute) // only "first" is due
	waitFor(t, "the inline attempt and the publisher's retry to fail", func() bool {
		calls, _ := pub.snapshot()
		return len(calls) >= 2
	})
	pub.setFailing(false)
	te.breach(9 * time.Minute) // "second" is due; "first" waits for its orders
	waitFor(t, "both plans to be acknowledged", func() bool { return drained(te.Engine) })
	_, acked := pub.snapshot()
	if len(acked) != 2 || !strings.HasPrefix(acked[0][0], lastPlanID(t, te, "first")) {
		t.Fatalf("acknowledged %v; want the first policy's plan, then the second's", acked)
	}
}

// lastPlanID returns the id of the last plan of policy name.
func lastPlanID(t *testing.T, te *testEngine, name string) string {
	t.Helper()
	for _, p := range te.Status().Policies {
		if p.Policy == name && p.LastPlanID != "" {
			return p.LastPlanID
		}
	}
	t.Fatalf("policy %s has no plan", name)
	return ""
}

// TestHaltCancelsInlinePublish: the kill switch cancels an inline publish
// in flight; nothing is published until it is released, and then the
// same orders go out.
func TestHaltCancelsInlinePublish(t *testing.T) {
	pub := &gatedPublisher{gate: make(chan struct{}), entered: make(chan struct{}, 10)}
	te := runHousehold(t, pub, time.Hour)
	pub.halted = func() bool { return te.Halted() != nil }
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		te.breach(2 * time.Minute)
	}()
	recv(t, "the inline attempt", pub.entered)
	te.SetHalt(&Halt{Reason: "test", At: time.Now()})
	recv(t, "the kill switch to stop the inline publish", returned)
	// Neither the publisher nor a tick may take the batch now.
	for _, inline := range []bool{false, true} {
		te.mu.Lock()
		job := te.claim(inline)
		te.mu.Unlock()
		if job != nil {
			job.cancel()
			t.Fatalf("claim(inline=%v) took a batch under the kill switch", inline)
		}
	}
	if _, acked := pub.snapshot(); len(acked) != 0 {
		t.Fatalf("%d publishes acknowledged under the kill switch", len(acked))
	}
	if st := te.Status(); st.Outbox != 1 {
		t.Fatalf("outbox %d under the kill switch, want the plan kept", st.Outbox)
	}
	pub.open()
	te.SetHalt(nil)
	waitFor(t, "the orders to go out after the release", func() bool { return drained(te.Engine) })
	calls, acked := pub.snapshot()
	if len(acked) != 1 || !slices.Equal(acked[0], calls[0]) {
		t.Fatalf("after the release: acknowledged %v, first attempt %v; want the same orders once", acked, calls[0])
	}
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if pub.underHalt != 0 {
		t.Fatalf("%d publish attempts while the kill switch was engaged", pub.underHalt)
	}
}

// TestShutdownWaitsForInlinePublish: Run, stopping, lets an inline
// publish in flight finish instead of abandoning it.
func TestShutdownWaitsForInlinePublish(t *testing.T) {
	pub := &gatedPublisher{gate: make(chan struct{}), entered: make(chan struct{}, 10)}
	te := runHousehold(t, pub, time.Hour)
	ticked := make(chan struct{})
	go func() {
		defer close(ticked)
		te.breach(2 * time.Minute)
	}()
	recv(t, "the inline attempt", pub.entered)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		te.stop()
	}()
	// Once the calendars are stopped, Run waits for the publisher, which
	// waits for the inline attempt.
	waitFor(t, "Run to begin stopping", func() bool { return te.ctx.Err() != nil })
	pub.open()
	recv(t, "Run to return", stopped)
	recv(t, "the tick to return", ticked)
	if !drained(te.Engine) {
		st := te.Status()
		t.Fatalf("after stopping: outbox %d, unacknowledged %d; want the inline publish completed", st.Outbox, st.Policies[0].Unacked)
	}
	if _, acked := pub.snapshot(); len(acked) != 1 {
		t.Fatalf("%d acknowledged publishes, want 1", len(acked))
	}
}

// TestNoInlinePublishAfterStop: once Run has returned, a tick that plans
// publishes nothing; the plan stays journaled in the outbox.
func TestNoInlinePublishAfterStop(t *testing.T) {
	pub := &gatedPublisher{}
	te := runHousehold(t, pub, time.Hour)
	te.stop()
	te.breach(2 * time.Minute)
	if calls, _ := pub.snapshot(); len(calls) != 0 {
		t.Fatalf("%d publishes after Run returned", len(calls))
	}
	if st := te.Status(); st.Outbox != 1 || st.Policies[0].Unacked == 0 {
		t.Fatalf("outbox %d, unacknowledged %d; want the plan kept for the next start", st.Outbox, st.Policies[0].Unacked)
	}
}

// onDrift is a publisher that calls fn when a drift event is published.
type onDrift struct {
	gatedPublisher
	fn func()
}

func (p *onDrift) PublishDrift(events.Drift) error {
	p.fn()
	return nil
}

// TestStopDecidedOnceExitsAtOnce is the regression test of a step-down
// that waited the whole shutdown grace: the publisher decided under the
// lock that it was not stopping, Run's context ended while it flushed the
// drift events, and the publisher, reading it again after the unlock,
// waited for an inline publish that was not in flight. It must stop at
// once.
func TestStopDecidedOnceExitsAtOnce(t *testing.T) {
	done, stop := context.WithCancel(context.Background())
	defer stop()
	pub := &onDrift{fn: stop} // Run's context ends in the window
	store, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e := New(Options{Clock: clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)), Publisher: pub, Store: store})
	e.driftOut = []events.Drift{{Policy: "household"}}
	pubCtx, cancelPub := context.WithTimeout(context.Background(), 5*time.Second) // the shutdown grace
	defer cancelPub()
	start := time.Now()
	e.publishLoop(pubCtx, done)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the publisher stopped %v after Run's context ended, with nothing to publish", d)
	}
}

// lapsingPublisher acknowledges orders and then lets the lease lapse, as
// when the holder is paused right after its orders' acks; it counts the
// plan events published.
type lapsingPublisher struct {
	gatedPublisher
	valid *atomic.Bool
	kept  atomic.Bool // the lease no longer lapses
	plans atomic.Int32
}

func (p *lapsingPublisher) PublishOrders(ctx context.Context, orders []events.Order, pl *events.Plan) (bool, error) {
	sent, err := p.gatedPublisher.PublishOrders(ctx, orders, pl) // the plan event is not sent with them
	if !p.kept.Load() {
		p.valid.Store(false)
	}
	return sent, err
}

func (p *lapsingPublisher) PublishPlan(context.Context, events.Plan) error {
	p.plans.Add(1)
	return nil
}

// TestLeaseCheckedBeforeEachMessage is the regression test of a paused
// old holder publishing its plan event after the takeover: the lease is
// asked again before the plan event, not only before the attempt, and
// orders acknowledged after it lapsed are not recorded as this
// instance's (its successor publishes them again under the same ids).
func TestLeaseCheckedBeforeEachMessage(t *testing.T) {
	var valid atomic.Bool
	valid.Store(true)
	pub := &lapsingPublisher{valid: &valid}
	te := runPolicies(t, pub, Options{InlinePublishTimeout: -1, PublishRetry: time.Millisecond,
		MayPublish: func() error {
			if !valid.Load() {
				return errors.New("the lease is not held")
			}
			return nil
		}}, map[string]string{"household": "1m"})
	te.breach(2 * time.Minute)
	waitFor(t, "the orders' acknowledgement", func() bool { _, acked := pub.snapshot(); return len(acked) == 1 })
	// A while of retries: nothing more is sent, nothing is recorded.
	deadline := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(deadline) {
		if n := pub.plans.Load(); n != 0 {
			t.Fatalf("%d plan events published after the lease lapsed", n)
		}
		if st := te.Status(); st.Outbox != 1 || st.Policies[0].Unacked == 0 {
			t.Fatalf("outbox %d, unacknowledged %d: orders acknowledged after the lease lapsed were recorded", st.Outbox, st.Policies[0].Unacked)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if calls, _ := pub.snapshot(); len(calls) != 1 {
		t.Fatalf("%d order publishes without the lease", len(calls))
	}
	// Valid again (a renewal confirmed): published under the same ids.
	pub.kept.Store(true)
	valid.Store(true)
	te.mu.Lock()
	te.wakeLocked() // the retry waits on the fake clock
	te.mu.Unlock()
	waitFor(t, "the plan event", func() bool { return pub.plans.Load() == 1 && drained(te.Engine) })
	calls, _ := pub.snapshot()
	if len(calls) != 2 || !slices.Equal(calls[0], calls[1]) {
		t.Fatalf("order publishes %v, want the same ids twice", calls)
	}
}

// pausedCtx is a context whose deadline has passed while its timer has
// not fired yet (a process resumed after a pause).
type pausedCtx struct{ context.Context }

func (pausedCtx) Deadline() (time.Time, bool) { return time.Now().Add(-time.Second), true }

// TestSendableReadsTheClock: a publish attempt whose deadline passed is
// expired even though its context does not say so yet.
func TestSendableReadsTheClock(t *testing.T) {
	e := New(Options{Clock: clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)), Publisher: &gatedPublisher{}})
	if err := e.sendable(pausedCtx{context.Background()}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("sendable after the deadline: %v", err)
	}
	if err := e.sendable(context.Background()); err != nil {
		t.Fatalf("sendable: %v", err)
	}
}

// TestStepDownDuringRetryExitsAtOnce: a publisher waiting to retry a
// publish the lease refused stops as soon as Run's context ends once the
// kill switch is engaged (a step-down), not after the retry pause or the
// shutdown grace.
func TestStepDownDuringRetryExitsAtOnce(t *testing.T) {
	for _, haltFirst := range []bool{false, true} {
		refused := make(chan struct{}, 1)
		var valid atomic.Bool
		valid.Store(true)
		pub := &lapsingPublisher{valid: &valid}
		te := runPolicies(t, pub, Options{InlinePublishTimeout: -1, ShutdownGrace: 5 * time.Second,
			MayPublish: func() error {
				if valid.Load() {
					return nil
				}
				select {
				case refused <- struct{}{}:
				default:
				}
				return errors.New("the lease is not held")
			}}, map[string]string{"household": "1m"})
		te.breach(2 * time.Minute)
		recv(t, "a refused publish", refused) // the orders were acknowledged, then the lease lapsed
		start := time.Now()
		if haltFirst {
			te.SetHalt(&Halt{Reason: "high availability: this instance lost the planner lease", By: "ha"})
			te.stop()
		} else {
			go func() {
				time.Sleep(10 * time.Millisecond) // the publisher is waiting to retry
				te.SetHalt(&Halt{Reason: "high availability: this instance lost the planner lease", By: "ha"})
			}()
			te.stop()
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("halt first %v: Run returned %v after its context ended", haltFirst, d)
		}
	}
}

// batchPublisher records what the engine hands it; atomic says whether
// PublishOrders stores the plan event with the orders.
type batchPublisher struct {
	atomic bool

	mu         sync.Mutex
	withPlan   []string // plan id given to each PublishOrders call ("" if none)
	planEvents []string // PublishPlan calls
}

func (p *batchPublisher) PublishOrders(_ context.Context, orders []events.Order, pl *events.Plan) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := ""
	if pl != nil {
		id = pl.ID
		if pl.ID != orders[0].PlanID {
			id = "mismatch:" + pl.ID
		}
	}
	p.withPlan = append(p.withPlan, id)
	return p.atomic && pl != nil, nil
}

func (p *batchPublisher) PublishPlan(_ context.Context, pl events.Plan) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.planEvents = append(p.planEvents, pl.ID)
	return nil
}

func (p *batchPublisher) PublishDrift(events.Drift) error { return nil }

// TestPlanEventWithOrders: the engine hands each plan's event to
// PublishOrders with its orders. When the publisher stored both at once
// (an atomic batch) the event is not published again and the ledger keeps
// no event to publish; otherwise the event follows with PublishPlan.
func TestPlanEventWithOrders(t *testing.T) {
	for _, atomic := range []bool{true, false} {
		t.Run(fmt.Sprintf("atomic=%v", atomic), func(t *testing.T) {
			pub := &batchPublisher{atomic: atomic}
			te := runHousehold(t, pub, time.Second)
			te.breach(2 * time.Minute)
			waitFor(t, "the plan to be published", func() bool { return drained(te.Engine) })
			planID := te.Status().Policies[0].LastPlanID
			pub.mu.Lock()
			withPlan, planEvents := slices.Clone(pub.withPlan), slices.Clone(pub.planEvents)
			pub.mu.Unlock()
			if !slices.Equal(withPlan, []string{planID}) {
				t.Fatalf("PublishOrders got plan events %v, want [%s]", withPlan, planID)
			}
			wantEvents := []string{planID}
			if atomic {
				wantEvents = nil
			}
			if !slices.Equal(planEvents, wantEvents) {
				t.Fatalf("PublishPlan calls %v, want %v", planEvents, wantEvents)
			}
			te.mu.Lock()
			left := len(te.policies["household"].ledger.Plans)
			te.mu.Unlock()
			if left != 0 {
				t.Fatalf("the ledger still holds %d plan events to publish", left)
			}
		})
	}
}

// planFailing acknowledges orders and fails every plan event publish.
type planFailing struct{ gatedPublisher }

func (p *planFailing) PublishPlan(context.Context, events.Plan) error {
	return errors.New("test: plan event refused")
}

// TestStopLogCountsOnlyUnacknowledgedOrders: stopping with a plan whose
// orders are acknowledged but whose event is not published does not
// report its orders as unacknowledged.
func TestStopLogCountsOnlyUnacknowledgedOrders(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	pub := &planFailing{}
	te := runPolicies(t, pub, Options{InlinePublishTimeout: -1, ShutdownGrace: 50 * time.Millisecond, Log: zap.New(core)},
		map[string]string{"household": "1m"})
	te.breach(2 * time.Minute)
	waitFor(t, "the orders' acknowledgement", func() bool { _, acked := pub.snapshot(); return len(acked) == 1 })
	te.stop()
	if n := logs.FilterMessage("stopping with unacknowledged orders; they are journaled and will be published at the next start").Len(); n != 0 {
		t.Error("acknowledged orders reported as unacknowledged at stop")
	}
	if n := logs.FilterMessageSnippet("stopping with unpublished plan events").Len(); n != 1 {
		t.Errorf("%d log lines about the pending plan event, want 1", n)
	}
}
