package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
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
			return fmt.Errorf("%w: %v", ErrInvalidFill, err)
		}
		e.log.Info("fill", zap.String("policy", r.Policy), zap.String("order_id", res.Order.OrderID),
			zap.String("fill_id", r.Fill.FillID), zap.String("quantity", r.Fill.Quantity.String()),
			zap.String("price", r.Fill.Price.String()), zap.String("status", string(res.Order.Status)), zap.Bool("applied", res.Applied))
	case r.Positions != nil:
		accounts, err := ledger.FromPositions(r.Positions)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidPositions, err)
		}
		// Newer than everything the ledger knows, fills included: an older
		// snapshot delivered late would undo fills it does not contain.
		if !r.Positions.AsOf.After(rt.ledger.AsOf) {
			e.log.Warn("positions snapshot ignored: not newer than the ledger", zap.String("policy", r.Policy),
				zap.Time("as_of", r.Positions.AsOf), zap.Time("ledger_as_of", rt.ledger.AsOf))
			return nil
		}
		rt.ledger.SetBase(r.Positions.AsOf, "", accounts, now)
		e.log.Info("positions snapshot applied", zap.String("policy", r.Policy), zap.Time("as_of", r.Positions.AsOf))
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
