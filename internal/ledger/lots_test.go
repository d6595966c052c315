package ledger

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/tax"
)

func lot(id int, qty, basis, acquired string) Lot {
	d, err := tax.ParseDate(acquired)
	if err != nil {
		panic(err)
	}
	return Lot{ID: id, Quantity: dec(qty), Basis: dec(basis), Acquired: d}
}

// lotsLine renders lots as "id:quantity/basis@acquired" for comparisons.
func lotsLine(lots []Lot) string {
	parts := make([]string, len(lots))
	for i, l := range lots {
		parts[i] = fmt.Sprintf("%d:%s/%s@%s", l.ID, l.Quantity, l.Basis, l.Acquired)
	}
	return strings.Join(parts, " ")
}

// taxLedger holds, in account tx, 10 A acquired 2024-01-10 for 1000
// (lot 1, long-term, 100 a unit) and 10 A acquired 2025-06-01 for 1500
// (lot 2, 150 a unit), 1000 cash, and 5 B without lots. Orders: s-1 sells
// 5 A, s-2 sells 12 A, b-1 buys 3 A, b-2 buys 2 B.
func taxLedger() *Ledger {
	l := New("p")
	l.SetBase(t0, "h", map[string]*Account{"tx": {
		Cash:      dec("1000"),
		Positions: map[string]decimal.Decimal{"A": dec("20"), "B": dec("5")},
		Lots:      map[string][]Lot{"A": {lot(1, "10", "1000", "2024-01-10"), lot(2, "10", "1500", "2025-06-01")}},
	}}, t0)
	order := func(id, sym, side, qty string) events.Order {
		return events.Order{OrderID: id, PlanID: "s", Account: "tx", Instrument: sym, Side: side, Quantity: dec(qty), Price: dec("120"), ExpiresAt: t0.Add(time.Hour)}
	}
	l.AddOrders([]events.Order{order("s-1", "A", "sell", "5"), order("s-2", "A", "sell", "12"), order("b-1", "A", "buy", "3"), order("b-2", "B", "buy", "2")}, t0)
	l.MarkPublished([]string{"s-1", "s-2", "b-1", "b-2"}, t0)
	return l
}

func apply(t *testing.T, l *Ledger, f *events.Fill) {
	t.Helper()
	if _, err := l.ApplyFill("tx", f, f.At); err != nil {
		t.Fatal(err)
	}
	checkLedgerLots(t, l)
}

// checkLedgerLots checks that every position's lots are valid and add up
// to its quantity, and that Holdings carries them.
func checkLedgerLots(t *testing.T, l *Ledger) {
	t.Helper()
	for name, a := range l.Accounts {
		for sym, lots := range a.Lots {
			if err := checkLots(lots, a.Positions[sym]); err != nil {
				t.Fatalf("%s %s: %v (lots %s)", name, sym, err, lotsLine(lots))
			}
		}
	}
	for _, ah := range l.Holdings().Accounts {
		for _, p := range ah.Positions {
			lots := l.Accounts[ah.Name].Lots[p.Instrument]
			if p.Lots.Len() != len(lots) || (len(lots) > 0 && !p.Lots.Quantity().Equal(p.Quantity)) {
				t.Fatalf("holdings %s %s: %d lots for %s, ledger has %d", ah.Name, p.Instrument, p.Lots.Len(), p.Quantity, len(lots))
			}
		}
	}
}

func wantLots(t *testing.T, l *Ledger, sym, want string) {
	t.Helper()
	if got := lotsLine(l.Accounts["tx"].Lots[sym]); got != want {
		t.Errorf("lots of %s:\n got %s\nwant %s", sym, got, want)
	}
}

