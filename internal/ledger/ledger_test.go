package ledger

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/events"
)

var (
	t0  = time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC)
	dec = decimal.RequireFromString
)

// newLedger holds 10 VTI and 1000 cash in ira, with one published buy of
// 4 VTI and one published sell of 5 VTI.
func newLedger() *Ledger {
	l := New("p")
	l.SetBase(t0, "h", map[string]*Account{"ira": {Cash: dec("1000"), Positions: map[string]decimal.Decimal{"VTI": dec("10")}}}, t0)
	l.AddOrders([]events.Order{
		{OrderID: "x-1", PlanID: "x", Account: "ira", Instrument: "VTI", Side: "buy", Quantity: dec("4"), Price: dec("100"), ExpiresAt: t0.Add(time.Hour)},
		{OrderID: "x-2", PlanID: "x", Account: "ira", Instrument: "VTI", Side: "sell", Quantity: dec("5"), Price: dec("100"), ExpiresAt: t0.Add(time.Hour)},
	}, t0)
	l.MarkPublished([]string{"x-1", "x-2"}, t0)
	return l
}

func fill(id, order string, st events.FillStatus, qty, price, fees string, at time.Time) *events.Fill {
	return &events.Fill{FillID: id, OrderID: order, Status: st, Quantity: dec(qty), Price: dec(price), Fees: dec(fees), At: at}
}

func TestApplyFill(t *testing.T) {
	l := newLedger()
	at := t0.Add(time.Minute)
	// A partial buy: 3 of 4 at 99.5 with 1 fee.
	if _, err := l.ApplyFill("ira", fill("f1", "x-1", events.FillPartial, "3", "99.5", "1", at), at); err != nil {
		t.Fatal(err)
	}
	acc := l.Accounts["ira"]
	if !acc.Positions["VTI"].Equal(dec("13")) || !acc.Cash.Equal(dec("700.5")) {
		t.Fatalf("after partial buy: %+v", acc)
	}
	o, _ := l.Order("x-1")
	if o.Status != Partial || !o.Remaining().Equal(dec("1")) {
		t.Fatalf("order after partial: %s remaining %s", o.Status, o.Remaining())
	}
	// The same fill again is dropped.
	if _, err := l.ApplyFill("ira", fill("f1", "x-1", events.FillPartial, "3", "99.5", "1", at), at); !errors.Is(err, ErrDuplicateFill) {
		t.Fatalf("duplicate fill: %v", err)
	}
	// Cancel the rest with no quantity.
	if _, err := l.ApplyFill("ira", fill("f2", "x-1", events.FillCancelled, "0", "0", "0", at), at); err != nil {
		t.Fatal(err)
	}
	if o.Status != Cancelled {
		t.Fatalf("status %s, want cancelled", o.Status)
	}
	// The sell fills completely in one report.
	if _, err := l.ApplyFill("ira", fill("f3", "x-2", events.FillPartial, "5", "101", "0", at), at); err != nil {
		t.Fatal(err)
	}
	if o2, _ := l.Order("x-2"); o2.Status != Filled {
		t.Fatalf("status %s, want filled (nothing remains)", o2.Status)
	}
	if !acc.Positions["VTI"].Equal(dec("8")) || !acc.Cash.Equal(dec("1205.5")) || len(l.Pending()) != 0 {
		t.Fatalf("after sell: %+v, pending %d", acc, len(l.Pending()))
	}
	if !l.AsOf.Equal(at) || !l.BaseAsOf.Equal(t0) {
		t.Errorf("as_of %v base %v", l.AsOf, l.BaseAsOf)
	}
}

func TestApplyFillRejects(t *testing.T) {
	at := t0.Add(time.Minute)
	for _, tt := range []struct {
		name, account string
		f             *events.Fill
		want          string
	}{
		{"too much", "ira", fill("f", "x-1", events.FillPartial, "5", "100", "0", at), "exceeds the 4 remaining"},
		{"other account", "roth", fill("f", "x-1", events.FillPartial, "1", "100", "0", at), "reported for account roth"},
		{"negative", "ira", fill("f", "x-1", events.FillPartial, "-1", "100", "0", at), "must not be negative"},
		{"no price", "ira", fill("f", "x-1", events.FillPartial, "1", "0", "0", at), "needs a price"},
		{"bad status", "ira", fill("f", "x-1", "done", "1", "100", "0", at), `status "done"`},
		{"no id", "ira", fill("", "x-1", events.FillPartial, "1", "100", "0", at), "fill_id is missing"},
		{"no time", "ira", fill("f", "x-1", events.FillPartial, "1", "100", "0", time.Time{}), "at (the time of the execution) is missing"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLedger()
			_, err := l.ApplyFill(tt.account, tt.f, at)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if acc := l.Accounts["ira"]; !acc.Positions["VTI"].Equal(dec("10")) || !acc.Cash.Equal(dec("1000")) {
				t.Errorf("a rejected fill changed the holdings: %+v", acc)
			}
		})
	}
}

func TestSellBeyondPositionRejected(t *testing.T) {
	l := newLedger()
	l.Accounts["ira"].Positions["VTI"] = dec("2")
	at := t0.Add(time.Minute)
	if _, err := l.ApplyFill("ira", fill("f", "x-2", events.FillFilled, "5", "100", "0", at), at); err == nil || !strings.Contains(err.Error(), "holds 2") {
		t.Fatalf("error %v", err)
	}
}

