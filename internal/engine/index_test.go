package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/feeds"
	"github.com/rebalancerd/rebalancerd/internal/metrics"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/state"
)

// TestQuotesReachOnlyTheirHouseholds: a quote is offered to the policies
// that need its instrument, and to no other.
func TestQuotesReachOnlyTheirHouseholds(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC))
	e := loadMixed(t, 3, clk)
	for _, name := range e.names {
		if rt := e.policies[name]; len(rt.blocked) != 0 || !rt.lastEval.Equal(clk.Now()) {
			t.Fatalf("%s not evaluated at the start (blocked %v)", name, rt.blocked)
		}
	}
	start := clk.Now()
	clk.Advance(time.Minute)
	e.Quotes([]feeds.Quote{{Symbol: "IYR", Price: decimal.RequireFromString("89.10"), At: clk.Now(), Source: "test"}})
	for _, name := range e.names {
		want := start
		if name == "odd" {
			want = clk.Now()
		}
		if got := e.policies[name].lastEval; !got.Equal(want) {
			t.Errorf("after an IYR quote %s was last evaluated at %v, want %v", name, got, want)
		}
	}
	if len(e.affected([]feeds.Quote{{Symbol: "VNQ"}})) != 3 || len(e.affected([]feeds.Quote{{Symbol: "NONE"}})) != 0 {
		t.Error("the index of policies by instrument is wrong")
	}
	// Reloading without the odd policy rebuilds the index.
	h, err := portfolio.ParseHoldings("h.yaml", []byte(balancedHoldings))
	if err != nil {
		t.Fatal(err)
	}
	var set []Loaded
	for _, name := range e.names {
		if name != "odd" {
			set = append(set, Loaded{Policy: e.policies[name].pol, Holdings: h, HoldingsHash: "h"})
		}
	}
	if err := e.Load(set); err != nil {
		t.Fatal(err)
	}
	if got := e.affected([]feeds.Quote{{Symbol: "IYR"}}); len(got) != 0 {
		t.Errorf("after the odd policy was removed, an IYR quote still reaches %d policies", len(got))
	}
}

