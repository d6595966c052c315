package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"
	"go.uber.org/zap/zaptest"

	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/config"
	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/state"
)

// checkFor polls cond until it returns nil or the deadline passes, like
// nats-server's test helper of the same name.
func checkFor(t testing.TB, total, every time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(every)
	}
	t.Fatalf("condition not met after %v: %v", total, err)
}

// testPolicy is a two-sleeve household on target at prices of 100:
// VTI 60 x 100 = 6000 (60%), BND 35 x 100 = 3500 (35%), cash 500 (5%).
const testPolicy = `policy: test-household
currency: USD
targets:
  stocks: 60%
  bonds: 35%
  cash: 5%
bands:
  absolute: 5%
rebalance:
  trigger: %TRIGGER%
%SCHEDULE%  check_every: 1m
  cooldown: 1m
  order_ttl: 2h
  destination: target
prices:
  max_age: 10m
  max_move: 40%
instruments:
  VTI: {sleeve: stocks}
  BND: {sleeve: bonds}
accounts:
  ira: {type: traditional_ira}
`

const testHoldings = `as_of: 2026-11-20T21:00:00Z
accounts:
  ira: {cash: "500", positions: {VTI: "60", BND: "35"}}
`

// policyText returns the test policy with a trigger and an optional cron
// schedule.
func policyText(trigger, schedule string) string {
	s := strings.Replace(testPolicy, "%TRIGGER%", trigger, 1)
	if schedule != "" {
		schedule = fmt.Sprintf("  schedule: %q\n", schedule)
	}
	return strings.Replace(s, "%SCHEDULE%", schedule, 1)
}

// daemon is a Main under test with what tests need around it.
type daemon struct {
	*Main
	t      testing.TB
	clock  *clock.Fake
	dir    string
	policy string // policy file path
	nc     *natsgo.Conn
}