func wantHistory(t *testing.T, h tax.History, lossSales, buys string) {
	t.Helper()
	line := func(trades []tax.Trade) string {
		parts := make([]string, len(trades))
		for i, x := range trades {
			parts[i] = x.Account + " " + x.Instrument + " " + x.Date.String()
		}
		return strings.Join(parts, "; ")
	}
	if got := line(h.LossSales); got != lossSales {
		t.Errorf("loss sales %q, want %q", got, lossSales)
	}
	if got := line(h.Buys); got != buys {
		t.Errorf("buys %q, want %q", got, buys)
	}
}

// TestBuyAddsLot: 3 A at 99.5 with a fee of 1 is a lot of basis
// 3 x 99.5 + 1 = 299.5, acquired on the fill's UTC day: 02:00 UTC on
// 2026-11-21 is the 21st even though it is the 20th in New York.
func TestBuyAddsLot(t *testing.T) {
	l := taxLedger()
	at := time.Date(2026, 11, 21, 2, 0, 0, 0, time.UTC)
	apply(t, l, fill("f1", "b-1", events.FillPartial, "2", "99.5", "1", at))
	apply(t, l, fill("f2", "b-1", events.FillFilled, "1", "99", "0", at))
	wantLots(t, l, "A", "1:10/1000@2024-01-10 2:10/1500@2025-06-01 3:2/200@2026-11-21 4:1/99@2026-11-21")
	if !l.Accounts["tx"].Positions["A"].Equal(dec("23")) {
		t.Errorf("position %s, want 23", l.Accounts["tx"].Positions["A"])
	}
	// B is held without lots: a buy adds none, its basis stays unknown.
	apply(t, l, fill("f3", "b-2", events.FillFilled, "2", "50", "0", at))
	if lots, ok := l.Accounts["tx"].Lots["B"]; ok {
		t.Errorf("B got lots %s; held without lots, its basis is unknown", lotsLine(lots))
	}
	wantHistory(t, l.TaxHistory(at), "", "tx A 2026-11-21; tx B 2026-11-21")
}

// TestBuyNewPositionAddsLot: a buy into a position not held starts its lots.
func TestBuyNewPositionAddsLot(t *testing.T) {
	l := taxLedger()
	delete(l.Accounts["tx"].Positions, "B")
	at := t0.Add(time.Minute)
	apply(t, l, fill("f1", "b-2", events.FillFilled, "2", "50.25", "0.10", at))
	wantLots(t, l, "B", "1:2/100.6@2026-11-20")
}

// TestSellTaxOrder: without a lot selection a sell takes the lots in the
// tax package's order, losses first: 5 A at 120 sells from lot 2 (150 a
// unit), basis 1500 x 5/10 = 750, proceeds 600: a loss, recorded with its
// date. Lot 1 (100 a unit, a gain) stays whole.
func TestSellTaxOrder(t *testing.T) {
	l := taxLedger()
	at := t0.Add(time.Minute)
	apply(t, l, fill("f1", "s-1", events.FillFilled, "5", "120", "0", at))
	wantLots(t, l, "A", "1:10/1000@2024-01-10 2:5/750@2025-06-01")
	wantHistory(t, l.TaxHistory(at), "tx A 2026-11-20", "")
	if !l.Accounts["tx"].Cash.Equal(dec("1600")) {
		t.Errorf("cash %s, want 1600", l.Accounts["tx"].Cash)
	}
}

// TestSellChosenLots: the plan chose lot 1 (index 0) for s-1; partial
// fills consume it in order, and no loss is realized (100 a unit sold at
// 120).
func TestSellChosenLots(t *testing.T) {
	l := taxLedger()
	if err := l.SetLots("s-1", []tax.Sale{{Lot: 0, Acquired: tax.NewDate(2024, 1, 10), Quantity: dec("5")}}); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Minute)
	apply(t, l, fill("f1", "s-1", events.FillPartial, "2", "120", "0", at))
	wantLots(t, l, "A", "1:8/800@2024-01-10 2:10/1500@2025-06-01")
	if o, _ := l.Order("s-1"); len(o.Lots) != 1 || !o.Lots[0].Quantity.Equal(dec("3")) {
		t.Fatalf("selection left %+v, want 3 of lot 1", o.Lots)
	}
	apply(t, l, fill("f2", "s-1", events.FillFilled, "3", "121", "0", at))
	wantLots(t, l, "A", "1:5/500@2024-01-10 2:10/1500@2025-06-01")
	if o, _ := l.Order("s-1"); o.Lots != nil {
		t.Errorf("selection left %+v after the order filled", o.Lots)
	}
	wantHistory(t, l.TaxHistory(at), "", "")
}

