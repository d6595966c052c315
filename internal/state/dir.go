package state

import (
	"bytes"
	"container/list"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
	"github.com/rebalancerd/rebalancerd/internal/inputfile"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
)

// Dir is the state directory of rebalancerd before the single store
// file (Store): one JSON file per policy, replaced atomically (a temporary
// file renamed over the old one), and beside each an append-only journal
// (<policy>.journal, one JSON line per entry). It is kept to migrate such
// a directory into a Store (Migrate) and to compare the two in
// benchmarks.
//
// Dir is a directory of ledgers. Its methods are safe for concurrent use
// on different policies; the daemon saves each policy from one goroutine.
type Dir struct {
	dir string

	// SyncJournal makes Append fsync the journal (and, the first time, its
	// directory) before it returns. Set it before the first Append.
	SyncJournal bool

	// MaxOpenJournals bounds the journal files kept open between appends
	// (default DefaultMaxOpenJournals): the most recently used stay open,
	// so that Append on the tick-to-orders path writes without an open(2),
	// and a daemon with 100,000 policies does not hold a file per policy.
	// Set it before the first Append.
	MaxOpenJournals int

	mu       sync.Mutex
	journals map[string]*list.Element // of *openJournal, most recent first
	lru      list.List
}

// DefaultMaxOpenJournals is the default of Store.MaxOpenJournals.
const DefaultMaxOpenJournals = 256

// openJournal is a journal file kept open, in the store's recency list.
type openJournal struct {
	policy string
	f      *os.File
}

// OpenDir creates the directory if needed and returns it.
func OpenDir(dir string) (*Dir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	// A crash between creating a temporary file and renaming it leaves
	// the file behind; the snapshot it was to replace is intact.
	if stale, err := filepath.Glob(filepath.Join(dir, ".*.tmp")); err == nil {
		for _, f := range stale {
			os.Remove(f)
		}
	}
	return &Dir{dir: dir, journals: map[string]*list.Element{}}, nil
}

func (s *Dir) journalPath(policy string) string {
	return filepath.Join(s.dir, policy+".journal")
}

// Append adds an entry to the policy's journal with a single write, and
// fsyncs it when SyncJournal is set.
func (s *Dir) Append(policy string, e Entry) error {
	line, err := e.encode()
	if err != nil {
		return fmt.Errorf("state: encode journal entry of %s: %w", policy, err)
	}
	line = append(line, '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.journal(policy)
	if err != nil {
		return err
	}
	if _, err := f.Write(line); err != nil {
		return fmt.Errorf("state: append to %s: %w", f.Name(), err)
	}
	if s.SyncJournal {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("state: sync %s: %w", f.Name(), err)
		}
	}
	return nil
}

// journal returns the policy's journal open for appending, opening
// (creating) it when it is not open, and closing the least recently used
// one beyond MaxOpenJournals. Called with s.mu held.
func (s *Dir) journal(policy string) (*os.File, error) {
	if el, ok := s.journals[policy]; ok {
		s.lru.MoveToFront(el)
		return el.Value.(*openJournal).f, nil
	}
	path := s.journalPath(policy)
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if s.SyncJournal && errors.Is(statErr, fs.ErrNotExist) {
		// The file is new: make its directory entry durable too.
		if err := s.syncDir(); err != nil {
			f.Close()
			return nil, err
		}
	}
	s.journals[policy] = s.lru.PushFront(&openJournal{policy: policy, f: f})
	limit := s.MaxOpenJournals
	if limit <= 0 {
		limit = DefaultMaxOpenJournals
	}
	for s.lru.Len() > limit {
		old := s.lru.Remove(s.lru.Back()).(*openJournal)
		delete(s.journals, old.policy)
		// Appends were written (and synced when SyncJournal): closing
		// loses nothing; an error here has no write to report.
		old.f.Close()
	}
	return f, nil
}

// OpenJournals returns how many journal files are open.
func (s *Dir) OpenJournals() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len()
}

// Close closes the open journal files.
func (s *Dir) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for s.lru.Len() > 0 {
		j := s.lru.Remove(s.lru.Front()).(*openJournal)
		errs = append(errs, j.f.Close())
	}
	clear(s.journals)
	return errors.Join(errs...)
}

// replay applies the journal's entries that the snapshot does not have.
// A torn last line (a crash in the middle of the write) is skipped: its
// orders were never published, since publishing waits for the write.
func (s *Dir) replay(l *ledger.Ledger) error {
	data, err := inputfile.Read(s.journalPath(l.Policy), MaxFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	var entries []Entry
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e Entry
		// A torn last line (a crash mid-write) was never followed by a
		// publish: skip it.
		if err := decimaltext.Unmarshal(line, &e); err != nil {
			continue
		}
		entries = append(entries, e)
	}
	Replay(l, entries)
	return nil
}

// Path is the directory.
func (s *Dir) Path() string { return s.dir }

func (s *Dir) path(policy string) string {
	return filepath.Join(s.dir, policy+".json")
}

// Load returns the saved ledger of policy, or ok false when there is none.
func (s *Dir) Load(policy string) (l *ledger.Ledger, ok bool, err error) {
	path := s.path(policy)
	data, err := inputfile.Read(path, MaxFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state: %w", err)
	}
	l = new(ledger.Ledger)
	if err := json.Unmarshal(data, l); err != nil {
		return nil, false, fmt.Errorf("state: %s: %w (move the file away to start the policy from its holdings file)", path, err)
	}
	if l.Policy != policy {
		return nil, false, fmt.Errorf("state: %s holds policy %q, want %q", path, l.Policy, policy)
	}
	if l.Accounts == nil {
		l.Accounts = map[string]*ledger.Account{}
	}
	if err := s.replay(l); err != nil {
		return nil, false, err
	}
	return l, true, nil
}

// Policies lists the policies with a saved ledger.
func (s *Dir) Policies() ([]string, error) { return DirPolicies(s.dir) }

// DirPolicies lists the policies with a ledger in a directory in the
// former layout (Dir), without creating it: none when it does not exist.
func DirPolicies(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	var out []string
	for _, e := range entries {
		if n := e.Name(); !e.IsDir() && strings.HasSuffix(n, ".json") {
			out = append(out, strings.TrimSuffix(n, ".json"))
		}
	}
	return out, nil
}

// Save writes the ledger, atomically; with durable set it also fsyncs.
func (s *Dir) Save(l *ledger.Ledger, durable bool) error {
	data, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("state: encode %s: %w", l.Policy, err)
	}
	path := s.path(l.Policy)
	f, err := os.CreateTemp(s.dir, "."+l.Policy+".*.tmp")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("state: save %s: %w", path, err)
	}
	if !durable {
		return nil
	}
	if err := s.syncDir(); err != nil {
		return err
	}
	// The snapshot now holds everything the journal did: empty it. An
	// open journal stays open (Append is on the latency path); with
	// O_APPEND the next write goes to the new end. One that is not open is
	// truncated by name, and need not exist.
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.journals[l.Policy]; ok {
		if err := el.Value.(*openJournal).f.Truncate(0); err != nil {
			return fmt.Errorf("state: %w", err)
		}
		return nil
	}
	if err := os.Truncate(s.journalPath(l.Policy), 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("state: %w", err)
	}
	return nil
}

func (s *Dir) syncDir() error { return syncDir(s.dir) }