// TestHouseholdMetricsCapped: only the first HouseholdMetrics households
// by name get series of their own; the aggregates count every household.
func TestHouseholdMetricsCapped(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC))
	store, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	e := New(Options{Clock: clk, Publisher: nopPublisher{}, Store: store, Metrics: m, HouseholdMetrics: 2})
	h, err := portfolio.ParseHoldings("h.yaml", []byte(balancedHoldings))
	if err != nil {
		t.Fatal(err)
	}
	var set []Loaded
	for _, name := range []string{"d", "c", "b", "a"} {
		// max_move 50%: the breach below moves VTI by 30%.
		p, err := policy.Parse(name+".yaml", []byte(strings.Replace(householdPolicy, "NAME", name, 1)+"prices: {max_move: 50%}\n"))
		if err != nil {
			t.Fatal(err)
		}
		set = append(set, Loaded{Policy: p, Holdings: h, HoldingsHash: "h"})
	}
	if err := e.Load(set); err != nil {
		t.Fatal(err)
	}
	e.Quotes(quotes(clk.Now(), 0))
	e.tick()
	if got := testutil.ToFloat64(m.Households); got != 4 {
		t.Errorf("rebalancerd_households %v, want 4", got)
	}
	// The policies with sleeve weights exported:
	policies := map[string]bool{}
	ch := make(chan prometheus.Metric, 1000)
	m.SleeveWeight.Collect(ch)
	close(ch)
	for x := range ch {
		var pb dto.Metric
		if err := x.Write(&pb); err != nil {
			t.Fatal(err)
		}
		for _, l := range pb.GetLabel() {
			if l.GetName() == metrics.LabelPolicy {
				policies[l.GetValue()] = true
			}
		}
	}
	if len(policies) != 2 || !policies["a"] || !policies["b"] {
		t.Errorf("sleeve weights exported for %v, want a and b only", policies)
	}
	if got := testutil.ToFloat64(m.HouseholdsBreaching); got != 0 {
		t.Errorf("households breaching %v, want 0", got)
	}
	clk.Advance(time.Minute)
	qs := quotes(clk.Now(), 0)
	for i := range qs {
		if qs[i].Symbol == "VTI" {
			qs[i].Price = decimal.RequireFromString("200") // equities below their band everywhere
		}
	}
	e.Quotes(qs)
	e.tick()
	if got := testutil.ToFloat64(m.HouseholdsBreaching); got != 4 {
		t.Errorf("households breaching %v, want 4", got)
	}
	if got := testutil.ToFloat64(m.HouseholdsBlocked.WithLabelValues(metrics.BlockPendingOrders)); got != 4 {
		t.Errorf("households blocked by pending orders %v, want 4 (each planned)", got)
	}
	if n := testutil.CollectAndCount(m.BatchEvaluationSeconds); n != 1 {
		t.Errorf("evaluation_seconds histogram: %d series", n)
	}
	// The counts follow every change, not only evaluations: NATS going
	// down and up, a household removed.
	e.SetNATSConnected(false)
	e.tick()
	if got := testutil.ToFloat64(m.HouseholdsBlocked.WithLabelValues(metrics.BlockNATSDown)); got != 4 {
		t.Errorf("households blocked by NATS down %v, want 4", got)
	}
	e.SetNATSConnected(true)
	if err := e.Load(set[1:]); err != nil { // "d" removed
		t.Fatal(err)
	}
	e.tick()
	if got := testutil.ToFloat64(m.HouseholdsBlocked.WithLabelValues(metrics.BlockNATSDown)); got != 0 {
		t.Errorf("households blocked by NATS down %v, want 0", got)
	}
	if got := testutil.ToFloat64(m.HouseholdsBreaching); got != 3 {
		t.Errorf("households breaching %v after a removal, want 3", got)
	}
	if got := testutil.ToFloat64(m.HouseholdsBlocked.WithLabelValues(metrics.BlockPendingOrders)); got != 3 {
		t.Errorf("households blocked by pending orders %v after a removal, want 3", got)
	}
}

// TestEvaluationMetrics: rebalancerd_evaluation_seconds counts each batch
// of quotes once, rebalancerd_evaluation_duration_seconds each household
// evaluation, those the breach screen's bound settles included, and
// rebalancerd_households the households loaded.
func TestEvaluationMetrics(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC))
	m := metrics.New()
	e := New(Options{Clock: clk, Publisher: nopPublisher{}, Store: nopStore{}, Metrics: m})
	defer e.Close()
	if err := e.Load(clonedHouseholds(t, 5)); err != nil {
		t.Fatal(err)
	}
	count := func(h prometheus.Histogram) uint64 {
		var pb dto.Metric
		if err := h.(prometheus.Metric).Write(&pb); err != nil {
			t.Fatal(err)
		}
		return pb.GetHistogram().GetSampleCount()
	}
	for i := range 4 {
		e.Quotes(movingQuotes(clk.Now(), i))
		clk.Advance(time.Second)
	}
	if e.boundSettled == 0 {
		t.Fatal("no evaluation settled by the bound: the test tests nothing")
	}
	if got := count(m.BatchEvaluationSeconds); got != 4 {
		t.Errorf("rebalancerd_evaluation_seconds counted %d batches, want 4", got)
	}
	if got := count(m.EvaluationSeconds); got != 20 {
		t.Errorf("rebalancerd_evaluation_duration_seconds counted %d evaluations, want 20 (5 households, 4 batches)", got)
	}
	if got := testutil.ToFloat64(m.Households); got != 5 {
		t.Errorf("rebalancerd_households %v, want 5", got)
	}
	if err := e.Load(clonedHouseholds(t, 3)); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.Households); got != 3 {
		t.Errorf("rebalancerd_households %v after a reload with 3, want 3", got)
	}
}
