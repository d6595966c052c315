package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/shopspring/decimal"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/shortlist"
)

// Report is a fill or a positions snapshot from an executor.
type Report struct {
	Policy    string
	Account   string
	Fill      *events.Fill
	Positions *events.Positions
	CashFlow  *events.CashFlow
}

// ErrPermanent marks a report that can never be applied: the caller should
// drop it (terminate the message) rather than retry.
var ErrPermanent = errors.New("report cannot be applied")

// Kinds of ErrPermanent, by the reason a report is refused.
var (
	// ErrUnknownPolicy: the report names a policy that is not loaded.
	ErrUnknownPolicy = fmt.Errorf("%w: unknown policy", ErrPermanent)
	// ErrInvalidFill: the ledger refuses the fill (an over-fill, a fill in
	// another account than its order's, a negative quantity...).
	ErrInvalidFill = fmt.Errorf("%w: invalid fill", ErrPermanent)
	// ErrInvalidPositions: the positions snapshot cannot be a ledger.
	ErrInvalidPositions = fmt.Errorf("%w: invalid positions", ErrPermanent)
	// ErrInvalidCashFlow: the cash flow names an account the policy does
	// not have, or cannot be applied.
	ErrInvalidCashFlow = fmt.Errorf("%w: invalid cash flow", ErrPermanent)
)

// HandleReport applies a fill or a positions snapshot. It returns an error
// wrapping ErrPermanent for a report that retrying cannot fix.
func (e *Engine) HandleReport(r Report) error {
	defer e.flushDrift() // after the unlock: publishing must not hold the engine
	e.mu.Lock()
	defer e.mu.Unlock()
	rt, ok := e.policies[r.Policy]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownPolicy, r.Policy)
	}
	now := e.clk.Now()
	switch {
	case r.Fill != nil:
		err := rt.ledger.CheckFill(r.Fill, e.fillLimits(rt), now)
		var res ledger.FillResult
		if err == nil {
			res, err = rt.ledger.ApplyFill(r.Account, r.Fill, now)
		}
		switch {
		case errors.Is(err, ledger.ErrDuplicateFill):
			return e.saveOwed(rt)
		case errors.Is(err, ledger.ErrUnknownOrder):
			e.log.Error("fill for an unknown order: planning stops until a positions snapshot arrives",
				zap.String("policy", r.Policy), zap.String("order_id", r.Fill.OrderID), zap.String("fill_id", r.Fill.FillID))
			if err := e.save(rt, true); err != nil {
				return fmt.Errorf("ledger of %s not saved: %w", r.Policy, err)
			}
			e.evaluate(rt, now)
			return nil
		case err != nil:
			if r.Fill.Quantity.IsZero() {
				// Executes nothing (a late cancel, say): the holdings
				// stand.
				e.log.Error("fill rejected", zap.String("policy", r.Policy), zap.String("order_id", r.Fill.OrderID),
					zap.String("fill_id", r.Fill.FillID), zap.String("reason", ledger.RejectReason(err)), zap.Error(err))
				return fmt.Errorf("%w: %w", ErrInvalidFill, err)
			}
			// The executor reports an execution the ledger cannot take:
			// what the order did is unknown, and the holdings with it.
			// Planning stops until a positions snapshot or a resync (the
			// order would otherwise expire and its trades be planned
			// again, though they may have been executed).
			e.log.Error("fill rejected: planning stops until a positions snapshot arrives", zap.String("policy", r.Policy),
				zap.String("order_id", r.Fill.OrderID), zap.String("fill_id", r.Fill.FillID),
				zap.String("reason", ledger.RejectReason(err)), zap.Error(err))
			rt.ledger.Doubt(refusedFill(r.Fill, err))
			if serr := e.save(rt, true); serr != nil {
				e.evaluate(rt, now)
				return fmt.Errorf("ledger of %s not saved: %w", r.Policy, serr)
			}
			e.evaluate(rt, now)
			return fmt.Errorf("%w: %w", ErrInvalidFill, err)
		}
		e.log.Info("fill", zap.String("policy", r.Policy), zap.String("order_id", res.Order.OrderID),
			zap.String("fill_id", r.Fill.FillID), zap.String("quantity", r.Fill.Quantity.String()),
			zap.String("price", r.Fill.Price.String()), zap.String("status", string(res.Order.Status)), zap.Bool("applied", res.Applied))
	case r.Positions != nil:
		switch res, err := e.applyPositions(rt, r.Positions, now); res {
		case positionsIgnored:
			return e.saveOwed(rt)
		case positionsInvalid:
			return fmt.Errorf("%w: %w", ErrInvalidPositions, err)
		case positionsRefused:
			if serr := e.save(rt, true); serr != nil {
				e.evaluate(rt, now)
				return fmt.Errorf("ledger of %s not saved: %w", r.Policy, serr)
			}
			e.evaluate(rt, now)
			return fmt.Errorf("%w: %w", ErrInvalidPositions, err)
		}
	case r.CashFlow != nil:
		c := r.CashFlow
		if _, ok := rt.pol.AccountIndex(c.Account); !ok {
			return fmt.Errorf("%w: cash flow %s names account %q, which policy %s does not have", ErrInvalidCashFlow, c.CashFlowID, c.Account, r.Policy)
		}
		if c.At.After(now.Add(e.opts.MaxSkew)) {
			err := &ledger.InputError{Reason: ledger.RejectCashFlowFuture, Err: fmt.Errorf("cash flow %s: dated %s, more than %s after now (%s)",
				c.CashFlowID, c.At.UTC().Format(time.RFC3339), e.opts.MaxSkew, now.UTC().Format(time.RFC3339))}
			e.log.Error("cash flow rejected", zap.String("policy", r.Policy), zap.Error(err))
			return fmt.Errorf("%w: %w", ErrInvalidCashFlow, err)
		}
		applied, err := rt.ledger.ApplyCashFlow(c, now)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidCashFlow, err)
		}
		if !applied {
			return e.saveOwed(rt) // taken in before
		}
		e.log.Info("cash flow taken in", zap.String("policy", r.Policy), zap.String("cashflow_id", c.CashFlowID),
			zap.String("kind", c.Kind), zap.String("account", c.Account), zap.String("amount", c.Amount.String()))
	default:
		return fmt.Errorf("%w: empty report", ErrPermanent)
	}
	rt.ledger.Prune(now.Add(-e.opts.Retention))
	e.setSymbols(rt)
	// Acknowledged only once saved: a report whose change is only in
	// memory would be lost by a crash, and the stream would not send it
	// again.
	if err := e.save(rt, true); err != nil {
		e.evaluate(rt, now)
		return fmt.Errorf("ledger of %s not saved: %w", r.Policy, err)
	}
	e.evaluate(rt, now)
	return nil
}

