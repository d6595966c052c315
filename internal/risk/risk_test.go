package risk

import (
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/policy"
)

var now = time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)

// testPlan: a 10,000 portfolio with a sell of 1,500 and a buy of 1,400.
func testPlan() *plan.Plan {
	d := decimal.RequireFromString
	return &plan.Plan{Total: d("10000"), Orders: []plan.Order{
		{ID: "p-1", Side: plan.Sell, Account: "ira", Instrument: "VTI", Quantity: d("15"), Notional: d("1500")},
		{ID: "p-2", Side: plan.Buy, Account: "ira", Instrument: "BND", Quantity: d("14"), Notional: d("1400")},
	}}
}

func TestCheck(t *testing.T) {
	d := decimal.RequireFromString
	for _, tt := range []struct {
		name   string
		limits func(*policy.Limits)
		recent []time.Time
		want   []string // rule: detail prefix
	}{
		{"defaults pass", nil, nil, nil},
		{"order notional", func(l *policy.Limits) { l.MaxOrderNotional = d("1000") },
			nil, []string{"max_order_notional: order p-1 (sell 15 VTI in ira) is 1500, limit 1000"}},
		{"order notional at the limit passes", func(l *policy.Limits) { l.MaxOrderNotional = d("1500") }, nil, nil},
		{"order share", func(l *policy.Limits) { l.MaxOrderShare = d("0.1") },
			nil, []string{"max_order_share: order p-1 is 1500, 15% of the portfolio's 10000.00; limit 10%"}},
		{"turnover", func(l *policy.Limits) { l.MaxTurnover = d("0.25") },
			nil, []string{"max_turnover: orders total 2900, 29% of the portfolio's 10000.00; limit 25%"}},
		{"turnover at the limit passes", func(l *policy.Limits) { l.MaxTurnover = d("0.29") }, nil, nil},
		{"orders", func(l *policy.Limits) { l.MaxOrders = 1 }, nil, []string{"max_orders: 2 orders, limit 1"}},
		{"plans per day", func(l *policy.Limits) { l.MaxPlansPerDay = 2 },
			[]time.Time{now.Add(-25 * time.Hour), now.Add(-23 * time.Hour), now.Add(-time.Hour)},
			[]string{"max_plans_per_day: 2 plans published in the last 24 hours, limit 2"}},
		{"plans older than a day do not count", func(l *policy.Limits) { l.MaxPlansPerDay = 2 },
			[]time.Time{now.Add(-48 * time.Hour), now.Add(-25 * time.Hour), now.Add(-time.Hour)}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := policy.DefaultLimits()
			if tt.limits != nil {
				tt.limits(&l)
			}
			got := Check(testPlan(), l, decimal.Zero, tt.recent, now)
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %v", got, tt.want)
			}
			for i, v := range got {
				if s := v.Rule + ": " + v.Detail; !strings.HasPrefix(s, tt.want[i]) {
					t.Errorf("got %q, want %q", s, tt.want[i])
				}
			}
		})
	}
}

func TestCheckEmptyPlanAndZeroTotal(t *testing.T) {
	if v := Check(&plan.Plan{}, policy.DefaultLimits(), decimal.Zero, nil, now); len(v) != 0 {
		t.Errorf("an empty plan breaks %+v", v)
	}
	p := testPlan()
	p.Total = decimal.Zero
	v := Check(p, policy.DefaultLimits(), decimal.Zero, nil, now)
	if len(v) != 2 || !strings.Contains(v[0].Detail, "n/a") {
		t.Errorf("zero total: %+v, want share and turnover breaks without dividing by zero", v)
	}
}

// TestCheckAgainstAcceptedValuation: a price that inflates the plan's
// total does not widen the share limits (issue 12).
func TestCheckAgainstAcceptedValuation(t *testing.T) {
	d := decimal.RequireFromString
	p := testPlan()
	p.Total = d("11800") // the new price values the portfolio higher
	l := policy.DefaultLimits()
	l.MaxOrderShare, l.MaxTurnover = d("0.14"), d("0.27")
	if v := Check(p, l, decimal.Zero, nil, now); len(v) != 0 {
		t.Fatalf("against the plan's own total: %+v, want none (1500 <= 14%% of 11800)", v)
	}
	want := []string{
		"max_order_share: order p-1 is 1500, 15% of the portfolio's 10000.00 (last accepted valuation; the plan values it at 11800.00); limit 14%",
		"max_turnover: orders total 2900, 29% of the portfolio's 10000.00 (last accepted valuation; the plan values it at 11800.00); limit 27%",
	}
	checkViolations(t, Check(p, l, d("10000"), nil, now), want)
	// A lower total than the accepted valuation is judged as it is.
	p.Total = d("9000")
	checkViolations(t, Check(p, l, d("10000"), nil, now), []string{
		"max_order_share: order p-1 is 1500, 16.67% of the portfolio's 9000.00; limit 14%",
		"max_turnover: orders total 2900, 32.22% of the portfolio's 9000.00; limit 27%",
	})
}

// TestCheckOrderSize: an order whose numbers do not fit the decimal limit
// of messages is refused whatever the policy's limits.
func TestCheckOrderSize(t *testing.T) {
	d := decimal.RequireFromString
	p := testPlan()
	p.Total = d("6e40")
	p.Orders[1].Quantity = d("2.1e38") // 39 digits: fits
	p.Orders[1].Notional = d("2.1e40") // 41 digits
	l := policy.DefaultLimits()
	l.MaxOrderShare, l.MaxTurnover = d("1"), d("2")
	checkViolations(t, Check(p, l, decimal.Zero, nil, now), []string{
		"order_size: order p-2 (buy BND in ira) has a number of 41 characters, more than 40",
	})
	p.Orders[1].Notional = d("2.1e39")
	checkViolations(t, Check(p, l, decimal.Zero, nil, now), nil)
}

func checkViolations(t *testing.T, got []Violation, want []string) {
	t.Helper()
	var lines []string
	for _, v := range got {
		lines = append(lines, v.Rule+": "+v.Detail)
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("violations:\n  %s\nwant:\n  %s", strings.Join(lines, "\n  "), strings.Join(want, "\n  "))
	}
}
