// Package metrics defines the Prometheus metrics rebalancerd exports.
//
// Every metric is named rebalancerd_* and lives on a private registry (with
// the standard go_* and process_* collectors), never on the global default
// registry, so that tests and several daemons in one process do not collide.
// Serve it with promhttp.HandlerFor(m.Registry(), ...).
//
// Weights, targets and deviations are fractions of the policy's investable
// total (0.25 means 25%), converted from decimals at the edge with
// decimal.Decimal.InexactFloat64: they are for dashboards and alerts, never
// for arithmetic.
//
// Labels: policy is the policy's name, sleeve a sleeve path as the policy
// names it, symbol an instrument symbol, feed a price feed's name. Every
// label set is bounded by the configuration; ForgetPolicy and ForgetFeed drop
// the series of whatever a reload removed.
package metrics

import (
	"github.com/rebalancerd/rebalancerd/internal/buildinfo"

	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
)

const namespace = "rebalancerd"

// Label names.
const (
	LabelPolicy  = "policy"
	LabelSleeve  = "sleeve"
	LabelSymbol  = "symbol"
	LabelFeed    = "feed"
	LabelTrigger = "trigger"
	LabelReason  = "reason"
	LabelResult  = "result"
	LabelRule    = "rule"
	LabelInput   = "input"
	LabelPair    = "pair"
)

// Reasons that block planning for a policy: the values of the reason label of
// rebalancerd_planning_blocked.
const (
	// BlockStalePrice: a price the policy needs is older than its max age.
	BlockStalePrice = "stale_price"
	// BlockMissingPrice: a price the policy needs has never been seen.
	BlockMissingPrice = "missing_price"
	// BlockQuarantinedPrice: a price moved more than the policy allows and is
	// held until confirmed.
	BlockQuarantinedPrice = "quarantined_price"
	// BlockInvalidPolicy: the policy file on disk does not parse or bind.
	BlockInvalidPolicy = "invalid_policy"
	// BlockNATSDown: the daemon cannot publish to NATS.
	BlockNATSDown = "nats_down"
	// BlockPendingOrders: orders of an earlier plan are not settled yet.
	BlockPendingOrders = "pending_orders"
	// BlockUnknownOrderState: the state of earlier orders cannot be known
	// (for example the journal could not be read).
	BlockUnknownOrderState = "unknown_order_state"
	// BlockRiskLimit: the last plan broke a pre-trade risk limit and was
	// not published; the policy waits out its cooldown before planning
	// again.
	BlockRiskLimit = "risk_limit"
	// BlockHalted: an operator engaged the kill switch; nothing is
	// published until it is released.
	BlockHalted = "halted"
	// BlockValueChange: the policy's investable total moved more than
	// limits.max_value_change from the last accepted valuation; planning
	// waits until the new valuation persists for prices.confirm_after.
	BlockValueChange = "value_change"
)

// BlockReasons lists every reason SetPlanningBlocked accepts, in the order
// it exports them.
var BlockReasons = []string{
	BlockStalePrice,
	BlockMissingPrice,
	BlockQuarantinedPrice,
	BlockInvalidPolicy,
	BlockNATSDown,
	BlockPendingOrders,
	BlockUnknownOrderState,
	BlockRiskLimit,
	BlockHalted,
	BlockValueChange,
}

// Values of the result label of rebalancerd_config_reloads_total.
const (
	ReloadResultSuccess = "success"
	ReloadResultFailure = "failure"
)

