package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natstest "github.com/nats-io/nats-server/v2/test"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/nats/natsproxy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/state"
)

// Settings of TestFaultInjection, from the environment.
const (
	// faultCyclesEnv sets the number of rebalance cycles (default
	// faultDefaultCycles; docs/RELIABILITY.md records a run of 200).
	faultCyclesEnv     = "REBALANCERD_FAULT_CYCLES"
	faultDefaultCycles = 20
	// faultSeedEnv replays the fault schedule of an earlier run.
	faultSeedEnv = "REBALANCERD_FAULT_SEED"
	// faultAtomicEnv set to "false" runs the daemon with
	// nats.stream.atomic_batches: false (plans one message at a time).
	faultAtomicEnv = "REBALANCERD_FAULT_ATOMIC"
	// faultPartialGrace: a plan the observer has seen part of, while
	// caught up with the stream, for longer than this was visible partly.
	faultPartialGrace = 750 * time.Millisecond
)

const (
	faultPolicy  = "test-household"
	faultAccount = "ira"
	// faultNATSEvery: the NATS server is restarted at cycles 5, 15, 25...
	faultNATSEvery = 10
	// faultKillShare is the share of the other cycles with a SIGKILL.
	faultKillShare = 0.5
	// faultSlowCycle: a cycle longer than this waited for a redelivery.
	faultSlowCycle = 20 * time.Second
	// faultStartupKillShare is the share of restarts killed again while
	// starting (loading the journal, reconciling, re-publishing).
	faultStartupKillShare = 0.25
)

// faultLevels are the prices the feed alternates between, one level per
// cycle: each flip takes the stocks sleeve out of its band (VTI x1.5 or
// /1.5 moves a 60% sleeve to about 69% or 50%), whatever the rounding of
// the previous plan left.
var faultLevels = [2]map[string]string{{"VTI": "150", "BND": "100"}, {"VTI": "100", "BND": "100"}}

// The auditor's oracle: the sleeves of policyText (targets 60/35/5, an
// absolute band of 5 points) and the instruments in them.
var (
	auditTargets = map[string]decimal.Decimal{"stocks": decimal.RequireFromString("0.60"),
		"bonds": decimal.RequireFromString("0.35"), "cash": decimal.RequireFromString("0.05")}
	auditSleeveOf = map[string]string{"VTI": "stocks", "BND": "bonds"}
	auditBand     = decimal.RequireFromString("0.05")
)

// Anchors a fault is timed from.
const (
	anchorCycle   = "cycle"   // the price flip that starts a cycle, plus up to 1.5s
	anchorJournal = "journal" // the "rebalance" log line: orders journaled, publishing starts
	anchorAck     = "ack"     // "orders acknowledged by JetStream": snapshot saved, plan event next
	anchorFill    = "fill"    // a "fill" log line: a fill applied, its report being acked
	anchorStartup = "startup" // a restarted daemon, within 800ms of its start
	// The proxy between the daemon and NATS trips on the daemon's first
	// order publish of the cycle and stops forwarding: tripNone forwards
	// none of the bytes that carry it, tripFirst the first order only,
	// tripAll all of them (stored, but the acknowledgements are lost).
	tripNone  = "publish-none"
	tripFirst = "publish-first"
	tripAll   = "publish-all"
)

// anchorLog is the log message each anchor waits for.
var anchorLog = map[string]string{anchorJournal: "rebalance", anchorAck: "orders acknowledged by JetStream", anchorFill: "fill"}

// TestFaultInjection runs the real binary against a real nats-server
// through many rebalance cycles while killing it (SIGKILL) at random
// instants and restarting the NATS server mid-publish. An executor fills
// every order; at the end an auditor reads the streams and the state
// directory and checks that no journaled order is missing from the stream,
// no order id is stored twice, no plan was made while the previous one's
// orders were pending, and every plan was justified by a band breach.
//
// REBALANCERD_FAULT_CYCLES sets the number of cycles (default 20),
// REBALANCERD_FAULT_SEED replays a fault schedule. See docs/RELIABILITY.md.
func TestFaultInjection(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection runs the binary through many cycles")
	}
	cycles := faultDefaultCycles
	if v := os.Getenv(faultCyclesEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 2 {
			t.Fatalf("%s=%q: want a whole number of cycles, at least 2", faultCyclesEnv, v)
		}
		cycles = n
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(faultSeedEnv); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", faultSeedEnv, v, err)
		}
		seed = n
	}
	atomicBatches := os.Getenv(faultAtomicEnv) != "false"
	t.Logf("fault injection: %d cycles, seed %d (%s=%d replays the fault schedule), atomic batches %v",
		cycles, seed, faultSeedEnv, seed, atomicBatches)
	h := newFaultHarness(t, buildBinary(t), seed, atomicBatches)
	start := time.Now()

	h.start()
	h.startClients()
	lastPlan := ""
	for c := 0; c < cycles; c++ {
		began := time.Now()
		var fault string
		lastPlan, fault = h.cycle(c, lastPlan)
		h.fig.Cycles++
		d := time.Since(began)
		h.fig.LongestCycle = max(h.fig.LongestCycle, d)
		if d > faultSlowCycle {
			h.fig.SlowCycles++
		}
		t.Logf("cycle %d: plan %s in %s%s", c, lastPlan, d.Round(time.Millisecond), fault)
	}
	h.stop()
	h.obs.catchUp(t)
	h.stopClients()
	h.fig.Duration = time.Since(start).Round(time.Second)

	a := h.audit()
	f := &h.fig
	t.Logf("figures: cycles=%d kills=%d (%s) restarts_republishing_outbox=%d",
		f.Cycles, f.Kills, f.killsByAnchor(), f.OutboxRepublished)
	t.Logf("figures: nats_restarts=%d (%s) with_publish_retries=%d", f.NATSRestarts, f.natsByAnchor(), f.PublishRetried)
	t.Logf("figures: plans=%d orders=%d order_messages=%d plan_events=%d (missing %d) fills=%d executor_deliveries=%d",
		a.Plans, a.Orders, a.OrderMessages, a.PlanEvents, a.MissingPlanEvents, a.Fills, h.exec.deliveries())
	partly := h.obs.partlyVisible()
	t.Logf("figures: lost=%d duplicated=%d logical_duplicates=%d unjustified=%d unknown_to_journal=%d",
		len(a.Lost), len(a.Duplicated), len(a.LogicalDuplicates), len(a.Unjustified), len(a.Unjournaled))
	t.Logf("figures: partly_visible=%d (observer: %d plans seen whole) stored_as_one_batch=%d of %d plans",
		len(partly), h.obs.whole(), a.AtomicPlans, a.Plans)
	t.Logf("figures: duration=%s slow_cycles=%d (over %s) longest_cycle=%s", f.Duration, f.SlowCycles, faultSlowCycle,
		f.LongestCycle.Round(time.Millisecond))
	for _, p := range a.Problems {
		t.Error(p)
	}
	if len(a.Lost) > 0 {
		t.Errorf("%d journaled orders are not in the stream: %v", len(a.Lost), a.Lost)
	}
	if len(a.Duplicated) > 0 {
		t.Errorf("%d order ids stored more than once: %v", len(a.Duplicated), a.Duplicated)
	}
	for _, d := range a.LogicalDuplicates {
		t.Errorf("logical duplicate: %s", d)
	}
	for _, u := range a.Unjustified {
		t.Errorf("unjustified plan: %s", u)
	}
	if len(a.Unjournaled) > 0 {
		t.Errorf("%d orders in the stream are unknown to the final ledger: %v", len(a.Unjournaled), a.Unjournaled)
	}
	for _, p := range partly {
		t.Errorf("plan visible partly: %s", p)
	}
	if atomicBatches && a.AtomicPlans != a.Plans {
		t.Errorf("%d of %d plans stored as one atomic batch", a.AtomicPlans, a.Plans)
	}
	if a.Plans < cycles {
		t.Errorf("%d plans in the stream for %d cycles", a.Plans, cycles)
	}
	if f.Kills == 0 || (cycles > faultNATSEvery/2 && f.NATSRestarts == 0) {
		t.Errorf("no fault injected: %d kills, %d NATS restarts", f.Kills, f.NATSRestarts)
	}
}

