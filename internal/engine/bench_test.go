package engine

import (
	"context"
	"flag"
	"fmt"
	goruntime "runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/feeds"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/state"
)

// householdPolicy is the example household (8 instruments, 3
// accounts) as a threshold policy.
const householdPolicy = `policy: NAME
currency: USD
targets:
  equities: 55%
  bonds: 25%
  real_estate: 10%
  crypto:
    weight: 5%
    sleeves: {large_cap: 65%, balanced: 25%, growth: 10%}
  cash: 5%
bands: {absolute: 5%, relative: 25%, sleeves: {crypto: {absolute: 2%}}}
rebalance: {trigger: threshold, check_every: 1m, destination: band_edge, min_trade: "50"}
instruments:
  VTI:       {sleeve: equities, share: 70%}
  VXUS:      {sleeve: equities, share: 30%}
  BND:       {sleeve: bonds}
  VNQ:       {sleeve: real_estate}
  TM-LARGE:  {sleeve: crypto/large_cap, step: "0.0001"}
  TM-BAL:    {sleeve: crypto/balanced, step: "0.0001"}
  TM-GROWTH: {sleeve: crypto/growth, step: "0.0001"}
  VMFXX:     {sleeve: cash}
accounts:
  roth:    {type: roth_ira}
  k401:    {type: traditional_401k, may_hold: [VTI, BND, VMFXX]}
  taxable: {type: taxable, reserve: "20000"}
`

// balancedHoldings are close to target at benchPrices: nothing breaches.
const balancedHoldings = `as_of: 2026-11-20T21:00:00Z
accounts:
  roth:    {cash: "5000", positions: {VXUS: "537", VNQ: "225", TM-LARGE: "0.1576", TM-BAL: "1.366", TM-GROWTH: "10.4"}}
  k401:    {cash: "0", positions: {VTI: "270", BND: "693"}}
  taxable: {cash: "25000"}
`

var benchPrices = map[string]string{"VTI": "285.12", "VXUS": "61.40", "BND": "72.15", "VNQ": "88.90",
	"TM-LARGE": "41250.00", "TM-BAL": "1830.25", "TM-GROWTH": "96.10", "VMFXX": "1.00"}

// nopStore keeps nothing: benchmarks measure evaluation, not the state
// store.
type nopStore struct{}

func (nopStore) Load(string) (*ledger.Ledger, bool, error) { return nil, false, nil }
func (nopStore) Save(*ledger.Ledger, bool) error           { return nil }
func (nopStore) Append(string, state.Entry) error          { return nil }

type nopPublisher struct{}

func (nopPublisher) PublishOrders(context.Context, []events.Order, *events.Plan) (bool, error) {
	return false, nil
}
func (nopPublisher) PublishPlan(context.Context, events.Plan) error { return nil }
func (nopPublisher) PublishDrift(events.Drift) error                { return nil }

// householdSet parses n copies of the household, named household-0000...
func householdSet(b testing.TB, n int) []Loaded {
	b.Helper()
	h, err := portfolio.ParseHoldings("h.yaml", []byte(balancedHoldings))
	if err != nil {
		b.Fatal(err)
	}
	set := make([]Loaded, n)
	for i := range set {
		name := fmt.Sprintf("household-%04d", i)
		p, err := policy.Parse(name+".yaml", []byte(strings.Replace(householdPolicy, "NAME", name, 1)))
		if err != nil {
			b.Fatal(err)
		}
		set[i] = Loaded{Policy: p, Holdings: h, HoldingsHash: "h"}
	}
	return set
}

// loadHouseholds returns an engine running n copies of the household.
func loadHouseholds(b *testing.B, n int, clk clock.Clock) *Engine {
	b.Helper()
	store, err := state.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	e := New(Options{Clock: clk, Publisher: nopPublisher{}, Store: store})
	if err := e.Load(householdSet(b, n)); err != nil {
		b.Fatal(err)
	}
	return e
}

func quotes(at time.Time, bump int64) []feeds.Quote {
	var qs []feeds.Quote
	for sym, p := range benchPrices {
		price := decimal.RequireFromString(p)
		if sym == "VTI" {
			price = price.Add(decimal.New(bump%7, -2)) // small moves: no breach
		}
		qs = append(qs, feeds.Quote{Symbol: sym, Price: price, At: at, Source: "bench"})
	}
	return qs
}