// Metrics holds every rebalancerd collector. The fields are safe for
// concurrent use; create one with New.
type Metrics struct {
	// BuildInfo is rebalancerd_build_info{version,revision,goversion}:
	// always 1, the labels naming the running build (package buildinfo).
	BuildInfo prometheus.Collector
	// SleeveWeight is rebalancerd_sleeve_weight_ratio{policy,sleeve}: the
	// sleeve's current value as a fraction of the policy's total.
	SleeveWeight *prometheus.GaugeVec
	// SleeveTarget is rebalancerd_sleeve_target_ratio{policy,sleeve}: the
	// sleeve's target as a fraction of the policy's total.
	SleeveTarget *prometheus.GaugeVec
	// SleeveDeviation is rebalancerd_sleeve_deviation_ratio{policy,sleeve}:
	// weight minus target, signed (positive means overweight).
	SleeveDeviation *prometheus.GaugeVec
	// SleeveBreach is rebalancerd_sleeve_breach{policy,sleeve}: 1 while the
	// sleeve is outside its tolerance band, else 0.
	SleeveBreach *prometheus.GaugeVec

	// Evaluations is rebalancerd_evaluations_total{policy}: drift evaluations
	// completed.
	Evaluations *prometheus.CounterVec
	// Rebalances is rebalancerd_rebalances_total{policy,trigger}: plans with
	// orders that were published; trigger is the rule that fired (calendar,
	// threshold, hybrid).
	Rebalances *prometheus.CounterVec
	// OrdersPublished is rebalancerd_orders_published_total{policy}: orders
	// acknowledged by JetStream.
	OrdersPublished *prometheus.CounterVec
	// PublishErrors is rebalancerd_publish_errors_total{policy}: failed
	// publish attempts (each retry counts).
	PublishErrors *prometheus.CounterVec
	// PlansRejected is rebalancerd_plans_rejected_total{policy,rule}: plans
	// not published because they broke a pre-trade risk limit.
	PlansRejected *prometheus.CounterVec
	// FillsRecovered is rebalancerd_fills_recovered_total{policy}: fills
	// of unsettled orders read back from the reports stream at start,
	// that the ledger had not applied (a lost or restored state).
	FillsRecovered *prometheus.CounterVec
	// PendingOrders is rebalancerd_pending_orders{policy}: orders published
	// and not yet settled.
	PendingOrders *prometheus.GaugeVec

	// PlanningBlocked is rebalancerd_planning_blocked{policy,reason}: 1 while
	// planning for the policy is blocked for that reason (see BlockReasons),
	// else 0. Set it with SetPlanningBlocked.
	PlanningBlocked *prometheus.GaugeVec
	// PriceAge is rebalancerd_price_age_seconds{policy,symbol}: the age of the
	// price the policy last evaluated with, at that evaluation.
	PriceAge *prometheus.GaugeVec

	// FeedPolls is rebalancerd_feed_polls_total{feed}: polls attempted.
	FeedPolls *prometheus.CounterVec
	// FeedErrors is rebalancerd_feed_errors_total{feed}: polls that failed.
	FeedErrors *prometheus.CounterVec
	// FeedLastSuccess is
	// rebalancerd_feed_last_success_timestamp_seconds{feed}: unix time of the
	// last successful poll.
	FeedLastSuccess *prometheus.GaugeVec
	// FeedBreakerOpen is rebalancerd_feed_breaker_open{feed}: 1 while the
	// feed's circuit breaker is open and polls are skipped, else 0.
	FeedBreakerOpen *prometheus.GaugeVec

	// Correlation is rebalancerd_correlation{policy,pair}: the rolling
	// correlation of a pair of sleeves ("equities~crypto") at the last
	// measurement with enough data.
	Correlation *prometheus.GaugeVec
	// CorrelationAlert is rebalancerd_correlation_alert{policy,pair}: 1
	// while the pair's correlation alert is raised, else 0.
	CorrelationAlert *prometheus.GaugeVec

	// InputsRejected is rebalancerd_inputs_rejected_total{input,reason}:
	// inputs refused, by kind (Input* constants) and reason (bad_price,
	// future_time, malformed, schema_version, missing_field,
	// unknown_policy, invalid_fill, wrong_token...).
	InputsRejected *prometheus.CounterVec

	// ReloadSuccess is rebalancerd_config_last_reload_successful: 1 if the
	// last configuration reload succeeded, else 0 (as Prometheus's own
	// prometheus_config_last_reload_successful). Set it with ObserveReload.
	ReloadSuccess prometheus.Gauge
	// ReloadTimestamp is
	// rebalancerd_config_last_reload_success_timestamp_seconds: unix time of
	// the last successful configuration load (the initial one counts).
	ReloadTimestamp prometheus.Gauge
	// Reloads is rebalancerd_config_reloads_total{result}: reload attempts by
	// result (success, failure).
	Reloads *prometheus.CounterVec
	// PoliciesLoaded is rebalancerd_policies_loaded: policies in the running
	// configuration.
	PoliciesLoaded prometheus.Gauge
	// NATSConnected is rebalancerd_nats_connected: 1 while connected to NATS,
	// else 0.
	NATSConnected prometheus.Gauge
	// EvaluationSeconds is rebalancerd_evaluation_duration_seconds: time to
	// evaluate one policy (drift and plan, without publishing).
	EvaluationSeconds prometheus.Histogram
	// Households is rebalancerd_households: households (policies) loaded.
	Households prometheus.Gauge
	// HouseholdsBreaching is rebalancerd_households_breaching: households
	// with a sleeve outside its band at their last evaluation.
	HouseholdsBreaching prometheus.Gauge
	// HouseholdsBlocked is rebalancerd_households_blocked{reason}:
	// households whose planning is blocked for that reason (BlockReasons).
	// Unlike PlanningBlocked it is exported for every household, whatever
	// the per-household cap.
	HouseholdsBlocked *prometheus.GaugeVec
	// BatchEvaluationSeconds is rebalancerd_evaluation_seconds: time from a
	// batch of quotes to every household it affects evaluated.
	BatchEvaluationSeconds prometheus.Histogram
	// TriggerLatency is rebalancerd_trigger_to_publish_seconds: time from a
	// trigger firing to the last order of its plan being acknowledged.
	TriggerLatency prometheus.Histogram

	registry *prometheus.Registry
}

