package correlation

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/events"
)

var (
	eb    = Pair{"equities", "bonds"}
	ec    = Pair{"equities", "crypto"}
	rules = Rules{Threshold: dec("0.8"), ClearBelow: dec("0.7"), For: 3 * day}
)

// Hand-worked correlations (TestPearsonByHand): 1 (above 0.8), 0.7698
// (between 0.7 and 0.8), 0.5 (below 0.7). The series have equal lengths.
var (
	rOne, _  = NewPearson(decs("1", "2", "3", "4", "5"), decs("2", "4", "6", "8", "10"))
	rMid, _  = NewPearson(decs("0.01", "0.02", "-0.01", "0.03", "0"), decs("0.02", "0.01", "-0.02", "0.02", "0.01"))
	rHalf, _ = NewPearson(decs("1", "2", "3"), decs("1", "3", "2"))
)

func high(p Pair, asOf time.Time) Measurement {
	return Measurement{Pair: p, AsOf: asOf, Returns: 5, Pearson: rOne}
}

func mid(p Pair, asOf time.Time) Measurement {
	return Measurement{Pair: p, AsOf: asOf, Returns: 5, Pearson: rMid}
}

func low(p Pair, asOf time.Time) Measurement {
	return Measurement{Pair: p, AsOf: asOf, Returns: 3, Pearson: rHalf}
}

func none(p Pair, asOf time.Time) Measurement {
	return Measurement{Pair: p, AsOf: asOf, Problem: "0 returns in the window, need 20"}
}

// step evaluates once a day: the measurement's AsOf is midnight of day
// k and the evaluation is at the given offset into the day.
type step struct {
	day     int
	offset  time.Duration
	measure func(Pair, time.Time) Measurement
	want    string // transitions as "kind since-day", "" for none
}

func runSteps(t *testing.T, s *State, p Pair, steps []step) {
	t.Helper()
	for _, st := range steps {
		asOf := d0.Add(time.Duration(st.day) * day)
		at := asOf.Add(st.offset)
		ts := s.Step(rules, []Measurement{st.measure(p, asOf)}, at)
		var got []string
		for _, tr := range ts {
			got = append(got, fmt.Sprintf("%s %d", tr.Kind, int(tr.Since.Sub(d0)/day)))
			if !tr.At.Equal(at) || tr.Measurement.Pair != p {
				t.Errorf("day %d: transition %+v", st.day, tr)
			}
		}
		if g := strings.Join(got, ", "); g != st.want {
			t.Errorf("day %d +%s: transitions %q, want %q", st.day, st.offset, g, st.want)
		}
	}
}

func TestStepRaisesExactlyAtFor(t *testing.T) {
	var s State
	runSteps(t, &s, eb, []step{
		{0, 5 * time.Minute, high, ""}, // the run starts at day 0, 00:00
		{1, 0, high, ""},
		{2, 0, high, ""},
		{2, day - time.Nanosecond, high, ""}, // 3 days less 1 ns
		{3, 0, high, "correlation_high 0"},   // exactly 3 days: raised
		{3, time.Hour, high, ""},             // raised once
		{4, 0, high, ""},
		{5, 0, mid, ""},                     // between the thresholds: stays raised
		{6, 0, high, ""},                    // a new run, but already raised
		{7, 0, low, "correlation_normal 0"}, // below 0.7: cleared, the episode began on day 0
		{8, 0, low, ""},
	})
	if s.Raised(eb) || len(s.Pairs) != 1 {
		t.Errorf("state %+v", s)
	}
}

// A dip below the threshold, or a measurement without enough data,
// resets the time above it.
func TestStepDipResetsTimer(t *testing.T) {
	var s State
	runSteps(t, &s, eb, []step{
		{0, 0, high, ""},
		{1, 0, high, ""},
		{2, 0, mid, ""}, // 0.7698 is not above 0.8: the run ends
		{3, 0, high, ""},
		{5, 0, high, ""},
		{6, 0, high, "correlation_high 3"}, // three days from day 3
		{7, 0, none, ""},                   // no data: stays raised
		{8, 0, mid, ""},
		{9, 0, none, ""},
		{10, 0, low, "correlation_normal 3"},
		{11, 0, high, ""},
		{12, 0, none, ""}, // no data ends the run
		{13, 0, high, ""},
		{15, 0, high, ""},
		{16, 0, high, "correlation_high 13"},
	})
}

// A correlation exactly at the threshold is not above it; exactly at
// clear_below is not below it.
func TestStepBoundaries(t *testing.T) {
	r := Rules{Threshold: dec("0.5"), ClearBelow: dec("0.5"), For: day}
	var s State
	at := func(k int) time.Time { return d0.Add(time.Duration(k) * day) }
	if ts := s.Step(r, []Measurement{low(eb, at(0))}, at(0)); len(ts) != 0 || !s.Pairs[0].AboveSince.IsZero() {
		t.Fatalf("r = 0.5 with threshold 0.5: %v, %+v", ts, s)
	}
	s.Step(r, []Measurement{high(eb, at(1))}, at(1))
	if ts := s.Step(r, []Measurement{high(eb, at(2))}, at(2)); len(ts) != 1 || ts[0].Kind != High {
		t.Fatalf("not raised: %v", ts)
	}
	if ts := s.Step(r, []Measurement{low(eb, at(3))}, at(3)); len(ts) != 0 || !s.Raised(eb) {
		t.Fatalf("r = 0.5 with clear_below 0.5 cleared: %v", ts)
	}
	r.ClearBelow = dec("0.5000001")
	if ts := s.Step(r, []Measurement{low(eb, at(4))}, at(4)); len(ts) != 1 || ts[0].Kind != Normal {
		t.Fatalf("r = 0.5 with clear_below 0.5000001 not cleared: %v", ts)
	}
}