// BenchmarkEvaluate1000Policies: one price tick reaching 1,000 loaded
// household policies whose check is due: each is valued (drift), checked
// for breaches and publishes its drift event (to a no-op publisher). No
// policy breaches, so none plans.
func BenchmarkEvaluate1000Policies(b *testing.B) {
	start := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
	clk := clock.NewFake(start)
	e := loadHouseholds(b, 1000, clk)
	e.Quotes(quotes(clk.Now(), 0))
	for _, name := range e.names {
		if rt := e.policies[name]; len(rt.blocked) != 0 || len(rt.breaching) != 0 {
			b.Fatalf("%s: blocked %v breaching %v", name, rt.blocked, rt.breaching)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		clk.Advance(time.Minute) // every policy's check is due
		e.Quotes(quotes(clk.Now(), int64(i+1)))
	}
	b.StopTimer()
	if e.policies[e.names[999]].lastEval != clk.Now() {
		b.Fatal("the last policy was not evaluated at the last tick")
	}
}

// movingQuotes are the eight prices, every one but the money-market
// fund's moved by a few hundredths of a percent (tick decides which way):
// no household breaches.
func movingQuotes(at time.Time, tick int) []feeds.Quote {
	qs := make([]feeds.Quote, 0, len(benchPrices))
	for _, sym := range []string{"BND", "TM-BAL", "TM-GROWTH", "TM-LARGE", "VMFXX", "VNQ", "VTI", "VXUS"} {
		price := decimal.RequireFromString(benchPrices[sym])
		if sym != "VMFXX" {
			price = price.Add(price.Mul(decimal.New(int64(tick%5-2), -4))).Round(4)
		}
		qs = append(qs, feeds.Quote{Symbol: sym, Price: price, At: at, Source: "bench"})
	}
	return qs
}

var scale = flag.Bool("scale", false, "run the engine benchmarks with 100,000 households too (minutes, about 1 GiB)")

// scaleSizes are the household counts of the scale benchmarks.
func scaleSizes() []int {
	if *scale {
		return []int{1000, 10000, 100000}
	}
	return []int{1000, 10000}
}

// clonedHouseholds returns n households on the example household checked
// every second, named household-000000..., sharing one parsed policy (as
// households on one model do; parsing 100,000 files is BenchmarkStartup's
// business) and one holdings file.
func clonedHouseholds(b testing.TB, n int) []Loaded {
	b.Helper()
	p, err := policy.Parse("h.yaml", []byte(strings.Replace(strings.Replace(householdPolicy, "NAME", "model", 1), "check_every: 1m", "check_every: 1s", 1)))
	if err != nil {
		b.Fatal(err)
	}
	h, err := portfolio.ParseHoldings("h.yaml", []byte(balancedHoldings))
	if err != nil {
		b.Fatal(err)
	}
	set := make([]Loaded, n)
	for i := range set {
		c := *p
		c.Name = fmt.Sprintf("household-%06d", i)
		set[i] = Loaded{Policy: &c, Holdings: h, HoldingsHash: "h"}
	}
	return set
}

// heapMiB is the live heap after a collection, in MiB.
func heapMiB() float64 {
	goruntime.GC()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc) / (1 << 20)
}

// cpuTime is the CPU time the process has used (user and system, all
// threads: the garbage collector's too). On a machine shared with other
// work it is a steadier measure than the wall clock, which counts the time
// other processes hold the cores.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// percentile returns the p-th percentile (0-100) of ds, sorting them.
func percentile(ds []time.Duration, p int) time.Duration {
	slices.Sort(ds)
	return ds[(len(ds)-1)*p/100]
}