// faultFigures counts what the run did.
type faultFigures struct {
	Cycles            int
	Kills             int
	KillsAt           map[string]int
	NATSRestarts      int
	NATSAt            map[string]int
	PublishRetried    int // NATS restarts during which the daemon logged a publish retry
	OutboxRepublished int // starts that re-published journaled, unacknowledged orders
	// SlowCycles took longer than faultSlowCycle: a fill delivered to a
	// killed daemon (or over a broken connection) is redelivered only
	// after the reports consumer's AckWait, 30s.
	SlowCycles   int
	LongestCycle time.Duration
	Duration     time.Duration
}

func (f *faultFigures) killsByAnchor() string {
	var parts []string
	for _, a := range []string{anchorCycle, anchorJournal, anchorAck, anchorFill, tripNone, tripFirst, tripAll, anchorStartup} {
		parts = append(parts, fmt.Sprintf("%s %d", a, f.KillsAt[a]))
	}
	return strings.Join(parts, ", ")
}

func (f *faultFigures) natsByAnchor() string {
	var parts []string
	for _, a := range []string{anchorCycle, tripNone, tripFirst, tripAll} {
		parts = append(parts, fmt.Sprintf("%s %d", a, f.NATSAt[a]))
	}
	return strings.Join(parts, ", ")
}

// faultHarness holds the NATS server, the daemon process, the price feed
// and the executor of a fault-injection run.
type faultHarness struct {
	t    *testing.T
	bin  string
	dir  string
	cfg  string // daemon configuration file
	seed uint64
	rng  *rand.Rand // the fault schedule, used by the test's goroutine only
	fig  faultFigures

	natsOpts server.Options
	srv      *server.Server
	url      string     // of the server, for the test's clients
	proxy    *natsProxy // the daemon's way to the server

	procs []*faultProc // every daemon started; the last one is current
	level atomic.Int32 // index into faultLevels

	cancel context.CancelFunc
	wg     sync.WaitGroup
	exec   *faultExecutor
	obs    *faultObserver
}

// faultProc is one run of the daemon binary.
type faultProc struct {
	cmd  *exec.Cmd
	logs *logLines
	done chan struct{} // closed once the process exited and its log is read
	err  error         // the exit status, set before done is closed
}

func newFaultHarness(t *testing.T, bin string, seed uint64, atomicBatches bool) *faultHarness {
	h := &faultHarness{t: t, bin: bin, dir: t.TempDir(), seed: seed, rng: rand.New(rand.NewPCG(seed, 0)),
		fig: faultFigures{KillsAt: map[string]int{}, NATSAt: map[string]int{}}}
	// The NATS server outlives the daemon's kills; its JetStream store is
	// on disk with the default sync settings.
	h.natsOpts = natstest.DefaultTestOptions
	h.natsOpts.Port = -1
	h.natsOpts.JetStream = true
	h.natsOpts.StoreDir = t.TempDir()
	opts := h.natsOpts
	h.srv = natstest.RunServer(&opts)
	h.natsOpts.Port = h.srv.Addr().(*net.TCPAddr).Port // restarts reuse the port
	h.url = h.srv.ClientURL()
	h.proxy = startNATSProxy(t, h.srv.Addr().String())

	pol := policyText("threshold", "")
	for _, r := range [][2]string{{"check_every: 1m", "check_every: 1s"}, {"cooldown: 1m", "cooldown: 1s"},
		{"max_move: 40%", "max_move: 90%"}, {"instruments:", "limits:\n  max_plans_per_day: 10000\n  max_value_change: 100%\ninstruments:"}} {
		if !strings.Contains(pol, r[0]) {
			t.Fatalf("test policy has no %q", r[0])
		}
		pol = strings.Replace(pol, r[0], r[1], 1)
	}
	writeFile(t, filepath.Join(h.dir, "policies", "test.yaml"), pol)
	writeFile(t, filepath.Join(h.dir, "holdings", "test.yaml"), testHoldings)
	h.cfg = filepath.Join(h.dir, "rebalancerd.yaml")
	writeFile(t, h.cfg, fmt.Sprintf(`state_dir: state
policies:
  - {policy: policies/test.yaml, holdings: holdings/test.yaml}
feeds:
  - {name: bus, kind: nats}
nats:
  url: nats://%s
  stream: {atomic_batches: %v}
http:
  listen: 127.0.0.1:0
`, h.proxy.Addr(), atomicBatches))

	t.Cleanup(func() {
		if p := h.proc(); p != nil {
			_ = p.cmd.Process.Kill()
			<-p.done
			if t.Failed() {
				t.Logf("log of the last daemon run:\n%s", p.logs.tail(300))
			}
		}
		h.srv.Shutdown()
	})
	return h
}