// startDaemon writes the policy and holdings into a temporary directory
// and starts a Main on it: embedded NATS on a random port with JetStream
// in the directory, HTTP on 127.0.0.1:0, a NATS price feed and a fake
// clock at now.
func startDaemon(t testing.TB, policyYAML string, now time.Time, tweak func(*config.Config, *Main)) *daemon {
	t.Helper()
	dir := t.TempDir()
	pfile := filepath.Join(dir, "policies", "test.yaml")
	hfile := filepath.Join(dir, "holdings", "test.yaml")
	writeFile(t, pfile, policyYAML)
	writeFile(t, hfile, testHoldings)
	cfg := config.DefaultConfig()
	cfg.File = filepath.Join(dir, "rebalancerd.yaml")
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Policies = []config.PolicySource{{Policy: pfile, Holdings: hfile}}
	cfg.Feeds = []config.Feed{{Name: "bus", Kind: config.FeedNATS}}
	clk := clock.NewFake(now)
	m := &Main{Config: cfg, Log: zaptest.NewLogger(t), Clock: clk, EmbeddedPort: -1,
		Debounce: 20 * time.Millisecond, Recheck: time.Hour}
	if tweak != nil {
		tweak(cfg, m)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := m.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	d := &daemon{Main: m, t: t, clock: clk, dir: dir, policy: pfile}
	t.Cleanup(func() {
		if d.nc != nil {
			d.nc.Close()
		}
		if err := m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return d
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// url is the NATS URL of the daemon's server (embedded or external).
func (d *daemon) url() string {
	if d.Server != nil {
		return d.Server.ClientURL() // the daemon itself is connected in process
	}
	return d.Conn.ConnectedUrl()
}

// client is an independent NATS connection, as an executor would have.
func (d *daemon) client() *natsgo.Conn {
	d.t.Helper()
	if d.nc == nil {
		nc, err := natsgo.Connect(d.url(), natsgo.MaxReconnects(-1), natsgo.ReconnectWait(20*time.Millisecond))
		if err != nil {
			d.t.Fatal(err)
		}
		d.nc = nc
	}
	return d.nc
}

// prices publishes quotes on the NATS price subject, timed at the fake
// clock's now, and waits until the feed has them. Core NATS drops what is
// published before the feed's subscription exists, so it publishes again
// until the feed reports them (the guard ignores a repeat of the same
// quote).
func (d *daemon) prices(kv ...string) {
	d.t.Helper()
	nc := d.client()
	subj := events.Subjects{Prefix: events.DefaultPrefix}
	at := d.clock.Now()
	polls := func() uint64 {
		var n uint64
		for _, f := range d.sources {
			if st := f.Status(); st.Kind == config.FeedNATS {
				n += st.Polls // the NATS feed counts messages (polled feeds, polls)
			}
		}
		return n
	}
	before := polls()
	received := func() bool { return polls() >= before+uint64(len(kv)/2) }
	deadline := time.Now().Add(5 * time.Second)
	for {
		for i := 0; i < len(kv); i += 2 {
			data, _ := json.Marshal(events.Price{SchemaVersion: 1, Symbol: kv[i], Price: decimal.RequireFromString(kv[i+1]), At: at})
			if err := nc.Publish(subj.Price(kv[i]), data); err != nil {
				d.t.Fatal(err)
			}
		}
		if err := nc.Flush(); err != nil {
			d.t.Fatal(err)
		}
		for wait := time.Now().Add(200 * time.Millisecond); time.Now().Before(wait); time.Sleep(2 * time.Millisecond) {
			if received() {
				return
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("quotes at %v not received by the feed", at)
		}
	}
}

// orderWatcher collects the order events of the stream, read by an
// independent JetStream consumer.
type orderWatcher struct {
	mu     sync.Mutex
	orders []events.Order
	ids    map[string]int
}

func (d *daemon) watchOrders() *orderWatcher {
	d.t.Helper()
	js, err := jetstream.New(d.client())
	if err != nil {
		d.t.Fatal(err)
	}
	w := &orderWatcher{ids: map[string]int{}}
	ctx := context.Background()
	cons, err := js.OrderedConsumer(ctx, "REBALANCE_ORDERS", jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"rebalance.orders.>"}})
	if err != nil {
		d.t.Fatal(err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		var o events.Order
		if err := json.Unmarshal(msg.Data(), &o); err != nil {
			d.t.Errorf("bad order event: %v", err)
			return
		}
		if want := "rebalance.orders." + o.Policy + "." + o.Account; msg.Subject() != want {
			d.t.Errorf("order %s on %s, want %s", o.OrderID, msg.Subject(), want)
		}
		if id := msg.Headers().Get("Nats-Msg-Id"); id != o.OrderID {
			d.t.Errorf("order %s has Nats-Msg-Id %q", o.OrderID, id)
		}
		w.mu.Lock()
		w.orders = append(w.orders, o)
		w.ids[o.OrderID]++
		w.mu.Unlock()
	})
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(cc.Stop)
	return w
}

func (w *orderWatcher) snapshot() []events.Order {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]events.Order(nil), w.orders...)
}

// waitOrders waits until n order events have arrived.
func (w *orderWatcher) waitOrders(t testing.TB, n int) []events.Order {
	t.Helper()
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := len(w.snapshot()); got < n {
			return fmt.Errorf("%d order events, want %d", got, n)
		}
		return nil
	})
	return w.snapshot()
}

// policyStatus returns the engine's status of the test policy.
func (d *daemon) policyStatus() engine.PolicyStatus {
	st := d.Engine.Status()
	for _, p := range st.Policies {
		if p.Policy == "test-household" {
			return p
		}
	}
	d.t.Fatalf("test-household not loaded: %+v", st)
	return engine.PolicyStatus{}
}

