package plan_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
)

// book parses the three documents and binds them, failing the test on any
// problem.
func book(t testing.TB, policyYAML, holdingsYAML, pricesYAML string) *portfolio.Book {
	t.Helper()
	p, err := policy.Parse("policy.yaml", []byte(policyYAML))
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	h, err := portfolio.ParseHoldings("holdings.yaml", []byte(holdingsYAML))
	if err != nil {
		t.Fatalf("holdings: %v", err)
	}
	q, err := portfolio.ParsePrices("prices.yaml", []byte(pricesYAML))
	if err != nil {
		t.Fatalf("prices: %v", err)
	}
	b, err := portfolio.Bind(p, h, q)
	if err != nil {
		t.Fatalf("bind: %v", err)
	}
	return b
}

const twoSleeves = `
policy: two
currency: USD
targets: {stocks: 60%%, bonds: 40%%, cash: 0%%}
bands: {absolute: 5%%}
rebalance: {trigger: threshold, destination: %s, min_trade: "%s"}
instruments:
  A: {sleeve: stocks}
  B: {sleeve: bonds}
accounts:
%s
`

const stamp = "as_of: 2026-11-20T21:00:00Z\n"

// orderLine renders an order compactly for comparisons.
func orderLine(o plan.Order) string {
	return fmt.Sprintf("%s %s %s %s", o.Account, o.Side, o.Quantity, o.Instrument)
}

func orderLines(p *plan.Plan) []string {
	out := make([]string, len(p.Orders))
	for i, o := range p.Orders {
		out[i] = orderLine(o)
	}
	return out
}

// unresolvedOf returns p's unresolved entry for sleeve, or nil.
func unresolvedOf(p *plan.Plan, sleeve string) *plan.Unresolved {
	for k := range p.Unresolved {
		if p.Unresolved[k].Sleeve == sleeve {
			return &p.Unresolved[k]
		}
	}
	return nil
}

