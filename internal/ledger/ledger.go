// Package ledger keeps what the daemon knows of one household between
// holdings snapshots: a base snapshot (the holdings file or an executor's
// positions report) and the fills applied since, together with the orders
// the daemon published and how far each has been filled.
//
// It is pure state: no I/O, no clock. The daemon persists a Ledger as JSON
// in its state directory (see package state) and passes times in.
package ledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/targets"
	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// OrderStatus is where an order stands.
type OrderStatus string

// The statuses of an order. Outbox, Published and Partial are pending: the
// policy is not planned again while any order is pending.
const (
	// Outbox: planned and journaled, not yet acknowledged by JetStream.
	Outbox OrderStatus = "outbox"
	// Published: acknowledged by JetStream, no fill yet.
	Published OrderStatus = "published"
	// Partial: some fills, more may follow.
	Partial OrderStatus = "partial"
	// Filled: completely filled.
	Filled OrderStatus = "filled"
	// Cancelled: the executor reported that the rest will not be filled.
	Cancelled OrderStatus = "cancelled"
	// Expired: no final fill within the policy's order_ttl.
	Expired OrderStatus = "expired"
	// Superseded is no longer set (a positions snapshot keeps working
	// orders pending); ledgers saved by earlier versions may hold it.
	Superseded OrderStatus = "superseded"
)

// Pending reports whether more may happen to an order in this status.
func (s OrderStatus) Pending() bool { return s == Outbox || s == Published || s == Partial }

// Account is one account's cash and positions.
type Account struct {
	Cash      decimal.Decimal            `json:"cash"`
	Positions map[string]decimal.Decimal `json:"positions"`
	// Lots are the tax lots of the positions whose lots are known, by
	// instrument, in the order of the holdings file and then of the buys:
	// their quantities add up to the position's. A position without an
	// entry has an unknown cost basis.
	Lots map[string][]Lot `json:"lots,omitempty"`
}

// Order is a published order and its progress.
type Order struct {
	events.Order
	Status  OrderStatus     `json:"status"`
	Filled  decimal.Decimal `json:"filled"`
	FillIDs []string        `json:"fill_ids,omitempty"`
	Updated time.Time       `json:"updated"`
	// Lots is the plan's lot selection for a sell (see SetLots), less
	// what fills have sold of it; none when the plan chose no lots.
	Lots []LotSale `json:"lots,omitempty"`
}

// Remaining is the quantity not yet filled.
func (o *Order) Remaining() decimal.Decimal { return o.Quantity.Sub(o.Filled) }

