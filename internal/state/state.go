// Package state persists each policy's ledger in the daemon's state
// directory, one JSON file per policy, replaced atomically (write a
// temporary file, rename it over the old one).
//
// Save has two strengths. A fast save (durable false) survives a crash of
// the process: the rename is atomic and the data sits in the kernel's page
// cache. A durable save also fsyncs the file and the directory, so that it
// survives a power loss. The daemon journals planned orders with a fast
// save before it publishes them (a crash then re-publishes them under the
// same ids, which JetStream deduplicates) and makes the save durable once
// JetStream has acknowledged them.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/rebalancerd/rebalancerd/internal/ledger"
)

// Store is a directory of ledgers. Its methods are safe for concurrent use
// on different policies; the daemon saves each policy from one goroutine.
type Store struct {
	dir string
}

// Open creates the directory if needed and returns the store.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return &Store{dir: dir}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

func (s *Store) path(policy string) string {
	return filepath.Join(s.dir, policy+".json")
}

// Load returns the saved ledger of policy, or ok false when there is none.
func (s *Store) Load(policy string) (l *ledger.Ledger, ok bool, err error) {
	path := s.path(policy)
	data, err := os.ReadFile(path)
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
	return l, true, nil
}

// Policies lists the policies with a saved ledger.
func (s *Store) Policies() ([]string, error) {
	entries, err := os.ReadDir(s.dir)
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
func (s *Store) Save(l *ledger.Ledger, durable bool) error {
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
	if durable {
		return s.syncDir()
	}
	return nil
}

func (s *Store) syncDir() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("state: sync %s: %w", s.dir, err)
	}
	return nil
}
