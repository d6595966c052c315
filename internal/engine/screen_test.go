package engine

import (
	"flag"
	"fmt"
	"iter"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/feeds"
	"github.com/rebalancerd/rebalancerd/internal/fixed"
	"github.com/rebalancerd/rebalancerd/internal/metrics"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
)

var screenHouseholds = flag.Int("screen-households", 0, "households of TestScreenEqualsFullEvaluation (default 10,000; 1,000 with -short, 400 under -race)")

// randomHouseholds returns n households on variants of the example
// household (bands, trigger, max_value_change, checked every second) with
// random holdings: some far inside their bands, many near an edge, some
// breaching.
func randomHouseholds(t testing.TB, r *rand.Rand, n int) []Loaded {
	t.Helper()
	var variants []*policy.Policy
	for k := range 24 {
		text := strings.Replace(householdPolicy, "NAME", fmt.Sprintf("variant-%d", k), 1)
		text = strings.Replace(text, "check_every: 1m", "check_every: 1s", 1)
		text = strings.Replace(text, "bands: {absolute: 5%, relative: 25%", fmt.Sprintf("bands: {absolute: %d.%d%%, relative: 25%%", 1+k%6, k%10), 1)
		if k%3 == 1 {
			text = strings.Replace(text, "trigger: threshold", "trigger: hybrid, schedule: \"*/2 * * * *\"", 1)
		}
		if k%4 == 2 {
			text = strings.Replace(text, "currency: USD\n", "currency: USD\nlimits: {max_value_change: 0.5%}\n", 1)
		}
		if k%5 == 3 {
			text = strings.Replace(text, "currency: USD\n", "currency: USD\nphase_in: {over: 3d, every: 1d}\n", 1)
		}
		switch k % 7 { // price rules: households on other guards
		case 1:
			text = strings.Replace(text, "currency: USD\n", "currency: USD\nprices: {max_move: 20%}\n", 1) // the jump is accepted
		case 4:
			text = strings.Replace(text, "currency: USD\n", "currency: USD\nprices: {max_age: 20s, max_move: 5%}\n", 1) // VNQ goes stale
		}
		p, err := policy.Parse(fmt.Sprintf("variant-%d.yaml", k), []byte(text))
		if err != nil {
			t.Fatalf("variant %d: %v", k, err)
		}
		variants = append(variants, p)
	}
	base := map[string]float64{"VXUS": 537, "VNQ": 225, "TM-LARGE": 0.1576, "TM-BAL": 1.366, "TM-GROWTH": 10.4, "VTI": 270, "BND": 693}
	acct := map[string]string{"VXUS": "roth", "VNQ": "roth", "TM-LARGE": "roth", "TM-BAL": "roth", "TM-GROWTH": "roth", "VTI": "k401", "BND": "k401"}
	places := map[string]int32{"TM-LARGE": 4, "TM-BAL": 4, "TM-GROWTH": 4}
	set := make([]Loaded, n)
	for i := range set {
		p := *variants[r.IntN(len(variants))]
		p.Name = fmt.Sprintf("household-%06d", i)
		h := &portfolio.Holdings{File: p.Name + ".holdings.yaml", AsOf: time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC)}
		pos := map[string][]portfolio.Position{}
		spread := []float64{0.02, 0.06, 0.15}[r.IntN(3)] // near target, near an edge, far
		for _, sym := range slices.Sorted(mapsKeys(base)) {
			if r.IntN(100) == 0 {
				continue // not held
			}
			q := decimal.NewFromFloat(base[sym] * (1 + spread*(2*r.Float64()-1))).Round(places[sym])
			pos[acct[sym]] = append(pos[acct[sym]], portfolio.Position{Instrument: sym, Quantity: q})
		}
		cash := decimal.New(400000+r.Int64N(200000), -2)
		h.Accounts = []portfolio.AccountHoldings{
			{Name: "roth", Cash: cash, Positions: pos["roth"]},
			{Name: "k401", Positions: pos["k401"]},
			{Name: "taxable", Cash: decimal.New(int64(20000+r.IntN(6000)), 0)},
		}
		if r.IntN(20) == 0 {
			h.Accounts[0].Positions, h.Accounts[1].Positions = nil, nil // cash only: a first investment
		}
		set[i] = Loaded{Policy: &p, Holdings: h, HoldingsHash: "h"}
	}
	return set
}

