package paper

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rebalancerd/rebalancerd/internal/events"
	rnats "github.com/rebalancerd/rebalancerd/internal/nats"
)

var at = time.Date(2026, 11, 29, 5, 42, 38, 0, time.UTC)

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func order(id, side, qty, price string) events.Order {
	return events.Order{SchemaVersion: 1, OrderID: id, PlanID: "p", Policy: "jones-household", Account: "roth",
		Instrument: "VTI", Side: side, Quantity: d(qty), Price: d(price), ExpiresAt: at.Add(time.Hour)}
}

func TestFill(t *testing.T) {
	for _, tc := range []struct {
		name             string
		o                events.Order
		s                Settings
		qty, price, fees string
		status           events.FillStatus
	}{
		{"reference", order("a-1", "sell", "120", "285.12"), Settings{}, "120", "285.12", "0", events.FillFilled},
		// A sell receives less, a buy pays more: 285.12 x (1 -/+ 0.0005).
		{"sell slippage", order("a-1", "sell", "120", "285.12"), Settings{SlippageBps: d("5")}, "120", "284.97744", "0", events.FillFilled},
		{"buy slippage", order("a-1", "buy", "120", "285.12"), Settings{SlippageBps: d("5")}, "120", "285.26256", "0", events.FillFilled},
		// Fees: 34214.4 x 10 / 10000 = 34.2144, to cents 34.21.
		{"fees", order("a-1", "buy", "120", "285.12"), Settings{FeeBps: d("10")}, "120", "285.12", "34.21", events.FillFilled},
		// 0.2411 x 0.7 = 0.16877, down to 4 places.
		{"partial", order("a-2", "sell", "0.2411", "41250"), Settings{Unfilled: d("0.3")}, "0.1687", "41250", "0", events.FillPartial},
		{"partial whole units", order("a-3", "buy", "519", "61.4"), Settings{Unfilled: d("0.5")}, "259", "61.4", "0", events.FillPartial},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := Fill(tc.o, tc.o.Price, tc.s, at)
			if f.FillID != "paper-"+tc.o.OrderID || f.OrderID != tc.o.OrderID || f.SchemaVersion != 1 || !f.At.Equal(at) {
				t.Errorf("ids: %+v", f)
			}
			if !f.Quantity.Equal(d(tc.qty)) || !f.Price.Equal(d(tc.price)) || !f.Fees.Equal(d(tc.fees)) || f.Status != tc.status {
				t.Errorf("got %s @ %s fees %s %s, want %s @ %s fees %s %s", f.Quantity, f.Price, f.Fees, f.Status,
					tc.qty, tc.price, tc.fees, tc.status)
			}
		})
	}
}

func TestSettingsValidate(t *testing.T) {
	for _, s := range []Settings{{FeeBps: d("-1")}, {SlippageBps: d("-1")}, {SlippageBps: d("10000")}, {Unfilled: d("1")}, {Unfilled: d("-0.1")}} {
		if s.Validate() == nil {
			t.Errorf("%+v accepted", s)
		}
	}
	if err := (Settings{FeeBps: d("10"), SlippageBps: d("5"), Unfilled: d("0.5")}).Validate(); err != nil {
		t.Error(err)
	}
}

