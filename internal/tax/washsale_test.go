package tax_test

import (
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/tax"
)

func TestCheckBuy(t *testing.T) {
	w := tax.WashSale{
		Windows:          map[string]int{"bonds": 7},
		Exempt:           []string{"crypto"},
		SubstituteGroups: [][]string{{"VOO", "IVV", "SPLG"}, {"BND", "AGG"}},
	}
	h := tax.History{LossSales: []tax.Trade{
		{Instrument: "VOO", Account: "taxable", Date: day(t, "2026-11-02")},
		{Instrument: "BND", Account: "ira", Date: day(t, "2026-11-10")},
		{Instrument: "TM-LARGE", Account: "taxable", Date: day(t, "2026-11-10")},
		{Instrument: "SPLG", Account: "joint", Date: day(t, "2026-09-01")},
	}}
	voo, bnd, splg := h.LossSales[0], h.LossSales[1], h.LossSales[3]
	tests := []struct {
		name, instrument, class, date string
		by                            *tax.Trade
		until                         string
	}{
		// 2026-11-02 + 30 days = 2026-12-02, the last day blocked.
		{"same instrument, day 30 after", "VOO", "equity/us", "2026-12-02", &voo, "2026-12-02"},
		{"same instrument, day 31 after", "VOO", "equity/us", "2026-12-03", nil, ""},
		{"same day", "VOO", "equity/us", "2026-11-02", &voo, "2026-12-02"},
		// 2026-11-02 - 30 days = 2026-10-03: a buy then also washes the sale.
		{"day 30 before", "VOO", "equity/us", "2026-10-03", &voo, "2026-12-02"},
		{"day 31 before", "VOO", "equity/us", "2026-10-02", nil, ""},
		{"group member's sale, last day", "VOO", "equity/us", "2026-10-01", &splg, "2026-10-01"},
		// IVV is in VOO's group. SPLG's sale (2026-09-01, through
		// 2026-10-01) is over; VOO's blocks.
		{"substitute group", "IVV", "equity/us", "2026-11-20", &voo, "2026-12-02"},
		{"another group", "VTI", "equity/us", "2026-11-20", nil, ""},
		// A loss sale in the IRA blocks a buy of AGG anywhere; the bonds
		// window is 7 days: 2026-11-10 + 7 = 2026-11-17.
		{"class window, last day", "AGG", "bonds", "2026-11-17", &bnd, "2026-11-17"},
		{"class window, over", "AGG", "bonds/core", "2026-11-18", nil, ""},
		{"exempt class", "TM-LARGE", "crypto/large_cap", "2026-11-10", nil, ""},
		{"no history", "VXUS", "equity/intl", "2026-11-10", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := w.CheckBuy(h, tax.Buy{Instrument: tt.instrument, Class: tt.class, Date: day(t, tt.date)})
			if tt.by == nil {
				if b.Blocked || b.Reason() != "" {
					t.Errorf("blocked: %+v", b)
				}
				return
			}
			if !b.Blocked || b.By != *tt.by || b.Until.String() != tt.until {
				t.Errorf("got %+v, want blocked by %+v until %s", b, *tt.by, tt.until)
			}
		})
	}
}

// TestCheckBuyLatest: of several loss sales that block, the one that
// blocks longest is reported.
func TestCheckBuyLatest(t *testing.T) {
	h := tax.History{LossSales: []tax.Trade{
		{Instrument: "VOO", Account: "a", Date: day(t, "2026-11-01")},
		{Instrument: "VOO", Account: "b", Date: day(t, "2026-11-15")},
		{Instrument: "VOO", Account: "c", Date: day(t, "2026-11-05")},
	}}
	b := tax.WashSale{}.CheckBuy(h, tax.Buy{Instrument: "VOO", Class: "equity", Date: day(t, "2026-11-20")})
	if !b.Blocked || b.By.Account != "b" || b.Until.String() != "2026-12-15" {
		t.Errorf("got %+v, want blocked by b until 2026-12-15", b)
	}
	want := "wash-sale guard: VOO traded in account b on 2026-11-15; blocked through 2026-12-15"
	if b.Reason() != want {
		t.Errorf("Reason = %q, want %q", b.Reason(), want)
	}
}

