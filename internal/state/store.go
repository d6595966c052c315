package state

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
)

// FileName is the store's file in the state directory.
const FileName = "state.db"

// DefaultMaxPendingBytes is the default of Options.MaxPendingBytes.
const DefaultMaxPendingBytes = 32 << 20

// Buckets of the store file.
var (
	bucketLedgers = []byte("ledgers") // policy → ledger JSON
	bucketJournal = []byte("journal") // policy 0x00 seq(8, big endian) → Entry JSON
	bucketAux     = []byte("aux")     // document name → JSON (correlation history, phase-in)
	bucketMeta    = []byte("meta")    // "migrated " + directory → Migration JSON
	bucketCleared = []byte("cleared") // policy → seq(8): journal file entries up to it are in the saved ledger
)

// ErrClosed is returned by the methods of a closed Store.
var ErrClosed = errors.New("state: store closed")

// Store keeps every policy's ledger and other documents in one file
// (FileName in the state directory), a bbolt B+tree, and the journal of
// plans about to be published in one append-only file beside it
// (JournalName). Its methods are safe for concurrent use; no file is kept
// open per policy.
//
// Ledger and document writes are group-committed: Save and WriteJSON
// queue their change, and one goroutine commits whatever is queued in one
// transaction (one fsync of the data, one of the meta page), then the
// next batch. A caller that needs its write durable waits for the commit
// that holds it, so concurrent writers share fsyncs, and writes that need
// not be durable (a ledger seeded from its holdings file at the first
// start) do not wait at all: 100,000 households' first start takes
// commits of whatever was queued meanwhile (up to MaxPendingBytes each),
// not 100,000 fsyncs. Every commit is fsynced: a power
// loss loses at most the writes whose callers were not yet told they were
// durable, and never leaves the file half-written (bbolt's copy-on-write
// pages and two checksummed meta pages).
//
// Append writes a journal line to the journal file and fsyncs it (one
// fsync serves the appenders waiting meanwhile): on the path from a price
// tick to the published orders, an append costs one fsync of one file,
// not a B+tree commit. The file's entries are superseded by the next
// committed save of their policy's ledger (recorded in the same
// transaction); at Open the entries not superseded move into the state
// file and the journal file starts empty, and so does it while running
// once it outgrows Options.MaxJournalBytes.
//
// A Save whose ledger encodes to the bytes last saved for the policy, with
// no journal entry since, writes nothing (a durable one waits for the
// earlier write's commit).
//
// Reads (Load, Has, ReadJSON, Policies) see every write made before them:
// they wait for the commit of a pending write of the same key.
type Store struct {
	db   *bolt.DB
	dir  string
	opts Options

	mu       sync.Mutex
	cond     *sync.Cond // signalled when the queue gets work, a batch is taken, or the store closes
	open     *batch     // being filled
	inflight *batch     // being committed (nil when none)
	closing  bool
	pols     map[string]*polState
	auxLast  map[string]*batch // the last batch writing each document, until it is committed
	done     chan struct{}     // closed when the committer returns

	// The journal file (JournalName). Lock order: mu, then walMu.
	walMu   sync.Mutex
	wal     journalFile
	walGen  uint64 // incremented when the file is emptied
	walSize int64
	// walTorn: a failed write left part of a line that could not be cut
	// off; the next line starts with a newline.
	walTorn bool
	seq     uint64                 // the last sequence number given to a journal entry
	live    map[string][]liveEntry // entries in the file not yet superseded by a committed save
	// syncMu serializes the file's fsyncs; synced is how far (in walGen)
	// it is durable.
	syncMu sync.Mutex
	synced int64

	stats struct{ commits, ledgerWrites, skipped, journalWrites, rotations atomic.Int64 }
}

