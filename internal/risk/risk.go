// Package risk checks a plan against the policy's pre-trade limits before
// it is published: the notional of one order (absolute and as a share of
// the portfolio), the plan's turnover, its number of orders, how many
// plans were published in the last 24 hours, and the size of the numbers
// its orders carry. It is a pure function.
//
// Shares are judged against the smaller of the plan's investable total and
// the last accepted valuation (see Check), so that a price that inflates
// the portfolio cannot widen the limits meant to contain it.
package risk

import (
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/policy"
)

// Rules a plan can break.
const (
	RuleOrderNotional = "max_order_notional"
	RuleOrderShare    = "max_order_share"
	RuleTurnover      = "max_turnover"
	RuleOrders        = "max_orders"
	RulePlansPerDay   = "max_plans_per_day"
	// RuleOrderSize is not a policy limit: an order whose quantity, price
	// or notional takes more than MaxDecimalText characters is nonsense
	// (and no consumer that applies the limit of every decimal read from
	// a message could read it back).
	RuleOrderSize = "order_size"
)

// MaxDecimalText is the most characters an order's quantity, price or
// notional may take as plain decimal text: the limit of the policy parser
// and of every decimal the daemon reads from a message.
const MaxDecimalText = 40

// Violation is one broken limit.
type Violation struct {
	Rule   string `json:"rule"`
	Detail string `json:"detail"`
}

// Check returns the limits p breaks. valuation is the policy's last
// accepted valuation: shares (max_order_share, max_turnover) are judged
// against the smaller of it and p.Total; a valuation that is not positive
// (none accepted yet) leaves p.Total. recent are the times of the plans
// published before it; now is the time of p. An empty result means p may
// be published.
func Check(p *plan.Plan, l policy.Limits, valuation decimal.Decimal, recent []time.Time, now time.Time) []Violation {
	var out []Violation
	for i := range p.Orders {
		o := &p.Orders[i]
		if n := max(len(o.Quantity.String()), len(o.Price.String()), len(o.Notional.String())); n > MaxDecimalText {
			out = append(out, Violation{RuleOrderSize, fmt.Sprintf("order %s (%s %s in %s) has a number of %d characters, more than %d",
				o.ID, o.Side, o.Instrument, o.Account, n, MaxDecimalText)})
			break
		}
	}
	base := p.Total
	if valuation.Sign() > 0 && valuation.LessThan(base) {
		base = valuation
	}
	if l.MaxOrders > 0 && len(p.Orders) > l.MaxOrders {
		out = append(out, Violation{RuleOrders, fmt.Sprintf("%d orders, limit %d", len(p.Orders), l.MaxOrders)})
	}
	total := decimal.Zero
	var biggest *plan.Order
	for i := range p.Orders {
		o := &p.Orders[i]
		total = total.Add(o.Notional)
		if biggest == nil || o.Notional.GreaterThan(biggest.Notional) {
			biggest = o
		}
	}
	if biggest != nil {
		if l.MaxOrderNotional.Sign() > 0 && biggest.Notional.GreaterThan(l.MaxOrderNotional) {
			out = append(out, Violation{RuleOrderNotional, fmt.Sprintf("order %s (%s %s %s in %s) is %s, limit %s",
				biggest.ID, biggest.Side, biggest.Quantity, biggest.Instrument, biggest.Account, biggest.Notional, l.MaxOrderNotional)})
		}
		// notional > share x total, without dividing.
		if l.MaxOrderShare.Sign() > 0 && biggest.Notional.GreaterThan(l.MaxOrderShare.Mul(base)) {
			out = append(out, Violation{RuleOrderShare, fmt.Sprintf("order %s is %s, %s of the portfolio's %s%s; limit %s",
				biggest.ID, biggest.Notional, share(biggest.Notional, base), base.StringFixed(2), baseNote(base, p.Total), pct(l.MaxOrderShare))})
		}
	}
	if l.MaxTurnover.Sign() > 0 && total.GreaterThan(l.MaxTurnover.Mul(base)) {
		out = append(out, Violation{RuleTurnover, fmt.Sprintf("orders total %s, %s of the portfolio's %s%s; limit %s",
			total, share(total, base), base.StringFixed(2), baseNote(base, p.Total), pct(l.MaxTurnover))})
	}
	if l.MaxPlansPerDay > 0 {
		n := 0
		for _, t := range recent {
			if now.Sub(t) < 24*time.Hour {
				n++
			}
		}
		if n >= l.MaxPlansPerDay {
			out = append(out, Violation{RulePlansPerDay, fmt.Sprintf("%d plans published in the last 24 hours, limit %d", n, l.MaxPlansPerDay)})
		}
	}
	return out
}

// baseNote says, when shares are judged against the last accepted
// valuation rather than the plan's total, what the plan's total was.
func baseNote(base, total decimal.Decimal) string {
	if base.Equal(total) {
		return ""
	}
	return " (last accepted valuation; the plan values it at " + total.StringFixed(2) + ")"
}

// share formats a/b as a percentage with two decimals (rounded half away
// from zero); "n/a" for a zero b.
func share(a, b decimal.Decimal) string {
	if b.Sign() == 0 {
		return "n/a"
	}
	return a.Mul(decimal.NewFromInt(100)).DivRound(b, 2).String() + "%"
}

func pct(f decimal.Decimal) string { return f.Mul(decimal.NewFromInt(100)).String() + "%" }
