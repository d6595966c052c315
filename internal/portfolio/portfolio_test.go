package portfolio

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml/yamltest"
	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// The example files shipped in configs.
const (
	examplePolicy   = "../../configs/policies/example.yaml"
	exampleHoldings = "../../configs/holdings/example.yaml"
	examplePrices   = "../../configs/prices/example.yaml"
	exampleLots     = "../../configs/examples/lots-holdings.yaml"
)

// Test files are parsed under their base name, so messages read
// "prices_zero.bad.yml:4: prices.VTI: ...". In testdata, a file's prefix
// (holdings_, prices_, policy_) says what it holds.
func readFile(t testing.TB, path string) (string, []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(path), data
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func loadPolicy(t testing.TB, path string) *policy.Policy {
	t.Helper()
	name, data := readFile(t, path)
	p, err := policy.Parse(name, data)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func loadHoldings(t testing.TB, path string) *Holdings {
	t.Helper()
	name, data := readFile(t, path)
	h, err := ParseHoldings(name, data)
	if err != nil {
		t.Fatal(err)
	}
	checkHoldings(t, h, name)
	return h
}

func loadPrices(t testing.TB, path string) *Prices {
	t.Helper()
	name, data := readFile(t, path)
	q, err := ParsePrices(name, data)
	if err != nil {
		t.Fatal(err)
	}
	checkPrices(t, q, name)
	return q
}

// parseAny parses a testdata file by its prefix.
func parseAny(name string, data []byte) error {
	var err error
	switch {
	case strings.HasPrefix(name, "holdings_"):
		_, err = ParseHoldings(name, data)
	case strings.HasPrefix(name, "prices_"):
		_, err = ParsePrices(name, data)
	case strings.HasPrefix(name, "policy_"):
		_, err = policy.Parse(name, data)
	default:
		err = errors.New("testdata file without a holdings_, prices_ or policy_ prefix")
	}
	return err
}

func TestGoodFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*.good.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no good files: %v", err)
	}
	for _, path := range files {
		name, data := readFile(t, path)
		t.Run(name, func(t *testing.T) {
			if err := parseAny(name, data); err != nil {
				t.Fatal(err)
			}
			switch {
			case strings.HasPrefix(name, "holdings_"):
				loadHoldings(t, path)
			case strings.HasPrefix(name, "prices_"):
				loadPrices(t, path)
			}
		})
	}
}