// TestSellSelectionThenTaxOrder: the selection covers 3 (of lot 1) of
// s-2's 12; the fill of 12 sells the 3 chosen, then 9 in the tax
// package's order: from lot 2 first (150 a unit, a loss at 120), basis
// 1500 x 9/10 = 1350, leaving 1 of it with 150.
func TestSellSelectionThenTaxOrder(t *testing.T) {
	l := taxLedger()
	if err := l.SetLots("s-2", []tax.Sale{{Lot: 0, Acquired: tax.NewDate(2024, 1, 10), Quantity: dec("3")}}); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Minute)
	apply(t, l, fill("f1", "s-2", events.FillFilled, "12", "120", "0", at))
	wantLots(t, l, "A", "1:7/700@2024-01-10 2:1/150@2025-06-01")
	wantHistory(t, l.TaxHistory(at), "tx A 2026-11-20", "")
}

// TestSellSplitBasisRounded: 1 of a lot of 3 for 100 carries 33.33 (cents,
// as tax.Lots.Select rounds); the lot keeps 66.67, so the basis adds up.
func TestSellSplitBasisRounded(t *testing.T) {
	l := taxLedger()
	l.Accounts["tx"].Positions["A"] = dec("3")
	l.Accounts["tx"].Lots["A"] = []Lot{lot(7, "3", "100", "2020-01-01")}
	at := t0.Add(time.Minute)
	apply(t, l, fill("f1", "s-1", events.FillPartial, "1", "40", "0", at))
	wantLots(t, l, "A", "7:2/66.67@2020-01-01")
	// Selling the rest removes the position's lots altogether.
	apply(t, l, fill("f2", "s-1", events.FillPartial, "2", "40", "0", at))
	if lots, ok := l.Accounts["tx"].Lots["A"]; ok || !l.Accounts["tx"].Positions["A"].IsZero() {
		t.Errorf("after selling everything: lots %s, position %s", lotsLine(lots), l.Accounts["tx"].Positions["A"])
	}
}

// TestLossSaleCountsFees: 10 of lot 1 (basis 1000) at 100.5 bring 1005, a
// gain; with a fee of 10 they bring 995 net, a loss.
func TestLossSaleCountsFees(t *testing.T) {
	for _, tt := range []struct {
		fees string
		loss bool
	}{{"0", false}, {"5", false}, {"5.01", true}, {"10", true}} {
		l := taxLedger()
		if err := l.SetLots("s-2", []tax.Sale{{Lot: 0, Acquired: tax.NewDate(2024, 1, 10), Quantity: dec("10")}}); err != nil {
			t.Fatal(err)
		}
		at := t0.Add(time.Minute)
		apply(t, l, fill("f1", "s-2", events.FillPartial, "10", "100.5", tt.fees, at))
		if got := len(l.TaxHistory(at).LossSales) == 1; got != tt.loss {
			t.Errorf("fees %s: loss sale recorded %v, want %v", tt.fees, got, tt.loss)
		}
	}
}

// TestSellWithoutLots: a sell of a position without lots changes no lot
// and records no loss sale (whether it is one is unknown).
func TestSellWithoutLots(t *testing.T) {
	l := taxLedger()
	l.AddOrders([]events.Order{{OrderID: "s-3", Account: "tx", Instrument: "B", Side: "sell", Quantity: dec("5"), ExpiresAt: t0.Add(time.Hour)}}, t0)
	at := t0.Add(time.Minute)
	apply(t, l, fill("f1", "s-3", events.FillFilled, "5", "1", "0", at))
	if _, ok := l.Accounts["tx"].Lots["B"]; ok || len(l.History.LossSales) != 0 {
		t.Errorf("lots %v, loss sales %v", l.Accounts["tx"].Lots, l.History.LossSales)
	}
}

