package nats

import (
	"errors"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
)

// withinLimits reports whether d can come from plain decimal text of at
// most decimaltext.MaxLen characters: no positive exponent and at most
// MaxLen digits.
func withinLimits(d decimal.Decimal) bool {
	return d.Exponent() <= 0 && d.Exponent() >= -decimaltext.MaxLen && d.NumDigits() <= decimaltext.MaxLen
}

// FuzzParseReport feeds arbitrary subjects and payloads to the reports
// decoder: each is a well-formed report of its subject's kind or an error
// that terminates the message (ErrMalformed with a reason), never a panic.
// Every decimal of an accepted report is within decimaltext's limits.
func FuzzParseReport(f *testing.F) {
	for _, s := range [][2]string{
		{"rebalance.fills.p.a", `{"schema_version":1,"fill_id":"f1","order_id":"o1","status":"filled","quantity":"1","price":"1","fees":"0","at":"2026-11-23T15:00:00Z"}`},
		{"rebalance.positions.p", `{"schema_version":1,"as_of":"2026-11-23T15:00:00Z","accounts":{"a":{"cash":"1","positions":{"VTI":"2"}}}}`},
		{"rebalance.cashflows.p", `{"schema_version":1,"cashflow_id":"c1","kind":"deposit","account":"a","amount":"2500","at":"2026-11-23T15:00:00Z"}`},
		{"rebalance.fills.p", `{}`}, {"other.fills.p.a", `null`}, {"rebalance.cashflows.p", `{"kind":"withdrawal","amount":"-1"}`},
		{"rebalance.fills.p.a", `{"schema_version":1,"fill_id":"f1","order_id":"o1","status":"filled","QUANTITY":"1e-999999999","price":1,"fees":"0","at":"2026-11-23T15:00:00Z"}`},
		{"rebalance.positions.p", `{"schema_version":1,"as_of":"2026-11-23T15:00:00Z","accounts":{"a":{"cash":"1","positions":{"VTI":"` + strings.Repeat("9", 41) + `"}}}}`},
		{"rebalance.cashflows.p", `{"schema_version":1,"cashflow_id":"c1","kind":"deposit","account":"a","amount":2.5e3,"at":"2026-11-23T15:00:00Z"}`},
	} {
		f.Add(s[0], []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		r, err := parseReport("rebalance", subject, data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) || RejectReason(err) == ReportOther {
				t.Fatalf("error %v: not a malformed report with a reason", err)
			}
			return
		}
		n := 0
		for _, set := range []bool{r.Fill != nil, r.Positions != nil, r.CashFlow != nil} {
			if set {
				n++
			}
		}
		switch {
		case n != 1 || r.Policy == "":
			t.Fatalf("%s: %d reports, policy %q", subject, n, r.Policy)
		case r.Fill != nil && (r.Fill.FillID == "" || r.Fill.OrderID == "" || r.Account == ""):
			t.Fatalf("fill without ids: %+v", r.Fill)
		case r.Positions != nil && (r.Positions.AsOf.IsZero() || len(r.Positions.Accounts) == 0):
			t.Fatalf("positions without as_of or accounts: %+v", r.Positions)
		case r.CashFlow != nil && (r.CashFlow.CashFlowID == "" || r.CashFlow.Amount.Sign() <= 0):
			t.Fatalf("cash flow without id or amount: %+v", r.CashFlow)
		}
		var ds []decimal.Decimal
		switch {
		case r.Fill != nil:
			ds = append(ds, r.Fill.Quantity, r.Fill.Price, r.Fill.Fees)
		case r.Positions != nil:
			for _, a := range r.Positions.Accounts {
				ds = append(ds, a.Cash)
				for _, q := range a.Positions {
					ds = append(ds, q)
				}
			}
		case r.CashFlow != nil:
			ds = append(ds, r.CashFlow.Amount)
		}
		for _, d := range ds {
			if !withinLimits(d) {
				t.Fatalf("accepted %s (%d digits, exponent %d) from %q", d, d.NumDigits(), d.Exponent(), data)
			}
		}
	})
}
