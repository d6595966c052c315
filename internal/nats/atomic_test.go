package nats

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/nats/natsproxy"
	"github.com/rebalancerd/rebalancerd/internal/plan"
)

// TestAtomicBatchesDecision: atomic batches are used from nats-server
// 2.12.1 on (2.12.0 refuses Nats-Msg-Id in a batch), never when disabled,
// and not on a version that cannot be read.
func TestAtomicBatchesDecision(t *testing.T) {
	for _, tt := range []struct {
		version  string
		disabled bool
		want     bool
	}{
		{"2.15.2", false, true},
		{"2.12.1", false, true},
		{"2.14.0-RC.1", false, true},
		{"3.0.0", false, true},
		{"2.12.0", false, false},
		{"2.11.9", false, false},
		{"1.99.99", false, false},
		{"2.15.2", true, false},
		{"", false, false},
		{"2.x.1", false, false},
		{"2.12", false, false},
	} {
		got, why := atomicBatches(tt.version, tt.disabled)
		if got != tt.want || why == "" {
			t.Errorf("atomicBatches(%q, disabled %v) = %v (%q), want %v", tt.version, tt.disabled, got, why, tt.want)
		}
	}
}

// testPlan returns the plan event of householdOrders(planID, n).
func testPlan(planID string, orders []events.Order) events.Plan {
	p := &plan.Plan{SchemaVersion: events.SchemaVersion, ID: planID, Policy: orders[0].Policy}
	for _, o := range orders {
		p.Orders = append(p.Orders, plan.Order{ID: o.OrderID, Account: o.Account, Instrument: o.Instrument})
	}
	return events.Plan{SchemaVersion: events.SchemaVersion, Trigger: "threshold", CreatedAt: orders[0].CreatedAt,
		Breaching: []string{}, Plan: p}
}

// storedPlan is what an observer finds of a plan in the orders stream.
type storedPlan struct {
	ids       []string          // Nats-Msg-Id, in stream order
	batches   map[string]bool   // Nats-Batch-Id of the messages
	committed bool              // the last carries Nats-Batch-Commit
	seqs      []uint64          // stream sequences
	hdrs      []map[string]bool // header names per message
}

// readPlan reads the orders stream as an executor would, through an
// ordered consumer.
func readPlan(t *testing.T, url string) storedPlan {
	t.Helper()
	var sp storedPlan
	sp.batches = map[string]bool{}
	for _, m := range streamMessages(t, url, "REBALANCE_ORDERS") {
		h := m.Headers()
		sp.ids = append(sp.ids, h.Get(jetstream.MsgIDHeader))
		if id := h.Get(jetstreamext.BatchIDHeader); id != "" {
			sp.batches[id] = true
		}
		sp.committed = h.Get(jetstreamext.BatchCommitHeader) == "1"
		md, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		sp.seqs = append(sp.seqs, md.Sequence.Stream)
	}
	return sp
}

// publishPlan publishes a plan as the engine does: orders, with the plan
// event when the bus stores both in one batch, else the event after.
func publishPlan(ctx context.Context, b *Bus, orders []events.Order, pe events.Plan) ([]Ack, bool, error) {
	acks, sent, err := b.PublishPlanOrders(ctx, orders, &pe)
	if err == nil && !sent {
		err = b.PublishPlan(ctx, pe)
	}
	return acks, sent, err
}

