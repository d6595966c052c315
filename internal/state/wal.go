package state

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	bolt "go.etcd.io/bbolt"

	"github.com/rebalancerd/rebalancerd/internal/inputfile"
)

// JournalName is the journal file in the state directory: the entries of
// plans about to be published, of every policy, appended one JSON line
// each (the write-ahead log of the state file).
const JournalName = "journal.log"

// DefaultMaxJournalBytes is the default of Options.MaxJournalBytes.
const DefaultMaxJournalBytes = 64 << 20

// walRecord is one line of the journal file.
type walRecord struct {
	Seq    uint64          `json:"seq"`
	Policy string          `json:"policy"`
	Entry  json.RawMessage `json:"entry"`
}

// journalFile is what the store uses of its journal file: an *os.File
// opened for appending (tests wrap it to make writes fail part way).
type journalFile interface {
	Write(b []byte) (int, error)
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
	Sync() error
	Close() error
	Name() string
}

// liveEntry is a journal entry in the journal file that no committed save
// of its policy's ledger has superseded yet.
type liveEntry struct {
	seq  uint64
	data []byte // the Entry's JSON
}

// encodeRecord returns the journal file's line for an entry.
func encodeRecord(seq uint64, policy string, entry []byte) []byte {
	name, _ := json.Marshal(policy) // a string: cannot fail
	line := make([]byte, 0, len(entry)+len(name)+40)
	line = append(line, `{"seq":`...)
	line = strconv.AppendUint(line, seq, 10)
	line = append(line, `,"policy":`...)
	line = append(line, name...)
	line = append(line, `,"entry":`...)
	line = append(line, entry...)
	return append(line, "}\n"...)
}