// TestKnownAnswers checks plans worked out by hand.
func TestKnownAnswers(t *testing.T) {
	prices := stamp + `prices: {A: "100", B: "50"}`
	tests := []struct {
		name        string
		destination string
		minTrade    string
		accounts    string
		holdings    string
		want        []string
		unresolved  []string
	}{
		{
			// 7000 A + 3000 B = 10000; 60/40 wants 6000/4000.
			name: "sell overweight, buy underweight", destination: "target", minTrade: "0",
			accounts: "  ira: {type: traditional_ira}",
			holdings: `ira: {cash: "0", positions: {A: "70", B: "60"}}`,
			want:     []string{"ira sell 10 A", "ira buy 20 B"},
		},
		{
			// Both breach 60/40 ±5. A's edge is 65%, less one step of A (100)
			// for rounding: 6400, sell 6 A. B's edge is 35%, plus one step of
			// B (50): 3550; the 50 left over goes to B, still under its
			// target, rather than to cash (0% target): buy 12 B.
			name: "band edge", destination: "band_edge", minTrade: "0",
			accounts: "  ira: {type: traditional_ira}",
			holdings: `ira: {cash: "0", positions: {A: "70", B: "60"}}`,
			want:     []string{"ira sell 6 A", "ira buy 12 B"},
		},
		{
			// Midway is 62.5%: sell 750 of A = 7.5 shares, rounded half away
			// from zero to 8; B is bought to its planned 37.5% (750 = 15 B)
			// and the 50 of rounding surplus stays as cash (0.5%, in band).
			name: "midway", destination: "midway", minTrade: "0",
			accounts: "  ira: {type: traditional_ira}",
			holdings: `ira: {cash: "0", positions: {A: "70", B: "60"}}`,
			want:     []string{"ira sell 8 A", "ira buy 15 B"},
		},
		{
			// 5400 A + 3600 B + 1000 free cash: free cash buys, nothing is sold.
			name: "free cash before any sale", destination: "target", minTrade: "0",
			accounts: "  ira: {type: traditional_ira}",
			holdings: `ira: {cash: "1000", positions: {A: "54", B: "72"}}`,
			want:     []string{"ira buy 6 A", "ira buy 8 B"},
		},
		{
			// The 5000 reserve is neither counted nor spent: 7000/3000 as above.
			name: "reserve untouched", destination: "target", minTrade: "0",
			accounts: `  tax: {type: taxable, reserve: "5000"}`,
			holdings: `tax: {cash: "5000", positions: {A: "70", B: "60"}}`,
			want:     []string{"tax sell 10 A", "tax buy 20 B"},
		},
		{
			// A is held in both accounts; selling in the IRA reaches the same
			// allocation, so the taxable account is left alone.
			name: "sell in tax-advantaged first", destination: "target", minTrade: "0",
			accounts: "  tax: {type: taxable}\n  ira: {type: roth_ira}",
			holdings: `tax: {cash: "0", positions: {A: "35", B: "30"}}` + "\n  " + `ira: {cash: "0", positions: {A: "35", B: "30"}}`,
			want:     []string{"ira sell 10 A", "ira buy 20 B"},
		},
		{
			// 10 shares of A is 1000, below min_trade 1500: the orders to
			// target are dropped. The polish then finds the smallest pair
			// of orders at min_trade that brings both sleeves inside their
			// bands: sell 15 A (1500), buy 30 B (1500): 55% / 45%.
			name: "min_trade", destination: "target", minTrade: "1500",
			accounts: "  ira: {type: traditional_ira}",
			holdings: `ira: {cash: "0", positions: {A: "70", B: "60"}}`,
			want:     []string{"ira sell 15 A", "ira buy 30 B"},
		},
		{
			// The IRA may hold only A and has the cash; the taxable account may
			// buy B but has nothing to sell but B itself: B stays short, and
			// cash (0% target) stays at 40%, out of its band.
			name: "may_hold leaves a sleeve out", destination: "target", minTrade: "0",
			accounts:   "  ira: {type: traditional_ira, may_hold: [A]}\n  tax: {type: taxable}",
			holdings:   `ira: {cash: "4000", positions: {A: "60"}}` + "\n  " + `tax: {cash: "0", positions: {}}`,
			want:       []string{},
			unresolved: []string{"bonds", "cash"},
		},
		{
			// Idle cash in the IRA (which may not hold B) funds B in the
			// taxable account through a relocation of A: the IRA buys A, the
			// taxable account sells as much A and buys B.
			name: "relocation across accounts", destination: "target", minTrade: "0",
			accounts: "  ira: {type: traditional_ira, may_hold: [A]}\n  tax: {type: taxable}",
			holdings: `ira: {cash: "4000", positions: {}}` + "\n  " + `tax: {cash: "0", positions: {A: "60"}}`,
			want:     []string{"tax sell 40 A", "ira buy 40 A", "tax buy 80 B"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := fmt.Sprintf(twoSleeves, tt.destination, tt.minTrade, tt.accounts)
			b := book(t, pol, stamp+"accounts:\n  "+tt.holdings, prices)
			p := plan.Make(drift.Compute(b))
			if got := orderLines(p); strings.Join(got, "; ") != strings.Join(tt.want, "; ") {
				t.Errorf("orders:\n got %q\nwant %q", got, tt.want)
			}
			var un []string
			for _, u := range p.Unresolved {
				un = append(un, u.Sleeve)
			}
			if strings.Join(un, ",") != strings.Join(tt.unresolved, ",") {
				t.Errorf("unresolved = %v, want %v (%+v)", un, tt.unresolved, p.Unresolved)
			}
			checkInvariants(t, b, p)
		})
	}
}