// badFiles lists, for each testdata/*.bad.yml, every problem the parser
// must report, in order.
var badFiles = map[string][]string{
	"holdings_negative_quantity.bad.yml": {
		"holdings_negative_quantity.bad.yml:7: accounts.roth.positions.VTI: must not be negative, got -120",
		"holdings_negative_quantity.bad.yml:8: accounts.roth.positions.VXUS: must not be negative, got -0.5",
	},
	"holdings_negative_cash.bad.yml": {
		"holdings_negative_cash.bad.yml:4: accounts.roth.cash: must not be negative, got -1200.5",
		"holdings_negative_cash.bad.yml:5: accounts.taxable.cash: must not be negative, got -0.01",
	},
	"holdings_bad_number.bad.yml": {
		`holdings_bad_number.bad.yml:5: accounts.roth.cash: "1,200.50" is not a plain decimal number`,
		`holdings_bad_number.bad.yml:7: accounts.roth.positions.VTI: "1e5" is not a plain decimal number`,
		`holdings_bad_number.bad.yml:8: accounts.roth.positions.VXUS: "abc" is not a plain decimal number`,
		`holdings_bad_number.bad.yml:9: accounts.roth.positions.BND: "NaN" is not a plain decimal number`,
		`holdings_bad_number.bad.yml:10: accounts.roth.positions.VNQ: ".inf" is not a plain decimal number`,
		`holdings_bad_number.bad.yml:11: accounts.roth.positions.TM-LARGE: want a single value, got a list`,
		`holdings_bad_number.bad.yml:12: accounts.roth.positions.TM-BAL: want a number, got a boolean "true"`,
	},
	"holdings_unknown_key.bad.yml": {
		"holdings_unknown_key.bad.yml:3: owner: unknown field (known: as_of, accounts, trades)",
		"holdings_unknown_key.bad.yml:7: accounts.roth.position: unknown field (known: cash, positions)",
	},
	"holdings_duplicate_key.bad.yml": {
		"holdings_duplicate_key.bad.yml:4: accounts.roth.positions.VTI: duplicate key (first defined at line 4)",
		"holdings_duplicate_key.bad.yml:5: accounts.roth: duplicate key (first defined at line 4)",
	},
	"holdings_lots_mismatch.bad.yml": {
		"holdings_lots_mismatch.bad.yml:7: accounts.taxable.positions.VXUS.quantity: quantity 50 differs from the sum of the lots, 50.5",
		"holdings_lots_mismatch.bad.yml:11: accounts.taxable.positions.BND.quantity: must not be negative, got -1",
		`holdings_lots_mismatch.bad.yml:12: accounts.taxable.positions.VNQ.quantity: "abc" is not a plain decimal number`,
		"holdings_lots_mismatch.bad.yml:12: accounts.taxable.positions.VNQ.lots[0].cost_basis: required field is missing (or give unit_cost)",
		"holdings_lots_mismatch.bad.yml:13: accounts.taxable.positions.VTI.lots: want at least one lot",
	},
	"holdings_lots_fields.bad.yml": {
		"holdings_lots_fields.bad.yml:9: accounts.taxable.positions.VXUS.lots[0].cost_basis: required field is missing (or give unit_cost)",
		"holdings_lots_fields.bad.yml:10: accounts.taxable.positions.VXUS.lots[1].unit_cost: give cost_basis or unit_cost, not both",
		"holdings_lots_fields.bad.yml:11: accounts.taxable.positions.VXUS.lots[2].quantity: must be positive, got 0",
		"holdings_lots_fields.bad.yml:12: accounts.taxable.positions.VXUS.lots[3].quantity: must be positive, got -2",
		"holdings_lots_fields.bad.yml:12: accounts.taxable.positions.VXUS.lots[3].cost_basis: must not be negative, got -10",
		"holdings_lots_fields.bad.yml:13: accounts.taxable.positions.VXUS.lots[4].quantity: required field is missing",
		"holdings_lots_fields.bad.yml:13: accounts.taxable.positions.VXUS.lots[4].acquired: required field is missing",
		`holdings_lots_fields.bad.yml:14: accounts.taxable.positions.VXUS.lots[5].unit_cost: "1e3" is not a plain decimal number`,
		`holdings_lots_fields.bad.yml:14: accounts.taxable.positions.VXUS.lots[5].acquired: want a date like 2025-03-01, got "2025-02-29"`,
		"holdings_lots_fields.bad.yml:15: accounts.taxable.positions.VXUS.lots[6].broker: unknown field (known: quantity, cost_basis, unit_cost, acquired)",
		`holdings_lots_fields.bad.yml:15: accounts.taxable.positions.VXUS.lots[6].acquired: want a date like 2025-03-01, got "2025/01/02"`,
		"holdings_lots_fields.bad.yml:16: accounts.taxable.positions.VXUS.lots[7].acquired: 2026-11-21 is after the day of as_of, 2026-11-20",
		`holdings_lots_fields.bad.yml:17: accounts.taxable.positions.VXUS.lots[8]: want a mapping, got "5"`,
		"holdings_lots_fields.bad.yml:18: accounts.taxable.positions.BND.lots: want at least one lot",
		"holdings_lots_fields.bad.yml:19: accounts.taxable.positions.VNQ.lots: required field is missing",
		"holdings_lots_fields.bad.yml:20: accounts.taxable.positions.VTI.cost: unknown field (known: quantity, lots)",
		"holdings_lots_fields.bad.yml:20: accounts.taxable.positions.VTI.lots: want a list, got a mapping",
	},
	"holdings_missing_as_of.bad.yml": {
		"holdings_missing_as_of.bad.yml:2: as_of: required field is missing",
	},
	"holdings_bad_time.bad.yml": {
		`holdings_bad_time.bad.yml:2: as_of: want an RFC 3339 time like 2026-11-20T21:00:00Z, got "2026-11-20 21:00"`,
	},
	// Reported once: not also as "accounts: missing".
	"holdings_missing_accounts.bad.yml": {
		"holdings_missing_accounts.bad.yml:2: accounts: required field is missing",
	},
	"prices_zero.bad.yml": {
		"prices_zero.bad.yml:4: prices.VTI: price must be positive, got 0",
		"prices_zero.bad.yml:5: prices.BND: price must be positive, got 0",
	},
	"prices_negative.bad.yml": {
		"prices_negative.bad.yml:3: prices.VTI: price must be positive, got -285.12",
		"prices_negative.bad.yml:3: prices.BND: price must be positive, got -0.01",
	},
	"prices_bad_number.bad.yml": {
		`prices_bad_number.bad.yml:4: prices.VTI: "2.8512e2" is not a plain decimal number`,
		`prices_bad_number.bad.yml:5: prices.VXUS: "61,40" is not a plain decimal number`,
		`prices_bad_number.bad.yml:6: prices.BND: "NaN" is not a plain decimal number`,
		`prices_bad_number.bad.yml:7: prices.VNQ: "$88.90" is not a plain decimal number`,
		`prices_bad_number.bad.yml:8: prices.VMFXX: missing value`,
	},
	"prices_missing_as_of.bad.yml": {
		"prices_missing_as_of.bad.yml:2: as_of: required field is missing",
	},
	// Reported once: not also as "prices: missing".
	"prices_unknown_key.bad.yml": {
		"prices_unknown_key.bad.yml:2: prices: required field is missing",
		"prices_unknown_key.bad.yml:3: source: unknown field (known: as_of, prices)",
		"prices_unknown_key.bad.yml:4: quotes: unknown field (known: as_of, prices)",
	},
}

