package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	natstest "github.com/nats-io/nats-server/v2/test"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rebalancerd/rebalancerd/internal/events"
)

// failoverTTL is the lease TTL of the failover test: short, so that the
// test is quick, and long enough for a loaded CI machine's renewals.
const failoverTTL = 2 * time.Second

// TestFailover runs two instances of the real binary in a
// high-availability group against one nats-server. The lease holder is
// killed (SIGKILL) mid-plan: after journaling a plan, while its orders are
// on the wire (none of them, or all of them, reached JetStream). The
// standby takes over within the lease TTL, finds the plan
// in the shared state and publishes it under the same ids: every order of
// the plan is in the stream exactly once, and no other plan is made.
func TestFailover(t *testing.T) {
	bin := buildBinary(t)
	for _, trip := range []string{tripNone, tripAll} {
		t.Run(trip, func(t *testing.T) { testFailover(t, bin, trip) })
	}
}

func testFailover(t *testing.T, bin, trip string) {
	opts := natstest.DefaultTestOptions
	opts.Port = -1
	opts.JetStream = true
	opts.StoreDir = t.TempDir()
	srv := natstest.RunServer(&opts)
	t.Cleanup(srv.Shutdown)
	proxy := startNATSProxy(t, srv.Addr().(*net.TCPAddr).String()) // a's way to NATS

	dir := t.TempDir()
	pol := policyText("threshold", "")
	// The price step below (VTI +50%, the total +30%) is taken at once:
	// this test is about the takeover, not about confirming moves.
	for _, r := range [][2]string{{"check_every: 1m", "check_every: 1s"}, {"cooldown: 1m", "cooldown: 1s"},
		{"max_move: 40%", "max_move: 90%"}, {"instruments:", "limits:\n  max_value_change: 100%\ninstruments:"}} {
		pol = strings.Replace(pol, r[0], r[1], 1)
	}
	writeFile(t, filepath.Join(dir, "policies", "test.yaml"), pol)
	writeFile(t, filepath.Join(dir, "holdings", "test.yaml"), testHoldings)
	config := func(instance, url string) string {
		file := filepath.Join(dir, instance+".yaml")
		writeFile(t, file, fmt.Sprintf(`state_dir: state-%s
policies:
  - {policy: policies/test.yaml, holdings: holdings/test.yaml}
feeds:
  - {name: bus, kind: nats}
nats:
  url: %s
http:
  listen: 127.0.0.1:0
ha:
  instance: %s
  lease_ttl: %s
`, instance, url, instance, failoverTTL))
		return file
	}
	a := startProc(t, bin, config("a", "nats://"+proxy.Addr()))
	a.logs.wait(t, "high availability: this instance is the planner")
	b := startProc(t, bin, config("b", srv.ClientURL()))
	b.logs.wait(t, "lease held by another instance; standing by", "holder", "a")

	nc, err := natsgo.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var level atomic.Pointer[map[string]string]
	level.Store(&map[string]string{"VTI": "100", "BND": "100"})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() { publishLevel(ctx, nc, func() map[string]string { return *level.Load() }) })
	a.logs.wait(t, "planning unblocked") // a has every price, on target

	// Stocks out of band: a plans, journals, and its publish is cut.
	proxy.arm(trip)
	level.Store(&map[string]string{"VTI": "150", "BND": "100"})
	select {
	case <-proxy.Tripped():
	case <-time.After(30 * time.Second):
		t.Fatalf("a never published orders; its log:\n%s", a.logs.tail(50))
	}
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-a.done
	plan := a.logs.find("rebalance")
	if plan == nil {
		t.Fatalf("a published without a rebalance log line:\n%s", a.logs.tail(50))
	}
	planID, orders := plan["plan_id"].(string), int(plan["orders"].(float64))

	b.logs.wait(t, "high availability: this instance is the planner")
	takeover := time.Since(killed)
	t.Logf("%s: b took over %v after a was killed (lease TTL %v)", trip, takeover.Round(time.Millisecond), failoverTTL)
	if takeover > failoverTTL {
		t.Errorf("takeover took %v, lease TTL %v", takeover, failoverTTL)
	}
	b.logs.wait(t, "orders acknowledged by JetStream", "plan_id", planID)

	// The stream holds the plan's orders once each, and nothing else: b
	// neither re-planned while they were pending nor sent a duplicate.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	msgs := readStream(t, js, "REBALANCE_ORDERS")
	seen := map[string]int{}
	for _, m := range msgs {
		if !strings.HasPrefix(m.subject, "rebalance.orders.") {
			continue
		}
		var o events.Order
		if err := json.Unmarshal(m.data, &o); err != nil {
			t.Fatal(err)
		}
		if o.PlanID != planID || o.OrderID != m.msgID {
			t.Errorf("unexpected order %s of plan %s (msg id %s)", o.OrderID, o.PlanID, m.msgID)
		}
		seen[o.OrderID]++
	}
	if len(seen) != orders {
		t.Errorf("%d distinct orders in the stream, the plan had %d", len(seen), orders)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("order %s stored %d times", id, n)
		}
	}
	if n := b.logs.count("rebalance"); n != 0 {
		t.Errorf("b made %d plans of its own; the journaled plan was pending", n)
	}

	// b stops cleanly and releases the lease.
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-b.done
	if b.err != nil {
		t.Errorf("b exited with %v", b.err)
	}
	b.logs.wait(t, "lease released")
}

// startProc starts the daemon binary with a configuration file; the
// process is killed at the end of the test.
func startProc(t *testing.T, bin, cfg string) *faultProc {
	t.Helper()
	p := startProcess(t, bin, cfg)
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("log of %s:\n%s", cfg, p.logs.tail(100))
		}
	})
	return p
}

// startProcess starts `rebalancerd run` with a configuration file and
// JSON logs, which it collects.
func startProcess(t *testing.T, bin, cfg string) *faultProc {
	t.Helper()
	cmd := exec.Command(bin, "run", "-config", cfg, "-log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProc{cmd: cmd, logs: &logLines{}, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.logs.read(stderr)
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p
}

// publishLevel publishes quotes at the prices level returns every 50ms,
// each timed now (so each is newer than the last one the daemon
// accepted), until ctx ends. Core NATS: a quote lost in an outage is
// replaced 50ms later.
func publishLevel(ctx context.Context, nc *natsgo.Conn, level func() map[string]string) {
	publishPrices(ctx, nc, 50*time.Millisecond, level)
}
