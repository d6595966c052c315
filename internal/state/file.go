package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
	"github.com/rebalancerd/rebalancerd/internal/inputfile"
)

// WriteJSON replaces path with v encoded as JSON, durably: a temporary
// file is written and fsynced, renamed over path, and the directory is
// fsynced.
func WriteJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("state: encode %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("state: write %s: %w", path, err)
	}
	return syncDir(dir)
}

// ReadJSON decodes path into v; ok is false when the file does not exist.
func ReadJSON(path string, v any) (ok bool, err error) {
	data, err := inputfile.Read(path, MaxFileSize)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("state: %w", err)
	}
	if err := decimaltext.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("state: %s: %w", path, err)
	}
	return true, nil
}

// RemoveDurably removes path (if it exists) and fsyncs its directory.
func RemoveDurably(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("state: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("state: sync %s: %w", dir, err)
	}
	return nil
}

// MaxFileSize is the limit for the state files read back (ledgers and
// journals): far above what a week of orders takes, it keeps a damaged or
// replaced file from exhausting memory.
const MaxFileSize = 256 << 20
