package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"sort"
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

	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/nats/natsproxy"
)

var (
	haCycles = flag.Int("ha-cycles", 0, "cycles of TestHAChaos (default: one per fault)")
	haSeed   = flag.Uint64("ha-seed", 0, "seed of TestHAChaos (default: the time)")
)

// chaosTTL is TestHAChaos's lease TTL: the key lives 2s, a holder stops
// publishing 1.4s after its last confirmed renewal, renews every 300ms
// and reconnects to NATS every 300ms.
const chaosTTL = 3 * time.Second

// The faults of TestHAChaos, one per cycle in turn.
const (
	faultAcks    = "pause-after-acks"    // SIGSTOP the holder right after JetStream acked its orders; SIGCONT when the other acquires
	faultAcquire = "pause-until-acquire" // SIGSTOP the holder, breach; SIGCONT the moment the other acquires
	faultLong    = "pause-long"          // SIGSTOP the holder for 0.9-1.5 TTL, breach
	faultShort   = "pause-short"         // SIGSTOP the holder for 0.2-0.4 TTL (its lease survives), breach
	faultNATS    = "nats-restart"        // breach, restart NATS for 100-500ms
)

var chaosFaults = []string{faultAcks, faultAcquire, faultShort, faultNATS, faultLong}

// TestHAChaos runs two instances of the real binary in a high-availability
// group against one nats-server, each through a proxy that records every
// message it publishes, with an executor filling the orders. Each cycle
// breaches the policy's band under one fault: the holder paused (SIGSTOP)
// for lengths around the TTL and resumed at the worst moments (when the
// other instance acquires the lease, or after JetStream acknowledged its
// orders), or NATS restarted for 100-500ms. An instance that steps down is
// started again 300ms after it exits, as systemd would. It checks:
//   - no message of any kind is published by an instance after another
//     acquired the lease;
//   - no instance steps down while its lease is current (the key holds its
//     write and has not expired);
//   - every breach is planned within 2 TTL of the holder's loss (or of the
//     breach, without loss);
//   - every step-down exits within a second.
//
// -ha-cycles runs more cycles, -ha-seed replays one run.
func TestHAChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("TestHAChaos runs the real binary for about a minute")
	}
	seed := *haSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	cycles := *haCycles
	if cycles == 0 {
		cycles = len(chaosFaults)
	}
	t.Logf("seed %d (replay with -ha-seed %d), %d cycles, lease TTL %v", seed, seed, cycles, chaosTTL)
	h := newChaosHarness(t, seed)
	for c := range cycles {
		h.cycle(c, chaosFaults[c%len(chaosFaults)])
	}
	h.stop()
	h.check()
}

type chaosHarness struct {
	t    *testing.T
	bin  string
	dir  string
	rng  *rand.Rand
	opts server.Options

	srvMu sync.Mutex
	srv   *server.Server

	nc    *natsgo.Conn
	level atomic.Pointer[map[string]string]
	flip  int

	inst  map[string]*chaosInstance
	names []string

	leaseMu sync.Mutex
	acqs    []acquisition // in order of acquisition
	latest  leaseEntry    // the lease key as last read
	onAcq   chan acquisition

	stopping atomic.Bool
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	results []cycleResult
}

// acquisition is one instance's acquisition of the lease, as read from
// the key (the value's acquisition time: the start of the create, which
// is no later than the server's).
type acquisition struct {
	holder, token string
	at            time.Time
}

// leaseEntry is the lease key as read, with the server's time of the
// write.
type leaseEntry struct {
	rev           uint64
	holder, token string
	written       time.Time
}

// chaosInstance is one member of the group: its proxy, configuration and
// successive processes.
type chaosInstance struct {
	name  string
	cfg   string
	proxy *natsproxy.Proxy

	mu    sync.Mutex
	procs []*chaosProc
}

// chaosProc is one process of an instance.
type chaosProc struct {
	*faultProc
	started time.Time
	exited  time.Time // zero while running
	paused  atomic.Bool

	// expiredBy is the end of the last pause long enough for the lease
	// key to expire (two thirds of the TTL without a renewal); zero if
	// none. Written by the cycle before it resumes the process, read
	// after the run.
	expiredBy atomic.Pointer[time.Time]
}

// cycleResult is what one cycle measured.
type cycleResult struct {
	fault    string
	detail   string
	loss     time.Time // the holder paused (zero without a takeover)
	breach   time.Time
	planned  time.Time // the first order publish of the cycle's plan
	takeover bool
}

