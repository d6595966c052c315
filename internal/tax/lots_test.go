package tax_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/tax"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// lot builds a lot from "quantity basis acquired".
func lot(t testing.TB, spec string) tax.Lot {
	t.Helper()
	f := strings.Fields(spec)
	return tax.Lot{Quantity: dec(f[0]), Basis: dec(f[1]), Acquired: day(t, f[2])}
}

func prepare(t testing.TB, specs ...string) tax.Lots {
	t.Helper()
	lots := make([]tax.Lot, len(specs))
	for i, s := range specs {
		lots[i] = lot(t, s)
	}
	l, err := tax.NewLots(lots)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// exampleLots, at price 100 on 2026-11-20 (unit cost = basis / quantity):
//
//	lot 0: 10 for 1500 (150/unit), 2026-01-10: short-term, loss 50/unit
//	lot 1: 10 for 1200 (120/unit), 2020-05-01: long-term, loss 20/unit
//	lot 2:  5 for  500 (100/unit), 2026-06-01: short-term, no gain
//	lot 3: 10 for  800 ( 80/unit), 2021-01-01: long-term, gain 20/unit
//	lot 4: 10 for  600 ( 60/unit), 2019-01-01: long-term, gain 40/unit
//	lot 5: 10 for  900 ( 90/unit), 2026-03-01: short-term, gain 10/unit; long-term from 2027-03-02
//	lot 6: 10 for  500 ( 50/unit), 2025-11-25: short-term, gain 50/unit; long-term from 2025-11-26 + 1 year = 2026-11-26
//
// Order of sale: losses (0, 1), no gain (2), long-term gains smallest
// first (3, 4), short-term gains smallest first (5, 6). 65 units in all.
func exampleLots(t testing.TB) tax.Lots {
	return prepare(t,
		"10 1500 2026-01-10",
		"10 1200 2020-05-01",
		"5 500 2026-06-01",
		"10 800 2021-01-01",
		"10 600 2019-01-01",
		"10 900 2026-03-01",
		"10 500 2025-11-25",
	)
}

// sales formats sales as "lot:quantity:basis:gain:LT|ST".
func sales(ss []tax.Sale) string {
	var out []string
	for _, s := range ss {
		term := "ST"
		if s.LongTerm {
			term = "LT"
		}
		out = append(out, fmt.Sprintf("%d:%s:%s:%s:%s", s.Lot, s.Quantity, s.Basis, s.Gain, term))
	}
	return strings.Join(out, " ")
}

func gains(g tax.Gains) string {
	return fmt.Sprintf("STG %s STL %s LTG %s LTL %s net %s", g.ShortTermGains, g.ShortTermLosses, g.LongTermGains, g.LongTermLosses, g.Net())
}

func TestSelectExample(t *testing.T) {
	l := exampleLots(t)
	date := day(t, "2026-11-20")
	tests := []struct {
		name     string
		quantity string
		opts     tax.Options
		sales    string
		gains    string
		// sold waiting(until) blocked missing
		left string
	}{
		{
			// 10 + 10 + 5 + 5 of lot 3. Lot 3's half: basis 800 × 5/10 = 400,
			// proceeds 500, gain 100 long-term. Losses: 1000-1500 = -500 ST,
			// 1000-1200 = -200 LT; lot 2: 500-500 = 0.
			// Net = 100 - 500 - 200 = -600.
			name: "losses, no gain, then part of the smallest long-term gain", quantity: "30",
			sales: "0:10:1500:-500:ST 1:10:1200:-200:LT 2:5:500:0:ST 3:5:400:100:LT",
			gains: "STG 0 STL 500 LTG 100 LTL 200 net -600",
			left:  "sold 30 waiting 0 () blocked 0 missing 0",
		},
		{
			// All 45 of lots 0-4 (LT gains 1000-800 = 200 and 1000-600 = 400),
			// then 10 of lot 5 (1000-900 = 100 ST) and 5 of lot 6 (500 - 250 =
			// 250 ST). STG 350, STL 500, LTG 600, LTL 200: net 250.
			name: "short-term gains allowed", quantity: "60",
			sales: "0:10:1500:-500:ST 1:10:1200:-200:LT 2:5:500:0:ST 3:10:800:200:LT 4:10:600:400:LT 5:10:900:100:ST 6:5:250:250:ST",
			gains: "STG 350 STL 500 LTG 600 LTL 200 net 250",
			left:  "sold 60 waiting 0 () blocked 0 missing 0",
		},
		{
			// Lots 5 and 6 are at a short-term gain: 15 left unsold, blocked.
			// Gains: -500 -200 +200 +400 = -100.
			name: "short-term gains blocked", quantity: "60", opts: tax.Options{ShortTermGains: tax.ShortTermBlock},
			sales: "0:10:1500:-500:ST 1:10:1200:-200:LT 2:5:500:0:ST 3:10:800:200:LT 4:10:600:400:LT",
			gains: "STG 0 STL 500 LTG 600 LTL 200 net -100",
			left:  "sold 45 waiting 0 () blocked 15 missing 0",
		},
		{
			// Lot 6 turns long-term on 2026-11-26, 6 days after the sale date,
			// within 7: held back. Lot 5 (2027-03-02) is not: sold. 5 wait.
			// Gains: -500 -200 +200 +400 +100 = 0.
			name: "waiting 7 days for lot 6", quantity: "60", opts: tax.Options{WaitLongTermDays: 7},
			sales: "0:10:1500:-500:ST 1:10:1200:-200:LT 2:5:500:0:ST 3:10:800:200:LT 4:10:600:400:LT 5:10:900:100:ST",
			gains: "STG 100 STL 500 LTG 600 LTL 200 net 0",
			left:  "sold 55 waiting 5 (2026-11-26) blocked 0 missing 0",
		},
		{
			// 2026-11-20 + 6 days = 2026-11-26: lot 6 is long-term on that day,
			// so a 6-day wait still holds it back; 5 days do not.
			name: "waiting exactly 6 days", quantity: "60", opts: tax.Options{WaitLongTermDays: 6},
			sales: "0:10:1500:-500:ST 1:10:1200:-200:LT 2:5:500:0:ST 3:10:800:200:LT 4:10:600:400:LT 5:10:900:100:ST",
			gains: "STG 100 STL 500 LTG 600 LTL 200 net 0",
			left:  "sold 55 waiting 5 (2026-11-26) blocked 0 missing 0",
		},
		{
			name: "waiting 5 days is not enough for lot 6", quantity: "60", opts: tax.Options{WaitLongTermDays: 5},
			sales: "0:10:1500:-500:ST 1:10:1200:-200:LT 2:5:500:0:ST 3:10:800:200:LT 4:10:600:400:LT 5:10:900:100:ST 6:5:250:250:ST",
			gains: "STG 350 STL 500 LTG 600 LTL 200 net 250",
			left:  "sold 60 waiting 0 () blocked 0 missing 0",
		},
		{
			// 80 requested, 65 held: 45 sold, lot 6 waits (10), lot 5 is
			// blocked (10), 15 missing. 45 + 10 + 10 + 15 = 80.
			name: "waiting, blocked and missing", quantity: "80",
			opts:  tax.Options{ShortTermGains: tax.ShortTermBlock, WaitLongTermDays: 30},
			sales: "0:10:1500:-500:ST 1:10:1200:-200:LT 2:5:500:0:ST 3:10:800:200:LT 4:10:600:400:LT",
			gains: "STG 0 STL 500 LTG 600 LTL 200 net -100",
			left:  "sold 45 waiting 10 (2026-11-26) blocked 10 missing 15",
		},
		{
			name: "nothing requested", quantity: "0",
			gains: "STG 0 STL 0 LTG 0 LTL 0 net 0",
			left:  "sold 0 waiting 0 () blocked 0 missing 0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := l.Select(dec(tt.quantity), dec("100"), date, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := sales(s.Sales); got != tt.sales {
				t.Errorf("sales\n got %s\nwant %s", got, tt.sales)
			}
			if got := gains(s.Gains); got != tt.gains {
				t.Errorf("gains = %s, want %s", got, tt.gains)
			}
			left := fmt.Sprintf("sold %s waiting %s (%s) blocked %s missing %s", s.Sold, s.Waiting, s.WaitUntil, s.Blocked, s.Missing)
			if left != tt.left {
				t.Errorf("got %s, want %s", left, tt.left)
			}
			if got := s.Unsold(); !got.Equal(dec(tt.quantity).Sub(s.Sold)) || (got.IsZero() != (s.Reason() == "")) {
				t.Errorf("Unsold %s, Reason %q", got, s.Reason())
			}
		})
	}
}