// proc is the current daemon process, or nil before the first start.
func (h *faultHarness) proc() *faultProc {
	if len(h.procs) == 0 {
		return nil
	}
	return h.procs[len(h.procs)-1]
}

// start starts the daemon on the state directory.
func (h *faultHarness) start() {
	h.t.Helper()
	h.procs = append(h.procs, startProcess(h.t, h.bin, h.cfg))
}

// kill sends SIGKILL to the daemon, waits for it to die and starts it
// again; a share of the restarts is killed again while starting.
func (h *faultHarness) kill(anchor string) {
	h.t.Helper()
	p := h.proc()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		h.t.Fatalf("SIGKILL: %v", err)
	}
	h.waitExit(p)
	h.fig.Kills++
	h.fig.KillsAt[anchor]++
	h.start()
	if h.rng.Float64() < faultStartupKillShare {
		time.Sleep(h.jitter(800 * time.Millisecond)) // the fault's instant, not a synchronization
		h.kill(anchorStartup)
	}
}

func (h *faultHarness) waitExit(p *faultProc) {
	h.t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		h.t.Fatal("the daemon did not exit within 30s")
	}
}

// stop stops the daemon with SIGTERM and checks its clean exit.
func (h *faultHarness) stop() {
	h.t.Helper()
	p := h.proc()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		h.t.Fatal(err)
	}
	h.waitExit(p)
	if p.err != nil {
		h.t.Fatalf("exit after SIGTERM: %v", p.err)
	}
	for _, q := range h.procs {
		if q.logs.count("publishing orders journaled before the last stop") > 0 {
			h.fig.OutboxRepublished++
		}
	}
}

// restartNATS shuts the NATS server down and starts it again on the same
// port and store after an outage of up to a second.
func (h *faultHarness) restartNATS(anchor string) {
	h.srv.Shutdown()
	h.srv.WaitForShutdown()
	time.Sleep(100*time.Millisecond + h.jitter(900*time.Millisecond)) // the outage
	opts := h.natsOpts
	h.srv = natstest.RunServer(&opts)
	h.fig.NATSRestarts++
	h.fig.NATSAt[anchor]++
}

func (h *faultHarness) jitter(d time.Duration) time.Duration {
	return time.Duration(h.rng.Int64N(int64(d) + 1))
}

// connect opens a client connection that reconnects forever.
func (h *faultHarness) connect(name string) *natsgo.Conn {
	h.t.Helper()
	nc, err := natsgo.Connect(h.url, natsgo.Name(name), natsgo.MaxReconnects(-1), natsgo.ReconnectWait(20*time.Millisecond))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(nc.Close)
	return nc
}

// startClients starts the price feed and, once the daemon has created its
// streams, the executor.
func (h *faultHarness) startClients() {
	h.t.Helper()
	prices := h.connect("pricefeed")
	nc := h.connect("executor")
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.t.Cleanup(h.stopClients) // before the connections close
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.publishPrices(ctx, prices)
	}()

	js, err := jetstream.New(nc)
	if err != nil {
		h.t.Fatal(err)
	}
	checkFor(h.t, 60*time.Second, 20*time.Millisecond, func() error {
		sctx, scancel := context.WithTimeout(ctx, time.Second)
		defer scancel()
		for _, s := range []string{"REBALANCE_ORDERS", "REBALANCE_REPORTS"} {
			if _, err := js.Stream(sctx, s); err != nil {
				return fmt.Errorf("stream %s: %w", s, err)
			}
		}
		return nil
	})
	h.obs = &faultObserver{js: js, plans: map[string]*observedPlan{}}
	h.wg.Add(2)
	go func() {
		defer h.wg.Done()
		h.obs.run(ctx)
	}()
	go func() {
		defer h.wg.Done()
		h.obs.watch(ctx)
	}()
	h.exec = &faultExecutor{js: js, rng: rand.New(rand.NewPCG(h.seed, 1)), delivered: map[string]int{}, filled: map[string]bool{}}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.exec.run(ctx)
	}()
}

// stopClients stops the price feed and the executor (again: a no-op).
func (h *faultHarness) stopClients() {
	h.cancel()
	h.wg.Wait()
	if h.exec == nil {
		return
	}
	h.exec.mu.Lock()
	defer h.exec.mu.Unlock()
	for _, err := range h.exec.errs {
		h.t.Errorf("executor: %v", err)
	}
	h.exec.errs = nil
}

// publishPrices publishes the current level's quotes every 50ms, each
// timed now (so each is newer than the last one the daemon accepted).
func (h *faultHarness) publishPrices(ctx context.Context, nc *natsgo.Conn) {
	publishLevel(ctx, nc, func() map[string]string { return faultLevels[h.level.Load()] })
}