// New returns the metrics registered on a new private registry, together
// with the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		SleeveWeight: gaugeVec("sleeve_weight_ratio",
			"Current value of the sleeve as a fraction of the policy's investable total.",
			LabelPolicy, LabelSleeve),
		SleeveTarget: gaugeVec("sleeve_target_ratio",
			"Target of the sleeve as a fraction of the policy's investable total.",
			LabelPolicy, LabelSleeve),
		SleeveDeviation: gaugeVec("sleeve_deviation_ratio",
			"Sleeve weight minus target, as a fraction of the total; positive means overweight.",
			LabelPolicy, LabelSleeve),
		SleeveBreach: gaugeVec("sleeve_breach",
			"1 while the sleeve is outside its tolerance band, else 0.",
			LabelPolicy, LabelSleeve),

		Evaluations: counterVec("evaluations_total",
			"Drift evaluations completed.",
			LabelPolicy),
		Rebalances: counterVec("rebalances_total",
			"Rebalances whose orders were published, by the trigger that fired.",
			LabelPolicy, LabelTrigger),
		OrdersPublished: counterVec("orders_published_total",
			"Orders acknowledged by JetStream.",
			LabelPolicy),
		PublishErrors: counterVec("publish_errors_total",
			"Failed attempts to publish an order; each retry counts.",
			LabelPolicy),
		PlansRejected: counterVec("plans_rejected_total",
			"Plans not published because they broke a pre-trade risk limit, by limit.",
			LabelPolicy, LabelRule),
		FillsRecovered: counterVec("fills_recovered_total",
			"Fills of unsettled orders read back from the reports stream at start that the ledger had not applied.",
			LabelPolicy),
		PendingOrders: gaugeVec("pending_orders",
			"Orders published and not yet settled.",
			LabelPolicy),

		PlanningBlocked: gaugeVec("planning_blocked",
			"1 while planning for the policy is blocked for the reason, else 0.",
			LabelPolicy, LabelReason),
		PriceAge: gaugeVec("price_age_seconds",
			"Age of the price the policy was last evaluated with, at that evaluation.",
			LabelPolicy, LabelSymbol),

		FeedPolls: counterVec("feed_polls_total",
			"Price feed polls attempted.",
			LabelFeed),
		FeedErrors: counterVec("feed_errors_total",
			"Price feed polls that failed.",
			LabelFeed),
		FeedLastSuccess: gaugeVec("feed_last_success_timestamp_seconds",
			"Unix time of the feed's last successful poll.",
			LabelFeed),
		FeedBreakerOpen: gaugeVec("feed_breaker_open",
			"1 while the feed's circuit breaker is open and polls are skipped, else 0.",
			LabelFeed),

		Correlation: gaugeVec("correlation",
			"Rolling correlation of a pair of sleeves' returns at the last measurement with enough data.",
			LabelPolicy, LabelPair),
		CorrelationAlert: gaugeVec("correlation_alert",
			"1 while the pair's correlation alert is raised (diversification failing), else 0.",
			LabelPolicy, LabelPair),
		InputsRejected: counterVec("inputs_rejected_total",
			"Inputs refused, by kind (price, report, control, policy_file) and reason.",
			LabelInput, LabelReason),

		ReloadSuccess: gauge("config_last_reload_successful",
			"Whether the last configuration reload attempt was successful."),
		ReloadTimestamp: gauge("config_last_reload_success_timestamp_seconds",
			"Unix time of the last successful configuration load."),
		Reloads: counterVec("config_reloads_total",
			"Configuration reload attempts, by result.",
			LabelResult),
		PoliciesLoaded: gauge("policies_loaded",
			"Policies in the running configuration."),
		NATSConnected: gauge("nats_connected",
			"1 while connected to NATS, else 0."),
		// 50µs to 13s: drift and plan of a 30-holding policy take about 20µs.
		EvaluationSeconds: histogram("evaluation_duration_seconds",
			"Time to evaluate one policy: drift and plan, without publishing.",
			prometheus.ExponentialBuckets(50e-6, 4, 10)),
		Households: gauge("households",
			"Households (policies) loaded."),
		HouseholdsBreaching: gauge("households_breaching",
			"Households with a sleeve outside its band at their last evaluation."),
		HouseholdsBlocked: gaugeVec("households_blocked",
			"Households whose planning is blocked, by reason.",
			LabelReason),
		// 10µs to 42s: one household takes tens of microseconds, 100,000
		// up to seconds.
		BatchEvaluationSeconds: histogram("evaluation_seconds",
			"Time from a batch of quotes to every household it affects evaluated.",
			prometheus.ExponentialBuckets(10e-6, 4, 12)),
		// 1ms to 65s: JetStream acknowledges in well under a millisecond on
		// loopback; retries through an outage take seconds.
		TriggerLatency: histogram("trigger_to_publish_seconds",
			"Time from a trigger firing to the last order of its plan being acknowledged.",
			prometheus.ExponentialBuckets(1e-3, 4, 9)),

		registry: prometheus.NewRegistry(),
	}
	m.BuildInfo = buildinfo.Read().Collector()
	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.SleeveWeight, m.SleeveTarget, m.SleeveDeviation, m.SleeveBreach,
		m.Evaluations, m.Rebalances, m.OrdersPublished, m.PublishErrors, m.PlansRejected, m.PendingOrders,
		m.FillsRecovered, m.PlanningBlocked, m.PriceAge,
		m.FeedPolls, m.FeedErrors, m.FeedLastSuccess, m.FeedBreakerOpen, m.InputsRejected,
		m.Correlation, m.CorrelationAlert,
		m.ReloadSuccess, m.ReloadTimestamp, m.Reloads, m.PoliciesLoaded, m.NATSConnected,
		m.EvaluationSeconds, m.TriggerLatency,
		m.Households, m.HouseholdsBreaching, m.HouseholdsBlocked, m.BatchEvaluationSeconds,
		m.BuildInfo,
	)
	// Both results are exported from the start, so that
	// increase(rebalancerd_config_reloads_total{result="failure"}[1h]) sees
	// the first failure.
	m.Reloads.WithLabelValues(ReloadResultSuccess)
	m.Reloads.WithLabelValues(ReloadResultFailure)
	return m
}