func TestUnknownOrderBlocksUntilSnapshot(t *testing.T) {
	l := newLedger()
	at := t0.Add(time.Minute)
	if _, err := l.ApplyFill("ira", fill("f9", "nope-1", events.FillFilled, "1", "1", "0", at), at); !errors.Is(err, ErrUnknownOrder) {
		t.Fatalf("error %v", err)
	}
	if len(l.Unknown) != 1 {
		t.Fatalf("unknown %v", l.Unknown)
	}
	l.SetBase(at, "", map[string]*Account{"ira": {Cash: dec("1"), Positions: map[string]decimal.Decimal{"VTI": dec("7")}}}, at)
	if len(l.Unknown) != 0 {
		t.Fatal("a snapshot did not clear the unknown fills")
	}
	// Working orders stay pending, and a fill executed after the snapshot
	// moves the new holdings.
	if len(l.Pending()) != 2 {
		t.Fatalf("%d orders pending after a snapshot, want 2", len(l.Pending()))
	}
	later := at.Add(time.Minute)
	if res, err := l.ApplyFill("ira", fill("f1", "x-2", events.FillFilled, "5", "100", "0", later), later); err != nil || !res.Applied {
		t.Fatalf("fill after the snapshot: applied %v, %v", res.Applied, err)
	}
	if acc := l.Accounts["ira"]; !acc.Cash.Equal(dec("501")) {
		t.Errorf("cash %s after selling 5 at 100 on top of the snapshot's 1, want 501", acc.Cash)
	}
}

func TestFillBeforeBaseNotApplied(t *testing.T) {
	l := newLedger()
	res, err := l.ApplyFill("ira", fill("f", "x-1", events.FillFilled, "4", "100", "0", t0.Add(-time.Minute)), t0)
	if err != nil || res.Applied {
		t.Fatalf("applied %v err %v; a fill older than the snapshot is in it already", res.Applied, err)
	}
	if !l.Accounts["ira"].Positions["VTI"].Equal(dec("10")) {
		t.Error("holdings changed")
	}
	if o, _ := l.Order("x-1"); o.Status != Filled {
		t.Errorf("order status %s, want filled", o.Status)
	}
}

func TestExpireAndPrune(t *testing.T) {
	l := newLedger()
	l.AddOrders([]events.Order{{OrderID: "y-1", ExpiresAt: t0}}, t0) // outbox: never expires
	if got := l.Expire(t0.Add(59 * time.Minute)); len(got) != 0 {
		t.Fatalf("expired early: %d", len(got))
	}
	if got := l.Expire(t0.Add(time.Hour)); len(got) != 2 {
		t.Fatalf("expired %d, want the 2 published orders", len(got))
	}
	l.Prune(t0.Add(2 * time.Hour))
	if len(l.Orders) != 1 || l.Orders[0].OrderID != "y-1" {
		t.Fatalf("after prune: %d orders", len(l.Orders))
	}
}

func TestFromPositions(t *testing.T) {
	if _, err := FromPositions(&events.Positions{AsOf: t0, Accounts: map[string]events.AccountPositions{
		"ira": {Cash: dec("1"), Positions: map[string]decimal.Decimal{"VTI": dec("-1")}}}}); err == nil {
		t.Error("negative quantity accepted")
	}
	if _, err := FromPositions(&events.Positions{}); err == nil {
		t.Error("missing as_of accepted")
	}
	h := New("p")
	accs, err := FromPositions(&events.Positions{AsOf: t0, Accounts: map[string]events.AccountPositions{
		"b": {Cash: dec("2"), Positions: map[string]decimal.Decimal{"Z": dec("1"), "A": dec("0")}}, "a": {Cash: dec("1")}}})
	if err != nil {
		t.Fatal(err)
	}
	h.SetBase(t0, "", accs, t0)
	got := h.Holdings()
	if len(got.Accounts) != 2 || got.Accounts[0].Name != "a" || len(got.Accounts[1].Positions) != 1 {
		t.Fatalf("holdings %+v: want accounts sorted and zero positions dropped", got)
	}
}

// TestUnknownFillsBounded: a flood of fills for orders the ledger does not
// know (hostile or broken executor) keeps at most MaxUnknown of their ids
// and counts the rest: the ledger, saved after every report, does not
// grow with them (it held every id: 5,000 fills made every later save
// rewrite all of them). The policy stays blocked; a snapshot clears both.
func TestUnknownFillsBounded(t *testing.T) {
	l := newLedger()
	at := t0.Add(time.Minute)
	const n = 10 * MaxUnknown
	for i := range n {
		if _, err := l.ApplyFill("ira", fill(fmt.Sprintf("f%d", i), "nope", events.FillFilled, "1", "1", "0", at), at); !errors.Is(err, ErrUnknownOrder) {
			t.Fatalf("fill %d: %v", i, err)
		}
	}
	// A fill kept in the list, delivered again, is still a duplicate.
	if _, err := l.ApplyFill("ira", fill("f0", "nope", events.FillFilled, "1", "1", "0", at), at); !errors.Is(err, ErrDuplicateFill) {
		t.Fatalf("redelivered unknown fill: %v", err)
	}
	if len(l.Unknown) != MaxUnknown || l.UnknownMore != n-MaxUnknown {
		t.Fatalf("%d unknown ids kept and %d more counted, want %d and %d", len(l.Unknown), l.UnknownMore, MaxUnknown, n-MaxUnknown)
	}
	l.SetBase(at, "", map[string]*Account{"ira": {Cash: dec("1"), Positions: map[string]decimal.Decimal{}}}, at)
	if len(l.Unknown) != 0 || l.UnknownMore != 0 {
		t.Fatalf("a snapshot left %d unknown ids and %d more", len(l.Unknown), l.UnknownMore)
	}
}