// BenchmarkTick: one price tick with all eight prices moving reaches n
// loaded households whose check is due (every second, as each tick is a
// second after the last); none breaches. It reports the p99 of the ticks
// and the heap with the households loaded, after the ticks (-benchtime 100x: the p99 over
// 100 ticks). Drift events are rate-limited (engine.Options.DriftEvery,
// its default) where the engine does so.
func BenchmarkTick(b *testing.B) {
	for _, n := range scaleSizes() {
		b.Run(fmt.Sprintf("households=%d", n), func(b *testing.B) {
			clk := clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC))
			e := New(Options{Clock: clk, Publisher: nopPublisher{}, Store: nopStore{}})
			defer e.Close()
			if err := e.Load(clonedHouseholds(b, n)); err != nil {
				b.Fatal(err)
			}
			e.Quotes(movingQuotes(clk.Now(), 0))
			for _, name := range e.names {
				if rt := e.policies[name]; len(rt.blocked) != 0 || len(rt.breaching) != 0 {
					b.Fatalf("%s: blocked %v breaching %v", name, rt.blocked, rt.breaching)
				}
			}
			var ticks []time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; b.Loop(); i++ {
				clk.Advance(time.Second)
				start := time.Now()
				e.Quotes(movingQuotes(clk.Now(), i+1))
				ticks = append(ticks, time.Since(start))
			}
			cpu := cpuTime() - cpu0
			b.StopTimer()
			b.ReportMetric(heapMiB(), "heap-MiB") // after the ticks: the steady state
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(len(ticks)), "cpu-ms/tick")
			if last := e.policies[e.names[n-1]]; !last.lastEval.Equal(clk.Now()) {
				b.Fatal("the last household was not evaluated at the last tick")
			}
			b.ReportMetric(float64(percentile(ticks, 99).Microseconds())/1000, "p99-ms")
		})
	}
}

// BenchmarkQuoteOneHousehold: a quote of an instrument that one household
// of n+1 holds (IYR) while the others are loaded: its cost must not grow
// with the households that do not hold it.
func BenchmarkQuoteOneHousehold(b *testing.B) {
	for _, n := range scaleSizes()[1:] {
		b.Run(fmt.Sprintf("households=%d", n), func(b *testing.B) {
			clk := clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC))
			e := loadMixed(b, n, clk)
			defer e.Close()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				clk.Advance(time.Minute)
				e.Quotes([]feeds.Quote{{Symbol: "IYR", Price: decimal.New(8890+int64(i%7), -2), At: clk.Now(), Source: "bench"}})
			}
		})
	}
}

// BenchmarkQuoteToOrders: the time from a quote that makes the one
// household holding IYR breach to its orders handed to the publisher
// (Options.OnPublished; the publisher does nothing, so that this is the
// engine's share of the daemon's tick-to-ack), with n other households
// loaded. Between iterations (untimed) the orders are filled.
func BenchmarkQuoteToOrders(b *testing.B) {
	for _, n := range append([]int{0}, scaleSizes()[1:]...) {
		b.Run(fmt.Sprintf("households=%d", n), func(b *testing.B) {
			clk := clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC))
			published := make(chan time.Time, 1)
			e := newMixed(b, n, clk, func(o *Options) {
				o.OnPublished = func(string, string, int) { published <- time.Now() }
			})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = e.Run(ctx) }()
			defer func() { cancel(); <-done }()
			var lat []time.Duration
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				clk.Advance(2 * time.Second)             // past check_every and the cooldown
				price := []string{"96.90", "88.90"}[i%2] // 9%: within max_move
				qs := []feeds.Quote{{Symbol: "IYR", Price: decimal.RequireFromString(price), At: clk.Now(), Source: "bench"}}
				b.StartTimer()
				start := time.Now()
				e.Quotes(qs)
				select {
				case at := <-published:
					lat = append(lat, at.Sub(start))
				case <-time.After(10 * time.Second):
					b.Fatalf("iteration %d: no plan published", i)
				}
				b.StopTimer()
				fillPending(b, e, "odd", clk.Now())
				b.StartTimer()
			}
			b.StopTimer()
			b.ReportMetric(float64(percentile(lat, 50).Microseconds()), "p50-µs")
			b.ReportMetric(float64(percentile(lat, 99).Microseconds()), "p99-µs")
		})
	}
}