// driftRecorder keeps what each drift event said, in order.
type driftRecorder struct {
	nopPublisher
	got []string
}

func (r *driftRecorder) PublishDrift(d events.Drift) error {
	r.got = append(r.got, d.Policy+" "+d.EvaluatedAt.String()+" "+d.Total.String()+" "+strings.Join(d.Breaching, ","))
	return nil
}

func mapsKeys[V any](m map[string]V) iter.Seq[string] { return maps.Keys(m) }

// TestScreenEqualsFullEvaluation: households evaluated with the breach
// screen (and ticks that look only at the households that ask for it)
// end every tick exactly where the full evaluation of every household
// (the code before the screen, and a tick over every household) leaves
// them: same blocks,
// breaches, plans, drift events, accepted valuations, drift snapshots.
// Prices walk, within the screens' bounds and beyond them, jump now and
// then (held moves, held valuations), a price goes stale for the
// households with a short max_age, households have different price rules
// (other guards), and the clock passes calendar firings and drift
// periods.
func TestScreenEqualsFullEvaluation(t *testing.T) {
	n := *screenHouseholds
	if n == 0 {
		switch {
		case raceEnabled:
			n = 400
		case testing.Short():
			n = 1000
		default:
			n = 10000
		}
	}
	r := rand.New(rand.NewPCG(14, uint64(n)))
	set := randomHouseholds(t, r, n)
	start := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
	clkA, clkB := clock.NewFake(start), clock.NewFake(start)
	recA, recB := &driftRecorder{}, &driftRecorder{}
	screenedEng := New(Options{Clock: clkA, Publisher: recA, Store: nopStore{}, InlinePublishTimeout: -1})
	fullEng := New(Options{Clock: clkB, Publisher: recB, Store: nopStore{}, InlinePublishTimeout: -1})
	fullEng.noScreen = true
	fullEng.walkAll = true // and its tick looks at every household
	for _, e := range []*Engine{screenedEng, fullEng} {
		if err := e.Load(set); err != nil {
			t.Fatal(err)
		}
		defer e.Close()
	}
	prices := map[string]decimal.Decimal{}
	for sym, p := range benchPrices {
		prices[sym] = decimal.RequireFromString(p)
	}
	screenedTotal := 0
	stale := map[int]int{} // households blocked by a stale price, by tick
	for tick := range 40 {
		var qs []feeds.Quote
		for _, sym := range slices.Sorted(mapsKeys(prices)) {
			if sym == "VNQ" && tick >= 15 && tick <= 20 {
				continue // no quote: stale where max_age is 20s (tick 19 moves the clock 37s)
			}
			if sym == "VMFXX" {
				qs = append(qs, feeds.Quote{Symbol: sym, Price: prices[sym], At: clkA.Now(), Source: "test"})
				continue
			}
			move := decimal.New(int64(r.IntN(41)-20), -4) // within ±0.2%
			if tick >= 33 && tick <= 37 {
				move = decimal.New(6, -4) // a trend: totals move more than single prices do at random
			}
			if tick == 12 || tick == 31 {
				move = decimal.New(8, -3) // the market: valuations held under max_value_change 0.5%
			}
			if tick == 25 && sym == "TM-GROWTH" {
				move = decimal.New(15, -2) // a 15% jump: held, then confirmed
			}
			prices[sym] = prices[sym].Add(prices[sym].Mul(move)).Round(4)
			qs = append(qs, feeds.Quote{Symbol: sym, Price: prices[sym], At: clkA.Now(), Source: "test"})
		}
		screenedEng.Quotes(qs)
		fullEng.Quotes(qs)
		if tick%4 == 3 {
			// The executor fills what was planned: holdings change.
			for _, f := range pendingFills(screenedEng, clkA.Now()) {
				errA, errB := screenedEng.HandleReport(f), fullEng.HandleReport(f)
				if (errA == nil) != (errB == nil) {
					t.Fatalf("tick %d: fill of %s: %v with the screen, %v without", tick, f.Policy, errA, errB)
				}
			}
		}
		screenedEng.tick()
		fullEng.tick()
		screenedTotal += compareEngines(t, tick, screenedEng, fullEng, stale)
		if !slices.Equal(slices.Sorted(slices.Values(recA.got)), slices.Sorted(slices.Values(recB.got))) { // firings send theirs in any order
			t.Fatalf("tick %d: drift events differ: %d with the screen, %d without", tick, len(recA.got), len(recB.got))
		}
		step := time.Second
		if tick%10 == 9 {
			step = 37 * time.Second // past drift periods and calendar firings
		}
		clkA.Advance(step)
		clkB.Advance(step)
		waitFirings(t, screenedEng, start)
		waitFirings(t, fullEng, start)
	}
	if screenedTotal < n*40/8 {
		t.Fatalf("the screen settled %d of %d evaluations: it is not exercised", screenedTotal, n*40)
	}
	if stale[20] == 0 || stale[22] != 0 {
		t.Fatalf("households blocked by a stale price: %d at tick 20, %d at tick 22 (want some, then none)", stale[20], stale[22])
	}
	if b := screenedEng.boundSettled; b < screenedTotal/4 || b > screenedTotal*9/10 {
		t.Fatalf("the bound settled %d of the %d evaluations the screen settled: its two paths are not both exercised", b, screenedTotal)
	}
	t.Logf("%d households, 40 ticks: %d evaluations settled by the screen, %d of them by its bound", n, screenedTotal, screenedEng.boundSettled)
}