// bus starts an embedded NATS server with the daemon's streams.
func bus(t *testing.T) (*natsgo.Conn, jetstream.JetStream) {
	t.Helper()
	ns, err := rnats.StartEmbedded(rnats.EmbeddedConfig{Port: -1, StoreDir: t.TempDir()}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err := natsgo.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := rnats.NewBus(ctx, nc, rnats.StreamConfig{Prefix: "rebalance"}, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func publishOrder(t *testing.T, js jetstream.JetStream, o events.Order) {
	t.Helper()
	data, _ := json.Marshal(o)
	if _, err := js.Publish(context.Background(), events.Subjects{Prefix: "rebalance"}.Order(o.Policy, o.Account), data,
		jetstream.WithMsgID(o.OrderID)); err != nil {
		t.Fatal(err)
	}
}

// storedFills returns the fills in the reports stream.
func storedFills(t *testing.T, js jetstream.JetStream) []events.Fill {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "REBALANCE_REPORTS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Fill
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var f events.Fill
		if err := json.Unmarshal(m.Data, &f); err != nil {
			t.Fatal(err)
		}
		if m.Subject != "rebalance.fills.jones-household.roth" || m.Header.Get("Nats-Msg-Id") != f.FillID {
			t.Errorf("fill %s on %s with Nats-Msg-Id %q", f.FillID, m.Subject, m.Header.Get("Nats-Msg-Id"))
		}
		out = append(out, f)
	}
	return out
}

func waitFor(t *testing.T, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal(err)
}

// run starts an executor and returns a function that stops it and waits.
func run(t *testing.T, x *Executor) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// TestExecutorFillsOnceAcrossRestarts: every order gets one fill in the
// reports stream, expired orders none, and an executor started again
// (same durable) fills only what is new.
func TestExecutorFillsOnceAcrossRestarts(t *testing.T) {
	_, js := bus(t)
	publishOrder(t, js, order("p-1", "sell", "120", "285.12"))
	publishOrder(t, js, order("p-2", "buy", "519", "61.4"))
	old := order("p-3", "buy", "1", "10")
	old.ExpiresAt = at.Add(-time.Minute)
	publishOrder(t, js, old)

	var mu sync.Mutex
	var filled []string
	x := &Executor{JS: js, Prefix: "rebalance", Now: func() time.Time { return at }, Log: zaptest.NewLogger(t),
		OnFill: func(f events.Fill) { mu.Lock(); filled = append(filled, f.OrderID); mu.Unlock() }}
	stop := run(t, x)
	waitFor(t, func() error {
		if n := len(storedFills(t, js)); n != 2 {
			return errors.New("fills not stored yet")
		}
		return nil
	})
	stop()

	publishOrder(t, js, order("p-4", "sell", "1", "72.15"))
	stop = run(t, &Executor{JS: js, Prefix: "rebalance", Now: func() time.Time { return at }, Log: zaptest.NewLogger(t)})
	waitFor(t, func() error {
		if n := len(storedFills(t, js)); n != 3 {
			return errors.New("fill of p-4 not stored yet")
		}
		return nil
	})
	stop()
	var ids []string
	for _, f := range storedFills(t, js) {
		ids = append(ids, f.FillID)
	}
	if want := []string{"paper-p-1", "paper-p-2", "paper-p-4"}; !equal(ids, want) {
		t.Errorf("stored fills %v, want %v", ids, want)
	}
	if !equal(filled, []string{"p-1", "p-2"}) {
		t.Errorf("first run filled %v", filled)
	}
}

// TestExecutorAcksOnlyStoredFills: while the fill cannot be stored (the
// reports stream is gone) the order is not acknowledged; once it can, the
// redelivered order is filled.
func TestExecutorAcksOnlyStoredFills(t *testing.T) {
	_, js := bus(t)
	ctx := context.Background()
	cfg, err := js.Stream(ctx, "REBALANCE_REPORTS")
	if err != nil {
		t.Fatal(err)
	}
	saved := cfg.CachedInfo().Config
	if err := js.DeleteStream(ctx, "REBALANCE_REPORTS"); err != nil {
		t.Fatal(err)
	}
	publishOrder(t, js, order("q-1", "sell", "120", "285.12"))
	core, logs := observer.New(zapcore.InfoLevel)
	x := &Executor{JS: js, Prefix: "rebalance", Now: func() time.Time { return at }, Log: zap.New(core)}
	stop := run(t, x)
	defer stop()
	cons, err := js.Consumer(ctx, "REBALANCE_ORDERS", DefaultDurable)
	waitFor(t, func() error {
		if err != nil {
			cons, err = js.Consumer(ctx, "REBALANCE_ORDERS", DefaultDurable)
			return err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumAckPending != 1 || info.Delivered.Consumer < 1 {
			return errors.New("order not delivered yet")
		}
		return nil
	})
	waitFor(t, func() error {
		if logs.FilterMessage("order not filled; delivered again later").Len() == 0 {
			return errors.New("the failed publish is not logged")
		}
		return nil
	})
	info, _ := cons.Info(ctx)
	if info.AckFloor.Consumer != 0 {
		t.Fatalf("order acknowledged without a stored fill: %+v", info.AckFloor)
	}
	if _, err := js.CreateStream(ctx, saved); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() error {
		if fills := storedFills(t, js); len(fills) != 1 || fills[0].FillID != "paper-q-1" {
			return errors.New("fill not stored after the stream came back")
		}
		info, err := cons.Info(ctx)
		if err != nil || info.NumAckPending != 0 || info.NumPending != 0 {
			return errors.New("order not acknowledged yet")
		}
		return nil
	})
}

func equal(a, b []string) bool {
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