func newChaosHarness(t *testing.T, seed uint64) *chaosHarness {
	h := &chaosHarness{t: t, bin: buildBinary(t), dir: t.TempDir(), rng: rand.New(rand.NewPCG(seed, 1)),
		inst: map[string]*chaosInstance{}, onAcq: make(chan acquisition, 16)}
	h.opts = natstest.DefaultTestOptions
	h.opts.Port, h.opts.JetStream, h.opts.StoreDir = -1, true, t.TempDir()
	h.srv = natstest.RunServer(&h.opts)
	h.opts.Port = h.srv.Addr().(*net.TCPAddr).Port // restarts reuse the port
	t.Cleanup(func() {
		h.srvMu.Lock()
		defer h.srvMu.Unlock()
		h.srv.Shutdown()
	})
	h.ctx, h.cancel = context.WithCancel(context.Background())
	t.Cleanup(func() { h.stopping.Store(true); h.cancel(); h.wg.Wait() })

	pol := policyText("threshold", "")
	// As in the fault suite: every flip of the prices is a plan.
	for _, r := range [][2]string{{"check_every: 1m", "check_every: 1s"}, {"cooldown: 1m", "cooldown: 1s"},
		{"max_move: 40%", "max_move: 90%"}, {"instruments:", "limits:\n  max_plans_per_day: 10000\n  max_value_change: 100%\ninstruments:"}} {
		pol = strings.Replace(pol, r[0], r[1], 1)
	}
	writeFile(t, filepath.Join(h.dir, "policies", "test.yaml"), pol)
	writeFile(t, filepath.Join(h.dir, "holdings", "test.yaml"), testHoldings)

	var err error
	h.nc, err = natsgo.Connect(h.srv.ClientURL(), natsgo.MaxReconnects(-1), natsgo.ReconnectWait(20*time.Millisecond),
		natsgo.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.nc.Close)
	js, err := jetstream.New(h.nc)
	if err != nil {
		t.Fatal(err)
	}
	h.level.Store(&faultLevels[1])
	h.wg.Go(func() { publishLevel(h.ctx, h.nc, func() map[string]string { return *h.level.Load() }) })
	x := &faultExecutor{js: js, rng: rand.New(rand.NewPCG(seed, 2)), delivered: map[string]int{}, filled: map[string]bool{}}
	h.wg.Go(func() { x.run(h.ctx) })

	for _, name := range []string{"a", "b"} {
		in := &chaosInstance{name: name, proxy: natsproxy.Start(t, h.srv.Addr().String(), events.DefaultPrefix+".orders.")}
		in.proxy.Record(events.DefaultPrefix + ".")
		in.cfg = filepath.Join(h.dir, name+".yaml")
		writeFile(t, in.cfg, fmt.Sprintf(`state_dir: state-%s
policies:
  - {policy: policies/test.yaml, holdings: holdings/test.yaml}
feeds:
  - {name: bus, kind: nats}
nats:
  url: nats://%s
http:
  listen: 127.0.0.1:0
ha:
  instance: %s
  lease_ttl: %s
`, name, in.proxy.Addr(), name, chaosTTL))
		h.inst[name] = in
		h.names = append(h.names, name)
		h.wg.Go(func() { h.supervise(in) })
		if name == "a" {
			checkFor(t, 30*time.Second, 10*time.Millisecond, func() error {
				if p := in.current(); p == nil || p.logs.find("high availability: this instance is the planner") == nil {
					return errors.New("a is not the planner yet")
				}
				return nil
			})
		}
	}
	h.wg.Go(func() { h.watchLease(js) })
	return h
}

// supervise runs an instance's processes: each one that exits is started
// again 300ms later, as systemd's Restart=on-failure would.
func (h *chaosHarness) supervise(in *chaosInstance) {
	for !h.stopping.Load() {
		p := &chaosProc{faultProc: startProcess(h.t, h.bin, in.cfg), started: time.Now()}
		in.mu.Lock()
		in.procs = append(in.procs, p)
		in.mu.Unlock()
		select {
		case <-p.done:
		case <-h.ctx.Done():
			_ = p.cmd.Process.Signal(syscall.SIGCONT)
			_ = p.cmd.Process.Kill()
			<-p.done
			return
		}
		in.mu.Lock()
		p.exited = time.Now()
		in.mu.Unlock()
		pause(h.ctx, 300*time.Millisecond)
	}
}

