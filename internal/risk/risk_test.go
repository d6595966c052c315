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
			got := Check(testPlan(), l, tt.recent, now)
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
	if v := Check(&plan.Plan{}, policy.DefaultLimits(), nil, now); len(v) != 0 {
		t.Errorf("an empty plan breaks %+v", v)
	}
	p := testPlan()
	p.Total = decimal.Zero
	v := Check(p, policy.DefaultLimits(), nil, now)
	if len(v) != 2 || !strings.Contains(v[0].Detail, "n/a") {
		t.Errorf("zero total: %+v, want share and turnover breaks without dividing by zero", v)
	}
}