func TestBadFiles(t *testing.T) {
	yamltest.BadFiles(t, "testdata/*.bad.yml", badFiles, func(path, name string, data []byte) (error, bool) {
		err := parseAny(name, data)
		if err != nil {
			yamltest.CheckFailure(t, err, name, data)
		}
		return err, false
	})
}

func TestCommonFailures(t *testing.T) {
	big := append([]byte("as_of: 2026-11-20T21:00:00Z\n"), bytes.Repeat([]byte("#"), strictyaml.MaxFileSize)...)
	tests := []struct {
		name string
		in   []byte
		want string // the same for holdings and prices, after the file name
	}{
		{"empty", nil, ": file is empty"},
		{"syntax", []byte("as_of: 2026-11-20T21:00:00Z\nprices: {VTI: 1\n"), ":2: YAML syntax: did not find expected ',' or '}'"},
		{"two documents", []byte("as_of: 2026-11-20T21:00:00Z\n---\nas_of: 2026-11-21T21:00:00Z\n"), ":2: file holds more than one YAML document"},
		{"list", []byte("- as_of: 2026-11-20T21:00:00Z\n"), ":1: top level must be a mapping of fields"},
		{"too big", big, ": file is 1048604 bytes, larger than the limit of 1048576"},
		{"alias", []byte("as_of: &t 2026-11-20T21:00:00Z\n"), ":1: as_of: YAML anchors and aliases are not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseHoldings("h.yml", tt.in); err == nil || !strings.HasPrefix(yamltest.Problems(t, err, "")[0], "h.yml"+tt.want) {
				t.Errorf("ParseHoldings: %v, want h.yml%s", err, tt.want)
			}
			if _, err := ParsePrices("p.yml", tt.in); err == nil || !strings.HasPrefix(yamltest.Problems(t, err, "")[0], "p.yml"+tt.want) {
				t.Errorf("ParsePrices: %v, want p.yml%s", err, tt.want)
			}
		})
	}
}

