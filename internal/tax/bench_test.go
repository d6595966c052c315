package tax_test

import (
	"testing"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// benchLots returns 200 lots of one instrument bought monthly-ish over
// about four years at prices between 60 and 140, one to 50 units each:
// at a price of 100, about half are at a loss and a quarter short-term.
func benchLots() []tax.Lot {
	lots := make([]tax.Lot, 200)
	first := tax.NewDate(2022, 11, 1)
	for i := range lots {
		q := decimal.NewFromInt(int64(1 + (i*37)%50))
		unit := decimal.New(int64(6000+(i*7919)%8000), -2)
		lots[i] = tax.Lot{Quantity: q, Basis: unit.Mul(q), Acquired: first.AddDays(i * 7)}
	}
	return lots
}

// BenchmarkSelectLots selects lots for a sale of a third of a 200-lot
// position, with short-term gains blocked and a 30-day wait: the call a
// planner makes per sell order in a taxable account.
func BenchmarkSelectLots(b *testing.B) {
	l, err := tax.NewLots(benchLots())
	if err != nil {
		b.Fatal(err)
	}
	qty := l.Quantity().Div(decimal.NewFromInt(3)).Floor()
	price, date := decimal.NewFromInt(100), tax.NewDate(2026, 11, 20)
	opts := tax.Options{ShortTermGains: tax.ShortTermBlock, WaitLongTermDays: 30}
	b.ReportAllocs()
	var s tax.Selection
	for b.Loop() {
		if s, err = l.Select(qty, price, date, opts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(s.Sales)), "sales/op")
}

// BenchmarkNewLots prepares (checks and sorts) 200 lots: done once per
// holdings file, not per plan.
func BenchmarkNewLots(b *testing.B) {
	lots := benchLots()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tax.NewLots(lots); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSellable computes how much of a 200-lot position may be sold
// under the same options: the cap a planner puts on a taxable position.
func BenchmarkSellable(b *testing.B) {
	l, err := tax.NewLots(benchLots())
	if err != nil {
		b.Fatal(err)
	}
	price, date := decimal.NewFromInt(100), tax.NewDate(2026, 11, 20)
	opts := tax.Options{ShortTermGains: tax.ShortTermBlock, WaitLongTermDays: 30}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Sellable(price, date, opts); err != nil {
			b.Fatal(err)
		}
	}
}