// cycle runs one rebalance cycle: it flips the prices, injects this
// cycle's fault, and waits until the daemon has made a new plan and all
// its orders are filled. It returns the plan id and the fault injected.
func (h *faultHarness) cycle(c int, prev string) (planID, fault string) {
	h.t.Helper()
	kind, anchor := h.pickFault(c)
	p := h.proc()
	mark := 0
	if msg, ok := anchorLog[anchor]; ok {
		mark = p.logs.count(msg)
	}
	retries := p.logs.count(logPublishRetry)
	switch anchor {
	case tripNone, tripFirst, tripAll:
		h.proxy.arm(anchor)
	}
	h.level.Store(int32(c % len(faultLevels)))
	if kind != "" {
		switch anchor {
		case tripNone, tripFirst, tripAll:
			select {
			case <-h.proxy.Tripped():
			case <-time.After(time.Minute):
				h.t.Fatalf("cycle %d: no order publish within a minute", c)
			}
		case anchorCycle:
			time.Sleep(h.jitter(1500 * time.Millisecond)) // the fault's instant
		default:
			h.waitLog(p, anchorLog[anchor], mark)
			time.Sleep(h.jitter(3 * time.Millisecond)) // the fault's instant
		}
		if kind == "kill" {
			h.kill(anchor)
		} else {
			h.restartNATS(anchor)
		}
		fault = fmt.Sprintf(", %s at %s", kind, anchor)
	}
	checkFor(h.t, 2*time.Minute, 20*time.Millisecond, func() error {
		st, err := h.status()
		switch {
		case err != nil:
			return err
		case st.LastPlanID == "" || st.LastPlanID == prev:
			return fmt.Errorf("cycle %d: no new plan since %q (blocked: %+v)", c, prev, st.Blocked)
		case len(st.PendingOrders) > 0:
			return fmt.Errorf("cycle %d: %d orders of plan %s pending", c, len(st.PendingOrders), st.LastPlanID)
		}
		planID = st.LastPlanID
		return nil
	})
	if kind == "nats" && h.proc() == p && p.logs.count(logPublishRetry) > retries {
		h.fig.PublishRetried++
	}
	return planID, fault
}

// logPublishRetry is the bus's log message when a publish must be retried.
const logPublishRetry = "JetStream publish not acknowledged; retrying with the same message ids"

// pickFault chooses the fault of cycle c: "nats" (restart the server),
// "kill" (SIGKILL the daemon) or none, and the anchor it is timed from.
func (h *faultHarness) pickFault(c int) (kind, anchor string) {
	if c%faultNATSEvery == faultNATSEvery/2 {
		anchors := []string{anchorCycle, tripNone, tripFirst, tripAll}
		return "nats", anchors[h.rng.IntN(len(anchors))]
	}
	if h.rng.Float64() >= faultKillShare {
		return "", ""
	}
	anchors := []string{anchorCycle, anchorJournal, anchorAck, anchorFill, tripNone, tripFirst, tripAll}
	return "kill", anchors[h.rng.IntN(len(anchors))]
}

// waitLog waits until the process has logged msg more than mark times.
func (h *faultHarness) waitLog(p *faultProc, msg string, mark int) {
	h.t.Helper()
	checkFor(h.t, time.Minute, time.Millisecond, func() error {
		if p.logs.count(msg) <= mark {
			return fmt.Errorf("no new %q log line", msg)
		}
		return nil
	})
}

// status reads the test policy's status from the current daemon's HTTP
// endpoint.
func (h *faultHarness) status() (engine.PolicyStatus, error) {
	_, ps, err := policyStatus(h.proc().logs)
	return ps, err
}

// policyStatus reads the daemon's role and the test policy's status from
// the HTTP endpoint its log announced.
func policyStatus(logs *logLines) (role string, ps engine.PolicyStatus, err error) {
	started := logs.find("rebalancerd started")
	if started == nil {
		return "", ps, errors.New("daemon not started yet")
	}
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(fmt.Sprint(started["http"]) + "/status")
	if err != nil {
		return "", ps, err
	}
	defer resp.Body.Close()
	var st struct {
		Role string `json:"role"`
		engine.Status
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return "", ps, fmt.Errorf("status: %w", err)
	}
	for _, p := range st.Policies {
		if p.Policy == faultPolicy {
			return st.Role, p, nil
		}
	}
	return st.Role, ps, fmt.Errorf("status: no policy %s", faultPolicy)
}

// count returns how many log lines have msg.
func (l *logLines) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.lines {
		if m["msg"] == msg {
			n++
		}
	}
	return n
}

// tail returns the last n raw log lines.
func (l *logLines) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.SplitAfter(l.raw.String(), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "")
}

// faultExecutor fills every order of the orders stream in full, as a
// broker would: a durable consumer delivers each order; after an
// execution latency of up to 200ms, a fill with id
// "fill-<order id>" is published through JetStream (message id the fill
// id, retried until acknowledged); then the order is acknowledged.
type faultExecutor struct {
	js  jetstream.JetStream
	rng *rand.Rand // execution latencies, used by run's goroutine only

	mu        sync.Mutex
	delivered map[string]int // deliveries per order id
	filled    map[string]bool
	errs      []error
}

func (x *faultExecutor) run(ctx context.Context) {
	consume(ctx, func(ctx context.Context) (jetstream.Consumer, error) {
		return x.js.CreateOrUpdateConsumer(ctx, "REBALANCE_ORDERS", jetstream.ConsumerConfig{
			Durable: "fault-executor", FilterSubject: events.Subjects{Prefix: events.DefaultPrefix}.Orders(),
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: 5 * time.Second})
	}, func(msg jetstream.Msg) { x.handle(ctx, msg) })
}

// consume hands each message of the consumer open returns to handle, and
// opens it again whenever NATS restarts, until ctx ends.
func consume(ctx context.Context, open func(context.Context) (jetstream.Consumer, error), handle func(jetstream.Msg)) {
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		cons, err := open(cctx)
		cancel()
		if err != nil {
			pause(ctx, 50*time.Millisecond) // NATS is restarting
			continue
		}
		it, err := cons.Messages()
		if err != nil {
			pause(ctx, 50*time.Millisecond)
			continue
		}
		for {
			msg, err := it.Next(jetstream.NextContext(ctx))
			if err != nil {
				break
			}
			handle(msg)
		}
		it.Stop()
	}
}

