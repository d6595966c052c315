package metrics

import (
	"fmt"

	"github.com/rebalancerd/rebalancerd/internal/buildinfo"

	"bufio"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// populate gives every rebalancerd metric one series, with distinct values.
func populate(t *testing.T, m *Metrics, policy, feed string) {
	t.Helper()
	if err := m.SetPlanningBlocked(policy, BlockPendingOrders); err != nil {
		t.Fatal(err)
	}
	m.SleeveWeight.WithLabelValues(policy, "equities").Set(0.61)
	m.SleeveTarget.WithLabelValues(policy, "equities").Set(0.55)
	m.SleeveDeviation.WithLabelValues(policy, "equities").Set(0.06)
	m.SleeveBreach.WithLabelValues(policy, "equities").Set(1)
	m.Evaluations.WithLabelValues(policy).Add(3)
	m.Rebalances.WithLabelValues(policy, "threshold").Inc()
	m.OrdersPublished.WithLabelValues(policy).Add(4)
	m.PublishErrors.WithLabelValues(policy).Add(2)
	m.PlansRejected.WithLabelValues(policy, "max_turnover").Inc()
	m.PendingOrders.WithLabelValues(policy).Set(4)
	m.FillsRecovered.WithLabelValues(policy).Add(2)
	m.PriceAge.WithLabelValues(policy, "VTI").Set(42)
	m.FeedPolls.WithLabelValues(feed).Add(10)
	m.FeedErrors.WithLabelValues(feed).Add(1)
	m.FeedLastSuccess.WithLabelValues(feed).Set(1.7e9)
	m.FeedBreakerOpen.WithLabelValues(feed).Set(0)
	m.InputsRejected.WithLabelValues(InputPrice, "bad_price").Add(2)
	m.Correlation.WithLabelValues(policy, "equities~crypto").Set(0.83)
	m.CorrelationAlert.WithLabelValues(policy, "equities~crypto").Set(1)
	m.PoliciesLoaded.Set(2)
	m.NATSConnected.Set(1)
	m.EvaluationSeconds.Observe(0.0003)
	m.TriggerLatency.Observe(0.5)
	m.Households.Set(2)
	m.HouseholdsBreaching.Set(1)
	m.HouseholdsBlocked.WithLabelValues(BlockPendingOrders).Set(1)
	m.BatchEvaluationSeconds.Observe(0.002)
}

func TestExposition(t *testing.T) {
	m := New()
	populate(t, m, "smith", "stooq")
	if err := m.SetPlanningBlocked("smith", BlockStalePrice, BlockNATSDown); err != nil {
		t.Fatal(err)
	}
	m.ObserveReload(false, time.Unix(1_700_000_000, 0))
	m.ObserveReload(true, time.Unix(1_700_000_100, 500_000_000))

	const want = `
# HELP rebalancerd_config_last_reload_success_timestamp_seconds Unix time of the last successful configuration load.
# TYPE rebalancerd_config_last_reload_success_timestamp_seconds gauge
rebalancerd_config_last_reload_success_timestamp_seconds 1.7000001005e+09
# HELP rebalancerd_config_last_reload_successful Whether the last configuration reload attempt was successful.
# TYPE rebalancerd_config_last_reload_successful gauge
rebalancerd_config_last_reload_successful 1
# HELP rebalancerd_config_reloads_total Configuration reload attempts, by result.
# TYPE rebalancerd_config_reloads_total counter
rebalancerd_config_reloads_total{result="failure"} 1
rebalancerd_config_reloads_total{result="success"} 1
# HELP rebalancerd_evaluation_duration_seconds Time to evaluate one policy: drift and plan, without publishing.
# TYPE rebalancerd_evaluation_duration_seconds histogram
rebalancerd_evaluation_duration_seconds_bucket{le="5e-05"} 0
rebalancerd_evaluation_duration_seconds_bucket{le="0.0002"} 0
rebalancerd_evaluation_duration_seconds_bucket{le="0.0008"} 1
rebalancerd_evaluation_duration_seconds_bucket{le="0.0032"} 1
rebalancerd_evaluation_duration_seconds_bucket{le="0.0128"} 1
rebalancerd_evaluation_duration_seconds_bucket{le="0.0512"} 1
rebalancerd_evaluation_duration_seconds_bucket{le="0.2048"} 1
rebalancerd_evaluation_duration_seconds_bucket{le="0.8192"} 1
rebalancerd_evaluation_duration_seconds_bucket{le="3.2768"} 1
rebalancerd_evaluation_duration_seconds_bucket{le="13.1072"} 1
rebalancerd_evaluation_duration_seconds_bucket{le="+Inf"} 1
rebalancerd_evaluation_duration_seconds_sum 0.0003
rebalancerd_evaluation_duration_seconds_count 1
# HELP rebalancerd_correlation Rolling correlation of a pair of sleeves' returns at the last measurement with enough data.
# TYPE rebalancerd_correlation gauge
rebalancerd_correlation{pair="equities~crypto",policy="smith"} 0.83
# HELP rebalancerd_correlation_alert 1 while the pair's correlation alert is raised (diversification failing), else 0.
# TYPE rebalancerd_correlation_alert gauge
rebalancerd_correlation_alert{pair="equities~crypto",policy="smith"} 1
# HELP rebalancerd_evaluations_total Drift evaluations completed.
# TYPE rebalancerd_evaluations_total counter
rebalancerd_evaluations_total{policy="smith"} 3
# HELP rebalancerd_feed_breaker_open 1 while the feed's circuit breaker is open and polls are skipped, else 0.
# TYPE rebalancerd_feed_breaker_open gauge
rebalancerd_feed_breaker_open{feed="stooq"} 0
# HELP rebalancerd_feed_errors_total Price feed polls that failed.
# TYPE rebalancerd_feed_errors_total counter
rebalancerd_feed_errors_total{feed="stooq"} 1
# HELP rebalancerd_feed_last_success_timestamp_seconds Unix time of the feed's last successful poll.
# TYPE rebalancerd_feed_last_success_timestamp_seconds gauge
rebalancerd_feed_last_success_timestamp_seconds{feed="stooq"} 1.7e+09
# HELP rebalancerd_feed_polls_total Price feed polls attempted.
# TYPE rebalancerd_feed_polls_total counter
rebalancerd_feed_polls_total{feed="stooq"} 10
# HELP rebalancerd_fills_recovered_total Fills of unsettled orders read back from the reports stream at start that the ledger had not applied.
# TYPE rebalancerd_fills_recovered_total counter
rebalancerd_fills_recovered_total{policy="smith"} 2
# HELP rebalancerd_inputs_rejected_total Inputs refused, by kind (price, report, control, policy_file) and reason.
# TYPE rebalancerd_inputs_rejected_total counter
rebalancerd_inputs_rejected_total{input="price",reason="bad_price"} 2
# HELP rebalancerd_nats_connected 1 while connected to NATS, else 0.
# TYPE rebalancerd_nats_connected gauge
rebalancerd_nats_connected 1
# HELP rebalancerd_orders_published_total Orders acknowledged by JetStream.
# TYPE rebalancerd_orders_published_total counter
rebalancerd_orders_published_total{policy="smith"} 4
# HELP rebalancerd_pending_orders Orders published and not yet settled.
# TYPE rebalancerd_pending_orders gauge
rebalancerd_pending_orders{policy="smith"} 4
# HELP rebalancerd_planning_blocked 1 while planning for the policy is blocked for the reason, else 0.
# TYPE rebalancerd_planning_blocked gauge
rebalancerd_planning_blocked{policy="smith",reason="halted"} 0
rebalancerd_planning_blocked{policy="smith",reason="invalid_policy"} 0
rebalancerd_planning_blocked{policy="smith",reason="missing_price"} 0
rebalancerd_planning_blocked{policy="smith",reason="nats_down"} 1
rebalancerd_planning_blocked{policy="smith",reason="pending_orders"} 0
rebalancerd_planning_blocked{policy="smith",reason="quarantined_price"} 0
rebalancerd_planning_blocked{policy="smith",reason="risk_limit"} 0
rebalancerd_planning_blocked{policy="smith",reason="stale_price"} 1
rebalancerd_planning_blocked{policy="smith",reason="unknown_order_state"} 0
rebalancerd_planning_blocked{policy="smith",reason="value_change"} 0
# HELP rebalancerd_plans_rejected_total Plans not published because they broke a pre-trade risk limit, by limit.
# TYPE rebalancerd_plans_rejected_total counter
rebalancerd_plans_rejected_total{policy="smith",rule="max_turnover"} 1
# HELP rebalancerd_policies_loaded Policies in the running configuration.
# TYPE rebalancerd_policies_loaded gauge
rebalancerd_policies_loaded 2
# HELP rebalancerd_price_age_seconds Age of the price the policy was last evaluated with, at that evaluation.
# TYPE rebalancerd_price_age_seconds gauge
rebalancerd_price_age_seconds{policy="smith",symbol="VTI"} 42
# HELP rebalancerd_publish_errors_total Failed attempts to publish an order; each retry counts.
# TYPE rebalancerd_publish_errors_total counter
rebalancerd_publish_errors_total{policy="smith"} 2
# HELP rebalancerd_rebalances_total Rebalances whose orders were published, by the trigger that fired.
# TYPE rebalancerd_rebalances_total counter
rebalancerd_rebalances_total{policy="smith",trigger="threshold"} 1
# HELP rebalancerd_sleeve_breach 1 while the sleeve is outside its tolerance band, else 0.
# TYPE rebalancerd_sleeve_breach gauge
rebalancerd_sleeve_breach{policy="smith",sleeve="equities"} 1
# HELP rebalancerd_sleeve_deviation_ratio Sleeve weight minus target, as a fraction of the total; positive means overweight.
# TYPE rebalancerd_sleeve_deviation_ratio gauge
rebalancerd_sleeve_deviation_ratio{policy="smith",sleeve="equities"} 0.06
# HELP rebalancerd_sleeve_target_ratio Target of the sleeve as a fraction of the policy's investable total.
# TYPE rebalancerd_sleeve_target_ratio gauge
rebalancerd_sleeve_target_ratio{policy="smith",sleeve="equities"} 0.55
# HELP rebalancerd_sleeve_weight_ratio Current value of the sleeve as a fraction of the policy's investable total.
# TYPE rebalancerd_sleeve_weight_ratio gauge
rebalancerd_sleeve_weight_ratio{policy="smith",sleeve="equities"} 0.61
# HELP rebalancerd_trigger_to_publish_seconds Time from a trigger firing to the last order of its plan being acknowledged.
# TYPE rebalancerd_trigger_to_publish_seconds histogram
rebalancerd_trigger_to_publish_seconds_bucket{le="0.001"} 0
rebalancerd_trigger_to_publish_seconds_bucket{le="0.004"} 0
rebalancerd_trigger_to_publish_seconds_bucket{le="0.016"} 0
rebalancerd_trigger_to_publish_seconds_bucket{le="0.064"} 0
rebalancerd_trigger_to_publish_seconds_bucket{le="0.256"} 0
rebalancerd_trigger_to_publish_seconds_bucket{le="1.024"} 1
rebalancerd_trigger_to_publish_seconds_bucket{le="4.096"} 1
rebalancerd_trigger_to_publish_seconds_bucket{le="16.384"} 1
rebalancerd_trigger_to_publish_seconds_bucket{le="65.536"} 1
rebalancerd_trigger_to_publish_seconds_bucket{le="+Inf"} 1
rebalancerd_trigger_to_publish_seconds_sum 0.5
rebalancerd_trigger_to_publish_seconds_count 1
# HELP rebalancerd_evaluation_seconds Time from a batch of quotes to every household it affects evaluated.
# TYPE rebalancerd_evaluation_seconds histogram
rebalancerd_evaluation_seconds_bucket{le="1e-05"} 0
rebalancerd_evaluation_seconds_bucket{le="4e-05"} 0
rebalancerd_evaluation_seconds_bucket{le="0.00016"} 0
rebalancerd_evaluation_seconds_bucket{le="0.00064"} 0
rebalancerd_evaluation_seconds_bucket{le="0.00256"} 1
rebalancerd_evaluation_seconds_bucket{le="0.01024"} 1
rebalancerd_evaluation_seconds_bucket{le="0.04096"} 1
rebalancerd_evaluation_seconds_bucket{le="0.16384"} 1
rebalancerd_evaluation_seconds_bucket{le="0.65536"} 1
rebalancerd_evaluation_seconds_bucket{le="2.62144"} 1
rebalancerd_evaluation_seconds_bucket{le="10.48576"} 1
rebalancerd_evaluation_seconds_bucket{le="41.94304"} 1
rebalancerd_evaluation_seconds_bucket{le="+Inf"} 1
rebalancerd_evaluation_seconds_sum 0.002
rebalancerd_evaluation_seconds_count 1
# HELP rebalancerd_households Households (policies) loaded.
# TYPE rebalancerd_households gauge
rebalancerd_households 2
# HELP rebalancerd_households_blocked Households whose planning is blocked, by reason.
# TYPE rebalancerd_households_blocked gauge
rebalancerd_households_blocked{reason="pending_orders"} 1
# HELP rebalancerd_households_breaching Households with a sleeve outside its band at their last evaluation.
# TYPE rebalancerd_households_breaching gauge
rebalancerd_households_breaching 1
`
	bi := buildinfo.Read()
	build := fmt.Sprintf(`# HELP rebalancerd_build_info Always 1; the labels say which build of rebalancerd runs.
# TYPE rebalancerd_build_info gauge
rebalancerd_build_info{goversion=%q,revision=%q,version=%q} 1
`, bi.GoVersion, bi.Commit, bi.Version)
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(build+want), rebalancerdNames(t, m)...); err != nil {
		t.Fatal(err)
	}
}

