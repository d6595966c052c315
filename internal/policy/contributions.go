package policy

import (
	"fmt"

	"github.com/robfig/cron/v3"
	"github.com/shopspring/decimal"
	"go.yaml.in/yaml/v3"

	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// Contribution is money the household pays into an account on a
// schedule (a payroll deduction into a 401(k), say). At each firing the
// daemon invests the household's free cash without selling, as it does
// for a deposit; it does not credit the amount itself, which the broker
// reports when it arrives.
type Contribution struct {
	// Account is an index into Policy.Accounts.
	Account int
	// Amount is what is expected at each firing, in the policy currency.
	Amount decimal.Decimal
	// Schedule is the cron spec as written; Cron its parsed form.
	Schedule string
	Cron     cron.Schedule
	Line     int
}

// contributions reads the optional contributions list; n is nil when
// absent. It needs the accounts, read before it.
func (c *compiler) contributions(n *yaml.Node) {
	if n == nil {
		return
	}
	r, p := c.r, c.p
	for i, item := range r.Sequence(n, "contributions") {
		field := fmt.Sprintf("contributions[%d]", i)
		f := r.Object(item, field, "account", "amount", "schedule")
		k := Contribution{Line: item.Line}
		ok := true
		if v, found := c.required(item, f, field, "account"); found {
			if s, read := r.String(v, strictyaml.Join(field, "account")); read {
				if k.Account, found = p.AccountIndex(s); !found {
					r.Errorf(v, strictyaml.Join(field, "account"), "no account %q (known: %s)", s, c.accountNames())
					ok = false
				}
			}
		} else {
			ok = false
		}
		if v, found := c.required(item, f, field, "amount"); found {
			amount, read := r.Decimal(v, strictyaml.Join(field, "amount"))
			if read && amount.Sign() <= 0 {
				r.Errorf(v, strictyaml.Join(field, "amount"), "must be positive, got %s", amount)
				read = false
			}
			k.Amount, ok = amount, ok && read
		} else {
			ok = false
		}
		if v, found := c.required(item, f, field, "schedule"); found {
			var read bool
			k.Schedule, k.Cron, read = c.schedule(v, strictyaml.Join(field, "schedule"))
			ok = ok && read
		} else {
			ok = false
		}
		if ok {
			p.Contributions = append(p.Contributions, k)
		}
	}
}
