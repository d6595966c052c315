package inputfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readWithin runs Read and fails the test when it does not return within
// the deadline (a read that blocks on a FIFO or streams /dev/zero).
func readWithin(t *testing.T, path string, limit int64) ([]byte, error) {
	t.Helper()
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		d, err := Read(path, limit)
		done <- result{d, err}
	}()
	select {
	case r := <-done:
		return r.data, r.err
	case <-time.After(5 * time.Second):
		t.Fatalf("Read(%s) did not return within 5s", path)
		return nil, nil
	}
}

func TestReadRegular(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	want := []byte("policy: p\n")
	if err := os.WriteFile(path, want, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Read(path, int64(len(want)))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Read at the limit = %q, %v; want %q", got, err, want)
	}
	// A symlink to a regular file is followed.
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if got, err := Read(link, 100); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Read(symlink) = %q, %v", got, err)
	}
	_, err = Read(path, int64(len(want))-1)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Read one byte over the limit: %v, want ErrTooLarge naming the file", err)
	}
	if _, err := Read(filepath.Join(dir, "missing"), 10); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestReadRefusesDevZeroSymlink(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	link := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.Symlink("/dev/zero", link); err != nil {
		t.Fatal(err)
	}
	_, err := readWithin(t, link, 1<<20)
	if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "character device") {
		t.Fatalf("Read(symlink to /dev/zero) = %v, want ErrNotRegular (a character device)", err)
	}
}

func TestReadRefusesSparseGiB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "holdings.yaml")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	start := time.Now()
	_, err = readWithin(t, path, 1<<20)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Read(1 GiB sparse file) = %v, want ErrTooLarge", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing a 1 GiB file took %v", d)
	}
}

func TestReadRefusesFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	_, err := readWithin(t, path, 1<<20)
	if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "FIFO") {
		t.Fatalf("Read(FIFO) = %v, want ErrNotRegular (a FIFO)", err)
	}
}

func TestReadRefusesDirectory(t *testing.T) {
	dir := t.TempDir()
	_, err := readWithin(t, dir, 1<<20)
	if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("Read(directory) = %v, want ErrNotRegular (a directory)", err)
	}
}