// Kinds of input of InputsRejected.
const (
	InputPrice      = "price"       // a quote of a feed or a price message
	InputReport     = "report"      // a fill or positions message
	InputControl    = "control"     // a kill-switch or manual-rebalance request
	InputPolicyFile = "policy_file" // a policy or holdings file at reload
)

// Registry returns the private registry holding every metric: the Gatherer
// for the /metrics endpoint.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// ObserveReload records a configuration load attempt that finished at at:
// the success gauge, the reload counter and, when ok, the success timestamp.
func (m *Metrics) ObserveReload(ok bool, at time.Time) {
	result := ReloadResultFailure
	if ok {
		result = ReloadResultSuccess
		m.ReloadSuccess.Set(1)
		m.ReloadTimestamp.Set(float64(at.UnixNano()) / 1e9)
	} else {
		m.ReloadSuccess.Set(0)
	}
	m.Reloads.WithLabelValues(result).Inc()
}

// SetPlanningBlocked records why planning is blocked for policy: every reason
// of BlockReasons is set to 1 if it is in blocked and to 0 otherwise, so the
// policy always exports the full set (no reasons: planning may proceed). A
// reason that is not in BlockReasons is not exported and makes it return an
// error naming it; the known reasons are set regardless.
func (m *Metrics) SetPlanningBlocked(policy string, blocked ...string) error {
	var errs []error
	for _, r := range blocked {
		if !slices.Contains(BlockReasons, r) {
			errs = append(errs, fmt.Errorf("policy %q: unknown planning block reason %q (want one of %v)", policy, r, BlockReasons))
		}
	}
	for _, r := range BlockReasons {
		v := 0.0
		if slices.Contains(blocked, r) {
			v = 1
		}
		m.PlanningBlocked.WithLabelValues(policy, r).Set(v)
	}
	return errors.Join(errs...)
}

