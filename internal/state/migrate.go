package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
	"github.com/rebalancerd/rebalancerd/internal/inputfile"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
)

// MigratedSuffix is added to the name of a directory once Migrate has
// imported it.
const MigratedSuffix = ".migrated"

// Migration says what Migrate imported from one directory.
type Migration struct {
	// Dir is the directory imported and RenamedTo what it was renamed to
	// (both empty when there was nothing to import).
	Dir       string `json:"dir"`
	RenamedTo string `json:"renamed_to"`
	// Fingerprint identifies the directory's files (names, sizes, times).
	Fingerprint string    `json:"fingerprint"`
	At          time.Time `json:"at"`
	// Ledgers and Entries count the policies' ledgers and journal entries
	// imported, Documents the other documents; Orphans the journals
	// without a ledger, which were not imported (the former layout
	// ignored them too).
	Ledgers   int `json:"ledgers"`
	Entries   int `json:"entries"`
	Documents int `json:"documents"`
	Orphans   int `json:"orphans,omitempty"`
	// Resumed is set when the import had been committed by an earlier
	// start that stopped before renaming the directory.
	Resumed bool `json:"resumed,omitempty"`
}

// migrateChunk bounds the bytes of one migration transaction.
const migrateChunk = 16 << 20

// Migrate imports a directory in the former layout into the store, once:
// with ledgers set, dir holds policies' ledgers (<policy>.json) and
// journals (<policy>.journal) as Dir wrote them; otherwise it holds other
// documents (<name>.json, as WriteJSON wrote them). After the import has
// committed, dir is renamed with MigratedSuffix (the files are kept). A
// crash before the rename runs the import again at the next start, which
// rewrites the same keys; once the import has committed, a record in the
// store (with the directory's fingerprint) makes the next start only
// finish the rename. A directory found again after that with other files
// in it is refused: it would overwrite newer state.
//
// A ledger that cannot be read fails the migration with its file named,
// as it failed the start of former versions. A directory that does not
// exist imports nothing.
func (s *Store) Migrate(dir string, ledgers bool) (Migration, error) {
	m := Migration{Dir: dir}
	names, fp, err := fingerprint(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return Migration{}, nil
	}
	if err != nil {
		return m, err
	}
	m.Fingerprint = fp
	var done Migration
	found, err := s.meta("migrated "+dir, &done)
	if err != nil {
		return m, err
	}
	if found {
		if done.Fingerprint != fp {
			return m, fmt.Errorf("state: %s was imported into %s on %s, and is back with other files: "+
				"move it away (its state would replace newer state), or move %s away to import it again",
				dir, s.Path(), done.At.Format(time.RFC3339), s.Path())
		}
		done.Resumed = true
		done.RenamedTo, err = renameMigrated(dir)
		return done, err
	}
	if err := s.Sync(); err != nil {
		return m, err
	}
	if ledgers {
		err = s.importLedgers(dir, names, &m)
	} else {
		err = s.importDocuments(dir, names, &m)
	}
	if err != nil {
		return m, err
	}
	m.At = time.Now().UTC()
	rec, err := json.Marshal(m)
	if err != nil {
		return m, fmt.Errorf("state: %w", err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte("migrated "+dir), rec)
	})
	if err != nil {
		return m, fmt.Errorf("state: record migration of %s: %w", dir, err)
	}
	m.RenamedTo, err = renameMigrated(dir)
	return m, err
}

// meta decodes the meta record key into v.
func (s *Store) meta(key string, v any) (found bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketMeta).Get([]byte(key))
		if data == nil {
			return nil
		}
		found = true
		return json.Unmarshal(data, v)
	})
	if err != nil {
		return false, fmt.Errorf("state: %s: %w", s.Path(), err)
	}
	return found, nil
}

// fingerprint lists the regular files of dir whose names do not start with
// a dot, in order, and hashes their names, sizes and modification times.
func fingerprint(dir string) ([]string, string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, "", err
		}
		return nil, "", fmt.Errorf("state: %w", err)
	}
	h := sha256.New()
	var names []string
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, "", fmt.Errorf("state: %w", err)
		}
		names = append(names, e.Name())
		fmt.Fprintf(h, "%s\x00%d\x00%d\n", e.Name(), info.Size(), info.ModTime().UnixNano())
	}
	sort.Strings(names)
	return names, hex.EncodeToString(h.Sum(nil)), nil
}