// waitFirings waits until every household of e has acted on its
// calendar's firings since start, up to the clock's now: calendars fire in
// goroutines of their own, and a firing acted on after the next quotes
// instead of before plans at other prices.
func waitFirings(t *testing.T, e *Engine, start time.Time) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		e.mu.Lock()
		now, late := e.clk.Now(), ""
		for _, rt := range e.rts {
			c := rt.pol.Rebalance.Cron
			if c == nil || rt.pol.Rebalance.Trigger == policy.TriggerThreshold {
				continue
			}
			var last time.Time
			for at := c.Next(start); !at.After(now); at = c.Next(at) {
				last = at
			}
			if !last.IsZero() && rt.ledger.LastFire != fireKey(c, last) {
				late = rt.pol.Name
				break
			}
		}
		e.mu.Unlock()
		if late == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: its calendar firing was not acted on", late)
		}
		time.Sleep(time.Millisecond)
	}
}

// pendingFills are fills of every pending order, in full at its price.
func pendingFills(e *Engine, now time.Time) []Report {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Report
	for _, name := range e.names {
		for _, o := range e.policies[name].ledger.Pending() {
			out = append(out, Report{Policy: name, Account: o.Account, Fill: &events.Fill{SchemaVersion: events.SchemaVersion,
				FillID: "fill-" + o.OrderID, OrderID: o.OrderID, Status: events.FillFilled, Quantity: o.Remaining(), Price: o.Price, At: now}})
		}
	}
	return out
}

