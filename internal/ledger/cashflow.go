package ledger

import (
	"fmt"
	"slices"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/events"
)

// maxCashFlowIDs bounds the cash flow ids a ledger remembers to recognise
// a repeated delivery.
const maxCashFlowIDs = 256

// ApplyCashFlow takes in a cash flow: a deposit is added to the account's
// cash at once; both kinds are queued in PendingFlows until a plan carries
// them out. It returns false, changing nothing, for a cash flow whose id
// was taken in before. A deposit moves the ledger's as_of to its time, but
// not past now; one dated at or before BaseAsOf is in the base already
// and is only queued.
func (l *Ledger) ApplyCashFlow(c *events.CashFlow, now time.Time) (bool, error) {
	l.rev++
	if slices.Contains(l.CashFlowIDs, c.CashFlowID) {
		return false, nil
	}
	if c.Amount.Sign() <= 0 {
		return false, fmt.Errorf("cash flow %s: amount %s is not positive", c.CashFlowID, c.Amount)
	}
	acc, ok := l.Accounts[c.Account]
	if !ok {
		acc = &Account{Cash: decimal.Zero, Positions: map[string]decimal.Decimal{}}
		l.Accounts[c.Account] = acc
	}
	// A deposit dated at or before the base is in the base's cash already
	// (the snapshot was taken after the money arrived), as a fill is: it
	// is still queued, to be invested, but not added again.
	if c.Kind == events.CashFlowDeposit && c.At.After(l.BaseAsOf) {
		acc.Cash = acc.Cash.Add(c.Amount)
		if at := minTime(c.At, now); at.After(l.AsOf) {
			l.AsOf = at
		}
	}
	l.CashFlowIDs = append(l.CashFlowIDs, c.CashFlowID)
	if n := len(l.CashFlowIDs); n > maxCashFlowIDs {
		l.CashFlowIDs = slices.Delete(l.CashFlowIDs, 0, n-maxCashFlowIDs)
	}
	l.PendingFlows = append(l.PendingFlows, *c)
	return true, nil
}
