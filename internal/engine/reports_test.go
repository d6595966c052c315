package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/metrics"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/state"
)

// failingStore is a state.Store whose saves fail while failSave is set.
type failingStore struct {
	*state.Store
	failSave bool
}

func (s *failingStore) Save(l *ledger.Ledger, durable bool) error {
	if s.failSave {
		return errors.New("test: disk full")
	}
	return s.Store.Save(l, durable)
}

// loadHousehold returns an engine (not running) with the household policy
// "household" loaded from balancedHoldings, on a fake clock.
func loadHousehold(t *testing.T, store Store) (*Engine, *clock.Fake) {
	t.Helper()
	return loadHouseholdWith(t, Options{Store: store})
}

// loadHouseholdWith is loadHousehold with options (Clock and Publisher
// are set here, Store when nil).
func loadHouseholdWith(t *testing.T, opts Options) (*Engine, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC))
	if opts.Store == nil {
		s, err := state.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		opts.Store = s
	}
	opts.Clock, opts.Publisher = clk, nopPublisher{}
	e := New(opts)
	h, err := portfolio.ParseHoldings("h.yaml", []byte(balancedHoldings))
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse("household.yaml", []byte(strings.Replace(householdPolicy, "NAME", "household", 1)+"prices: {max_move: 50%}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Load([]Loaded{{Policy: p, Holdings: h, HoldingsHash: "h"}}); err != nil {
		t.Fatal(err)
	}
	return e, clk
}

// TestSaveFailureAtFirstLoad: the first load of a policy saves its
// ledger seeded from the holdings file; when that save fails the policy
// is blocked with the error (it used to panic on a nil policy in the
// save's error path).
func TestSaveFailureAtFirstLoad(t *testing.T) {
	s, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e, clk := loadHousehold(t, &failingStore{Store: s, failSave: true})
	e.Quotes(quotes(clk.Now(), 0))
	st := e.Status().Policies[0]
	if !hasReason(st.Blocked, metrics.BlockUnknownOrderState) || !strings.Contains(st.LastError, "disk full") {
		t.Fatalf("after a failed save: blocked %+v, last error %q; want unknown_order_state with the error", st.Blocked, st.LastError)
	}
}

// planHousehold makes the household plan (equities below their band) and
// returns its orders, acknowledged.
func planHousehold(t *testing.T, e *Engine, clk *clock.Fake) []*ledger.Order {
	t.Helper()
	e.Quotes(quotes(clk.Now(), 0))
	clk.Advance(time.Minute)
	e.Quotes(breachQuotes(clk.Now()))
	e.mu.Lock()
	defer e.mu.Unlock()
	rt := e.policies["household"]
	pending := rt.ledger.Pending()
	if len(pending) == 0 {
		t.Fatal("no plan")
	}
	ids := make([]string, len(pending))
	for i, o := range pending {
		ids[i] = o.OrderID
	}
	rt.ledger.MarkPublished(ids, clk.Now())
	return pending
}