// TestPublishPlanOrdersAtomic: on a server that takes atomic batches, a
// plan's orders and its event are stored as one batch, in order, the event
// last with the commit, each with its Nats-Msg-Id, and the acks give each
// order's stream sequence.
func TestPublishPlanOrdersAtomic(t *testing.T) {
	ts := newTestServer(t)
	b, logs := newBusLogged(t, connect(t, ts.url()), fastConfig())
	if !b.AtomicBatches() {
		t.Fatal("atomic batches off on a 2.15 server")
	}
	if got := logs.FilterMessage("JetStream streams ready").All(); len(got) != 1 || got[0].ContextMap()["atomic_batches"] != true ||
		got[0].ContextMap()["server_version"] == "" {
		t.Errorf("start log does not say atomic batches are on and why: %v", got)
	}
	orders := householdOrders("p1", 3)
	acks, sent, err := b.PublishPlanOrders(t.Context(), orders, new(testPlan("p1", orders)))
	if err != nil || !sent {
		t.Fatalf("PublishPlanOrders: sent %v, err %v", sent, err)
	}
	sp := readPlan(t, ts.url())
	want := []string{"p1-0", "p1-1", "p1-2", "plan-p1"}
	if !equalStrings(sp.ids, want) || len(sp.batches) != 1 || !sp.committed {
		t.Fatalf("stream holds %v in batches %v (committed %v), want %v in one batch", sp.ids, sp.batches, sp.committed, want)
	}
	for i, a := range acks {
		if a.OrderID != orders[i].OrderID || a.Sequence != sp.seqs[i] || a.Duplicate || a.Stream != "REBALANCE_ORDERS" {
			t.Errorf("ack %d: %+v, want order %s at sequence %d", i, a, orders[i].OrderID, sp.seqs[i])
		}
	}
}

// TestPublishPlanOrdersWithoutAtomic: with atomic batches off (as on a
// server older than 2.12.1) only the orders are published, one by one,
// and the caller is told to publish the event itself.
func TestPublishPlanOrdersWithoutAtomic(t *testing.T) {
	ts := newTestServer(t)
	cfg := fastConfig()
	cfg.NoAtomicBatches = true
	b, logs := newBusLogged(t, connect(t, ts.url()), cfg)
	if b.AtomicBatches() {
		t.Fatal("atomic batches on although disabled")
	}
	if got := logs.FilterMessage("JetStream streams ready").All(); len(got) != 1 || got[0].ContextMap()["atomic_batches"] != false {
		t.Errorf("start log: %v", got)
	}
	orders := householdOrders("p1", 2)
	acks, sent, err := b.PublishPlanOrders(t.Context(), orders, new(testPlan("p1", orders)))
	if err != nil || sent || len(acks) != 2 {
		t.Fatalf("PublishPlanOrders: %d acks, sent %v, err %v", len(acks), sent, err)
	}
	if sp := readPlan(t, ts.url()); !equalStrings(sp.ids, []string{"p1-0", "p1-1"}) || len(sp.batches) != 0 {
		t.Fatalf("stream holds %v (batches %v), want the two orders alone", sp.ids, sp.batches)
	}
}

// TestPublishPlanOrdersRefusesOrdersOfAnotherPlan: the batch is one plan.
func TestPublishPlanOrdersRefusesOrdersOfAnotherPlan(t *testing.T) {
	ts := newTestServer(t)
	b := newBus(t, connect(t, ts.url()), fastConfig())
	orders := householdOrders("p1", 2)
	if _, _, err := b.PublishPlanOrders(t.Context(), orders, new(testPlan("p2", householdOrders("p2", 2)))); err == nil {
		t.Fatal("orders of plan p1 published with the event of plan p2")
	}
	if n := len(readPlan(t, ts.url()).ids); n != 0 {
		t.Fatalf("%d messages stored", n)
	}
}