// Options configure a Store.
type Options struct {
	// AsyncJournal makes Append return once its entry is written to the
	// journal file, without waiting for its fsync: it survives a crash of
	// the process, not a power loss, which the orders stream's
	// reconciliation then recovers (config journal_fsync: false). By
	// default Append returns once the entry is fsynced.
	AsyncJournal bool
	// MaxJournalBytes is the size of the journal file beyond which its
	// live entries move into the state file and it starts empty (default
	// DefaultMaxJournalBytes).
	MaxJournalBytes int64
	// MaxPendingBytes bounds the bytes queued for the next commit; writers
	// wait beyond it (default DefaultMaxPendingBytes).
	MaxPendingBytes int
	// LockTimeout bounds the wait for the file's lock, held by another
	// process using the same state directory (default 5s).
	LockTimeout time.Duration

	// wrapJournal, when set (by tests), wraps the journal file.
	wrapJournal func(journalFile) journalFile
	// beforeCommit, when set (by tests), runs before each batch's commit;
	// onFirstLedgerWait before an Append waits for its policy's first
	// ledger to commit.
	beforeCommit, onFirstLedgerWait func()
}

// polState is what the store knows of one policy's saved state.
type polState struct {
	sum     [sha256.Size]byte // of the last ledger written
	hasSum  bool
	journal int    // journal entries stored or written since the last ledger write
	walSeq  uint64 // the sequence number of its last entry in the journal file
	last    *batch // the last batch writing the policy
	// stored: a ledger of the policy is committed in the state file (a
	// write of it committed, or Load found one).
	stored bool
	// failed is the error of the last batch writing the policy when it
	// failed: the next Save writes the ledger again and waits.
	failed error
}

// op is one queued change.
type op struct {
	kind   opKind
	key    string // policy or document name
	data   []byte
	seq    uint64    // opLedger: the journal entries it supersedes; opJournal: the entry's
	policy *polState // kind opLedger
	// upTo (opLedger): the policy's journal entries moved into the state
	// file with a sequence number up to upTo are deleted with the write.
	// Entries appended after the ledger was encoded have higher numbers
	// and stay, even when a rotation moved them into the state file
	// before this write commits.
	upTo uint64
}

type opKind uint8

const (
	opLedger  opKind = iota // put the ledger, delete its journal
	opJournal               // add a journal entry (migration)
	opAux                   // put a document
)

// batch is the writes committed in one transaction.
type batch struct {
	ops   []op
	bytes int
	done  chan struct{} // closed once committed or failed
	err   error         // set before done is closed
}

func newBatch() *batch { return &batch{done: make(chan struct{})} }

// wait returns the batch's result once it is committed.
func (b *batch) wait() error {
	<-b.done
	return b.err
}

// committed reports whether the batch is committed (or failed).
func (b *batch) committed() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// Open opens the store in directory dir (the file FileName in it),
// creating both when needed.
func Open(dir string) (*Store, error) { return OpenWith(dir, Options{}) }

// OpenWith is Open with options.
func OpenWith(dir string, opts Options) (*Store, error) {
	if opts.MaxPendingBytes <= 0 {
		opts.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 5 * time.Second
	}
	if opts.MaxJournalBytes <= 0 {
		opts.MaxJournalBytes = DefaultMaxJournalBytes
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, FreelistType: bolt.FreelistMapType})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("state: %s is locked by another process (another rebalancerd on the same state_dir?)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	s := &Store{db: db, dir: dir, opts: opts, open: newBatch(), pols: map[string]*polState{},
		auxLast: map[string]*batch{}, done: make(chan struct{}), live: map[string][]liveEntry{}}
	s.cond = sync.NewCond(&s.mu)
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketLedgers, bucketJournal, bucketAux, bucketMeta, bucketCleared} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = s.recoverJournal()
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	go s.commitLoop()
	return s, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Path is the store's file.
func (s *Store) Path() string { return s.db.Path() }

// pol returns the state of a policy, creating it. Called with s.mu held
// (or before the committer starts).
func (s *Store) pol(policy string) *polState {
	p, ok := s.pols[policy]
	if !ok {
		p = &polState{}
		s.pols[policy] = p
	}
	return p
}

// journalKey is the key of a journal entry: the policy, a zero byte, and a
// sequence number that orders the entries.
func journalKey(policy string, seq uint64) []byte {
	k := make([]byte, len(policy)+9)
	copy(k, policy)
	binary.BigEndian.PutUint64(k[len(policy)+1:], seq)
	return k
}