// What applyPositions did with a snapshot.
const (
	positionsApplied = iota // the ledger's holdings are the snapshot's
	positionsIgnored        // not newer than the ledger: nothing changed
	positionsInvalid        // refused (dated ahead, a negative figure): nothing changed
	positionsRefused        // does not fit the policy: Ledger.Refused set, planning stops
)

// applyPositions applies a positions snapshot to rt's ledger, for
// HandleReport and Reconcile, and returns what it did (the error says why
// for positionsInvalid and positionsRefused). Called with e.mu held.
func (e *Engine) applyPositions(rt *runtime, p *events.Positions, now time.Time) (int, error) {
	name := rt.pol.Name
	if p.AsOf.After(now.Add(e.opts.MaxSkew)) {
		err := &ledger.InputError{Reason: ledger.RejectPositionsFuture, Err: fmt.Errorf("positions of %s: as_of %s is more than %s after now (%s)",
			name, p.AsOf.UTC().Format(time.RFC3339), e.opts.MaxSkew, now.UTC().Format(time.RFC3339))}
		e.log.Error("positions snapshot rejected", zap.String("policy", name), zap.Error(err))
		return positionsInvalid, err
	}
	accounts, err := ledger.FromPositions(p)
	if err != nil {
		return positionsInvalid, err
	}
	// Newer than everything the ledger knows, fills included: an older
	// snapshot delivered late would undo fills it does not contain. A
	// ledger dated after the clock (saved by an earlier version that
	// took a fill's date as it came) cannot be compared: the snapshot
	// replaces it.
	if !newerThanLedger(rt.ledger, p.AsOf, now) {
		e.log.Warn("positions snapshot ignored: not newer than the ledger", zap.String("policy", name),
			zap.Time("as_of", p.AsOf), zap.Time("ledger_as_of", rt.ledger.AsOf))
		return positionsIgnored, nil
	}
	if err := fits(rt.pol, accounts); err != nil {
		// The executor holds what the policy does not know: the
		// ledger is not the truth any more, and the snapshot cannot
		// replace it. Planning stops (invalid_policy) until one that
		// fits arrives.
		rt.ledger.Refused = fmt.Sprintf("positions snapshot as of %s refused: %v", p.AsOf.UTC().Format(time.RFC3339), err)
		e.log.Error("positions snapshot rejected: it does not fit the policy; planning stops until one that fits arrives",
			zap.String("policy", name), zap.Time("as_of", p.AsOf), zap.Error(err))
		return positionsRefused, err
	}
	rt.ledger.SetBase(p.AsOf, "", accounts, now)
	// SetBase dates the holdings now at the latest; the base keeps the
	// snapshot's own date (at most the skew ahead): fills the executor
	// dated before it are in it, and are not applied again when
	// delivered after it.
	if p.AsOf.After(rt.ledger.BaseAsOf) {
		rt.ledger.BaseAsOf = p.AsOf
	}
	e.log.Info("positions snapshot applied", zap.String("policy", name), zap.Time("as_of", p.AsOf))
	return positionsApplied, nil
}