// current returns the instance's running process, or nil.
func (in *chaosInstance) current() *chaosProc {
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.procs) == 0 || !in.procs[len(in.procs)-1].exited.IsZero() {
		return nil
	}
	return in.procs[len(in.procs)-1]
}

// watchLease reads the lease key every 5ms and records each acquisition
// (a token not seen before).
func (h *chaosHarness) watchLease(js jetstream.JetStream) {
	var kv jetstream.KeyValue
	seen := map[string]bool{}
	for h.ctx.Err() == nil {
		if kv == nil {
			ctx, cancel := context.WithTimeout(h.ctx, time.Second)
			kv, _ = js.KeyValue(ctx, "REBALANCE_LEASE")
			cancel()
		}
		if kv != nil {
			ctx, cancel := context.WithTimeout(h.ctx, time.Second)
			e, err := kv.Get(ctx, "planner")
			cancel()
			if err == nil {
				var v struct {
					Holder   string    `json:"holder"`
					Token    string    `json:"token"`
					Acquired time.Time `json:"acquired"`
				}
				if json.Unmarshal(e.Value(), &v) == nil {
					h.leaseMu.Lock()
					h.latest = leaseEntry{rev: e.Revision(), holder: v.Holder, token: v.Token, written: e.Created()}
					// One acquisition per holder and acquisition time (the
					// token, with the time, names it; older versions had none).
					if id := v.Holder + "|" + v.Token + "|" + v.Acquired.String(); !seen[id] {
						seen[id] = true
						a := acquisition{holder: v.Holder, token: v.Token, at: v.Acquired}
						h.acqs = append(h.acqs, a)
						select {
						case h.onAcq <- a:
						default:
						}
					}
					h.leaseMu.Unlock()
				}
			} else if errors.Is(err, jetstream.ErrKeyNotFound) {
				h.leaseMu.Lock()
				h.latest = leaseEntry{}
				h.leaseMu.Unlock()
			}
		}
		pause(h.ctx, 5*time.Millisecond)
	}
}

// holder waits until the lease is held by a running process that has
// started planning and the other instance is running, and returns the
// holder.
func (h *chaosHarness) holder() (*chaosInstance, *chaosProc) {
	var in *chaosInstance
	var p *chaosProc
	checkFor(h.t, 30*time.Second, 10*time.Millisecond, func() error {
		h.leaseMu.Lock()
		name := h.latest.holder
		h.leaseMu.Unlock()
		if name == "" {
			return errors.New("no lease holder")
		}
		in = h.inst[name]
		p = in.current()
		if p == nil || p.logs.find("rebalancerd started") == nil {
			return fmt.Errorf("holder %s not started", name)
		}
		for _, other := range h.inst {
			if other != in && other.current() == nil {
				return fmt.Errorf("%s not running", other.name)
			}
		}
		return nil
	})
	return in, p
}

// settled waits until the holder's policy has nothing pending and no
// breach, with a last plan other than prev (unless ""), and returns its
// last plan id.
func (h *chaosHarness) settled(what, prev string) string {
	var last string
	checkFor(h.t, 60*time.Second, 20*time.Millisecond, func() error {
		_, p := h.holder()
		ps, err := procStatus(p)
		if err != nil {
			return err
		}
		if len(ps.PendingOrders) > 0 || ps.Unacked > 0 || len(ps.Breaching) > 0 {
			return fmt.Errorf("%s: %d pending, %d unacknowledged, breaching %v", what, len(ps.PendingOrders), ps.Unacked, ps.Breaching)
		}
		if prev != "" && ps.LastPlanID == prev {
			return fmt.Errorf("%s: no new plan yet", what)
		}
		last = ps.LastPlanID
		return nil
	})
	return last
}

// procStatus reads the test policy's status from a planning process.
func procStatus(p *chaosProc) (engine.PolicyStatus, error) {
	role, ps, err := policyStatus(p.logs)
	if err == nil && role != "planner" {
		err = fmt.Errorf("role %q", role)
	}
	return ps, err
}

// breach moves the prices to the other level: the policy breaches its band.
func (h *chaosHarness) breach() time.Time {
	h.flip++
	h.level.Store(&faultLevels[(h.flip+1)%2])
	return time.Now()
}

func (h *chaosHarness) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(h.rng.Int64N(int64(hi-lo)+1))
}