// Ledger is one policy's holdings and orders.
type Ledger struct {
	Policy string `json:"policy"`
	// BaseAsOf is the time of the base snapshot; fills at or before it are
	// taken to be in the snapshot already.
	BaseAsOf time.Time `json:"base_as_of"`
	// BaseHash identifies the holdings file the base came from (empty when
	// it came from a positions report), so that an unchanged file is not
	// applied twice.
	BaseHash string `json:"base_hash,omitempty"`
	// AsOf is the time of the latest information: the base or a fill.
	AsOf     time.Time           `json:"as_of"`
	Accounts map[string]*Account `json:"accounts"`
	Orders   []*Order            `json:"orders"`
	// LastRebalance is when the policy last published a plan.
	LastRebalance time.Time `json:"last_rebalance,omitzero"`
	// LastPlanID is the id of that plan.
	LastPlanID string `json:"last_plan_id,omitempty"`
	// LastFire is the local wall-clock time ("2006-01-02 15:04" in the
	// schedule's zone) of the last calendar firing acted on, so that a
	// wall-clock time that occurs twice (DST fall-back) fires once.
	LastFire string `json:"last_fire,omitempty"`
	// Unknown lists fills for orders the ledger does not know. While it is
	// not empty the holdings cannot be trusted: planning stops until a
	// positions snapshot replaces them.
	Unknown []string `json:"unknown_fills,omitempty"`
	// UnknownMore counts the fills of unknown orders beyond the first
	// MaxUnknown, whose ids are not kept (a fill among them delivered
	// again counts again): the ledger is saved after every report and must
	// not grow with a flood of them.
	UnknownMore int `json:"unknown_fills_more,omitempty"`
	// Refused describes the last positions snapshot refused because it
	// does not fit the policy (an account or instrument the policy does
	// not have): the holdings it reported are not the ledger's, so
	// planning stops until a snapshot that fits, a newer holdings file or
	// a resync replaces them.
	Refused string `json:"refused_snapshot,omitempty"`
	// Resyncs are the last operator resyncs (see Resync), oldest first.
	Resyncs []ResyncRecord `json:"resyncs,omitempty"`
	// Plans are plan events (events.Plan, encoded) journaled with their
	// orders and not yet acknowledged by JetStream, oldest first: they are
	// published again after a restart, so that every order's plan is on
	// the stream.
	Plans []PlanEvent `json:"unpublished_plans,omitempty"`

	// lotsCache keeps positions' sorted lots for Holdings (not saved).
	lotsCache map[lotsKey]cachedLots
	// rev counts the calls that may change cash or positions (see Rev).
	rev uint64
	// PendingFlows are cash flows taken in (ApplyCashFlow) and not yet
	// planned, oldest first.
	PendingFlows []events.CashFlow `json:"pending_cash_flows,omitempty"`
	// CashPhases is new money being invested in steps under the policy's
	// phase_in (a deposit above deposits_above, a first investment): what
	// waits for a later step is held back from plans.
	CashPhases []targets.CashPhase `json:"cash_phases,omitempty"`
	// CashFlowIDs are the ids of the last cash flows taken in, to apply
	// each once.
	CashFlowIDs []string `json:"cash_flow_ids,omitempty"`
	// History is the household's recent buys and loss sales, for the
	// wash-sale guard (see TaxHistory).
	History History `json:"tax_history,omitzero"`
	// WashSales is the journal of the wash-sale rule booked on fills (the
	// latest MaxWashBookings): which purchase replaced which shares sold
	// at a loss, the loss disallowed and how it was treated.
	WashSales []WashBooking `json:"wash_sales,omitempty"`
	// Valuation is the policy's last accepted valuation: its prices are
	// the reference against which limits.max_value_change holds a sudden
	// move of the investable total, also after a restart. Nil until the
	// first valuation.
	Valuation *Valuation `json:"accepted_valuation,omitempty"`
	// HistoryDays is how many days of trades History keeps; zero means
	// DefaultHistoryDays. It is configuration, not saved: set it to at
	// least the longest wash-sale window of the policy.
	HistoryDays int `json:"-"`
	// Zone is the investor's time zone, in which fills and snapshots are
	// dated (trade dates of lots and of the history); nil means UTC. It is
	// configuration, not saved: set it to the policy's TradeZone.
	Zone *time.Location `json:"-"`
	// Wash is the policy's wash-sale rule, which fills book (see
	// ApplyFill); nil books none. It is configuration, not saved: set it
	// to WashRulesOf(policy).
	Wash *WashRules `json:"-"`
}

// Rev is a number that changes whenever cash or positions may have
// changed (SetBase, ApplyFill, ApplyCashFlow): a caller that derived
// figures from the holdings knows they still hold while Rev is the same.
// It is not saved.
func (l *Ledger) Rev() uint64 { return l.rev }

// day returns the trade date of t in the ledger's zone.
func (l *Ledger) day(t time.Time) tax.Date {
	if l.Zone == nil {
		return tax.DateOf(t.UTC())
	}
	return tax.DateOf(t.In(l.Zone))
}

// Valuation is an accepted valuation: the investable total at a time and
// the prices it was made at.
type Valuation struct {
	Total  decimal.Decimal            `json:"total"`
	At     time.Time                  `json:"at"`
	Prices map[string]decimal.Decimal `json:"prices"`
}

// UnmarshalJSON reads a ledger and checks the lots of its accounts (see
// Account.Lots), so that a damaged ledger file is refused rather than
// planned from. Its decimals are held to decimaltext's limits.
func (l *Ledger) UnmarshalJSON(data []byte) error {
	type plain Ledger // without this method
	if err := decimaltext.Unmarshal(data, (*plain)(l)); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(l.Accounts)) {
		a := l.Accounts[name]
		if a == nil {
			continue
		}
		for _, sym := range slices.Sorted(maps.Keys(a.Lots)) {
			if err := checkLots(a.Lots[sym], a.Positions[sym]); err != nil {
				return fmt.Errorf("ledger %s: account %s: lots of %s: %w", l.Policy, name, sym, err)
			}
		}
	}
	return nil
}

