package watch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

const (
	// never is a recheck interval that does not fire during a test, so that
	// every notification there comes from a file event.
	never = time.Hour
	// quick is a debounce short enough to keep the tests fast.
	quick = 20 * time.Millisecond
	// deadline bounds every wait for a condition.
	deadline = 10 * time.Second
)

// waitFor polls cond until it holds, failing the test after deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// calls records when notify was called.
type calls struct {
	mu    sync.Mutex
	times []time.Time
}

func (c *calls) notify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.times = append(c.times, time.Now())
}

func (c *calls) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.times)
}

func (c *calls) all() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.times)
}

// waitMore waits until notify has been called more than n times.
func (c *calls) waitMore(t *testing.T, n int, what string) {
	t.Helper()
	waitFor(t, what, func() bool { return c.count() > n })
}

// run is a Watcher running in the background.
type run struct {
	w     *Watcher
	calls *calls
	logs  *observer.ObservedLogs
	stop  context.CancelFunc
	done  chan struct{}
	err   error // Run's result, once done is closed
}

// start builds a Watcher on paths and runs it until the test ends.
func start(t *testing.T, paths []string, debounce, recheck time.Duration) *run {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	w, err := New(paths, debounce, recheck, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{w: w, calls: &calls{}, logs: logs, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = w.Run(ctx, r.calls.notify)
	}()
	t.Cleanup(func() { r.shutdown(t) })
	return r
}

// shutdown cancels Run and waits for it to return.
func (r *run) shutdown(t *testing.T) {
	t.Helper()
	r.stop()
	select {
	case <-r.done:
	case <-time.After(deadline):
		t.Fatal("Run did not return after cancel")
	}
	if r.err != nil {
		t.Errorf("Run: %v", r.err)
	}
}

// logged counts the log entries with message msg.
func (r *run) logged(msg string) int {
	return r.logs.FilterMessage(msg).Len()
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func rename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

// watching reports whether the kernel watch list holds dir.
func watching(w *Watcher, dir string) bool {
	return slices.Contains(w.fsw.WatchList(), dir)
}

// startOnFile writes a policy file in a new directory and watches it.
func startOnFile(t *testing.T) (dir, file string, r *run) {
	t.Helper()
	dir = t.TempDir()
	file = filepath.Join(dir, "policy.yaml")
	write(t, file, "v1")
	return dir, file, start(t, []string{file}, quick, never)
}

func TestWriteInPlace(t *testing.T) {
	_, file, r := startOnFile(t)
	for i := range 3 {
		write(t, file, "v"+strconv.Itoa(i+2))
		r.calls.waitMore(t, i, "notify after write "+strconv.Itoa(i+1))
	}
}

// TestSaveByRename saves the way vim and most editors do: write a new file,
// rename it over the old one. A watch on the file itself would see the first
// save only.
func TestSaveByRename(t *testing.T) {
	dir, file, r := startOnFile(t)
	for i := range 3 {
		tmp := filepath.Join(dir, ".policy.yaml.tmp")
		write(t, tmp, "v"+strconv.Itoa(i+2))
		rename(t, tmp, file)
		r.calls.waitMore(t, i, "notify after save "+strconv.Itoa(i+1))
	}
}

// kubeSwap updates a Kubernetes ConfigMap volume the way the kubelet does:
// a new timestamped directory, a new ..data_tmp symlink renamed over ..data,
// then the old directory removed.
func kubeSwap(t *testing.T, dir, old, next, content string) {
	t.Helper()
	mkdir(t, filepath.Join(dir, next))
	write(t, filepath.Join(dir, next, "policy.yaml"), content)
	symlink(t, next, filepath.Join(dir, "..data_tmp"))
	rename(t, filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data"))
	if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
		t.Fatal(err)
	}
}

func TestKubernetesConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	mkdir(t, filepath.Join(dir, "..2026_11_01"))
	write(t, filepath.Join(dir, "..2026_11_01", "policy.yaml"), "v1")
	symlink(t, "..2026_11_01", filepath.Join(dir, "..data"))
	file := filepath.Join(dir, "policy.yaml")
	symlink(t, filepath.Join("..data", "policy.yaml"), file)

	r := start(t, []string{file}, quick, never)
	kubeSwap(t, dir, "..2026_11_01", "..2026_11_02", "v2")
	r.calls.waitMore(t, 0, "notify after the first swap")
	// The watch on the resolved directory moves to the new one.
	waitFor(t, "watch on the new data directory", func() bool {
		return watching(r.w, filepath.Join(dir, "..2026_11_02"))
	})
	n := r.calls.count()
	kubeSwap(t, dir, "..2026_11_02", "..2026_11_03", "v3")
	r.calls.waitMore(t, n, "notify after the second swap")
	if got, err := os.ReadFile(file); err != nil || string(got) != "v3" {
		t.Fatalf("policy.yaml reads %q, %v after the swaps", got, err)
	}
}

// TestSymlinkTargetEdited edits, in place, the target of a symlinked file
// in another directory: only the watch on the target's directory sees it.
func TestSymlinkTargetEdited(t *testing.T) {
	repo, etc := t.TempDir(), t.TempDir()
	target := filepath.Join(repo, "policy.yaml")
	write(t, target, "v1")
	link := filepath.Join(etc, "policy.yaml")
	symlink(t, target, link)
	r := start(t, []string{link}, quick, never)
	write(t, target, "v2")
	r.calls.waitMore(t, 0, "notify after editing the symlink's target")
}

// TestSymlinkedDir watches a directory through a symlink and through its
// real path (one watch), then re-points the symlink: the watch follows.
func TestSymlinkedDir(t *testing.T) {
	base := t.TempDir()
	v1, v2 := filepath.Join(base, "v1"), filepath.Join(base, "v2")
	mkdir(t, v1)
	mkdir(t, v2)
	write(t, filepath.Join(v1, "a.yaml"), "v1")
	link := filepath.Join(base, "policies")
	symlink(t, "v1", link)
	// base holds v1 and v2 itself: watch the link from another directory so
	// that events in v2 can reach only through the followed link.
	other := t.TempDir()
	link2 := filepath.Join(other, "policies")
	symlink(t, link, link2)

	r := start(t, []string{link2, v1, filepath.Join(v1, "a.yaml")}, quick, never)
	if got, want := r.w.wanted(), []string{realPath(t, v1), realPath(t, other)}; !slices.Equal(got, want) {
		t.Fatalf("watching %q, want %q", got, want)
	}
	write(t, filepath.Join(v1, "a.yaml"), "v1b")
	r.calls.waitMore(t, 0, "notify after a write in the linked directory")

	n := r.calls.count()
	tmp := filepath.Join(other, "policies.tmp")
	symlink(t, v2, tmp)
	rename(t, tmp, link2)
	r.calls.waitMore(t, n, "notify after re-pointing the link")
	waitFor(t, "watch on the new target", func() bool { return watching(r.w, realPath(t, v2)) })
	n = r.calls.count()
	write(t, filepath.Join(v2, "a.yaml"), "v2")
	r.calls.waitMore(t, n, "notify after a write in the new target")
}

func realPath(t *testing.T, p string) string {
	t.Helper()
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return real
}

// TestDebounce writes 20 times, each well within the debounce interval of
// the last: notify comes once, debounce after the last write.
func TestDebounce(t *testing.T) {
	const debounce = 150 * time.Millisecond
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	write(t, file, "v0")
	r := start(t, []string{dir}, debounce, never)

	var last time.Time
	for i := range 20 {
		last = time.Now()
		write(t, file, "v"+strconv.Itoa(i+1))
		time.Sleep(2 * time.Millisecond) // spread the burst; not a synchronization
	}
	r.calls.waitMore(t, 0, "notify after the burst")
	first := r.calls.all()[0]
	if wait := first.Sub(last); wait < debounce {
		t.Errorf("notify came %v after the last write began, want at least the debounce of %v", wait, debounce)
	}
	// A last write, once the burst's notification is in: its own notification
	// comes after every one the burst caused, since Run handles events in
	// order.
	last = time.Now()
	write(t, file, "final")
	waitFor(t, "a notify after the last write", func() bool {
		times := r.calls.all()
		return times[len(times)-1].After(last)
	})
	// 2 expected: one per quiet period. Without debouncing there would be
	// one per event, 20 or more.
	if n := r.calls.count(); n > 3 {
		t.Errorf("20 writes in a burst and one more write gave %d notifications, want 2 (3 at most)", n)
	}
}

func TestRecheck(t *testing.T) {
	dir := t.TempDir()
	r := start(t, []string{dir}, never, 20*time.Millisecond)
	r.calls.waitMore(t, 2, "3 rechecks without any change")
}

func TestRunStops(t *testing.T) {
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	w, err := New([]string{dir}, quick, 10*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &calls{}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, c.notify) }()
	c.waitMore(t, 0, "a recheck")
	if err := w.Run(ctx, c.notify); err == nil {
		t.Error("a second Run did not fail")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(deadline):
		t.Fatal("Run did not return after cancel")
	}
	n := c.count()
	if err := w.fsw.Add(dir); !errors.Is(err, fsnotify.ErrClosed) {
		t.Errorf("fsnotify watcher not closed after Run: Add gave %v", err)
	}
	// Run's goroutine and fsnotify's reader are gone.
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
	write(t, filepath.Join(dir, "late.yaml"), "x")
	if got := c.count(); got != n {
		t.Errorf("notify called %d times after Run returned", got-n)
	}
	if err := w.Close(); err != nil {
		t.Errorf("Close after Run: %v", err)
	}
}