func TestStepPairsIndependentAndDropped(t *testing.T) {
	var s State
	at := func(k int) time.Time { return d0.Add(time.Duration(k) * day) }
	for k := range 4 {
		ts := s.Step(rules, []Measurement{high(eb, at(k)), low(ec, at(k))}, at(k))
		if want := k == 3; (len(ts) == 1 && ts[0].Measurement.Pair == eb) != want || len(ts) > 1 {
			t.Fatalf("day %d: %v", k, ts)
		}
	}
	if !s.Raised(eb) || s.Raised(ec) {
		t.Fatalf("raised %v %v", s.Raised(eb), s.Raised(ec))
	}
	// The policy no longer watches equities~bonds: it is forgotten.
	s.Step(rules, []Measurement{low(ec, at(4))}, at(4))
	if len(s.Pairs) != 1 || s.Pairs[0].Sleeves != [2]string{"equities", "crypto"} || s.Raised(eb) {
		t.Errorf("state %+v", s)
	}
}

// Persisting and restoring the state between any two steps changes
// nothing, and the timing does not depend on how often the daemon
// evaluates within a day.
func TestStepJSONAndCadence(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	kinds := []func(Pair, time.Time) Measurement{high, high, high, mid, low, none}
	var plan []func(Pair, time.Time) Measurement
	for range 200 {
		plan = append(plan, kinds[rng.IntN(len(kinds))])
	}
	run := func(evalsPerDay int, roundTrip bool) string {
		var s State
		var log []string
		for k, f := range plan {
			for e := range evalsPerDay {
				asOf := d0.Add(time.Duration(k) * day)
				at := asOf.Add(time.Duration(e) * day / time.Duration(evalsPerDay))
				for _, tr := range s.Step(rules, []Measurement{f(eb, asOf)}, at) {
					log = append(log, fmt.Sprintf("%d %s %s", k, tr.Kind, tr.Since.Format(time.DateOnly)))
				}
				if roundTrip {
					data, err := json.Marshal(&s)
					if err != nil {
						t.Fatal(err)
					}
					s = State{}
					if err := json.Unmarshal(data, &s); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		return strings.Join(log, "\n")
	}
	want := run(1, false)
	if strings.Count(want, "correlation_high") < 3 || strings.Count(want, "correlation_normal") < 3 {
		t.Fatalf("the random plan raises too little:\n%s", want)
	}
	for _, c := range []struct {
		n  int
		rt bool
	}{{1, true}, {4, false}, {24, true}} {
		if got := run(c.n, c.rt); got != want {
			t.Errorf("%d evaluations a day, JSON %v:\n%s\nwant\n%s", c.n, c.rt, got, want)
		}
	}
	var s State
	s.Step(rules, []Measurement{high(eb, d0)}, d0)
	data, _ := json.Marshal(&s)
	if string(data) != `{"pairs":[{"sleeves":["equities","bonds"],"above_since":"2026-03-02T00:00:00Z","raised":false}]}` {
		t.Errorf("JSON %s", data)
	}
}

func TestAlert(t *testing.T) {
	w := mustWatch(t, strings.Replace(watchPolicy, "window: 20d", "window: 90d\n  interval: 1d", 1))
	var s State
	var raised []Transition
	for k := range 4 {
		asOf := d0.Add(time.Duration(k) * day)
		raised = append(raised, s.Step(w.Rules(), []Measurement{mid(ec, asOf)}, asOf.Add(time.Hour))...)
	}
	if len(raised) != 0 {
		t.Fatalf("0.7698 raised at threshold 0.8: %v", raised)
	}
	m := high(Pair{"equities", "crypto"}, d0)
	m.Returns = 61
	s.Step(w.Rules(), []Measurement{m}, d0)
	tr := s.Step(w.Rules(), []Measurement{m}, d0.Add(3*day+time.Hour))
	if len(tr) != 1 {
		t.Fatalf("transitions %v", tr)
	}
	a := w.Alert(tr[0])
	data, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"schema_version":1,"alert_id":"corr-corr-test-equities~crypto-correlation_high-20260302T000000Z",` +
		`"policy":"corr-test","kind":"correlation_high","sleeves":["equities","crypto"],"correlation":"1",` +
		`"threshold":"0.8","clear_below":"0.7","window":"90d","interval":"1d","returns":61,` +
		`"since":"2026-03-02T00:00:00Z","at":"2026-03-05T01:00:00Z"}`
	if string(data) != want {
		t.Errorf("alert\n%s\nwant\n%s", data, want)
	}
	var back events.Alert
	if err := json.Unmarshal(data, &back); err != nil || !back.Correlation.Equal(decimal.NewFromInt(1)) || back.Returns != 61 {
		t.Errorf("decoded %+v, %v", back, err)
	}
	if subj := (events.Subjects{Prefix: "rebalance"}).Alert("corr-test"); subj != "rebalance.alerts.corr-test" {
		t.Errorf("subject %s", subj)
	}
	if subj := (events.Subjects{Prefix: "rebalance"}).Alerts(); subj != "rebalance.alerts.>" {
		t.Errorf("wildcard %s", subj)
	}
}