func TestExampleHoldings(t *testing.T) {
	h := loadHoldings(t, exampleHoldings)
	if h.File != "example.yaml" || !h.AsOf.Equal(time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC)) {
		t.Errorf("File %q AsOf %v", h.File, h.AsOf)
	}
	want := []struct {
		name, cash string
		line       int
		positions  string // symbol=quantity@line
	}{
		{"roth", "1200.50", 4, "VTI=120@4 TM-LARGE=0.5@4"},
		{"k401", "0", 5, "VTI=300@5 BND=400@5"},
		{"taxable", "25000", 6, "BND=300@6 VNQ=40@6 VXUS=50@6"},
	}
	if len(h.Accounts) != len(want) {
		t.Fatalf("%d accounts, want %d", len(h.Accounts), len(want))
	}
	for i, w := range want {
		a := h.Accounts[i]
		var pos []string
		for _, p := range a.Positions {
			pos = append(pos, p.Instrument+"="+p.Quantity.String()+"@"+itoa(p.Line))
		}
		if a.Name != w.name || !a.Cash.Equal(dec(w.cash)) || a.Line != w.line || strings.Join(pos, " ") != w.positions {
			t.Errorf("account %d = %s cash %s line %d positions %v, want %+v", i, a.Name, a.Cash, a.Line, pos, w)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestBlockHoldings(t *testing.T) {
	h := loadHoldings(t, "testdata/holdings_block.good.yml")
	if want := time.Date(2026, 11, 20, 21, 0, 0, 123000000, time.UTC); !h.AsOf.Equal(want) {
		t.Errorf("AsOf = %v, want %v", h.AsOf, want)
	}
	roth := h.Accounts[0]
	if roth.Cash.String() != "1234567890.123456789" {
		t.Errorf("roth cash = %s, want 1234567890.123456789 exactly", roth.Cash)
	}
	if len(roth.Positions) != 2 || roth.Positions[0].Quantity.String() != "0.1" || roth.Positions[0].Line != 8 ||
		!roth.Positions[1].Quantity.IsZero() || roth.Positions[1].Line != 9 {
		t.Errorf("roth positions = %+v", roth.Positions)
	}
	if k := h.Accounts[1]; k.Name != "k401" || !k.Cash.IsZero() || len(k.Positions) != 1 {
		t.Errorf("k401 = %+v, want no cash and one position", k)
	}
	if tx := h.Accounts[2]; tx.Name != "taxable" || tx.Cash.String() != "0.2" || len(tx.Positions) != 0 {
		t.Errorf("taxable = %+v, want cash 0.2 and no positions", tx)
	}
}

// lotsOf formats a position's lots as "quantity/basis/acquired", in file
// order.
func lotsOf(p Position) string {
	var out []string
	for i := 0; i < p.Lots.Len(); i++ {
		l := p.Lots.Lot(i)
		out = append(out, l.Quantity.String()+"/"+l.Basis.String()+"/"+l.Acquired.String())
	}
	return strings.Join(out, " ")
}

func TestLotsHoldings(t *testing.T) {
	h := loadHoldings(t, "testdata/holdings_lots.good.yml")
	want := map[string]struct {
		qty, lots string
		line      int
	}{
		"roth/VTI":    {"120", "", 5},
		"taxable/BND": {"300", "", 9},
		// 61.0125 × 20.5 = 1250.75625, exactly.
		"taxable/VXUS": {"50.5", "30/1650/2024-01-15 20.5/1250.75625/2024-02-29", 10},
		// Acquired on the day of as_of, in as_of's own zone (UTC is already
		// the 21st).
		"taxable/VNQ": {"40", "40/0/2026-11-20", 17},
	}
	n := 0
	for _, a := range h.Accounts {
		for _, p := range a.Positions {
			n++
			w, ok := want[a.Name+"/"+p.Instrument]
			if !ok || p.Quantity.String() != w.qty || lotsOf(p) != w.lots || p.Line != w.line {
				t.Errorf("%s %s = %s [%s] line %d, want %+v", a.Name, p.Instrument, p.Quantity, lotsOf(p), p.Line, w)
			}
		}
	}
	if n != len(want) {
		t.Errorf("%d positions, want %d", n, len(want))
	}
}

// TestLotsAsOfZone: a lot may not be acquired after the day of as_of, in
// as_of's own zone: 2026-11-20T23:00:00-05:00 is the 20th, not the 21st.
func TestLotsAsOfZone(t *testing.T) {
	in := "as_of: 2026-11-20T23:00:00-05:00\naccounts:\n  taxable:\n    positions:\n" +
		"      VTI: {lots: [{quantity: 1, cost_basis: 1, acquired: %s}]}\n"
	if _, err := ParseHoldings("z.yml", []byte(fmt.Sprintf(in, "2026-11-20"))); err != nil {
		t.Errorf("acquired on the day of as_of: %v", err)
	}
	_, err := ParseHoldings("z.yml", []byte(fmt.Sprintf(in, "2026-11-21")))
	yamltest.Match(t, yamltest.Problems(t, err, "z.yml"),
		[]string{"z.yml:5: accounts.taxable.positions.VTI.lots[0].acquired: 2026-11-21 is after the day of as_of, 2026-11-20"})
}

// TestExampleLotsHoldings checks the example lots file: the same
// quantities as the example holdings, bound to the example policy, and a
// selection from its lots worked out by hand.
func TestExampleLotsHoldings(t *testing.T) {
	p := loadPolicy(t, examplePolicy)
	q := loadPrices(t, examplePrices)
	plain, err := Bind(p, loadHoldings(t, exampleHoldings), q)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Bind(p, loadHoldings(t, exampleLots), q)
	if err != nil {
		t.Fatal(err)
	}
	if plain.Lots != nil {
		t.Error("the example holdings have no lots, but the Book has Lots")
	}
	taxable, _ := p.AccountIndex("taxable")
	for a := range p.Accounts {
		for i, in := range p.Instruments {
			if !b.Qty[a][i].Equal(plain.Qty[a][i]) {
				t.Errorf("%s %s: quantity %s, the example holdings have %s", p.Accounts[a].Name, in.Symbol, b.Qty[a][i], plain.Qty[a][i])
			}
			lots := b.Lots[a][i]
			wantLots := a == taxable && (in.Symbol == "BND" || in.Symbol == "VNQ" || in.Symbol == "VXUS")
			if (lots.Len() > 0) != wantLots || wantLots && !lots.Quantity().Equal(b.Qty[a][i]) {
				t.Errorf("%s %s: %d lots for %s", p.Accounts[a].Name, in.Symbol, lots.Len(), lots.Quantity())
			}
		}
	}
	// Sell 40 VXUS at 61.40 on 2026-11-20, waiting up to 7 days: the 30
	// long-term units (55.00 each) sell for 30 × 6.40 = 192.00 of
	// long-term gain; the 20 bought 2025-11-25 turn long-term on
	// 2026-11-26, so 10 wait until then.
	vxus, _ := p.InstrumentIndex("VXUS")
	s, err := b.Lots[taxable][vxus].Select(dec("40"), b.Price[vxus], tax.DateOf(b.PricesAsOf), tax.Options{WaitLongTermDays: 7})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Sold.Equal(dec("30")) || !s.Gains.LongTermGains.Equal(dec("192")) || !s.Gains.Net().Equal(dec("192")) ||
		!s.Waiting.Equal(dec("10")) || s.WaitUntil.String() != "2026-11-26" {
		t.Errorf("sold %s, gains %+v, waiting %s until %s", s.Sold, s.Gains, s.Waiting, s.WaitUntil)
	}
}

func TestExamplePrices(t *testing.T) {
	q := loadPrices(t, examplePrices)
	asOf := time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC)
	if q.File != "example.yaml" || !q.AsOf.Equal(asOf) || q.Line != 3 {
		t.Errorf("File %q AsOf %v Line %d", q.File, q.AsOf, q.Line)
	}
	want := map[string]string{"VTI": "285.12", "VXUS": "61.40", "BND": "72.15", "VNQ": "88.90",
		"TM-LARGE": "41250.00", "TM-BAL": "1830.25", "TM-GROWTH": "96.10", "VMFXX": "1.00"}
	if len(q.Quotes) != len(want) {
		t.Errorf("%d quotes, want %d", len(q.Quotes), len(want))
	}
	for sym, price := range want {
		quote, ok := q.Quotes[sym]
		if !ok || !quote.Price.Equal(dec(price)) || !quote.At.Equal(asOf) || quote.Line != 3 {
			t.Errorf("%s = %+v, %v; want %s at %v", sym, quote, ok, price, asOf)
		}
	}
}

func TestBlockPrices(t *testing.T) {
	q := loadPrices(t, "testdata/prices_block.good.yml")
	want := []struct {
		sym, price string
		line       int
	}{{"VTI", "285.12", 4}, {"SHIB", "0.000000012345", 5}, {"BRK.A", "1234567890.123456789", 6}}
	for _, w := range want {
		quote := q.Quotes[w.sym]
		if quote.Price.String() != w.price || quote.Line != w.line {
			t.Errorf("%s = %s line %d, want %s line %d exactly", w.sym, quote.Price, quote.Line, w.price, w.line)
		}
	}
	// The block mapping starts on its first entry's line.
	if q.Line != 4 {
		t.Errorf("Line = %d, want 4", q.Line)
	}
}

func TestBindExample(t *testing.T) {
	p := loadPolicy(t, examplePolicy)
	h := loadHoldings(t, exampleHoldings)
	q := loadPrices(t, "testdata/prices_flow.good.yml") // with AAPL, which the policy ignores
	b, err := Bind(p, h, q)
	if err != nil {
		t.Fatal(err)
	}
	if b.Policy != p || !b.HoldingsAsOf.Equal(h.AsOf) || !b.PricesAsOf.Equal(q.AsOf) {
		t.Errorf("Book header = %v %v %v", b.Policy.Name, b.HoldingsAsOf, b.PricesAsOf)
	}
	qty := map[string]map[string]string{
		"roth":    {"VTI": "120", "TM-LARGE": "0.5"},
		"k401":    {"VTI": "300", "BND": "400"},
		"taxable": {"BND": "300", "VNQ": "40", "VXUS": "50"},
	}
	cash := map[string]string{"roth": "1200.50", "k401": "0", "taxable": "25000"}
	free := map[string]string{"roth": "1200.50", "k401": "0", "taxable": "5000"} // taxable keeps 20000 in reserve
	for a, acct := range p.Accounts {
		if !b.Cash[a].Equal(dec(cash[acct.Name])) || !b.FreeCash(a).Equal(dec(free[acct.Name])) {
			t.Errorf("%s: cash %s free %s, want %s %s", acct.Name, b.Cash[a], b.FreeCash(a), cash[acct.Name], free[acct.Name])
		}
		if len(b.Qty[a]) != len(p.Instruments) {
			t.Fatalf("%s: %d quantities for %d instruments", acct.Name, len(b.Qty[a]), len(p.Instruments))
		}
		for i, in := range p.Instruments {
			want := decimal.Zero
			if s, ok := qty[acct.Name][in.Symbol]; ok {
				want = dec(s)
			}
			if !b.Qty[a][i].Equal(want) {
				t.Errorf("%s %s: quantity %s, want %s", acct.Name, in.Symbol, b.Qty[a][i], want)
			}
		}
	}
	for i, in := range p.Instruments {
		if !b.Price[i].Equal(q.Quotes[in.Symbol].Price) {
			t.Errorf("%s: price %s, want %s", in.Symbol, b.Price[i], q.Quotes[in.Symbol].Price)
		}
	}
	// Rows do not share capacity: appending to one cannot overwrite the next.
	if cap(b.Qty[0]) != len(p.Instruments) {
		t.Errorf("cap(Qty[0]) = %d, want %d", cap(b.Qty[0]), len(p.Instruments))
	}
}

func TestBindZeroTarget(t *testing.T) {
	p := loadPolicy(t, "testdata/policy_zero.good.yml")
	q := loadPrices(t, "testdata/prices_no_gold.good.yml")
	gld, _ := p.InstrumentIndex("GLD")

	// GLD is neither held (quantity 0) nor targeted (0% sleeve): no price
	// needed, and its price is zero.
	b, err := Bind(p, loadHoldings(t, "testdata/holdings_zero_gold.good.yml"), q)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Price[gld].IsZero() {
		t.Errorf("GLD price = %s, want 0", b.Price[gld])
	}
	// Cash below the reserve leaves no free cash, never a negative amount.
	if !b.FreeCash(0).IsZero() {
		t.Errorf("FreeCash = %s, want 0 (cash 100, reserve 500)", b.FreeCash(0))
	}

	// Held, GLD needs a price.
	_, err = Bind(p, loadHoldings(t, "testdata/holdings_zero_gold_held.good.yml"), q)
	if err == nil {
		t.Fatal("Bind accepted a held instrument without a price")
	}
	yamltest.Match(t, yamltest.Problems(t, err, ""), []string{"prices_no_gold.good.yml:3: prices.GLD: missing price for held instrument GLD"})
}

func TestBindErrors(t *testing.T) {
	tests := []struct {
		name             string
		holdings, prices string
		want             []string
	}{
		{
			"unknown account", "testdata/holdings_unknown_account.good.yml", examplePrices,
			[]string{`holdings_unknown_account.good.yml:6: accounts.ira: policy smith-household has no account "ira"`},
		},
		{
			"instrument without a sleeve", "testdata/holdings_unsleeved.good.yml", examplePrices,
			[]string{"holdings_unsleeved.good.yml:9: accounts.roth.positions.GME: instrument has no sleeve: policy smith-household does not list it under instruments"},
		},
		{
			"missing price, held", exampleHoldings, "testdata/prices_missing_held.good.yml",
			[]string{"prices_missing_held.good.yml:4: prices.VNQ: missing price for held instrument VNQ"},
		},
		{
			// The block mapping starts on its first entry's line, 5.
			"missing price, targeted", exampleHoldings, "testdata/prices_missing_targeted.good.yml",
			[]string{
				"prices_missing_targeted.good.yml:5: prices.TM-GROWTH: missing price for targeted instrument TM-GROWTH",
				"prices_missing_targeted.good.yml:5: prices.VMFXX: missing price for targeted instrument VMFXX",
			},
		},
		{
			// Every problem of both files at once, sorted by file and line.
			"all at once", "testdata/holdings_unknown_account.good.yml", "testdata/prices_missing_targeted.good.yml",
			[]string{
				`holdings_unknown_account.good.yml:6: accounts.ira: policy smith-household has no account "ira"`,
				"prices_missing_targeted.good.yml:5: prices.TM-GROWTH: missing price for targeted instrument TM-GROWTH",
				"prices_missing_targeted.good.yml:5: prices.VMFXX: missing price for targeted instrument VMFXX",
			},
		},
	}
	p := loadPolicy(t, examplePolicy)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Bind(p, loadHoldings(t, tt.holdings), loadPrices(t, tt.prices))
			if err == nil {
				t.Fatalf("Bind succeeded, want %d problems", len(tt.want))
			}
			if b != nil {
				t.Errorf("Bind returned a Book with its error")
			}
			yamltest.Match(t, yamltest.Problems(t, err, ""), tt.want)
		})
	}
}