// journalPrefix is the prefix of a policy's journal keys.
func journalPrefix(policy string) []byte { return append([]byte(policy), 0) }

// journalPolicy returns the policy of a journal key.
func journalPolicy(k []byte) (string, bool) {
	if len(k) < 9 || k[len(k)-9] != 0 {
		return "", false
	}
	return string(k[:len(k)-9]), true
}

// enqueue queues an op, waiting while the queue is over its bound, and
// returns the batch that will commit it. Called with s.mu held.
func (s *Store) enqueue(o op) (*batch, error) {
	for !s.closing && s.open.bytes >= s.opts.MaxPendingBytes {
		s.cond.Wait()
	}
	if s.closing {
		return nil, ErrClosed
	}
	b := s.open
	b.ops = append(b.ops, o)
	b.bytes += len(o.data) + len(o.key)
	switch {
	case o.policy != nil:
		o.policy.last = b
	case o.kind == opAux:
		s.auxLast[o.key] = b
	}
	s.cond.Broadcast()
	return b, nil
}

// commitLoop commits the queued batches, one transaction each, until the
// store closes.
func (s *Store) commitLoop() {
	defer close(s.done)
	rotateFailed := false // retried after the next batch
	for {
		s.mu.Lock()
		for len(s.open.ops) == 0 && !s.closing && (rotateFailed || !s.rotateDue()) {
			s.cond.Wait()
		}
		if !rotateFailed && s.rotateDue() {
			// Appends go on to the file meanwhile, which only grows.
			rotateFailed = s.rotateJournal() != nil
		}
		if len(s.open.ops) == 0 {
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return
			}
			continue
		}
		b := s.open
		s.open, s.inflight = newBatch(), b
		s.cond.Broadcast() // writers waiting for room
		s.mu.Unlock()

		if s.opts.beforeCommit != nil {
			s.opts.beforeCommit()
		}
		err := s.db.Update(func(tx *bolt.Tx) error { return apply(tx, b.ops) })
		if err != nil {
			err = fmt.Errorf("state: commit to %s: %w", s.db.Path(), err)
		}
		s.stats.commits.Add(1)

		s.mu.Lock()
		s.inflight = nil
		rotateFailed = false
		for _, o := range b.ops {
			switch {
			case o.policy != nil && err != nil:
				o.policy.failed, o.policy.hasSum = err, false
			case o.policy != nil:
				// Its journal entries up to o.seq are in the saved
				// ledger now.
				s.clearLive(o.key, o.seq)
				s.stats.ledgerWrites.Add(1)
				o.policy.stored = true
				if o.policy.last == b {
					o.policy.failed = nil
				}
			case o.kind == opAux && s.auxLast[o.key] == b:
				delete(s.auxLast, o.key)
			}
		}
		b.err = err
		close(b.done)
		s.mu.Unlock()
	}
}

// rotateDue reports whether the journal file has outgrown
// Options.MaxJournalBytes.
func (s *Store) rotateDue() bool {
	s.walMu.Lock()
	defer s.walMu.Unlock()
	return s.walSize > s.opts.MaxJournalBytes
}

// apply writes a batch's ops in order.
func apply(tx *bolt.Tx, ops []op) error {
	ledgers, journal, aux, cleared := tx.Bucket(bucketLedgers), tx.Bucket(bucketJournal), tx.Bucket(bucketAux), tx.Bucket(bucketCleared)
	for _, o := range ops {
		switch o.kind {
		case opLedger:
			if err := ledgers.Put([]byte(o.key), o.data); err != nil {
				return err
			}
			if err := deleteJournal(journal, o.key, o.upTo); err != nil {
				return err
			}
			if o.seq > 0 {
				var v [8]byte
				binary.BigEndian.PutUint64(v[:], o.seq)
				if err := cleared.Put([]byte(o.key), v[:]); err != nil {
					return err
				}
			}
		case opJournal:
			if err := journal.Put(journalKey(o.key, o.seq), o.data); err != nil {
				return err
			}
		case opAux:
			if err := aux.Put([]byte(o.key), o.data); err != nil {
				return err
			}
		}
	}
	return nil
}

