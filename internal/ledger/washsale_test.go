package ledger

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// washLedger holds, in taxable account tx, 16 VTI bought 2025-01-10 at
// 150 (lot 1, basis 2400), plus the lots given in tx and roth (a Roth
// IRA), with sell order s (16 VTI from tx) and buy orders b-tx and b-roth
// (20 VTI each) published. Fills are dated in UTC.
func washLedger(txLots, rothLots []Lot) *Ledger {
	l := New("p")
	l.Wash = &WashRules{Class: map[string]string{"VTI": "equity"}, TaxAdvantaged: map[string]bool{"roth": true}}
	tx := append([]Lot{lot(1, "16", "2400", "2025-01-10")}, txLots...)
	l.SetBase(t0, "h", map[string]*Account{
		"tx":   {Cash: dec("0"), Positions: map[string]decimal.Decimal{"VTI": sumLots(tx)}, Lots: map[string][]Lot{"VTI": tx}},
		"roth": {Cash: dec("5000"), Positions: map[string]decimal.Decimal{"VTI": sumLots(rothLots)}, Lots: map[string][]Lot{"VTI": rothLots}},
	}, t0)
	order := func(id, account, side, qty string) events.Order {
		return events.Order{OrderID: id, PlanID: "s", Account: account, Instrument: "VTI", Side: side, Quantity: dec(qty), Price: dec("100"), ExpiresAt: t0.Add(60 * 24 * time.Hour)}
	}
	l.AddOrders([]events.Order{order("s", "tx", "sell", "16"), order("b-tx", "tx", "buy", "20"), order("b-roth", "roth", "buy", "20")}, t0)
	l.MarkPublished([]string{"s", "b-tx", "b-roth"}, t0)
	return l
}

// washLots renders lots with their wash-sale marks:
// "id:quantity/basis@acquired[~holding_from][R]".
func washLots(lots []Lot) string {
	parts := make([]string, len(lots))
	for i, l := range lots {
		parts[i] = fmt.Sprintf("%d:%s/%s@%s", l.ID, l.Quantity, l.Basis, l.Acquired)
		if !l.HoldingFrom.IsZero() {
			parts[i] += "~" + l.HoldingFrom.String()
		}
		if l.Replacement {
			parts[i] += "R"
		}
	}
	return strings.Join(parts, " ")
}

// washJournal renders the bookings as "lot quantity disallowed -> account
// lot [permanent]".
func washJournal(b []WashBooking) string {
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%d %s %s -> %s %d", x.Lot, x.Quantity, x.Disallowed, x.Replacement.Account, x.Replacement.Lot)
		if x.Permanent {
			parts[i] += " permanent"
		}
	}
	return strings.Join(parts, "; ")
}

func pendingLine(p []PendingLoss) string {
	parts := make([]string, len(p))
	for i, x := range p {
		parts[i] = fmt.Sprintf("%s %d %s/%s", x.Account, x.Lot, x.Quantity, x.Loss)
	}
	return strings.Join(parts, "; ")
}

