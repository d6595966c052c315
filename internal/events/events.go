// Package events defines the messages rebalancerd exchanges on NATS: the
// events it publishes (orders, plans, drift snapshots) and the reports it
// consumes (fills, position snapshots, prices). Each is plain data with a
// schema_version, encoded as JSON with decimals as strings; subjects are
// built by the Subjects helpers so that publishers and subscribers agree.
//
// This package has no dependency on NATS: it is the contract, not the
// transport.
package events

import (
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// SchemaVersion is the version of every event defined here. It changes only
// when a field changes meaning or disappears; new fields may be added
// without a change, so consumers must ignore fields they do not know.
const SchemaVersion = 1

// DefaultPrefix is the subject prefix used when the configuration sets none.
const DefaultPrefix = "rebalance"

// Subjects builds the subjects under one prefix.
type Subjects struct {
	Prefix string
}

// Order is the subject of one order: <prefix>.orders.<policy>.<account>.
func (s Subjects) Order(policy, account string) string {
	return s.Prefix + ".orders." + policy + "." + account
}

// Orders is the wildcard subject of every order of every policy.
func (s Subjects) Orders() string { return s.Prefix + ".orders.>" }

// Plan is the subject of a policy's plans: <prefix>.plans.<policy>.
func (s Subjects) Plan(policy string) string { return s.Prefix + ".plans." + policy }

// Plans is the wildcard subject of every plan.
func (s Subjects) Plans() string { return s.Prefix + ".plans.>" }

// Drift is the subject of a policy's drift snapshots: <prefix>.drift.<policy>.
func (s Subjects) Drift(policy string) string { return s.Prefix + ".drift." + policy }

// Fill is the subject executors report fills on:
// <prefix>.fills.<policy>.<account>.
func (s Subjects) Fill(policy, account string) string {
	return s.Prefix + ".fills." + policy + "." + account
}

// Fills is the wildcard subject of every fill.
func (s Subjects) Fills() string { return s.Prefix + ".fills.>" }

// Positions is the subject of a policy's authoritative holdings snapshots:
// <prefix>.positions.<policy>.
func (s Subjects) Positions(policy string) string { return s.Prefix + ".positions." + policy }

// AllPositions is the wildcard subject of every positions snapshot.
func (s Subjects) AllPositions() string { return s.Prefix + ".positions.>" }

// CashFlow is the subject of a policy's cash flows (consumed).
func (s Subjects) CashFlow(policy string) string { return s.Prefix + ".cashflows." + policy }

// CashFlows matches every policy's cash flows.
func (s Subjects) CashFlows() string { return s.Prefix + ".cashflows.>" }

// Price is a subject a price publisher may use for a symbol:
// <prefix>.prices.<symbol>. The NATS feed reads the symbol from the
// message, not from the subject.
func (s Subjects) Price(symbol string) string { return s.Prefix + ".prices." + symbol }

// Prices is the wildcard subject the NATS feed subscribes to.
func (s Subjects) Prices() string { return s.Prefix + ".prices.>" }

// Alert is the subject of a policy's alerts: <prefix>.alerts.<policy>.
func (s Subjects) Alert(policy string) string { return s.Prefix + ".alerts." + policy }

// Alerts is the wildcard subject of every alert.
func (s Subjects) Alerts() string { return s.Prefix + ".alerts.>" }

// Order is one order to execute, published on Subjects.Order with the
// NATS message id set to OrderID. It carries the order fields of the plan
// plus what traces it back to its cause.
type Order struct {
	SchemaVersion int    `json:"schema_version"`
	OrderID       string `json:"order_id"`
	PlanID        string `json:"plan_id"`
	Policy        string `json:"policy"`
	PolicyVersion string `json:"policy_version"`
	// Trigger is what started the rebalance: calendar, threshold, hybrid,
	// manual, cashflow or phase_in (a step of a phase-in).
	Trigger   string    `json:"trigger"`
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is when the daemon stops waiting for fills of this order
	// and considers it expired (created_at plus the policy's order_ttl).
	ExpiresAt  time.Time       `json:"expires_at"`
	Phase      int             `json:"phase"`
	Account    string          `json:"account"`
	Instrument string          `json:"instrument"`
	Side       string          `json:"side"`
	Quantity   decimal.Decimal `json:"quantity"`
	Price      decimal.Decimal `json:"price"`
	Notional   decimal.Decimal `json:"notional"`
	Sleeve     string          `json:"sleeve"`
	Rule       string          `json:"rule"`
	// Lots are, for a sell in a taxable account whose lots are known, the
	// tax lots to sell (specific identification, IRS Publication 550,
	// "Adequate identification"): an executor that tells the broker these
	// lots realizes the gains the plan estimated; without them the broker
	// defaults, usually to first in, first out.
	Lots []LotToSell `json:"lots,omitempty"`
}

// LotToSell names a tax lot a sell order sells.
type LotToSell struct {
	// Lot is the index of the lot among the position's lots, from 0, in
	// the order of the holdings (the plan's tax.Sale.Lot).
	Lot       int             `json:"lot"`
	Acquired  tax.Date        `json:"acquired"`
	Quantity  decimal.Decimal `json:"quantity"`
	CostBasis decimal.Decimal `json:"cost_basis"`
}

// OrdersOf turns a plan's orders into order events: created is their
// creation time (UTC), ttl the policy's order_ttl that sets ExpiresAt.
func OrdersOf(p *plan.Plan, trigger string, created time.Time, ttl time.Duration) []Order {
	orders := make([]Order, len(p.Orders))
	for i, o := range p.Orders {
		orders[i] = Order{
			SchemaVersion: SchemaVersion, OrderID: o.ID, PlanID: p.ID, Policy: p.Policy, PolicyVersion: p.PolicyVersion,
			Trigger: trigger, CreatedAt: created, ExpiresAt: created.Add(ttl),
			Phase: o.Phase, Account: o.Account, Instrument: o.Instrument, Side: string(o.Side),
			Quantity: o.Quantity, Price: o.Price, Notional: o.Notional, Sleeve: o.Sleeve, Rule: string(o.Rule),
		}
		orders[i].Lots = LotsOf(&p.Orders[i])
	}
	return orders
}

// LotsOf returns the lots to sell that a plan's order names (none for a
// buy or a sell whose lots are unknown).
func LotsOf(o *plan.Order) []LotToSell {
	var out []LotToSell
	for _, s := range o.Lots {
		out = append(out, LotToSell{Lot: s.Lot, Acquired: s.Acquired, Quantity: s.Quantity, CostBasis: s.Basis})
	}
	return out
}

// FillStatus says whether more fills of an order may follow.
type FillStatus string

// The statuses a fill report may carry.
const (
	// FillPartial reports part of an order; more fills may follow.
	FillPartial FillStatus = "partial"
	// FillFilled reports the last fill of an order: it is done.
	FillFilled FillStatus = "filled"
	// FillCancelled reports that the rest of an order will not be filled.
	// Quantity may be zero.
	FillCancelled FillStatus = "cancelled"
)

// Fill is an executor's report of (part of) an order's execution, consumed
// from Subjects.Fill. FillID makes a report idempotent: the same FillID is
// applied once.
type Fill struct {
	SchemaVersion int        `json:"schema_version"`
	FillID        string     `json:"fill_id"`
	OrderID       string     `json:"order_id"`
	Status        FillStatus `json:"status"`
	// Quantity is the quantity executed by this report, not cumulative.
	Quantity decimal.Decimal `json:"quantity"`
	Price    decimal.Decimal `json:"price"`
	// Fees are charged to the account's cash, in the policy currency.
	Fees decimal.Decimal `json:"fees"`
	At   time.Time       `json:"at"`
}

// AccountPositions is one account's cash and positions in a Positions
// snapshot.
type AccountPositions struct {
	Cash      decimal.Decimal            `json:"cash"`
	Positions map[string]decimal.Decimal `json:"positions"`
}

// Positions is an authoritative holdings snapshot for one policy, consumed
// from Subjects.Positions. It replaces the daemon's ledger for that policy.
type Positions struct {
	SchemaVersion int                         `json:"schema_version"`
	AsOf          time.Time                   `json:"as_of"`
	Accounts      map[string]AccountPositions `json:"accounts"`
}

// Kinds of CashFlow.
const (
	CashFlowDeposit    = "deposit"
	CashFlowWithdrawal = "withdrawal"
)

// CashFlow is money coming into or going out of an account, consumed from
// Subjects.CashFlow. A deposit (or dividend) has arrived in the account:
// the daemon adds it to the account's cash and invests it without selling.
// A withdrawal asks the daemon to raise the amount in the account without
// buying; the money then leaves it outside the daemon, and planning waits
// for a positions snapshot that shows it gone.
type CashFlow struct {
	SchemaVersion int `json:"schema_version"`
	// CashFlowID identifies the cash flow; a repeated id is applied once.
	CashFlowID string          `json:"cashflow_id"`
	Kind       string          `json:"kind"`
	Account    string          `json:"account"`
	Amount     decimal.Decimal `json:"amount"`
	At         time.Time       `json:"at"`
}

// Price is one quote on Subjects.Prices.
type Price struct {
	SchemaVersion int             `json:"schema_version,omitempty"`
	Symbol        string          `json:"symbol"`
	Price         decimal.Decimal `json:"price"`
	At            time.Time       `json:"at"`
}

// Plan is the whole outcome of one rebalance, published once per rebalance
// on Subjects.Plan with the NATS message id set to the plan id: the drift
// before and after, every order and what stays unresolved. Its fields are
// those of plan.Plan (see docs/EVENTS.md) plus the trigger and the time.
type Plan struct {
	SchemaVersion int       `json:"schema_version"`
	Trigger       string    `json:"trigger"`
	CreatedAt     time.Time `json:"created_at"`
	// Breaching lists the sleeves out of their bands when the plan was made.
	Breaching []string `json:"breaching"`
	*plan.Plan
}

// DriftSleeve is one sleeve of a Drift snapshot; fractions of the total
// value, as decimal strings.
type DriftSleeve struct {
	Sleeve    string          `json:"sleeve"`
	Target    decimal.Decimal `json:"target"`
	Weight    decimal.Decimal `json:"weight"`
	Deviation decimal.Decimal `json:"deviation"`
	BandLow   decimal.Decimal `json:"band_low"`
	BandHigh  decimal.Decimal `json:"band_high"`
	Breach    bool            `json:"breach"`
	Value     decimal.Decimal `json:"value"`
}

// Drift is a policy's drift snapshot at one evaluation, published on
// Subjects.Drift (core NATS: informational, at most once).
type Drift struct {
	SchemaVersion int       `json:"schema_version"`
	Policy        string    `json:"policy"`
	PolicyVersion string    `json:"policy_version"`
	EvaluatedAt   time.Time `json:"evaluated_at"`
	// PricesAsOf is the time of the oldest price used.
	PricesAsOf   time.Time       `json:"prices_as_of"`
	HoldingsAsOf time.Time       `json:"holdings_as_of"`
	Currency     string          `json:"currency"`
	Total        decimal.Decimal `json:"total_value"`
	Sleeves      []DriftSleeve   `json:"sleeves"`
	Breaching    []string        `json:"breaching"`
}

// Control actions on Subjects.Control.
const (
	ControlHalt    = "halt"
	ControlRelease = "release"
	// ControlRebalance asks for a rebalance of ControlRequest.Policy now,
	// to its destination (the "manual" trigger).
	ControlRebalance = "rebalance"
	// ControlResync replaces ControlRequest.Policy's ledger with the
	// holdings in ControlRequest.Holdings, whatever their date: the
	// operator's way out of a block on the holdings.
	ControlResync = "resync"
)

// Control is the subject of a control action, <prefix>.control.<action>:
// a NATS request answered with a ControlReply.
func (s Subjects) Control(action string) string { return s.Prefix + ".control." + action }

// ControlRequest engages (halt) or releases the kill switch. Token must
// match the daemon's control token when one is configured.
type ControlRequest struct {
	SchemaVersion int    `json:"schema_version"`
	Token         string `json:"token,omitempty"`
	Reason        string `json:"reason,omitempty"`
	By            string `json:"by,omitempty"`
	// Policy names the policy of a rebalance or resync request.
	Policy string `json:"policy,omitempty"`
	// Holdings is the text of a holdings file (a resync request), and
	// HoldingsFile its name, for messages.
	Holdings     string `json:"holdings,omitempty"`
	HoldingsFile string `json:"holdings_file,omitempty"`
}

// ControlReply answers a ControlRequest.
type ControlReply struct {
	SchemaVersion int    `json:"schema_version"`
	OK            bool   `json:"ok"`
	Error         string `json:"error,omitempty"`
	Halted        bool   `json:"halted"`
	Reason        string `json:"reason,omitempty"`
}

// The kinds of Alert.
const (
	// AlertCorrelationHigh: the correlation of two sleeves' returns has
	// stayed above the policy's threshold for the policy's time, so they
	// no longer diversify each other.
	AlertCorrelationHigh = "correlation_high"
	// AlertCorrelationNormal: a correlation that raised
	// AlertCorrelationHigh has come back below the policy's clear_below.
	AlertCorrelationNormal = "correlation_normal"
)

// Alert reports a condition of a policy that needs a person's attention,
// published on Subjects.Alert once when it starts and once when it ends.
// AlertID is the same whenever the daemon computes the same alert again,
// for use as the NATS message id. The fields after Kind are those of the
// correlation kinds (see docs/EVENTS.md).
type Alert struct {
	SchemaVersion int    `json:"schema_version"`
	AlertID       string `json:"alert_id"`
	Policy        string `json:"policy"`
	Kind          string `json:"kind"`
	// Sleeves are the two sleeves of the pair, by path.
	Sleeves []string `json:"sleeves"`
	// Correlation is the Pearson correlation of the pair's returns at the
	// evaluation, truncated toward zero to 6 places.
	Correlation decimal.Decimal `json:"correlation"`
	Threshold   decimal.Decimal `json:"threshold"`
	ClearBelow  decimal.Decimal `json:"clear_below"`
	// Window and Interval are the policy's, written like 90d or 12h0m0s.
	Window   string `json:"window"`
	Interval string `json:"interval"`
	// Returns is the number of returns the correlation rests on.
	Returns int `json:"returns"`
	// Since is when the correlation went above the threshold: the start
	// of the episode the alert raises or ends.
	Since time.Time `json:"since"`
	// At is when the daemon evaluated.
	At time.Time `json:"at"`
}