func (x *faultExecutor) handle(ctx context.Context, msg jetstream.Msg) {
	var o events.Order
	if err := json.Unmarshal(msg.Data(), &o); err != nil {
		x.fail(fmt.Errorf("order on %s: %w", msg.Subject(), err))
		_ = msg.Term()
		return
	}
	x.mu.Lock()
	x.delivered[o.OrderID]++
	done := x.filled[o.OrderID]
	x.mu.Unlock()
	if !done {
		pause(ctx, time.Duration(x.rng.Int64N(int64(200*time.Millisecond)))) // the broker executing the order
		f := events.Fill{SchemaVersion: events.SchemaVersion, FillID: "fill-" + o.OrderID, OrderID: o.OrderID,
			Status: events.FillFilled, Quantity: o.Quantity, Price: o.Price, Fees: decimal.Zero, At: time.Now().UTC()}
		data, err := json.Marshal(f)
		if err != nil {
			x.fail(err)
			return
		}
		subj := events.Subjects{Prefix: events.DefaultPrefix}.Fill(o.Policy, o.Account)
		for {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := x.js.Publish(pctx, subj, data, jetstream.WithMsgID(f.FillID), jetstream.WithExpectStream("REBALANCE_REPORTS"))
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			pause(ctx, 50*time.Millisecond) // retry with the same id
		}
		x.mu.Lock()
		x.filled[o.OrderID] = true
		x.mu.Unlock()
	}
	_ = msg.Ack() // a lost ack redelivers the order, which is filled already
}

func (x *faultExecutor) fail(err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.errs = append(x.errs, err)
}

func (x *faultExecutor) deliveries() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := 0
	for _, d := range x.delivered {
		n += d
	}
	return n
}

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// faultObserver reads the orders stream as an executor would, through an
// ordered consumer, while the run goes on, and records each plan it sees
// only partly: some of its messages (orders or plan event) but not all,
// while it has read everything the stream held (NumPending 0, confirmed
// by the stream's last sequence), for longer than faultPartialGrace. A plan published one message at a time shows
// like that between a kill and the re-publishing restart; a plan stored
// as one atomic batch never does.
type faultObserver struct {
	js jetstream.JetStream

	mu     sync.Mutex
	plans  map[string]*observedPlan
	order  []string // plan ids, by first message seen
	last   uint64   // the last stream sequence read
	partly []string
	errs   []error
}

// observedPlan is what the observer has seen of one plan.
type observedPlan struct {
	orders map[string]bool
	want   int // orders the plan event lists; -1 before the event
	// caughtUp is when the observer, having read the whole stream, first
	// found this plan incomplete; zero while it was not.
	caughtUp time.Time
	partly   bool
}

func (p *observedPlan) complete() bool { return p.want >= 0 && len(p.orders) == p.want }

func (o *faultObserver) run(ctx context.Context) {
	subj := events.Subjects{Prefix: events.DefaultPrefix}
	consume(ctx, func(ctx context.Context) (jetstream.Consumer, error) {
		// After a NATS restart, go on from the last message read.
		o.mu.Lock()
		cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj.Orders(), subj.Plans()}}
		if o.last > 0 {
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, o.last+1
		}
		o.mu.Unlock()
		return o.js.OrderedConsumer(ctx, "REBALANCE_ORDERS", cfg)
	}, o.see)
}

// see records one message of the stream.
func (o *faultObserver) see(msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		o.fail(fmt.Errorf("observer: %s: %w", msg.Subject(), err))
		return
	}
	var planID, orderID string
	want := -1
	if strings.Contains(msg.Subject(), ".plans.") {
		var p events.Plan
		if err := json.Unmarshal(msg.Data(), &p); err != nil || p.Plan == nil {
			o.fail(fmt.Errorf("observer: plan event #%d: %v", md.Sequence.Stream, err))
			return
		}
		planID, want = p.ID, len(p.Orders)
	} else {
		var ord events.Order
		if err := json.Unmarshal(msg.Data(), &ord); err != nil {
			o.fail(fmt.Errorf("observer: order #%d: %w", md.Sequence.Stream, err))
			return
		}
		planID, orderID = ord.PlanID, ord.OrderID
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.last = max(o.last, md.Sequence.Stream)
	p := o.plans[planID]
	if p == nil {
		p = &observedPlan{orders: map[string]bool{}, want: -1}
		o.plans[planID] = p
		o.order = append(o.order, planID)
	}
	if orderID != "" {
		p.orders[orderID] = true
	} else {
		p.want = want
	}
	if p.complete() {
		p.caughtUp = time.Time{}
	}
	if md.NumPending == 0 { // everything stored so far has been read
		now := time.Now()
		for _, id := range o.order {
			if q := o.plans[id]; !q.complete() && q.caughtUp.IsZero() {
				q.caughtUp = now
			}
		}
	}
}

// watch marks the plans left incomplete for longer than the grace.
func (o *faultObserver) watch(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		o.mu.Lock()
		var suspects []string
		for _, id := range o.order {
			p := o.plans[id]
			if !p.partly && !p.complete() && !p.caughtUp.IsZero() && time.Since(p.caughtUp) > faultPartialGrace {
				suspects = append(suspects, id)
			}
		}
		o.mu.Unlock()
		if len(suspects) == 0 {
			continue
		}
		// NumPending 0 on a delivered message does not prove that the
		// observer had read everything: nats-server stores a committed
		// batch one message after another and a consumer may deliver the
		// first before the next is stored. Ask the stream: if it holds
		// more than the observer has read, the observer lags, and the
		// plan is not (yet) seen partly.
		last, err := o.streamLastSeq(ctx)
		if err != nil {
			continue // NATS down: judge at the next tick
		}
		o.mu.Lock()
		for _, id := range suspects {
			p := o.plans[id]
			switch {
			case p.partly || p.complete():
			case last > o.last:
				p.caughtUp = time.Time{} // set again once the observer catches up
			default:
				p.partly = true
				o.partly = append(o.partly, fmt.Sprintf("plan %s: %d orders seen, plan event seen %v, for more than %s (stream at #%d, all read)",
					id, len(p.orders), p.want >= 0, faultPartialGrace, last))
			}
		}
		o.mu.Unlock()
	}
}