func TestSellable(t *testing.T) {
	l := exampleLots(t)
	date := day(t, "2026-11-20")
	for _, tt := range []struct {
		opts tax.Options
		want string
	}{
		{tax.Options{}, "65"},
		{tax.Options{ShortTermGains: tax.ShortTermBlock}, "45"}, // lots 5 and 6 held back
		{tax.Options{WaitLongTermDays: 6}, "55"},                // lot 6 waited for
	} {
		got, err := l.Sellable(dec("100"), date, tt.opts)
		if err != nil || got.String() != tt.want {
			t.Errorf("Sellable(%+v) = %s, %v; want %s", tt.opts, got, err, tt.want)
		}
	}
	if _, err := l.Sellable(dec("0"), date, tax.Options{}); err == nil {
		t.Error("Sellable accepted a zero price")
	}
}

func TestSelectReason(t *testing.T) {
	s, err := exampleLots(t).Select(dec("80"), dec("100"), day(t, "2026-11-20"),
		tax.Options{ShortTermGains: tax.ShortTermBlock, WaitLongTermDays: 30})
	if err != nil {
		t.Fatal(err)
	}
	want := "35 of 80 not sold: 10 waits until 2026-11-26, when the lots at a short-term gain that would sell it turn long-term; " +
		"10 would realize short-term gains, which the policy blocks; 15 is more than the lots hold"
	if got := s.Reason(); got != want {
		t.Errorf("Reason\n got %s\nwant %s", got, want)
	}
}

