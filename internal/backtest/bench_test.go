package backtest

import (
	"testing"
)

func benchCompare(b *testing.B, policyFile, historyFile string, carry bool) {
	pol := loadPolicy(b, policyFile)
	h := loadHistory(b, historyFile)
	if carry {
		h = h.Carry()
	}
	cfg := Config{Policy: pol, Holdings: cash("taxable", "100000", h.Rows[0].Date), History: h}
	b.ReportAllocs()
	for b.Loop() {
		res, err := Compare(cfg)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res {
			_ = r.Summary()
		}
	}
}

// BenchmarkCompareMonthly50y: -compare (seven variants) over 1975-2023,
// monthly. Target: under 1 s.
func BenchmarkCompareMonthly50y(b *testing.B) {
	benchCompare(b, "../../configs/examples/backtest/balanced.yaml", "history-1975-2023.csv", false)
}

// BenchmarkCompareDaily7y: -compare over 2014-2021 with daily bitcoin
// prices (-carry). Target: under 3 s.
func BenchmarkCompareDaily7y(b *testing.B) {
	benchCompare(b, "../../configs/examples/backtest/crypto.yaml", "history-2014-2021-crypto.csv", true)
}