// fillPending fills the pending orders of a household, once the outbox
// has published them.
func fillPending(b *testing.B, e *Engine, name string, now time.Time) {
	b.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.mu.Lock()
		idle := len(e.outbox) == 0 && !e.pubBusy
		var fills []Report
		for _, o := range e.policies[name].ledger.Pending() {
			fills = append(fills, Report{Policy: name, Account: o.Account, Fill: &events.Fill{SchemaVersion: events.SchemaVersion,
				FillID: "f-" + o.OrderID, OrderID: o.OrderID, Status: events.FillFilled, Quantity: o.Remaining(), Price: o.Price, At: now}})
		}
		e.mu.Unlock()
		if idle {
			for _, f := range fills {
				if err := e.HandleReport(f); err != nil {
					b.Fatal(err)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			b.Fatal("the outbox did not drain")
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// oddPolicy is the household with its real-estate fund IYR instead of VNQ.
func oddPolicy(t testing.TB, name string) *policy.Policy {
	t.Helper()
	text := strings.Replace(strings.Replace(householdPolicy, "NAME", name, 1), "VNQ:       {sleeve: real_estate}", "IYR:       {sleeve: real_estate}", 1)
	text = strings.Replace(text, "check_every: 1m,", "check_every: 1s, cooldown: 1s,", 1)
	text = strings.Replace(text, "currency: USD\n", "currency: USD\nlimits: {max_plans_per_day: 10000}\n", 1)
	text = strings.Replace(text, "sleeves: {crypto: {absolute: 2%}}", "sleeves: {crypto: {absolute: 2%}, real_estate: {absolute: 0.2%}}", 1)
	p, err := policy.Parse(name+".yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// loadMixed loads n households on VNQ and one, "odd", on IYR, and gives
// them their prices.
func loadMixed(t testing.TB, n int, clk clock.Clock) *Engine {
	return newMixed(t, n, clk, nil)
}

// newMixed is loadMixed with options changed by opt (when not nil). The
// odd household is checked every second, with a cooldown of a second.
func newMixed(t testing.TB, n int, clk clock.Clock, opt func(*Options)) *Engine {
	t.Helper()
	o := Options{Clock: clk, Publisher: nopPublisher{}, Store: nopStore{}}
	if opt != nil {
		opt(&o)
	}
	e := New(o)
	hOdd, err := portfolio.ParseHoldings("h.yaml", []byte(strings.Replace(balancedHoldings, "VNQ", "IYR", 1)))
	if err != nil {
		t.Fatal(err)
	}
	odd := oddPolicy(t, "odd")
	set := append([]Loaded{{Policy: odd, Holdings: hOdd, HoldingsHash: "h"}}, clonedHouseholds(t, n)...)
	if err := e.Load(set); err != nil {
		t.Fatal(err)
	}
	qs := quotes(clk.Now(), 0)
	e.Quotes(append(qs, feeds.Quote{Symbol: "IYR", Price: decimal.RequireFromString("88.90"), At: clk.Now(), Source: "test"}))
	return e
}

// BenchmarkEvaluateOne: one household's evaluation at new prices, settled
// by the breach screen (screened) or in full (drift and decimals, the
// code before the screen), and the price guard's share: the eight quotes
// offered to it.
func BenchmarkEvaluateOne(b *testing.B) {
	for _, mode := range []string{"screened", "full", "offer"} {
		b.Run(mode, func(b *testing.B) {
			clk := clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC))
			e := New(Options{Clock: clk, Publisher: nopPublisher{}, Store: nopStore{}, DriftEvery: time.Hour})
			defer e.Close()
			e.noScreen = mode == "full"
			if err := e.Load(clonedHouseholds(b, 1)); err != nil {
				b.Fatal(err)
			}
			e.Quotes(movingQuotes(clk.Now(), 0))
			rt := e.rts[0]
			var sets [5][]feeds.Quote // the prices, made once: the loop times the engine
			for k := range sets {
				sets[k] = movingQuotes(clk.Now(), k)
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				clk.Advance(time.Second)
				now := clk.Now()
				for _, q := range sets[(i+1)%5] {
					q.At = now
					rt.guard.Offer(q, now)
				}
				if mode != "offer" {
					e.evaluate(rt, now)
				}
			}
			b.StopTimer()
			if mode == "screened" && !rt.snapStale {
				b.Fatal("the last evaluation was not screened")
			}
		})
	}
}