// awaitAcquisition waits for an acquisition by another instance than
// holder and returns it.
func (h *chaosHarness) awaitAcquisition(holder string, limit time.Duration) (acquisition, bool) {
	deadline := time.After(limit)
	for {
		select {
		case a := <-h.onAcq:
			if a.holder != holder {
				return a, true
			}
		case <-deadline:
			return acquisition{}, false
		}
	}
}

// cycle breaches the band under one fault and waits for the plan to be
// filled.
func (h *chaosHarness) cycle(c int, fault string) {
	t := h.t
	in, p := h.holder()
	last := h.settled(fmt.Sprintf("cycle %d: before", c), "")
	for len(h.onAcq) > 0 {
		<-h.onAcq
	}
	res := cycleResult{fault: fault}
	stop := func() {
		if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		p.paused.Store(true)
		res.loss = time.Now()
	}
	resume := func() {
		if now := time.Now(); now.Sub(res.loss) >= chaosTTL*2/3 {
			p.expiredBy.Store(&now)
		}
		p.paused.Store(false)
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
	}
	switch fault {
	case faultAcks:
		stopped := make(chan struct{})
		in.proxy.AfterReply(ordersAck, func() { stop(); close(stopped) })
		res.breach = h.breach()
		select {
		case <-stopped:
		case <-time.After(30 * time.Second):
			t.Fatalf("cycle %d: %s never published orders; its log:\n%s", c, in.name, p.logs.tail(30))
		}
		a, ok := h.awaitAcquisition(in.name, 4*chaosTTL)
		resume()
		res.takeover = ok
		res.detail = fmt.Sprintf("resumed %v after the pause, at %s's acquisition", time.Since(res.loss).Round(time.Millisecond), a.holder)
	case faultAcquire:
		stop()
		res.breach = h.breach()
		a, ok := h.awaitAcquisition(in.name, 4*chaosTTL)
		resume()
		res.takeover = ok
		res.detail = fmt.Sprintf("resumed %v after the pause, at %s's acquisition", time.Since(res.loss).Round(time.Millisecond), a.holder)
	case faultLong, faultShort:
		d := h.between(chaosTTL*9/10, chaosTTL*3/2)
		if fault == faultShort {
			d = h.between(chaosTTL/5, chaosTTL*2/5)
		}
		stop()
		res.breach = h.breach()
		pause(h.ctx, d)
		resume()
		res.takeover = fault == faultLong
		res.detail = fmt.Sprintf("paused %v", d.Round(time.Millisecond))
		if !res.takeover {
			res.loss = time.Time{}
		}
	case faultNATS:
		res.breach = h.breach()
		d := h.between(100*time.Millisecond, 500*time.Millisecond)
		pause(h.ctx, h.between(0, 50*time.Millisecond)) // while planning or publishing
		h.srvMu.Lock()
		h.srv.Shutdown()
		h.srv.WaitForShutdown()
		time.Sleep(d) // the outage itself
		h.srv = natstest.RunServer(&h.opts)
		h.srvMu.Unlock()
		res.detail = fmt.Sprintf("NATS down %v", d.Round(time.Millisecond))
	}
	plan := h.settled(fmt.Sprintf("cycle %d (%s): after", c, fault), last)
	// The first order publish after the breach, by any instance: with a
	// takeover, by another instance than the paused one unless the old
	// holder published it before its pause.
	res.planned = h.firstOrderAfter(res.breach)
	h.results = append(h.results, res)
	t.Logf("cycle %d: %s (%s): plan %s, orders published %v after the breach",
		c, fault, res.detail, plan, res.planned.Sub(res.breach).Round(time.Millisecond))
}

// firstOrderAfter returns the time of the first order publish after t.
func (h *chaosHarness) firstOrderAfter(t time.Time) time.Time {
	var first time.Time
	for _, in := range h.inst {
		for _, r := range in.proxy.Published() {
			if strings.HasPrefix(r.Subject, "rebalance.orders.") && r.At.After(t) && (first.IsZero() || r.At.Before(first)) {
				first = r.At
			}
		}
	}
	return first
}

