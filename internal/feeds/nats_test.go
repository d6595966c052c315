package feeds

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/test"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rebalancerd/rebalancerd/internal/events"
)

// runNATS starts an embedded server on a random port and returns its URL.
func runNATS(t *testing.T) string {
	t.Helper()
	opts := test.DefaultTestOptions
	opts.Port = -1
	srv := test.RunServer(&opts)
	t.Cleanup(srv.Shutdown)
	return srv.ClientURL()
}

// connect returns a connection to url, closed when the test ends.
func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestNATSFeed(t *testing.T) {
	url := runNATS(t)
	sub, pub := connect(t, url), connect(t, url)

	subjects := events.Subjects{Prefix: events.DefaultPrefix}
	clock := newFakeClock(t0.Add(time.Minute))
	core, logs := observer.New(zapcore.InfoLevel)
	f := NewNATSFeed(sub, subjects.Prices(), zap.New(core), WithNATSName("bus"), WithNATSClock(clock.Now))
	if f.Name() != "bus" {
		t.Errorf("Name = %q", f.Name())
	}
	var got collector
	stop := runSource(t, f, got.sink)
	checkFor(t, 5*time.Second, "the subscription", func() bool { return sub.NumSubscriptions() == 1 })
	if err := sub.Flush(); err != nil { // the server has the subscription
		t.Fatal(err)
	}

	send := func(symbol string, data []byte) {
		t.Helper()
		if err := pub.Publish(subjects.Price(symbol), data); err != nil {
			t.Fatal(err)
		}
	}
	price := func(p events.Price) []byte {
		data, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	send("VTI", price(events.Price{SchemaVersion: 1, Symbol: "VTI", Price: dec("285.12"), At: t0}))
	send("VTI", []byte(`{"symbol": "VTI", "price": "285.`)) // malformed
	send("BND", []byte(`{"symbol": "BND", "price": "-72.15", "at": "2026-11-20T21:00:00Z"}`))
	send("BND", []byte(`{"symbol": "BND", "price": "72.15", "at": "2026-11-20T21:00:00Z", "schema_version": 2}`))
	send("BND", []byte(`{"symbol": "BND", "price": "72.15", "at": "2026-11-20T22:00:00Z"}`)) // from the future
	// A number, not a string, and a field the feed does not know.
	send("BND", []byte(`{"symbol": "BND", "price": 72.15, "at": "2026-11-20T21:00:00Z", "venue": "ARCX"}`))
	if err := pub.Flush(); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, "all messages", func() bool { return f.Status().Polls == 6 })
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if got.len() != 2 {
		t.Fatalf("sink got %d batches, want 2", got.len())
	}
	wantQuotes(t, got.batch(0), "VTI 285.12 2026-11-20T21:00:00Z")
	wantQuotes(t, got.batch(1), "BND 72.15 2026-11-20T21:00:00Z")
	if s := got.batch(1)[0].Source; s != "bus" {
		t.Errorf("Source = %q", s)
	}
	st := f.Status()
	if st.Name != "bus" || st.Kind != "nats" || st.Failures != 4 || st.ConsecutiveFailures != 0 ||
		!st.LastSuccess.Equal(clock.Now()) || !st.LastErrorAt.Equal(clock.Now()) {
		t.Errorf("status %+v", st)
	}
	if want := map[string]uint64{RejectMalformed: 1, RejectPrice: 1, RejectSchema: 1, RejectFuture: 1}; !maps.Equal(st.Rejected, want) {
		t.Errorf("Rejected = %v, want %v", st.Rejected, want)
	}
	if !strings.Contains(st.LastError, "message on rebalance.prices.BND: BND: quote time 2026-11-20T22:00:00Z is 59m0s ahead") {
		t.Errorf("LastError = %q", st.LastError)
	}
	var bad []string
	for _, e := range logs.FilterMessage("bad price message").All() {
		bad = append(bad, e.ContextMap()["error"].(string))
	}
	wantBad := []string{
		"message on rebalance.prices.VTI is not a price: unexpected end of JSON input",
		"message on rebalance.prices.BND: BND: price must be positive, got -72.15",
		"message on rebalance.prices.BND has schema_version 2, newer than 1",
		"message on rebalance.prices.BND: BND: quote time",
	}
	if len(bad) != len(wantBad) {
		t.Fatalf("logged %d bad messages, want %d: %q", len(bad), len(wantBad), bad)
	}
	for i := range bad {
		if !strings.HasPrefix(bad[i], wantBad[i]) {
			t.Errorf("bad message %d logged as %q, want %q", i, bad[i], wantBad[i])
		}
	}
	// Run unsubscribed when it returned.
	if n := sub.NumSubscriptions(); n != 0 {
		t.Errorf("%d subscriptions left after Run", n)
	}
}

func TestNATSFeedClosedConn(t *testing.T) {
	nc := connect(t, runNATS(t))
	nc.Close()
	f := NewNATSFeed(nc, "rebalance.prices.>", nil)
	err := f.Run(t.Context(), func([]Quote) {})
	if err == nil || !strings.Contains(err.Error(), "feed nats: subscribe to rebalance.prices.>") {
		t.Errorf("Run on a closed connection = %v", err)
	}
}

// TestNATSDecodeLimits: a price message is held to decimaltext's limits
// before its price is parsed (a 1 MiB price cost 2.6 s of CPU), and a
// negative schema_version is refused.
func TestNATSDecodeLimits(t *testing.T) {
	now := t0.Add(time.Minute)
	f := NewNATSFeed(nil, "rebalance.prices.>", nil, WithNATSClock(func() time.Time { return now }))
	for _, tc := range []struct{ data, reason, msg string }{
		{`{"symbol":"VTI","price":"` + strings.Repeat("1", 1<<20) + `","at":"2026-11-20T21:00:00Z"}`, RejectPrice, `"price": number "111111111111"… is longer than 40 characters`},
		{`{"symbol":"VTI","price":` + strings.Repeat("1", 1<<20) + `,"at":"2026-11-20T21:00:00Z"}`, RejectPrice, "is longer than 40 characters"},
		{`{"symbol":"VTI","price":"1e39","at":"2026-11-20T21:00:00Z"}`, RejectPrice, `"price": "1e39" is not a plain decimal number`},
		{`{"schema_version":-5,"symbol":"VTI","price":"285.12","at":"2026-11-20T21:00:00Z"}`, RejectSchema, "schema_version -5, below 0"},
	} {
		start := time.Now()
		_, err := f.decode(&nats.Msg{Subject: "rebalance.prices.VTI", Data: []byte(tc.data)})
		took := time.Since(start)
		if err == nil || RejectReason(err) != tc.reason || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%.80s: %v (reason %q), want reason %q and %q", tc.data, err, RejectReason(err), tc.reason, tc.msg)
		}
		if took > 2*time.Second { // generous for -race on a shared machine; parsing took 2.4-5.9 s without -race
			t.Errorf("%.80s: refusing took %v", tc.data, took)
		}
	}
}