// TestAtomicBatchInterruptedBeforeCommit is the regression test of plans
// stored in part: the connection breaks just before the plan event goes
// out (the batch's commit). Nothing of the plan is visible then, and the
// retry stores every message exactly once. Published one message at a
// time, as before atomic batches, the orders stay visible without their
// plan event: the "one by one" case shows what the test catches.
func TestAtomicBatchInterruptedBeforeCommit(t *testing.T) {
	for _, tt := range []struct {
		name   string
		atomic bool
	}{{"atomic", true}, {"one by one", false}} {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t)
			px := natsproxy.Start(t, ts.server().Addr().String(), events.DefaultPrefix+".plans.")
			cfg := fastConfig()
			cfg.NoAtomicBatches = !tt.atomic
			b := newBus(t, connect(t, "nats://"+px.Addr()), cfg)
			orders := householdOrders("p1", 3)
			pe := testPlan("p1", orders)

			// The connection breaks just before the plan event; the
			// publish then stops, as at shutdown.
			ctx, cancel := context.WithCancel(t.Context())
			px.Arm(natsproxy.ForwardNone)
			go func() {
				select {
				case <-px.Tripped():
					cancel()
				case <-ctx.Done():
				}
			}()
			_, _, err := publishPlan(ctx, b, orders, pe)
			var ue *UnackedError
			if !errors.As(err, &ue) {
				t.Fatalf("interrupted publish: %v, want an *UnackedError", err)
			}
			sp := readPlan(t, ts.url())
			if tt.atomic {
				if len(sp.ids) != 0 {
					t.Fatalf("after the break the stream shows %v: a plan partly visible", sp.ids)
				}
			} else if len(sp.ids) != 3 {
				t.Fatalf("one by one: the stream shows %v, want the 3 orders without their event", sp.ids)
			}

			acks, sent, err := publishPlan(t.Context(), b, orders, pe)
			if err != nil || sent != tt.atomic {
				t.Fatalf("retry: sent %v, err %v", sent, err)
			}
			sp = readPlan(t, ts.url())
			if want := []string{"p1-0", "p1-1", "p1-2", "plan-p1"}; !equalStrings(sp.ids, want) {
				t.Fatalf("after the retry the stream holds %v, want %v", sp.ids, want)
			}
			for _, a := range acks {
				if a.Duplicate != !tt.atomic { // one by one, the orders were stored already
					t.Errorf("ack %+v", a)
				}
			}
		})
	}
}

// TestAtomicBatchRetriedAfterLostAck: the batch is stored but the
// connection breaks before its ack comes back. The retry, a new batch
// with the same message ids, stores nothing more: the server refuses it
// whole, and each message confirmed by its id is a duplicate.
func TestAtomicBatchRetriedAfterLostAck(t *testing.T) {
	ts := newTestServer(t)
	px := natsproxy.Start(t, ts.server().Addr().String(), events.DefaultPrefix+".plans.")
	b, logs := newBusLogged(t, connect(t, "nats://"+px.Addr()), fastConfig())
	orders := householdOrders("p1", 3)
	// The commit reaches the server; the client cannot reconnect until it
	// is stored, so its ack is lost for sure.
	px.Hold(true)
	px.Arm(natsproxy.ForwardFirst)
	type result struct {
		acks []Ack
		sent bool
		err  error
	}
	res := make(chan result, 1)
	go func() {
		acks, sent, err := b.PublishPlanOrders(t.Context(), orders, new(testPlan("p1", orders)))
		res <- result{acks, sent, err}
	}()
	select {
	case <-px.Tripped():
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy never cut the connection")
	}
	checkFor(t, 10*time.Second, func() error {
		if n := len(readPlan(t, ts.url()).ids); n != 4 {
			return fmt.Errorf("%d messages stored", n)
		}
		return nil
	})
	px.Hold(false)
	var r result
	select {
	case r = <-res:
	case <-time.After(10 * time.Second):
		t.Fatal("PublishPlanOrders did not return after the proxy let the client reconnect")
	}
	acks, sent, err := r.acks, r.sent, r.err
	if err != nil || !sent {
		t.Fatalf("PublishPlanOrders: sent %v, err %v", sent, err)
	}
	if logs.FilterMessage("plan batch already stored by an earlier attempt; confirming its messages by id").Len() != 1 {
		t.Error("the retry was not refused as a duplicate batch")
	}
	sp := readPlan(t, ts.url())
	if want := []string{"p1-0", "p1-1", "p1-2", "plan-p1"}; !equalStrings(sp.ids, want) {
		t.Fatalf("stream holds %v, want %v once each", sp.ids, want)
	}
	for i, a := range acks {
		if !a.Duplicate || a.Sequence != sp.seqs[i] {
			t.Errorf("ack %d: %+v, want a duplicate at sequence %d", i, a, sp.seqs[i])
		}
	}
	// The same plan again (a requeue at start) is still stored once.
	if _, sent, err := b.PublishPlanOrders(t.Context(), orders, new(testPlan("p1", orders))); err != nil || !sent {
		t.Fatalf("again: sent %v, err %v", sent, err)
	}
	if n := len(readPlan(t, ts.url()).ids); n != 4 {
		t.Fatalf("stream holds %d messages after a third attempt, want 4", n)
	}
}