// streamLastSeq returns the orders stream's last sequence.
func (o *faultObserver) streamLastSeq(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := o.js.Stream(ctx, "REBALANCE_ORDERS")
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// catchUp waits until the observer has read every message of the stream.
func (o *faultObserver) catchUp(t *testing.T) {
	t.Helper()
	checkFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		last, err := o.streamLastSeq(context.Background())
		if err != nil {
			return err
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.last < last {
			return fmt.Errorf("observer read up to #%d of %d", o.last, last)
		}
		return nil
	})
}

// partlyVisible returns the plans seen partly, and those still incomplete.
func (o *faultObserver) partlyVisible() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := slices.Clone(o.partly)
	for _, id := range o.order {
		if p := o.plans[id]; !p.partly && !p.complete() {
			out = append(out, fmt.Sprintf("plan %s: incomplete at the end (%d orders, plan event %v)", id, len(p.orders), p.want >= 0))
		}
	}
	for _, err := range o.errs {
		out = append(out, err.Error())
	}
	return out
}

// whole counts the plans seen complete.
func (o *faultObserver) whole() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, p := range o.plans {
		if p.complete() {
			n++
		}
	}
	return n
}

func (o *faultObserver) fail(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.errs = append(o.errs, err)
}

// faultAudit is what the auditor found.
type faultAudit struct {
	Plans, Orders, OrderMessages, PlanEvents, MissingPlanEvents, Fills int
	// AtomicPlans were stored as one atomic batch: every order and the
	// plan event under one Nats-Batch-Id, in batch sequence 1..n+1, the
	// plan event last with the commit.
	AtomicPlans int

	Lost              []string // journaled (or logged as planned) but not in the stream
	Duplicated        []string // stored more than once
	Unjournaled       []string // in the stream, unknown to the final ledger
	LogicalDuplicates []string
	Unjustified       []string
	Problems          []string
}

// storedMsg is one message of a stream.
type storedMsg struct {
	seq     uint64
	subject string
	msgID   string
	at      time.Time
	data    []byte
	// The server's atomic batch headers, empty outside a batch.
	batchID, batchSeq, batchCommit string
}

// readStream reads every message of a stream, by sequence.
func readStream(t *testing.T, js jetstream.JetStream, name string) []storedMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []storedMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("%s #%d: %v", name, seq, err)
		}
		out = append(out, storedMsg{seq: m.Sequence, subject: m.Subject, msgID: m.Header.Get(jetstream.MsgIDHeader), at: m.Time, data: m.Data,
			batchID: m.Header.Get(jetstreamext.BatchIDHeader), batchSeq: m.Header.Get(jetstreamext.BatchSeqHeader),
			batchCommit: m.Header.Get(jetstreamext.BatchCommitHeader)})
	}
	return out
}

// auditPlan is one plan as the orders stream shows it.
type auditPlan struct {
	id     string
	orders []events.Order
	seqs   []uint64
	event  *events.Plan
	// batch holds the batch headers of its messages, in stream order:
	// "<batch id>/<batch sequence>/<commit>".
	batch []string
}

// oneBatch reports whether the plan was stored as one atomic batch: its
// orders then its event, batch sequences 1..n+1, under one batch id, the
// event carrying the commit.
func (p *auditPlan) oneBatch() bool {
	if p.event == nil || len(p.batch) != len(p.orders)+1 {
		return false
	}
	id, _, _ := strings.Cut(p.batch[0], "/")
	for i, b := range p.batch {
		commit := ""
		if i == len(p.batch)-1 {
			commit = "1"
		}
		if id == "" || b != fmt.Sprintf("%s/%d/%s", id, i+1, commit) {
			return false
		}
	}
	return true
}

