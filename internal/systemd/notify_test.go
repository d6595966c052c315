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
// health script: healthy for checks 1-2, unhealthy for 3-5, healthy after.
// The test answers each health check itself, so it knows which check each
// ping belongs to without timing anything: the loop checks, pings (a
// unixgram send is in the socket's queue when it returns), then waits for
// the next tick, so when check k+1 is asked the ping of check k, if any, is
// already queued, and none can be sent while the test holds check k+1.
func TestWatchdog(t *testing.T) {
	conn := listen(t)
	const interval = 100 * time.Millisecond
	t.Setenv("WATCHDOG_USEC", strconv.FormatInt(interval.Microseconds(), 10))
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	core, logs := observer.New(zapcore.DebugLevel)
	n := New(zap.New(core))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	asked := make(chan chan bool)
	healthy := func() bool {
		answer := make(chan bool)
		select {
		case asked <- answer:
		case <-ctx.Done():
			return false
		}
		select {
		case ok := <-answer:
			return ok
		case <-ctx.Done():
			return false
		}
	}
	returned := make(chan struct{})
	go func() {
		n.RunWatchdog(ctx, healthy)
		close(returned)
	}()

	script := func(check int) bool { return check <= 2 || check >= 6 }
	// ask waits for the loop's next health check.
	ask := func(check int) chan bool {
		t.Helper()
		select {
		case answer := <-asked:
			return answer
		case <-time.After(5 * time.Second):
			t.Fatalf("health check %d not made", check)
			return nil
		}
	}
	// queued returns the notifications sent so far and not yet read.
	queued := func() []string {
		var msgs []string
		for {
			msg, err := tryRecv(conn, 10*time.Millisecond)
			if err != nil {
				return msgs
			}
			msgs = append(msgs, msg)
		}
	}
	const checks = 7
	for check := 1; check <= checks+1; check++ {
		answer := ask(check)
		// The loop is held in check: everything check-1 sent is queued.
		got := queued()
		if check == 1 {
			if len(got) != 0 {
				t.Errorf("sent %q before the first health check", got)
			}
		} else if want := script(check - 1); want && (len(got) != 1 || got[0] != "WATCHDOG=1") {
			t.Errorf("healthy check %d sent %q, want one WATCHDOG=1", check-1, got)
		} else if !want && len(got) != 0 {
			t.Errorf("unhealthy check %d sent %q, want no ping", check-1, got)
		}
		if check > checks {
			break // leave the loop held in this check until ctx ends
		}
		answer <- script(check)
	}
	// Checks 3, 4 and 5 skipped their ping, with a warning each.
	if skipped := logs.FilterMessageSnippet("skipping ping").FilterLevelExact(zapcore.WarnLevel).Len(); skipped != 3 {
		t.Errorf("%d skipped-ping warnings, want 3", skipped)
	}

	cancel()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("RunWatchdog did not return after ctx ended")
	}
	// Drain what was sent before it returned; then nothing more comes.
	queued()
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