// saveOwed saves the ledger if an earlier save failed, for a report that
// changes nothing: it may be the redelivery of one whose change is in
// memory only (its save failed, so it was not acknowledged), and it must
// not be acknowledged before that change is saved. Called with e.mu held.
func (e *Engine) saveOwed(rt *runtime) error {
	if !rt.unsaved {
		return nil
	}
	if err := e.save(rt, true); err != nil {
		return fmt.Errorf("ledger of %s not saved: %w", rt.pol.Name, err)
	}
	return nil
}

// refusedFill is the ledger's note (Ledger.Doubt) of a fill it refused.
func refusedFill(f *events.Fill, err error) string {
	why := ledger.RejectReason(err)
	if why == "" {
		why = "invalid"
	}
	return fmt.Sprintf("fill %s of order %s refused (%s)", f.FillID, f.OrderID, why)
}

// fillLimits are the checks of a fill of rt's policy (see
// ledger.CheckFill). Called with e.mu held.
func (e *Engine) fillLimits(rt *runtime) ledger.FillLimits {
	pol := rt.pol
	return ledger.FillLimits{MaxSkew: e.opts.MaxSkew, Collar: e.opts.FillCollar,
		Step: func(sym string) decimal.Decimal {
			if i, ok := pol.InstrumentIndex(sym); ok {
				return pol.Instruments[i].Step
			}
			return decimal.Zero
		}}
}

// maxListed is how many names an error lists before it counts the rest.
const maxListed = 5

// fits checks that holdings name only accounts and instruments the policy
// has (as the holdings file is checked at load: a zero quantity of an
// unknown instrument is dropped), listing at most maxListed of each kind
// that it does not. The error's reason (ledger.RejectReason) says which
// kind.
func fits(pol *policy.Policy, accounts map[string]*ledger.Account) error {
	var badAccounts, badInstruments []string
	for _, name := range slices.Sorted(maps.Keys(accounts)) {
		if _, ok := pol.AccountIndex(name); !ok {
			badAccounts = append(badAccounts, name)
		}
		a := accounts[name]
		if a == nil {
			continue
		}
		for _, sym := range slices.Sorted(maps.Keys(a.Positions)) {
			if _, ok := pol.InstrumentIndex(sym); !ok {
				if a.Positions[sym].IsZero() {
					delete(a.Positions, sym) // held by none: nothing to know
					continue
				}
				badInstruments = append(badInstruments, name+"/"+sym)
			}
		}
	}
	switch {
	case len(badAccounts) > 0:
		return &ledger.InputError{Reason: ledger.RejectPositionsAccount,
			Err: fmt.Errorf("accounts the policy does not have: %s", listed(badAccounts))}
	case len(badInstruments) > 0:
		return &ledger.InputError{Reason: ledger.RejectPositionsInstrument,
			Err: fmt.Errorf("instruments the policy does not have: %s", listed(badInstruments))}
	}
	return nil
}

// listed joins names, the first maxListed of them and a count of the rest.
func listed(names []string) string { return shortlist.Join(names, maxListed, ", ") }