// TestSetLotsRejects: a selection that does not match the lots is refused
// and records nothing.
func TestSetLotsRejects(t *testing.T) {
	jan10 := tax.NewDate(2024, 1, 10)
	for _, tt := range []struct {
		name, order string
		sales       []tax.Sale
		want        string
	}{
		{"unknown order", "nope", []tax.Sale{{Lot: 0, Acquired: jan10, Quantity: dec("1")}}, "fill for an unknown order"},
		{"buy", "b-1", []tax.Sale{{Lot: 0, Acquired: jan10, Quantity: dec("1")}}, "a buy order sells no lots"},
		{"no such lot", "s-1", []tax.Sale{{Lot: 2, Acquired: jan10, Quantity: dec("1")}}, "lot 2 of A in tx does not exist (2 lots)"},
		{"other date", "s-1", []tax.Sale{{Lot: 1, Acquired: jan10, Quantity: dec("1")}}, "acquired on 2025-06-01, the plan says 2024-01-10"},
		{"too much of a lot", "s-2", []tax.Sale{{Lot: 0, Acquired: jan10, Quantity: dec("11")}}, "sells 11 of lot 0 of A in tx, which holds 10"},
		{"twice", "s-2", []tax.Sale{{Lot: 0, Acquired: jan10, Quantity: dec("1")}, {Lot: 0, Acquired: jan10, Quantity: dec("1")}}, "lot 0 chosen twice"},
		{"more than the order", "s-1", []tax.Sale{{Lot: 0, Acquired: jan10, Quantity: dec("6")}}, "the lots sell 6, the order 5"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := taxLedger()
			err := l.SetLots(tt.order, tt.sales)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			for _, o := range l.Orders {
				if o.Lots != nil {
					t.Errorf("order %s got lots %+v", o.OrderID, o.Lots)
				}
			}
		})
	}
}

// TestStaleSelection: a selection naming a lot that is gone (sold by
// another order) falls back to the tax package's order.
func TestStaleSelection(t *testing.T) {
	l := taxLedger()
	if err := l.SetLots("s-1", []tax.Sale{{Lot: 1, Acquired: tax.NewDate(2025, 6, 1), Quantity: dec("5")}}); err != nil {
		t.Fatal(err)
	}
	if err := l.SetLots("s-2", []tax.Sale{{Lot: 1, Acquired: tax.NewDate(2025, 6, 1), Quantity: dec("10")}, {Lot: 0, Acquired: tax.NewDate(2024, 1, 10), Quantity: dec("2")}}); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Minute)
	apply(t, l, fill("f1", "s-2", events.FillPartial, "12", "120", "0", at))
	wantLots(t, l, "A", "1:8/800@2024-01-10")
	apply(t, l, fill("f2", "s-1", events.FillPartial, "5", "120", "0", at))
	wantLots(t, l, "A", "1:3/300@2024-01-10")
	if o, _ := l.Order("s-1"); o.Lots != nil {
		t.Errorf("stale selection kept: %+v", o.Lots)
	}
}