// checkHoldings checks the invariants of parsed holdings.
func checkHoldings(t testing.TB, h *Holdings, file string) {
	t.Helper()
	if h.File != file {
		t.Fatalf("File = %q, want %q", h.File, file)
	}
	names := map[string]bool{}
	for _, a := range h.Accounts {
		if names[a.Name] || a.Line <= 0 || a.Cash.Sign() < 0 {
			t.Fatalf("account %+v (duplicate %v)", a, names[a.Name])
		}
		names[a.Name] = true
		symbols := map[string]bool{}
		for _, p := range a.Positions {
			if symbols[p.Instrument] || p.Line <= 0 || p.Quantity.Sign() < 0 {
				t.Fatalf("%s: position %+v", a.Name, p)
			}
			symbols[p.Instrument] = true
			checkLots(t, h, a.Name, p)
		}
	}
}

// checkLots checks the lots of a parsed position: each with a positive
// quantity, a basis that is not negative and a date not after the day of
// as_of, adding up to the position's quantity.
func checkLots(t testing.TB, h *Holdings, account string, p Position) {
	t.Helper()
	if p.Lots.Len() == 0 {
		return
	}
	sum := decimal.Zero
	for i := 0; i < p.Lots.Len(); i++ {
		l := p.Lots.Lot(i)
		if l.Quantity.Sign() <= 0 || l.Basis.Sign() < 0 || l.Acquired.IsZero() || l.Acquired.After(tax.DateOf(h.AsOf)) {
			t.Fatalf("%s %s: lot %d = %+v (as_of %v)", account, p.Instrument, i, l, h.AsOf)
		}
		sum = sum.Add(l.Quantity)
	}
	if !sum.Equal(p.Quantity) {
		t.Fatalf("%s %s: quantity %s, lots add up to %s", account, p.Instrument, p.Quantity, sum)
	}
}

