package ledger

import (
	"errors"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/events"
)

// Reasons a report is refused (InputError.Reason), as counted in
// rebalancerd_inputs_rejected_total{input="report"}.
const (
	// RejectFillFuture: the fill is dated further in the future than the
	// allowed clock skew.
	RejectFillFuture = "fill_in_future"
	// RejectFillBeforeOrder: the fill is dated before its order was
	// created (less the allowed clock skew).
	RejectFillBeforeOrder = "fill_before_order"
	// RejectFillOffStep: the fill's quantity is not a multiple of the
	// instrument's step.
	RejectFillOffStep = "fill_off_step"
	// RejectFillOverQuantity: the fill's quantity is more than its order's
	// remaining quantity.
	RejectFillOverQuantity = "fill_over_quantity"
	// RejectFillPrice: the fill's price is outside the collar around its
	// order's reference price.
	RejectFillPrice = "fill_price_outside_collar"
	// RejectCashFlowFuture: the cash flow is dated further in the future
	// than the allowed clock skew.
	RejectCashFlowFuture = "cashflow_in_future"
	// RejectPositionsFuture: the positions snapshot is dated further in
	// the future than the allowed clock skew.
	RejectPositionsFuture = "positions_in_future"
	// RejectPositionsInstrument: the positions snapshot names an
	// instrument the policy does not have.
	RejectPositionsInstrument = "positions_unknown_instrument"
	// RejectPositionsAccount: the positions snapshot names an account the
	// policy does not have.
	RejectPositionsAccount = "positions_unknown_account"
)

// InputError is a report refused for a reason (one of the Reject*
// constants).
type InputError struct {
	Reason string
	Err    error
}

// Error returns the cause.
func (e *InputError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *InputError) Unwrap() error { return e.Err }

// RejectReason returns the reason of an InputError in err's chain, or "".
func RejectReason(err error) string {
	var ie *InputError
	if errors.As(err, &ie) {
		return ie.Reason
	}
	return ""
}

func refuse(reason, format string, args ...any) error {
	return &InputError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// DefaultMaxSkew is how far an executor's clock may be ahead of the
// daemon's (FillLimits.MaxSkew) unless configured.
const DefaultMaxSkew = 5 * time.Minute

// DefaultCollar is the default fill price collar: ±20% of the order's
// reference price.
var DefaultCollar = decimal.New(2, -1)

// FillLimits bound what a fill may say against the clock and its order.
type FillLimits struct {
	// MaxSkew is how far a fill may be dated after now, and before its
	// order's creation: the executor's clock may differ from the daemon's
	// by that much.
	MaxSkew time.Duration
	// Collar is how far a fill's price may be from its order's reference
	// price (events.Order.Price), as a fraction of it: 0.2 accepts prices
	// from 80% to 120% of it. Zero: no collar.
	Collar decimal.Decimal
	// Step returns the trading increment of an instrument (zero or nil:
	// none); a fill's quantity must be a multiple of it.
	Step func(instrument string) decimal.Decimal
}

// CheckFill checks a fill against the clock and its order before
// ApplyFill: a fill dated more than lim.MaxSkew after now or before its
// order's creation less lim.MaxSkew, a quantity off the instrument's step
// or above the order's remaining quantity, or a price outside the collar
// are refused with an *InputError. A fill for an unknown order, or one
// applied already, passes: ApplyFill says what it is.
func (l *Ledger) CheckFill(f *events.Fill, lim FillLimits, now time.Time) error {
	if f.At.After(now.Add(lim.MaxSkew)) {
		return refuse(RejectFillFuture, "fill %s: dated %s, more than %s after now (%s)",
			f.FillID, f.At.UTC().Format(time.RFC3339), lim.MaxSkew, now.UTC().Format(time.RFC3339))
	}
	o, ok := l.Order(f.OrderID)
	if !ok {
		return nil
	}
	for _, id := range o.FillIDs {
		if id == f.FillID {
			return nil
		}
	}
	if !o.CreatedAt.IsZero() && f.At.Before(o.CreatedAt.Add(-lim.MaxSkew)) {
		return refuse(RejectFillBeforeOrder, "fill %s: dated %s, before order %s was created (%s)",
			f.FillID, f.At.UTC().Format(time.RFC3339), o.OrderID, o.CreatedAt.UTC().Format(time.RFC3339))
	}
	if lim.Step != nil {
		if step := lim.Step(o.Instrument); step.Sign() > 0 && !f.Quantity.Mod(step).IsZero() {
			return refuse(RejectFillOffStep, "fill %s: quantity %s of %s is not a multiple of its step %s",
				f.FillID, f.Quantity, o.Instrument, step)
		}
	}
	if (o.Status.Pending() || o.Status == Expired) && f.Quantity.GreaterThan(o.Remaining()) {
		return refuse(RejectFillOverQuantity, "fill %s: quantity %s exceeds the %s remaining of order %s",
			f.FillID, f.Quantity, o.Remaining(), o.OrderID)
	}
	if lim.Collar.Sign() > 0 && o.Price.Sign() > 0 && f.Quantity.Sign() > 0 {
		band := o.Price.Mul(lim.Collar)
		lo, hi := o.Price.Sub(band), o.Price.Add(band)
		if f.Price.LessThan(lo) || f.Price.GreaterThan(hi) {
			return refuse(RejectFillPrice, "fill %s: price %s of %s is outside %s to %s (order %s's reference price %s ± %s%%)",
				f.FillID, f.Price, o.Instrument, lo, hi, o.OrderID, o.Price, lim.Collar.Shift(2))
		}
	}
	return nil
}
