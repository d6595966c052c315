package engine

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/clock"
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
	clk := clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC))
	if store == nil {
		s, err := state.Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		store = s
	}
	e := New(Options{Clock: clk, Publisher: nopPublisher{}, Store: store})
	h, err := portfolio.ParseHoldings("h.yaml", []byte(balancedHoldings))
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse("household.yaml", []byte(strings.Replace(householdPolicy, "NAME", "household", 1)))
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