// TestZeroTargetSleeve: a 0% target judges drift by the absolute band and
// never divides by zero; destination target sells the holding off.
func TestZeroTargetSleeve(t *testing.T) {
	pol := `
policy: z
currency: USD
targets: {stocks: 100%, gold: 0%, cash: 0%}
bands: {absolute: 5%, relative: 25%}
rebalance: {trigger: threshold}
instruments: {A: {sleeve: stocks}, G: {sleeve: gold}}
accounts: {ira: {type: roth_ira}}
`
	b := book(t, pol, stamp+`accounts: {ira: {cash: "0", positions: {A: "90", G: "10"}}}`, stamp+`prices: {A: "100", G: "100"}`)
	s := drift.Compute(b)
	gold := s.Sleeves[1]
	if !gold.Breach || !gold.Weight.Equal(decimal.RequireFromString("0.1")) || !gold.BandHigh.Equal(decimal.RequireFromString("0.05")) {
		t.Fatalf("gold drift = %+v, want weight 0.1 breaching band 0-0.05", gold)
	}
	p := plan.Make(s)
	if got := strings.Join(orderLines(p), "; "); got != "ira sell 10 G; ira buy 10 A" {
		t.Errorf("orders = %s", got)
	}
}

// TestDeterministic: the same inputs give byte-identical JSON and ids; a
// different price time gives different ids.
func TestDeterministic(t *testing.T) {
	b := exampleBook(t)
	first, _ := json.Marshal(plan.Make(drift.Compute(b)))
	for i := 0; i < 5; i++ {
		again, _ := json.Marshal(plan.Make(drift.Compute(exampleBook(t))))
		if string(again) != string(first) {
			t.Fatalf("run %d differs:\n%s\n%s", i, first, again)
		}
	}
	b2 := exampleBook(t)
	b2.PricesAsOf = b2.PricesAsOf.Add(1)
	p1, p2 := plan.Make(drift.Compute(b)), plan.Make(drift.Compute(b2))
	if p1.ID == p2.ID || p1.Orders[0].ID == p2.Orders[0].ID {
		t.Errorf("ids do not depend on the price time: %s %s", p1.ID, p2.ID)
	}
	seen := map[string]bool{}
	for _, o := range p1.Orders {
		if seen[o.ID] {
			t.Errorf("duplicate order id %s", o.ID)
		}
		seen[o.ID] = true
	}
}

func exampleBook(t testing.TB) *portfolio.Book {
	return book(t, readConfig(t, "policies/example.yaml"), readConfig(t, "holdings/example.yaml"), readConfig(t, "prices/example.yaml"))
}

// readConfig returns the text of a file under configs/.
func readConfig(t testing.TB, name string) string {
	t.Helper()
	data, err := os.ReadFile("../../configs/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestExample checks the shipped example: every sleeve lands within a
// trading step of its target and nothing is left unresolved.
func TestExample(t *testing.T) {
	b := exampleBook(t)
	p := plan.Make(drift.Compute(b))
	if len(p.Unresolved) != 0 {
		t.Errorf("unresolved: %+v", p.Unresolved)
	}
	if len(p.Orders) == 0 {
		t.Fatal("no orders for a portfolio that breaches four bands")
	}
	checkInvariants(t, b, p)
	for _, s := range p.Sleeves {
		if off := s.WeightAfter.Sub(s.Target).Abs(); off.GreaterThan(decimal.RequireFromString("0.001")) {
			t.Errorf("%s ends at %s, target %s", s.Sleeve, s.WeightAfter, s.Target)
		}
	}
}

// TestNotionalNoPadding checks that no order's notional carries more
// trailing zeros than decimal's product of its quantity and price: the
// notional of an order the polish changed was once made from a step value
// kept at the money exponent, its coefficient padded towards the int64
// limit (the same value, but sums of notionals then leave the int64 fast
// path of dec64).
func TestNotionalNoPadding(t *testing.T) {
	n := defaultCases(2000)
	checked := 0
	for seed := 0; seed < n; seed++ {
		r := rand.New(rand.NewPCG(uint64(seed), 1111))
		pol, hold, prices := genHousehold(r)
		p := plan.Make(drift.Compute(book(t, pol, hold, prices)))
		for _, o := range p.Orders {
			checked++
			if e := o.Quantity.Mul(o.Price).Exponent(); o.Notional.Exponent() < e {
				t.Fatalf("seed %d: %s %s %s %s: notional %s at exponent %d, below its quantity x price's %d",
					seed, o.Rule, o.Account, o.Side, o.Instrument, o.Notional, o.Notional.Exponent(), e)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no order checked")
	}
}
