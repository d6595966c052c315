package nats

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/plan"
)

func TestStreamNames(t *testing.T) {
	for _, tc := range []struct{ prefix, orders, reports string }{
		{"rebalance", "REBALANCE_ORDERS", "REBALANCE_REPORTS"},
		{"acme.reb-al_2", "ACME_REB_AL_2_ORDERS", "ACME_REB_AL_2_REPORTS"},
	} {
		o, r := StreamNames(tc.prefix)
		if o != tc.orders || r != tc.reports {
			t.Errorf("StreamNames(%q) = %q, %q; want %q, %q", tc.prefix, o, r, tc.orders, tc.reports)
		}
	}
}

func TestStreamConfigInvalid(t *testing.T) {
	for name, cfg := range map[string]StreamConfig{
		"duplicates over max age": {MaxAge: time.Hour, Duplicates: 2 * time.Hour},
		"wildcard prefix":         {Prefix: "rebalance.*"},
		"empty prefix token":      {Prefix: "acme..rebalance"},
		"replicas":                {Replicas: 7},
		"consumer with dot":       {Consumer: "a.b"},
		"negative ack wait":       {AckWait: -time.Second},
	} {
		if _, err := cfg.withDefaults(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestNewBusCreatesAndUpdatesStreams(t *testing.T) {
	ts := newTestServer(t)
	nc := connect(t, ts.url())
	b := newBus(t, nc, StreamConfig{})

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want := map[string][]string{
		"REBALANCE_ORDERS":  {"rebalance.orders.>", "rebalance.plans.>", "rebalance.alerts.>"},
		"REBALANCE_REPORTS": {"rebalance.fills.>", "rebalance.positions.>", "rebalance.cashflows.>"},
	}
	if b.OrdersStream() != "REBALANCE_ORDERS" || b.ReportsStream() != "REBALANCE_REPORTS" {
		t.Fatalf("stream names %s, %s", b.OrdersStream(), b.ReportsStream())
	}
	for name, subjects := range want {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		c := s.CachedInfo().Config
		if !slices.Equal(c.Subjects, subjects) || c.Storage != jetstream.FileStorage || c.Replicas != 1 ||
			c.MaxAge != DefaultMaxAge || c.Duplicates != DefaultDuplicates {
			t.Errorf("stream %s: subjects %v storage %v replicas %d max age %s duplicates %s",
				name, c.Subjects, c.Storage, c.Replicas, c.MaxAge, c.Duplicates)
		}
	}

	// Again, with other limits: the streams are updated in place.
	newBus(t, nc, StreamConfig{MaxAge: 48 * time.Hour, Duplicates: time.Hour})
	for name := range want {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if c := s.CachedInfo().Config; c.MaxAge != 48*time.Hour || c.Duplicates != time.Hour {
			t.Errorf("stream %s after update: max age %s duplicates %s", name, c.MaxAge, c.Duplicates)
		}
	}
}

func TestNewBusFailsOnSubjectsTakenByAnotherStream(t *testing.T) {
	ts := newTestServer(t)
	nc := connect(t, ts.url())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"rebalance.>"}}); err != nil {
		t.Fatal(err)
	}
	// A definite refusal: NewBus must not retry until ctx ends.
	if _, err := NewBus(ctx, nc, StreamConfig{}, nil); err == nil || ctx.Err() != nil {
		t.Fatalf("NewBus = %v (ctx %v); want an immediate error", err, ctx.Err())
	} else if !strings.Contains(err.Error(), "REBALANCE_ORDERS") {
		t.Errorf("error does not name the stream: %v", err)
	}
}