// TestSetBaseKeepsLots: a positions report (no lots) keeps the lots of
// the positions whose quantity is their sum, and the selections of their
// pending orders; other positions lose theirs.
func TestSetBaseKeepsLots(t *testing.T) {
	l := taxLedger()
	l.Accounts["tx"].Positions["C"] = dec("4")
	l.Accounts["tx"].Lots["C"] = []Lot{lot(1, "4", "40", "2025-01-01")}
	l.AddOrders([]events.Order{{OrderID: "s-3", Account: "tx", Instrument: "C", Side: "sell", Quantity: dec("1"), ExpiresAt: t0.Add(time.Hour)}}, t0)
	if err := l.SetLots("s-1", []tax.Sale{{Lot: 0, Acquired: tax.NewDate(2024, 1, 10), Quantity: dec("5")}}); err != nil {
		t.Fatal(err)
	}
	if err := l.SetLots("s-3", []tax.Sale{{Lot: 0, Acquired: tax.NewDate(2025, 1, 1), Quantity: dec("1")}}); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Hour)
	accs, err := FromPositions(&events.Positions{AsOf: at, Accounts: map[string]events.AccountPositions{
		"tx": {Cash: dec("1000"), Positions: map[string]decimal.Decimal{"A": dec("20.0"), "B": dec("5"), "C": dec("3")}}}})
	if err != nil {
		t.Fatal(err)
	}
	l.SetBase(at, "", accs, at)
	checkLedgerLots(t, l)
	wantLots(t, l, "A", "1:10/1000@2024-01-10 2:10/1500@2025-06-01")
	if lots, ok := l.Accounts["tx"].Lots["C"]; ok {
		t.Errorf("C kept lots %s that do not add up to its 3", lotsLine(lots))
	}
	if o, _ := l.Order("s-1"); len(o.Lots) != 1 {
		t.Errorf("s-1 lost its selection of lots that were kept")
	}
	if o, _ := l.Order("s-3"); o.Lots != nil {
		t.Errorf("s-3 kept a selection of lots that are gone: %+v", o.Lots)
	}
}

// TestFromHoldingsLots: the lots of a holdings file reach the ledger and
// come back out of Holdings in the file's order.
func TestFromHoldingsLots(t *testing.T) {
	h, err := portfolio.ParseHoldings("holdings.yaml", []byte(`as_of: 2026-11-20T21:00:00Z
accounts:
  ira: {cash: "10", positions: {VTI: "120"}}
  tx:
    positions:
      VXUS:
        lots:
          - {quantity: "30", cost_basis: "1650.00", acquired: 2024-01-15}
          - {quantity: "20.5", unit_cost: "61.0125", acquired: 2024-02-29}
`))
	if err != nil {
		t.Fatal(err)
	}
	l := New("p")
	l.SetBase(h.AsOf, "h", FromHoldings(h), h.AsOf)
	wantLots(t, l, "VXUS", "1:30/1650@2024-01-15 2:20.5/1250.75625@2024-02-29")
	if l.Accounts["ira"].Lots != nil {
		t.Errorf("ira has lots %v", l.Accounts["ira"].Lots)
	}
	got := l.Holdings()
	vxus := got.Accounts[1].Positions[0]
	if vxus.Instrument != "VXUS" || vxus.Lots.Len() != 2 || !vxus.Quantity.Equal(dec("50.5")) ||
		!sameLot(vxus.Lots.Lot(1), h.Accounts[1].Positions[0].Lots.Lot(1)) {
		t.Fatalf("holdings position %+v", vxus)
	}
	if got.Accounts[0].Positions[0].Lots.Len() != 0 {
		t.Error("a position without lots got some")
	}
}

func sameLot(a, b tax.Lot) bool {
	return a.Quantity.Equal(b.Quantity) && a.Basis.Equal(b.Basis) && a.Acquired == b.Acquired
}