// compareEngines fails the test where a and b differ; it returns how many
// of a's households were screened at their last evaluation.
func compareEngines(t *testing.T, tick int, a, b *Engine, stale map[int]int) int {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	screened := 0
	now := a.clk.Now()
	for _, name := range a.names {
		x, y := a.policies[name], b.policies[name]
		if x.snapStale {
			screened++
		}
		// The guard's epoch says what Guard.Check says.
		if got, want := a.pricesUsable(x, now), len(x.guard.Check(x.symbols, now)) == 0; got != want {
			t.Fatalf("tick %d, %s: prices usable %v, Guard.Check finds no problem %v", tick, name, got, want)
		}
		if hasReason(x.blocked, metrics.BlockStalePrice) {
			stale[tick]++
		}
		x.settleValuation()
		fail := func(what string, got, want any) {
			t.Fatalf("tick %d, %s: %s: screened %v, full %v", tick, name, what, got, want)
		}
		if !slices.Equal(x.blocked, y.blocked) {
			fail("blocks", x.blocked, y.blocked)
		}
		if !slices.Equal(x.breaching, y.breaching) {
			fail("breaching", x.breaching, y.breaching)
		}
		if !x.lastCheck.Equal(y.lastCheck) || !x.lastEval.Equal(y.lastEval) {
			fail("last check", x.lastCheck, y.lastCheck)
		}
		if x.ledger.LastPlanID != y.ledger.LastPlanID || len(x.ledger.Orders) != len(y.ledger.Orders) || len(x.ledger.CashPhases) != len(y.ledger.CashPhases) {
			fail("plans", x.ledger.LastPlanID, y.ledger.LastPlanID)
		}
		if vx, vy := x.ledger.Valuation, y.ledger.Valuation; (vx == nil) != (vy == nil) ||
			vx != nil && (!vx.Total.Equal(vy.Total) || !vx.At.Equal(vy.At) || len(vx.Prices) != len(vy.Prices)) {
			fail("accepted valuation", vx, vy)
		} else if vx != nil {
			for sym, p := range vy.Prices {
				if !vx.Prices[sym].Equal(p) {
					fail("accepted valuation price of "+sym, vx.Prices[sym], p)
				}
			}
		}
		if sx, sy := x.value.saved, y.value.saved; (sx == nil) != (sy == nil) || sx != nil && (!sx.At.Equal(sy.At) || !sx.Total.Equal(sy.Total)) {
			fail("saved valuation", sx, sy)
		}
		if _, hx := x.value.c.Held(); hx != func() bool { _, h := y.value.c.Held(); return h }() {
			fail("valuation held", hx, !hx)
		}
		sx, sy := x.snapshotOf(), y.snapshotOf()
		if (sx == nil) != (sy == nil) || sx != nil && (!sx.Total.Equal(sy.Total) || !sx.AsOf.Equal(sy.AsOf)) {
			fail("snapshot", sx, sy)
		}
		if sx != nil {
			for i := range sx.Sleeves {
				if !sx.Sleeves[i].Weight.Equal(sy.Sleeves[i].Weight) || sx.Sleeves[i].Breach != sy.Sleeves[i].Breach {
					fail("sleeve "+sx.Sleeves[i].Path, sx.Sleeves[i], sy.Sleeves[i])
				}
			}
		}
	}
	if len(a.outbox) != len(b.outbox) {
		t.Fatalf("tick %d: %d plans queued with the screen, %d without", tick, len(a.outbox), len(b.outbox))
	}
	// In the order of the households: calendar firings queue theirs in
	// the order their goroutines run.
	byPolicy := func(x, y *batch) int {
		return strings.Compare(x.policy+" "+x.plan.Plan.ID, y.policy+" "+y.plan.Plan.ID)
	}
	qa, qb := slices.SortedStableFunc(slices.Values(a.outbox), byPolicy), slices.SortedStableFunc(slices.Values(b.outbox), byPolicy)
	for i := range qa {
		if qa[i].policy != qb[i].policy || len(qa[i].orders) != len(qb[i].orders) {
			t.Fatalf("tick %d: plan %d differs: %s with the screen, %s without", tick, i, qa[i].policy, qb[i].policy)
		}
		for k := range qa[i].orders {
			if qa[i].orders[k].OrderID != qb[i].orders[k].OrderID || !qa[i].orders[k].Quantity.Equal(qb[i].orders[k].Quantity) {
				t.Fatalf("tick %d: plan %d of %s: order %d differs", tick, i, qa[i].policy, k)
			}
		}
	}
	if len(a.driftOut) != len(b.driftOut) {
		t.Fatalf("tick %d: %d drift events queued with the screen, %d without", tick, len(a.driftOut), len(b.driftOut))
	}
	da := slices.SortedStableFunc(slices.Values(a.driftOut), func(x, y events.Drift) int { return strings.Compare(x.Policy, y.Policy) })
	db := slices.SortedStableFunc(slices.Values(b.driftOut), func(x, y events.Drift) int { return strings.Compare(x.Policy, y.Policy) })
	for i := range da {
		if da[i].Policy != db[i].Policy || !da[i].Total.Equal(db[i].Total) {
			t.Fatalf("tick %d: drift event %d differs", tick, i)
		}
	}
	return screened
}