// TestFillChecks: fills dated in year 9999, before their order, off the
// instrument's step, above the order's quantity or priced 1e30 are
// refused for good with their reason; the ledger's as_of stays at or
// before the clock, so a positions snapshot taken now still applies.
func TestFillChecks(t *testing.T) {
	e, clk := loadHousehold(t, nil)
	orders := planHousehold(t, e, clk)
	o := orders[0]
	now := clk.Now()
	at := func(d time.Duration) time.Time { return now.Add(d) }
	for _, tc := range []struct {
		name   string
		f      events.Fill
		reason string
	}{
		{"year 9999", events.Fill{Quantity: o.Quantity, Price: o.Price, At: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)}, ledger.RejectFillFuture},
		{"before the order", events.Fill{Quantity: o.Quantity, Price: o.Price, At: at(-time.Hour)}, ledger.RejectFillBeforeOrder},
		{"off step", events.Fill{Quantity: decimal.RequireFromString("0.5"), Price: o.Price, At: at(0)}, ledger.RejectFillOffStep},
		{"over quantity", events.Fill{Quantity: o.Quantity.Add(decimal.NewFromInt(1)), Price: o.Price, At: at(0)}, ledger.RejectFillOverQuantity},
		{"price 1e30", events.Fill{Quantity: o.Quantity, Price: decimal.New(1, 30), At: at(0)}, ledger.RejectFillPrice},
	} {
		f := tc.f
		f.SchemaVersion, f.FillID, f.OrderID, f.Status = 1, "f-"+tc.name, o.OrderID, events.FillFilled
		err := e.HandleReport(Report{Policy: "household", Account: o.Account, Fill: &f})
		if !errors.Is(err, ErrInvalidFill) || ledger.RejectReason(err) != tc.reason {
			t.Errorf("%s: %v (reason %q), want an invalid fill for %s", tc.name, err, ledger.RejectReason(err), tc.reason)
		}
	}
	st := e.Status().Policies[0]
	if st.HoldingsAsOf.After(clk.Now()) || len(st.PendingOrders) != len(orders) {
		t.Fatalf("holdings as of %v (now %v), %d pending: a refused fill changed the ledger", st.HoldingsAsOf, clk.Now(), len(st.PendingOrders))
	}
	// A fill a little ahead of the clock (within the skew) is taken, as
	// of now.
	f := events.Fill{SchemaVersion: 1, FillID: "ahead", OrderID: o.OrderID, Status: events.FillFilled,
		Quantity: o.Quantity, Price: o.Price, At: at(2 * time.Minute)}
	if err := e.HandleReport(Report{Policy: "household", Account: o.Account, Fill: &f}); err != nil {
		t.Fatal(err)
	}
	if got := e.Status().Policies[0].HoldingsAsOf; !got.Equal(now) {
		t.Fatalf("holdings as of %v after a fill dated 2m ahead, want now %v", got, now)
	}
}

// positions returns a snapshot of the balanced household at asOf, with
// extra positions added to the roth account.
func positions(asOf time.Time, extra map[string]string) *events.Positions {
	p := &events.Positions{SchemaVersion: 1, AsOf: asOf, Accounts: map[string]events.AccountPositions{
		"roth":    {Cash: decimal.RequireFromString("5000"), Positions: map[string]decimal.Decimal{"VXUS": decimal.RequireFromString("537")}},
		"k401":    {Cash: decimal.Zero, Positions: map[string]decimal.Decimal{"VTI": decimal.RequireFromString("270"), "BND": decimal.RequireFromString("693")}},
		"taxable": {Cash: decimal.RequireFromString("25000"), Positions: map[string]decimal.Decimal{}},
	}}
	for sym, q := range extra {
		p.Accounts["roth"].Positions[sym] = decimal.RequireFromString(q)
	}
	return p
}

// TestPositionsChecks: a snapshot dated beyond the skew is refused; one
// naming instruments the policy does not have is refused, listing a few
// of them, and blocks planning as invalid_policy (not missing_price)
// until a snapshot that fits arrives.
func TestPositionsChecks(t *testing.T) {
	e, clk := loadHousehold(t, nil)
	e.Quotes(quotes(clk.Now(), 0))
	err := e.HandleReport(Report{Policy: "household", Positions: positions(clk.Now().Add(time.Hour), nil)})
	if ledger.RejectReason(err) != ledger.RejectPositionsFuture || !errors.Is(err, ErrInvalidPositions) {
		t.Fatalf("snapshot an hour ahead: %v", err)
	}
	extra := map[string]string{}
	for i := range 1000 {
		extra[fmt.Sprintf("JUNK%04d", i)] = "1"
	}
	err = e.HandleReport(Report{Policy: "household", Positions: positions(clk.Now(), extra)})
	if ledger.RejectReason(err) != ledger.RejectPositionsInstrument || !errors.Is(err, ErrInvalidPositions) || len(err.Error()) > 400 {
		t.Fatalf("snapshot with unknown instruments: %v", err)
	}
	st := e.Status().Policies[0]
	reasons := []string{}
	for _, b := range st.Blocked {
		reasons = append(reasons, b.Reason)
	}
	if fmt.Sprint(reasons) != "[invalid_policy]" || len(st.Holdings["roth"].Positions) > 10 {
		t.Fatalf("after the refused snapshot: blocked %v, %d roth positions; want [invalid_policy] and the ledger unchanged", reasons, len(st.Holdings["roth"].Positions))
	}
	clk.Advance(time.Second)
	if err := e.HandleReport(Report{Policy: "household", Positions: positions(clk.Now(), nil)}); err != nil {
		t.Fatal(err)
	}
	if b := e.Status().Policies[0].Blocked; hasReason(b, metrics.BlockInvalidPolicy) {
		t.Fatalf("a snapshot that fits left the policy blocked: %+v", b)
	}
}

