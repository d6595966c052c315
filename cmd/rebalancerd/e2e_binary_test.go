package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildBinary builds rebalancerd once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	buildOnce.Do(func() {
		dir, err := osMkdirTemp()
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "rebalancerd")
		if out, err := exec.Command("go", "build", "-race", "-o", builtBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// logLines collects a process's JSON log lines.
type logLines struct {
	mu    sync.Mutex
	lines []map[string]any
	raw   bytes.Buffer
}

func (l *logLines) read(r io.Reader) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		var m map[string]any
		l.mu.Lock()
		l.raw.WriteString(s.Text() + "\n")
		if json.Unmarshal(s.Bytes(), &m) == nil {
			l.lines = append(l.lines, m)
		}
		l.mu.Unlock()
	}
}

// find returns the first line with msg whose fields include all of kv.
func (l *logLines) find(msg string, kv ...string) map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
next:
	for _, m := range l.lines {
		if m["msg"] != msg {
			continue
		}
		for i := 0; i < len(kv); i += 2 {
			if fmt.Sprint(m[kv[i]]) != kv[i+1] {
				continue next
			}
		}
		return m
	}
	return nil
}

func (l *logLines) wait(t *testing.T, msg string, kv ...string) map[string]any {
	t.Helper()
	var found map[string]any
	checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if found = l.find(msg, kv...); found == nil {
			return fmt.Errorf("no log line %q %v", msg, kv)
		}
		return nil
	})
	return found
}

// TestBinaryRun runs the real binary: it starts with an embedded NATS
// server, publishes orders when the replayed prices breach a band (seen by
// `rebalancerd tail`), reloads on SIGHUP, and stops cleanly on SIGTERM.
func TestBinaryRun(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	pol := strings.Replace(policyText("threshold", ""), "check_every: 1m", "check_every: 1s", 1)
	writeFile(t, filepath.Join(dir, "policies", "test.yaml"), pol)
	writeFile(t, filepath.Join(dir, "holdings", "test.yaml"), testHoldings)
	writeFile(t, filepath.Join(dir, "replay.yaml"), "steps:\n  - {VTI: \"100\", BND: \"100\"}\n  - {VTI: \"130\", BND: \"100\"}\n")
	port := freePort(t)
	writeFile(t, filepath.Join(dir, "rebalancerd.yaml"), fmt.Sprintf(`state_dir: state
policies:
  - {policy: policies/test.yaml, holdings: holdings/test.yaml}
feeds:
  - {name: replay, kind: replay, path: replay.yaml, interval: 1s}
nats:
  embedded: {port: %d}
http:
  listen: 127.0.0.1:0
`, port))

	cmd, logs, done := startBinary(t, bin, filepath.Join(dir, "rebalancerd.yaml"))
	started := logs.wait(t, "rebalancerd started")
	httpURL := fmt.Sprint(started["http"])

	// Orders arrive on the stream; `rebalancerd tail -all` prints them.
	logs.wait(t, "orders acknowledged by JetStream", "policy", "test-household")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tail := exec.CommandContext(ctx, bin, "tail", "-all", "-server", fmt.Sprintf("nats://127.0.0.1:%d", port))
	tailOut, err := tail.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(tailOut)
	var orders []string
	for len(orders) < 2 && sc.Scan() {
		orders = append(orders, sc.Text())
	}
	cancel()
	_ = tail.Wait()
	if len(orders) != 2 || !strings.Contains(strings.Join(orders, "\n"), "sell 5 VTI @ 130") {
		t.Errorf("tail printed %q, want the two orders (sell 5 VTI @ 130, buy 6 BND)", orders)
	}

	// SIGHUP reloads; an edit read at the reload shows in /status.
	status := func() string {
		resp, err := http.Get(httpURL + "/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st struct {
			Policies []struct {
				Version string `json:"policy_version"`
			} `json:"policies"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || len(st.Policies) != 1 {
			t.Fatalf("status: %v %+v", err, st)
		}
		return st.Policies[0].Version
	}
	v1 := status()
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	logs.wait(t, "policies reloaded", "reason", "SIGHUP")
	if v := status(); v != v1 {
		t.Errorf("version changed without an edit: %s -> %s", v1, v)
	}
	writeFile(t, filepath.Join(dir, "policies", "test.yaml"), strings.Replace(pol, "cooldown: 1m", "cooldown: 5m", 1))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if v := status(); v == v1 {
			return fmt.Errorf("still version %s", v)
		}
		return nil
	})

	// SIGTERM: a clean stop with exit code 0.
	stopBinary(t, cmd, done, 30*time.Second)
	if logs.find("stopped") == nil {
		t.Error("no 'stopped' log line")
	}
}

// startBinary runs `bin run -config config` with JSON logs collected in
// logs; done is closed when its stderr ends. The process is killed at the
// end of the test, and its log shown when the test failed.
func startBinary(t *testing.T, bin, config string) (cmd *exec.Cmd, logs *logLines, done chan struct{}) {
	t.Helper()
	cmd = exec.Command(bin, "run", "-config", config, "-log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs = &logLines{}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done = make(chan struct{})
	go func() {
		logs.read(stderr)
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.raw.String())
		}
	})
	return cmd, logs, done
}

// stopBinary sends SIGTERM and fails the test unless the process exits
// cleanly within limit.
func stopBinary(t *testing.T, cmd *exec.Cmd, done chan struct{}, limit time.Duration) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() {
		<-done
		waitErr <- cmd.Wait()
	}()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(limit):
		t.Fatalf("no exit %v after SIGTERM", limit)
	}
}

// TestBinaryFIFOPolicyReload replaces a policy file with a FIFO: the
// reloads it causes (the watcher's and SIGHUP's) fail at once instead of
// waiting for a writer, and SIGTERM still stops the daemon promptly.
func TestBinaryFIFOPolicyReload(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	polPath := filepath.Join(dir, "policies", "test.yaml")
	writeFile(t, polPath, policyText("threshold", ""))
	writeFile(t, filepath.Join(dir, "holdings", "test.yaml"), testHoldings)
	writeFile(t, filepath.Join(dir, "rebalancerd.yaml"), fmt.Sprintf(`state_dir: state
policies:
  - {policy: policies/test.yaml, holdings: holdings/test.yaml}
nats:
  embedded: {port: %d}
http:
  listen: 127.0.0.1:0
`, freePort(t)))
	cmd, logs, done := startBinary(t, bin, filepath.Join(dir, "rebalancerd.yaml"))
	logs.wait(t, "rebalancerd started")

	if err := os.Remove(polPath); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(polPath, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	failed := logs.wait(t, "reload failed; the running policies stay as they were", "reason", "SIGHUP")
	if e := fmt.Sprint(failed["error"]); !strings.Contains(e, "not a regular file (a FIFO)") {
		t.Errorf("reload error %q does not say the policy is a FIFO", e)
	}
	stopBinary(t, cmd, done, 15*time.Second)
}