// TestWashSaleBooked: issue 13's cases booked on fills, computed by hand.
// Taxable account tx sells its 16 VTI bought 2025-01-10 at 150 for 100
// on 2026-11-20 (a loss of 16 x 50 = 800; the shares were held 679 days,
// 2025-01-10 to 2026-11-20).
func TestWashSaleBooked(t *testing.T) {
	sell := fill("f-s", "s", events.FillFilled, "16", "100", "0", t0.Add(time.Minute))
	day := func(n int) time.Time { return t0.Add(time.Duration(n) * 24 * time.Hour) }
	tests := []struct {
		name     string
		tx, roth []Lot
		buys     []*events.Fill // after the sale
		// the lots of tx and roth after, the journal, the losses pending
		txLots, rothLots, journal, pending string
	}{
		// tx bought 10 VTI ten days before at 100: 10 x 50 = 500 is
		// disallowed and added to their basis (1000 + 500); their holding
		// period counts from 2026-11-10 less 679 days = 2024-12-31. 300
		// stays allowed; 6 shares' loss (300) waits for a later purchase.
		{name: "taxable replacement before", tx: []Lot{lot(2, "10", "1000", "2026-11-10")},
			txLots: "2:10/1500@2026-11-10~2024-12-31R", journal: "1 10 500 -> tx 2", pending: "tx 1 6/300"},
		// The Roth bought them: the 500 is lost for good (Rev. Rul.
		// 2008-5); the Roth lot is marked, its basis unchanged.
		{name: "roth replacement before", roth: []Lot{lot(1, "10", "1000", "2026-11-10")},
			rothLots: "1:10/1000@2026-11-10R", journal: "1 10 500 -> roth 1 permanent", pending: "tx 1 6/300"},
		// Part of a lot replaces: 10 bought 2026-11-01 and 12 the day
		// after, at 100. Matched in order of purchase: lot 2 replaces 10
		// (500, from 2024-12-22), lot 3 splits: 6 of its 12 (basis 600 of
		// 1200) replace 6 (300, from 2024-12-23) as lot 4.
		{name: "split", tx: []Lot{lot(2, "10", "1000", "2026-11-01"), lot(3, "12", "1200", "2026-11-02")},
			txLots:  "2:10/1500@2026-11-01~2024-12-22R 3:6/600@2026-11-02 4:6/900@2026-11-02~2024-12-23R",
			journal: "1 10 500 -> tx 2; 1 6 300 -> tx 4", pending: ""},
		// Purchases after the sale: 4 in tx 5 days later at 105 (basis
		// 420 + 4 x 50 = 620, from 2026-11-25 less 679 days =
		// 2025-01-15), then 20 in the Roth 11 days later: 12 of them
		// replace the rest (600, lost for good); 8 replace nothing.
		{name: "buys after", buys: []*events.Fill{fill("f-b1", "b-tx", events.FillPartial, "4", "105", "0", day(5)),
			fill("f-b2", "b-roth", events.FillFilled, "20", "100", "0", day(11))},
			txLots:   "1:4/620@2026-11-25~2025-01-15R",
			rothLots: "1:8/800@2026-12-01 2:12/1200@2026-12-01R",
			journal:  "1 4 200 -> tx 1; 1 12 600 -> roth 2 permanent", pending: ""},
		// 31 days after the sale is outside the window: nothing.
		{name: "after the window", buys: []*events.Fill{fill("f-b1", "b-tx", events.FillPartial, "4", "105", "0", day(31))},
			txLots: "1:4/420@2026-12-21", journal: "", pending: "tx 1 16/800"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := washLedger(tt.tx, tt.roth)
			apply := func(f *events.Fill) {
				t.Helper()
				acct := "tx"
				if strings.HasSuffix(f.OrderID, "roth") {
					acct = "roth"
				}
				if _, err := l.ApplyFill(acct, f, f.At); err != nil {
					t.Fatal(err)
				}
				checkLedgerLots(t, l)
			}
			apply(sell)
			for _, b := range tt.buys {
				apply(b)
			}
			if got := washLots(l.Accounts["tx"].Lots["VTI"]); got != tt.txLots {
				t.Errorf("tx lots\n got %s\nwant %s", got, tt.txLots)
			}
			if got := washLots(l.Accounts["roth"].Lots["VTI"]); got != tt.rothLots {
				t.Errorf("roth lots\n got %s\nwant %s", got, tt.rothLots)
			}
			if got := washJournal(l.WashSales); got != tt.journal {
				t.Errorf("journal\n got %s\nwant %s", got, tt.journal)
			}
			if got := pendingLine(l.History.Losses); got != tt.pending {
				t.Errorf("pending %q, want %q", got, tt.pending)
			}
		})
	}
}