// TestSelectHoldingPeriod sells one lot at a gain on each side of its
// long-term boundary: acquired 2025-11-20, it is long-term from 2026-11-21.
func TestSelectHoldingPeriod(t *testing.T) {
	l := prepare(t, "4 200 2025-11-20")
	for _, tt := range []struct {
		date   string
		gains  string
		sold   string
		option tax.ShortTermGains
	}{
		// 4 × 60 - 200 = 40.
		{"2026-11-20", "STG 40 STL 0 LTG 0 LTL 0 net 40", "4", tax.ShortTermAllow},
		{"2026-11-21", "STG 0 STL 0 LTG 40 LTL 0 net 40", "4", tax.ShortTermAllow},
		{"2026-11-20", "STG 0 STL 0 LTG 0 LTL 0 net 0", "0", tax.ShortTermBlock},
		{"2026-11-21", "STG 0 STL 0 LTG 40 LTL 0 net 40", "4", tax.ShortTermBlock},
	} {
		s, err := l.Select(dec("4"), dec("60"), day(t, tt.date), tax.Options{ShortTermGains: tt.option})
		if err != nil {
			t.Fatal(err)
		}
		if gains(s.Gains) != tt.gains || s.Sold.String() != tt.sold {
			t.Errorf("%s %s: sold %s, %s; want %s, %s", tt.date, tt.option, s.Sold, gains(s.Gains), tt.sold, tt.gains)
		}
	}
}

// TestSelectZeroGain: a lot sold at exactly its unit cost realizes nothing
// and is not a short-term gain, so blocking short-term gains keeps it
// sellable.
func TestSelectZeroGain(t *testing.T) {
	s, err := prepare(t, "3 150 2026-11-01").Select(dec("3"), dec("50"), day(t, "2026-11-20"), tax.Options{ShortTermGains: tax.ShortTermBlock})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Sold.Equal(dec("3")) || !s.Gains.IsZero() || len(s.Sales) != 1 || !s.Sales[0].Gain.IsZero() {
		t.Errorf("sold %s gains %s sales %s", s.Sold, gains(s.Gains), sales(s.Sales))
	}
}

