// Package browsertest starts a real headless browser for end-to-end tests
// of rebalancerd's web pages, driven by chromedp through the DevTools
// protocol, and keeps screenshots as test artifacts.
//
// The browser is Debian's chromium (or CHROMIUM=/path/to/browser). When
// none is found the test is skipped with a message, except in CI (CI=true),
// where a missing browser fails the test: .ci/run installs it.
//
// Screenshots go to $TEST_ARTIFACTS (default: a directory under the
// system's temporary directory, named in the test log). With
// REBALANCERD_SCREENSHOTS=DIR they are also written to DIR; that is how
// the screenshots in docs/ are made:
//
//	REBALANCERD_SCREENSHOTS=$PWD/docs go test -run TestStatusPageInBrowser ./cmd/rebalancerd/
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// candidates are the browser commands looked for in PATH, in order.
var candidates = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// Find returns the browser to run: $CHROMIUM, else the first of the usual
// commands found in PATH.
func Find() (string, error) {
	if p := os.Getenv("CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("CHROMIUM=%s: %w", p, err)
		}
		return p, nil
	}
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no browser found in PATH (looked for %v; on Debian: apt-get install chromium, or set CHROMIUM)", candidates)
}

// New starts a headless browser with a fresh profile for the test and
// returns a tab's context, which ends with the test (or after timeout).
// Without a browser it skips the test, or fails it when CI=true.
func New(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	path, err := Find()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("browser test in CI: %v", err)
		}
		t.Skipf("skipping the browser test: %v", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// As root (CI containers) chromium refuses to start sandboxed.
		chromedp.NoSandbox,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
	}
	ctx, cancelTimeout := context.WithTimeout(context.Background(), timeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	tctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		cancelTimeout()
	})
	// Start the browser now, so that a browser that cannot start fails
	// here with its own error.
	if err := chromedp.Do(tctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return tctx
}

// ArtifactDir is where screenshots are kept: $TEST_ARTIFACTS, or
// rebalancerd-test-artifacts under the temporary directory.
func ArtifactDir() string {
	if d := os.Getenv("TEST_ARTIFACTS"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "rebalancerd-test-artifacts")
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Screenshot captures the whole page as PNG into the artifact directory as
// NAME.png (and into $REBALANCERD_SCREENSHOTS when set) and returns the
// artifact's path.
func Screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	file := unsafeName.ReplaceAllString(name, "_") + ".png"
	dirs := []string{ArtifactDir()}
	if d := os.Getenv("REBALANCERD_SCREENSHOTS"); d != "" {
		dirs = append(dirs, d)
	}
	var first string
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if first == "" {
			first = p
		}
		t.Logf("screenshot: %s", p)
	}
	return first
}
