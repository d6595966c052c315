package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/rebalancerd/rebalancerd/internal/statusdoc"
)

// exampleDaemon is the real binary running the shipped quick-start
// configuration (configs/rebalancerd.yaml and the files it names), copied
// to a temporary directory with a fresh state directory, free ports and a
// 1s replay interval; nothing else of it is changed.
type exampleDaemon struct {
	t       *testing.T
	bin     string
	dir     string // the copy of configs/
	config  string // its rebalancerd.yaml
	natsURL string
	httpURL string
	logs    *logLines
	cmd     *exec.Cmd
	done    chan struct{}
}

// exampleConfig copies configs/ into a temporary directory and rewrites
// the daemon configuration's state directory, ports and feed interval.
// It fails when the shipped file no longer has the lines it rewrites.
func exampleConfig(t *testing.T) (dir, config string, natsPort int) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "configs")
	if err := os.CopyFS(dir, os.DirFS("../../configs")); err != nil {
		t.Fatal(err)
	}
	config = filepath.Join(dir, "rebalancerd.yaml")
	data, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	natsPort = freePort(t)
	text := string(data)
	for _, r := range []struct{ re, with string }{
		{`(?m)^state_dir: .*$`, "state_dir: ../state"},
		{`(?m)^  listen: 127\.0\.0\.1:8080$`, fmt.Sprintf("  listen: 127.0.0.1:%d", freePort(t))},
		{`(?m)^  prefix: rebalance .*$`, fmt.Sprintf("  prefix: rebalance\n  embedded: {port: %d}", natsPort)},
		{`(?m)^    interval: 5s$`, "    interval: 1s"},
	} {
		re := regexp.MustCompile(r.re)
		if !re.MatchString(text) {
			t.Fatalf("configs/rebalancerd.yaml has no line matching %s: update the test with the configuration", r.re)
		}
		text = re.ReplaceAllLiteralString(text, r.with)
	}
	if err := os.WriteFile(config, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, config, natsPort
}

// startExample starts the binary on the example and waits until it serves.
func startExample(t *testing.T, bin string) *exampleDaemon {
	t.Helper()
	dir, config, natsPort := exampleConfig(t)
	d := &exampleDaemon{t: t, bin: bin, dir: dir, config: config, natsURL: fmt.Sprintf("nats://127.0.0.1:%d", natsPort),
		logs: &logLines{}, done: make(chan struct{})}
	d.cmd = exec.Command(bin, "run", "-config", config, "-log-format", "json")
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.logs.read(stderr)
		close(d.done)
	}()
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(20 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		_ = d.cmd.Wait()
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.logs.raw.String())
		}
	})
	started := d.logs.wait(t, "rebalancerd started")
	d.httpURL = fmt.Sprint(started["http"])
	return d
}

// status fetches and decodes /status.
func (d *exampleDaemon) status() *statusdoc.Document {
	d.t.Helper()
	resp, err := http.Get(d.httpURL + "/status")
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		d.t.Fatal(err)
	}
	var doc statusdoc.Document
	if err := json.Unmarshal(body, &doc); err != nil {
		d.t.Fatalf("decode /status: %v\n%s", err, body)
	}
	if strings.Contains(string(body), "0001-01-01") {
		d.t.Errorf("/status shows an unset time:\n%s", body)
	}
	return &doc
}

// waitPending waits until policy has n pending orders (at least one when
// n < 0), all acknowledged by JetStream, and returns the status then.
func (d *exampleDaemon) waitPending(policy string, n int) *statusdoc.Document {
	d.t.Helper()
	var doc *statusdoc.Document
	checkFor(d.t, 30*time.Second, 50*time.Millisecond, func() error {
		doc = d.status()
		p := doc.Policy(policy)
		if p == nil {
			return fmt.Errorf("%s not in /status", policy)
		}
		got := len(p.PendingOrders)
		if (n < 0 && got == 0) || (n >= 0 && got != n) || p.Unacked > 0 {
			return fmt.Errorf("%s: %d pending orders (%d unacknowledged), want %d", policy, got, p.Unacked, n)
		}
		return nil
	})
	return doc
}

// nats connects to the example's embedded NATS server.
func (d *exampleDaemon) nats() *natsgo.Conn {
	d.t.Helper()
	nc, err := natsgo.Connect(d.natsURL)
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(nc.Close)
	return nc
}
