package events

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// TestOrdersOfNameLots: a sell's order event names the lots to sell
// (index, acquired, quantity, cost basis), so that an executor need not
// let the broker default to first in, first out; a buy names none.
func TestOrdersOfNameLots(t *testing.T) {
	d := decimal.RequireFromString
	p := &plan.Plan{ID: "p", Policy: "x", Orders: []plan.Order{
		{ID: "p-1", Account: "tx", Instrument: "A", Side: plan.Sell, Quantity: d("12"), Lots: []tax.Sale{
			{Lot: 2, Acquired: tax.NewDate(2024, 1, 1), Quantity: d("10"), Basis: d("1200"), Proceeds: d("1000"), Gain: d("-200")},
			{Lot: 0, Acquired: tax.NewDate(2020, 1, 10), Quantity: d("2"), Basis: d("140"), Proceeds: d("200"), Gain: d("60"), LongTerm: true},
		}},
		{ID: "p-2", Account: "tx", Instrument: "B", Side: plan.Buy, Quantity: d("24")},
	}}
	orders := OrdersOf(p, "threshold", time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC), time.Hour)
	data, err := json.Marshal(orders)
	if err != nil {
		t.Fatal(err)
	}
	want := `"lots":[{"lot":2,"acquired":"2024-01-01","quantity":"10","cost_basis":"1200"},{"lot":0,"acquired":"2020-01-10","quantity":"2","cost_basis":"140"}]`
	if !strings.Contains(string(data), want) || strings.Count(string(data), `"lots"`) != 1 {
		t.Errorf("order events %s\nwant the sell to carry %s", data, want)
	}
}
