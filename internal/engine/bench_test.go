package engine

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/feeds"
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

// BenchmarkTick: one price tick with all eight prices moving reaches n
// loaded households whose check is due; each is valued, checked for
// breaches and queues its drift event. None breaches.
func BenchmarkTick(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("households=%d", n), func(b *testing.B) {
			start := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
			clk := clock.NewFake(start)
			e := loadHouseholds(b, n, clk)
			e.Quotes(quotes(clk.Now(), 0))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				clk.Advance(time.Minute)
				e.Quotes(quotes(clk.Now(), int64(i+1)))
			}
		})
	}
}

// BenchmarkQuoteOneHousehold: a quote of an instrument that one household
// of 10,001 holds (IYR) while the others are loaded: its cost must not grow
// with the households that do not hold it.
func BenchmarkQuoteOneHousehold(b *testing.B) {
	clk := clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC))
	e := loadMixed(b, b.TempDir(), 10000, clk)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		clk.Advance(time.Minute)
		e.Quotes([]feeds.Quote{{Symbol: "IYR", Price: decimal.New(8890+int64(i%7), -2), At: clk.Now(), Source: "bench"}})
	}
}

// oddPolicy is the household with its real-estate fund IYR instead of VNQ.
func oddPolicy(t testing.TB, name string) *policy.Policy {
	t.Helper()
	text := strings.Replace(strings.Replace(householdPolicy, "NAME", name, 1), "VNQ:       {sleeve: real_estate}", "IYR:       {sleeve: real_estate}", 1)
	p, err := policy.Parse(name+".yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// loadMixed loads n households on VNQ and one, "odd", on IYR.
func loadMixed(t testing.TB, dir string, n int, clk clock.Clock) *Engine {
	t.Helper()
	store, err := state.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := New(Options{Clock: clk, Publisher: nopPublisher{}, Store: store})
	h, err := portfolio.ParseHoldings("h.yaml", []byte(balancedHoldings))
	if err != nil {
		t.Fatal(err)
	}
	hOdd, err := portfolio.ParseHoldings("h.yaml", []byte(strings.Replace(balancedHoldings, "VNQ", "IYR", 1)))
	if err != nil {
		t.Fatal(err)
	}
	set := []Loaded{{Policy: oddPolicy(t, "odd"), Holdings: hOdd, HoldingsHash: "h"}}
	for i := range n {
		name := "household-" + strings.Repeat("0", 6-len(itoa(i))) + itoa(i)
		p, err := policy.Parse(name+".yaml", []byte(strings.Replace(householdPolicy, "NAME", name, 1)))
		if err != nil {
			t.Fatal(err)
		}
		set = append(set, Loaded{Policy: p, Holdings: h, HoldingsHash: "h"})
	}
	if err := e.Load(set); err != nil {
		t.Fatal(err)
	}
	qs := quotes(clk.Now(), 0)
	e.Quotes(append(qs, feeds.Quote{Symbol: "IYR", Price: decimal.RequireFromString("88.90"), At: clk.Now(), Source: "test"}))
	return e
}

func itoa(i int) string { return decimal.NewFromInt(int64(i)).String() }