// audit reads the streams, the daemon's state directory and its logs and
// checks the guarantees. It runs after the daemon's clean stop.
func (h *faultHarness) audit() *faultAudit {
	t := h.t
	t.Helper()
	a := &faultAudit{}
	problem := func(format string, args ...any) { a.Problems = append(a.Problems, fmt.Sprintf(format, args...)) }
	nc := h.connect("auditor")
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	subj := events.Subjects{Prefix: events.DefaultPrefix}

	// The orders stream: order ids, counted; plans in the order of their
	// first stored order.
	count := map[string]int{}
	plans := map[string]*auditPlan{}
	var order []*auditPlan
	var planEvents []events.Plan
	for _, m := range readStream(t, js, "REBALANCE_ORDERS") {
		switch {
		case strings.HasPrefix(m.subject, subj.Prefix+".orders."):
			var o events.Order
			if err := json.Unmarshal(m.data, &o); err != nil {
				problem("order message #%d: %v", m.seq, err)
				continue
			}
			a.OrderMessages++
			if m.msgID != o.OrderID || m.subject != subj.Order(o.Policy, o.Account) {
				problem("order %s stored on %s with Nats-Msg-Id %q", o.OrderID, m.subject, m.msgID)
			}
			if count[o.OrderID]++; count[o.OrderID] == 2 {
				a.Duplicated = append(a.Duplicated, o.OrderID)
			}
			p := plans[o.PlanID]
			if p == nil {
				p = &auditPlan{id: o.PlanID}
				plans[o.PlanID] = p
				order = append(order, p)
			}
			p.orders = append(p.orders, o)
			p.seqs = append(p.seqs, m.seq)
			p.batch = append(p.batch, m.batchID+"/"+m.batchSeq+"/"+m.batchCommit)
		case strings.HasPrefix(m.subject, subj.Prefix+".plans."):
			var p events.Plan
			if err := json.Unmarshal(m.data, &p); err != nil || p.Plan == nil {
				problem("plan message #%d: %v", m.seq, err)
				continue
			}
			if m.msgID != "plan-"+p.ID {
				problem("plan %s stored with Nats-Msg-Id %q", p.ID, m.msgID)
			}
			if ap := plans[p.ID]; ap != nil {
				ap.batch = append(ap.batch, m.batchID+"/"+m.batchSeq+"/"+m.batchCommit)
			}
			planEvents = append(planEvents, p)
		default:
			problem("unexpected message #%d on %s", m.seq, m.subject)
		}
	}
	a.Orders, a.Plans, a.PlanEvents = len(count), len(order), len(planEvents)
	for i := range planEvents {
		pe := &planEvents[i]
		switch p := plans[pe.ID]; {
		case p == nil:
			problem("plan event %s has no orders in the stream", pe.ID)
		case p.event != nil:
			problem("plan event %s stored twice", pe.ID)
		default:
			p.event = pe
		}
	}

	// The reports stream: the executor's fills, by order id.
	type storedFill struct {
		events.Fill
		stored time.Time
	}
	fills := map[string]storedFill{}
	for _, m := range readStream(t, js, "REBALANCE_REPORTS") {
		var f events.Fill
		if err := json.Unmarshal(m.data, &f); err != nil {
			problem("report message #%d: %v", m.seq, err)
			continue
		}
		if _, dup := fills[f.OrderID]; dup {
			problem("two fills stored for order %s", f.OrderID)
		}
		fills[f.OrderID] = storedFill{f, m.at}
	}
	a.Fills = len(fills)

	// What the daemon journaled: the final ledger and journal, and every
	// plan its logs say it journaled (a kill can come before the snapshot
	// that the journal line would be compacted into).
	journaled := h.journaledOrders()
	for _, p := range h.procs {
		p.logs.mu.Lock()
		for _, m := range p.logs.lines {
			if m["msg"] != "rebalance" {
				continue
			}
			id, _ := m["plan_id"].(string)
			n, _ := m["orders"].(float64)
			for k := 1; k <= int(n); k++ {
				journaled[fmt.Sprintf("%s-%d", id, k)] = true
			}
		}
		p.logs.mu.Unlock()
	}
	for id := range journaled {
		if count[id] == 0 {
			a.Lost = append(a.Lost, id)
		}
	}
	final := h.finalLedger()
	for id := range count {
		if _, ok := final.Order(id); !ok {
			a.Unjournaled = append(a.Unjournaled, id)
		}
	}
	sort.Strings(a.Lost)
	sort.Strings(a.Unjournaled)

	// Plan by plan: no plan before the previous one's orders were all
	// filled, each justified by a breach on the holdings the executor's
	// fills produced.
	book := auditBook(t)
	prices := map[string]decimal.Decimal{}
	for sym, px := range faultLevels[0] {
		prices[sym] = decimal.RequireFromString(px)
	}
	var holdingsAsOf time.Time // of the latest fill applied
	for i, p := range order {
		if p.event == nil {
			a.MissingPlanEvents++
			problem("plan %s has orders in the stream but no plan event", p.id)
		}
		if p.oneBatch() {
			a.AtomicPlans++
		}
		if i > 0 {
			prev := order[i-1]
			if slices.Max(prev.seqs) > slices.Min(p.seqs) {
				a.LogicalDuplicates = append(a.LogicalDuplicates, fmt.Sprintf("orders of plans %s and %s interleave in the stream", prev.id, p.id))
			}
			for _, o := range prev.orders {
				f, ok := fills[o.OrderID]
				switch {
				case !ok:
					a.LogicalDuplicates = append(a.LogicalDuplicates, fmt.Sprintf("plan %s made while order %s of plan %s was never filled", p.id, o.OrderID, prev.id))
				case !p.orders[0].CreatedAt.After(f.stored):
					a.LogicalDuplicates = append(a.LogicalDuplicates, fmt.Sprintf("plan %s made at %s, before the fill of order %s of plan %s was stored at %s",
						p.id, p.orders[0].CreatedAt.Format(time.RFC3339Nano), o.OrderID, prev.id, f.stored.Format(time.RFC3339Nano)))
				}
			}
		}
		ids := map[string]bool{}
		for _, o := range p.orders {
			ids[o.OrderID] = true
			prices[o.Instrument] = o.Price
		}
		for k := 1; k <= len(p.orders); k++ {
			if !ids[fmt.Sprintf("%s-%d", p.id, k)] {
				problem("plan %s: order %s-%d missing from the stream", p.id, p.id, k)
			}
		}
		breaching, values := book.breaching(prices)
		if len(breaching) == 0 {
			a.Unjustified = append(a.Unjustified, fmt.Sprintf("plan %s: no sleeve out of its band at %v (holdings %s)", p.id, prices, book))
		}
		if e := p.event; e != nil {
			switch {
			case !slices.Equal(e.Breaching, breaching):
				a.Unjustified = append(a.Unjustified, fmt.Sprintf("plan %s: event says breaching %v, the auditor finds %v", p.id, e.Breaching, breaching))
			case !holdingsAsOf.IsZero() && !e.HoldingsAsOf.Equal(holdingsAsOf):
				a.Unjustified = append(a.Unjustified, fmt.Sprintf("plan %s: made on holdings as of %s, the latest fill is of %s",
					p.id, e.HoldingsAsOf.Format(time.RFC3339Nano), holdingsAsOf.Format(time.RFC3339Nano)))
			}
			for _, s := range e.Sleeves {
				if v, ok := values[s.Sleeve]; !ok || !v.Equal(s.Value) {
					a.Unjustified = append(a.Unjustified, fmt.Sprintf("plan %s: sleeve %s valued %s, the auditor finds %s", p.id, s.Sleeve, s.Value, v))
				}
			}
			if len(e.Orders) != len(p.orders) {
				problem("plan event %s lists %d orders, the stream holds %d", p.id, len(e.Orders), len(p.orders))
			}
			for _, o := range e.Orders {
				if !ids[o.ID] {
					problem("plan event %s lists order %s, not in the stream", p.id, o.ID)
				}
			}
		}
		applied := map[string]bool{}
		for _, o := range p.orders {
			if f, ok := fills[o.OrderID]; ok && !applied[o.OrderID] {
				applied[o.OrderID] = true
				if err := book.apply(o, f.Fill); err != nil {
					problem("%v", err)
				}
				if f.At.After(holdingsAsOf) {
					holdingsAsOf = f.At
				}
			}
		}
	}

	// The final ledger: every order filled once, by its one fill, and the
	// holdings those fills give.
	for _, o := range final.Orders {
		if o.Status != ledger.Filled || !slices.Equal(o.FillIDs, []string{"fill-" + o.OrderID}) {
			problem("final ledger: order %s is %s with fills %v", o.OrderID, o.Status, o.FillIDs)
		}
	}
	if got := final.Accounts[faultAccount]; got == nil || !book.equal(got) {
		problem("final ledger holds %+v, the executor's fills give %s", got, book)
	}
	return a
}