// deleteJournal deletes the policy's journal entries in b with a sequence
// number up to upTo (keys sort by sequence number within a policy).
func deleteJournal(b *bolt.Bucket, policy string, upTo uint64) error {
	prefix := journalPrefix(policy)
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if binary.BigEndian.Uint64(k[len(k)-8:]) > upTo {
			return nil
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Save writes the ledger, replacing the saved one and its journal; with
// durable set it returns once the write is committed (fsynced).
func (s *Store) Save(l *ledger.Ledger, durable bool) error {
	data, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("state: encode %s: %w", l.Policy, err)
	}
	sum := sha256.Sum256(data)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrClosed
	}
	p := s.pol(l.Policy)
	if p.failed != nil {
		durable = true // the last write failed: say whether this one does
	}
	b := p.last
	if p.hasSum && p.sum == sum && p.journal == 0 {
		s.stats.skipped.Add(1)
	} else {
		if b, err = s.enqueue(op{kind: opLedger, key: l.Policy, data: data, seq: p.walSeq, policy: p, upTo: s.lastSeq()}); err != nil {
			s.mu.Unlock()
			return err
		}
		p.sum, p.hasSum, p.journal = sum, true, 0
	}
	s.mu.Unlock()
	if !durable || b == nil {
		return nil
	}
	return b.wait()
}

// Append adds an entry to the policy's journal: a line of the journal
// file, fsynced before Append returns unless Options.AsyncJournal (one
// fsync serves the appenders waiting meanwhile).
func (s *Store) Append(policy string, e Entry) error {
	line, err := e.encode()
	if err != nil {
		return fmt.Errorf("state: encode journal entry of %s: %w", policy, err)
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrClosed
	}
	if p := s.pol(policy); !p.stored && p.last != nil && !p.last.committed() {
		// The policy's first ledger is queued, not committed (a seed saved
		// without waiting): recovery replays journal entries only over a
		// saved ledger, so an entry written now would be lost if the
		// process died before that commit. Wait for it (once per policy).
		first := p.last
		s.mu.Unlock()
		if s.opts.onFirstLedgerWait != nil {
			s.opts.onFirstLedgerWait()
		}
		if err := first.wait(); err != nil {
			return fmt.Errorf("state: journal entry of %s: its first ledger was not saved: %w", policy, err)
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			return ErrClosed
		}
	}
	gen, end, err := s.appendJournal(policy, line)
	if err == nil {
		s.pol(policy).journal++
		s.stats.journalWrites.Add(1)
		if end > s.opts.MaxJournalBytes {
			s.cond.Broadcast() // the committer rotates the file
		}
	}
	s.mu.Unlock()
	if err != nil || s.opts.AsyncJournal {
		return err
	}
	return s.syncJournal(gen, end)
}

// WriteJSON replaces the document name with v, durably.
func (s *Store) WriteJSON(name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("state: encode %s: %w", name, err)
	}
	s.mu.Lock()
	b, err := s.enqueue(op{kind: opAux, key: name, data: data})
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return b.wait()
}

// ReadJSON decodes the document name into v; ok is false when there is
// none.
func (s *Store) ReadJSON(name string, v any) (ok bool, err error) {
	s.mu.Lock()
	b := s.auxLast[name]
	s.mu.Unlock()
	if b != nil {
		b.wait() // a failed write leaves the document as it was
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketAux).Get([]byte(name))
		if data == nil {
			return nil
		}
		ok = true
		return decimaltext.Unmarshal(data, v)
	})
	if err != nil {
		return false, fmt.Errorf("state: %s in %s: %w", name, s.db.Path(), err)
	}
	return ok, nil
}

// waitPolicy waits for the commit of the last write of policy, if any.
func (s *Store) waitPolicy(policy string) {
	s.mu.Lock()
	var b *batch
	if p, ok := s.pols[policy]; ok {
		b = p.last
	}
	s.mu.Unlock()
	if b != nil {
		b.wait() // a failed write leaves the saved state as it was
	}
}