// TestWashSaleBookedLaterPlan: a later sale of the replacement uses the
// adjusted lot. The 10 VTI bought 2026-11-10 for 1000 replaced 10 shares
// sold at a loss of 500: their basis is 1500 and they count from
// 2024-12-31. Sold at 120 on 2026-12-01 they realize 1200 - 1500 = -300,
// long-term (held from 2024-12-31: long-term from 2026-01-01); unadjusted
// it would be a short-term gain of 200. A replacement lot replaces no
// other loss: a second loss sale finds no purchase in it.
func TestWashSaleBookedLaterPlan(t *testing.T) {
	l := washLedger([]Lot{lot(2, "10", "1000", "2026-11-10")}, nil)
	if _, err := l.ApplyFill("tx", fill("f-s", "s", events.FillFilled, "16", "100", "0", t0.Add(time.Minute)), t0); err != nil {
		t.Fatal(err)
	}
	h := l.Holdings()
	var lots tax.Lots
	for _, a := range h.Accounts {
		for _, p := range a.Positions {
			if a.Name == "tx" && p.Instrument == "VTI" {
				lots = p.Lots
			}
		}
	}
	sel, err := lots.Select(dec("10"), dec("120"), tax.DateOf(t0.Add(11*24*time.Hour)), tax.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(sel.Sales) != 1 || !sel.Sales[0].Gain.Equal(dec("-300")) || !sel.Sales[0].LongTerm {
		t.Fatalf("sale of the replacement: %+v, want a long-term loss of 300", sel.Sales)
	}
	if p, _ := l.purchases(tax.DateOf(t0).AddDays(-30)); len(p) != 0 {
		t.Errorf("the replacement lot is still a purchase: %+v", p)
	}
}

// TestWashSaleBookingSurvivesJSON: the booked lots, the journal and the
// pending losses are saved with the ledger.
func TestWashSaleBookingSurvivesJSON(t *testing.T) {
	l := washLedger([]Lot{lot(2, "10", "1000", "2026-11-10")}, nil)
	if _, err := l.ApplyFill("tx", fill("f-s", "s", events.FillFilled, "16", "100", "0", t0.Add(time.Minute)), t0); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	var back Ledger
	if err := back.UnmarshalJSON(data); err != nil {
		t.Fatal(err)
	}
	if got, want := washLots(back.Accounts["tx"].Lots["VTI"]), washLots(l.Accounts["tx"].Lots["VTI"]); got != want {
		t.Errorf("lots after JSON %s, want %s", got, want)
	}
	if got, want := washJournal(back.WashSales), washJournal(l.WashSales); got != want || got == "" {
		t.Errorf("journal after JSON %q, want %q", got, want)
	}
	if got, want := pendingLine(back.History.Losses), pendingLine(l.History.Losses); got != want || got == "" {
		t.Errorf("pending after JSON %q, want %q", got, want)
	}
}

// TestWashSaleHistoryRecordedByLots: a buy of the history that the lots
// of its day record (here the Roth's lots of 2026-11-10 hold 12, the
// history's buy of that day 2) is those lots, not a purchase of unknown
// quantity: the 12 Roth shares replace 12 of the 16 sold (600 lost for
// good), and 4 (200) wait for a later purchase. Read as unknown, the
// buy replaced all 16 (800).
func TestWashSaleHistoryRecordedByLots(t *testing.T) {
	l := washLedger(nil, []Lot{lot(1, "10", "1000", "2026-11-10"), lot(2, "2", "200", "2026-11-10")})
	l.History.Buys = []Trade{{Instrument: "VTI", Account: "roth", Date: tax.DateOf(t0).AddDays(-10), Quantity: dec("2")}}
	if _, err := l.ApplyFill("tx", fill("f-s", "s", events.FillFilled, "16", "100", "0", t0.Add(time.Minute)), t0); err != nil {
		t.Fatal(err)
	}
	if got, want := washJournal(l.WashSales), "1 10 500 -> roth 1 permanent; 1 2 100 -> roth 2 permanent"; got != want {
		t.Errorf("journal\n got %s\nwant %s", got, want)
	}
	if got, want := pendingLine(l.History.Losses), "tx 1 4/200"; got != want {
		t.Errorf("pending %q, want %q", got, want)
	}
}

// TestWashSaleSnapshotGrowth: a position that grew in a positions
// snapshot (a reinvested dividend) is a purchase: 3 VTI in the taxable
// account five days after the loss sale replace 3 of its 16 shares
// (3 x 50 = 150); their lots are unknown, so the history's buy counts
// them as replaced.
func TestWashSaleSnapshotGrowth(t *testing.T) {
	l := washLedger(nil, nil)
	if _, err := l.ApplyFill("tx", fill("f-s", "s", events.FillFilled, "16", "100", "0", t0.Add(time.Minute)), t0); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(5 * 24 * time.Hour)
	accs, err := FromPositions(&events.Positions{AsOf: at, Accounts: map[string]events.AccountPositions{
		"tx":   {Cash: dec("1600"), Positions: map[string]decimal.Decimal{"VTI": dec("3")}},
		"roth": {Cash: dec("5000"), Positions: map[string]decimal.Decimal{}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	l.SetBase(at, "", accs, at)
	if got, want := washJournal(l.WashSales), "1 3 150 -> tx 0"; got != want {
		t.Errorf("journal %q, want %q", got, want)
	}
	if got, want := pendingLine(l.History.Losses), "tx 1 13/650"; got != want {
		t.Errorf("pending %q, want %q", got, want)
	}
	if h := l.TaxHistory(at); len(h.Buys) != 0 {
		t.Errorf("the replaced buy still counts: %+v", h.Buys)
	}
}
