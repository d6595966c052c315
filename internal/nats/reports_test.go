package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
	"github.com/rebalancerd/rebalancerd/internal/events"
)

func fillJSON(t testing.TB, id, orderID string) []byte {
	t.Helper()
	b, err := json.Marshal(events.Fill{
		SchemaVersion: events.SchemaVersion, FillID: id, OrderID: orderID, Status: events.FillFilled,
		Quantity: decimal.RequireFromString("12.5"), Price: decimal.RequireFromString("101.40"),
		Fees: decimal.RequireFromString("0.35"), At: time.Date(2026, 3, 2, 15, 0, 0, 0, time.UTC),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func positionsJSON(t testing.TB) []byte {
	t.Helper()
	b, err := json.Marshal(events.Positions{
		SchemaVersion: events.SchemaVersion, AsOf: time.Date(2026, 3, 2, 16, 0, 0, 0, time.UTC),
		Accounts: map[string]events.AccountPositions{"taxable": {
			Cash:      decimal.RequireFromString("1000.00"),
			Positions: map[string]decimal.Decimal{"ETF0": decimal.RequireFromString("40")},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// consumer runs ConsumeReports in the background and records what the
// handler sees.
type consumer struct {
	cancel context.CancelFunc
	done   chan error
	fail   func(Report) error

	mu      sync.Mutex
	reports []Report
}

func startConsumer(t *testing.T, b *Bus, fail func(Report) error) *consumer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &consumer{cancel: cancel, done: make(chan error, 1), fail: fail}
	go func() {
		c.done <- b.ConsumeReports(ctx, func(r Report) error {
			c.mu.Lock()
			c.reports = append(c.reports, r)
			c.mu.Unlock()
			if c.fail != nil {
				return c.fail(r)
			}
			return nil
		})
	}()
	t.Cleanup(func() { c.stop(t) })
	return c
}

// stop ends ConsumeReports and checks that it returns nil promptly.
func (c *consumer) stop(t *testing.T) {
	t.Helper()
	if c.cancel == nil {
		return
	}
	c.cancel()
	c.cancel = nil
	select {
	case err := <-c.done:
		if err != nil {
			t.Errorf("ConsumeReports returned %v after cancel; want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("ConsumeReports did not return after cancel")
	}
}

func (c *consumer) seen() []Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Report(nil), c.reports...)
}

// waitFor waits until the handler has seen n reports.
func (c *consumer) waitFor(t *testing.T, n int) []Report {
	t.Helper()
	checkFor(t, 10*time.Second, func() error {
		if got := len(c.seen()); got < n {
			return fmt.Errorf("%d reports handled; want %d", got, n)
		}
		return nil
	})
	return c.seen()
}

func publish(t testing.TB, nc *natsgo.Conn, subject string, data []byte) {
	t.Helper()
	if err := nc.Publish(subject, data); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// consumerInfo reads a consumer's info; polled with checkFor, it fails
// while the consumer is not created yet.
func consumerInfo(nc *natsgo.Conn, stream, name string) (*jetstream.ConsumerInfo, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, stream, name)
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// waitAllAcked waits until the default consumer has nothing pending, its
// ack floor at stream sequence floor and redelivered messages.
func waitAllAcked(t *testing.T, nc *natsgo.Conn, floor uint64, redelivered int) {
	t.Helper()
	checkFor(t, 5*time.Second, func() error {
		info, err := consumerInfo(nc, "REBALANCE_REPORTS", DefaultConsumer)
		if err != nil {
			return err
		}
		if info.NumAckPending != 0 || info.AckFloor.Stream != floor || info.NumRedelivered != redelivered {
			return fmt.Errorf("ack pending %d, ack floor %d (want %d), redelivered %d (want %d)",
				info.NumAckPending, info.AckFloor.Stream, floor, info.NumRedelivered, redelivered)
		}
		return nil
	})
}

func TestConsumeReports(t *testing.T) {
	ts := newTestServer(t)
	nc := connect(t, ts.url())
	b := newBus(t, nc, fastConfig())
	pub := connect(t, ts.url())

	// Published while no consumer runs: captured by the stream.
	publish(t, pub, "rebalance.fills.smith-family.taxable", fillJSON(t, "f1", "o1"))
	c := startConsumer(t, b, nil)
	publish(t, pub, "rebalance.positions.smith-family", positionsJSON(t))
	publish(t, pub, "rebalance.fills.smith-family.ira", fillJSON(t, "f2", "o2"))

	got := c.waitFor(t, 3)
	if len(got) != 3 {
		t.Fatalf("handled %d reports; want 3", len(got))
	}
	f1, p, f2 := got[0], got[1], got[2]
	if f1.Fill == nil || f1.Positions != nil || f1.Fill.FillID != "f1" || f1.Policy != "smith-family" ||
		f1.Account != "taxable" || f1.Delivered != 1 || f1.Sequence != 1 || f1.Stored.IsZero() {
		t.Errorf("first report: %+v", f1)
	}
	if p.Positions == nil || p.Fill != nil || p.Policy != "smith-family" || p.Account != "" ||
		!p.Positions.Accounts["taxable"].Positions["ETF0"].Equal(decimal.NewFromInt(40)) {
		t.Errorf("positions report: %+v", p)
	}
	if f2.Fill == nil || f2.Fill.FillID != "f2" || f2.Account != "ira" || !f2.Fill.Fees.Equal(decimal.RequireFromString("0.35")) {
		t.Errorf("third report: %+v", f2)
	}
	waitAllAcked(t, pub, 3, 0)
	c.stop(t)

	// A new ConsumeReports resumes after the acknowledged reports.
	publish(t, pub, "rebalance.fills.smith-family.ira", fillJSON(t, "f3", "o3"))
	c2 := startConsumer(t, b, nil)
	if got := c2.waitFor(t, 1); got[0].Fill.FillID != "f3" || got[0].Sequence != 4 {
		t.Errorf("after restart of the consumer: %+v", got[0])
	}
}

func TestConsumeReportsRedeliversOnHandlerError(t *testing.T) {
	ts := newTestServer(t)
	nc := connect(t, ts.url())
	b := newBus(t, nc, fastConfig())
	c := startConsumer(t, b, func(r Report) error {
		if r.Delivered < 3 {
			return errors.New("journal unavailable")
		}
		return nil
	})
	publish(t, nc, "rebalance.fills.smith-family.taxable", fillJSON(t, "f1", "o1"))

	got := c.waitFor(t, 3)
	for i, r := range got {
		if r.Fill == nil || r.Fill.FillID != "f1" || r.Delivered != uint64(i+1) || r.Sequence != 1 {
			t.Errorf("delivery %d: %+v", i+1, r)
		}
	}
	waitAllAcked(t, nc, 1, 0)
	if n := len(c.seen()); n != 3 {
		t.Errorf("%d deliveries; want 3 (acked on the third)", n)
	}
}

func TestConsumeReportsTerminatesMalformed(t *testing.T) {
	ts := newTestServer(t)
	nc := connect(t, ts.url())
	cfg := fastConfig()
	var reasonsMu sync.Mutex
	reasons := map[string]int{}
	cfg.Rejected = func(reason string) {
		reasonsMu.Lock()
		reasons[reason]++
		reasonsMu.Unlock()
	}
	b := newBus(t, nc, cfg)

	// Count the server's termination advisories.
	var mu sync.Mutex
	terminated := 0
	adv, err := nc.Subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.REBALANCE_REPORTS.>", func(*natsgo.Msg) {
		mu.Lock()
		terminated++
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer adv.Unsubscribe()

	wrongSchema := strings.Replace(string(fillJSON(t, "f2", "o2")), `"schema_version":1`, `"schema_version":2`, 1)
	bad := []struct{ subject, data string }{
		{"rebalance.fills.smith-family.taxable", `{"schema_version":1,"fill_id":`},
		{"rebalance.fills.smith-family.taxable", wrongSchema},
		{"rebalance.fills.smith-family", string(fillJSON(t, "f3", "o3"))},
		{"rebalance.positions.smith-family.taxable", string(positionsJSON(t))},
		{"rebalance.fills.smith-family.taxable", `{"schema_version":1,"order_id":"o4","status":"filled"}`},
		{"rebalance.positions.smith-family", `{"schema_version":1,"as_of":"2026-03-02T16:00:00Z","accounts":{}}`},
		{"rebalance.fills.smith-family.taxable", string(fillJSON(t, "rejected-by-handler", "o5"))},
		{"rebalance.fills.smith-family.taxable", string(fillJSON(t, "rejected-without-reason", "o6"))},
	}
	c := startConsumer(t, b, func(r Report) error {
		switch {
		case r.Fill != nil && r.Fill.FillID == "rejected-by-handler":
			return Reject("unknown_order", errors.New("fill for an unknown order"))
		case r.Fill != nil && r.Fill.FillID == "rejected-without-reason":
			return fmt.Errorf("over-fill: %w", ErrMalformed)
		}
		return nil
	})
	for _, m := range bad {
		publish(t, nc, m.subject, []byte(m.data))
	}
	publish(t, nc, "rebalance.fills.smith-family.taxable", fillJSON(t, "good", "o6"))

	got := c.waitFor(t, 3)
	if len(got) != 3 || got[0].Fill.FillID != "rejected-by-handler" || got[2].Fill.FillID != "good" {
		t.Fatalf("handler saw %+v; want only the three well-formed fills", got)
	}
	waitAllAcked(t, nc, uint64(len(bad)+1), 0)
	checkFor(t, 5*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if terminated != len(bad) {
			return fmt.Errorf("%d termination advisories; want %d", terminated, len(bad))
		}
		return nil
	})
	if n := len(c.seen()); n != 3 {
		t.Errorf("handler called %d times; want 3", n)
	}
	want := map[string]int{ReportNotJSON: 1, ReportSchema: 1, ReportBadSubject: 2, ReportMissingField: 2,
		"unknown_order": 1, ReportOther: 1}
	reasonsMu.Lock()
	defer reasonsMu.Unlock()
	if !maps.Equal(reasons, want) {
		t.Errorf("rejection reasons %v, want %v", reasons, want)
	}
}

func TestConsumeReportsAcrossServerRestart(t *testing.T) {
	ts := newTestServer(t)
	nc := connect(t, ts.url())
	b := newBus(t, nc, fastConfig())
	pub := connect(t, ts.url())
	c := startConsumer(t, b, nil)

	publish(t, pub, "rebalance.fills.smith-family.taxable", fillJSON(t, "f1", "o1"))
	c.waitFor(t, 1)

	pubBefore, ncBefore := pub.Stats().Reconnects, nc.Stats().Reconnects
	ts.stop()
	ts.start()
	// Connected and reconnected both: right after the restart a client
	// may still say it is connected before it noticed the old server go,
	// and a flush then fails with "connection closed".
	checkFor(t, 10*time.Second, func() error {
		if !pub.IsConnected() || !nc.IsConnected() || pub.Stats().Reconnects == pubBefore || nc.Stats().Reconnects == ncBefore {
			return errors.New("not reconnected")
		}
		return nil
	})
	publish(t, pub, "rebalance.fills.smith-family.taxable", fillJSON(t, "f2", "o2"))
	got := c.waitFor(t, 2)
	if len(got) != 2 || got[1].Fill.FillID != "f2" || got[1].Sequence != 2 {
		t.Errorf("after the restart: %+v", got)
	}
}

func TestParseReport(t *testing.T) {
	fill := string(fillJSON(t, "f1", "o1"))
	withExtra := strings.Replace(fill, `{`, `{"venue":"XNYS",`, 1)
	for _, tc := range []struct {
		subject, data string
		ok            bool
	}{
		{"rebalance.fills.p.a", fill, true},
		{"rebalance.fills.p.a", withExtra, true},
		{"rebalance.positions.p", string(positionsJSON(t)), true},
		{"rebalance.fills.p.a", `null`, false},
		{"rebalance.fills.p.a", fill + ` {}`, false},
		{"rebalance.fills.p.a", strings.Replace(fill, `"filled"`, `"done"`, 1), false},
		{"rebalance.fills.p.a.b", fill, false},
		{"rebalance.orders.p.a", fill, false},
		{"other.fills.p.a", fill, false},
		{"rebalance.positions.p", `{"schema_version":1,"accounts":{"a":{}}}`, false},
		{"rebalance.cashflows.p", `{"schema_version":1,"cashflow_id":"c1","kind":"deposit","account":"a","amount":"2500","at":"2026-11-23T15:00:00Z"}`, true},
		{"rebalance.cashflows.p", `{"schema_version":1,"cashflow_id":"c1","kind":"gift","account":"a","amount":"2500","at":"2026-11-23T15:00:00Z"}`, false},
		{"rebalance.cashflows.p", `{"schema_version":1,"cashflow_id":"c1","kind":"withdrawal","account":"a","amount":"-1","at":"2026-11-23T15:00:00Z"}`, false},
		{"rebalance.cashflows.p", `{"schema_version":1,"kind":"deposit","account":"a","amount":"1","at":"2026-11-23T15:00:00Z"}`, false},
		{"rebalance.cashflows.p.a", `{"schema_version":1,"cashflow_id":"c1","kind":"deposit","account":"a","amount":"1","at":"2026-11-23T15:00:00Z"}`, false},
	} {
		r, err := parseReport("rebalance", tc.subject, []byte(tc.data))
		if tc.ok != (err == nil) {
			t.Errorf("%s %s: err %v", tc.subject, tc.data, err)
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: error %v does not wrap ErrMalformed", tc.subject, err)
		}
		if err == nil && r.Policy != "p" {
			t.Errorf("%s: policy %q", tc.subject, r.Policy)
		}
	}
}

func TestNakDelay(t *testing.T) {
	b := &Bus{cfg: StreamConfig{NakDelay: time.Second, MaxNakDelay: 10 * time.Second}}
	for n, want := range map[uint64]time.Duration{0: time.Second, 1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 1000: 10 * time.Second} {
		if got := b.nakDelay(n); got != want {
			t.Errorf("nakDelay(%d) = %s; want %s", n, got, want)
		}
	}
}

// TestConsumeReportsRecreatesDeletedConsumer deletes the durable consumer
// under a running ConsumeReports: it creates it again and goes on (from the
// start of the stream, so f1 may come again: delivery is at least once).
func TestConsumeReportsRecreatesDeletedConsumer(t *testing.T) {
	ts := newTestServer(t)
	nc := connect(t, ts.url())
	b := newBus(t, nc, fastConfig())
	c := startConsumer(t, b, nil)
	publish(t, nc, "rebalance.fills.smith-family.taxable", fillJSON(t, "f1", "o1"))
	c.waitFor(t, 1)

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteConsumer(t.Context(), "REBALANCE_REPORTS", DefaultConsumer); err != nil {
		t.Fatal(err)
	}
	publish(t, nc, "rebalance.fills.smith-family.taxable", fillJSON(t, "f2", "o2"))
	checkFor(t, 10*time.Second, func() error {
		for _, r := range c.seen() {
			if r.Fill.FillID == "f2" {
				return nil
			}
		}
		return errors.New("f2 not delivered")
	})
	waitAllAcked(t, nc, 2, 0)
}

func TestConsumeReportsStopsOnClosedConnection(t *testing.T) {
	ts := newTestServer(t)
	nc := connect(t, ts.url())
	b := newBus(t, nc, fastConfig())
	done := make(chan error, 1)
	go func() { done <- b.ConsumeReports(t.Context(), func(Report) error { return nil }) }()
	// Wait until it consumes, then close the connection under it.
	admin := connect(t, ts.url())
	checkFor(t, 5*time.Second, func() error {
		info, err := consumerInfo(admin, "REBALANCE_REPORTS", DefaultConsumer)
		if err != nil {
			return err // not created yet
		}
		if info.NumWaiting == 0 {
			return errors.New("no pull request waiting")
		}
		return nil
	})
	nc.Close()
	select {
	case err := <-done:
		if err == nil || !errors.Is(err, natsgo.ErrConnectionClosed) {
			t.Errorf("ConsumeReports = %v; want a closed-connection error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ConsumeReports did not return after the connection closed")
	}
}

// TestParseReportNumberLimits: every decimal of a fill, a positions
// snapshot and a cash flow is held to decimaltext's limits (40 characters,
// no exponent) before it is parsed, with the reason bad_number. Each is
// refused by decimaltext's check of the token's text (ErrTooLong or
// ErrNotPlain), which runs before any decimal is parsed, so a fill with a
// 1,000,000-digit quantity (2.4 s to parse) is never parsed. The 2 s bound
// is only a liveness bound; how fast it is refused is measured by
// BenchmarkParseReportHugeQuantity.
func TestParseReportNumberLimits(t *testing.T) {
	fill := string(fillJSON(t, "f1", "o1"))
	million := strings.Repeat("1", 1_000_000)
	for _, tc := range []struct {
		subject, data string
		want          error
	}{
		{"rebalance.fills.p.a", strings.Replace(fill, `"fill_id"`, `"quantity":"`+million+`","fill_id"`, 1), decimaltext.ErrTooLong},
		{"rebalance.fills.p.a", strings.Replace(fill, `"fill_id"`, `"Price":1e30,"fill_id"`, 1), decimaltext.ErrNotPlain},
		{"rebalance.fills.p.a", strings.Replace(fill, `"fill_id"`, `"fees":"1e-999999999","fill_id"`, 1), decimaltext.ErrNotPlain},
		{"rebalance.positions.p", `{"schema_version":1,"as_of":"2026-11-23T15:00:00Z","accounts":{"a":{"cash":"1","positions":{"VTI":"` + million + `"}}}}`, decimaltext.ErrTooLong},
		{"rebalance.positions.p", `{"schema_version":1,"as_of":"2026-11-23T15:00:00Z","accounts":{"a":{"cash":"1E3"}}}`, decimaltext.ErrNotPlain},
		{"rebalance.cashflows.p", `{"schema_version":1,"cashflow_id":"c1","kind":"deposit","account":"a","amount":"` + strings.Repeat("9", 41) + `","at":"2026-11-23T15:00:00Z"}`, decimaltext.ErrTooLong},
	} {
		start := time.Now()
		_, err := parseReport("rebalance", tc.subject, []byte(tc.data))
		took := time.Since(start)
		if RejectReason(err) != ReportBadNumber || !errors.Is(err, ErrMalformed) || !errors.Is(err, tc.want) {
			t.Errorf("%s %.120s: %v, want a malformed report with reason %s wrapping %v", tc.subject, tc.data, err, ReportBadNumber, tc.want)
		}
		if took > 2*time.Second { // generous for -race on a shared machine; parsing took 2.4-5.9 s without -race
			t.Errorf("%s: refusing took %v", tc.subject, took)
		}
	}
}

// TestReportsSinceHandled: ReportsSince returns the positions snapshots
// and cash flows (not the fills) with Handled from the durable consumer's
// state: nothing before the consumer exists; the reports at or below its
// ack floor, not those delivered and awaiting their ack; and, once a report above the floor was acknowledged out of
// order, every delivered one (which of them were is not known), never one
// not yet delivered.
func TestReportsSinceHandled(t *testing.T) {
	ts := newTestServer(t)
	nc := connect(t, ts.url())
	b := newBus(t, nc, fastConfig())
	ctx := t.Context()
	cash := func(id string) []byte {
		data, err := json.Marshal(events.CashFlow{SchemaVersion: events.SchemaVersion, CashFlowID: id, Kind: events.CashFlowDeposit,
			Account: "taxable", Amount: decimal.RequireFromString("100"), At: time.Date(2026, 3, 2, 16, 0, 0, 0, time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	for _, m := range []struct {
		subject string
		data    []byte
	}{
		{"rebalance.cashflows.p", cash("c1")},
		{"rebalance.positions.p", positionsJSON(t)},
		{"rebalance.fills.p.taxable", fillJSON(t, "f1", "o1")},
		{"rebalance.cashflows.p", cash("c2")},
		{"rebalance.cashflows.p", cash("c3")},
	} {
		if _, err := b.js.Publish(ctx, m.subject, m.data); err != nil {
			t.Fatal(err)
		}
	}
	handled := func() string {
		t.Helper()
		rs, err := b.ReportsSince(ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		var sb strings.Builder
		for _, r := range rs {
			fmt.Fprintf(&sb, "%d:%t ", r.Sequence, r.Handled)
		}
		return strings.TrimSpace(sb.String())
	}
	if got, want := handled(), "1:false 2:false 4:false 5:false"; got != want {
		t.Fatalf("without a consumer: %s, want %s", got, want)
	}

	cons, err := b.js.CreateOrUpdateConsumer(ctx, b.reportsStream, jetstream.ConsumerConfig{
		Durable: b.cfg.Consumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	fetch := func(n int) []jetstream.Msg {
		t.Helper()
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var msgs []jetstream.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if len(msgs) != n {
			t.Fatalf("fetched %d messages, want %d", len(msgs), n)
		}
		return msgs
	}
	for _, m := range fetch(2) {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := handled(), "1:true 2:true 4:false 5:false"; got != want {
		t.Fatalf("after 2 acknowledged: %s, want %s", got, want)
	}
	msgs := fetch(2) // 3 and 4: 3 stays unacknowledged, 4 is acknowledged
	if got, want := handled(), "1:true 2:true 4:false 5:false"; got != want {
		t.Fatalf("3 and 4 delivered, awaiting their ack: %s, want %s", got, want)
	}
	if err := msgs[1].DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := handled(), "1:true 2:true 4:true 5:false"; got != want {
		t.Fatalf("after 4 acknowledged out of order: %s, want %s", got, want)
	}
}