// checkPrices checks the invariants of parsed prices.
func checkPrices(t testing.TB, q *Prices, file string) {
	t.Helper()
	if q.File != file || q.Line <= 0 || q.Quotes == nil {
		t.Fatalf("File %q Line %d Quotes %v", q.File, q.Line, q.Quotes)
	}
	for sym, quote := range q.Quotes {
		if quote.Price.Sign() <= 0 || !quote.At.Equal(q.AsOf) || quote.Line <= 0 {
			t.Fatalf("%s: %+v", sym, quote)
		}
	}
}

// seeds returns the example file and the testdata files with prefix, for
// a fuzz target's seed corpus.
func seeds(f *testing.F, example, prefix string) [][]byte {
	paths, _ := filepath.Glob("testdata/" + prefix + "*.yml")
	var out [][]byte
	for _, path := range append(paths, example) {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

// FuzzParseHoldings checks that ParseHoldings never panics, that what it
// accepts has no negative amount, and that what it refuses is reported as
// problems of the file.
func FuzzParseHoldings(f *testing.F) {
	for _, s := range seeds(f, exampleHoldings, "holdings_") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHoldings("fuzz.yml", data)
		if err != nil {
			if h != nil {
				t.Fatal("ParseHoldings returned holdings with its error")
			}
			yamltest.CheckFailure(t, err, "fuzz.yml", data)
			return
		}
		checkHoldings(t, h, "fuzz.yml")
	})
}

