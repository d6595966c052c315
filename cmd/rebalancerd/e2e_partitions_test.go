package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	natstest "github.com/nats-io/nats-server/v2/test"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/partition"
)

var (
	partitionTest       = flag.Bool("partition-test", false, "run TestPartitionedGroup (three daemons, 3,000 households, about a minute)")
	partitionHouseholds = flag.Int("partition-households", 3000, "households of TestPartitionedGroup")
)

// Settings of TestPartitionedGroup.
const (
	partitionTTL   = 5 * time.Second
	partitionCount = 64
)

// writeHouseholds writes n households for a `dir:` policy source:
// policies/hNNNNN.yaml (policyYAML under the household's name) and
// holdings/hNNNNN.yaml (testHoldings), and returns their names.
func writeHouseholds(t testing.TB, dir, policyYAML string, n int) []string {
	t.Helper()
	names := make([]string, n)
	for i := range n {
		name := fmt.Sprintf("h%05d", i)
		names[i] = name
		writeFile(t, filepath.Join(dir, "policies", name+".yaml"), strings.Replace(policyYAML, "policy: test-household", "policy: "+name, 1))
		writeFile(t, filepath.Join(dir, "holdings", name+".yaml"), testHoldings)
	}
	return names
}

// TestPartitionedGroup runs three instances of the real binary in a
// partitioned group (ha.partitions 64) against one nats-server, sharing
// 3,000 households. Once the partitions are spread (22, 22, 20), every
// household breaches its band at once, and one instance is killed
// (SIGKILL) while it plans and publishes its share. The others take its
// partitions over when its leases expire, publish what it had journaled
// under the same ids and plan the rest. It checks that every household
// gets exactly one plan in the orders stream, that no order id is stored
// twice, and that no household is planned by two instances.
//
// Run it with -partition-test (about a minute; .ci/run runs it once).
func TestPartitionedGroup(t *testing.T) {
	if !*partitionTest {
		t.Skip("three daemons with 3,000 households: run with -partition-test")
	}
	bin := buildBinary(t)
	opts := natstest.DefaultTestOptions
	opts.Port = -1
	opts.JetStream = true
	opts.StoreDir = t.TempDir()
	srv := natstest.RunServer(&opts)
	t.Cleanup(srv.Shutdown)

	dir := t.TempDir()
	// A household with new quotes is evaluated at most every check_every
	// (2s); quotes come every 10s and at the breach, so that the
	// machine's time goes to planning and publishing rather than to
	// evaluating 1,000 households a second (the engine evaluates under
	// the lock the publisher needs).
	pol := policyText("threshold", "")
	for _, r := range [][2]string{{"check_every: 1m", "check_every: 2s"}, {"max_move: 40%", "max_move: 90%"},
		{"instruments:", "limits:\n  max_value_change: 100%\ninstruments:"}} {
		pol = strings.Replace(pol, r[0], r[1], 1)
	}
	n := *partitionHouseholds
	households := writeHouseholds(t, dir, pol, n)
	config := func(instance string) string {
		file := filepath.Join(dir, instance+".yaml")
		writeFile(t, file, fmt.Sprintf(`state_dir: state-%s
policies:
  - {dir: policies, holdings_dir: holdings}
feeds:
  - {name: bus, kind: nats}
nats:
  url: %s
http:
  listen: 127.0.0.1:0
ha:
  instance: %s
  lease_ttl: %s
  partitions: %d
`, instance, srv.ClientURL(), instance, partitionTTL, partitionCount))
		return file
	}
	names := []string{"a", "b", "c"}
	procs := map[string]*faultProc{}
	for _, name := range names {
		procs[name] = startProc(t, bin, config(name))
	}
	if logDir := os.Getenv("PARTITION_TEST_LOGS"); logDir != "" {
		// Every line of every instance, for a failure that the last lines
		// do not explain.
		t.Cleanup(func() {
			for name, p := range procs {
				p.logs.mu.Lock()
				_ = os.WriteFile(filepath.Join(logDir, name+".log"), p.logs.raw.Bytes(), 0o600)
				p.logs.mu.Unlock()
			}
		})
	}

	nc, err := natsgo.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var level atomic.Pointer[map[string]string]
	level.Store(&map[string]string{"VTI": "100", "BND": "100"})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() { publishPrices(ctx, nc, 10*time.Second, func() map[string]string { return *level.Load() }) })

	// The orders as they are stored (polling the stream would load the
	// server more than the daemons do).
	watch := watchOrders(ctx, t, js)

	// Spread: every partition held, 20 to 22 per instance, and every
	// instance has loaded the households of the partitions it holds.
	start := time.Now()
	var holders map[int]string
	checkFor(t, 3*time.Minute, 500*time.Millisecond, func() error {
		holders, err = partitionHolders(ctx, js)
		if err != nil {
			return err
		}
		per := map[string]int{}
		for _, h := range holders {
			per[h]++
		}
		if len(holders) != partitionCount || len(per) != 3 {
			return fmt.Errorf("partitions held: %v", per)
		}
		for h, c := range per {
			if c < partition.Target(partitionCount, 3)-2 || c > partition.Target(partitionCount, 3) {
				return fmt.Errorf("%s holds %d partitions: %v", h, c, per)
			}
			want := 0
			for _, name := range households {
				if holders[partition.Of(name, partitionCount)] == h {
					want++
				}
			}
			if l := lastLine(procs[h].logs, "partitions: households loaded"); l == nil || int(l["households"].(float64)) != want {
				return fmt.Errorf("%s has not loaded its %d households yet", h, want)
			}
		}
		return nil
	})
	t.Logf("%d households spread over 3 instances in %v", n, time.Since(start).Round(time.Millisecond))

	// Every household out of band; b is killed while planning its share.
	victim := procs["b"]
	level.Store(&map[string]string{"VTI": "150", "BND": "100"})
	publishQuotes(nc, *level.Load())
	checkFor(t, 60*time.Second, 5*time.Millisecond, func() error {
		if c := victim.logs.count("rebalance"); c < 20 {
			return fmt.Errorf("b made %d plans", c)
		}
		return nil
	})
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-victim.done
	bPlanned := planLines(victim.logs)
	bAcked := victim.logs.count("orders acknowledged by JetStream")
	var bParts []int
	for p, h := range holders {
		if h == "b" {
			bParts = append(bParts, p)
		}
	}
	sort.Ints(bParts)

	// The others take b's partitions over; every household ends up with
	// its plan in the stream.
	var tookOver time.Duration
	checkFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		hs, err := partitionHolders(ctx, js)
		if err != nil {
			return err
		}
		for _, p := range bParts {
			if h := hs[p]; h == "" || h == "b" {
				return fmt.Errorf("partition %d held by %q", p, h)
			}
		}
		return nil
	})
	tookOver = time.Since(killed)
	var done time.Duration
	checkFor(t, 10*time.Minute, 200*time.Millisecond, func() error {
		if got := watch.households(); got < n {
			return fmt.Errorf("%d of %d households have a plan in the stream", got, n)
		}
		return nil
	})
	done = time.Since(killed)
	planned := plansByHousehold(t, js) // read once more, message by message

	// Exactly one plan per household; every order id once.
	for _, name := range households {
		if ids := planned[name]; len(ids) != 1 {
			t.Errorf("%s: %d plans in the orders stream: %v", name, len(ids), ids)
		}
	}
	seen := map[string]int{}
	orders := 0
	for _, m := range readStream(t, js, "REBALANCE_ORDERS") {
		if strings.HasPrefix(m.subject, "rebalance.orders.") {
			seen[m.msgID]++
			orders++
		}
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("order %s stored %d times", id, c)
		}
	}
	// No household planned by two instances.
	by := map[string][]string{}
	for _, name := range names {
		for h := range planLines(procs[name].logs) {
			by[h] = append(by[h], name)
		}
	}
	for h, who := range by {
		if len(who) > 1 {
			t.Errorf("%s planned by %v", h, who)
		}
	}
	after := 0
	for _, name := range []string{"a", "c"} {
		for h := range planLines(procs[name].logs) {
			if slices.Contains(bParts, partition.Of(h, partitionCount)) {
				after++
			}
		}
	}
	requeued := 0 // b's journaled plans the survivors published under their ids
	for _, name := range []string{"a", "c"} {
		p := procs[name]
		p.logs.mu.Lock()
		for _, m := range p.logs.lines {
			if m["msg"] == "publishing orders journaled before the last stop" && slices.Contains(bParts, partition.Of(fmt.Sprint(m["policy"]), partitionCount)) {
				requeued++
			}
		}
		p.logs.mu.Unlock()
	}
	bShare := 0
	for _, name := range households {
		if slices.Contains(bParts, partition.Of(name, partitionCount)) {
			bShare++
		}
	}
	t.Logf("b held %d partitions (%d households); killed after journaling %d plans (%d acknowledged); "+
		"its partitions were taken over %v after the SIGKILL (lease TTL %v); "+
		"the survivors planned %d of its households and published %d plans it had journaled under their ids; every household had its plan %v after the SIGKILL; "+
		"%d orders in the stream, each once",
		len(bParts), bShare, len(bPlanned), bAcked, tookOver.Round(time.Millisecond), partitionTTL, after, requeued,
		done.Round(time.Millisecond), orders)
	if len(seen) != orders {
		t.Errorf("%d order messages, %d distinct ids", orders, len(seen))
	}
}