// PlanEvent is an encoded plan event awaiting publication.
type PlanEvent struct {
	ID    string          `json:"plan_id"`
	Event json.RawMessage `json:"event"`
}

// New returns an empty ledger for policy.
func New(policy string) *Ledger {
	return &Ledger{Policy: policy, Accounts: map[string]*Account{}}
}

// SetBase replaces holdings with a snapshot taken at asOf. The snapshot
// includes every execution up to asOf; orders still working stay pending,
// and their later fills (executed after asOf) are applied on top of it.
// The unknown fills are cleared, since the snapshot is the truth, and so is
// a refused snapshot (Refused). A snapshot dated after now is taken as of
// now: the ledger's as_of never passes the clock.
//
// A snapshot without lots for a position (a positions report never has
// any) does not say that the lots changed: the position keeps the ledger's
// lots when they add up to its new quantity, and otherwise loses them (its
// basis becomes unknown). The lot selections of pending orders are kept
// for the positions that kept their lots, and dropped for the others: the
// lots they name are gone. The trade history is kept, and a position that
// grew since the ledger's last figures (a dividend reinvested, a buy made
// outside the daemon) is recorded in it as a buy of the increase on the
// snapshot's day: the wash-sale rule counts it as a purchase (and, with
// Wash set, books it against the losses still unmatched, see ApplyFill).
// A buy fill the snapshot already includes is then recorded twice, which
// can only disallow more of a loss, never less.
func (l *Ledger) SetBase(asOf time.Time, hash string, accounts map[string]*Account, now time.Time) {
	l.rev++
	kept := map[[2]string]bool{}
	for _, name := range slices.Sorted(maps.Keys(accounts)) {
		acc, old := accounts[name], l.Accounts[name]
		if acc == nil || old == nil && len(l.Accounts) == 0 {
			continue // the first snapshot: nothing to compare with
		}
		for _, sym := range slices.Sorted(maps.Keys(acc.Positions)) {
			var was decimal.Decimal
			if old != nil {
				was = old.Positions[sym]
			}
			if grew := acc.Positions[sym].Sub(was); grew.Sign() > 0 {
				l.History.record(Trade{Instrument: sym, Account: name, Date: l.day(asOf), Quantity: grew}, true, l.historyCutoff(now))
				if l.Wash != nil { // it replaces shares sold at a loss
					l.bookBuy(&Order{Order: events.Order{Account: name, Instrument: sym}}, "snapshot", l.day(asOf), grew, 0)
				}
			}
		}
	}
	for name, acc := range accounts {
		old := l.Accounts[name]
		if old == nil || acc == nil {
			continue
		}
		for sym, lots := range old.Lots {
			q, held := acc.Positions[sym]
			if _, given := acc.Lots[sym]; given || !held || !q.Equal(sumLots(lots)) {
				continue
			}
			if acc.Lots == nil {
				acc.Lots = map[string][]Lot{}
			}
			acc.Lots[sym] = lots
			kept[[2]string{name, sym}] = true
		}
	}
	for _, o := range l.Orders {
		if !kept[[2]string{o.Account, o.Instrument}] {
			o.Lots = nil
		}
	}
	if asOf.After(now) {
		asOf = now
	}
	l.BaseAsOf, l.AsOf, l.BaseHash = asOf, asOf, hash
	l.Accounts = accounts
	l.Unknown, l.UnknownMore = nil, 0
	l.Refused = ""
}

