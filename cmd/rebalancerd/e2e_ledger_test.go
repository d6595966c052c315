package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	natstest "github.com/nats-io/nats-server/v2/test"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/config"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/state"
)

// externalNATS runs a NATS server with JetStream outside the daemons, so
// that its streams and the reports consumer outlive their state
// directories.
func externalNATS(t *testing.T) string {
	t.Helper()
	opts := natstest.DefaultTestOptions
	opts.Port, opts.JetStream, opts.StoreDir = -1, true, t.TempDir()
	srv := natstest.RunServer(&opts)
	t.Cleanup(srv.Shutdown)
	return srv.ClientURL()
}

// planFilledThenStateLost runs a daemon on an external NATS until its
// plan is published and filled (the fills acknowledged by the reports
// consumer), calls before, stops it and deletes its state directory. It
// returns the stopped daemon, the holdings after the fills and the number
// of orders.
func planFilledThenStateLost(t *testing.T, url string, before func(*daemon)) (first *daemon, after map[string]string, n int) {
	t.Helper()
	first = startDaemon(t, policyText("threshold", ""), monday0959, func(c *config.Config, m *Main) { c.NATS.URL = url })
	w := first.watchOrders()
	first.prices("VTI", "130", "BND", "100")
	n = first.waitAcked()
	first.fillAll(w.waitOrders(t, n))
	after = iraHoldings(first)
	if before != nil {
		before(first)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(first.Config.StateDir); err != nil {
		t.Fatal(err)
	}
	return first, after, n
}

// iraHoldings returns the test policy's ira account as strings.
func iraHoldings(d *daemon) map[string]string {
	h := d.policyStatus().Holdings["ira"]
	return map[string]string{"cash": h.Cash.String(), "VTI": h.Positions["VTI"].String(), "BND": h.Positions["BND"].String()}
}

// restartOn starts a daemon on first's configuration and external NATS,
// at the given time.
func restartOn(t *testing.T, first *daemon, url string, at time.Time) *daemon {
	t.Helper()
	return startDaemon(t, policyText("threshold", ""), at, func(c *config.Config, m *Main) {
		c.NATS.URL, c.StateDir, c.Policies = url, first.Config.StateDir, first.Config.Policies
	})
}

// TestLostStateRecoversFills: the state directory is deleted after a plan
// whose fills were acknowledged. At the next start, past the orders'
// order_ttl, the ledger is seeded from the older holdings file; the daemon
// adopts the orders the stream holds after it, reads their fills back from
// the reports stream, and does not plan the same rebalance a second time.
// (It used to plan it again on the stale holdings file.)
func TestLostStateRecoversFills(t *testing.T) {
	url := externalNATS(t)
	first, after, n := planFilledThenStateLost(t, url, nil)

	second := restartOn(t, first, url, monday0959.Add(3*time.Hour))
	if got := iraHoldings(second); fmt.Sprint(got) != fmt.Sprint(after) {
		t.Errorf("holdings after the restart %v, want those after the fills %v", got, after)
	}
	st := second.policyStatus()
	if st.RecoveredFills != n || st.AdoptedOrders != n || len(st.PendingOrders) != 0 {
		t.Errorf("recovered %d fills, adopted %d orders, %d pending; want %d, %d, 0", st.RecoveredFills, st.AdoptedOrders, len(st.PendingOrders), n, n)
	}
	second.prices("VTI", "130", "BND", "100")
	second.Engine.EvaluateAll()
	if got := second.streamOrders(); got != n {
		t.Fatalf("the stream holds %d orders, want %d: the executed rebalance was planned again", got, n)
	}
	if code, body := second.httpGet("/metrics"); code != 200 || !strings.Contains(body, fmt.Sprintf(`rebalancerd_fills_recovered_total{policy="test-household"} %d`, n)) {
		t.Errorf("/metrics (%d) does not count the %d recovered fills", code, n)
	}
	if _, body := second.httpGet("/status"); !regexp.MustCompile(fmt.Sprintf(`"recovered_fills": ?%d`, n)).MatchString(body) {
		t.Errorf("/status does not show the %d recovered fills", n)
	}
}

// TestLostStateUnrecoverableFillsBlock: as above, but the reports stream
// no longer holds the fills (its limits dropped them; here, a purge): the
// policy is blocked (unknown_order_state) instead of planning again on the
// holdings file, until a positions snapshot or `rebalancerd resync`
// replaces the holdings.
func TestLostStateUnrecoverableFillsBlock(t *testing.T) {
	url := externalNATS(t)
	first, _, n := planFilledThenStateLost(t, url, func(d *daemon) {
		js, err := jetstream.New(d.client())
		if err != nil {
			t.Fatal(err)
		}
		s, err := js.Stream(context.Background(), "REBALANCE_REPORTS")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Purge(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	second := restartOn(t, first, url, monday0959.Add(3*time.Hour))
	second.prices("VTI", "130", "BND", "100")
	second.Engine.EvaluateAll()
	second.waitBlocked("unknown_order_state")
	if got := second.streamOrders(); got != n {
		t.Fatalf("the stream holds %d orders, want %d: planned again on the holdings file", got, n)
	}
	if _, body := second.httpGet("/metrics"); !strings.Contains(body, `rebalancerd_planning_blocked{policy="test-household",reason="unknown_order_state"} 1`) {
		t.Error("/metrics does not show the unknown_order_state block")
	}

	// The way out: the operator resyncs the ledger with holdings (dated
	// before the ledger: a resync takes them whatever their date).
	hfile := filepath.Join(t.TempDir(), "now.yaml")
	writeFile(t, hfile, `as_of: 2026-11-20T21:00:00Z
accounts:
  ira: {cash: "680", positions: {VTI: "54", BND: "41"}}
`)
	var out, errOut strings.Builder
	if code := Run(context.Background(), []string{"resync", "-server", url, "-policy", "test-household", "-holdings", hfile,
		"-reason", "fills lost with the state directory", "-by", "ops"}, &out, &errOut); code != 0 {
		t.Fatalf("resync exited %d: %s", code, errOut.String())
	}
	if got := iraHoldings(second); fmt.Sprint(got) != fmt.Sprint(map[string]string{"cash": "680", "VTI": "54", "BND": "41"}) {
		t.Errorf("holdings after the resync: %v", got)
	}
	if slices.Contains(second.blockedReasons(), "unknown_order_state") {
		t.Errorf("still blocked after the resync: %v", second.blockedReasons())
	}
	saved, ok, err := second.store.Load("test-household")
	if data, _ := json.Marshal(saved); err != nil || !ok || !strings.Contains(string(data), "fills lost with the state directory") {
		t.Errorf("the resync is not recorded in the saved ledger (%v)", err)
	}
}

// TestLedgerDatedInTheFuture: a ledger saved with an as_of in year 9999
// (by a version that took a fill's date as it came) is replaced by the
// next positions snapshot instead of ignoring every snapshot as older.
func TestLedgerDatedInTheFuture(t *testing.T) {
	first := startDaemon(t, policyText("threshold", ""), monday0959, nil)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	editLedger(t, first.Config.StateDir, "test-household", func(l *ledger.Ledger) {
		l.AsOf = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	})
	second := startDaemon(t, policyText("threshold", ""), monday0959.Add(time.Minute), func(c *config.Config, m *Main) {
		c.StateDir, c.Policies = first.Config.StateDir, first.Config.Policies
	})
	snap := events.Positions{SchemaVersion: 1, AsOf: second.clock.Now(), Accounts: map[string]events.AccountPositions{
		"ira": {Cash: decimalFrom("400"), Positions: map[string]decimal.Decimal{"VTI": decimalFrom("61"), "BND": decimalFrom("35")}}}}
	body, _ := json.Marshal(snap)
	if err := second.client().Publish("rebalance.positions.test-household", body); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if st := second.policyStatus(); !st.HoldingsAsOf.Equal(snap.AsOf) {
			return fmt.Errorf("holdings as of %v, want the snapshot's %v", st.HoldingsAsOf, snap.AsOf)
		}
		return nil
	})
}

// TestHoldingsFileReplacesLedgerDatedInTheFuture: the same ledger dated
// 9999 is replaced at start by a changed holdings file, whatever the
// file's as_of.
func TestHoldingsFileReplacesLedgerDatedInTheFuture(t *testing.T) {
	first := startDaemon(t, policyText("threshold", ""), monday0959, nil)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	editLedger(t, first.Config.StateDir, "test-household", func(l *ledger.Ledger) {
		l.AsOf = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	})
	writeFile(t, first.Config.Policies[0].Holdings, strings.Replace(testHoldings, `cash: "500"`, `cash: "700"`, 1))
	second := startDaemon(t, policyText("threshold", ""), monday0959.Add(time.Minute), func(c *config.Config, m *Main) {
		c.StateDir, c.Policies = first.Config.StateDir, first.Config.Policies
	})
	if st := second.policyStatus(); !st.HoldingsAsOf.Before(second.clock.Now()) || st.Holdings["ira"].Cash.String() != "700" {
		t.Fatalf("holdings as of %v with cash %s, want the changed holdings file's", st.HoldingsAsOf, st.Holdings["ira"].Cash)
	}
}

// TestBadFillsCounted: fills dated in year 9999, priced 1e30 or off the
// instrument's step are refused for good, each reason counted in
// rebalancerd_inputs_rejected_total, and the ledger is unchanged.
func TestBadFillsCounted(t *testing.T) {
	d := startDaemon(t, policyText("threshold", ""), monday0959, nil)
	w := d.watchOrders()
	d.prices("VTI", "130", "BND", "100")
	o := w.waitOrders(t, d.waitAcked())[0]
	before := iraHoldings(d)
	subj := events.Subjects{Prefix: events.DefaultPrefix}.Fill(o.Policy, o.Account)
	for i, f := range []events.Fill{
		{Quantity: o.Quantity, Price: o.Price, At: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)},
		{Quantity: o.Quantity, Price: decimal.New(1, 30), At: d.clock.Now()},
		{Quantity: decimalFrom("0.5"), Price: o.Price, At: d.clock.Now()},
	} {
		f.SchemaVersion, f.FillID, f.OrderID, f.Status = 1, fmt.Sprintf("bad-%d", i), o.OrderID, events.FillPartial
		body, _ := json.Marshal(f)
		if err := d.client().Publish(subj, body); err != nil {
			t.Fatal(err)
		}
	}
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		_, body := d.httpGet("/metrics")
		for _, reason := range []string{"fill_in_future", "fill_price_outside_collar", "fill_off_step"} {
			if !strings.Contains(body, `rebalancerd_inputs_rejected_total{input="report",reason="`+reason+`"} 1`) {
				return fmt.Errorf("%s not counted", reason)
			}
		}
		return nil
	})
	if got := iraHoldings(d); fmt.Sprint(got) != fmt.Sprint(before) || d.policyStatus().HoldingsAsOf.After(d.clock.Now()) {
		t.Fatalf("holdings %v as of %v after refused fills, want %v", got, d.policyStatus().HoldingsAsOf, before)
	}
}

