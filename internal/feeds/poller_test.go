package feeds

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

var t0 = time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC)

// fastConfig polls every few milliseconds with tiny backoffs, on clock.
func fastConfig(clock func() time.Time) PollConfig {
	cfg := DefaultPollConfig()
	cfg.Interval = 2 * time.Millisecond
	cfg.Timeout = 5 * time.Second
	cfg.BackoffBase = time.Millisecond
	cfg.BackoffMax = 4 * time.Millisecond
	cfg.Clock = clock
	return cfg
}

// funcFetcher is a Fetcher made of a function, counting its calls.
type funcFetcher struct {
	calls atomic.Int64
	fetch func(ctx context.Context) ([]Quote, error)
}

func (f *funcFetcher) Fetch(ctx context.Context) ([]Quote, error) {
	f.calls.Add(1)
	return f.fetch(ctx)
}

// flaky returns a server that fails its first n requests with 503 and
// then serves a price; hits counts the requests.
func flaky(t *testing.T, n int64, hits *atomic.Int64) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) <= n {
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"data": {"VTI": {"price": 285.12, "time": "2026-11-20T21:00:00Z"}}}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func vtiFetcher(t *testing.T, url string) *HTTPFetcher {
	t.Helper()
	f, err := NewHTTPFetcher(HTTPConfig{URL: url,
		Fields:     map[string]string{"VTI": "data.VTI.price"},
		TimeFields: map[string]string{"VTI": "data.VTI.time"}})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestPollerRetries checks that a poll retries after failures, with
// full-jitter backoff bounds, and succeeds within one poll.
func TestPollerRetries(t *testing.T) {
	var hits atomic.Int64
	srv := flaky(t, 2, &hits)
	clock := newFakeClock(t0)
	cfg := fastConfig(clock.Now)
	cfg.Interval = time.Hour // one poll only
	cfg.Retries = 2
	var mu sync.Mutex
	var bounds []int64
	cfg.Rand = func(n int64) int64 {
		mu.Lock()
		defer mu.Unlock()
		bounds = append(bounds, n)
		return n - 1
	}
	core, logs := observer.New(zapcore.InfoLevel)
	p := NewPoller("quotes", "http", vtiFetcher(t, srv.URL), cfg, zap.New(core))
	var got collector
	stop := runSource(t, p, got.sink)
	checkFor(t, 5*time.Second, "a batch", func() bool { return got.len() == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	wantQuotes(t, got.batch(0), "VTI 285.12 2026-11-20T21:00:00Z")
	if src := got.batch(0)[0].Source; src != "quotes" {
		t.Errorf("Source = %q, want the poller's name", src)
	}
	if n := hits.Load(); n != 3 {
		t.Errorf("server saw %d requests, want 3", n)
	}
	mu.Lock()
	if want := []int64{int64(time.Millisecond), int64(2 * time.Millisecond)}; !slices.Equal(bounds, want) {
		t.Errorf("jitter bounds %v, want %v", bounds, want)
	}
	mu.Unlock()
	st := p.Status()
	if st.Polls != 1 || st.Failures != 0 || st.ConsecutiveFailures != 0 || !st.LastSuccess.Equal(t0) || st.BreakerOpen {
		t.Errorf("status %+v", st)
	}
	if st.LastError != "" {
		t.Errorf("LastError = %q after a successful poll", st.LastError)
	}
	attempts := logs.FilterMessage("feed attempt failed").All()
	if len(attempts) != 2 {
		t.Fatalf("logged %d failed attempts, want 2", len(attempts))
	}
	for i, e := range attempts {
		f := e.ContextMap()
		if f["feed"] != "quotes" || f["attempt"] != int64(i+1) || !strings.Contains(e.ContextMap()["error"].(string), "503 Service Unavailable") {
			t.Errorf("log entry %d: %v", i, f)
		}
	}
}

// TestPollerFailedPoll checks a poll whose every attempt fails.
func TestPollerFailedPoll(t *testing.T) {
	var hits atomic.Int64
	srv := flaky(t, 1000, &hits)
	clock := newFakeClock(t0)
	cfg := fastConfig(clock.Now)
	cfg.Interval = time.Hour // one poll only
	cfg.Retries = 1
	p := NewPoller("quotes", "http", vtiFetcher(t, srv.URL), cfg, nil)
	var got collector
	stop := runSource(t, p, got.sink)
	checkFor(t, 5*time.Second, "a failed poll", func() bool { return p.Status().Failures == 1 })
	_ = stop()
	st := p.Status()
	if got.len() != 0 {
		t.Errorf("sink got %d batches from a failed poll", got.len())
	}
	if st.Polls != 1 || st.ConsecutiveFailures != 1 || !st.LastErrorAt.Equal(t0) || st.BreakerOpen ||
		!strings.Contains(st.LastError, "GET "+srv.URL+": 503 Service Unavailable") {
		t.Errorf("status %+v", st)
	}
	if n := hits.Load(); n != 2 {
		t.Errorf("server saw %d requests for a poll of 2 attempts", n)
	}
}

// TestPollerTimeout checks that an attempt is abandoned after Timeout.
func TestPollerTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	cfg := fastConfig(time.Now)
	cfg.Timeout = 50 * time.Millisecond
	cfg.Retries = 0
	cfg.Interval = time.Hour
	p := NewPoller("slow", "http", vtiFetcher(t, srv.URL), cfg, nil)
	start := time.Now()
	stop := runSource(t, p, func([]Quote) { t.Error("sink called") })
	checkFor(t, 5*time.Second, "a failed poll", func() bool { return p.Status().Failures == 1 })
	if el := time.Since(start); el < cfg.Timeout {
		t.Errorf("poll failed after %s, before the %s timeout", el, cfg.Timeout)
	}
	st := p.Status()
	if !strings.Contains(st.LastError, "timed out after 50ms") || !strings.Contains(st.LastError, "context deadline exceeded") {
		t.Errorf("LastError = %q", st.LastError)
	}
	if err := stop(); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}

// TestPollerStopsWhileWaiting checks that cancelling the context ends Run
// during a fetch and during a backoff wait, without counting a failure.
func TestPollerStopsWhileWaiting(t *testing.T) {
	for _, tt := range []struct {
		name   string
		fetch  func(ctx context.Context) ([]Quote, error)
		reach  int64 // fetch calls that show Run is waiting
		config func(*PollConfig)
	}{
		{"in fetch", func(ctx context.Context) ([]Quote, error) { <-ctx.Done(); return nil, ctx.Err() }, 1,
			func(c *PollConfig) { c.Timeout = time.Hour }},
		{"in backoff", func(ctx context.Context) ([]Quote, error) { return nil, errors.New("down") }, 1,
			func(c *PollConfig) { c.BackoffBase, c.BackoffMax, c.Retries = time.Hour, time.Hour, 3 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &funcFetcher{fetch: tt.fetch}
			cfg := fastConfig(time.Now)
			tt.config(&cfg)
			cfg.Rand = func(n int64) int64 { return n - 1 }
			p := NewPoller("f", "test", f, cfg, nil)
			stop := runSource(t, p, func([]Quote) {})
			checkFor(t, 5*time.Second, "the first fetch", func() bool { return f.calls.Load() == tt.reach })
			start := time.Now()
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if el := time.Since(start); el > time.Second {
				t.Errorf("Run took %s to return after cancel", el)
			}
			if st := p.Status(); st.Polls != 0 || st.Failures != 0 || st.LastError != "" {
				t.Errorf("an interrupted poll was counted: %+v", st)
			}
		})
	}
}

// TestPollerBreaker walks the breaker through open, skipping, a failed
// half-open trial, and a successful one that closes it.
func TestPollerBreaker(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	f := &funcFetcher{fetch: func(ctx context.Context) ([]Quote, error) {
		if failing.Load() {
			return nil, errors.New("upstream down")
		}
		return []Quote{{Symbol: "BTC", Price: dec("67187.33"), At: t0}}, nil
	}}
	clock := newFakeClock(t0)
	cfg := fastConfig(clock.Now)
	cfg.Retries = 1
	cfg.BreakerFailures = 3
	cfg.BreakerCooldown = time.Hour
	core, logs := observer.New(zapcore.InfoLevel)
	p := NewPoller("cg", "coingecko", f, cfg, zap.New(core))
	var got collector
	stop := runSource(t, p, got.sink)

	// Three failed polls of two attempts each open the breaker.
	checkFor(t, 5*time.Second, "the breaker to open", func() bool { return p.Status().BreakerOpen })
	st := p.Status()
	if st.Polls != 3 || st.Failures != 3 || st.ConsecutiveFailures != 3 || !st.BreakerUntil.Equal(t0.Add(time.Hour)) {
		t.Errorf("status when opened: %+v", st)
	}
	if n := f.calls.Load(); n != 6 {
		t.Errorf("%d fetches before the breaker opened, want 6", n)
	}
	// While open, polls are skipped: no fetch.
	checkFor(t, 5*time.Second, "skipped polls", func() bool { return p.Status().Skipped >= 5 })
	if n := f.calls.Load(); n != 6 {
		t.Errorf("%d fetches while open, want still 6", n)
	}
	// After the cooldown, one trial of a single attempt; it fails and
	// re-opens the breaker.
	clock.Advance(time.Hour)
	checkFor(t, 5*time.Second, "the failed trial", func() bool { return p.Status().Polls == 4 })
	st = p.Status()
	if !st.BreakerOpen || st.ConsecutiveFailures != 4 || !st.BreakerUntil.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("status after a failed trial: %+v", st)
	}
	if n := f.calls.Load(); n != 7 {
		t.Errorf("%d fetches after the trial, want 7 (one attempt)", n)
	}
	// The source recovers, but the breaker waits for its cooldown.
	failing.Store(false)
	skipped := p.Status().Skipped
	checkFor(t, 5*time.Second, "more skipped polls", func() bool { return p.Status().Skipped >= skipped+3 })
	if n := f.calls.Load(); n != 7 || got.len() != 0 {
		t.Errorf("%d fetches and %d batches while re-opened", n, got.len())
	}
	clock.Advance(time.Hour)
	checkFor(t, 5*time.Second, "a batch after the trial", func() bool { return got.len() >= 1 })
	st = p.Status()
	if st.BreakerOpen || st.ConsecutiveFailures != 0 || !st.LastSuccess.Equal(t0.Add(2*time.Hour)) || !st.BreakerUntil.IsZero() {
		t.Errorf("status after a good trial: %+v", st)
	}
	// Closed: polls go on at every interval.
	checkFor(t, 5*time.Second, "polls after closing", func() bool { return got.len() >= 3 })
	_ = stop()

	var transitions []string
	for _, e := range logs.FilterLevelExact(zapcore.WarnLevel).All() {
		if strings.HasPrefix(e.Message, "feed breaker") {
			transitions = append(transitions, e.Message)
		}
	}
	want := []string{
		"feed breaker open: skipping polls",
		"feed breaker half-open: trial poll",
		"feed breaker open: skipping polls",
		"feed breaker half-open: trial poll",
		"feed breaker closed: poll succeeded",
	}
	if !slices.Equal(transitions, want) {
		t.Errorf("breaker logs:\n  %s\nwant:\n  %s", strings.Join(transitions, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestPollerBadBatches checks that a batch with an invalid quote, or none,
// fails the poll.
func TestPollerBadBatches(t *testing.T) {
	clock := newFakeClock(t0)
	tests := []struct {
		name   string
		quotes []Quote
		want   string
		reason string // counted in Status.Rejected
	}{
		{"empty", nil, "no quotes", ""},
		{"zero price", []Quote{{Symbol: "VTI", Price: dec("0"), At: t0}}, "VTI: price must be positive, got 0", RejectPrice},
		{"no time", []Quote{{Symbol: "VTI", Price: dec("1")}}, "VTI: quote has no time", RejectNoTime},
		{"no symbol", []Quote{{Price: dec("1"), At: t0}}, "symbol is empty", RejectSymbol},
		{"future", []Quote{{Symbol: "VTI", Price: dec("1"), At: t0.Add(MaxClockSkew + time.Second)}}, "VTI: quote time 2026-11-20T21:01:01Z is 1m1s ahead of the clock", RejectFuture},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &funcFetcher{fetch: func(context.Context) ([]Quote, error) { return tt.quotes, nil }}
			cfg := fastConfig(clock.Now)
			cfg.Retries = 0
			p := NewPoller("f", "test", f, cfg, nil)
			stop := runSource(t, p, func([]Quote) { t.Error("sink called") })
			checkFor(t, 5*time.Second, "a failed poll", func() bool { return p.Status().Failures >= 1 })
			_ = stop()
			st := p.Status()
			if !strings.Contains(st.LastError, tt.want) {
				t.Errorf("LastError = %q, want %q", st.LastError, tt.want)
			}
			if tt.reason == "" && len(st.Rejected) > 0 || tt.reason != "" && st.Rejected[tt.reason] != st.Failures {
				t.Errorf("Rejected = %v after %d failures, want them all as %q", st.Rejected, st.Failures, tt.reason)
			}
		})
	}
}

// TestPollerFile polls a prices file that changes between polls.
func TestPollerFile(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/prices.csv"
	write := func(s string) {
		t.Helper()
		if err := writeFileAtomic(path, s); err != nil {
			t.Fatal(err)
		}
	}
	write("VTI,285.12,2026-11-20T21:00:00Z\n")
	f, err := NewFileFetcher(path)
	if err != nil {
		t.Fatal(err)
	}
	p := NewPoller("eod", "file", f, fastConfig(newFakeClock(t0).Now), nil)
	var got collector
	stop := runSource(t, p, got.sink)
	checkFor(t, 5*time.Second, "the first batch", func() bool { return got.len() >= 1 })
	write("VTI,286.00,2026-11-20T21:00:30Z\n")
	checkFor(t, 5*time.Second, "the new price", func() bool {
		n := got.len()
		return n > 0 && got.batch(n - 1)[0].Price.Equal(dec("286"))
	})
	_ = stop()
	wantQuotes(t, got.batch(0), "VTI 285.12 2026-11-20T21:00:00Z")
}

func TestPollConfigValidate(t *testing.T) {
	if err := DefaultPollConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		name   string
		change func(*PollConfig)
		want   string
	}{
		{"interval", func(c *PollConfig) { c.Interval = 0 }, "poll interval must be positive"},
		{"timeout", func(c *PollConfig) { c.Timeout = -time.Second }, "poll timeout must be positive"},
		{"retries", func(c *PollConfig) { c.Retries = -1 }, "retries must not be negative"},
		{"base", func(c *PollConfig) { c.BackoffBase = 0 }, "backoff base must be positive"},
		{"max", func(c *PollConfig) { c.BackoffMax = c.BackoffBase / 2 }, "backoff max 250ms is less than the backoff base 500ms"},
		{"breaker failures", func(c *PollConfig) { c.BreakerFailures = 0 }, "breaker failures must be at least 1"},
		{"cooldown", func(c *PollConfig) { c.BreakerCooldown = 0 }, "breaker cooldown must be positive"},
		{"skew", func(c *PollConfig) { c.MaxSkew = -1 }, "max skew must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultPollConfig()
			tt.change(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
			p := NewPoller("f", "test", &funcFetcher{}, cfg, nil)
			if err := p.Run(context.Background(), func([]Quote) {}); err == nil || !strings.Contains(err.Error(), "feed f: "+tt.want) {
				t.Errorf("Run = %v, want the validation error", err)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	cfg := PollConfig{BackoffBase: 100 * time.Millisecond, BackoffMax: 1500 * time.Millisecond}
	want := []time.Duration{100, 200, 400, 800, 1500, 1500}
	for n, w := range want {
		if got := cfg.backoff(n); got != w*time.Millisecond {
			t.Errorf("backoff(%d) = %s, want %s", n, got, w*time.Millisecond)
		}
	}
	// No overflow for a large retry count.
	cfg = PollConfig{BackoffBase: time.Hour, BackoffMax: 1<<63 - 1}
	if got := cfg.backoff(200); got != cfg.BackoffMax {
		t.Errorf("backoff(200) = %s, want the max", got)
	}
}