// httpGet fetches a path of the daemon's HTTP server.
func (d *daemon) httpGet(path string) (int, string) {
	d.t.Helper()
	resp, err := http.Get(d.HTTP.URL() + path)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// blockedReasons lists the reasons the test policy is blocked.
func (d *daemon) blockedReasons() []string {
	var out []string
	for _, b := range d.policyStatus().Blocked {
		out = append(out, b.Reason)
	}
	return out
}

// streamOrders counts the order messages stored in the orders stream.
func (d *daemon) streamOrders() int {
	d.t.Helper()
	js, err := jetstream.New(d.client())
	if err != nil {
		d.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "REBALANCE_ORDERS")
	if err != nil {
		d.t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter("rebalance.orders.>"))
	if err != nil {
		d.t.Fatal(err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

// waitArmed waits until the engine's tick and n calendar timers wait on
// the fake clock, so that advancing it fires them.
func (d *daemon) waitArmed(n int) {
	d.t.Helper()
	checkFor(d.t, 5*time.Second, 2*time.Millisecond, func() error {
		if got := d.clock.Waiters(); got < n+1 {
			return fmt.Errorf("%d timers armed, want %d", got, n+1)
		}
		return nil
	})
}

// waitEvaluated waits until the test policy has been evaluated and
// nothing blocks its planning.
func (d *daemon) waitEvaluated() {
	d.t.Helper()
	checkFor(d.t, 5*time.Second, 10*time.Millisecond, func() error {
		if st := d.policyStatus(); st.LastEvaluated.IsZero() || len(st.Blocked) > 0 {
			return fmt.Errorf("not evaluated or blocked: %+v", st.Blocked)
		}
		return nil
	})
}

// fillAll reports every given order as completely filled at its price, as
// an executor would, and waits until the ledger has no pending order.
func (d *daemon) fillAll(orders []events.Order) {
	d.t.Helper()
	nc := d.client()
	for _, o := range orders {
		f := events.Fill{SchemaVersion: 1, FillID: "fill-" + o.OrderID, OrderID: o.OrderID, Status: events.FillFilled,
			Quantity: o.Quantity, Price: o.Price, Fees: decimal.Zero, At: d.clock.Now()}
		data, _ := json.Marshal(f)
		if err := nc.Publish(events.Subjects{Prefix: events.DefaultPrefix}.Fill(o.Policy, o.Account), data); err != nil {
			d.t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		d.t.Fatal(err)
	}
	checkFor(d.t, 10*time.Second, 10*time.Millisecond, func() error {
		if st := d.policyStatus(); len(st.PendingOrders) > 0 {
			return fmt.Errorf("%d orders pending", len(st.PendingOrders))
		}
		return nil
	})
}

func decimalFrom(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func osMkdirTemp() (string, error) { return os.MkdirTemp("", "rebalancerd-bin-") }

// waitAcked waits until the test policy has pending orders and JetStream
// has acknowledged all of them, and returns how many there are.
func (d *daemon) waitAcked() int {
	d.t.Helper()
	n := 0
	checkFor(d.t, 10*time.Second, 5*time.Millisecond, func() error {
		st := d.policyStatus()
		if st.Unacked > 0 || len(st.PendingOrders) == 0 {
			return fmt.Errorf("orders not acknowledged yet: %d pending, %d unacknowledged", len(st.PendingOrders), st.Unacked)
		}
		n = len(st.PendingOrders)
		return nil
	})
	return n
}

// editLedger changes the saved ledger of policy in the state file of a
// stopped daemon (edit gets it with its journal replayed; the save empties
// the journal).
func editLedger(t testing.TB, stateDir, policy string, edit func(*ledger.Ledger)) {
	t.Helper()
	s, err := state.Open(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, ok, err := s.Load(policy)
	if err != nil || !ok {
		t.Fatalf("saved ledger of %s: %v %v", policy, ok, err)
	}
	edit(l)
	if err := s.Save(l, true); err != nil {
		t.Fatal(err)
	}
}