// stop ends the instances (SIGTERM), the clients and the supervisors.
func (h *chaosHarness) stop() {
	h.stopping.Store(true)
	for _, in := range h.inst {
		if p := in.current(); p != nil {
			_ = p.cmd.Process.Signal(syscall.SIGCONT)
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, in := range h.inst {
		in.mu.Lock()
		procs := append([]*chaosProc(nil), in.procs...)
		in.mu.Unlock()
		for _, p := range procs {
			select {
			case <-p.done:
			case <-time.After(30 * time.Second):
				h.t.Errorf("%s did not stop", in.name)
			}
		}
	}
	h.cancel()
	h.wg.Wait()
}

// check asserts the properties over everything recorded.
func (h *chaosHarness) check() {
	t := h.t
	h.leaseMu.Lock()
	acqs := append([]acquisition(nil), h.acqs...)
	h.leaseMu.Unlock()
	sort.Slice(acqs, func(i, j int) bool { return acqs[i].at.Before(acqs[j].at) })
	var lines []string
	for _, a := range acqs {
		lines = append(lines, fmt.Sprintf("%s %s", a.at.Format("15:04:05.000"), a.holder))
	}
	t.Logf("acquisitions: %s", strings.Join(lines, ", "))

	// No message published by an instance after another acquired.
	published := 0
	for _, in := range h.inst {
		for _, r := range in.proxy.Published() {
			published++
			var last *acquisition
			for i := range acqs {
				if !acqs[i].at.After(r.At) {
					last = &acqs[i]
				}
			}
			if last != nil && last.holder != in.name {
				t.Errorf("%s published %s at %s, after %s acquired the lease at %s", in.name, r.Subject,
					r.At.Format("15:04:05.000000"), last.holder, last.at.Format("15:04:05.000000"))
			}
		}
	}

	// Step-downs: not of a current lease, each exiting within a second.
	stepDowns := 0
	for _, in := range h.inst {
		in.mu.Lock()
		procs := append([]*chaosProc(nil), in.procs...)
		in.mu.Unlock()
		for _, p := range procs {
			line := p.logs.find("high availability: no longer the planner; publishing stopped, stepping down")
			if line == nil {
				continue
			}
			stepDowns++
			at, err := time.Parse("2006-01-02T15:04:05.000Z0700", fmt.Sprint(line["ts"]))
			if err != nil {
				t.Errorf("step-down log time %v: %v", line["ts"], err)
				continue
			}
			// The lease was current if no other instance had acquired it
			// since this process's own acquisition, and the process was
			// not paused for longer than the key lives since then (the key
			// then expires whether or not another instance is quick
			// enough to take it, and stepping down is right).
			var last *acquisition
			for i := range acqs {
				if !acqs[i].at.After(at) {
					last = &acqs[i]
				}
			}
			expired := p.expiredBy.Load()
			if last != nil && last.holder == in.name && !last.at.Before(p.started) &&
				(expired == nil || expired.Before(last.at) || expired.After(at)) {
				t.Errorf("%s stepped down at %s while its lease was current (%v): %v", in.name, at.Format("15:04:05.000"),
					line["error"], p.logs.tail(20))
			}
			if p.exited.IsZero() {
				t.Errorf("%s stepped down at %s and never exited", in.name, at.Format("15:04:05.000"))
			} else if d := p.exited.Sub(at); d > time.Second {
				t.Errorf("%s stepped down at %s and exited %v later; its log:\n%s", in.name, at.Format("15:04:05.000"), d.Round(time.Millisecond), p.logs.tail(25))
			} else {
				t.Logf("%s stepped down (%v), exited %v later", in.name, line["error"], d.Round(time.Millisecond))
			}
		}
	}

	// Every breach planned within 2 TTL of the holder's loss, or of the
	// breach without one.
	for i, r := range h.results {
		from := r.breach
		if r.loss.After(from) {
			from = r.loss
		}
		if r.fault == faultAcks && !r.planned.IsZero() && r.planned.Before(r.loss) {
			continue // planned and published by the holder before its pause
		}
		if r.planned.IsZero() {
			t.Errorf("cycle %d (%s): no order publish recorded", i, r.fault)
		} else if d := r.planned.Sub(from); d > 2*chaosTTL {
			t.Errorf("cycle %d (%s): breach planned %v after the loss or breach, more than 2 TTL", i, r.fault, d.Round(time.Millisecond))
		}
	}
	t.Logf("figures: %d cycles, %d acquisitions, %d step-downs, %d messages published", len(h.results), len(acqs), stepDowns, published)
}

// ordersAck is in JetStream's acknowledgement of a message stored in the
// orders stream.
var ordersAck = []byte(`"stream":"REBALANCE_ORDERS"`)
