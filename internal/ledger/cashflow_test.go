package ledger

import (
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/events"
)

// TestDepositInTheBaseNotAddedAgain: a deposit dated at or before the
// ledger's base (a positions snapshot or holdings file taken after the
// money arrived) is in the base's cash already, as a fill is: delivered
// after the snapshot (late, or redelivered after a failed save) it is
// queued to be invested but not added to the cash a second time. (It
// was: the ledger then held money the household does not have, and plans
// bought with it.) A deposit after the base is added.
func TestDepositInTheBaseNotAddedAgain(t *testing.T) {
	l := newLedger() // base at t0, ira cash 1000
	now := t0.Add(time.Hour)
	before := &events.CashFlow{CashFlowID: "c1", Kind: events.CashFlowDeposit, Account: "ira", Amount: dec("500"), At: t0.Add(-time.Minute)}
	if ok, err := l.ApplyCashFlow(before, now); !ok || err != nil {
		t.Fatalf("deposit before the base: %v %v", ok, err)
	}
	if got := l.Accounts["ira"].Cash; !got.Equal(dec("1000")) {
		t.Fatalf("cash %s after a deposit the base includes, want 1000", got)
	}
	if len(l.PendingFlows) != 1 {
		t.Fatalf("%d pending flows, want the deposit queued", len(l.PendingFlows))
	}
	after := &events.CashFlow{CashFlowID: "c2", Kind: events.CashFlowDeposit, Account: "ira", Amount: dec("300"), At: t0.Add(time.Minute)}
	if ok, err := l.ApplyCashFlow(after, now); !ok || err != nil {
		t.Fatalf("deposit after the base: %v %v", ok, err)
	}
	if got := l.Accounts["ira"].Cash; !got.Equal(dec("1300")) {
		t.Fatalf("cash %s after a deposit after the base, want 1300", got)
	}
}
