package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
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
		if err := rt.ledger.CheckFill(r.Fill, e.fillLimits(rt), now); err != nil {
			e.log.Error("fill rejected", zap.String("policy", r.Policy), zap.String("order_id", r.Fill.OrderID),
				zap.String("fill_id", r.Fill.FillID), zap.String("reason", ledger.RejectReason(err)), zap.Error(err))
			return fmt.Errorf("%w: %w", ErrInvalidFill, err)
		}
		res, err := rt.ledger.ApplyFill(r.Account, r.Fill, now)
		switch {
		case errors.Is(err, ledger.ErrDuplicateFill):
			// Applied before; its save may have failed (then this
			// delivery retries it).
			if rt.unsaved {
				if err := e.save(rt, true); err != nil {
					return fmt.Errorf("ledger of %s not saved: %w", r.Policy, err)
				}
			}
			return nil
		case errors.Is(err, ledger.ErrUnknownOrder):
			e.log.Error("fill for an unknown order: planning stops until a positions snapshot arrives",
				zap.String("policy", r.Policy), zap.String("order_id", r.Fill.OrderID), zap.String("fill_id", r.Fill.FillID))
			if err := e.save(rt, true); err != nil {
				return fmt.Errorf("ledger of %s not saved: %w", r.Policy, err)
			}
			e.evaluate(rt, now)
			return nil
		case err != nil:
			e.log.Error("fill rejected", zap.String("policy", r.Policy), zap.Error(err))
			return fmt.Errorf("%w: %w", ErrInvalidFill, err)
		}
		e.log.Info("fill", zap.String("policy", r.Policy), zap.String("order_id", res.Order.OrderID),
			zap.String("fill_id", r.Fill.FillID), zap.String("quantity", r.Fill.Quantity.String()),
			zap.String("price", r.Fill.Price.String()), zap.String("status", string(res.Order.Status)), zap.Bool("applied", res.Applied))
	case r.Positions != nil:
		p := r.Positions
		if p.AsOf.After(now.Add(e.opts.MaxSkew)) {
			err := &ledger.InputError{Reason: ledger.RejectPositionsFuture, Err: fmt.Errorf("positions of %s: as_of %s is more than %s after now (%s)",
				r.Policy, p.AsOf.UTC().Format(time.RFC3339), e.opts.MaxSkew, now.UTC().Format(time.RFC3339))}
			e.log.Error("positions snapshot rejected", zap.String("policy", r.Policy), zap.Error(err))
			return fmt.Errorf("%w: %w", ErrInvalidPositions, err)
		}
		accounts, err := ledger.FromPositions(p)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidPositions, err)
		}
		// Newer than everything the ledger knows, fills included: an older
		// snapshot delivered late would undo fills it does not contain. A
		// ledger dated after the clock (saved by an earlier version that
		// took a fill's date as it came) cannot be compared: the snapshot
		// replaces it.
		if !p.AsOf.After(rt.ledger.AsOf) && !rt.ledger.AsOf.After(now) {
			e.log.Warn("positions snapshot ignored: not newer than the ledger", zap.String("policy", r.Policy),
				zap.Time("as_of", p.AsOf), zap.Time("ledger_as_of", rt.ledger.AsOf))
			return nil
		}
		if err := fits(rt.pol, accounts); err != nil {
			// The executor holds what the policy does not know: the
			// ledger is not the truth any more, and the snapshot cannot
			// replace it. Planning stops (invalid_policy) until one that
			// fits arrives.
			rt.ledger.Refused = fmt.Sprintf("positions snapshot as of %s refused: %v", p.AsOf.UTC().Format(time.RFC3339), err)
			e.log.Error("positions snapshot rejected: it does not fit the policy; planning stops until one that fits arrives",
				zap.String("policy", r.Policy), zap.Time("as_of", p.AsOf), zap.Error(err))
			if serr := e.save(rt, true); serr != nil {
				e.evaluate(rt, now)
				return fmt.Errorf("ledger of %s not saved: %w", r.Policy, serr)
			}
			e.evaluate(rt, now)
			return fmt.Errorf("%w: %w", ErrInvalidPositions, err)
		}
		rt.ledger.SetBase(p.AsOf, "", accounts, now)
		e.log.Info("positions snapshot applied", zap.String("policy", r.Policy), zap.Time("as_of", p.AsOf))
	case r.CashFlow != nil:
		c := r.CashFlow
		if _, ok := rt.pol.AccountIndex(c.Account); !ok {
			return fmt.Errorf("%w: cash flow %s names account %q, which policy %s does not have", ErrInvalidCashFlow, c.CashFlowID, c.Account, r.Policy)
		}
		applied, err := rt.ledger.ApplyCashFlow(c)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidCashFlow, err)
		}
		if !applied {
			return nil // taken in before
		}
		e.log.Info("cash flow taken in", zap.String("policy", r.Policy), zap.String("cashflow_id", c.CashFlowID),
			zap.String("kind", c.Kind), zap.String("account", c.Account), zap.String("amount", c.Amount.String()))
	default:
		return fmt.Errorf("%w: empty report", ErrPermanent)
	}
	rt.ledger.Prune(now.Add(-e.opts.Retention))
	rt.symbols = neededSymbols(rt.pol, rt.ledger)
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
// has, listing at most maxListed of each kind that it does not. The
// error's reason (ledger.RejectReason) says which kind.
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
func listed(names []string) string {
	if len(names) <= maxListed {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:maxListed], ", "), len(names)-maxListed)
}

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
	rt.symbols = neededSymbols(rt.pol, rt.ledger)
	e.log.Warn("ledger resynced by the operator: holdings replaced", zap.String("policy", name), zap.String("by", by),
		zap.String("reason", reason), zap.String("file", h.File), zap.Time("as_of", h.AsOf), zap.Time("previous_as_of", prev))
	err := e.save(rt, true)
	e.evaluate(rt, now)
	if err != nil {
		return fmt.Errorf("resync %s: holdings replaced in memory but not saved (planning stays blocked): %w", name, err)
	}
	return nil
}