// TestSelectTies: lots of equal unit cost sell oldest first, whatever
// their order in the file.
func TestSelectTies(t *testing.T) {
	l := prepare(t, "2 20 2024-05-01", "1 10 2022-05-01", "4 40 2023-05-01")
	s, err := l.Select(dec("5"), dec("12"), day(t, "2026-11-20"), tax.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// All at 10/unit: lot 1 (2022) then lot 2 (2023) make 1 + 4 = 5; lot 0
	// (2024) is not needed. Gains: 1×12-10 = 2; 4×12-40 = 8.
	if got := sales(s.Sales); got != "1:1:10:2:LT 2:4:40:8:LT" {
		t.Errorf("sales = %s", got)
	}
}

// TestSplitBasis checks the rounding of a split lot's basis and that the
// parts add up to the original basis exactly.
func TestSplitBasis(t *testing.T) {
	tests := []struct {
		lot, sell, soldBasis string
	}{
		{"3 100 2020-01-01", "1", "33.33"},         // 33.333...
		{"3 100 2020-01-01", "2", "66.67"},         // 66.666...
		{"2 0.25 2020-01-01", "1", "0.12"},         // 0.125: half to even, down
		{"2 0.35 2020-01-01", "1", "0.18"},         // 0.175: half to even, up
		{"7 1000.005 2020-01-01", "7", "1000.005"}, // a whole lot keeps its basis exactly
		{"100 0.0058 2020-01-01", "97", "0.0058"},  // 0.005626 rounds to 0.01 > basis: capped at the basis
		{"0.3 12.34 2020-01-01", "0.1", "4.11"},    // 4.11333...
		{"10 0 2020-01-01", "4", "0"},              // a gift at zero basis
	}
	for _, tt := range tests {
		l := prepare(t, tt.lot)
		s, err := l.Select(dec(tt.sell), dec("1"), day(t, "2026-11-20"), tax.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Sales) != 1 || s.Sales[0].Basis.String() != tt.soldBasis {
			t.Errorf("%s, sell %s: sales %s, want basis %s", tt.lot, tt.sell, sales(s.Sales), tt.soldBasis)
			continue
		}
		rest := l.Remaining(&s)
		orig := l.Lot(0)
		if s.Sales[0].Quantity.Equal(orig.Quantity) {
			if len(rest) != 0 {
				t.Errorf("%s: a lot sold whole remains: %+v", tt.lot, rest)
			}
			continue
		}
		if len(rest) != 1 || !rest[0].Basis.Add(s.Sales[0].Basis).Equal(orig.Basis) ||
			!rest[0].Quantity.Add(s.Sales[0].Quantity).Equal(orig.Quantity) || rest[0].Acquired != orig.Acquired || rest[0].Basis.Sign() < 0 {
			t.Errorf("%s, sell %s: remaining %+v does not complete the sale to the lot", tt.lot, tt.sell, rest)
		}
	}
}

func TestRemainingExample(t *testing.T) {
	l := exampleLots(t)
	s, err := l.Select(dec("30"), dec("100"), day(t, "2026-11-20"), tax.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Lots 0, 1 and 2 sold whole, half of lot 3: lots 3 (5 for 400), 4, 5
	// and 6 remain, in the original order.
	var got []string
	for _, r := range l.Remaining(&s) {
		got = append(got, fmt.Sprintf("%s/%s/%s", r.Quantity, r.Basis, r.Acquired))
	}
	want := "5/400/2021-01-01 10/600/2019-01-01 10/900/2026-03-01 10/500/2025-11-25"
	if strings.Join(got, " ") != want {
		t.Errorf("Remaining = %v, want %s", got, want)
	}
}

func TestSelectErrors(t *testing.T) {
	l := exampleLots(t)
	date := day(t, "2026-11-20")
	if _, err := l.Select(dec("-1"), dec("100"), date, tax.Options{}); err == nil || !strings.Contains(err.Error(), "must not be negative") {
		t.Errorf("negative quantity: %v", err)
	}
	for _, p := range []string{"0", "-3"} {
		if _, err := l.Select(dec("1"), dec(p), date, tax.Options{}); err == nil || !strings.Contains(err.Error(), "price must be positive") {
			t.Errorf("price %s: %v", p, err)
		}
	}
	bad := []struct {
		lot  tax.Lot
		want string
	}{
		{tax.Lot{Quantity: dec("0"), Basis: dec("1"), Acquired: date}, "lot 1: quantity must be positive, got 0"},
		{tax.Lot{Quantity: dec("-2"), Basis: dec("1"), Acquired: date}, "lot 1: quantity must be positive, got -2"},
		{tax.Lot{Quantity: dec("2"), Basis: dec("-1"), Acquired: date}, "lot 1: cost basis must not be negative, got -1"},
		{tax.Lot{Quantity: dec("2"), Basis: dec("1")}, "lot 1: acquisition date is missing"},
	}
	for _, b := range bad {
		_, err := tax.SelectLots([]tax.Lot{lot(t, "1 1 2020-01-01"), b.lot}, dec("1"), dec("1"), date, tax.Options{})
		if err == nil || err.Error() != b.want {
			t.Errorf("SelectLots(%+v) = %v, want %s", b.lot, err, b.want)
		}
	}
}

// TestNewLotsCopies: a Lots does not share its input's backing array.
func TestNewLotsCopies(t *testing.T) {
	in := []tax.Lot{lot(t, "1 10 2020-01-01"), lot(t, "2 10 2021-01-01")}
	l, err := tax.NewLots(in)
	if err != nil {
		t.Fatal(err)
	}
	in[0].Quantity = dec("99")
	if !l.Lot(0).Quantity.Equal(dec("1")) || !l.Quantity().Equal(dec("3")) || l.Len() != 2 {
		t.Errorf("Lots changed with its input: %+v, quantity %s", l.Lot(0), l.Quantity())
	}
	var zero tax.Lots
	s, err := zero.Select(dec("2"), dec("1"), day(t, "2026-01-01"), tax.Options{})
	if err != nil || !s.Missing.Equal(dec("2")) || len(s.Sales) != 0 || !zero.Quantity().IsZero() {
		t.Errorf("zero Lots: %+v, %v", s, err)
	}
}

func TestGains(t *testing.T) {
	a := tax.Gains{ShortTermGains: dec("10"), ShortTermLosses: dec("2.5"), LongTermGains: dec("100"), LongTermLosses: dec("0.01")}
	b := tax.Gains{ShortTermLosses: dec("20"), LongTermGains: dec("1")}
	sum := a.Add(b)
	// ST: 10 - 22.5 = -12.5; LT: 101 - 0.01 = 100.99; net 88.49.
	if gains(sum) != "STG 10 STL 22.5 LTG 101 LTL 0.01 net 88.49" ||
		!sum.NetShortTerm().Equal(dec("-12.5")) || !sum.NetLongTerm().Equal(dec("100.99")) {
		t.Errorf("sum = %s (ST %s LT %s)", gains(sum), sum.NetShortTerm(), sum.NetLongTerm())
	}
	if (tax.Gains{}).Add(tax.Gains{}).IsZero() != true || sum.IsZero() {
		t.Error("IsZero is wrong")
	}
	data, err := json.Marshal(b)
	if err != nil || string(data) != `{"short_term_gains":"0","short_term_losses":"20","long_term_gains":"1","long_term_losses":"0"}` {
		t.Errorf("JSON = %s, %v", data, err)
	}
	// GainsOf files each sale by sign and term.
	g := tax.GainsOf([]tax.Sale{
		{Gain: dec("5"), LongTerm: true}, {Gain: dec("-3")}, {Gain: dec("0")}, {Gain: dec("-1"), LongTerm: true}, {Gain: dec("7")},
	})
	if gains(g) != "STG 7 STL 3 LTG 5 LTL 1 net 8" {
		t.Errorf("GainsOf = %s", gains(g))
	}
}