// TestRedeliveredReportWaitsForTheSave: a report applied in memory whose
// save failed is not acknowledged; its redelivery, which changes nothing,
// is not acknowledged either until the ledger is saved.
func TestRedeliveredReportWaitsForTheSave(t *testing.T) {
	s, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fs := &failingStore{Store: s}
	e, clk := loadHousehold(t, fs)
	clk.Advance(time.Minute)
	snap := Report{Policy: "household", Positions: positions(clk.Now(), nil)}
	fs.failSave = true
	if err := e.HandleReport(snap); err == nil || errors.Is(err, ErrPermanent) {
		t.Fatalf("first delivery, save failing: %v, want a passing error", err)
	}
	if err := e.HandleReport(snap); err == nil || errors.Is(err, ErrPermanent) {
		t.Fatalf("redelivery, save still failing: %v, want a passing error (not an ack)", err)
	}
	fs.failSave = false
	if err := e.HandleReport(snap); err != nil {
		t.Fatalf("redelivery, save working: %v", err)
	}
	if l, ok, err := s.Load("household"); err != nil || !ok || !l.BaseAsOf.Equal(clk.Now()) {
		t.Fatalf("saved ledger: base as of %v, %v, %v; want the snapshot's", l.BaseAsOf, ok, err)
	}
}

// streamHistory is a StreamHistory over given orders and fills.
type streamHistory struct {
	orders  []events.Order
	fills   []Report
	reports []StoredReport
}

func (h streamHistory) OrdersSince(_ context.Context, since time.Time) ([]events.Order, error) {
	return h.orders, nil
}

func (h streamHistory) FillsSince(_ context.Context, since time.Time) ([]Report, bool, error) {
	return h.fills, true, nil
}

func (h streamHistory) ReportsSince(_ context.Context, since time.Time) ([]StoredReport, error) {
	return h.reports, nil
}

// fillAllPending fills every pending order of the household at its price,
// and returns the orders and fills as the streams would hold them.
func fillAllPending(t *testing.T, e *Engine, clk *clock.Fake, orders []*ledger.Order) streamHistory {
	t.Helper()
	var h streamHistory
	for _, o := range orders {
		f := &events.Fill{SchemaVersion: 1, FillID: "fill-" + o.OrderID, OrderID: o.OrderID, Status: events.FillFilled,
			Quantity: o.Quantity, Price: o.Price, At: clk.Now()}
		r := Report{Policy: "household", Account: o.Account, Fill: f}
		if err := e.HandleReport(r); err != nil {
			t.Fatal(err)
		}
		h.orders = append(h.orders, o.Order)
		h.fills = append(h.fills, r)
	}
	return h
}