// TestAtomicBatchAfterPartialOneByOne: a plan whose orders were partly
// published one by one (before an upgrade to atomic batches, say) is
// completed by the batch path without duplicating the stored ones.
func TestAtomicBatchAfterPartialOneByOne(t *testing.T) {
	ts := newTestServer(t)
	nc := connect(t, ts.url())
	cfg := fastConfig()
	cfg.NoAtomicBatches = true
	old := newBus(t, nc, cfg)
	orders := householdOrders("p1", 3)
	if _, err := old.PublishOrders(t.Context(), orders[:2]); err != nil {
		t.Fatal(err)
	}
	b := newBus(t, nc, fastConfig())
	acks, sent, err := b.PublishPlanOrders(t.Context(), orders, new(testPlan("p1", orders)))
	if err != nil || !sent {
		t.Fatalf("sent %v, err %v", sent, err)
	}
	if sp := readPlan(t, ts.url()); !equalStrings(sp.ids, []string{"p1-0", "p1-1", "p1-2", "plan-p1"}) {
		t.Fatalf("stream holds %v", sp.ids)
	}
	if !acks[0].Duplicate || !acks[1].Duplicate || acks[2].Duplicate {
		t.Errorf("acks %+v: want the first two duplicates", acks)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestAtomicBatchRefusedFallsBack: a stream that stops taking atomic
// batches after the start (another instance turned allow_atomic off, a
// downgraded server) refuses the batch; the plan goes out one message at
// a time, and so do the next ones.
func TestAtomicBatchRefusedFallsBack(t *testing.T) {
	ts := newTestServer(t)
	nc := connect(t, ts.url())
	b, logs := newBusLogged(t, nc, fastConfig())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	sc := b.ordersStreamConfig() // allow_atomic off
	if _, err := js.UpdateStream(t.Context(), sc); err != nil {
		t.Fatal(err)
	}
	orders := householdOrders("p1", 2)
	acks, sent, err := b.PublishPlanOrders(t.Context(), orders, new(testPlan("p1", orders)))
	if err != nil || sent || len(acks) != 2 {
		t.Fatalf("PublishPlanOrders: %d acks, sent %v, err %v", len(acks), sent, err)
	}
	if b.AtomicBatches() || logs.FilterMessage("the server refused an atomic batch; plans are published one message at a time from now on").Len() != 1 {
		t.Fatal("the refusal did not turn atomic batches off with a warning")
	}
	if sp := readPlan(t, ts.url()); !equalStrings(sp.ids, []string{"p1-0", "p1-1"}) {
		t.Fatalf("stream holds %v, want the two orders", sp.ids)
	}
}

// TestAtomicBatchOneRoundTrip: a plan's batch goes out as core publishes,
// only its commit (the plan event) awaiting a reply: one round trip per
// plan, whatever its size. (jetstreamext's default flow control, AckFirst,
// would make the first order a request too; see docs/BENCHMARKS.md, "Why an
// atomic batch costs milliseconds".)
func TestAtomicBatchOneRoundTrip(t *testing.T) {
	ts := newTestServer(t)
	px := natsproxy.Start(t, ts.server().Addr().String(), "no.trip.")
	b := newBus(t, connect(t, "nats://"+px.Addr()), fastConfig())
	if !b.AtomicBatches() {
		t.Fatal("the server takes no atomic batches")
	}
	orders := householdOrders("p1", 3)
	px.Record(events.DefaultPrefix + ".")
	if _, sent, err := b.PublishPlanOrders(t.Context(), orders, new(testPlan("p1", orders))); err != nil || !sent {
		t.Fatalf("PublishPlanOrders: plan sent %v, %v", sent, err)
	}
	var got []string
	for _, m := range px.Published() {
		got = append(got, fmt.Sprintf("%s reply=%t", m.Subject, m.Reply != ""))
	}
	want := []string{
		"rebalance.orders.smith-family.taxable reply=false",
		"rebalance.orders.smith-family.ira reply=false",
		"rebalance.orders.smith-family.taxable reply=false",
		"rebalance.plans.smith-family reply=true",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("messages sent:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
