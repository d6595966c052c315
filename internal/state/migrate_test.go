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
)

// writeFormerState writes a state directory as former versions did, with
// Dir and WriteJSON: ledgers saved durably or not, journals with entries
// after their snapshot (one already in it, one torn by a crash), a journal
// without a ledger, and documents. It returns the ledgers and documents
// directories.
func writeFormerState(t *testing.T, root string, policies int) (string, string) {
	t.Helper()
	ledgers, aux := filepath.Join(root, "ledgers"), filepath.Join(root, "strategy")
	d, err := OpenDir(ledgers)
	if err != nil {
		t.Fatal(err)
	}
	d.SyncJournal = true
	for i := range policies {
		name := fmt.Sprintf("household-%03d", i)
		l := testLedger(name, fmt.Sprintf("%d.%d", i, i))
		if err := d.Save(l, i%2 == 0); err != nil {
			t.Fatal(err)
		}
		for j := range i % 4 {
			id := fmt.Sprintf("%s-plan%d", name, j)
			e := Entry{PlanID: id, At: testAt.Add(time.Duration(j+1) * time.Minute),
				Orders: []events.Order{{OrderID: id + "-1", Quantity: decimal.RequireFromString("1.5")}},
				Plan:   json.RawMessage(`{"plan_id":"` + id + `"}`)}
			if j == 2 {
				// Already in the snapshot: replay skips it.
				e.Orders[0].OrderID = name + "-o1"
			}
			if err := d.Append(name, e); err != nil {
				t.Fatal(err)
			}
		}
		if i%5 == 4 {
			f, err := os.OpenFile(filepath.Join(ledgers, name+".journal"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(`{"plan_id":"torn","orders":[{"order_id":"to`)
			f.Close()
		}
	}
	if err := d.Append("orphan", Entry{PlanID: "o", At: testAt, Orders: []events.Order{{OrderID: "o-1"}}}); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(aux, 0o700); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := WriteJSON(filepath.Join(aux, fmt.Sprintf("household-%03d.prices.json", i)), map[string]any{"n": i, "p": decimal.RequireFromString("0.30000000000000000004")}); err != nil {
			t.Fatal(err)
		}
	}
	return ledgers, aux
}

// TestMigrate: a state directory written by the former code is imported
// exactly (each policy loads as the former code loaded it), once, and the
// directories are kept under a new name.
func TestMigrate(t *testing.T) {
	root := t.TempDir()
	ledgers, aux := writeFormerState(t, root, 24)
	// What the former code loads.
	old, err := OpenDir(ledgers)
	if err != nil {
		t.Fatal(err)
	}
	names, err := old.Policies()
	if err != nil || len(names) != 24 {
		t.Fatalf("former policies: %v %v", names, err)
	}
	want := map[string]string{}
	for _, n := range names {
		want[n] = ledgerJSON(t, mustLoad(t, old, n))
	}
	old.Close()

	s := openStore(t, root, Options{})
	m, err := s.Migrate(ledgers, true)
	if err != nil {
		t.Fatal(err)
	}
	// 24 policies with i%4 entries each that decode: 6×(0+1+2+3) = 36.
	if m.Ledgers != 24 || m.Entries != 36 || m.Orphans != 1 || m.RenamedTo != ledgers+MigratedSuffix || m.Resumed {
		t.Errorf("migration %+v", m)
	}
	md, err := s.Migrate(aux, false)
	if err != nil || md.Documents != 3 || md.RenamedTo != aux+MigratedSuffix {
		t.Errorf("documents migration %+v %v", md, err)
	}
	for _, dir := range []string{ledgers, aux} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", dir, err)
		}
		if _, err := os.Stat(dir + MigratedSuffix); err != nil {
			t.Errorf("%s not kept: %v", dir+MigratedSuffix, err)
		}
	}
	checkMigrated := func(s *Store) {
		t.Helper()
		got, err := s.Policies()
		if err != nil || strings.Join(got, ",") != strings.Join(names, ",") {
			t.Fatalf("policies after migration: %v %v", got, err)
		}
		for _, n := range names {
			if g := ledgerJSON(t, mustLoad(t, s, n)); g != want[n] {
				t.Errorf("%s migrated as\n%s\nwant\n%s", n, g, want[n])
			}
		}
		var doc struct {
			N int             `json:"n"`
			P decimal.Decimal `json:"p"`
		}
		if ok, err := s.ReadJSON("household-002.prices", &doc); !ok || err != nil || doc.N != 2 || doc.P.String() != "0.30000000000000000004" {
			t.Errorf("document: %v %v %+v", ok, err, doc)
		}
	}
	checkMigrated(s)

	// Nothing to do at the next start.
	if m, err := s.Migrate(ledgers, true); err != nil || m.Dir != "" {
		t.Errorf("second migration: %+v %v", m, err)
	}

	// A crash after the import committed, before the rename: the next
	// start finds the same directory and only renames it.
	if err := os.Rename(ledgers+MigratedSuffix, ledgers); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Migrate(ledgers, true); err != nil || !m.Resumed || m.RenamedTo != ledgers+MigratedSuffix {
		t.Errorf("resumed migration: %+v %v", m, err)
	}
	checkMigrated(s)

	// The directory back with other files: refused, the store unchanged.
	if err := os.Rename(ledgers+MigratedSuffix, ledgers); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ledgers, "household-000.json"), []byte(`{"policy":"household-000"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Migrate(ledgers, true); err == nil || !strings.Contains(err.Error(), "was imported into") {
		t.Errorf("changed directory imported again: %v", err)
	}
	checkMigrated(s)
}

// TestMigrateInterrupted: an import that stopped part way (a crash
// between its transactions) runs again from the start at the next start,
// without doubling journal entries.
func TestMigrateInterrupted(t *testing.T) {
	root := t.TempDir()
	ledgers, _ := writeFormerState(t, root, 12)
	old, err := OpenDir(ledgers)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := old.Policies()
	want := map[string]string{}
	for _, n := range names {
		want[n] = ledgerJSON(t, mustLoad(t, old, n))
	}
	s := openStore(t, root, Options{})
	// The import of the first half, committed, as a crash leaves it.
	files, _, err := fingerprint(ledgers)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.importLedgers(ledgers, files[:len(files)/2], &Migration{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, root, Options{})
	if m, err := s.Migrate(ledgers, true); err != nil || m.Ledgers != 12 {
		t.Fatalf("migration after an interrupted one: %+v %v", m, err)
	}
	for _, n := range names {
		if g := ledgerJSON(t, mustLoad(t, s, n)); g != want[n] {
			t.Errorf("%s migrated as\n%s\nwant\n%s", n, g, want[n])
		}
	}
}

// TestMigrateCorrupt: a ledger file that cannot be read fails the
// migration with its name, and nothing is renamed.
func TestMigrateCorrupt(t *testing.T) {
	root := t.TempDir()
	ledgers, _ := writeFormerState(t, root, 3)
	if err := os.WriteFile(filepath.Join(ledgers, "household-001.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, root, Options{})
	if _, err := s.Migrate(ledgers, true); err == nil || !strings.Contains(err.Error(), "household-001.json") {
		t.Fatalf("error %v, want one naming the file", err)
	}
	if _, err := os.Stat(ledgers); err != nil {
		t.Errorf("directory renamed after a failed migration: %v", err)
	}
}
