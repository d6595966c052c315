package engine

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/state"
	"github.com/shopspring/decimal"
)

// TestLedgerWrittenOnChange: evaluations that change no ledger (prices
// moving within the bands, checks due every tick) write nothing to the
// store; the first valuation of each household does (its reference
// prices), once.
func TestLedgerWrittenOnChange(t *testing.T) {
	st, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clk := clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC))
	e := New(Options{Clock: clk, Publisher: nopPublisher{}, Store: st})
	const n = 10
	if err := e.Load(householdSet(t, n)); err != nil {
		t.Fatal(err)
	}
	e.Quotes(quotes(clk.Now(), 0))
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	first := st.Stats()
	if first.LedgerWrites != 2*n { // seeded from the holdings, then valued
		t.Fatalf("after the load and the first tick: %+v, want %d ledger writes", first, 2*n)
	}
	for i := range 50 {
		clk.Advance(time.Minute)
		e.Quotes(quotes(clk.Now(), int64(i+1)))
	}
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := st.Stats(); got.LedgerWrites != first.LedgerWrites {
		t.Errorf("50 ticks changing no ledger wrote %d ledgers (%+v)", got.LedgerWrites-first.LedgerWrites, got)
	}
	for _, name := range e.names {
		if rt := e.policies[name]; rt.lastEval != clk.Now() {
			t.Fatalf("%s not evaluated at the last tick", name)
		}
	}
}

// recordingStore records the durable flag of each save.
type recordingStore struct {
	*state.Store
	mu    sync.Mutex
	saves []bool
}

func (s *recordingStore) Save(l *ledger.Ledger, durable bool) error {
	s.mu.Lock()
	s.saves = append(s.saves, durable)
	s.mu.Unlock()
	return s.Store.Save(l, durable)
}

// TestReconcileSavesShareCommits: a reconciliation that changes many
// ledgers at start (orders adopted from the stream for each) queues all of
// them before it waits for any (so that they share commits of the state
// file), then saves each durably; the ledgers are saved.
func TestReconcileSavesShareCommits(t *testing.T) {
	st, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rs := &recordingStore{Store: st}
	clk := clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC))
	e := New(Options{Clock: clk, Publisher: nopPublisher{}, Store: rs})
	const n = 40
	if err := e.Load(householdSet(t, n)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	var h streamHistory
	for _, name := range e.names {
		h.orders = append(h.orders, events.Order{SchemaVersion: 1, OrderID: name + "-p-1", PlanID: name + "-p", Policy: name,
			Account: "taxable", Instrument: "VTI", Side: "buy", Quantity: decimal.NewFromInt(1), Price: decimal.NewFromInt(285),
			CreatedAt: clk.Now(), ExpiresAt: clk.Now().Add(24 * time.Hour)})
	}
	clk.Advance(time.Minute)
	if err := st.Sync(); err != nil {
		t.Fatal(err)
	}
	rs.mu.Lock()
	rs.saves = nil
	rs.mu.Unlock()
	before := st.Stats()
	orders, _, err := e.Reconcile(context.Background(), h)
	if err != nil || orders != n {
		t.Fatalf("Reconcile = %d orders, %v; want %d adopted", orders, err, n)
	}
	rs.mu.Lock()
	saves := slices.Clone(rs.saves)
	rs.mu.Unlock()
	want := append(slices.Repeat([]bool{false}, n), slices.Repeat([]bool{true}, n)...)
	if !slices.Equal(saves, want) {
		t.Errorf("saves (durable flags) %v, want %d queued then %d durable", saves, n, n)
	}
	after := st.Stats()
	if w := after.LedgerWrites - before.LedgerWrites; w != n {
		t.Errorf("%d ledgers written, want %d (the durable saves of the queued ledgers write nothing more)", w, n)
	}
	t.Logf("%d ledgers in %d commits", n, after.Commits-before.Commits)
	for _, name := range e.names {
		l, ok, err := st.Load(name)
		if err != nil || !ok || len(l.Pending()) != 1 {
			t.Fatalf("%s: saved ledger without the adopted order (%v %v)", name, ok, err)
		}
	}
}