// TestDirRemovedAndRecreated removes the watched directory: the failure to
// watch it again is logged once, not at every recheck, and the watch comes
// back when the directory does.
func TestDirRemovedAndRecreated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policies")
	mkdir(t, dir)
	r := start(t, []string{dir}, quick, 20*time.Millisecond)
	const lost = "cannot watch directory; retrying at every recheck"
	const back = "watching directory again"

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the lost watch to be logged", func() bool { return r.logged(lost) > 0 })
	n := r.calls.count()
	r.calls.waitMore(t, n+2, "3 more rechecks")
	if got := r.logged(lost); got != 1 {
		t.Errorf("lost watch logged %d times, want once", got)
	}
	if watching(r.w, dir) {
		t.Fatal("still watching a removed directory")
	}
	if isClosed(r.done) {
		t.Fatal("Run returned")
	}

	mkdir(t, dir)
	waitFor(t, "the watch to come back", func() bool { return watching(r.w, dir) && r.logged(back) == 1 })
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// TestOverflow floods the kernel queue before Run reads it: the overflow is
// logged, counts as a change, and Run goes on.
func TestOverflow(t *testing.T) {
	raw, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events")
	if err != nil {
		t.Skipf("no inotify queue limit to overflow: %v", err)
	}
	limit, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || limit > 1<<17 {
		t.Skipf("inotify queue limit %q is too large to overflow in a test", raw)
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	write(t, a, "")
	write(t, b, "")
	core, logs := observer.New(zapcore.DebugLevel)
	w, err := New([]string{dir}, quick, never, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	// Alternate between two files so that the kernel cannot merge
	// consecutive identical events; fsnotify's reader holds at most 4096.
	for i := range limit + 4096 + 1000 {
		if err := os.Chmod([]string{a, b}[i%2], 0o600|os.FileMode(i%2)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &calls{}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, c.notify) }()
	// Chmod events alone never notify: this one comes from the overflow.
	c.waitMore(t, 0, "notify after the overflow")
	errLogs := logs.FilterMessage("file watch error").All()
	if len(errLogs) == 0 || !strings.Contains(errLogs[0].ContextMap()["error"].(string), "overflow") {
		t.Fatalf("overflow not logged: %v", errLogs)
	}
	n := c.count()
	write(t, a, "changed")
	c.waitMore(t, n, "notify after a write following the overflow")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name              string
		paths             []string
		debounce, recheck time.Duration
		want              string
	}{
		{"no paths", nil, quick, never, "no paths"},
		{"missing path", []string{filepath.Join(dir, "nope.yaml")}, quick, never, "nope.yaml"},
		{"zero debounce", []string{dir}, 0, never, "must be positive"},
		{"zero recheck", []string{dir}, quick, 0, "must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := New(tc.paths, tc.debounce, tc.recheck, nil)
			if err == nil {
				w.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// TestDedupe gives one directory several ways: it is watched once.
func TestDedupe(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), "")
	write(t, filepath.Join(dir, "b.yaml"), "")
	w, err := New([]string{dir, filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml"), dir + "/."}, quick, never, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if got := w.fsw.WatchList(); len(got) != 1 || got[0] != realPath(t, dir) {
		t.Errorf("watching %q, want only %s", got, dir)
	}
}