// readJournal returns the records of the journal file that decode, in
// order: a line torn by a crash in the middle of its write was never
// acknowledged, and is skipped.
func readJournal(path string) ([]walRecord, error) {
	data, err := inputfile.Read(path, MaxFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	var out []walRecord
	for _, line := range bytes.Split(data, []byte("\n")) {
		var r walRecord
		if len(bytes.TrimSpace(line)) == 0 || json.Unmarshal(line, &r) != nil || r.Policy == "" || !json.Valid(r.Entry) {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// recoverJournal moves the journal file's entries that no saved ledger
// supersedes into the journal bucket, then empties the file and opens it
// for appending. It sets s.seq above every sequence number in use. Called
// by OpenWith before the committer starts.
func (s *Store) recoverJournal() error {
	path := filepath.Join(s.dir, JournalName)
	recs, err := readJournal(path)
	if err != nil {
		return err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		journal, cleared := tx.Bucket(bucketJournal), tx.Bucket(bucketCleared)
		// Sequence numbers in use: of the journal bucket's keys, of the
		// saves that cleared entries, and of the file's records.
		if err := journal.ForEach(func(k, _ []byte) error {
			if p, ok := journalPolicy(k); ok {
				s.pol(p).journal++
				s.seq = max(s.seq, binary.BigEndian.Uint64(k[len(k)-8:]))
			}
			return nil
		}); err != nil {
			return err
		}
		if err := cleared.ForEach(func(_, v []byte) error {
			if len(v) == 8 {
				s.seq = max(s.seq, binary.BigEndian.Uint64(v))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, r := range recs {
			s.seq = max(s.seq, r.Seq)
			if v := cleared.Get([]byte(r.Policy)); len(v) == 8 && r.Seq <= binary.BigEndian.Uint64(v) {
				continue // in a ledger saved after it
			}
			if ledger := tx.Bucket(bucketLedgers).Get([]byte(r.Policy)); ledger == nil {
				continue // no ledger to replay it over (as Load would ignore it)
			}
			k := journalKey(r.Policy, r.Seq)
			if journal.Get(k) == nil {
				s.pol(r.Policy).journal++
			}
			if err := journal.Put(k, r.Entry); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: recover %s: %w", path, err)
	}
	// The entries are in the state file now (committed, fsynced): the
	// journal file starts empty.
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if err := f.Truncate(0); err == nil {
		err = f.Sync()
	}
	if err == nil && errors.Is(statErr, fs.ErrNotExist) {
		err = syncDir(s.dir)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("state: %s: %w", path, err)
	}
	s.wal = f
	if s.opts.wrapJournal != nil {
		s.wal = s.opts.wrapJournal(f)
	}
	return nil
}

// appendJournal writes an entry's line to the journal file and returns the
// file's generation and size after it, for syncJournal. Called with s.mu
// held.
func (s *Store) appendJournal(policy string, entry []byte) (gen uint64, end int64, err error) {
	s.walMu.Lock()
	defer s.walMu.Unlock()
	s.seq++
	line := encodeRecord(s.seq, policy, entry)
	if s.walTorn {
		// A torn line could not be cut off: try again, else start a line
		// of our own after it, from the file's real end (walSize then
		// counts the torn part, so that cutting off a later torn line
		// never cuts into an acknowledged one).
		if err := s.wal.Truncate(s.walSize); err == nil {
			s.walTorn = false
		} else {
			fi, serr := s.wal.Stat()
			if serr != nil {
				return 0, 0, fmt.Errorf("state: append to %s: a torn line could not be cut off (%w), nor the file's end found: %w", s.wal.Name(), err, serr)
			}
			s.walSize = fi.Size()
			line = append([]byte{'\n'}, line...)
		}
	}
	if _, err := s.wal.Write(line); err != nil {
		// A part of the line may be in the file: cut it off, or the next
		// line, acknowledged, would be written onto it and not decode at
		// recovery. If even that fails, the part stays: it does not
		// decode (torn) unless whole, and then it was not acknowledged but
		// replays harmlessly (its orders are never published, and a plan
		// with the same orders is journaled again); the next append then
		// starts a line of its own.
		err = fmt.Errorf("state: append to %s: %w", s.wal.Name(), err)
		if terr := s.wal.Truncate(s.walSize); terr != nil { // O_APPEND: the next write goes to the new end
			s.walTorn = true
			return 0, 0, errors.Join(err, fmt.Errorf("state: cut the torn line off %s: %w", s.wal.Name(), terr))
		}
		return 0, 0, err
	}
	s.walTorn = false
	s.walSize += int64(len(line))
	s.live[policy] = append(s.live[policy], liveEntry{seq: s.seq, data: entry})
	s.pol(policy).walSeq = s.seq
	return s.walGen, s.walSize, nil
}

// syncJournal returns once the journal file is durable up to end (of
// generation gen): one fsync serves every appender waiting meanwhile.
func (s *Store) syncJournal(gen uint64, end int64) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	s.walMu.Lock()
	if gen != s.walGen || s.synced >= end {
		// Synced by another appender, or moved into the state file by a
		// rotation (committed before the file was emptied).
		s.walMu.Unlock()
		return nil
	}
	f, size := s.wal, s.walSize
	s.walMu.Unlock()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("state: sync %s: %w", f.Name(), err)
	}
	s.walMu.Lock()
	if gen == s.walGen {
		s.synced = max(s.synced, size)
	}
	s.walMu.Unlock()
	return nil
}

// lastSeq returns the last sequence number given to a journal entry.
func (s *Store) lastSeq() uint64 {
	s.walMu.Lock()
	defer s.walMu.Unlock()
	return s.seq
}

// nextSeq returns a new sequence number for a journal entry.
func (s *Store) nextSeq() uint64 {
	s.walMu.Lock()
	defer s.walMu.Unlock()
	s.seq++
	return s.seq
}

// clearLive drops the live entries of policy up to seq, superseded by a
// committed save of its ledger. Called with s.mu held.
func (s *Store) clearLive(policy string, seq uint64) {
	s.walMu.Lock()
	defer s.walMu.Unlock()
	l := s.live[policy]
	i := 0
	for i < len(l) && l[i].seq <= seq {
		i++
	}
	if i == len(l) {
		delete(s.live, policy)
	} else {
		s.live[policy] = l[i:]
	}
}

// rotateJournal moves the live entries of the journal file into the
// journal bucket, in one committed transaction, and empties the file.
// Called by the committer between batches, with s.mu held: no append or
// save is queued meanwhile, and every save committed so far has cleared
// the entries it superseded.
func (s *Store) rotateJournal() error {
	s.walMu.Lock()
	defer s.walMu.Unlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		journal := tx.Bucket(bucketJournal)
		for policy, l := range s.live {
			for _, e := range l {
				if err := journal.Put(journalKey(policy, e.seq), e.data); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: rotate %s: %w", s.wal.Name(), err)
	}
	clear(s.live)
	if err := s.wal.Truncate(0); err != nil {
		return fmt.Errorf("state: rotate %s: %w", s.wal.Name(), err)
	}
	s.walGen++
	s.walSize, s.synced, s.walTorn = 0, 0, false
	s.stats.rotations.Add(1)
	return nil
}