// jetStreamAt connects to url for the rest of the test.
func jetStreamAt(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// publishReport stores a report in the reports stream with a JetStream
// publish (acknowledged by the stream, whether a daemon runs or not).
func publishReport(t *testing.T, url, subject string, v any) {
	t.Helper()
	js := jetStreamAt(t, url)
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, subject, data); err != nil {
		t.Fatal(err)
	}
}

// waitReportsAcked waits until the daemon's reports consumer has
// acknowledged every report the stream holds.
func waitReportsAcked(t *testing.T, url string) {
	t.Helper()
	js := jetStreamAt(t, url)
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, "REBALANCE_REPORTS", "rebalancerd")
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending > 0 || info.NumAckPending > 0 {
			return fmt.Errorf("reports consumer: %d pending, %d awaiting ack", info.NumPending, info.NumAckPending)
		}
		return nil
	})
}

// deposit is a cash flow of amount into the test policy's ira account.
func deposit(id, amount string, at time.Time) events.CashFlow {
	return events.CashFlow{SchemaVersion: 1, CashFlowID: id, Kind: events.CashFlowDeposit, Account: "ira",
		Amount: decimalFrom(amount), At: at}
}

// depositTakenIn runs a daemon on an external NATS until a deposit of
// 1000 (id) is taken in and acknowledged (no prices: it is not invested),
// and stops it.
func depositTakenIn(t *testing.T, url, id string) *daemon {
	t.Helper()
	d := startDaemon(t, policyText("threshold", ""), monday0959, func(c *config.Config, m *Main) { c.NATS.URL = url })
	publishReport(t, url, "rebalance.cashflows.test-household", deposit(id, "1000", d.clock.Now()))
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if got := iraHoldings(d)["cash"]; got != "1500" {
			return fmt.Errorf("cash %s, want 1500 with the deposit", got)
		}
		return nil
	})
	waitReportsAcked(t, url)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestLostStateReplaysPositionsSnapshot: a positions snapshot newer than