// publishPrices publishes quotes at the prices level returns every
// interval, each timed now, until ctx ends.
func publishPrices(ctx context.Context, nc *natsgo.Conn, every time.Duration, level func() map[string]string) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		publishQuotes(nc, level())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// orderWatch follows the orders stream: the households with an order.
type orderWatch struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (w *orderWatch) households() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.seen)
}

// watchOrders follows the orders stream with an ordered consumer until ctx
// ends.
func watchOrders(ctx context.Context, t *testing.T, js jetstream.JetStream) *orderWatch {
	t.Helper()
	w := &orderWatch{seen: map[string]bool{}}
	var cons jetstream.Consumer
	checkFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		var err error
		cons, err = js.OrderedConsumer(ctx, "REBALANCE_ORDERS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"rebalance.orders.>"}})
		return err
	})
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var o events.Order
		if json.Unmarshal(m.Data(), &o) == nil {
			w.mu.Lock()
			w.seen[o.Policy] = true
			w.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	context.AfterFunc(ctx, cc.Stop)
	t.Cleanup(cc.Stop)
	return w
}

// publishQuotes publishes one quote of each price, timed now.
func publishQuotes(nc *natsgo.Conn, prices map[string]string) {
	subj := events.Subjects{Prefix: events.DefaultPrefix}
	at := time.Now().UTC()
	for sym, px := range prices {
		data, _ := json.Marshal(events.Price{SchemaVersion: events.SchemaVersion, Symbol: sym, Price: decimal.RequireFromString(px), At: at})
		_ = nc.Publish(subj.Price(sym), data)
	}
}