func TestPublishOrders(t *testing.T) {
	ts := newTestServer(t)
	nc := connect(t, ts.url())
	b := newBus(t, nc, fastConfig())
	orders := householdOrders("plan1", 5)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	acks, err := b.PublishOrders(ctx, orders)
	if err != nil {
		t.Fatalf("PublishOrders: %v", err)
	}
	if len(acks) != len(orders) {
		t.Fatalf("%d acks for %d orders", len(acks), len(orders))
	}
	for i, a := range acks {
		if a.OrderID != orders[i].OrderID || a.Stream != "REBALANCE_ORDERS" || a.Duplicate || a.Sequence == 0 {
			t.Errorf("ack %d: %+v", i, a)
		}
	}

	msgs := streamMessages(t, ts.url(), "REBALANCE_ORDERS")
	if len(msgs) != len(orders) {
		t.Fatalf("stream holds %d messages; want %d", len(msgs), len(orders))
	}
	bySeq := map[uint64]jetstream.Msg{}
	for _, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		bySeq[md.Sequence.Stream] = m
	}
	for i, o := range orders {
		m, ok := bySeq[acks[i].Sequence]
		if !ok {
			t.Fatalf("order %s: no message at its acked sequence %d", o.OrderID, acks[i].Sequence)
		}
		if want := "rebalance.orders.smith-family." + o.Account; m.Subject() != want {
			t.Errorf("order %s on %s; want %s", o.OrderID, m.Subject(), want)
		}
		if id := m.Headers().Get(jetstream.MsgIDHeader); id != o.OrderID {
			t.Errorf("order %s has Nats-Msg-Id %q", o.OrderID, id)
		}
		var got events.Order
		if err := json.Unmarshal(m.Data(), &got); err != nil {
			t.Fatalf("order %s: %v", o.OrderID, err)
		}
		if got.OrderID != o.OrderID || !got.Quantity.Equal(o.Quantity) || !got.Notional.Equal(o.Notional) ||
			got.Account != o.Account || !got.ExpiresAt.Equal(o.ExpiresAt) {
			t.Errorf("order %s decoded as %+v", o.OrderID, got)
		}
	}

	// The same orders again: all duplicates of the stored ones.
	again, err := b.PublishOrders(ctx, orders)
	if err != nil {
		t.Fatalf("PublishOrders again: %v", err)
	}
	for i, a := range again {
		if !a.Duplicate || a.Sequence != acks[i].Sequence {
			t.Errorf("republished order %s: %+v; want a duplicate of sequence %d", orders[i].OrderID, a, acks[i].Sequence)
		}
	}
	if n := len(streamMessages(t, ts.url(), "REBALANCE_ORDERS")); n != len(orders) {
		t.Errorf("after republishing, the stream holds %d messages; want %d", n, len(orders))
	}
}

func TestPublishOrdersRejectsInvalidBatch(t *testing.T) {
	ts := newTestServer(t)
	nc := connect(t, ts.url())
	b := newBus(t, nc, fastConfig())
	ctx := context.Background()
	for name, mutate := range map[string]func([]events.Order){
		"empty id":       func(o []events.Order) { o[2].OrderID = "" },
		"duplicate id":   func(o []events.Order) { o[3].OrderID = o[1].OrderID },
		"account token":  func(o []events.Order) { o[0].Account = "a.b" },
		"policy token":   func(o []events.Order) { o[4].Policy = "p*" },
		"schema version": func(o []events.Order) { o[1].SchemaVersion = 0 },
	} {
		orders := householdOrders("bad", 5)
		mutate(orders)
		if acks, err := b.PublishOrders(ctx, orders); err == nil || len(acks) != 0 {
			t.Errorf("%s: acks %v, err %v; want an error and no ack", name, acks, err)
		}
	}
	if n := len(streamMessages(t, ts.url(), "REBALANCE_ORDERS")); n != 0 {
		t.Errorf("invalid batches published %d messages", n)
	}
}

