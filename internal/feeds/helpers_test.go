package feeds

import (
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// checkFor polls cond until it holds or the deadline passes.
func checkFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// collector is a sink that records every batch.
type collector struct {
	mu      sync.Mutex
	batches [][]Quote
}

func (c *collector) sink(qs []Quote) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batches = append(c.batches, slices.Clone(qs))
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.batches)
}

func (c *collector) batch(i int) []Quote {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.batches[i]
}

// runSource runs s until the returned stop is called; stop cancels it,
// waits for Run to return and returns Run's error.
func runSource(t testing.TB, s Source, sink func([]Quote)) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, sink) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Errorf("%s: Run did not return within 5s of cancel", s.Name())
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// readTestdata returns the content of testdata/name.
func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// quoteStrings formats quotes as "SYM price at" for comparisons.
func quoteStrings(qs []Quote) []string {
	out := make([]string, len(qs))
	for i, q := range qs {
		out[i] = q.Symbol + " " + q.Price.String() + " " + q.At.Format(time.RFC3339Nano)
	}
	return out
}

// wantQuotes checks quotes against "SYM price at" strings, in order.
func wantQuotes(t testing.TB, got []Quote, want ...string) {
	t.Helper()
	if g := quoteStrings(got); !slices.Equal(g, want) {
		t.Errorf("quotes:\n  %s\nwant:\n  %s", strings.Join(g, "\n  "), strings.Join(want, "\n  "))
	}
}

// writeFileAtomic replaces the file at path with s by a rename, as careful
// writers do, so that no reader sees it half-written.
func writeFileAtomic(path, s string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// mustFetch returns f's quotes, failing the test on an error.
func mustFetch(t testing.TB, f Fetcher) []Quote {
	t.Helper()
	got, err := f.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return got
}
