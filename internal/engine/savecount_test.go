package engine

import (
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/state"
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