// Reconcile compares each policy's ledger with the orders the stream holds
// from the last order_ttl (fetched by recent) and adopts what the ledger
// lacks: an order the stream has but the journal lost (a power loss before
// the journal reached the disk) is tracked as published and pending, so it
// is neither planned again nor forgotten; a journaled outbox order the
// stream already has is marked published. It returns how many orders it
// adopted or marked.
func (e *Engine) Reconcile(ctx context.Context, recent func(ctx context.Context, policy string, since time.Time) ([]events.Order, error)) (int, error) {
	e.mu.Lock()
	type item struct {
		name  string
		since time.Time
	}
	var todo []item
	now := e.clk.Now()
	for _, name := range e.names {
		todo = append(todo, item{name, now.Add(-e.policies[name].pol.Rebalance.OrderTTL)})
	}
	e.mu.Unlock()
	changed := 0
	for _, it := range todo {
		orders, err := recent(ctx, it.name, it.since)
		if err != nil {
			return changed, fmt.Errorf("reconcile %s: %w", it.name, err)
		}
		e.mu.Lock()
		rt, ok := e.policies[it.name]
		if ok {
			n := 0
			for _, o := range orders {
				switch lo, known := rt.ledger.Order(o.OrderID); {
				case !known:
					rt.ledger.AddOrders([]events.Order{o}, now)
					rt.ledger.MarkPublished([]string{o.OrderID}, now)
					if o.CreatedAt.After(rt.ledger.LastRebalance) {
						rt.ledger.LastRebalance, rt.ledger.LastPlanID = o.CreatedAt, o.PlanID
					}
					e.log.Warn("order in the stream but not in the journal: tracking it as pending",
						zap.String("policy", it.name), zap.String("order_id", o.OrderID))
					n++
				case lo.Status == ledger.Outbox:
					rt.ledger.MarkPublished([]string{o.OrderID}, now)
					n++
				}
			}
			if n > 0 {
				e.save(rt, true)
				changed += n
			}
		}
		e.mu.Unlock()
	}
	return changed, nil
}