// FromHoldings converts a parsed holdings file to ledger accounts, with
// the tax lots of the positions that give them, numbered 1, 2, ... in the
// order of the file.
func FromHoldings(h *portfolio.Holdings) map[string]*Account {
	out := make(map[string]*Account, len(h.Accounts))
	for _, a := range h.Accounts {
		acc := &Account{Cash: a.Cash, Positions: make(map[string]decimal.Decimal, len(a.Positions))}
		for _, p := range a.Positions {
			acc.Positions[p.Instrument] = p.Quantity
			if p.Lots.Len() > 0 {
				if acc.Lots == nil {
					acc.Lots = map[string][]Lot{}
				}
				acc.Lots[p.Instrument] = fromTax(p.Lots)
			}
		}
		out[a.Name] = acc
	}
	return out
}

// FromPositions converts a positions report to ledger accounts, checking
// that no figure is negative.
func FromPositions(p *events.Positions) (map[string]*Account, error) {
	if p.AsOf.IsZero() {
		return nil, errors.New("positions: as_of is missing")
	}
	out := make(map[string]*Account, len(p.Accounts))
	for name, a := range p.Accounts {
		if a.Cash.Sign() < 0 {
			return nil, fmt.Errorf("positions: account %s: negative cash %s", name, a.Cash)
		}
		acc := &Account{Cash: a.Cash, Positions: make(map[string]decimal.Decimal, len(a.Positions))}
		for sym, q := range a.Positions {
			if q.Sign() < 0 {
				return nil, fmt.Errorf("positions: account %s: negative quantity %s of %s", name, q, sym)
			}
			acc.Positions[sym] = q
		}
		out[name] = acc
	}
	return out, nil
}

// Holdings returns the ledger as portfolio holdings, accounts and positions
// sorted by name so that planning is deterministic. Positions whose lots
// are known carry them (portfolio.Position.Lots), in the ledger's order:
// the lot indices of a plan's sales (tax.Sale.Lot) are indices into them.
// Lots that tax.NewLots refuses, which the ledger never makes, are left
// out: the position's basis is then unknown.
func (l *Ledger) Holdings() *portfolio.Holdings {
	h := &portfolio.Holdings{File: "ledger:" + l.Policy, AsOf: l.AsOf}
	names := make([]string, 0, len(l.Accounts))
	for n := range l.Accounts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a := l.Accounts[n]
		ah := portfolio.AccountHoldings{Name: n, Cash: a.Cash}
		syms := make([]string, 0, len(a.Positions))
		for s := range a.Positions {
			syms = append(syms, s)
		}
		sort.Strings(syms)
		for _, s := range syms {
			q := a.Positions[s]
			if q.IsZero() {
				continue
			}
			pos := portfolio.Position{Instrument: s, Quantity: q}
			if lots := a.Lots[s]; len(lots) > 0 {
				if tl, err := l.taxLots(n, s, lots); err == nil && tl.Quantity().Equal(q) {
					pos.Lots = tl
				}
			}
			ah.Positions = append(ah.Positions, pos)
		}
		h.Accounts = append(h.Accounts, ah)
	}
	return h
}

// lotsKey names a position's lots in the cache of taxLots.
type lotsKey struct{ account, instrument string }

// cachedLots is a position's lots as they were when sorted into tl.
type cachedLots struct {
	src []Lot
	tl  tax.Lots
}

// taxLots returns the position's lots as tax.Lots. Sorting them costs
// ~120 µs for 200 lots, on every evaluation of the policy; the result is
// kept and reused while the lots are equal, compared lot by lot (a few µs),
// whatever changed them.
func (l *Ledger) taxLots(account, instrument string, lots []Lot) (tax.Lots, error) {
	k := lotsKey{account, instrument}
	if c, ok := l.lotsCache[k]; ok && slices.EqualFunc(c.src, lots, Lot.equal) {
		return c.tl, nil
	}
	tl, err := tax.NewLots(toTax(lots))
	if err != nil {
		return tl, err
	}
	if l.lotsCache == nil {
		l.lotsCache = map[lotsKey]cachedLots{}
	}
	l.lotsCache[k] = cachedLots{src: slices.Clone(lots), tl: tl}
	return tl, nil
}

// equal reports whether two lots are the same lot in the same state.
func (a Lot) equal(b Lot) bool {
	return a.ID == b.ID && a.Acquired == b.Acquired && a.Quantity.Equal(b.Quantity) && a.Basis.Equal(b.Basis) &&
		a.HoldingFrom == b.HoldingFrom && a.Replacement == b.Replacement && a.WashBasis.Equal(b.WashBasis)
}

