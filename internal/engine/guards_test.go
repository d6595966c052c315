package engine

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/feeds"
	"github.com/rebalancerd/rebalancerd/internal/metrics"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
)

// guardHousehold is the example household named name, with the price
// rules prices (YAML flow mapping, empty for the defaults).
func guardHousehold(t *testing.T, name, prices string) Loaded {
	t.Helper()
	text := strings.Replace(householdPolicy, "NAME", name, 1)
	if prices != "" {
		text = strings.Replace(text, "currency: USD\n", "currency: USD\nprices: {"+prices+"}\n", 1)
	}
	p, err := policy.Parse(name+".yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	h, err := portfolio.ParseHoldings("h.yaml", []byte(balancedHoldings))
	if err != nil {
		t.Fatal(err)
	}
	return Loaded{Policy: p, Holdings: h, HoldingsHash: "h"}
}

// TestSharedPriceGuards: households with the same price rules share one
// guard, which judges a quote once for all of them (a held move is logged
// once); other rules judge it on their own. A reload moves a household to
// the guard of its new rules, and a guard goes with its last household.
func TestSharedPriceGuards(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC))
	core, logs := observer.New(zapcore.InfoLevel)
	e := New(Options{Clock: clk, Publisher: nopPublisher{}, Store: nopStore{}, Log: zap.New(core)})
	defer e.Close()
	a, b, c := guardHousehold(t, "a", ""), guardHousehold(t, "b", "max_move: 10%"), guardHousehold(t, "c", "max_move: 20%")
	if err := e.Load([]Loaded{a, b, c}); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	ga, gb, gc := e.policies["a"].guard, e.policies["b"].guard, e.policies["c"].guard
	e.mu.Unlock()
	if ga != gb || ga == gc || len(e.guardList) != 2 {
		t.Fatalf("a and b (the same rules: max_move 10%% is the default) must share a guard, c have its own: %p %p %p, %d guards", ga, gb, gc, len(e.guardList))
	}
	e.Quotes(quotes(clk.Now(), 0))
	clk.Advance(time.Minute)
	qs := quotes(clk.Now(), 0)
	for i := range qs {
		if qs[i].Symbol == "TM-GROWTH" {
			qs[i].Price = qs[i].Price.Mul(decimal.RequireFromString("1.15")) // held under 10%, accepted under 20%
		}
	}
	e.Quotes(qs)
	e.mu.Lock()
	for _, name := range []string{"a", "b"} {
		if rt := e.policies[name]; !hasReason(rt.blocked, metrics.BlockQuarantinedPrice) {
			t.Errorf("%s: not blocked by the held move: %v", name, rt.blocked)
		}
	}
	if rt := e.policies["c"]; hasReason(rt.blocked, metrics.BlockQuarantinedPrice) {
		t.Errorf("c: blocked though its max_move is 20%%: %v", rt.blocked)
	}
	e.mu.Unlock()
	held := logs.FilterMessageSnippet("price quarantined").All()
	if len(held) != 1 || held[0].ContextMap()["households"] != int64(2) || held[0].ContextMap()["symbol"] != "TM-GROWTH" {
		t.Fatalf("want one log line for the held move of a and b's guard, got %v", held)
	}

	// c under rules of its own gets a new guard with the prices it had.
	c = guardHousehold(t, "c", "max_move: 30%")
	if err := e.Load([]Loaded{a, b, c}); err != nil {
		t.Fatal(err)
	}
	e.EvaluateAll()
	e.mu.Lock()
	if rt := e.policies["c"]; rt.guard == gc || len(rt.blocked) != 0 || len(e.guardList) != 2 {
		t.Errorf("c with max_move 30%%: guard %p (the old %p), %d guards, blocked %v", rt.guard, gc, len(e.guardList), rt.blocked)
	} else if q, _ := rt.guard.Quote("TM-GROWTH"); !q.Price.Equal(qs[slices.IndexFunc(qs, func(x feeds.Quote) bool { return x.Symbol == "TM-GROWTH" })].Price) {
		t.Errorf("c's new guard has TM-GROWTH at %s, not the jump it had accepted", q.Price)
	}
	e.mu.Unlock()

	// c under the default rules joins a's guard, keeps its prices and sees
	// the move held there.
	c = guardHousehold(t, "c", "")
	if err := e.Load([]Loaded{a, b, c}); err != nil {
		t.Fatal(err)
	}
	e.EvaluateAll()
	e.mu.Lock()
	if rt := e.policies["c"]; rt.guard != ga || len(e.guardList) != 1 || !hasReason(rt.blocked, metrics.BlockQuarantinedPrice) {
		t.Errorf("c after the reload: guard %p (a's %p), %d guards, blocked %v", rt.guard, ga, len(e.guardList), rt.blocked)
	}
	e.mu.Unlock()

	// A household loaded now has the guard's prices at once.
	if err := e.Load([]Loaded{a, b, c, guardHousehold(t, "d", "")}); err != nil {
		t.Fatal(err)
	}
	e.EvaluateAll()
	e.mu.Lock()
	if rt := e.policies["d"]; hasReason(rt.blocked, metrics.BlockMissingPrice) || ga.users != 4 {
		t.Errorf("d: blocked %v; the guard has %d households", rt.blocked, ga.users)
	}
	e.mu.Unlock()

	if err := e.Load([]Loaded{c}); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	if ga.users != 1 || ga.need["VTI"] != 1 || len(e.guardList) != 1 {
		t.Errorf("after removing a, b and d: %d households on the guard, %d needing VTI, %d guards", ga.users, ga.need["VTI"], len(e.guardList))
	}
	e.mu.Unlock()
	if err := e.Load(nil); err != nil {
		t.Fatal(err)
	}
	if len(e.guardList) != 0 || len(e.guards) != 0 {
		t.Fatalf("%d guards left without households", len(e.guardList))
	}
}