// TestReconcileSkipsPrunedOrders: orders finished and pruned from the
// ledger (Retention) are not adopted again at the next start, even within
// their order_ttl, and their fills, still in the reports stream, are not
// applied a second time.
func TestReconcileSkipsPrunedOrders(t *testing.T) {
	e, clk := loadHouseholdWith(t, Options{Retention: time.Hour})
	h := fillAllPending(t, e, clk, planHousehold(t, e, clk))
	clk.Advance(2 * time.Hour) // past the retention, within the 24h order_ttl
	e.mu.Lock()
	l := e.policies["household"].ledger
	l.Prune(clk.Now().Add(-e.opts.Retention)) // as the next report or ack does
	n := len(l.Orders)
	e.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d orders left in the ledger, want them pruned", n)
	}
	before := e.Status().Policies[0].Holdings
	orders, fills, err := e.Reconcile(context.Background(), h)
	if err != nil || orders != 0 || fills != 0 {
		t.Fatalf("Reconcile = %d orders, %d fills, %v; want nothing adopted or applied", orders, fills, err)
	}
	if after := e.Status().Policies[0].Holdings; fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("holdings changed by the reconciliation:\n%v\nwant\n%v", after, before)
	}
}

// TestReconcileRecoversFillsOfRestoredLedger: a ledger restored from a
// backup taken while its orders were pending gets their fills, which the
// consumer acknowledged after the backup, back from the reports stream.
func TestReconcileRecoversFillsOfRestoredLedger(t *testing.T) {
	s, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e, clk := loadHouseholdWith(t, Options{Store: s})
	orders := planHousehold(t, e, clk)
	e.mu.Lock()
	if err := s.Save(e.policies["household"].ledger, true); err != nil { // the backup
		t.Fatal(err)
	}
	e.mu.Unlock()
	backup, _, err := s.Load("household")
	if err != nil {
		t.Fatal(err)
	}
	h := fillAllPending(t, e, clk, orders)
	want := e.Status().Policies[0].Holdings

	e2, _ := loadHouseholdWith(t, Options{Store: s})
	e2.mu.Lock()
	e2.policies["household"].ledger = backup // restored
	e2.mu.Unlock()
	_, fills, err := e2.Reconcile(context.Background(), h)
	if err != nil || fills != len(orders) {
		t.Fatalf("Reconcile recovered %d fills, %v; want %d", fills, err, len(orders))
	}
	st := e2.Status().Policies[0]
	if fmt.Sprint(st.Holdings) != fmt.Sprint(want) || len(st.PendingOrders) != 0 || st.RecoveredFills != len(orders) {
		t.Fatalf("after recovery: holdings %v, %d pending, %d recovered; want %v, 0, %d", st.Holdings, len(st.PendingOrders), st.RecoveredFills, want, len(orders))
	}
}