func TestPublishPlanAndDrift(t *testing.T) {
	ts := newTestServer(t)
	nc := connect(t, ts.url())
	b := newBus(t, nc, fastConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	sub, err := nc.SubscribeSync("rebalance.drift.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.PublishDrift(events.Drift{SchemaVersion: events.SchemaVersion, Policy: "smith-family"}); err != nil {
		t.Fatalf("PublishDrift: %v", err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil || m.Subject != "rebalance.drift.smith-family" {
		t.Fatalf("drift: %v %v", m, err)
	}

	p := events.Plan{SchemaVersion: events.SchemaVersion, Trigger: "manual",
		Plan: &plan.Plan{SchemaVersion: events.SchemaVersion, ID: "p-42", Policy: "smith-family"}}
	for range 2 {
		if err := b.PublishPlan(ctx, p); err != nil {
			t.Fatalf("PublishPlan: %v", err)
		}
	}
	msgs := streamMessages(t, ts.url(), "REBALANCE_ORDERS")
	if len(msgs) != 1 || msgs[0].Subject() != "rebalance.plans.smith-family" ||
		msgs[0].Headers().Get(jetstream.MsgIDHeader) != "plan-p-42" {
		t.Fatalf("plans stream: %d messages, first %v", len(msgs), msgs)
	}
	if err := b.PublishPlan(ctx, events.Plan{SchemaVersion: events.SchemaVersion}); err == nil {
		t.Error("PublishPlan without a plan: no error")
	}
}

// TestPublishOrdersAcrossServerRestart publishes while the server is down:
// PublishOrders completes once it is back, and orders acked before the
// outage are recognized as duplicates by the restarted server. Without a
// reconnect buffer every publish fails while the server is down, which
// exercises the retries; with one, publishes wait in the buffer.
func TestPublishOrdersAcrossServerRestart(t *testing.T) {
	for _, tc := range []struct {
		name    string
		bufSize int
	}{{"reconnect buffer", 0}, {"no reconnect buffer", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTestServer(t)
			nc := connectWith(t, ConnConfig{URL: ts.url(), ReconnectBufSize: tc.bufSize})
			b, logs := newBusLogged(t, nc, fastConfig())
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			first := householdOrders("before", 5)
			acked, err := b.PublishOrders(ctx, first)
			if err != nil {
				t.Fatal(err)
			}

			ts.stop()
			checkFor(t, 5*time.Second, func() error {
				if nc.IsConnected() {
					return errors.New("still connected")
				}
				return nil
			})
			all := append(householdOrders("during", 5), first...)
			type result struct {
				acks []Ack
				err  error
			}
			done := make(chan result, 1)
			go func() {
				acks, err := b.PublishOrders(ctx, all)
				done <- result{acks, err}
			}()
			if tc.bufSize < 0 {
				// Wait for a failed round before bringing the server back.
				checkFor(t, 5*time.Second, func() error {
					if logs.FilterMessageSnippet("retrying with the same message ids").Len() == 0 {
						return errors.New("no retry logged")
					}
					return nil
				})
			}
			ts.start()

			var r result
			select {
			case r = <-done:
			case <-ctx.Done():
				t.Fatal("PublishOrders did not complete after the server came back")
			}
			if r.err != nil {
				t.Fatalf("PublishOrders: %v", r.err)
			}
			if len(r.acks) != len(all) {
				t.Fatalf("%d acks for %d orders", len(r.acks), len(all))
			}
			for i, a := range r.acks[5:] {
				if !a.Duplicate || a.Sequence != acked[i].Sequence {
					t.Errorf("order %s acked before the restart: %+v; want a duplicate of sequence %d", a.OrderID, a, acked[i].Sequence)
				}
			}
			assertEachOnce(t, ts.url(), all)
		})
	}
}

// TestPublishOrdersServerStopsMidRun stops the server while a batch is
// being published one order at a time.
func TestPublishOrdersServerStopsMidRun(t *testing.T) {
	ts := newTestServer(t)
	nc := connect(t, ts.url())
	cfg := fastConfig()
	cfg.MaxInFlight = 1
	b := newBus(t, nc, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// An observer on its own connection signals the first stored order.
	obs := connect(t, ts.url())
	firstSeen := make(chan struct{})
	sub, err := obs.Subscribe("rebalance.orders.>", func(*natsgo.Msg) {
		select {
		case <-firstSeen:
		default:
			close(firstSeen)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := obs.Flush(); err != nil {
		t.Fatal(err)
	}

	orders := householdOrders("midrun", 400)
	done := make(chan error, 1)
	go func() {
		_, err := b.PublishOrders(ctx, orders)
		done <- err
	}()
	<-firstSeen
	select {
	case err := <-done:
		t.Fatalf("PublishOrders finished (%v) before the server could be stopped mid-run", err)
	default:
	}
	ts.stop()
	ts.start()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("PublishOrders: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("PublishOrders did not complete after the server came back")
	}
	assertEachOnce(t, ts.url(), orders)
}

// assertEachOnce checks that the orders stream holds each order exactly
// once and nothing else.
func assertEachOnce(t *testing.T, url string, orders []events.Order) {
	t.Helper()
	count := map[string]int{}
	for _, m := range streamMessages(t, url, "REBALANCE_ORDERS") {
		var o events.Order
		if err := json.Unmarshal(m.Data(), &o); err != nil {
			t.Fatal(err)
		}
		if id := m.Headers().Get(jetstream.MsgIDHeader); id != o.OrderID {
			t.Errorf("message of order %s has Nats-Msg-Id %q", o.OrderID, id)
		}
		count[o.OrderID]++
	}
	for _, o := range orders {
		if count[o.OrderID] != 1 {
			t.Errorf("order %s stored %d times", o.OrderID, count[o.OrderID])
		}
		delete(count, o.OrderID)
	}
	if len(count) != 0 {
		t.Errorf("unexpected messages: %v", count)
	}
}

func TestPublishOrdersUnackedOnContextEnd(t *testing.T) {
	ts := newTestServer(t)
	nc := connect(t, ts.url())
	b := newBus(t, nc, fastConfig())
	ts.stop()
	checkFor(t, 5*time.Second, func() error {
		if nc.IsConnected() {
			return errors.New("still connected")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	orders := householdOrders("down", 3)
	acks, err := b.PublishOrders(ctx, orders)
	var ue *UnackedError
	if !errors.As(err, &ue) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v; want an *UnackedError wrapping the deadline", err)
	}
	if len(acks) != 0 || !slices.Equal(ue.IDs, []string{"down-0", "down-1", "down-2"}) {
		t.Errorf("acks %v, unacked %v", acks, ue.IDs)
	}
	if m := missing(err.Error(), "down-0", "down-1", "down-2"); m != nil {
		t.Errorf("error %q does not name %v", err, m)
	}
}

// TestPublishOrdersSendsNothingAfterContextEnd: a context that ended
// before the call (the kill switch cancelled the attempt) sends nothing:
// every order is reported unacknowledged and the stream stays empty.
func TestPublishOrdersSendsNothingAfterContextEnd(t *testing.T) {
	ts := newTestServer(t)
	nc := connect(t, ts.url())
	b := newBus(t, nc, fastConfig())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	orders := householdOrders("halted", 3)
	acks, err := b.PublishOrders(ctx, orders)
	var ue *UnackedError
	if !errors.As(err, &ue) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v; want an *UnackedError wrapping context.Canceled", err)
	}
	if len(acks) != 0 || len(ue.IDs) != len(orders) {
		t.Fatalf("acks %v, unacked %v; want none acknowledged, all %d unacknowledged", acks, ue.IDs, len(orders))
	}
	// A publish that is acknowledged after it shows that nothing from the
	// cancelled call is queued ahead of it in the stream.
	if _, err := b.PublishOrders(context.Background(), householdOrders("after", 1)); err != nil {
		t.Fatal(err)
	}
	msgs := streamMessages(t, ts.url(), b.OrdersStream())
	if len(msgs) != 1 || msgs[0].Headers().Get("Nats-Msg-Id") != "after-0" {
		ids := make([]string, len(msgs))
		for i, m := range msgs {
			ids[i] = m.Headers().Get("Nats-Msg-Id")
		}
		t.Fatalf("stream holds %v; want only after-0", ids)
	}
}