// TestLotsJSON: lots, selections and history survive a round trip
// exactly; a ledger saved without them loads and saves as before; lots
// that do not add up are refused.
func TestLotsJSON(t *testing.T) {
	l := taxLedger()
	l.Accounts["tx"].Positions["C"] = dec("0.12345678901234567890")
	l.Accounts["tx"].Lots["C"] = []Lot{lot(4, "0.12345678901234567890", "1234.000000000000000001", "2025-01-01")}
	if err := l.SetLots("s-1", []tax.Sale{{Lot: 1, Acquired: tax.NewDate(2025, 6, 1), Quantity: dec("5")}}); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(time.Minute)
	apply(t, l, fill("f1", "b-1", events.FillPartial, "1", "99.99", "0.01", at))
	data, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	var got Ledger
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	for _, sym := range []string{"A", "C"} {
		if a, b := lotsLine(got.Accounts["tx"].Lots[sym]), lotsLine(l.Accounts["tx"].Lots[sym]); a != b {
			t.Errorf("lots of %s after a round trip:\n got %s\nwant %s", sym, a, b)
		}
	}
	if o, _ := got.Order("s-1"); len(o.Lots) != 1 || o.Lots[0].Lot != 2 || o.Lots[0].Acquired != tax.NewDate(2025, 6, 1) || !o.Lots[0].Quantity.Equal(dec("5")) {
		t.Errorf("selection after a round trip: %+v", o.Lots)
	}
	wantHistory(t, got.TaxHistory(at), "", "tx A 2026-11-20")
	again, _ := json.Marshal(&got)
	if string(again) != string(data) {
		t.Errorf("second encoding differs:\n%s\n%s", again, data)
	}

	// The previous version's ledger: no lots, no history.
	old := `{"policy":"p","base_as_of":"2026-11-20T21:00:00Z","base_hash":"h","as_of":"2026-11-20T21:00:00Z",` +
		`"accounts":{"ira":{"cash":"1000","positions":{"VTI":"10"}}},"orders":[{"schema_version":0,"order_id":"x-1",` +
		`"plan_id":"x","policy":"","policy_version":"","trigger":"","created_at":"0001-01-01T00:00:00Z",` +
		`"expires_at":"2026-11-20T22:00:00Z","phase":0,"account":"ira","instrument":"VTI","side":"buy","quantity":"4",` +
		`"price":"100","notional":"0","sleeve":"","rule":"","status":"published","filled":"0","updated":"2026-11-20T21:00:00Z"}]}`
	var prev Ledger
	if err := json.Unmarshal([]byte(old), &prev); err != nil {
		t.Fatal(err)
	}
	if out, _ := json.Marshal(&prev); string(out) != old {
		t.Errorf("a ledger of the previous version changed on a round trip:\n got %s\nwant %s", out, old)
	}

	bad := strings.Replace(string(data), `"quantity":"0.1234567890123456789"`, `"quantity":"0.1"`, 1)
	if bad == string(data) {
		t.Fatal("test data: lot of C not found")
	}
	if err := json.Unmarshal([]byte(bad), new(Ledger)); err == nil || !strings.Contains(err.Error(), "account tx: lots of C: the lots add up to 0.1, the position is 0.1234567890123456789") {
		t.Errorf("inconsistent lots: error %v", err)
	}
}

// TestSellBeyondLotsDropsThem: lots that do not cover a sell (which the
// ledger never makes: here set by hand) do not make a real fill refused;
// the position's lots are dropped, its basis unknown.
func TestSellBeyondLotsDropsThem(t *testing.T) {
	l := taxLedger()
	l.Accounts["tx"].Lots["A"] = []Lot{lot(1, "3", "300", "2024-01-10")}
	at := t0.Add(time.Minute)
	if _, err := l.ApplyFill("tx", fill("f1", "s-1", events.FillFilled, "5", "1", "0", at), at); err != nil {
		t.Fatal(err)
	}
	if lots, ok := l.Accounts["tx"].Lots["A"]; ok || !l.Accounts["tx"].Positions["A"].Equal(dec("15")) || len(l.History.LossSales) != 0 {
		t.Errorf("lots %s, position %s, loss sales %v", lotsLine(lots), l.Accounts["tx"].Positions["A"], l.History.LossSales)
	}
}

