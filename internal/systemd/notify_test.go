package systemd

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// listen plays systemd: a unixgram socket in a temporary directory, named by
// NOTIFY_SOCKET for the rest of the test.
func listen(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

// recv returns the next datagram, failing the test if none comes in time.
func recv(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	msg, err := tryRecv(conn, 5*time.Second)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return msg
}

func tryRecv(conn *net.UnixConn, wait time.Duration) (string, error) {
	if err := conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return "", err
	}
	buf := make([]byte, 4096)
	n, _, err := conn.ReadFromUnix(buf)
	return string(buf[:n]), err
}

func TestMessages(t *testing.T) {
	conn := listen(t)
	n := New(zap.NewNop())

	n.Ready("running 2 policies")
	if got, want := recv(t, conn), "READY=1\nSTATUS=running 2 policies"; got != want {
		t.Errorf("Ready = %q, want %q", got, want)
	}

	before := monotonicUsec(t, daemon.SdNotifyMonotonicUsec())
	n.Reloading()
	got := recv(t, conn)
	after := monotonicUsec(t, daemon.SdNotifyMonotonicUsec())
	m := regexp.MustCompile(`^RELOADING=1\n(MONOTONIC_USEC=[0-9]+)$`).FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("Reloading = %q, want RELOADING=1 and MONOTONIC_USEC in one message", got)
	}
	if usec := monotonicUsec(t, m[1]); usec < before || usec > after {
		t.Errorf("MONOTONIC_USEC = %d, want within [%d, %d]", usec, before, after)
	}

	n.Reloaded("reload failed: policy.yaml:3: bad\nsecond line")
	if got, want := recv(t, conn), "READY=1\nSTATUS=reload failed: policy.yaml:3: bad second line"; got != want {
		t.Errorf("Reloaded = %q, want %q", got, want)
	}

	n.Status("blocked: stale prices")
	if got, want := recv(t, conn), "STATUS=blocked: stale prices"; got != want {
		t.Errorf("Status = %q, want %q", got, want)
	}

	n.Ready("")
	if got, want := recv(t, conn), "READY=1"; got != want {
		t.Errorf("Ready without status = %q, want %q", got, want)
	}

	n.Stopping()
	if got, want := recv(t, conn), "STOPPING=1"; got != want {
		t.Errorf("Stopping = %q, want %q", got, want)
	}
}

func monotonicUsec(t *testing.T, field string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(field, "MONOTONIC_USEC=")), 10, 64)
	if err != nil {
		t.Fatalf("MONOTONIC_USEC field %q: %v", field, err)
	}
	return v
}

func TestWithoutSocketDoesNothing(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "1000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	core, logs := observer.New(zapcore.DebugLevel)
	n := New(zap.New(core))
	n.Ready("x")
	n.Reloading()
	n.Stopping()
	returned := make(chan struct{})
	go func() {
		n.RunWatchdog(context.Background(), func() bool { return true })
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("RunWatchdog without NOTIFY_SOCKET did not return")
	}
	if logs.FilterLevelExact(zapcore.WarnLevel).Len() != 0 {
		t.Errorf("warnings without NOTIFY_SOCKET: %v", logs.All())
	}
}

func TestSendFailureIsLogged(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "absent.sock"))
	core, logs := observer.New(zapcore.DebugLevel)
	New(zap.New(core)).Ready("x")
	warned := logs.FilterMessage("sd_notify failed").All()
	if len(warned) != 1 || warned[0].Level != zapcore.WarnLevel || warned[0].ContextMap()["message"] != "READY=1\nSTATUS=x" {
		t.Errorf("failed send: logs = %v, want one warning naming the message", logs.All())
	}
}

// TestWatchdog runs the loop with a 100ms watchdog (pings every 50ms) and a
// health script: healthy for calls 1-2, unhealthy for 3-5, healthy after.
func TestWatchdog(t *testing.T) {
	conn := listen(t)
	const interval = 100 * time.Millisecond
	t.Setenv("WATCHDOG_USEC", strconv.FormatInt(interval.Microseconds(), 10))
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	core, logs := observer.New(zapcore.DebugLevel)
	n := New(zap.New(core))

	var calls atomic.Int64
	healthy := func() bool {
		c := calls.Add(1)
		return c <= 2 || c >= 6
	}
	ctx, cancel := context.WithCancel(context.Background())
	returned := make(chan struct{})
	go func() {
		n.RunWatchdog(ctx, healthy)
		close(returned)
	}()

	var at [3]time.Time
	for i := range at {
		if got := recv(t, conn); got != "WATCHDOG=1" {
			t.Fatalf("ping %d = %q, want WATCHDOG=1", i+1, got)
		}
		at[i] = time.Now()
	}
	// The pings of calls 3, 4 and 5 were skipped, with a warning each.
	if c := calls.Load(); c < 6 {
		t.Fatalf("third ping after %d health checks, want it from the sixth", c)
	}
	if skipped := logs.FilterMessageSnippet("skipping ping").FilterLevelExact(zapcore.WarnLevel).Len(); skipped != 3 {
		t.Errorf("%d skipped-ping warnings, want 3", skipped)
	}
	// Tickers only run late: four periods separate checks 2 and 6, so at
	// least three (allowing for a late second ping) separate the pings.
	if gap := at[2].Sub(at[1]); gap < 3*interval/2 {
		t.Errorf("pings 2 and 3 are %v apart, want at least %v: unhealthy checks did not skip", gap, 3*interval/2)
	}

	cancel()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("RunWatchdog did not return after ctx ended")
	}
	// Drain what was sent before it returned; then nothing more comes.
	for {
		if _, err := tryRecv(conn, 10*time.Millisecond); err != nil {
			break
		}
	}
	if msg, err := tryRecv(conn, 2*interval); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("after return: got %q, %v; want no more pings", msg, err)
	}
}

func TestWatchdogDisabled(t *testing.T) {
	for name, env := range map[string]struct{ usec, pid string }{
		"no WATCHDOG_USEC":      {"", ""},
		"another process's pid": {"100000", strconv.Itoa(os.Getpid() + 1)},
		"bad WATCHDOG_USEC":     {"soon", ""},
	} {
		t.Run(name, func(t *testing.T) {
			conn := listen(t)
			t.Setenv("WATCHDOG_USEC", env.usec)
			t.Setenv("WATCHDOG_PID", env.pid)
			returned := make(chan struct{})
			go func() {
				New(nil).RunWatchdog(context.Background(), func() bool { return true })
				close(returned)
			}()
			select {
			case <-returned:
			case <-time.After(5 * time.Second):
				t.Fatal("RunWatchdog without a watchdog for this process did not return")
			}
			if msg, err := tryRecv(conn, 10*time.Millisecond); err == nil {
				t.Errorf("sent %q without a watchdog", msg)
			}
		})
	}
}