// TestNewlyNeededSymbolGoesStale: a household that starts needing a symbol
// its guard holds an older quote of (no household needed it meanwhile) is
// blocked when that quote goes stale, also after evaluations the screen's
// bound settled: the guard's epoch counts the symbol's quote as soon as a
// household needs it.
func TestNewlyNeededSymbolGoesStale(t *testing.T) {
	start := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
	clk := clock.NewFake(start)
	e := New(Options{Clock: clk, Publisher: nopPublisher{}, Store: nopStore{}})
	defer e.Close()
	hOdd, err := portfolio.ParseHoldings("h.yaml", []byte(strings.Replace(balancedHoldings, "VNQ", "IYR", 1)))
	if err != nil {
		t.Fatal(err)
	}
	h := clonedHouseholds(t, 1)[0]
	odd := Loaded{Policy: oddPolicy(t, "odd"), Holdings: hOdd, HoldingsHash: "h"}
	if err := e.Load([]Loaded{h, odd}); err != nil {
		t.Fatal(err)
	}
	iyr := feeds.Quote{Symbol: "IYR", Price: decimal.RequireFromString("88.90"), At: clk.Now(), Source: "test"}
	e.Quotes(append(quotes(clk.Now(), 0), iyr)) // IYR's only quote
	clk.Advance(time.Minute)
	if err := e.Load([]Loaded{h}); err != nil { // nobody needs IYR
		t.Fatal(err)
	}
	e.Quotes(quotes(clk.Now(), 1))
	clk.Advance(time.Minute)
	if err := e.Load([]Loaded{h, odd}); err != nil { // IYR needed again
		t.Fatal(err)
	}
	for range 3 { // in full, by the screen, by its bound
		e.EvaluateAll()
	}
	if e.boundSettled == 0 {
		t.Fatal("no evaluation settled by the bound: the test tests nothing")
	}
	clk.Set(start.Add(policy.DefaultMaxAge + time.Second)) // IYR stale, the others not
	e.tick()
	e.mu.Lock()
	defer e.mu.Unlock()
	if rt := e.policies["odd"]; !hasReason(rt.blocked, metrics.BlockStalePrice) {
		t.Fatalf("odd: not blocked a second after IYR's quote went stale: %v", rt.blocked)
	}
}

// BenchmarkGuardEpoch: a quote of one symbol of a guard holding n, and
// the epoch made after it (as the first evaluation of the batch asks):
// from the previous epoch, reading the quoted symbol again ("next"), or
// read in full ("full", how every epoch was made before).
func BenchmarkGuardEpoch(b *testing.B) {
	for _, n := range []int{8, 2000} {
		for _, mode := range []string{"next", "full"} {
			b.Run(fmt.Sprintf("symbols=%d/%s", n, mode), func(b *testing.B) {
				at := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
				g := &priceGuard{Guard: feeds.NewGuard(time.Hour, decimal.New(1, -1), time.Minute), need: map[string]int{}}
				for k := range n {
					sym := fmt.Sprintf("S%04d", k)
					g.setNeed(nil, []string{sym})
					g.number(sym)
					g.Offer(feeds.Quote{Symbol: sym, Price: decimal.New(10000+int64(k), -2), At: at, Source: "bench"}, at)
				}
				g.current()
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					now := at.Add(time.Duration(i+1) * time.Second)
					g.Offer(feeds.Quote{Symbol: g.syms[i%n], Price: decimal.New(10000+int64(i%7), -2), At: now, Source: "bench"}, now)
					if mode == "full" {
						g.rebuild = true
					}
					g.current()
				}
			})
		}
	}
}