// TestResync: a resync replaces the ledger whatever the dates (here a
// ledger dated in year 9999 with an unknown fill) and is recorded; one
// whose holdings name an instrument the policy does not have is refused
// and changes nothing.
func TestResync(t *testing.T) {
	e, clk := loadHousehold(t, nil)
	f := &events.Fill{SchemaVersion: 1, FillID: "stray", OrderID: "nope", Status: events.FillFilled,
		Quantity: decimal.NewFromInt(1), Price: decimal.NewFromInt(1), At: clk.Now()}
	if err := e.HandleReport(Report{Policy: "household", Account: "roth", Fill: f}); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	e.policies["household"].ledger.AsOf = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	e.mu.Unlock()
	bad, err := portfolio.ParseHoldings("bad.yaml", []byte("as_of: 2020-01-01T00:00:00Z\naccounts:\n  roth: {cash: \"1\", positions: {XYZ: \"3\"}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Resync("household", bad, "h1", "ops", "test"); err == nil || !strings.Contains(err.Error(), "XYZ") {
		t.Fatalf("resync with an unknown instrument: %v", err)
	}
	if st := e.Status().Policies[0]; !hasReason(st.Blocked, metrics.BlockUnknownOrderState) {
		t.Fatalf("a refused resync cleared the block: %+v", st.Blocked)
	}
	good, err := portfolio.ParseHoldings("good.yaml", []byte(balancedHoldings))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Resync("household", good, "h2", "ops", "broker statement"); err != nil {
		t.Fatal(err)
	}
	st := e.Status().Policies[0]
	if hasReason(st.Blocked, metrics.BlockUnknownOrderState) || st.HoldingsAsOf.After(clk.Now()) {
		t.Fatalf("after the resync: blocked %+v, holdings as of %v", st.Blocked, st.HoldingsAsOf)
	}
	e.mu.Lock()
	rs := e.policies["household"].ledger.Resyncs
	e.mu.Unlock()
	if len(rs) != 1 || rs[0].By != "ops" || rs[0].Reason != "broker statement" || len(rs[0].PrevUnknown) != 1 || rs[0].PrevAsOf.Year() != 9999 {
		t.Fatalf("resync record %+v", rs)
	}
}

// TestCashFlowDatedInTheFuture: a deposit dated in year 9999 is refused
// (it moved the ledger's as_of there, locking out every later snapshot);
// one a little ahead of the clock counts as of now.
func TestCashFlowDatedInTheFuture(t *testing.T) {
	e, clk := loadHousehold(t, nil)
	c := &events.CashFlow{SchemaVersion: 1, CashFlowID: "d1", Kind: events.CashFlowDeposit, Account: "taxable",
		Amount: decimal.NewFromInt(1000), At: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)}
	err := e.HandleReport(Report{Policy: "household", CashFlow: c})
	if !errors.Is(err, ErrInvalidCashFlow) || ledger.RejectReason(err) != ledger.RejectCashFlowFuture {
		t.Fatalf("deposit dated 9999: %v", err)
	}
	c.CashFlowID, c.At = "d2", clk.Now().Add(time.Minute)
	if err := e.HandleReport(Report{Policy: "household", CashFlow: c}); err != nil {
		t.Fatal(err)
	}
	if got := e.Status().Policies[0].HoldingsAsOf; got.After(clk.Now()) {
		t.Fatalf("holdings as of %v after a deposit dated a minute ahead, want at most now %v", got, clk.Now())
	}
}

// TestReconcileRecoversFillsOfOrdersOlderThanTheBase: a backup taken
// while a plan's orders were working and after a positions snapshot newer
// than those orders (the snapshot does not settle them) is restored after
// their order_ttl. The orders' fills, acknowledged since the backup, are
// read back from the reports stream: the ledger must not keep them
// working until they expire and then plan the same trades again. (The
// fills were only read back for orders created after the ledger's base,
// so these were never settled.)
func TestReconcileRecoversFillsOfOrdersOlderThanTheBase(t *testing.T) {
	s, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e, clk := loadHouseholdWith(t, Options{Store: s})
	orders := planHousehold(t, e, clk)
	clk.Advance(time.Minute)
	// The executor reports its positions, the orders not yet executed.
	if err := e.HandleReport(Report{Policy: "household", Positions: ledgerSnapshot(e, clk.Now())}); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	l := e.policies["household"].ledger
	if !l.BaseAsOf.After(orders[0].CreatedAt) || len(l.Pending()) != len(orders) {
		e.mu.Unlock()
		t.Fatalf("base as of %v, orders created %v, %d pending: the test needs a base newer than working orders",
			l.BaseAsOf, orders[0].CreatedAt, len(l.Pending()))
	}
	if err := s.Save(l, true); err != nil { // the backup
		e.mu.Unlock()
		t.Fatal(err)
	}
	e.mu.Unlock()
	backup, _, err := s.Load("household")
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	h := fillAllPending(t, e, clk, orders)
	want := e.Status().Policies[0].Holdings

	e2, clk2 := loadHouseholdWith(t, Options{Store: s})
	clk2.Set(clk.Now().Add(25 * time.Hour)) // past the orders' 24h order_ttl
	e2.mu.Lock()
	e2.policies["household"].ledger = backup // restored
	e2.mu.Unlock()
	e2.EvaluateAll() // as Load does before Reconcile: the orders expire
	_, fills, err := e2.Reconcile(context.Background(), h)
	if err != nil || fills != len(orders) {
		t.Fatalf("Reconcile recovered %d fills, %v; want %d", fills, err, len(orders))
	}
	st := e2.Status().Policies[0]
	if fmt.Sprint(st.Holdings) != fmt.Sprint(want) || len(st.PendingOrders) != 0 {
		t.Fatalf("after recovery: holdings %v, %d pending; want %v, 0", st.Holdings, len(st.PendingOrders), want)
	}
}