// Order returns the order with the given id.
func (l *Ledger) Order(id string) (*Order, bool) {
	for _, o := range l.Orders {
		if o.OrderID == id {
			return o, true
		}
	}
	return nil, false
}

// AddOrders records newly planned orders in the Outbox status.
func (l *Ledger) AddOrders(orders []events.Order, now time.Time) {
	for _, o := range orders {
		l.Orders = append(l.Orders, &Order{Order: o, Status: Outbox, Filled: decimal.Zero, Updated: now})
	}
}

// AddPlan records a plan event to publish, once per plan id.
func (l *Ledger) AddPlan(id string, event json.RawMessage) {
	for _, p := range l.Plans {
		if p.ID == id {
			return
		}
	}
	l.Plans = append(l.Plans, PlanEvent{ID: id, Event: event})
}

// ForgetPlan removes a plan event: published, or never to be published
// because its orders were not.
func (l *Ledger) ForgetPlan(id string) {
	for i, p := range l.Plans {
		if p.ID == id {
			l.Plans = append(l.Plans[:i], l.Plans[i+1:]...)
			return
		}
	}
}

// MarkPublished moves acknowledged orders from Outbox to Published.
func (l *Ledger) MarkPublished(ids []string, now time.Time) {
	for _, id := range ids {
		if o, ok := l.Order(id); ok && o.Status == Outbox {
			o.Status, o.Updated = Published, now
		}
	}
}

// PlanTimes returns the creation time of each plan the ledger holds orders
// of (the risk limits count plans per day with it).
func (l *Ledger) PlanTimes() []time.Time {
	seen := map[string]bool{}
	var out []time.Time
	for _, o := range l.Orders {
		if !seen[o.PlanID] {
			seen[o.PlanID] = true
			out = append(out, o.CreatedAt)
		}
	}
	return out
}

// Pending returns the orders that are still pending.
func (l *Ledger) Pending() []*Order {
	var out []*Order
	for _, o := range l.Orders {
		if o.Status.Pending() {
			out = append(out, o)
		}
	}
	return out
}

// Expire marks published orders past their expiry as Expired and returns
// them. Outbox orders never expire: they have not reached an executor yet.
func (l *Ledger) Expire(now time.Time) []*Order {
	var out []*Order
	for _, o := range l.Orders {
		if (o.Status == Published || o.Status == Partial) && !now.Before(o.ExpiresAt) {
			o.Status, o.Updated = Expired, now
			out = append(out, o)
		}
	}
	return out
}

// Prune drops finished orders last updated before cutoff.
func (l *Ledger) Prune(cutoff time.Time) {
	kept := l.Orders[:0]
	for _, o := range l.Orders {
		if o.Status.Pending() || !o.Updated.Before(cutoff) {
			kept = append(kept, o)
		}
	}
	clear(l.Orders[len(kept):])
	l.Orders = kept
}

// MaxUnknown is how many ids of fills for unknown orders a ledger keeps
// (Unknown); it counts the rest (UnknownMore).
const MaxUnknown = 100

// Doubt records why the holdings cannot be trusted (Unknown: a fill id
// of an unknown order, or a sentence), once: planning stops until a
// positions snapshot or a resync replaces them. Beyond MaxUnknown entries
// it only counts (UnknownMore).
func (l *Ledger) Doubt(why string) {
	switch {
	case slices.Contains(l.Unknown, why):
	case len(l.Unknown) < MaxUnknown:
		l.Unknown = append(l.Unknown, why)
	default:
		l.UnknownMore++
	}
}

// Errors of ApplyFill.
var (
	// ErrUnknownOrder: the fill names an order the ledger does not know.
	ErrUnknownOrder = errors.New("fill for an unknown order")
	// ErrDuplicateFill: the fill was applied already; it is safe to drop.
	ErrDuplicateFill = errors.New("fill already applied")
)

// FillResult says what a fill did.
type FillResult struct {
	Order *Order
	// Applied is false when the fill predates the base snapshot and is
	// taken to be in it already.
	Applied bool
}