// TestHoldingsLotsCache: Holdings reuses the sorted lots of a position
// while they are unchanged, and sorts again once a fill changed them.
func TestHoldingsLotsCache(t *testing.T) {
	l := taxLedger()
	lotsOf := func() tax.Lots {
		for _, a := range l.Holdings().Accounts {
			for _, p := range a.Positions {
				if a.Name == "tx" && p.Instrument == "A" {
					return p.Lots
				}
			}
		}
		t.Fatal("no position tx/A")
		return tax.Lots{}
	}
	before := lotsOf()
	if again := lotsOf(); again.Len() != before.Len() || !again.Quantity().Equal(before.Quantity()) {
		t.Fatalf("second Holdings: %d lots of %s, first %d of %s", again.Len(), again.Quantity(), before.Len(), before.Quantity())
	}
	apply(t, l, fill("f1", "s-1", events.FillFilled, "5", "120", "0", t0.Add(time.Minute)))
	after := lotsOf()
	if !after.Quantity().Equal(before.Quantity().Sub(dec("5"))) {
		t.Fatalf("after selling 5: lots hold %s, before %s", after.Quantity(), before.Quantity())
	}
}

// BenchmarkHoldingsLots: Holdings of a position of 200 lots, as every
// evaluation of a policy asks for it (the lots are sorted once).
func BenchmarkHoldingsLots(b *testing.B) {
	l := New("p")
	lots := make([]Lot, 200)
	q := decimal.Zero
	for i := range lots {
		lots[i] = Lot{ID: i + 1, Quantity: decimal.NewFromInt(int64(1 + i%7)), Basis: decimal.NewFromInt(int64(100 + 13*i%97)),
			Acquired: tax.NewDate(2020+i%5, time.Month(1+i%12), 1+i%28)}
		q = q.Add(lots[i].Quantity)
	}
	l.Accounts["tx"] = &Account{Cash: decimal.Zero, Positions: map[string]decimal.Decimal{"A": q}, Lots: map[string][]Lot{"A": lots}}
	b.ReportAllocs()
	for b.Loop() {
		h := l.Holdings()
		if h.Accounts[0].Positions[0].Lots.Len() != 200 {
			b.Fatal("lots lost")
		}
	}
}

// BenchmarkUnmarshalLedger decodes the saved ledger of a household as a
// restart does for each: three accounts, eight positions, 20 lots in the
// taxable account and a plan's orders.
func BenchmarkUnmarshalLedger(b *testing.B) {
	l := New("household-000001")
	accounts := map[string]*Account{
		"roth": {Cash: decimal.RequireFromString("5000"), Positions: map[string]decimal.Decimal{"VXUS": decimal.NewFromInt(537), "VNQ": decimal.NewFromInt(225),
			"TM-LARGE": decimal.RequireFromString("0.1576"), "TM-BAL": decimal.RequireFromString("1.366"), "TM-GROWTH": decimal.RequireFromString("10.4")}},
		"k401": {Cash: decimal.Zero, Positions: map[string]decimal.Decimal{"VTI": decimal.NewFromInt(270), "BND": decimal.NewFromInt(693)}},
	}
	lots := make([]Lot, 20)
	q := decimal.Zero
	for i := range lots {
		lots[i] = Lot{ID: i + 1, Quantity: decimal.NewFromInt(int64(1 + i%7)), Basis: decimal.RequireFromString(fmt.Sprintf("%d.%02d", 100+13*i%97, i)),
			Acquired: tax.NewDate(2020+i%5, time.Month(1+i%12), 1+i%28)}
		q = q.Add(lots[i].Quantity)
	}
	accounts["taxable"] = &Account{Cash: decimal.RequireFromString("25000.17"), Positions: map[string]decimal.Decimal{"VTI": q}, Lots: map[string][]Lot{"VTI": lots}}
	at := time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC)
	l.SetBase(at, "0123456789abcdef", accounts, at)
	data, err := json.Marshal(l)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var got Ledger
		if err := json.Unmarshal(data, &got); err != nil || len(got.Accounts) != 3 {
			b.Fatal(err, len(got.Accounts))
		}
	}
}