// the holdings file was applied and acknowledged; the state directory is
// then deleted. At the next start the ledger is seeded from the older
// holdings file, and the snapshot, which the reports consumer will not
// deliver again, is applied again from the reports stream. (The daemon
// used to plan on the holdings file.)
func TestLostStateReplaysPositionsSnapshot(t *testing.T) {
	url := externalNATS(t)
	first := startDaemon(t, policyText("threshold", ""), monday0959, func(c *config.Config, m *Main) { c.NATS.URL = url })
	snap := events.Positions{SchemaVersion: 1, AsOf: first.clock.Now(), Accounts: map[string]events.AccountPositions{
		"ira": {Cash: decimalFrom("400"), Positions: map[string]decimal.Decimal{"VTI": decimalFrom("61"), "BND": decimalFrom("35")}}}}
	publishReport(t, url, "rebalance.positions.test-household", snap)
	want := map[string]string{"cash": "400", "VTI": "61", "BND": "35"}
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if got := iraHoldings(first); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("holdings %v, want the snapshot's %v", got, want)
		}
		return nil
	})
	waitReportsAcked(t, url)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(first.Config.StateDir); err != nil {
		t.Fatal(err)
	}

	second := restartOn(t, first, url, monday0959.Add(3*time.Hour))
	if got := iraHoldings(second); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("holdings after the restart %v, want the acknowledged snapshot's %v (not the holdings file's)", got, want)
	}
	if st := second.policyStatus(); !st.HoldingsAsOf.Equal(snap.AsOf) {
		t.Errorf("holdings as of %v, want the snapshot's %v", st.HoldingsAsOf, snap.AsOf)
	}
	if slices.Contains(second.blockedReasons(), "unknown_order_state") {
		t.Errorf("blocked %v: the snapshot says what the household holds", second.blockedReasons())
	}
}

