package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	natstest "github.com/nats-io/nats-server/v2/test"
	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/config"
	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
)

// waitBlocked waits until the policy is blocked for exactly the reasons.
func (d *daemon) waitBlocked(reasons ...string) {
	d.t.Helper()
	checkFor(d.t, 5*time.Second, 5*time.Millisecond, func() error {
		got := d.blockedReasons()
		slices.Sort(got)
		got = slices.Compact(got)
		want := slices.Clone(reasons)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			return fmt.Errorf("blocked for %v, want %v", got, want)
		}
		return nil
	})
}

// TestPriceSafety: missing, stale and jumping prices block planning, show
// in /readyz and the metrics, and planning resumes by itself when prices
// are good again.
func TestPriceSafety(t *testing.T) {
	pol := policyText("threshold", "")
	d := startDaemon(t, pol, monday0959, nil)
	w := d.watchOrders()

	// Missing: only VTI is priced.
	d.prices("VTI", "100")
	d.waitBlocked("missing_price")
	if code, body := d.httpGet("/readyz"); code != 503 || !strings.Contains(body, "missing_price") {
		t.Errorf("/readyz = %d %q, want 503 naming missing_price", code, body)
	}
	d.prices("BND", "100")
	d.waitBlocked()
	if code, _ := d.httpGet("/readyz"); code != 200 {
		t.Errorf("/readyz = %d after prices arrived, want 200", code)
	}

	// Stale: eleven minutes without a quote (max_age 10m).
	d.waitArmed(0)
	d.clock.Advance(11 * time.Minute)
	d.waitBlocked("stale_price")
	_, metrics := d.httpGet("/metrics")
	if !strings.Contains(metrics, `rebalancerd_planning_blocked{policy="test-household",reason="stale_price"} 1`) {
		t.Errorf("metrics do not show the stale block")
	}
	d.prices("VTI", "100", "BND", "100")
	d.waitBlocked()

	// Jump: VTI +50% (max_move 40%) would breach, but is quarantined: no orders.
	d.clock.Advance(time.Minute)
	d.prices("VTI", "150")
	d.waitBlocked("quarantined_price")
	d.Engine.EvaluateAll()
	if n := len(w.snapshot()); n != 0 {
		t.Fatalf("planned on a quarantined price: %d orders", n)
	}
	// A second quote near 150 from the same feed a minute later does not
	// confirm it: the move must persist for confirm_after (5m).
	d.clock.Advance(time.Minute)
	d.prices("VTI", "151", "BND", "100")
	d.waitBlocked("quarantined_price")
	// Five minutes after the first, the move is confirmed; the total it
	// gives (13060) is 30.6% above the last accepted valuation (10000),
	// more than max_value_change (20%): planning waits again.
	d.clock.Advance(4 * time.Minute)
	d.prices("VTI", "151", "BND", "100")
	d.waitBlocked("value_change")
	d.Engine.EvaluateAll()
	if n := len(w.snapshot()); n != 0 {
		t.Fatalf("planned on an unconfirmed valuation: %d orders", n)
	}
	// Once the valuation persisted for confirm_after, planning resumes
	// and trades, without a new quote: at the engine's next tick, so wait
	// for the tick to be armed again after the last one.
	d.waitArmed(0)
	d.clock.Advance(5 * time.Minute)
	w.waitOrders(t, 1)
	for _, o := range w.snapshot() {
		if o.Instrument == "VTI" && !o.Price.Equal(decimalFrom("151")) {
			t.Errorf("order %s priced %s, want the confirmed 151", o.OrderID, o.Price)
		}
	}
}