// journaledOrders returns the order ids of the final ledger with its
// journal replayed, read from the state file.
func (h *faultHarness) journaledOrders() map[string]bool {
	h.t.Helper()
	out := map[string]bool{}
	for _, o := range h.finalLedger().Orders {
		out[o.OrderID] = true
	}
	return out
}

// finalLedger reads the policy's ledger, with its journal replayed, from
// the state file of the stopped daemon.
func (h *faultHarness) finalLedger() *ledger.Ledger {
	h.t.Helper()
	s, err := state.Open(filepath.Join(h.dir, "state"))
	if err != nil {
		h.t.Fatal(err)
	}
	defer s.Close()
	l, ok, err := s.Load(faultPolicy)
	if err != nil || !ok {
		h.t.Fatalf("final ledger: %v (found %v)", err, ok)
	}
	return l
}

// auditHoldings is the auditor's own account of the household: the
// holdings file plus every fill.
type auditHoldings struct {
	cash      decimal.Decimal
	positions map[string]decimal.Decimal
}

func auditBook(t *testing.T) *auditHoldings {
	t.Helper()
	hs, err := portfolio.ParseHoldings("holdings.yaml", []byte(testHoldings))
	if err != nil || len(hs.Accounts) != 1 {
		t.Fatalf("holdings: %v", err)
	}
	b := &auditHoldings{cash: hs.Accounts[0].Cash, positions: map[string]decimal.Decimal{}}
	for _, p := range hs.Accounts[0].Positions {
		b.positions[p.Instrument] = p.Quantity
	}
	return b
}

// breaching values the sleeves at prices and returns those out of their
// band (|value - target x total| > band x total), in the policy's order,
// with the values.
func (b *auditHoldings) breaching(prices map[string]decimal.Decimal) ([]string, map[string]decimal.Decimal) {
	values := map[string]decimal.Decimal{"stocks": decimal.Zero, "bonds": decimal.Zero, "cash": b.cash}
	for sym, q := range b.positions {
		s := auditSleeveOf[sym]
		values[s] = values[s].Add(q.Mul(prices[sym]))
	}
	total := decimal.Zero
	for _, v := range values {
		total = total.Add(v)
	}
	out := []string{}
	for _, s := range []string{"stocks", "bonds", "cash"} {
		if values[s].Sub(auditTargets[s].Mul(total)).Abs().GreaterThan(auditBand.Mul(total)) {
			out = append(out, s)
		}
	}
	return out, values
}

// apply applies an order's fill.
func (b *auditHoldings) apply(o events.Order, f events.Fill) error {
	value := f.Quantity.Mul(f.Price)
	switch o.Side {
	case "buy":
		b.positions[o.Instrument] = b.positions[o.Instrument].Add(f.Quantity)
		b.cash = b.cash.Sub(value).Sub(f.Fees)
	case "sell":
		b.positions[o.Instrument] = b.positions[o.Instrument].Sub(f.Quantity)
		b.cash = b.cash.Add(value).Sub(f.Fees)
	default:
		return fmt.Errorf("order %s: side %q", o.OrderID, o.Side)
	}
	if b.positions[o.Instrument].Sign() < 0 || b.cash.Sign() < 0 {
		return fmt.Errorf("order %s takes the holdings negative: %s", o.OrderID, b)
	}
	return nil
}

// equal compares with a ledger account.
func (b *auditHoldings) equal(a *ledger.Account) bool {
	if !a.Cash.Equal(b.cash) {
		return false
	}
	for _, sym := range slices.Concat(slices.Collect(maps.Keys(b.positions)), slices.Collect(maps.Keys(a.Positions))) {
		if !a.Positions[sym].Equal(b.positions[sym]) {
			return false
		}
	}
	return true
}

func (b *auditHoldings) String() string {
	syms := slices.Sorted(maps.Keys(b.positions))
	parts := []string{"cash " + b.cash.String()}
	for _, s := range syms {
		parts = append(parts, s+" "+b.positions[s].String())
	}
	return strings.Join(parts, ", ")
}

// startNATSProxy starts a proxy between the daemon and the NATS server at
// target that trips on the daemon's order publishes.
func startNATSProxy(t *testing.T, target string) *natsProxy {
	return &natsProxy{natsproxy.Start(t, target, events.DefaultPrefix+".orders.")}
}

// natsProxy is the daemon's way to NATS, armed with the trip anchors.
type natsProxy struct{ *natsproxy.Proxy }

// arm makes the proxy trip on the next order publish: tripNone,
// tripFirst or tripAll.
func (p *natsProxy) arm(anchor string) {
	p.Arm(map[string]natsproxy.Mode{tripNone: natsproxy.ForwardNone, tripFirst: natsproxy.ForwardFirst,
		tripAll: natsproxy.ForwardAll}[anchor])
}
