// Package statusdoc is the daemon's status document: what GET /status
// serves as JSON, what the status page at / renders and what
// `rebalancerd status` prints. One type for the three, so that they cannot
// disagree: the page decodes the very JSON /status would serve.
package statusdoc

import (
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/buildinfo"
	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/feeds"
)

// Document is the status of a running daemon.
type Document struct {
	// Role is "planner", or "standby: <why>" for a high-availability
	// instance that does not hold the lease (its engine fields are empty).
	Role  string         `json:"role"`
	Build buildinfo.Info `json:"build"`
	engine.Status
	LastReload Reload         `json:"last_reload"`
	Feeds      []feeds.Status `json:"feeds"`
}

// Reload is the outcome of the last load or reload of the policy files.
type Reload struct {
	OK     bool      `json:"ok"`
	At     time.Time `json:"at,omitzero"`
	Error  string    `json:"error,omitempty"`
	Files  int       `json:"policies"`
	Reason string    `json:"reason"`
	// Households counts the policies from households_dir (included in
	// Files); Refused the problems of household and model files that
	// do not run as they are on disk (Error shows the first ones).
	Households int `json:"households,omitempty"`
	Refused    int `json:"refused,omitempty"`
}

// Policy returns the status of the named policy, or nil.
func (d *Document) Policy(name string) *engine.PolicyStatus {
	for i := range d.Policies {
		if d.Policies[i].Policy == name {
			return &d.Policies[i]
		}
	}
	return nil
}

// Percent formats a fraction ("0.602927") as a percentage with 2 places,
// rounded half away from zero ("60.29%"). Text that is not a decimal is
// returned as it is.
func Percent(frac string) string {
	v, err := decimal.NewFromString(frac)
	if err != nil {
		return frac
	}
	return v.Shift(2).StringFixed(2) + "%"
}

// Points formats a deviation (a fraction) in percentage points with 2
// places and an explicit sign ("+5.29 pt").
func Points(frac string) string {
	v, err := decimal.NewFromString(frac)
	if err != nil {
		return frac
	}
	s := v.Shift(2).StringFixed(2) + " pt"
	if v.Sign() > 0 {
		s = "+" + s
	}
	return s
}

// Ago says how long before now t was, to the second ("1m30s ago"); "never"
// for the zero time.
func Ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t).Truncate(time.Second)
	if d < 0 {
		return "in " + (-d).String()
	}
	return d.String() + " ago"
}

// Until says how long after now t is ("in 3h0m0s"), to the minute beyond
// a minute.
func Until(now, t time.Time) string {
	d := t.Sub(now)
	if d < time.Minute {
		return "in " + d.Truncate(time.Second).String()
	}
	return "in " + d.Truncate(time.Minute).String()
}