// TestInvalidEditKeepsPolicy: an invalid edit of the policy file is
// refused with file and line, the running policy stays, readiness and the
// reload metric say so; a valid edit then takes effect.
func TestInvalidEditKeepsPolicy(t *testing.T) {
	pol := policyText("threshold", "")
	d := startDaemon(t, pol, monday0959, nil)
	d.prices("VTI", "100", "BND", "100")
	before := d.policyStatus().Version

	bad := strings.Replace(pol, "bonds: 35%", "bonds: 40%", 1)
	writeFile(t, d.policy, bad)
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if _, body := d.httpGet("/metrics"); !strings.Contains(body, "rebalancerd_config_last_reload_successful 0") {
			return fmt.Errorf("reload failure not recorded yet")
		}
		return nil
	})
	if st := d.policyStatus(); st.Version != before {
		t.Fatalf("policy version changed to %s after an invalid edit", st.Version)
	}
	code, body := d.httpGet("/readyz")
	if code != 503 || !strings.Contains(body, "test.yaml:4: targets: level sums to 105%, want 100%") {
		t.Errorf("/readyz = %d %q, want 503 with file:line", code, body)
	}

	good := strings.Replace(pol, "cooldown: 1m", "cooldown: 2m", 1)
	writeFile(t, d.policy, good)
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if st := d.policyStatus(); st.Version == before {
			return fmt.Errorf("still version %s", st.Version)
		}
		return nil
	})
	if _, body := d.httpGet("/metrics"); !strings.Contains(body, "rebalancerd_config_last_reload_successful 1") {
		t.Errorf("reload success not recorded")
	}
}

// faultyPublisher shuts the NATS server down when the first orders are
// about to be published and starts it again shortly after, so that the
// publish runs into the restart.
type faultyPublisher struct {
	engine.Publisher
	once    sync.Once
	restart func()
}

func (p *faultyPublisher) PublishOrders(ctx context.Context, orders []events.Order, pl *events.Plan) (bool, error) {
	p.once.Do(p.restart)
	return p.Publisher.PublishOrders(ctx, orders, pl)
}

// TestNATSRestartLosesNoOrder: the NATS server (external, with JetStream
// on disk) restarts while the daemon publishes a plan; the daemon does not
// crash, reconnects, and every order is stored exactly once.
func TestNATSRestartLosesNoOrder(t *testing.T) {
	store := t.TempDir()
	opts := natstest.DefaultTestOptions
	opts.Port = -1
	opts.JetStream = true
	opts.StoreDir = store
	srv := natstest.RunServer(&opts)
	url := srv.ClientURL()
	opts.Port = srv.Addr().(*net.TCPAddr).Port // restart on the same port
	var mu sync.Mutex
	current := srv
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		current.Shutdown()
	})
	restart := func() {
		mu.Lock()
		old := current
		mu.Unlock()
		old.Shutdown()
		old.WaitForShutdown()
		go func() {
			time.Sleep(300 * time.Millisecond) // the outage, not a synchronization
			ro := opts
			s := natstest.RunServer(&ro)
			mu.Lock()
			current = s
			mu.Unlock()
		}()
	}
	var fp *faultyPublisher
	pol := policyText("threshold", "")
	d := startDaemon(t, pol, monday0959, func(c *config.Config, m *Main) {
		c.NATS.URL = url
		m.WrapPublisher = func(p engine.Publisher) engine.Publisher {
			fp = &faultyPublisher{Publisher: p, restart: restart}
			return fp
		}
	})
	d.prices("VTI", "130", "BND", "100")
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		st := d.policyStatus()
		if st.LastPlanID == "" || st.Unacked > 0 || len(st.PendingOrders) == 0 {
			return fmt.Errorf("plan %q, %d unacknowledged of %d", st.LastPlanID, st.Unacked, len(st.PendingOrders))
		}
		return nil
	})
	want := expectedPlan(t, pol, monday0959, "VTI", "130", "BND", "100")
	w := d.watchOrders()
	sameOrders(t, w.waitOrders(t, len(want.Orders)), want, "threshold")
	if n := d.streamOrders(); n != len(want.Orders) {
		t.Errorf("stream holds %d order messages, want %d", n, len(want.Orders))
	}
}

// failingPublisher refuses every publish, as a NATS outage would.
type failingPublisher struct{ engine.Publisher }

func (failingPublisher) PublishOrders(context.Context, []events.Order, *events.Plan) (bool, error) {
	return false, errors.New("injected outage")
}

// journalUnacked starts a daemon whose publishes all fail, lets it plan,
// and stops it: its orders stay journaled, unacknowledged.
func journalUnacked(t *testing.T, pol string) (*daemon, string) {
	t.Helper()
	first := startDaemon(t, pol, monday0959, func(_ *config.Config, m *Main) {
		m.WrapPublisher = func(p engine.Publisher) engine.Publisher { return failingPublisher{p} }
		m.ShutdownGrace = 100 * time.Millisecond
	})
	first.prices("VTI", "130", "BND", "100")
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if st := first.policyStatus(); st.Unacked == 0 {
			return fmt.Errorf("no journaled orders yet")
		}
		return nil
	})
	planID := first.policyStatus().LastPlanID
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	return first, planID
}