// FuzzParsePrices checks that ParsePrices never panics, that every price
// it accepts is positive, and that what it refuses is reported as problems
// of the file.
func FuzzParsePrices(f *testing.F) {
	for _, s := range seeds(f, examplePrices, "prices_") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		q, err := ParsePrices("fuzz.yml", data)
		if err != nil {
			if q != nil {
				t.Fatal("ParsePrices returned prices with its error")
			}
			yamltest.CheckFailure(t, err, "fuzz.yml", data)
			return
		}
		checkPrices(t, q, "fuzz.yml")
	})
}

// TestParseTrades: the trades list gives buys and loss sales; bad entries
// name their field and line.
func TestParseTrades(t *testing.T) {
	h, err := ParseHoldings("h.yaml", []byte(`as_of: 2026-11-20T21:00:00Z
accounts: {tx: {cash: "0"}}
trades:
  - {date: 2026-11-10, account: roth, instrument: VTI, side: buy, quantity: "10"}
  - {date: 2026-11-02, account: tx, instrument: VOO, side: sell}
`))
	if err != nil {
		t.Fatal(err)
	}
	b, s := h.Trades.Buys, h.Trades.LossSales
	if len(b) != 1 || b[0].Account != "roth" || b[0].Instrument != "VTI" || b[0].Date != tax.NewDate(2026, 11, 10) || !b[0].Quantity.Equal(decimal.NewFromInt(10)) ||
		len(s) != 1 || s[0].Instrument != "VOO" || s[0].Date != tax.NewDate(2026, 11, 2) || !s[0].Quantity.IsZero() {
		t.Errorf("trades = %+v", h.Trades)
	}
	_, err = ParseHoldings("h.yaml", []byte(`as_of: 2026-11-20T21:00:00Z
accounts: {tx: {cash: "0"}}
trades:
  - {date: 2026-11-21, account: roth, instrument: VTI, side: buy, quantity: "-1"}
  - {date: 2026-11-02, instrument: VOO, side: short}
`))
	for _, want := range []string{
		"h.yaml:4: trades[0].date: 2026-11-21 is after the day of as_of, 2026-11-20",
		"h.yaml:4: trades[0].quantity: must be positive, got -1",
		"h.yaml:5: trades[1].account: required field is missing",
		`h.yaml:5: trades[1].side: want buy or sell (a sale at a loss), got "short"`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
}