// ApplyFill applies an executor's fill report: the quantity moves the
// position, quantity x price plus fees moves the cash, and the order's
// status follows. A fill for an unknown order is recorded in Unknown and
// returned as ErrUnknownOrder: the caller must stop planning until a
// positions snapshot arrives. Invalid fills (negative figures, more than
// the order's remaining quantity, a sell beyond the position) change
// nothing and return an error.
//
// Tax lots (of a position whose lots are known, see Account.Lots) follow,
// on the trade date of the fill, the UTC day of f.At:
//   - A buy adds a lot of the quantity with a cost basis of quantity x
//     price plus fees (US basis includes commissions). A buy into a
//     position held without lots adds none: its basis stays unknown.
//   - A sell removes lots: first those of the order's lot selection
//     (SetLots), in order, then, for what the selection does not cover
//     (none, partial or stale), those tax.Lots.Select chooses with default
//     options at the fill's price. A lot sold in part keeps its basis less
//     that of the part sold.
//
// The lots' quantities always add up to the position's; should they not
// (the ledger never makes such lots), a sell drops them rather than
// refuse the fill: the position's basis becomes unknown. The trade history
// (History) records each buy fill, applied or taken to be in the base
// already, and each applied sell fill that sells some lot at a loss:
// the lot's basis more than its share of the proceeds, quantity x price
// less fees. Sells of positions without lots record nothing: whether they
// realize a loss is unknown.
//
// With Wash set, applied fills book the wash-sale rule (IRS Publication
// 550, "Wash Sales"; Rev. Rul. 2008-5) in the lots, so that later plans
// compute gains and holding periods from the adjusted lots: a sell in a
// taxable account that sells lots at a loss is matched to the purchases
// within the window before it, and a buy to the losses still unmatched
// within the window after them (History.Losses); each replacement's lot
// gets the disallowed loss added to its basis and its holding period
// moved back, or, in a tax-advantaged account, the loss is lost for good
// (see WashBooking, journaled in WashSales).
func (l *Ledger) ApplyFill(account string, f *events.Fill, now time.Time) (FillResult, error) {
	l.rev++
	if f.FillID == "" {
		return FillResult{}, errors.New("fill: fill_id is missing")
	}
	if f.At.IsZero() {
		return FillResult{}, fmt.Errorf("fill %s: at (the time of the execution) is missing", f.FillID)
	}
	o, ok := l.Order(f.OrderID)
	if !ok {
		for _, id := range l.Unknown {
			if id == f.FillID {
				return FillResult{}, ErrDuplicateFill
			}
		}
		l.Doubt(f.FillID)
		return FillResult{}, fmt.Errorf("%w: order %s (fill %s)", ErrUnknownOrder, f.OrderID, f.FillID)
	}
	for _, id := range o.FillIDs {
		if id == f.FillID {
			return FillResult{Order: o}, ErrDuplicateFill
		}
	}
	if account != "" && account != o.Account {
		return FillResult{}, fmt.Errorf("fill %s: reported for account %s, order %s is in %s", f.FillID, account, o.OrderID, o.Account)
	}
	switch f.Status {
	case events.FillPartial, events.FillFilled, events.FillCancelled:
	default:
		return FillResult{}, fmt.Errorf("fill %s: status %q is not partial, filled or cancelled", f.FillID, f.Status)
	}
	if f.Quantity.Sign() < 0 || f.Price.Sign() < 0 || f.Fees.Sign() < 0 {
		return FillResult{}, fmt.Errorf("fill %s: quantity, price and fees must not be negative", f.FillID)
	}
	if f.Quantity.Sign() > 0 && f.Price.Sign() == 0 {
		return FillResult{}, fmt.Errorf("fill %s: a fill of %s needs a price", f.FillID, f.Quantity)
	}
	if !o.Status.Pending() && o.Status != Expired && o.Status != Superseded {
		return FillResult{}, fmt.Errorf("fill %s: order %s is already %s", f.FillID, o.OrderID, o.Status)
	}
	if f.Quantity.GreaterThan(o.Remaining()) {
		return FillResult{}, refuse(RejectFillOverQuantity, "fill %s: quantity %s exceeds the %s remaining of order %s", f.FillID, f.Quantity, o.Remaining(), o.OrderID)
	}
	if o.Side != "buy" && o.Side != "sell" {
		return FillResult{}, fmt.Errorf("order %s: side %q", o.OrderID, o.Side)
	}
	applied := f.At.After(l.BaseAsOf)
	trade := Trade{Instrument: o.Instrument, Account: o.Account, Date: l.day(f.At), Quantity: f.Quantity}
	lossSale := false
	var parts []soldPart // what a sell sold of the lots
	newLot := 0          // the lot a buy added
	if applied {
		acc := l.Accounts[o.Account]
		if acc == nil {
			acc = &Account{Cash: decimal.Zero, Positions: map[string]decimal.Decimal{}}
		}
		pos := acc.Positions[o.Instrument]
		lots, hasLots := acc.Lots[o.Instrument]
		value := f.Quantity.Mul(f.Price)
		var cash decimal.Decimal
		sel := o.Lots
		switch o.Side {
		case "buy":
			if f.Quantity.Sign() > 0 && (hasLots || pos.Sign() == 0) {
				newLot = nextLotID(lots)
				lots = append(lots[:len(lots):len(lots)], Lot{ID: newLot, Quantity: f.Quantity,
					Basis: value.Add(f.Fees), Acquired: trade.Date})
				hasLots = true
			}
			pos = pos.Add(f.Quantity)
			cash = acc.Cash.Sub(value).Sub(f.Fees)
		case "sell":
			if f.Quantity.GreaterThan(pos) {
				return FillResult{}, fmt.Errorf("fill %s: sells %s %s, account %s holds %s", f.FillID, f.Quantity, o.Instrument, o.Account, pos)
			}
			if hasLots && f.Quantity.Sign() > 0 {
				// An error means lots that do not cover the position,
				// which the ledger never makes: the fill is a fact and
				// applies all the same, and the position's basis
				// becomes unknown (its lots are dropped).
				s, err := sellLots(lots, sel, f.Quantity, f.Price, trade.Date)
				lots, sel = s.lots, s.sel
				lossSale = err == nil && s.atLoss(f.Quantity, f.Price, f.Fees)
				if lossSale {
					parts = s.parts
				}
			}
			pos = pos.Sub(f.Quantity)
			cash = acc.Cash.Add(value).Sub(f.Fees)
		}
		if acc.Positions == nil {
			acc.Positions = map[string]decimal.Decimal{}
		}
		acc.Positions[o.Instrument] = pos
		switch {
		case hasLots && len(lots) > 0:
			if acc.Lots == nil {
				acc.Lots = map[string][]Lot{}
			}
			acc.Lots[o.Instrument] = lots
		case hasLots:
			delete(acc.Lots, o.Instrument)
		}
		acc.Cash = cash
		l.Accounts[o.Account] = acc
		o.Lots = sel
		// The ledger's as_of never passes the clock: a fill dated a
		// little ahead (an executor's clock, within the skew CheckFill
		// allows) counts as of now.
		if at := minTime(f.At, now); at.After(l.AsOf) {
			l.AsOf = at
		}
	}
	if f.Quantity.Sign() > 0 && (o.Side == "buy" || lossSale) {
		l.History.record(trade, o.Side == "buy", l.historyCutoff(now))
	}
	if applied && l.Wash != nil && f.Quantity.Sign() > 0 {
		if o.Side == "buy" {
			l.bookBuy(o, f.FillID, trade.Date, f.Quantity, newLot)
		} else if parts != nil {
			l.bookSale(o, f.FillID, trade.Date, parts, f.Quantity, f.Price, f.Fees)
		}
	}
	o.Filled = o.Filled.Add(f.Quantity)
	o.FillIDs = append(o.FillIDs, f.FillID)
	o.Updated = now
	if o.Status.Pending() {
		switch {
		case f.Status == events.FillCancelled:
			o.Status = Cancelled
		case f.Status == events.FillFilled || o.Remaining().Sign() == 0:
			o.Status = Filled
		default:
			o.Status = Partial
		}
	}
	return FillResult{Order: o, Applied: applied}, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
