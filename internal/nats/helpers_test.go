package nats

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rebalancerd/rebalancerd/internal/events"
)

// checkFor polls f until it returns nil or timeout passes, then fails the
// test with f's last error.
func checkFor(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	interval := 5 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %v", timeout, err)
		}
		time.Sleep(interval)
		interval = min(2*interval, 100*time.Millisecond)
	}
}

// testLogger records logs at Info and above; they are printed if the test
// fails. It never writes through t, so late logs from client callbacks
// cannot outlive the test.
func testLogger(t testing.TB) (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.InfoLevel)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, e := range logs.All() {
			t.Logf("%s %s %v", e.Level, e.Message, e.ContextMap())
		}
	})
	return zap.New(core), logs
}

// testServer is an embedded server that a test can stop and start again
// on the same port and store directory.
type testServer struct {
	t    testing.TB
	cfg  EmbeddedConfig
	mu   sync.Mutex
	s    *server.Server
	port int
}

func newTestServer(t testing.TB) *testServer {
	t.Helper()
	ts := &testServer{t: t, cfg: EmbeddedConfig{Port: -1, StoreDir: storeDir(t)}}
	ts.start()
	ts.port = ts.s.Addr().(*net.TCPAddr).Port
	ts.cfg.Port = ts.port
	t.Cleanup(ts.stop)
	return ts
}

// storeDir is a JetStream store directory removed at the end of the test.
// Unlike t.TempDir, its removal retries for a while: a server that staged
// an atomic batch the test abandoned may still write its staging files
// just after WaitForShutdown returns (seen under load as "unlinkat ...
// directory not empty").
func storeDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rebalancerd-js-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := os.RemoveAll(dir)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("remove the JetStream store %s: %v", dir, err)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	return dir
}

func (ts *testServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", ts.port) }

func (ts *testServer) server() *server.Server {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.s
}

func (ts *testServer) start() {
	ts.t.Helper()
	log, _ := testLogger(ts.t)
	s, err := StartEmbedded(ts.cfg, log)
	if err != nil {
		ts.t.Fatalf("start server: %v", err)
	}
	ts.mu.Lock()
	ts.s = s
	ts.mu.Unlock()
}

func (ts *testServer) stop() {
	ts.mu.Lock()
	s := ts.s
	ts.s = nil
	ts.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// connect connects to ts with short reconnect waits and closes the
// connection at the end of the test.
func connect(t testing.TB, url string) *natsgo.Conn {
	t.Helper()
	return connectWith(t, ConnConfig{URL: url})
}

// connectWith is connect with more settings.
func connectWith(t testing.TB, cfg ConnConfig) *natsgo.Conn {
	t.Helper()
	log, _ := testLogger(t)
	cfg.Name = t.Name()
	cfg.ReconnectWait = 20 * time.Millisecond
	nc, err := Connect(cfg, log, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// fastConfig is a StreamConfig with short waits for tests.
func fastConfig() StreamConfig {
	return StreamConfig{
		AckTimeout:   500 * time.Millisecond,
		RetryWait:    10 * time.Millisecond,
		MaxRetryWait: 200 * time.Millisecond,
		NakDelay:     20 * time.Millisecond,
		MaxNakDelay:  100 * time.Millisecond,
	}
}

func newBus(t testing.TB, nc *natsgo.Conn, cfg StreamConfig) *Bus {
	t.Helper()
	b, _ := newBusLogged(t, nc, cfg)
	return b
}

// newBusLogged is newBus, also returning the bus's logs.
func newBusLogged(t testing.TB, nc *natsgo.Conn, cfg StreamConfig) (*Bus, *observer.ObservedLogs) {
	t.Helper()
	log, logs := testLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := NewBus(ctx, nc, cfg, log)
	if err != nil {
		t.Fatalf("NewBus: %v", err)
	}
	return b, logs
}

// householdOrders returns n orders of one plan, ids <plan>-<i>, spread
// over two accounts.
func householdOrders(planID string, n int) []events.Order {
	created := time.Date(2026, 3, 2, 14, 30, 0, 0, time.UTC)
	orders := make([]events.Order, n)
	for i := range orders {
		side, qty := "buy", decimal.RequireFromString("12.5")
		if i%2 == 1 {
			side, qty = "sell", decimal.RequireFromString("3")
		}
		orders[i] = events.Order{
			SchemaVersion: events.SchemaVersion,
			OrderID:       fmt.Sprintf("%s-%d", planID, i),
			PlanID:        planID,
			Policy:        "smith-family",
			PolicyVersion: "sha256:abc",
			Trigger:       "threshold",
			CreatedAt:     created,
			ExpiresAt:     created.Add(24 * time.Hour),
			Phase:         1 + i%2,
			Account:       []string{"taxable", "ira"}[i%2],
			Instrument:    fmt.Sprintf("ETF%d", i),
			Side:          side,
			Quantity:      qty,
			Price:         decimal.RequireFromString("101.37"),
			Notional:      qty.Mul(decimal.RequireFromString("101.37")),
			Sleeve:        "equity",
			Rule:          "band",
		}
	}
	return orders
}

// streamMessages reads every message of a stream through an ordered
// consumer on its own connection.
func streamMessages(t testing.TB, url, stream string) []jetstream.Msg {
	t.Helper()
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Fatalf("observer connect: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for uint64(len(out)) < info.State.Msgs {
		batch, err := c.Fetch(int(info.State.Msgs)-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		n := len(out)
		for m := range batch.Messages() {
			out = append(out, m)
		}
		if err := batch.Error(); err != nil {
			t.Fatalf("fetch: %v", err)
		}
		if len(out) == n {
			t.Fatalf("stream %s: read %d of %d messages", stream, n, info.State.Msgs)
		}
	}
	return out
}

// missing returns the subs that s does not contain.
func missing(s string, subs ...string) []string {
	var out []string
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			out = append(out, sub)
		}
	}
	return out
}