// TestRestartPublishesJournaledOrders: orders planned but never
// acknowledged survive a stop; the next start publishes them under the
// same ids, once, and does not plan again meanwhile.
func TestRestartPublishesJournaledOrders(t *testing.T) {
	pol := policyText("threshold", "")
	first, planID := journalUnacked(t, pol)
	second := startDaemon(t, pol, monday0959.Add(time.Minute), func(c *config.Config, m *Main) {
		c.StateDir = first.Config.StateDir
		c.Policies = first.Config.Policies
	})
	w := second.watchOrders()
	want := expectedPlan(t, pol, monday0959, "VTI", "130", "BND", "100")
	sameOrders(t, w.waitOrders(t, len(want.Orders)), want, "threshold")
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if st := second.policyStatus(); st.Unacked != 0 || st.LastPlanID != planID {
			return fmt.Errorf("unacked %d, plan %s (want %s)", st.Unacked, st.LastPlanID, planID)
		}
		return nil
	})
	if n := second.streamOrders(); n != len(want.Orders) {
		t.Errorf("stream holds %d order messages, want %d", n, len(want.Orders))
	}
}

// TestRestartAfterDedupeWindowFailsClosed: journaled orders older than the
// stream's dedupe window are not published again (JetStream would take
// them as new); the policy stops planning until a positions snapshot.
func TestRestartAfterDedupeWindowFailsClosed(t *testing.T) {
	pol := policyText("threshold", "")
	first, _ := journalUnacked(t, pol)
	later := monday0959.Add(25 * time.Hour)
	second := startDaemon(t, pol, later, func(c *config.Config, m *Main) {
		c.StateDir = first.Config.StateDir
		c.Policies = first.Config.Policies
	})
	second.prices("VTI", "130", "BND", "100")
	second.waitBlocked("unknown_order_state")
	if n := second.streamOrders(); n != 0 {
		t.Fatalf("stream holds %d orders; none should have been published", n)
	}
	// An authoritative snapshot settles it: planning resumes (and trades).
	snap := events.Positions{SchemaVersion: 1, AsOf: later, Accounts: map[string]events.AccountPositions{
		"ira": {Cash: decimalFrom("500"), Positions: map[string]decimal.Decimal{"VTI": decimalFrom("60"), "BND": decimalFrom("35")}}}}
	data, _ := json.Marshal(snap)
	if err := second.client().Publish("rebalance.positions.test-household", data); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := second.streamOrders(); n == 0 {
			return fmt.Errorf("no orders after the snapshot")
		}
		return nil
	})
}

// TestReconcileAdoptsOrdersTheJournalLost: a power loss can take the
// journal's last writes while JetStream kept the orders. At the next start
// the daemon reads its recent orders back from the stream, tracks them as
// pending, and does not plan the same rebalance again.
func TestReconcileAdoptsOrdersTheJournalLost(t *testing.T) {
	pol := policyText("threshold", "")
	first := startDaemon(t, pol, monday0959, nil)
	before, ok, err := first.store.Load("test-household") // the ledger before any plan
	if err != nil || !ok {
		t.Fatalf("saved ledger: %v %v", ok, err)
	}
	first.prices("VTI", "130", "BND", "100")
	first.waitAcked()
	n := len(first.policyStatus().PendingOrders)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	// The power loss: the state is back to before the plan, journal
	// included (a save empties it).
	editLedger(t, first.Config.StateDir, "test-household", func(l *ledger.Ledger) { *l = *before })

	second := startDaemon(t, pol, monday0959.Add(2*time.Minute), func(c *config.Config, m *Main) {
		c.StateDir = first.Config.StateDir
		c.Policies = first.Config.Policies
	})
	if st := second.policyStatus(); len(st.PendingOrders) != n {
		t.Fatalf("after reconciling, %d orders pending, want the %d in the stream", len(st.PendingOrders), n)
	}
	second.prices("VTI", "130", "BND", "100")
	second.Engine.EvaluateAll()
	if got := second.streamOrders(); got != n {
		t.Errorf("stream holds %d orders, want %d: the rebalance was planned again", got, n)
	}
	second.waitBlocked("pending_orders")
}