// ForgetPolicy deletes every series labelled with the policy, for a policy
// that a reload removed. It returns how many series it deleted.
func (m *Metrics) ForgetPolicy(name string) int {
	return deletePartial(prometheus.Labels{LabelPolicy: name}, m.policyVecs()...)
}

// policyVecs are the vectors with a policy label.
func (m *Metrics) policyVecs() []*prometheus.MetricVec {
	return []*prometheus.MetricVec{m.SleeveWeight.MetricVec, m.SleeveTarget.MetricVec, m.SleeveDeviation.MetricVec, m.SleeveBreach.MetricVec,
		m.Evaluations.MetricVec, m.Rebalances.MetricVec, m.OrdersPublished.MetricVec, m.PublishErrors.MetricVec, m.PlansRejected.MetricVec,
		m.PendingOrders.MetricVec, m.FillsRecovered.MetricVec, m.PlanningBlocked.MetricVec, m.PriceAge.MetricVec,
		m.Correlation.MetricVec, m.CorrelationAlert.MetricVec}
}

// ForgetPolicies is ForgetPolicy for many policies at once, with one pass
// over each vector (ForgetPolicy passes over every vector for each policy:
// removing a thousand households of several thousand took seconds). It
// returns how many series it deleted.
func (m *Metrics) ForgetPolicies(names map[string]bool) int {
	if len(names) == 0 {
		return 0
	}
	n := 0
	for _, v := range m.policyVecs() {
		ch := make(chan prometheus.Metric, 256)
		go func() {
			v.Collect(ch)
			close(ch)
		}()
		var doomed []prometheus.Labels
		for metric := range ch {
			var d dto.Metric
			if metric.Write(&d) != nil {
				continue
			}
			labels := prometheus.Labels{}
			for _, lp := range d.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if names[labels[LabelPolicy]] {
				doomed = append(doomed, labels)
			}
		}
		for _, l := range doomed {
			if v.Delete(l) {
				n++
			}
		}
	}
	return n
}

// ForgetFeed deletes every series labelled with the feed, for a feed that a
// reload removed. It returns how many series it deleted.
func (m *Metrics) ForgetFeed(name string) int {
	return deletePartial(prometheus.Labels{LabelFeed: name},
		m.FeedPolls.MetricVec, m.FeedErrors.MetricVec, m.FeedLastSuccess.MetricVec, m.FeedBreakerOpen.MetricVec)
}

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help})
}

func gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, labels)
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
}

func histogram(name, help string, buckets []float64) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets})
}

func deletePartial(labels prometheus.Labels, vecs ...*prometheus.MetricVec) int {
	n := 0
	for _, v := range vecs {
		n += v.DeletePartialMatch(labels)
	}
	return n
}
