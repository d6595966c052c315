package state

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
)

func TestSaveLoad(t *testing.T) {
	s, err := OpenDir(filepath.Join(t.TempDir(), "ledgers"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Load("p"); ok || err != nil {
		t.Fatalf("empty store: ok %v err %v", ok, err)
	}
	at := time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC)
	l := ledger.New("p")
	l.SetBase(at, "abc", map[string]*ledger.Account{"ira": {Cash: decimal.RequireFromString("1200.50"),
		Positions: map[string]decimal.Decimal{"TM": decimal.RequireFromString("0.12345678901234567890")}}}, at)
	l.AddOrders([]events.Order{{OrderID: "x-1", Quantity: decimal.RequireFromString("3"), ExpiresAt: at}}, at)
	l.LastFire = "2026-11-01 01:30"
	for _, durable := range []bool{false, true} {
		if err := s.Save(l, durable); err != nil {
			t.Fatal(err)
		}
		got, ok, err := s.Load("p")
		if err != nil || !ok {
			t.Fatalf("load: %v %v", ok, err)
		}
		if !got.Accounts["ira"].Positions["TM"].Equal(l.Accounts["ira"].Positions["TM"]) || !got.Accounts["ira"].Cash.Equal(decimal.RequireFromString("1200.5")) {
			t.Errorf("decimals not exact after a round trip: %+v", got.Accounts["ira"])
		}
		if len(got.Orders) != 1 || got.Orders[0].Status != ledger.Outbox || got.LastFire != l.LastFire || !got.BaseAsOf.Equal(at) {
			t.Errorf("round trip lost fields: %+v", got)
		}
	}
	names, err := s.Policies()
	if err != nil || len(names) != 1 || names[0] != "p" {
		t.Errorf("policies %v %v", names, err)
	}
	left, _ := filepath.Glob(filepath.Join(s.Path(), ".*tmp"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestLoadCorrupt(t *testing.T) {
	s, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Path(), "p.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load("p"); err == nil || !strings.Contains(err.Error(), "p.json") {
		t.Errorf("error %v, want one naming the file", err)
	}
	if err := os.WriteFile(filepath.Join(s.Path(), "q.json"), []byte(`{"policy":"other"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load("q"); err == nil || !strings.Contains(err.Error(), `holds policy "other"`) {
		t.Errorf("error %v", err)
	}
}

// TestJournalReplay: orders appended to the journal after the last
// snapshot come back on Load (a crash before their publish was
// acknowledged); a torn last line is skipped; a durable save empties the
// journal.
func TestJournalReplay(t *testing.T) {
	for _, sync := range []bool{false, true} {
		t.Run(fmt.Sprintf("sync=%v", sync), func(t *testing.T) { testJournalReplay(t, sync) })
	}
}

func testJournalReplay(t *testing.T, sync bool) {
	s, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.SyncJournal = sync
	at := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
	l := ledger.New("p")
	l.SetBase(at, "h", map[string]*ledger.Account{}, at)
	if err := s.Save(l, true); err != nil {
		t.Fatal(err)
	}
	e := Entry{PlanID: "x", At: at.Add(time.Minute), Orders: []events.Order{{OrderID: "x-1"}, {OrderID: "x-2"}},
		Plan: json.RawMessage(`{"plan_id":"x","trigger":"threshold"}`)}
	if err := s.Append("p", e); err != nil {
		t.Fatal(err)
	}
	// A torn second entry, as a crash in the middle of a write leaves it.
	f, err := os.OpenFile(filepath.Join(s.Path(), "p.journal"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"plan_id":"y","orders":[{"order_id":"y-`)
	f.Close()

	got, ok, err := s.Load("p")
	if err != nil || !ok {
		t.Fatalf("load: %v %v", ok, err)
	}
	if len(got.Orders) != 2 || got.Orders[0].Status != ledger.Outbox || got.LastPlanID != "x" || !got.LastRebalance.Equal(e.At) {
		t.Fatalf("replayed ledger: %d orders, plan %q at %v", len(got.Orders), got.LastPlanID, got.LastRebalance)
	}
	if len(got.Plans) != 1 || got.Plans[0].ID != "x" || string(got.Plans[0].Event) != string(e.Plan) {
		t.Fatalf("replayed plan events: %+v", got.Plans)
	}
	if err := s.Append("p", Entry{PlanID: "bad", Orders: []events.Order{{OrderID: "bad-1"}}, Plan: json.RawMessage(`{"torn`)}); err == nil {
		t.Error("an entry with a plan event that is not JSON was journaled")
	}
	// Appending the same plan again (a replay already in the snapshot) is not doubled.
	if err := s.Save(got, false); err != nil {
		t.Fatal(err)
	}
	again, _, _ := s.Load("p")
	if len(again.Orders) != 2 {
		t.Fatalf("%d orders after reload, want 2", len(again.Orders))
	}
	if err := s.Save(again, true); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(s.Path(), "p.journal")); err != nil || fi.Size() != 0 {
		t.Errorf("journal not emptied by a durable save: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRemovesStaleTempFiles(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, ".p.123.tmp")
	if err := os.WriteFile(stale, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDir(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary file still there: %v", err)
	}
}

// TestOpenJournalsBounded: a store with many policies keeps at most
// MaxOpenJournals journal files open (issue: one open journal per policy
// gave "too many open files" at 20,000 households), and an append to a
// policy whose journal was closed, and a durable save of one that was
// never opened, still work.
func TestOpenJournalsBounded(t *testing.T) {
	s, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s.MaxOpenJournals = 3
	s.SyncJournal = true
	at := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
	const n = 10
	for round := range 2 {
		for i := range n {
			name := fmt.Sprintf("p%d", i)
			if round == 0 {
				l := ledger.New(name)
				l.SetBase(at, "h", map[string]*ledger.Account{}, at)
				if err := s.Save(l, true); err != nil { // no journal yet: nothing to truncate
					t.Fatal(err)
				}
			}
			id := fmt.Sprintf("%s-r%d", name, round)
			if err := s.Append(name, Entry{PlanID: id, At: at.Add(time.Minute), Orders: []events.Order{{OrderID: id + "-1"}}}); err != nil {
				t.Fatal(err)
			}
			if got := s.OpenJournals(); got > 3 {
				t.Fatalf("%d journals open, want at most 3", got)
			}
		}
	}
	for i := range n {
		got, ok, err := s.Load(fmt.Sprintf("p%d", i))
		if err != nil || !ok {
			t.Fatalf("p%d: %v %v", i, ok, err)
		}
		if len(got.Orders) != 2 {
			t.Fatalf("p%d: %d orders replayed, want 2 (one per round, whether its journal stayed open or not)", i, len(got.Orders))
		}
		if err := s.Save(got, true); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(filepath.Join(s.Path(), fmt.Sprintf("p%d.journal", i))); err != nil || fi.Size() != 0 {
			t.Errorf("p%d: journal not emptied by a durable save (%v)", i, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s.OpenJournals() != 0 {
		t.Fatal("journals open after Close")
	}
}