// renameMigrated renames dir with MigratedSuffix (a number after it when
// that name is taken) and fsyncs its parent.
func renameMigrated(dir string) (string, error) {
	to := dir + MigratedSuffix
	for i := 2; ; i++ {
		if _, err := os.Lstat(to); errors.Is(err, fs.ErrNotExist) {
			break
		}
		to = fmt.Sprintf("%s%s.%d", dir, MigratedSuffix, i)
	}
	if err := os.Rename(dir, to); err != nil {
		return "", fmt.Errorf("state: %w", err)
	}
	return to, syncDir(filepath.Dir(dir))
}

// importLedgers imports the ledgers and journals of a former state
// directory, in transactions of at most migrateChunk bytes.
func (s *Store) importLedgers(dir string, names []string, m *Migration) error {
	has := map[string]bool{}
	for _, n := range names {
		has[n] = true
	}
	w := importer{s: s, dir: dir}
	for _, n := range names {
		if policy, ok := strings.CutSuffix(n, ".journal"); ok && !has[policy+".json"] {
			m.Orphans++
			continue
		}
		policy, path, data, err := readFormer(dir, n)
		if err != nil {
			return err
		}
		if data == nil {
			continue
		}
		var l ledger.Ledger
		if err := json.Unmarshal(data, &l); err != nil {
			return fmt.Errorf("state: %s: %w (move the file away to start the policy from its holdings file)", path, err)
		}
		if l.Policy != policy {
			return fmt.Errorf("state: %s holds policy %q, want %q", path, l.Policy, policy)
		}
		entries, err := journalLines(filepath.Join(dir, policy+".journal"))
		if err != nil {
			return err
		}
		// A re-run after a crash replaces what an earlier run imported.
		w.add(op{kind: opLedger, key: policy, data: data, upTo: math.MaxUint64})
		for _, e := range entries {
			w.add(op{kind: opJournal, key: policy, data: e, seq: s.nextSeq()})
		}
		m.Ledgers++
		m.Entries += len(entries)
		s.mu.Lock()
		p := s.pol(policy)
		p.hasSum, p.journal = false, len(entries)
		s.mu.Unlock()
		if err := w.flush(migrateChunk); err != nil {
			return err
		}
	}
	return w.flush(0)
}

// readFormer reads the file n of dir when its name ends in .json, and
// returns its name without the extension, its path and its content (nil
// for other files).
func readFormer(dir, n string) (name, path string, data []byte, err error) {
	name, ok := strings.CutSuffix(n, ".json")
	if !ok {
		return "", "", nil, nil
	}
	path = filepath.Join(dir, n)
	if data, err = inputfile.Read(path, MaxFileSize); err != nil {
		return "", "", nil, fmt.Errorf("state: %w", err)
	}
	if data == nil {
		data = []byte{}
	}
	return name, path, data, nil
}

// journalLines returns the entries of a former journal file that its
// reader would replay: the lines that decode, a torn one skipped.
func journalLines(path string) ([][]byte, error) {
	data, err := inputfile.Read(path, MaxFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	var out [][]byte
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e Entry
		if decimaltext.Unmarshal(line, &e) != nil {
			continue // torn by a crash mid-write: never published
		}
		out = append(out, line)
	}
	return out, nil
}

// importDocuments imports the JSON documents of a directory.
func (s *Store) importDocuments(dir string, names []string, m *Migration) error {
	w := importer{s: s, dir: dir}
	for _, n := range names {
		name, path, data, err := readFormer(dir, n)
		if err != nil {
			return err
		}
		if data == nil {
			continue
		}
		if !json.Valid(data) {
			return fmt.Errorf("state: %s: not valid JSON (move the file away to start without it)", path)
		}
		w.add(op{kind: opAux, key: name, data: data})
		m.Documents++
		if err := w.flush(migrateChunk); err != nil {
			return err
		}
	}
	return w.flush(0)
}

// importer writes a migration's ops in transactions of bounded size.
type importer struct {
	s    *Store
	dir  string
	ops  []op
	size int
}

func (w *importer) add(o op) {
	w.ops = append(w.ops, o)
	w.size += len(o.key) + len(o.data)
}

// flush commits the ops gathered once they reach atLeast bytes (and are any).
func (w *importer) flush(atLeast int) error {
	if len(w.ops) == 0 || w.size < atLeast {
		return nil
	}
	err := w.s.db.Update(func(tx *bolt.Tx) error { return apply(tx, w.ops) })
	if err != nil {
		return fmt.Errorf("state: import %s: %w", w.dir, err)
	}
	w.ops, w.size = w.ops[:0], 0
	return nil
}