// TestLostStateCashFlowBlocks: a deposit was taken in and acknowledged
// (not yet invested: no prices); the state directory is then deleted. At
// the next start the ledger, seeded from the holdings file, lacks the
// deposit: the policy is blocked (unknown_order_state, naming the cash
// flow) instead of planning on cash that is wrong, until a positions
// snapshot says what the household holds. (It used to plan on the holdings
// file's cash.)
func TestLostStateCashFlowBlocks(t *testing.T) {
	url := externalNATS(t)
	first := depositTakenIn(t, url, "dep-lost")
	if err := os.RemoveAll(first.Config.StateDir); err != nil {
		t.Fatal(err)
	}

	second := restartOn(t, first, url, monday0959.Add(3*time.Hour))
	second.prices("VTI", "100", "BND", "100")
	second.Engine.EvaluateAll()
	second.waitBlocked("unknown_order_state")
	if _, body := second.httpGet("/status"); !strings.Contains(body, "dep-lost") {
		t.Errorf("/status does not name the cash flow: %s", body)
	}
	if got := second.streamOrders(); got != 0 {
		t.Fatalf("%d orders planned on the holdings file's cash", got)
	}

	// A positions snapshot newer than the ledger says what it holds.
	publishReport(t, url, "rebalance.positions.test-household", events.Positions{SchemaVersion: 1, AsOf: second.clock.Now(),
		Accounts: map[string]events.AccountPositions{"ira": {Cash: decimalFrom("1500"),
			Positions: map[string]decimal.Decimal{"VTI": decimalFrom("60"), "BND": decimalFrom("35")}}}})
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if r := second.blockedReasons(); slices.Contains(r, "unknown_order_state") {
			return fmt.Errorf("still blocked %v after the snapshot", r)
		}
		return nil
	})
}

