package ledger

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// buyOrder adds and publishes a buy of 1 A in tx.
func buyOrder(l *Ledger, id string) {
	l.AddOrders([]events.Order{{OrderID: id, Account: "tx", Instrument: "A", Side: "buy", Quantity: dec("1"), ExpiresAt: t0.AddDate(1, 0, 0)}}, t0)
	l.MarkPublished([]string{id}, t0)
}

// TestHistoryBounded: the history keeps DefaultHistoryDays (61) days
// before the UTC day of now, once per instrument, account and day, and
// longer when HistoryDays says so.
func TestHistoryBounded(t *testing.T) {
	for _, tt := range []struct {
		days int
		want string
	}{
		{0, "tx A 2026-11-21; tx A 2027-01-21"},
		{62, "tx A 2026-11-20; tx A 2026-11-21; tx A 2027-01-21"},
	} {
		l := taxLedger()
		l.HistoryDays = tt.days
		for i, at := range []time.Time{
			t0,                    // 2026-11-20 21:00 UTC
			t0.Add(time.Hour),     // the same day: recorded once
			t0.Add(4 * time.Hour), // 2026-11-21 01:00 UTC
			t0.AddDate(0, 0, 62),  // 2027-01-21: 2026-11-20 is 62 days before
		} {
			id := string(rune('a' + i))
			buyOrder(l, id)
			if _, err := l.ApplyFill("tx", fill("f"+id, id, events.FillFilled, "1", "100", "0", at), at); err != nil {
				t.Fatal(err)
			}
		}
		now := t0.AddDate(0, 0, 62)
		wantHistory(t, l.TaxHistory(now), "", tt.want)
		// Recording pruned the history as well: it holds no more than
		// TaxHistory returns.
		if got := len(l.History.Buys); got != len(l.TaxHistory(now).Buys) {
			t.Errorf("days %d: %d buys kept, %d within the window", tt.days, got, len(l.TaxHistory(now).Buys))
		}
		// Later, TaxHistory leaves out what is older than the window
		// without a fill to prune it.
		wantHistory(t, l.TaxHistory(now.AddDate(1, 0, 0)), "", "")
	}
}

// TestLossSaleDate: a loss sale is recorded on the UTC day of the fill,
// and a later buy elsewhere is recorded too; the history is what the
// wash-sale guard then reads.
func TestLossSaleDate(t *testing.T) {
	l := taxLedger()
	at := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
	apply(t, l, fill("f1", "s-1", events.FillFilled, "5", "120", "0", at)) // from lot 2, at 150 a unit
	h := l.TaxHistory(at)
	wantHistory(t, h, "tx A 2026-11-23", "")
	w := tax.WashSale{}
	if b := w.CheckBuy(h, tax.Buy{Instrument: "A", Class: "stocks", Date: tax.NewDate(2026, 12, 23)}); !b.Blocked || b.Until != tax.NewDate(2026, 12, 23) {
		t.Errorf("wash-sale guard on the history: %+v", b)
	}
}

// TestFillBeforeBaseRecordsBuy: a buy the base snapshot already holds
// still happened: it is in the history, though no lot is added.
func TestFillBeforeBaseRecordsBuy(t *testing.T) {
	l := taxLedger()
	before := t0.Add(-time.Hour)
	res, err := l.ApplyFill("tx", fill("f1", "b-1", events.FillFilled, "3", "100", "0", before), t0)
	if err != nil || res.Applied {
		t.Fatalf("applied %v, %v", res.Applied, err)
	}
	wantLots(t, l, "A", "1:10/1000@2024-01-10 2:10/1500@2025-06-01")
	wantHistory(t, l.TaxHistory(t0), "", "tx A 2026-11-20")
	// A sell the base holds records nothing: which lots it sold is
	// unknown.
	if _, err := l.ApplyFill("tx", fill("f2", "s-1", events.FillFilled, "5", "1", "0", before), t0); err != nil {
		t.Fatal(err)
	}
	wantHistory(t, l.TaxHistory(t0), "", "tx A 2026-11-20")
}

// TestRejectedFillRecordsNothing: a fill refused (a sell beyond the
// position) changes neither lots nor history.
func TestRejectedFillRecordsNothing(t *testing.T) {
	l := taxLedger()
	l.Accounts["tx"].Positions["A"] = dec("20")
	l.AddOrders([]events.Order{{OrderID: "s-9", Account: "tx", Instrument: "A", Side: "sell", Quantity: dec("30"), ExpiresAt: t0.Add(time.Hour)}}, t0)
	at := t0.Add(time.Minute)
	if _, err := l.ApplyFill("tx", fill("f1", "s-9", events.FillFilled, "30", "1", "0", at), at); err == nil {
		t.Fatal("a sell beyond the position was applied")
	}
	wantLots(t, l, "A", "1:10/1000@2024-01-10 2:10/1500@2025-06-01")
	if l.History.LossSales != nil || l.History.Buys != nil || !l.Accounts["tx"].Positions["A"].Equal(decimal.NewFromInt(20)) {
		t.Errorf("history %+v, position %s", l.History, l.Accounts["tx"].Positions["A"])
	}
}

// TestHistoryQuantities: fills of one day add up in the history, and a
// positions snapshot that shows a position grown (a dividend reinvested)
// records the increase as a buy on the snapshot's day; a position that
// did not grow records nothing.
func TestHistoryQuantities(t *testing.T) {
	l := taxLedger()
	for i, q := range []string{"1", "2"} {
		id := string(rune('a' + i))
		l.AddOrders([]events.Order{{OrderID: id, Account: "tx", Instrument: "A", Side: "buy", Quantity: dec(q), ExpiresAt: t0.AddDate(1, 0, 0)}}, t0)
		l.MarkPublished([]string{id}, t0)
		if _, err := l.ApplyFill("tx", fill("f"+id, id, events.FillFilled, q, "100", "0", t0.Add(time.Minute)), t0); err != nil {
			t.Fatal(err)
		}
	}
	if b := l.TaxHistory(t0).Buys; len(b) != 1 || !b[0].Quantity.Equal(dec("3")) {
		t.Fatalf("buys = %+v, want one of 3", b)
	}
	at := t0.Add(48 * time.Hour)
	grown := &Account{Cash: dec("0"), Positions: map[string]decimal.Decimal{"A": l.Accounts["tx"].Positions["A"].Add(dec("0.25"))}}
	l.SetBase(at, "", map[string]*Account{"tx": grown}, at)
	b := l.TaxHistory(at).Buys
	if len(b) != 2 || b[1].Date != tax.NewDate(2026, 11, 22) || !b[1].Quantity.Equal(dec("0.25")) {
		t.Fatalf("buys = %+v, want the 0.25 reinvested on 2026-11-22", b)
	}
	l.SetBase(at.Add(time.Hour), "", map[string]*Account{"tx": {Cash: dec("0"), Positions: map[string]decimal.Decimal{"A": grown.Positions["A"]}}}, at)
	if n := len(l.TaxHistory(at).Buys); n != 2 {
		t.Errorf("an unchanged snapshot recorded a buy: %d buys", n)
	}
}
