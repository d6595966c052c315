// Package watch tells the daemon when the files it was started from may have
// changed, so that it can reload its policies without a restart.
//
// It watches directories, never files: an editor that saves by writing a
// temporary file and renaming it over the original leaves a watch on the file
// itself pointing at a deleted inode, and a Kubernetes ConfigMap volume swaps
// a "..data" symlink so that no event ever names the file. Any change in a
// watched directory calls notify once the directory has been quiet for the
// debounce interval, and a periodic recheck calls it regardless, as a
// fallback for what inotify cannot see (a change behind a chain of symlinks,
// a network file system, a lost event).
//
// A notification means only that something may have changed: it may be
// spurious (a file next to the policy changed, an editor touched a swap
// file). The caller re-reads its files through their symlinks, compares a
// content hash with what it runs, and reloads only on a difference. This
// package neither reads nor parses the files.
package watch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// Watcher calls notify, debounced, after anything changes in the watched
// directories, and also every Recheck as a fallback. Build it with New and
// run it with Run.
type Watcher struct {
	fsw      *fsnotify.Watcher
	targets  []target
	debounce time.Duration
	recheck  time.Duration
	log      *zap.Logger
	started  atomic.Bool

	// Owned by New, then by Run's goroutine.
	watched map[string]bool // directories this Watcher has added
	lost    map[string]bool // directories it wants but cannot watch (logged once)
}

// target is one path given to New.
type target struct {
	path  string // absolute and clean, as given (not resolved)
	isDir bool
}

// New watches each of paths: a directory directly, a file through its
// parent directory. Symlinks are resolved: a symlinked directory is watched
// at its target and through the directory holding the link (which sees the
// link re-pointed), and a symlinked file through the directory of its target
// as well as that of the link. Directories are watched once however many
// paths lead to them, and the set is worked out again whenever notify is
// due, so that it follows symlink swaps.
//
// Every path must exist when New is called: that is how New knows a file
// from a directory. debounce and recheck must be positive. log may be nil.
// New fails if a directory cannot be watched (for example when the inotify
// watch limit is reached); once running, such failures are logged and
// retried at every recheck instead.
func New(paths []string, debounce, recheck time.Duration, log *zap.Logger) (*Watcher, error) {
	if len(paths) == 0 {
		return nil, errors.New("watch: no paths to watch")
	}
	if debounce <= 0 || recheck <= 0 {
		return nil, fmt.Errorf("watch: debounce (%v) and recheck (%v) must be positive", debounce, recheck)
	}
	if log == nil {
		log = zap.NewNop()
	}
	w := &Watcher{
		debounce: debounce,
		recheck:  recheck,
		log:      log,
		watched:  map[string]bool{},
		lost:     map[string]bool{},
	}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("watch %s: %w", p, err)
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return nil, fmt.Errorf("watch: %w", err)
		}
		w.targets = append(w.targets, target{path: abs, isDir: fi.IsDir()})
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	w.fsw = fsw
	if err := w.sync(); err != nil {
		fsw.Close()
		return nil, err
	}
	return w, nil
}

// Run watches until ctx ends, then closes the watcher and returns nil. It
// calls notify from its own goroutine, never concurrently: debounce after
// the last of a burst of changes, and every recheck. It returns an error only
// if Run was already called or the watcher was closed under it. fsnotify
// errors are logged, not fatal; after a lost-event overflow notify is called
// as after a change.
func (w *Watcher) Run(ctx context.Context, notify func()) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("watch: Run called twice")
	}
	defer w.fsw.Close()
	tick := time.NewTicker(w.recheck)
	defer tick.Stop()
	quiet := time.NewTimer(w.debounce) // fires debounce after the last event
	quiet.Stop()
	defer quiet.Stop()
	fire := func() {
		_ = w.sync() // failures are logged and retried at the next recheck
		notify()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return errors.New("watch: the file watcher was closed")
			}
			if ev.Op == fsnotify.Chmod {
				continue // metadata only: the content is what matters
			}
			w.log.Debug("file change", zap.String("path", ev.Name), zap.Stringer("op", ev.Op))
			quiet.Reset(w.debounce)
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return errors.New("watch: the file watcher was closed")
			}
			w.log.Warn("file watch error", zap.Error(err))
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				quiet.Reset(w.debounce) // events were lost: assume a change
			}
		case <-quiet.C:
			fire()
		case <-tick.C:
			fire()
		}
	}
}

// Close releases the watcher. Run closes it on return; Close is for a
// Watcher that is never run, and is safe to call more than once.
func (w *Watcher) Close() error {
	return w.fsw.Close()
}

// wanted returns the directories to watch now, resolved and without
// duplicates, in the order of the targets.
func (w *Watcher) wanted() []string {
	var dirs []string
	seen := map[string]bool{}
	add := func(dir string) {
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			dir = real
		}
		if !seen[dir] {
			seen[dir] = true
			dirs = append(dirs, dir)
		}
	}
	for _, t := range w.targets {
		if !t.isDir {
			add(filepath.Dir(t.path))
			if real, err := filepath.EvalSymlinks(t.path); err == nil {
				add(filepath.Dir(real))
			}
			continue
		}
		add(t.path)
		if fi, err := os.Lstat(t.path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			add(filepath.Dir(t.path))
		}
	}
	return dirs
}

// sync makes the set of watched directories what wanted says: it drops
// directories no longer wanted and (re)adds wanted ones that are not
// watched, including those whose watch the kernel dropped because they were
// removed. It logs changes of state once and returns the failures.
func (w *Watcher) sync() error {
	want := w.wanted()
	have := map[string]bool{}
	for _, p := range w.fsw.WatchList() {
		have[p] = true
	}
	wanted := map[string]bool{}
	for _, p := range want {
		wanted[p] = true
	}
	for p := range w.watched {
		if wanted[p] {
			continue
		}
		if have[p] {
			if err := w.fsw.Remove(p); err != nil && !errors.Is(err, fsnotify.ErrNonExistentWatch) {
				w.log.Warn("cannot stop watching directory", zap.String("dir", p), zap.Error(err))
			}
		}
		delete(w.watched, p)
		w.log.Debug("stopped watching directory", zap.String("dir", p))
	}
	for p := range w.lost {
		if !wanted[p] {
			delete(w.lost, p)
		}
	}
	var errs []error
	for _, p := range want {
		if have[p] {
			w.watched[p] = true
			continue
		}
		if err := w.fsw.Add(p); err != nil {
			errs = append(errs, fmt.Errorf("watch %s: %w", p, err))
			if !w.lost[p] {
				w.lost[p] = true
				w.log.Warn("cannot watch directory; retrying at every recheck", zap.String("dir", p), zap.Error(err))
			}
			continue
		}
		switch {
		case w.lost[p]:
			delete(w.lost, p)
			w.log.Info("watching directory again", zap.String("dir", p))
		case w.watched[p]:
			w.log.Info("directory was replaced; watching it again", zap.String("dir", p))
		default:
			w.log.Debug("watching directory", zap.String("dir", p))
		}
		w.watched[p] = true
	}
	return errors.Join(errs...)
}
