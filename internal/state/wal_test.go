package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/events"
)

// planEntry is a journal entry of plan id with one order, id-1.
func planEntry(id string, at time.Time) Entry {
	return Entry{PlanID: id, At: at, Orders: []events.Order{{OrderID: id + "-1"}}}
}

func journalSize(t *testing.T, dir string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, JournalName))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestJournalFileRecovery: entries in the journal file come back at the
// next open, which moves them into the state file and empties the file;
// entries a committed save superseded do not, even when the saved ledger
// no longer holds their orders (pruned); a torn last line is skipped.
func TestJournalFileRecovery(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	for _, p := range []string{"kept", "saved"} {
		if err := s.Save(testLedger(p, "1"), true); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := s.Append(p, planEntry(fmt.Sprintf("%s-plan%d", p, i), testAt.Add(time.Duration(i+1)*time.Minute))); err != nil {
				t.Fatal(err)
			}
		}
	}
	// "saved" is saved without the plans' orders (as once pruned): they
	// must not come back.
	if err := s.Save(testLedger("saved", "2"), true); err != nil {
		t.Fatal(err)
	}
	if err := s.Append("saved", planEntry("saved-after", testAt.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, s, "kept"); len(got.Orders) != 4 || got.LastPlanID != "kept-plan2" {
		t.Fatalf("kept before reopening: %d orders, last plan %q", len(got.Orders), got.LastPlanID)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, JournalName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":999,"policy":"kept","entry":{"plan_id":"torn","orders":[{"order_id":"to`)
	f.Close()

	for round := range 2 {
		s = openStore(t, dir, Options{})
		if n := journalSize(t, dir); n != 0 {
			t.Errorf("round %d: journal file of %d bytes after opening, want it emptied", round, n)
		}
		kept := mustLoad(t, s, "kept")
		if len(kept.Orders) != 4 || kept.LastPlanID != "kept-plan2" {
			t.Errorf("round %d: kept: %d orders, last plan %q; want its 3 plans replayed", round, len(kept.Orders), kept.LastPlanID)
		}
		saved := mustLoad(t, s, "saved")
		if _, ok := saved.Order("saved-plan0-1"); ok || len(saved.Orders) != 2 || saved.LastPlanID != "saved-after" {
			t.Errorf("round %d: saved: orders %v, last plan %q; want only the plan journaled after its save", round, saved.Orders, saved.LastPlanID)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestJournalFileRotation: a journal file beyond MaxJournalBytes moves its
// live entries into the state file and starts empty; loads before and after
// a reopen see exactly the entries no save superseded.
func TestJournalFileRotation(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, Options{MaxJournalBytes: 2 << 10})
	const policies, rounds = 8, 30
	want := map[string]int{}
	for p := range policies {
		if err := s.Save(testLedger(fmt.Sprintf("p%d", p), "0"), false); err != nil {
			t.Fatal(err)
		}
	}
	for r := range rounds {
		for p := range policies {
			name := fmt.Sprintf("p%d", p)
			if err := s.Append(name, planEntry(fmt.Sprintf("%s-r%d", name, r), testAt.Add(time.Duration(r+1)*time.Minute))); err != nil {
				t.Fatal(err)
			}
			want[name]++
			if (r+p)%3 == 0 {
				l := mustLoad(t, s, name)
				if got := len(l.Orders) - 1; got != want[name] {
					t.Fatalf("%s round %d: %d journaled orders loaded, want %d", name, r, got, want[name])
				}
				if err := s.Save(l, r%2 == 0); err != nil { // holds them: the journal is emptied
					t.Fatal(err)
				}
			}
		}
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Rotations == 0 {
		t.Fatalf("no rotation: %+v", st)
	}
	check := func(s *Store) {
		t.Helper()
		for p := range policies {
			name := fmt.Sprintf("p%d", p)
			l := mustLoad(t, s, name)
			if got := len(l.Orders) - 1; got != want[name] || l.LastPlanID != fmt.Sprintf("%s-r%d", name, rounds-1) {
				t.Errorf("%s: %d journaled orders, last plan %q; want %d", name, got, l.LastPlanID, want[name])
			}
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(openStore(t, dir, Options{}))
}

// tornFile is a journal file whose next write can be made to stop half
// way with an error (a full disk, an I/O error), and whose Truncate can be
// made to fail.
type tornFile struct {
	journalFile
	tearNext     bool
	failTruncate bool
}

func (f *tornFile) Write(b []byte) (int, error) {
	if !f.tearNext {
		return f.journalFile.Write(b)
	}
	f.tearNext = false
	n, err := f.journalFile.Write(b[:len(b)/2])
	if err == nil {
		err = errors.New("injected: no space left on device")
	}
	return n, err
}

func (f *tornFile) Truncate(size int64) error {
	if f.failTruncate {
		return errors.New("injected: truncate failed")
	}
	return f.journalFile.Truncate(size)
}

// TestJournalTornWrite: an append whose write fails half way leaves no
// part of its line where the next, acknowledged, line would be written
// onto it (it did not decode at recovery and was lost). When the torn part
// cannot be cut off, the next line starts on a line of its own, and a
// later torn line is cut off without cutting into the lines acknowledged
// after the first.
func TestJournalTornWrite(t *testing.T) {
	for _, truncateFails := range []bool{false, true} {
		t.Run(fmt.Sprintf("truncate_fails=%v", truncateFails), func(t *testing.T) {
			dir := t.TempDir()
			var tf *tornFile
			s := openStore(t, dir, Options{wrapJournal: func(f journalFile) journalFile {
				tf = &tornFile{journalFile: f}
				return tf
			}})
			if err := s.Save(testLedger("p", "1"), true); err != nil {
				t.Fatal(err)
			}
			appendOK := func(id string, i int) {
				t.Helper()
				if err := s.Append("p", planEntry(id, testAt.Add(time.Duration(i)*time.Minute))); err != nil {
					t.Fatalf("append %s: %v", id, err)
				}
			}
			appendTorn := func(id string, i int) {
				t.Helper()
				tf.tearNext = true
				if err := s.Append("p", planEntry(id, testAt.Add(time.Duration(i)*time.Minute))); err == nil {
					t.Fatalf("append %s: no error from a torn write", id)
				}
			}
			appendOK("plan0", 1)
			tf.failTruncate = truncateFails
			appendTorn("torn1", 2)
			appendOK("plan2", 3) // the truncate fails again here when truncateFails
			tf.failTruncate = false
			appendTorn("torn3", 4) // cut off: must not cut into plan2's line
			appendOK("plan4", 5)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openStore(t, dir, Options{})
			defer s.Close()
			got := mustLoad(t, s, "p")
			for _, id := range []string{"plan0", "plan2", "plan4"} {
				if _, ok := got.Order(id + "-1"); !ok {
					t.Errorf("acknowledged %s lost at recovery; orders %v", id, got.Orders)
				}
			}
			for _, id := range []string{"torn1", "torn3"} {
				if _, ok := got.Order(id + "-1"); ok {
					t.Errorf("%s, whose append failed, came back", id)
				}
			}
			if got.LastPlanID != "plan4" {
				t.Errorf("last plan %q, want plan4", got.LastPlanID)
			}
		})
	}
}

// copyState copies the store's files as they are on disk now: what a
// restart would find had the process died at this moment.
func copyState(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	for _, name := range []string{FileName, JournalName} {
		data, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// TestJournalWaitsForFirstLedger: a plan journaled right after the
// policy's first ledger was saved without waiting (a household seeded at
// first start) survives a crash before that ledger's commit. Recovery
// replays entries only over a saved ledger, so the entry was dropped.
func TestJournalWaitsForFirstLedger(t *testing.T) {
	dir := t.TempDir()
	release, waiting := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s := openStore(t, dir, Options{
		beforeCommit:      func() { <-release },
		onFirstLedgerWait: func() { close(waiting) },
	})
	if err := s.Save(testLedger("p", "1"), false); err != nil { // queued: the committer holds it
		t.Fatal(err)
	}
	appended := make(chan error, 1)
	go func() { appended <- s.Append("p", planEntry("plan0", testAt.Add(time.Minute))) }()
	var crashed string
	select {
	case err := <-appended: // acknowledged before the ledger's commit
		if err != nil {
			t.Fatal(err)
		}
		crashed = copyState(t, dir)
		once.Do(func() { close(release) })
	case <-waiting:
		once.Do(func() { close(release) })
		if err := <-appended; err != nil {
			t.Fatal(err)
		}
		crashed = copyState(t, dir)
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("Append neither returned nor waited")
	}
	r := openStore(t, crashed, Options{})
	l, ok, err := r.Load("p")
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatal("no ledger after the crash, and with it the acknowledged plan lost")
	}
	if _, ok := l.Order("plan0-1"); !ok || l.LastPlanID != "plan0" {
		t.Fatalf("acknowledged plan lost at recovery: orders %v, last plan %q", l.Orders, l.LastPlanID)
	}
}