// Resync replaces a policy's holdings with h whatever its as_of and the
// ledger's, records it in the ledger (ledger.Resync) and saves the ledger
// durably: the operator's way out of a block on the holdings (fills of
// unknown orders, orders whose state cannot be known, a refused snapshot,
// a ledger dated in the future). h must fit the policy. It returns an
// error, and changes nothing, when the policy is not loaded or h does not
// fit; when the save fails the policy stays blocked and the error is
// returned.
func (e *Engine) Resync(name string, h *portfolio.Holdings, hash, by, reason string) error {
	defer e.flushDrift()
	e.mu.Lock()
	defer e.mu.Unlock()
	rt, ok := e.policies[name]
	if !ok {
		return fmt.Errorf("resync: policy %q is not loaded", name)
	}
	accounts := ledger.FromHoldings(h)
	if err := fits(rt.pol, accounts); err != nil {
		return fmt.Errorf("resync %s: %s does not fit the policy: %w", name, h.File, err)
	}
	now := e.clk.Now()
	prev := rt.ledger.AsOf
	rt.ledger.Resync(ledger.ResyncRecord{By: by, Reason: reason, File: h.File, Hash: hash, AsOf: h.AsOf}, accounts, now)
	e.setSymbols(rt)
	e.log.Warn("ledger resynced by the operator: holdings replaced", zap.String("policy", name), zap.String("by", by),
		zap.String("reason", reason), zap.String("file", h.File), zap.Time("as_of", h.AsOf), zap.Time("previous_as_of", prev))
	err := e.save(rt, true)
	e.evaluate(rt, now)
	if err != nil {
		return fmt.Errorf("resync %s: holdings replaced in memory but not saved (planning stays blocked): %w", name, err)
	}
	return nil
}

// StreamHistory reads back what the streams hold, for Reconcile.
type StreamHistory interface {
	// OrdersSince returns the order events stored since the given time,
	// of every policy, oldest first.
	OrdersSince(ctx context.Context, since time.Time) ([]events.Order, error)
	// FillsSince returns the fills stored since the given time (Report
	// with Policy, Account and Fill set), oldest first; complete is false
	// when the stream may have dropped some of them (its limits).
	FillsSince(ctx context.Context, since time.Time) (fills []Report, complete bool, err error)
	// ReportsSince returns the positions snapshots and cash flows stored
	// since the given time, of every policy, oldest first, each with
	// Handled set when the daemon's reports consumer acknowledged it.
	ReportsSince(ctx context.Context, since time.Time) ([]StoredReport, error)
}

// StoredReport is a positions snapshot or a cash flow read back from the
// reports stream.
type StoredReport struct {
	Report
	// Stored is when the stream stored it.
	Stored time.Time
	// Handled is true when the daemon's reports consumer acknowledged it:
	// it will not be delivered again.
	Handled bool
}