func TestCheckLossSale(t *testing.T) {
	w := tax.WashSale{SubstituteGroups: [][]string{{"VOO", "IVV"}}}
	l := prepare(t, "1 100 2026-11-01", "1 100 2025-01-01")
	h := tax.History{Buys: l.Buys("roth", "IVV", day(t, "2026-10-21"))}
	if len(h.Buys) != 1 || h.Buys[0] != (tax.Trade{Instrument: "IVV", Account: "roth", Date: day(t, "2026-11-01")}) {
		t.Fatalf("Buys = %+v, want the 2026-11-01 lot only", h.Buys)
	}
	// An IVV buy in the Roth on 2026-11-01 washes a VOO loss sale through
	// 2026-12-01.
	if b := w.CheckLossSale(h, "VOO", "equity", day(t, "2026-12-01")); !b.Blocked || b.Until.String() != "2026-12-01" {
		t.Errorf("2026-12-01: %+v", b)
	}
	if b := w.CheckLossSale(h, "VOO", "equity", day(t, "2026-12-02")); b.Blocked {
		t.Errorf("2026-12-02: %+v", b)
	}
}

func TestValidate(t *testing.T) {
	good := tax.Options{
		ShortTermGains:   tax.ShortTermBlock,
		WaitLongTermDays: 30,
		WashSale: tax.WashSale{
			Window: 31, Windows: map[string]int{"bonds": 7}, Exempt: []string{"crypto"},
			SubstituteGroups: [][]string{{"VOO", "IVV"}},
		},
		Harvest: tax.Harvest{Enabled: true, MinLoss: dec("500"), Substitutes: map[string]string{"VOO": "VTI"}},
	}
	if err := good.Validate(); err != nil {
		t.Errorf("good options: %v", err)
	}
	if err := (tax.Options{}).Validate(); err != nil {
		t.Errorf("zero options: %v", err)
	}
	bad := tax.Options{
		ShortTermGains:   "defer",
		WaitLongTermDays: -1,
		WashSale: tax.WashSale{
			Window: -5, Windows: map[string]int{"bonds": 0, "crypto": 3}, Exempt: []string{"crypto"},
			SubstituteGroups: [][]string{{"VOO", "IVV"}, {"SPY"}, {"IVV", "SPLG"}},
		},
		Harvest: tax.Harvest{
			Enabled: true, MinLoss: dec("-1"), MinLossPct: dec("1.5"),
			Substitutes: map[string]string{"VOO": "IVV", "BND": "BND"},
		},
	}
	want := []string{
		`short_term_gains: want allow or block, got "defer"`,
		"wait_long_term_days: must not be negative, got -1",
		"wash_sale.window: must not be negative, got -5",
		"wash_sale.windows.bonds: must be positive, got 0",
		"wash_sale.exempt: crypto also has a window under wash_sale.windows",
		"wash_sale.substitute_groups[1]: a group needs at least two instruments, got 1",
		"wash_sale.substitute_groups[2]: IVV is already in group 0",
		"harvest.min_loss: must not be negative, got -1",
		"harvest.min_loss_pct: must be between 0% and 100%, got 150%",
		`harvest.substitutes.BND: the substitute must be another instrument, got "BND"`,
		"harvest.substitutes.VOO: IVV is in the same substitute group as VOO",
	}
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad options validated")
	}
	got := strings.Split(err.Error(), "\n")
	if len(got) != len(want) {
		t.Fatalf("%d problems, want %d:\n%s", len(got), len(want), err)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d = %q, want %q", i, got[i], want[i])
		}
	}
	noSubs := tax.Options{Harvest: tax.Harvest{Enabled: true, MinLossPct: decimal.New(5, -2)}}
	if err := noSubs.Validate(); err == nil || err.Error() != "harvest.substitutes: harvesting is enabled but no instrument has a substitute" {
		t.Errorf("harvest without substitutes: %v", err)
	}
	noThreshold := tax.Options{Harvest: tax.Harvest{Enabled: true, Substitutes: map[string]string{"VOO": "VTI"}}}
	if err := noThreshold.Validate(); err == nil || err.Error() != "harvest: enabled without a threshold: set min_loss or min_loss_pct" {
		t.Errorf("harvest without a threshold: %v", err)
	}
}