// TestRefusedFillBlocks: a fill the ledger refuses (here priced outside
// the collar) for an order it published is an execution it cannot
// account for: the policy is blocked (unknown_order_state) until a
// positions snapshot says what the household holds. It used to be dropped
// silently: the order then expired and its trades were planned again,
// though the executor said it had executed them.
func TestRefusedFillBlocks(t *testing.T) {
	e, clk := loadHousehold(t, nil)
	o := planHousehold(t, e, clk)[0]
	f := events.Fill{SchemaVersion: 1, FillID: "crash", OrderID: o.OrderID, Status: events.FillFilled,
		Quantity: o.Quantity, Price: o.Price.Div(decimal.NewFromInt(2)), At: clk.Now()}
	if err := e.HandleReport(Report{Policy: "household", Account: o.Account, Fill: &f}); !errors.Is(err, ErrInvalidFill) {
		t.Fatalf("fill at half the order's price: %v, want refused", err)
	}
	st := e.Status().Policies[0]
	if !hasReason(st.Blocked, metrics.BlockUnknownOrderState) {
		t.Fatalf("blocked %+v after a refused fill, want unknown_order_state", st.Blocked)
	}
	// Delivered again (a second executor instance, say): noted once.
	_ = e.HandleReport(Report{Policy: "household", Account: o.Account, Fill: &f})
	e.mu.Lock()
	n := len(e.policies["household"].ledger.Unknown)
	e.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d notes after the same refused fill twice, want 1", n)
	}
	clk.Advance(time.Minute)
	if err := e.HandleReport(Report{Policy: "household", Positions: ledgerSnapshot(e, clk.Now())}); err != nil {
		t.Fatal(err)
	}
	if st := e.Status().Policies[0]; hasReason(st.Blocked, metrics.BlockUnknownOrderState) {
		t.Fatalf("still blocked after a positions snapshot: %+v", st.Blocked)
	}
}

// TestFillInASnapshotDatedAheadNotAppliedAgain: the executor's clock runs
// two minutes ahead (within the allowed skew). Its positions snapshot,
// which includes an execution, arrives before that execution's fill
// report (delivered late, or again after a failed save). The fill is
// dated before the snapshot: it is in it, and must not move the holdings
// a second time. (The snapshot's date was cut to the daemon's clock, so
// the fill looked newer than the snapshot and was applied again.)
func TestFillInASnapshotDatedAheadNotAppliedAgain(t *testing.T) {
	e, clk := loadHousehold(t, nil)
	o := planHousehold(t, e, clk)[0]
	ahead := clk.Now().Add(2 * time.Minute) // the executor's clock
	f := events.Fill{SchemaVersion: 1, FillID: "f-ahead", OrderID: o.OrderID, Status: events.FillFilled,
		Quantity: o.Quantity, Price: o.Price, At: ahead.Add(-30 * time.Second)}
	// The snapshot: the ledger's holdings with the fill executed.
	snap := ledgerSnapshot(e, ahead)
	ap := snap.Accounts[o.Account]
	value := o.Quantity.Mul(o.Price)
	if o.Side == "buy" {
		ap.Cash, ap.Positions[o.Instrument] = ap.Cash.Sub(value), ap.Positions[o.Instrument].Add(o.Quantity)
	} else {
		ap.Cash, ap.Positions[o.Instrument] = ap.Cash.Add(value), ap.Positions[o.Instrument].Sub(o.Quantity)
	}
	snap.Accounts[o.Account] = ap
	if err := e.HandleReport(Report{Policy: "household", Positions: snap}); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint(e.Status().Policies[0].Holdings)
	if err := e.HandleReport(Report{Policy: "household", Account: o.Account, Fill: &f}); err != nil {
		t.Fatal(err)
	}
	st := e.Status().Policies[0]
	if got := fmt.Sprint(st.Holdings); got != want {
		t.Fatalf("holdings after the fill the snapshot includes:\n%s\nwant the snapshot's:\n%s", got, want)
	}
	if st.HoldingsAsOf.After(clk.Now()) {
		t.Fatalf("holdings as of %v, after the clock %v", st.HoldingsAsOf, clk.Now())
	}
}