// TestQuietTickNoticesTime: a household the tick skips (nothing due) is
// looked at again when its prices go stale, as the tick that walked every
// household did: blocked a second past MaxAge, not before.
func TestQuietTickNoticesTime(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC))
	e := loadMixed(t, 2, clk)
	defer e.Close()
	e.tick()
	e.mu.Lock()
	for _, rt := range e.rts {
		if len(rt.blocked) != 0 || rt.quietUntil.IsZero() {
			t.Fatalf("%s: blocked %v, quiet until %v", rt.pol.Name, rt.blocked, rt.quietUntil)
		}
	}
	e.mu.Unlock()
	clk.Advance(policy.DefaultMaxAge) // stale only after MaxAge
	e.tick()
	e.mu.Lock()
	if rt := e.rts[0]; len(rt.blocked) != 0 {
		t.Fatalf("blocked at MaxAge: %v", rt.blocked)
	}
	e.mu.Unlock()
	clk.Advance(time.Second)
	e.tick()
	wantStale(t, e)
}

// TestBoundSettledGoesStale: a household whose evaluations the screen's
// bound settles, and which then gets no quote, is blocked by stale prices
// a second past MaxAge by the tick, as one evaluated in full is.
func TestBoundSettledGoesStale(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC))
	e := New(Options{Clock: clk, Publisher: nopPublisher{}, Store: nopStore{}})
	defer e.Close()
	if err := e.Load(clonedHouseholds(t, 2)); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		e.Quotes(movingQuotes(clk.Now(), i))
		e.tick()
		clk.Advance(time.Second)
	}
	if e.boundSettled == 0 {
		t.Fatal("no evaluation settled by the bound: the test tests nothing")
	}
	clk.Advance(policy.DefaultMaxAge - 2*time.Second)
	e.tick()
	e.mu.Lock()
	for _, rt := range e.rts {
		if len(rt.blocked) != 0 {
			t.Errorf("%s: blocked before MaxAge: %v", rt.pol.Name, rt.blocked)
		}
	}
	e.mu.Unlock()
	clk.Advance(2 * time.Second)
	e.tick()
	wantStale(t, e)
}

// wantStale fails the test unless every household is blocked by a stale
// price.
func wantStale(t *testing.T, e *Engine) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, rt := range e.rts {
		if !hasReason(rt.blocked, metrics.BlockStalePrice) {
			t.Errorf("%s: not blocked a second past MaxAge: %v", rt.pol.Name, rt.blocked)
		}
	}
}

// TestValueAtExact: the value at an epoch's prices that the bound's
// settle sums lazily is exact, in decimals when it does not fit in 128
// bits.
func TestValueAtExact(t *testing.T) {
	big, _ := fixed.Of(decimal.RequireFromString("900000000000000000")) // 9e17: products near 2^126
	price := decimal.RequireFromString("9000000000000000.01")
	p, _ := fixed.Of(price)
	cur := &priceEpoch{quotes: []feeds.Quote{{Price: price}}, has: []bool{true}, fx: []fixed.Num{p}, fxOK: []bool{true}}
	for _, n := range []int{1, 1000} { // one product fits; a thousand overflow the sum
		s := &screen{cash: 0, free: fixed.Num{V: fixed.From(5)}, gidx: []int32{0}}
		want := decimal.NewFromInt(5)
		for range n {
			s.held = append(s.held, heldInstr{sym: 0, qty: big})
			want = want.Add(decimal.RequireFromString("900000000000000000").Mul(price))
		}
		total, sum := s.valueAt(cur)
		got := total.V.Big(total.Exp)
		if sum != nil {
			got = *sum
		}
		if !got.Equal(want) || (n > 1) != (sum != nil) {
			t.Fatalf("%d held: value %s (as a decimal: %v), want %s", n, got, sum != nil, want)
		}
	}
}
