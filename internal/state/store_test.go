package state

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	bolt "go.etcd.io/bbolt"

	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
)

var testAt = time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)

// testLedger is a ledger of policy with one account, cash as given and one
// order.
func testLedger(policy, cash string) *ledger.Ledger {
	l := ledger.New(policy)
	l.SetBase(testAt, "h", map[string]*ledger.Account{"ira": {Cash: decimal.RequireFromString(cash),
		Positions: map[string]decimal.Decimal{"TM": decimal.RequireFromString("0.12345678901234567890")}}}, testAt)
	l.AddOrders([]events.Order{{OrderID: policy + "-o1", Quantity: decimal.RequireFromString("3"), ExpiresAt: testAt}}, testAt)
	return l
}

func openStore(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	s, err := OpenWith(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// ledgerJSON is the ledger as saved, to compare ledgers exactly.
func ledgerJSON(t *testing.T, l *ledger.Ledger) string {
	t.Helper()
	data, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func mustLoad(t *testing.T, s interface {
	Load(string) (*ledger.Ledger, bool, error)
}, policy string) *ledger.Ledger {
	t.Helper()
	l, ok, err := s.Load(policy)
	if err != nil || !ok {
		t.Fatalf("load %s: ok %v, %v", policy, ok, err)
	}
	return l
}

func TestStoreSaveLoad(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	if _, ok, err := s.Load("p"); ok || err != nil {
		t.Fatalf("empty store: ok %v err %v", ok, err)
	}
	l := testLedger("p", "1200.50")
	l.LastFire = "2026-11-01 01:30"
	for _, durable := range []bool{false, true} {
		if err := s.Save(l, durable); err != nil {
			t.Fatal(err)
		}
		got := mustLoad(t, s, "p")
		if !got.Accounts["ira"].Positions["TM"].Equal(l.Accounts["ira"].Positions["TM"]) || got.Accounts["ira"].Cash.String() != "1200.5" {
			t.Errorf("decimals not exact after a round trip: %+v", got.Accounts["ira"])
		}
		if ledgerJSON(t, got) != ledgerJSON(t, l) {
			t.Errorf("round trip changed the ledger:\n%s\n%s", ledgerJSON(t, got), ledgerJSON(t, l))
		}
	}
	if err := s.Save(testLedger("a", "1"), false); err != nil {
		t.Fatal(err)
	}
	names, err := s.Policies()
	if err != nil || strings.Join(names, ",") != "a,p" {
		t.Errorf("policies %v %v", names, err)
	}
	if ok, err := s.Has("a"); !ok || err != nil {
		t.Errorf("has a: %v %v", ok, err)
	}
	if ok, err := s.Has("b"); ok || err != nil {
		t.Errorf("has b: %v %v", ok, err)
	}
	// Documents.
	type doc struct {
		V decimal.Decimal `json:"v"`
	}
	if ok, err := s.ReadJSON("p.prices", &doc{}); ok || err != nil {
		t.Errorf("absent document: %v %v", ok, err)
	}
	if err := s.WriteJSON("p.prices", doc{decimal.RequireFromString("0.10000000000000000001")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(l, true); err != ErrClosed {
		t.Errorf("save after close: %v", err)
	}

	s = openStore(t, dir, Options{})
	if got := mustLoad(t, s, "p"); ledgerJSON(t, got) != ledgerJSON(t, l) {
		t.Error("ledger changed across a reopen")
	}
	var d doc
	if ok, err := s.ReadJSON("p.prices", &d); !ok || err != nil || d.V.String() != "0.10000000000000000001" {
		t.Errorf("document after reopen: %v %v %v", ok, err, d.V)
	}
}

// TestStoreJournal: entries appended after the last save come back on
// Load, in order; a save empties the journal; a plan event that is not
// JSON is refused.
func TestStoreJournal(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(fmt.Sprintf("async=%v", async), func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, dir, Options{AsyncJournal: async})
			l := ledger.New("p")
			l.SetBase(testAt, "h", map[string]*ledger.Account{}, testAt)
			if err := s.Save(l, true); err != nil {
				t.Fatal(err)
			}
			for i, id := range []string{"x", "y"} {
				e := Entry{PlanID: id, At: testAt.Add(time.Duration(i+1) * time.Minute),
					Orders: []events.Order{{OrderID: id + "-1"}, {OrderID: id + "-2"}},
					Plan:   json.RawMessage(`{"plan_id":"` + id + `","trigger":"threshold"}`)}
				if err := s.Append("p", e); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Append("p", Entry{PlanID: "bad", Orders: []events.Order{{OrderID: "bad-1"}}, Plan: json.RawMessage(`{"torn`)}); err == nil {
				t.Error("an entry with a plan event that is not JSON was journaled")
			}
			got := mustLoad(t, s, "p")
			if len(got.Orders) != 4 || got.Orders[0].Status != ledger.Outbox || got.LastPlanID != "y" || !got.LastRebalance.Equal(testAt.Add(2*time.Minute)) {
				t.Fatalf("replayed ledger: %d orders, plan %q at %v", len(got.Orders), got.LastPlanID, got.LastRebalance)
			}
			if len(got.Plans) != 2 || got.Plans[1].ID != "y" {
				t.Fatalf("replayed plan events: %+v", got.Plans)
			}
			// Saved with the orders, the journal is emptied: loading again
			// does not double them, and no entry is left in the file.
			if err := s.Save(got, false); err != nil {
				t.Fatal(err)
			}
			if again := mustLoad(t, s, "p"); len(again.Orders) != 4 {
				t.Fatalf("%d orders after a save and reload, want 4", len(again.Orders))
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openStore(t, dir, Options{})
			if n := s.pols["p"]; n != nil && n.journal != 0 {
				t.Errorf("%d journal entries left after the save", n.journal)
			}
			if again := mustLoad(t, s, "p"); ledgerJSON(t, again) != ledgerJSON(t, got) {
				t.Error("ledger changed across a reopen")
			}
		})
	}
}

// TestStoreSkipsUnchangedSaves: a save of a ledger equal to the last one
// saved writes nothing; a change, or a journal entry since, writes.
func TestStoreSkipsUnchangedSaves(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	l := testLedger("p", "10")
	for range 5 {
		if err := s.Save(l, true); err != nil {
			t.Fatal(err)
		}
	}
	if st := s.Stats(); st.LedgerWrites != 1 || st.SkippedSaves != 4 {
		t.Fatalf("five equal saves: %+v, want 1 write and 4 skipped", st)
	}
	l.LastFire = "2026-11-24 10:00"
	if err := s.Save(l, false); err != nil {
		t.Fatal(err)
	}
	if err := s.Append("p", Entry{PlanID: "z", At: testAt, Orders: []events.Order{{OrderID: "z-1"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(l, true); err != nil { // same bytes, but the journal must be emptied
		t.Fatal(err)
	}
	if st := s.Stats(); st.LedgerWrites != 3 || st.SkippedSaves != 4 {
		t.Fatalf("after a change and a journal entry: %+v, want 3 writes", st)
	}
	if got := mustLoad(t, s, "p"); len(got.Orders) != 1 {
		t.Errorf("the journal entry was replayed over a save that followed it: %d orders", len(got.Orders))
	}
}

// TestStoreConcurrentWriters: many goroutines saving and journaling
// different policies durably share commits, and everything acknowledged is
// there after a reopen.
func TestStoreConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	const writers, rounds = 16, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			name := fmt.Sprintf("p%02d", w)
			l := testLedger(name, "0")
			for r := range rounds {
				l.Accounts["ira"].Cash = decimal.NewFromInt(int64(r))
				if err := s.Save(l, r%2 == 0); err != nil {
					errs <- err
					return
				}
				id := fmt.Sprintf("%s-r%d", name, r)
				if err := s.Append(name, Entry{PlanID: id, At: testAt, Orders: []events.Order{{OrderID: id + "-1"}}}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.JournalWrites != writers*rounds || st.Commits >= st.JournalWrites+st.LedgerWrites {
		t.Errorf("stats %+v: want %d journal writes in fewer commits than writes", st, writers*rounds)
	}
	t.Logf("%d ledger writes and %d journal entries in %d commits", st.LedgerWrites, st.JournalWrites, st.Commits)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, Options{})
	for w := range writers {
		name := fmt.Sprintf("p%02d", w)
		got := mustLoad(t, s, name)
		// The last round saved cash 19 and then journaled its plan.
		if !got.Accounts["ira"].Cash.Equal(decimal.NewFromInt(rounds-1)) || got.LastPlanID != fmt.Sprintf("%s-r%d", name, rounds-1) {
			t.Errorf("%s: cash %s, last plan %q", name, got.Accounts["ira"].Cash, got.LastPlanID)
		}
	}
}

// TestStoreReadsSeePendingWrites: a read right after a write that did not
// wait for its commit sees it.
func TestStoreReadsSeePendingWrites(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{AsyncJournal: true})
	for i := range 50 {
		name := fmt.Sprintf("p%d", i)
		if err := s.Save(testLedger(name, strconv.Itoa(i)), false); err != nil {
			t.Fatal(err)
		}
		if err := s.Append(name, Entry{PlanID: "j", At: testAt.Add(time.Minute), Orders: []events.Order{{OrderID: name + "-j"}}}); err != nil {
			t.Fatal(err)
		}
		if got := mustLoad(t, s, name); len(got.Orders) != 2 || got.Accounts["ira"].Cash.IntPart() != int64(i) {
			t.Fatalf("%s read back without its pending writes: %d orders", name, len(got.Orders))
		}
		if err := s.WriteJSON(name+".doc", i); err != nil {
			t.Fatal(err)
		}
		var v int
		if ok, err := s.ReadJSON(name+".doc", &v); !ok || err != nil || v != i {
			t.Fatalf("document %d: %v %v %d", i, ok, err, v)
		}
	}
}

// TestStoreLocked: a second store on the same directory is refused while
// the first is open.
func TestStoreLocked(t *testing.T) {
	dir := t.TempDir()
	openStore(t, dir, Options{})
	if _, err := OpenWith(dir, Options{LockTimeout: 50 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second open: %v", err)
	}
}

// TestStoreCrash kills a process writing to a store (SIGKILL, nothing
// closed or flushed) and checks that every write it was told is durable is
// in the store when it is opened again: durable saves and journal entries
// (ledger "p<i>" with cash i, then plan "j<i>").
// With AsyncJournal the journal entries are not fsynced, and survive the
// kill of the process all the same (not a power loss).
func TestStoreCrash(t *testing.T) {
	if os.Getenv("STATE_CRASH_DIR") != "" {
		crashWriter(os.Getenv("STATE_CRASH_DIR"), os.Getenv("STATE_CRASH_ASYNC") == "true")
		return
	}
	for _, async := range []bool{false, true} {
		t.Run(fmt.Sprintf("async=%v", async), func(t *testing.T) { testStoreCrash(t, async) })
	}
}

func testStoreCrash(t *testing.T, async bool) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStoreCrash$")
	cmd.Env = append(os.Environ(), "STATE_CRASH_DIR="+dir, fmt.Sprintf("STATE_CRASH_ASYNC=%v", async))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]int{} // policy → last durable cash (then journaled)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var p string
		var cash int
		if _, err := fmt.Sscanf(sc.Text(), "ack %s %d", &p, &cash); err != nil {
			continue
		}
		acked[p] = cash
		if len(acked) == 40 && cash >= 3 {
			break
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if len(acked) == 0 {
		t.Fatal("the writer acknowledged nothing")
	}
	s := openStore(t, dir, Options{})
	for p, cash := range acked {
		got := mustLoad(t, s, p)
		c := int(got.Accounts["ira"].Cash.IntPart())
		if c < cash {
			t.Errorf("%s: cash %d in the store, %d was acknowledged durable", p, c, cash)
		}
		// Unless a later save replaced it, the ledger saved with that
		// cash has the plan journaled after it.
		if _, ok := got.Order(fmt.Sprintf("%s-j%d-1", p, cash)); c == cash && !ok {
			t.Errorf("%s: the journaled plan j%d acknowledged before the kill is lost", p, cash)
		}
	}
}

// crashWriter saves and journals policies until it is killed, printing
// "ack <policy> <cash>" after each durable save and journal entry. Its
// journal file rotates every 16 KiB.
func crashWriter(dir string, async bool) {
	s, err := OpenWith(dir, Options{AsyncJournal: async, MaxJournalBytes: 16 << 10})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for cash := 0; ; cash++ {
				for i := w; i < 40; i += 4 {
					name := fmt.Sprintf("p%d", i)
					l := testLedger(name, strconv.Itoa(cash))
					_ = s.Save(l, false) // not acknowledged: may be lost
					id := fmt.Sprintf("%s-j%d", name, cash)
					if s.Save(l, true) != nil || s.Append(name, Entry{PlanID: id, At: testAt.Add(time.Hour),
						Orders: []events.Order{{OrderID: id + "-1"}}}) != nil {
						os.Exit(1)
					}
					mu.Lock()
					fmt.Printf("ack %s %d\n", name, cash)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
}

// TestLedgerWriteKeepsLaterJournal: a ledger write deletes the journal
// entries in the state file up to the sequence number it was queued with,
// not those appended after it (a rotation can move such an entry into the
// state file before the queued ledger write commits; the write used to
// delete every entry of the policy and lose that acknowledged plan).
func TestLedgerWriteKeepsLaterJournal(t *testing.T) {
	s := openStore(t, t.TempDir(), Options{})
	entry := func(seq uint64) op { return op{kind: opJournal, key: "p", data: []byte(`{}`), seq: seq} }
	count := func() int {
		n := 0
		if err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketJournal).Cursor()
			prefix := journalPrefix("p")
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				n++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	update := func(ops ...op) {
		t.Helper()
		if err := s.db.Update(func(tx *bolt.Tx) error { return apply(tx, ops) }); err != nil {
			t.Fatal(err)
		}
	}
	update(entry(3), entry(4), entry(7), op{kind: opJournal, key: "q", data: []byte(`{}`), seq: 5})
	update(op{kind: opLedger, key: "p", data: []byte(`{}`), upTo: 4})
	if n := count(); n != 1 {
		t.Fatalf("%d journal entries of p left after a ledger write up to 4; want 1 (seq 7)", n)
	}
	update(op{kind: opLedger, key: "p", data: []byte(`{}`), upTo: 7})
	if n := count(); n != 0 {
		t.Fatalf("%d journal entries of p left after a ledger write up to 7", n)
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketJournal).Get(journalKey("q", 5)) == nil {
			return errors.New("another policy's entry was deleted")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
