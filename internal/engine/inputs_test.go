package engine

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/feeds"
	"github.com/rebalancerd/rebalancerd/internal/state"
)

// TestUnknownListCapped: 5,000 fills for unknown orders do not make the
// block detail (logged as "planning blocked", shown in /readyz and
// /status) list 5,000 ids: it shows the first ten and counts the rest.
func TestUnknownListCapped(t *testing.T) {
	e, clk := loadHousehold(t, nil)
	e.mu.Lock()
	rt := e.policies["household"]
	for i := range 5000 {
		rt.ledger.Unknown = append(rt.ledger.Unknown, fmt.Sprintf("fill f%d of unknown order o%d", i, i))
	}
	e.mu.Unlock()
	e.Quotes(quotes(clk.Now(), 0))
	var line string
	for _, r := range e.Ready() {
		if strings.Contains(r, "holdings uncertain") {
			line = r
		}
	}
	if !strings.Contains(line, "fill f9 of unknown order o9, … and 4990 more") || strings.Contains(line, "o10,") || len(line) > 1000 {
		t.Errorf("block detail (%d bytes): %.300q…, want the first 10 ids and a count of the rest", len(line), line)
	}
}

// appendFailingStore is a state.Store whose journal writes fail while
// failAppend is set.
type appendFailingStore struct {
	*state.Store
	failAppend bool
}

func (s *appendFailingStore) Append(policy string, e state.Entry) error {
	if s.failAppend {
		return errors.New("test: journal disk full")
	}
	return s.Store.Append(policy, e)
}

// TestJournalFailureNotReady: while every journal write fails (no plan
// can be published) the daemon is not ready, with the error; once a write
// succeeds again, /readyz is ready and last_error is cleared.
func TestJournalFailureNotReady(t *testing.T) {
	s, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := &appendFailingStore{Store: s, failAppend: true}
	e, clk := loadHousehold(t, store)
	e.Quotes(quotes(clk.Now(), 0))
	breach := func() {
		clk.Advance(time.Minute)
		e.Quotes(breachQuotes(clk.Now()))
	}
	breach()
	if r := strings.Join(e.Ready(), "\n"); !strings.Contains(r, "household: journal write failed: ") || !strings.Contains(r, "journal disk full") {
		t.Fatalf("Ready while the journal fails = %q, want the journal error", r)
	}
	if st := e.Status().Policies[0]; !strings.Contains(st.LastError, "journal disk full") {
		t.Fatalf("last_error %q", st.LastError)
	}
	store.failAppend = false
	breach()
	if r := e.Ready(); containsAny(r, "journal") {
		t.Errorf("Ready after a journal write succeeded = %q", r)
	}
	if st := e.Status().Policies[0]; st.LastError != "" {
		t.Errorf("last_error %q after recovery, want it cleared", st.LastError)
	}
}

// breachQuotes are the household's prices at with VTI at 200: equities
// out of their band.
func breachQuotes(at time.Time) []feeds.Quote {
	qs := quotes(at, 0)
	for i := range qs {
		if qs[i].Symbol == "VTI" {
			qs[i].Price = decimal.RequireFromString("200")
		}
	}
	return qs
}

func containsAny(lines []string, sub string) bool {
	for _, l := range lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}