// Load returns the saved ledger of policy with its journal replayed, or ok
// false when there is none.
func (s *Store) Load(policy string) (l *ledger.Ledger, ok bool, err error) {
	s.waitPolicy(policy)
	// The journal file's entries first: a rotation that moves them into
	// the bucket meanwhile leaves them in both, once by sequence number.
	s.walMu.Lock()
	live := slices.Clone(s.live[policy])
	s.walMu.Unlock()
	err = s.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketLedgers).Get([]byte(policy))
		if data == nil {
			return nil
		}
		l = new(ledger.Ledger)
		if err := json.Unmarshal(data, l); err != nil {
			return fmt.Errorf("ledger of %s: %w", policy, err)
		}
		if l.Policy != policy {
			return fmt.Errorf("the ledger saved as %s holds policy %q", policy, l.Policy)
		}
		prefix := journalPrefix(policy)
		c := tx.Bucket(bucketJournal).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			live = append(live, liveEntry{seq: binary.BigEndian.Uint64(k[len(k)-8:]), data: v})
		}
		slices.SortStableFunc(live, func(a, b liveEntry) int { return cmp.Compare(a.seq, b.seq) })
		live = slices.CompactFunc(live, func(a, b liveEntry) bool { return a.seq == b.seq })
		entries := make([]Entry, len(live))
		for i, e := range live {
			if err := decimaltext.Unmarshal(e.data, &entries[i]); err != nil {
				return fmt.Errorf("journal entry of %s: %w", policy, err)
			}
		}
		Replay(l, entries)
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("state: %s: %w", s.db.Path(), err)
	}
	if l == nil {
		return nil, false, nil
	}
	if l.Accounts == nil {
		l.Accounts = map[string]*ledger.Account{}
	}
	s.mu.Lock()
	s.pol(policy).stored = true
	s.mu.Unlock()
	return l, true, nil
}

// Has reports whether the store holds a ledger of policy.
func (s *Store) Has(policy string) (ok bool, err error) {
	s.waitPolicy(policy)
	err = s.db.View(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketLedgers).Get([]byte(policy)) != nil
		return nil
	})
	return ok, err
}

// Policies lists the policies with a saved ledger, in order.
func (s *Store) Policies() ([]string, error) {
	if err := s.Sync(); err != nil {
		return nil, err
	}
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLedgers).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("state: %s: %w", s.db.Path(), err)
	}
	return out, nil
}

// Sync waits until every ledger and document write queued before it is
// committed, and returns the error of the last commit it waited for.
// (Journal entries are durable when Append returns, unless
// Options.AsyncJournal; Close fsyncs them then.)
func (s *Store) Sync() error {
	s.mu.Lock()
	b := s.inflight
	if len(s.open.ops) > 0 {
		b = s.open
	}
	s.mu.Unlock()
	if b == nil {
		return nil
	}
	return b.wait()
}

// Stats counts the store's work since it was opened.
type Stats struct {
	// Commits is the number of transactions committed (or failed).
	Commits int64
	// LedgerWrites counts the ledgers committed, JournalWrites the
	// journal entries written.
	LedgerWrites, JournalWrites int64
	// SkippedSaves counts the saves of a ledger unchanged since its last
	// save, which wrote nothing.
	SkippedSaves int64
	// Rotations counts the journal file's rotations.
	Rotations int64
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.stats.commits.Load(), LedgerWrites: s.stats.ledgerWrites.Load(),
		JournalWrites: s.stats.journalWrites.Load(), SkippedSaves: s.stats.skipped.Load(),
		Rotations: s.stats.rotations.Load()}
}

// Close commits what is queued and closes the file.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.closing = true
	s.cond.Broadcast()
	s.mu.Unlock()
	<-s.done
	var errs []error
	if s.opts.AsyncJournal {
		errs = append(errs, s.wal.Sync())
	}
	errs = append(errs, s.wal.Close())
	if err := s.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("state: close %s: %w", s.db.Path(), err))
	}
	return errors.Join(errs...)
}