// rebalancerdNames returns the names of the rebalancerd_* families the
// registry currently exports, and fails the test unless there is one for
// every collector field of Metrics: populate must give every new vector a
// series, or the tests comparing names would not see it.
func rebalancerdNames(t *testing.T, m *Metrics) []string {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), namespace+"_") {
			names = append(names, mf.GetName())
		}
	}
	fields := 0
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		if !v.Type().Field(i).IsExported() {
			continue
		}
		if _, ok := v.Field(i).Interface().(prometheus.Collector); ok {
			fields++
		}
	}
	if len(names) != fields {
		t.Fatalf("%d rebalancerd families exported, %d collector fields in Metrics: populate them all", len(names), fields)
	}
	return names
}

func TestRuntimeCollectors(t *testing.T) {
	m := New()
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "process_start_time_seconds"} {
		n, err := testutil.GatherAndCount(m.Registry(), name)
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("%s: %d series, want 1", name, n)
		}
	}
}

func TestNamesPassPromlint(t *testing.T) {
	m := New()
	populate(t, m, "smith", "stooq")
	problems, err := testutil.GatherAndLint(m.Registry(), rebalancerdNames(t, m)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func TestRegistryIsPrivate(t *testing.T) {
	// Two instances in one process must not collide (New would panic on a
	// shared registry) and must not share values.
	a, b := New(), New()
	a.Evaluations.WithLabelValues("smith").Inc()
	if got := testutil.ToFloat64(b.Evaluations.WithLabelValues("smith")); got != 0 {
		t.Fatalf("second instance sees %v evaluations, want 0", got)
	}
}

func TestSetPlanningBlocked(t *testing.T) {
	m := New()
	if err := m.SetPlanningBlocked("smith", BlockPendingOrders); err != nil {
		t.Fatal(err)
	}
	if err := m.SetPlanningBlocked("smith"); err != nil { // unblocked
		t.Fatal(err)
	}
	for _, r := range BlockReasons {
		if got := testutil.ToFloat64(m.PlanningBlocked.WithLabelValues("smith", r)); got != 0 {
			t.Errorf("reason %s = %v after unblocking, want 0", r, got)
		}
	}

	err := m.SetPlanningBlocked("smith", "disk_full", BlockNATSDown)
	if err == nil || !strings.Contains(err.Error(), `"disk_full"`) || !strings.Contains(err.Error(), `"smith"`) {
		t.Fatalf("unknown reason: err = %v, want one naming the policy and the reason", err)
	}
	if got := testutil.ToFloat64(m.PlanningBlocked.WithLabelValues("smith", BlockNATSDown)); got != 1 {
		t.Errorf("nats_down = %v alongside an unknown reason, want 1", got)
	}
	if n := testutil.CollectAndCount(m.PlanningBlocked); n != len(BlockReasons) {
		t.Errorf("%d planning_blocked series, want %d (the unknown reason is not exported)", n, len(BlockReasons))
	}
}

func TestObserveReloadFailureKeepsTimestamp(t *testing.T) {
	m := New()
	m.ObserveReload(true, time.Unix(100, 0))
	m.ObserveReload(false, time.Unix(200, 0))
	if got := testutil.ToFloat64(m.ReloadSuccess); got != 0 {
		t.Errorf("successful = %v after a failure, want 0", got)
	}
	if got := testutil.ToFloat64(m.ReloadTimestamp); got != 100 {
		t.Errorf("timestamp = %v after a failure, want the last success, 100", got)
	}
}

func TestForget(t *testing.T) {
	m := New()
	populate(t, m, "smith", "stooq")
	populate(t, m, "jones", "yahoo")

	policyVecs := 15 // the vectors with a policy label
	if got, want := m.ForgetPolicy("smith"), policyVecs-1+len(BlockReasons); got != want {
		t.Errorf("ForgetPolicy deleted %d series, want %d", got, want)
	}
	if got := m.ForgetFeed("stooq"); got != 4 {
		t.Errorf("ForgetFeed deleted %d series, want 4", got)
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetValue() == "smith" || l.GetValue() == "stooq" {
					t.Errorf("%s still has %s=%q", mf.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
	// The other policy and feed are untouched.
	if got := testutil.ToFloat64(m.Evaluations.WithLabelValues("jones")); got != 3 {
		t.Errorf("jones evaluations = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.FeedPolls.WithLabelValues("yahoo")); got != 10 {
		t.Errorf("yahoo polls = %v, want 10", got)
	}
}

// TestForgetPolicies checks that ForgetPolicies deletes exactly what
// ForgetPolicy would for each named policy, in one call.
func TestForgetPolicies(t *testing.T) {
	m := New()
	populate(t, m, "smith", "stooq")
	populate(t, m, "jones", "yahoo")
	populate(t, m, "brown", "yahoo")
	policyVecs := 15
	if got, want := m.ForgetPolicies(map[string]bool{"smith": true, "brown": true, "nobody": true}), 2*(policyVecs-1+len(BlockReasons)); got != want {
		t.Errorf("ForgetPolicies deleted %d series, want %d", got, want)
	}
	if got := m.ForgetPolicy("jones"); got != policyVecs-1+len(BlockReasons) {
		t.Errorf("jones lost series to ForgetPolicies: %d left, want %d", got, policyVecs-1+len(BlockReasons))
	}
	for _, v := range m.policyVecs() {
		ch := make(chan prometheus.Metric, 64)
		go func() { v.Collect(ch); close(ch) }()
		for range ch {
			t.Errorf("a series is left")
		}
	}
	if m.ForgetPolicies(nil) != 0 {
		t.Error("ForgetPolicies(nil) deleted series")
	}
}

// BenchmarkForgetPolicies removes 1,000 of 3,000 households' series at
// once, against ForgetPolicy for each.
func BenchmarkForgetPolicies(b *testing.B) {
	fill := func() (*Metrics, map[string]bool) {
		m := New()
		names := map[string]bool{}
		for i := range 3000 {
			n := fmt.Sprintf("h%05d", i)
			m.Rebalances.WithLabelValues(n, "threshold").Inc()
			m.OrdersPublished.WithLabelValues(n).Inc()
			if i < 1000 {
				names[n] = true
				for _, s := range []string{"stocks", "bonds", "cash"} {
					m.SleeveWeight.WithLabelValues(n, s).Set(1)
				}
			}
		}
		return m, names
	}
	b.Run("one-pass", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			m, names := fill()
			b.StartTimer()
			m.ForgetPolicies(names)
		}
	})
	b.Run("each", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			m, names := fill()
			b.StartTimer()
			for n := range names {
				m.ForgetPolicy(n)
			}
		}
	})
}

// docRow matches a row of the metrics table in docs/SYSTEMD.md:
// | `name` | type | `label`, `label` | meaning |
var docRow = regexp.MustCompile("^\\| `(rebalancerd_[a-z_]+)` \\| (counter|gauge|histogram) \\| ([^|]*)\\|")

// TestDocsTable checks that the metrics table in docs/SYSTEMD.md lists
// exactly the metrics New exports, with their types and labels.
func TestDocsTable(t *testing.T) {
	f, err := os.Open("../../docs/SYSTEMD.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	documented := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if g := docRow.FindStringSubmatch(sc.Text()); g != nil {
			documented[g[1]] = g[2] + " " + labelList(strings.Split(strings.NewReplacer("`", "", " ", "", "—", "").Replace(g[3]), ","))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}

	m := New()
	populate(t, m, "smith", "stooq")
	rebalancerdNames(t, m) // every metric has a series
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]string{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), namespace+"_") {
			continue
		}
		var labels []string
		for _, l := range mf.GetMetric()[0].GetLabel() {
			labels = append(labels, l.GetName())
		}
		exported[mf.GetName()] = strings.ToLower(mf.GetType().String()) + " " + labelList(labels)
	}
	for name, want := range exported {
		if got, ok := documented[name]; !ok {
			t.Errorf("%s (%s) is not in the docs table", name, want)
		} else if got != want {
			t.Errorf("%s: docs say %q, exported %q", name, got, want)
		}
	}
	for name := range documented {
		if _, ok := exported[name]; !ok {
			t.Errorf("docs list %s, which is not exported", name)
		}
	}
}

// labelList is a canonical form of a set of label names.
func labelList(labels []string) string {
	labels = slices.DeleteFunc(slices.Clone(labels), func(s string) bool { return s == "" })
	sort.Strings(labels)
	return "{" + strings.Join(labels, ",") + "}"
}