// Reconcile compares each policy's ledger with the streams at start.
//
// Orders: an order the orders stream holds that the ledger does not know
// is adopted as published (tracked as pending, so it is neither planned
// again nor forgotten) when it was created after the last plan the ledger
// knows (before that, the ledger knew every order, and pruned the
// finished ones) and either within the last order_ttl or after the
// ledger's base snapshot: the journal lost it (a power loss), or the state
// directory was deleted or restored from an older backup. A journaled outbox order the stream
// already has is marked published. The ledger's base never silently
// stands for holdings after such orders:
//
// Fills: the fills the reports stream holds for the ledger's unsettled
// orders (published, partial, expired; adopted ones included) are applied
// again by order id, as the consumer would have (fill ids make it
// idempotent): the consumer acknowledged them long ago and will not
// deliver them again. When they cannot be read, or the stream may have
// dropped some (its limits), the policy is blocked (unknown_order_state)
// until a positions snapshot or a resync replaces its holdings.
//
// Positions snapshots and cash flows: those the reports consumer
// acknowledged are not delivered again either, and a lost or restored
// ledger may not have them (see reconcileReports): a snapshot newer than
// the ledger is applied again, as when it was delivered; a cash flow newer
// than the ledger's base that the ledger has not taken in blocks the
// policy (unknown_order_state) until a positions snapshot or a resync.
// They are reconciled before the fills, which then apply on top of the
// snapshot as when they were delivered.
//
// It reads each stream once, with one consumer, whatever the number of
// policies, and returns how many orders it adopted or marked and how many
// fills it recovered. Only a failure to read the orders stream, or the
// positions snapshots and cash flows of the reports stream, is an error
// (fills that cannot be read block the policies that need them).
func (e *Engine) Reconcile(ctx context.Context, src StreamHistory) (orders, fills int, err error) {
	e.mu.Lock()
	now := e.clk.Now()
	// since: the orders created from then on may be missing from the
	// ledger. lastPlan: the ledger's last plan; it knew every order
	// created up to then (those it no longer has were finished and
	// pruned: their fills are in it).
	since := make(map[string]time.Time, len(e.names))
	lastPlan := make(map[string]time.Time, len(e.names))
	var from time.Time
	for i, name := range e.names {
		rt := e.policies[name]
		lastPlan[name] = rt.ledger.LastRebalance
		s := now.Add(-rt.pol.Rebalance.OrderTTL)
		if known := laterOf(rt.ledger.BaseAsOf, rt.ledger.LastRebalance); known.Before(s) {
			s = known
		}
		since[name] = s
		if i == 0 || s.Before(from) {
			from = s
		}
	}
	e.mu.Unlock()
	if len(since) == 0 {
		return 0, 0, nil
	}
	stream, err := src.OrdersSince(ctx, from)
	if err != nil {
		return 0, 0, fmt.Errorf("reconcile: %w", err)
	}

	e.mu.Lock()
	changed := map[string]bool{}
	for _, o := range stream {
		rt, ok := e.policies[o.Policy]
		if !ok || o.CreatedAt.Before(since[o.Policy]) {
			continue
		}
		switch lo, known := rt.ledger.Order(o.OrderID); {
		case !known:
			// Missing: after the last plan the ledger knows, and either
			// recent enough to be working or after its base.
			recent := !o.CreatedAt.Before(now.Add(-rt.pol.Rebalance.OrderTTL))
			if !o.CreatedAt.After(lastPlan[o.Policy]) || !recent && !o.CreatedAt.After(rt.ledger.BaseAsOf) {
				continue // known once and pruned, or in the base
			}
			rt.ledger.AddOrders([]events.Order{o}, now)
			rt.ledger.MarkPublished([]string{o.OrderID}, now)
			if o.CreatedAt.After(rt.ledger.LastRebalance) {
				rt.ledger.LastRebalance, rt.ledger.LastPlanID = o.CreatedAt, o.PlanID
			}
			rt.adopted++
			e.log.Warn("order in the stream but not in the ledger: tracking it as pending, its fills are read back from the reports stream",
				zap.String("policy", o.Policy), zap.String("order_id", o.OrderID), zap.Time("created_at", o.CreatedAt),
				zap.Time("holdings_as_of", rt.ledger.BaseAsOf))
			changed[o.Policy] = true
			orders++
		case lo.Status == ledger.Outbox:
			rt.ledger.MarkPublished([]string{o.OrderID}, now)
			changed[o.Policy] = true
			orders++
		}
	}
	e.mu.Unlock()
	if err := e.reconcileReports(ctx, src, changed); err != nil {
		return orders, 0, fmt.Errorf("reconcile: %w", err)
	}
	e.mu.Lock()
	// The orders whose fills the ledger may have missed, by id: every
	// unsettled one, however old. A ledger restored from a backup may
	// have been saved after a positions snapshot newer than orders still
	// working then: their fills since are after its base and must be
	// read back too (since, the bound for adopting orders, is then the
	// base, after those orders; Load has expired them by now). Only
	// orders that expired before since are left out: the ledger knew
	// then that they were over.
	owner := map[string]string{}
	var fillsFrom time.Time
	for _, name := range e.names {
		for _, o := range e.policies[name].ledger.Orders {
			switch o.Status {
			case ledger.Published, ledger.Partial, ledger.Expired:
			default:
				continue
			}
			if o.Status == ledger.Expired && o.CreatedAt.Before(since[name]) && o.Updated.Before(since[name]) {
				continue // expired before the ledger's base and last plan: settled then
			}
			owner[o.OrderID] = name
			if len(owner) == 1 || o.CreatedAt.Before(fillsFrom) {
				fillsFrom = o.CreatedAt
			}
		}
	}
	e.mu.Unlock()

	if len(owner) > 0 {
		// Stored times are the server's; an order's creation time is the
		// daemon's: allow for the skew between the clocks.
		reports, complete, ferr := src.FillsSince(ctx, fillsFrom.Add(-e.opts.MaxSkew))
		e.mu.Lock()
		// Now, not when Reconcile began: fills stored meanwhile are
		// dated after that.
		fills = e.recoverFills(owner, reports, changed, e.clk.Now())
		if ferr != nil || !complete {
			why := "the reports stream may have dropped some of them (its limits removed reports stored since)"
			if ferr != nil {
				why = "the reports stream could not be read: " + ferr.Error()
			}
			e.log.Error("fills of unsettled orders cannot all be recovered: planning stops until a positions snapshot or a resync",
				zap.Time("since", fillsFrom), zap.String("why", why))
			blocked := map[string]int{}
			for id, name := range owner {
				rt, ok := e.policies[name]
				if !ok {
					continue // removed meanwhile
				}
				if o, ok := rt.ledger.Order(id); ok && (o.Status.Pending() || o.Status == ledger.Expired) {
					blocked[name]++
				}
			}
			for name, n := range blocked {
				rt := e.policies[name]
				rt.ledger.Doubt(fmt.Sprintf("fills of %d unsettled orders not recoverable: %s", n, why))
				changed[name] = true
			}
		}
		e.mu.Unlock()
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	var rts []*runtime
	for _, name := range e.names {
		if rt := e.policies[name]; changed[name] {
			rts = append(rts, rt)
			e.setSymbols(rt)
		}
	}
	e.saveAll(rts)
	return orders, fills, nil
}

// reconcileReports brings in what the reports consumer acknowledged of
// positions snapshots and cash flows and a ledger lost or restored from an
// older backup does not have. It reads them once, for every policy, since
// the earliest base (less the clock skew: the stream dates them on the
// server's clock), and marks the policies it changed in changed.
//
// A positions snapshot is applied as when it was delivered (applyPositions:
// it replaces the holdings when it is newer than the ledger, and one that
// does not fit the policy blocks it), in the order of the stream: that is
// exact, since a newer snapshot replaces everything before it.
//
// A cash flow cannot be replayed exactly: the ledger does not keep which
// plan carried out which cash flow (a deposit invested, a withdrawal
// raised, a phase-in's steps), so a deposit taken in again could be
// invested a second time or not at all, and a withdrawal raised a second
// time. One dated after the ledger's base and not among the cash flows it
// took in (Ledger.CashFlowIDs) blocks the policy instead
// (Ledger.Doubt: unknown_order_state) until a positions snapshot or a
// resync says what the household holds; one the daemon refuses whenever
// delivered (an account the policy lacks, an amount not above zero, dated
// beyond the skew) does not.
//
// Reports not yet acknowledged are left to the consumer, which delivers
// them; reports stored before the ledger's last resync are left alone
// (the operator's holdings replaced what the ledger knew then). Called
// without e.mu.
func (e *Engine) reconcileReports(ctx context.Context, src StreamHistory, changed map[string]bool) error {
	e.mu.Lock()
	var from time.Time
	for i, name := range e.names {
		if b := e.policies[name].ledger.BaseAsOf; i == 0 || b.Before(from) {
			from = b
		}
	}
	n := len(e.names)
	e.mu.Unlock()
	if n == 0 {
		return nil
	}
	reports, err := src.ReportsSince(ctx, from.Add(-e.opts.MaxSkew))
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clk.Now()
	for _, r := range reports {
		rt, ok := e.policies[r.Policy]
		if !ok || !r.Handled || r.Positions == nil || resyncedAfter(rt.ledger, r.Stored) ||
			!newerThanLedger(rt.ledger, r.Positions.AsOf, now) {
			continue
		}
		switch res, err := e.applyPositions(rt, r.Positions, now); res {
		case positionsApplied:
			e.log.Warn("positions snapshot acknowledged before but not in the ledger: applied again from the reports stream",
				zap.String("policy", r.Policy), zap.Time("as_of", r.Positions.AsOf), zap.Time("stored", r.Stored))
			changed[r.Policy] = true
		case positionsRefused:
			changed[r.Policy] = true
		case positionsInvalid:
			e.log.Warn("positions snapshot in the reports stream not applied", zap.String("policy", r.Policy),
				zap.Time("as_of", r.Positions.AsOf), zap.Error(err))
		}
	}
	for _, r := range reports {
		rt, ok := e.policies[r.Policy]
		if !ok || !r.Handled || r.CashFlow == nil {
			continue
		}
		why := e.lostCashFlow(rt, r, now)
		if why == "" {
			continue
		}
		c := r.CashFlow
		e.log.Error("cash flow acknowledged before but not in the ledger (state directory lost or restored?): "+
			"planning stops until a positions snapshot or a resync", zap.String("policy", r.Policy),
			zap.String("cashflow_id", c.CashFlowID), zap.String("kind", c.Kind), zap.String("account", c.Account),
			zap.String("amount", c.Amount.String()), zap.Time("at", c.At), zap.Time("holdings_as_of", rt.ledger.BaseAsOf))
		rt.ledger.Doubt(why)
		changed[r.Policy] = true
	}
	return nil
}

// lostCashFlow returns why the ledger of rt cannot be trusted because of
// a cash flow the reports consumer acknowledged, or "" when the ledger has
// taken it in, it is in the base (dated at or before it), it was stored
// before the last resync, or the daemon refuses it whenever delivered.
// Called with e.mu held.
func (e *Engine) lostCashFlow(rt *runtime, r StoredReport, now time.Time) string {
	c, l := r.CashFlow, rt.ledger
	_, hasAccount := rt.pol.AccountIndex(c.Account)
	switch {
	case slices.Contains(l.CashFlowIDs, c.CashFlowID), !c.At.After(l.BaseAsOf), resyncedAfter(l, r.Stored):
		return ""
	case !hasAccount, c.Amount.Sign() <= 0, c.At.After(now.Add(e.opts.MaxSkew)):
		return "" // refused when it was delivered, as it would be now
	}
	return fmt.Sprintf("cash flow %s (%s of %s, account %s, at %s) acknowledged before but not in the ledger",
		c.CashFlowID, c.Kind, c.Amount, c.Account, c.At.UTC().Format(time.RFC3339))
}

// newerThanLedger says whether a snapshot as of asOf replaces l's
// holdings: it is newer than everything l knows, or l is dated after the
// clock (and cannot be compared).
func newerThanLedger(l *ledger.Ledger, asOf, now time.Time) bool {
	return asOf.After(laterOf(l.AsOf, l.BaseAsOf)) || l.AsOf.After(now)
}

// resyncedAfter says whether l was resynced by the operator after a
// report stored at stored: the resync's holdings replaced what the report
// said.
func resyncedAfter(l *ledger.Ledger, stored time.Time) bool {
	n := len(l.Resyncs)
	return n > 0 && !stored.After(l.Resyncs[n-1].At)
}

// recoverFills applies the fills of the orders in owner (order id to
// policy) that the ledgers have not applied, and returns how many it
// applied. Called with e.mu held.
func (e *Engine) recoverFills(owner map[string]string, reports []Report, changed map[string]bool, now time.Time) int {
	n := 0
	for _, r := range reports {
		name, ok := owner[r.Fill.OrderID]
		if !ok {
			continue
		}
		rt, ok := e.policies[name]
		if !ok {
			continue // removed meanwhile
		}
		if r.Policy != name {
			e.log.Warn("fill in the reports stream names another policy than its order's; not applied",
				zap.String("policy", r.Policy), zap.String("order_policy", name), zap.String("fill_id", r.Fill.FillID))
			continue
		}
		err := rt.ledger.CheckFill(r.Fill, e.fillLimits(rt), now)
		var res ledger.FillResult
		if err == nil {
			res, err = rt.ledger.ApplyFill(r.Account, r.Fill, now)
		}
		switch {
		case errors.Is(err, ledger.ErrDuplicateFill):
			continue
		case err != nil:
			e.log.Warn("fill in the reports stream not applied", zap.String("policy", name),
				zap.String("fill_id", r.Fill.FillID), zap.Error(err))
			continue
		}
		rt.recovered++
		if m := e.opts.Metrics; m != nil {
			m.FillsRecovered.WithLabelValues(name).Inc()
		}
		changed[name] = true
		n++
		e.log.Warn("fill recovered from the reports stream", zap.String("policy", name), zap.String("order_id", r.Fill.OrderID),
			zap.String("fill_id", r.Fill.FillID), zap.String("quantity", r.Fill.Quantity.String()),
			zap.String("status", string(res.Order.Status)), zap.Bool("applied", res.Applied))
	}
	return n
}

// laterOf returns the later of two times.
func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