// partitionHolders reads the holder of every held partition from the
// lease bucket.
func partitionHolders(ctx context.Context, js jetstream.JetStream) (map[int]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, "REBALANCE_LEASE")
	if err != nil {
		return nil, err
	}
	out := map[int]string{}
	for p := range partitionCount {
		e, err := kv.Get(ctx, fmt.Sprintf("partition.%d", p))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var v struct {
			Holder string `json:"holder"`
		}
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			return nil, err
		}
		out[p] = v.Holder
	}
	return out, nil
}

// plansByHousehold reads the orders stream: the distinct plan ids of each
// household's orders.
func plansByHousehold(t *testing.T, js jetstream.JetStream) map[string][]string {
	t.Helper()
	plans := map[string]map[string]bool{}
	for _, m := range readStream(t, js, "REBALANCE_ORDERS") {
		if !strings.HasPrefix(m.subject, "rebalance.orders.") {
			continue
		}
		var o events.Order
		if err := json.Unmarshal(m.data, &o); err != nil {
			t.Fatal(err)
		}
		if plans[o.Policy] == nil {
			plans[o.Policy] = map[string]bool{}
		}
		plans[o.Policy][o.PlanID] = true
	}
	out := make(map[string][]string, len(plans))
	for h, ids := range plans {
		out[h] = slices.Sorted(maps.Keys(ids))
	}
	return out
}

// planLines returns the households a process logged a plan for
// ("rebalance": journaled), with the number of plans.
func planLines(l *logLines) map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for _, m := range l.lines {
		if m["msg"] == "rebalance" {
			out[fmt.Sprint(m["policy"])]++
		}
	}
	return out
}

// lastLine returns the last log line with msg.
func lastLine(l *logLines, msg string) map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.lines) - 1; i >= 0; i-- {
		if l.lines[i]["msg"] == msg {
			return l.lines[i]
		}
	}
	return nil
}
