package tax

import (
	"testing"

	"github.com/shopspring/decimal"
)

func TestQuoHalfEven(t *testing.T) {
	tests := []struct {
		n, d   string
		places int32
		want   string
	}{
		{"1", "3", 2, "0.33"},
		{"2", "3", 2, "0.67"},
		{"0.125", "1", 2, "0.12"}, // tie: to even
		{"0.135", "1", 2, "0.14"}, // tie: to even
		{"0.375", "3", 2, "0.12"}, // 0.125 exactly: tie, to even
		{"0.1250000001", "1", 2, "0.13"},
		{"0.1249999999", "1", 2, "0.12"},
		{"0", "7", 2, "0"},
		{"5", "2", 0, "2"}, // 2.5: to even
		{"7", "2", 0, "4"}, // 3.5: to even
		{"100", "4", 2, "25"},
	}
	for _, tt := range tests {
		got := quoHalfEven(decimal.RequireFromString(tt.n), decimal.RequireFromString(tt.d), tt.places)
		if !got.Equal(decimal.RequireFromString(tt.want)) {
			t.Errorf("quoHalfEven(%s, %s, %d) = %s, want %s", tt.n, tt.d, tt.places, got, tt.want)
		}
	}
}

func TestWashSaleRule(t *testing.T) {
	w := WashSale{
		Window:  45,
		Windows: map[string]int{"bonds": 7, "crypto/large_cap": 30},
		Exempt:  []string{"crypto", "bonds/muni"},
	}
	tests := []struct {
		class  string
		window int
		exempt bool
	}{
		{"equity", 45, false},
		{"bonds", 7, false},
		{"bonds/treasury", 7, false},
		{"bonds/muni", 0, true},
		{"bonds/muni/ny", 0, true},
		{"crypto", 0, true},
		{"crypto/growth", 0, true},
		{"crypto/large_cap", 30, false},
		{"cryptocurrency_etf", 45, false}, // "crypto" is not its ancestor
		{"bondsX", 45, false},
	}
	for _, tt := range tests {
		if window, exempt := w.rule(tt.class); window != tt.window || exempt != tt.exempt {
			t.Errorf("rule(%s) = %d, %v; want %d, %v", tt.class, window, exempt, tt.window, tt.exempt)
		}
	}
	if window, exempt := (WashSale{}).rule("equity"); window != DefaultWashSaleWindow || exempt {
		t.Errorf("zero WashSale: %d, %v; want the default window", window, exempt)
	}
	// A bad override (Validate refuses it) falls back to the default window
	// rather than switching the guard off.
	if window, _ := (WashSale{Windows: map[string]int{"equity": 0}}).rule("equity"); window != DefaultWashSaleWindow {
		t.Errorf("zero override: window %d", window)
	}
	// A sleeve both exempt and windowed (Validate refuses it): guarded.
	if _, exempt := (WashSale{Windows: map[string]int{"x": 5}, Exempt: []string{"x"}}).rule("x"); exempt {
		t.Error("a sleeve both exempt and windowed is exempt")
	}
}