// ledgerSnapshot returns the household's ledger holdings as a positions
// snapshot dated asOf.
func ledgerSnapshot(e *Engine, asOf time.Time) *events.Positions {
	snap := &events.Positions{SchemaVersion: 1, AsOf: asOf, Accounts: map[string]events.AccountPositions{}}
	e.mu.Lock()
	defer e.mu.Unlock()
	for name, a := range e.policies["household"].ledger.Accounts {
		snap.Accounts[name] = events.AccountPositions{Cash: a.Cash, Positions: maps.Clone(a.Positions)}
	}
	return snap
}

// TestReconcileReportsSkips: of the positions snapshots and cash flows
// the reports consumer acknowledged, Reconcile leaves alone those stored
// before the ledger's last resync (the operator's holdings replaced them),
// those not yet acknowledged (the consumer delivers them), and cash flows
// the daemon refuses whenever delivered (an account the policy lacks, an
// amount not above zero); an unknown acknowledged deposit after the base
// blocks the policy.
func TestReconcileReportsSkips(t *testing.T) {
	e, clk := loadHousehold(t, nil)
	base := e.Status().Policies[0].HoldingsAsOf
	h, err := portfolio.ParseHoldings("now.yaml", []byte(balancedHoldings))
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	beforeResync := clk.Now()
	clk.Advance(time.Hour)
	if err := e.Resync("household", h, "h2", "ops", "test"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	after := clk.Now()
	cash := func(id, account, amount string, at, stored time.Time, handled bool) StoredReport {
		return StoredReport{Report: Report{Policy: "household", CashFlow: &events.CashFlow{SchemaVersion: 1, CashFlowID: id,
			Kind: events.CashFlowDeposit, Account: account, Amount: decimal.RequireFromString(amount), At: at}},
			Stored: stored, Handled: handled}
	}
	skipped := streamHistory{reports: []StoredReport{
		{Report: Report{Policy: "household", Positions: positions(beforeResync, map[string]string{"VNQ": "1"})}, Stored: beforeResync, Handled: true},
		cash("before-resync", "taxable", "100", beforeResync, beforeResync, true),
		cash("not-acked", "taxable", "100", after, after, false),
		cash("no-account", "savings", "100", after, after, true),
		cash("zero", "taxable", "0", after, after, true),
	}}
	want := e.Status().Policies[0].Holdings
	if _, _, err := e.Reconcile(context.Background(), skipped); err != nil {
		t.Fatal(err)
	}
	st := e.Status().Policies[0]
	if fmt.Sprint(st.Holdings) != fmt.Sprint(want) || !st.HoldingsAsOf.Equal(base) {
		t.Errorf("holdings changed to %v as of %v; want the resync's %v as of %v", st.Holdings, st.HoldingsAsOf, want, base)
	}
	for _, b := range st.Blocked {
		if b.Reason == "unknown_order_state" {
			t.Errorf("blocked by reports that do not count: %+v", b)
		}
	}

	lost := streamHistory{reports: []StoredReport{cash("lost", "taxable", "100", after, after, true)}}
	if _, _, err := e.Reconcile(context.Background(), lost); err != nil {
		t.Fatal(err)
	}
	e.EvaluateAll()
	var why string
	for _, b := range e.Status().Policies[0].Blocked {
		if b.Reason == "unknown_order_state" {
			why = b.Detail
		}
	}
	if !strings.Contains(why, "cash flow lost (deposit of 100, account taxable") {
		t.Errorf("an acknowledged deposit the ledger lacks: block %q, want unknown_order_state naming it", why)
	}
}