// TestRestartWithCashFlowsTakesNoDoubt: on an ordinary restart (the
// state directory kept) a deposit acknowledged before is in the ledger,
// and one stored while the daemon was down is delivered after the start:
// neither blocks the policy, and both count once.
func TestRestartWithCashFlowsTakesNoDoubt(t *testing.T) {
	url := externalNATS(t)
	first := depositTakenIn(t, url, "dep-1")
	publishReport(t, url, "rebalance.cashflows.test-household", deposit("dep-2", "250", monday0959.Add(time.Hour)))

	second := restartOn(t, first, url, monday0959.Add(3*time.Hour))
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if got := iraHoldings(second)["cash"]; got != "1750" {
			return fmt.Errorf("cash %s, want 1750 with both deposits", got)
		}
		return nil
	})
	if r := second.blockedReasons(); slices.Contains(r, "unknown_order_state") {
		t.Errorf("blocked %v after an ordinary restart", r)
	}
}

// TestStartMigratesStateDirectory: a state directory in the former layout
// (a ledger file per policy, written here by the former writer) is
// imported into the state file at the first start: the policy runs on the
// saved ledger, not on its holdings file, and the directory is kept under
// a new name.
func TestStartMigratesStateDirectory(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "state")
	former, err := state.OpenDir(filepath.Join(stateDir, "ledgers"))
	if err != nil {
		t.Fatal(err)
	}
	asOf := time.Date(2026, 11, 21, 21, 0, 0, 0, time.UTC) // after the holdings file's
	l := ledger.New("test-household")
	l.SetBase(asOf, "saved", map[string]*ledger.Account{"ira": {Cash: decimalFrom("777.25"),
		Positions: map[string]decimal.Decimal{"VTI": decimalFrom("61"), "BND": decimalFrom("36")}}}, asOf)
	if err := former.Save(l, true); err != nil {
		t.Fatal(err)
	}
	former.Close()

	d := startDaemon(t, policyText("threshold", ""), monday0959, func(c *config.Config, m *Main) { c.StateDir = stateDir })
	if got := iraHoldings(d); fmt.Sprint(got) != fmt.Sprint(map[string]string{"cash": "777.25", "VTI": "61", "BND": "36"}) {
		t.Errorf("holdings after the migration %v, want the saved ledger's", got)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "ledgers"+state.MigratedSuffix, "test-household.json")); err != nil {
		t.Errorf("the former ledger is not kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(stateDir, "ledgers")); !os.IsNotExist(err) {
		t.Errorf("the former directory is still in place: %v", err)
	}
}

// TestOrderTTLBeyondStreamMaxAge: a policy whose orders may outlive the
// orders stream (order_ttl 2h, nats.stream.max_age 1h) does not plan
// (invalid_policy, naming both settings), and `check -config` refuses the
// configuration: the stream could drop an order an executor may still act
// on, and a lost state directory could not be reconciled with it.
func TestOrderTTLBeyondStreamMaxAge(t *testing.T) {
	d := startDaemon(t, policyText("threshold", ""), monday0959, func(c *config.Config, m *Main) {
		c.NATS.MaxAge, c.NATS.Duplicates = time.Hour, time.Hour
	})
	d.prices("VTI", "130", "BND", "100")
	d.waitBlocked("invalid_policy")
	if _, body := d.httpGet("/status"); !strings.Contains(body, "rebalance.order_ttl 2h0m0s is longer than the orders stream keeps orders (nats.stream.max_age 1h0m0s") {
		t.Errorf("/status does not say why: %s", body)
	}
	if got := d.streamOrders(); got != 0 {
		t.Fatalf("%d orders published", got)
	}

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.yaml"), policyText("threshold", ""))
	writeFile(t, filepath.Join(dir, "h.yaml"), testHoldings)
	writeFile(t, filepath.Join(dir, "c.yaml"), `policies:
  - {policy: p.yaml, holdings: h.yaml}
nats:
  stream: {max_age: 1h, duplicates: 1h}
`)
	code, out, errOut := run(t, "check", "-config", filepath.Join(dir, "c.yaml"))
	if code != exitInvalid || !strings.Contains(errOut, "p.yaml: rebalance.order_ttl 2h0m0s is longer than the orders stream keeps orders") {
		t.Fatalf("check exited %d: %s%s", code, out, errOut)
	}
}
