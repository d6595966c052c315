package tax_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/rebalancerd/rebalancerd/internal/tax"
)

func candidates(cs []tax.Candidate) string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%d:%s:%s->%s", c.Lot, c.Quantity, c.Gain, c.Substitute))
	}
	return strings.Join(out, " ")
}

// harvestLots at price 100 on 2026-11-20:
//
//	lot 0: 10 for 1050: loss 50, 50/1050 = 4.76% of basis
//	lot 1: 10 for  800: gain 200
//	lot 2: 10 for 1500: loss 500, 33.3% of basis
//	lot 3:  4 for  500: loss 100, 20% of basis
//
// Largest loss per unit first: lot 2 (50/unit), lot 3 (25), lot 0 (5).
func harvestLots(t testing.TB) tax.Lots {
	return prepare(t, "10 1050 2024-01-10", "10 800 2023-01-01", "10 1500 2026-02-01", "4 500 2025-01-01")
}

func TestHarvestCandidates(t *testing.T) {
	l := harvestLots(t)
	date := day(t, "2026-11-20")
	subs := map[string]string{"VOO": "VTI"}
	tests := []struct {
		name    string
		harvest tax.Harvest
		want    string
	}{
		{"min loss 99", tax.Harvest{Enabled: true, MinLoss: dec("99"), Substitutes: subs}, "2:10:-500->VTI 3:4:-100->VTI"},
		// Exceed, not reach: a loss of exactly 100 is not harvested.
		{"min loss 100", tax.Harvest{Enabled: true, MinLoss: dec("100"), Substitutes: subs}, "2:10:-500->VTI"},
		// 4% of 1050 = 42 < 50: lot 0 qualifies too.
		{"min loss 4%", tax.Harvest{Enabled: true, MinLossPct: dec("0.04"), Substitutes: subs}, "2:10:-500->VTI 3:4:-100->VTI 0:10:-50->VTI"},
		// 20% of 500 = 100, not exceeded by lot 3's 100.
		{"min loss 20%", tax.Harvest{Enabled: true, MinLossPct: dec("0.2"), Substitutes: subs}, "2:10:-500->VTI"},
		// Both thresholds must be exceeded: 40 and 4% leave lot 0 (50 > 40,
		// 4.76% > 4%), 60 and 4% do not.
		{"both, 40 and 4%", tax.Harvest{Enabled: true, MinLoss: dec("40"), MinLossPct: dec("0.04"), Substitutes: subs}, "2:10:-500->VTI 3:4:-100->VTI 0:10:-50->VTI"},
		{"both, 60 and 4%", tax.Harvest{Enabled: true, MinLoss: dec("60"), MinLossPct: dec("0.04"), Substitutes: subs}, "2:10:-500->VTI 3:4:-100->VTI"},
		{"disabled", tax.Harvest{MinLoss: dec("1"), Substitutes: subs}, ""},
		{"no substitute", tax.Harvest{Enabled: true, MinLoss: dec("1"), Substitutes: map[string]string{"BND": "AGG"}}, ""},
		{"no threshold", tax.Harvest{Enabled: true, Substitutes: subs}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, b := tax.HarvestCandidates(l, "VOO", "equity", dec("100"), date, tax.Options{Harvest: tt.harvest}, tax.History{})
			if got := candidates(cs); got != tt.want || b.Blocked {
				t.Errorf("candidates %s (blocked %v), want %s", got, b.Blocked, tt.want)
			}
			for _, c := range cs {
				if !c.Quantity.Equal(l.Lot(c.Lot).Quantity) || !c.Basis.Equal(l.Lot(c.Lot).Basis) || !c.Proceeds.Equal(c.Quantity.Mul(dec("100"))) {
					t.Errorf("candidate %+v is not its whole lot", c)
				}
			}
		})
	}
}

func TestHarvestWashSale(t *testing.T) {
	l := harvestLots(t)
	date := day(t, "2026-11-20")
	opts := tax.Options{
		WashSale: tax.WashSale{Exempt: []string{"crypto"}, SubstituteGroups: [][]string{{"VOO", "IVV"}}},
		Harvest:  tax.Harvest{Enabled: true, MinLoss: dec("99"), Substitutes: map[string]string{"VOO": "VTI", "TM-LARGE": "TM-BAL"}},
	}
	ivvBuy := tax.Trade{Instrument: "IVV", Account: "roth", Date: day(t, "2026-11-01")}
	vtiLoss := tax.Trade{Instrument: "VTI", Account: "joint", Date: day(t, "2026-10-25")}
	tests := []struct {
		name, instrument, class string
		h                       tax.History
		by                      *tax.Trade
		until                   string
	}{
		// IVV bought in the Roth on 2026-11-01 would wash the VOO loss.
		{"recent buy in the group", "VOO", "equity", tax.History{Buys: []tax.Trade{ivvBuy}}, &ivvBuy, "2026-12-01"},
		// VTI sold at a loss on 2026-10-25: it cannot be bought through 2026-11-24.
		{"substitute sold at a loss", "VOO", "equity", tax.History{LossSales: []tax.Trade{vtiLoss}}, &vtiLoss, "2026-11-24"},
		{"old buy", "VOO", "equity", tax.History{Buys: []tax.Trade{{Instrument: "VOO", Account: "roth", Date: day(t, "2026-10-20")}}}, nil, ""},
		{"exempt class", "TM-LARGE", "crypto/large_cap", tax.History{Buys: []tax.Trade{{Instrument: "TM-LARGE", Date: date}}}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, b := tax.HarvestCandidates(l, tt.instrument, tt.class, dec("100"), date, opts, tt.h)
			if tt.by == nil {
				if b.Blocked || len(cs) != 2 {
					t.Errorf("candidates %s, block %+v; want two and no block", candidates(cs), b)
				}
				return
			}
			if len(cs) != 0 || !b.Blocked || b.By != *tt.by || b.Until.String() != tt.until {
				t.Errorf("candidates %s, block %+v; want none, blocked by %+v until %s", candidates(cs), b, *tt.by, tt.until)
			}
		})
	}
}
