package history

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

func known(names ...string) func(string) bool {
	return func(s string) bool {
		for _, n := range names {
			if n == s {
				return true
			}
		}
		return false
	}
}

func TestReadGood(t *testing.T) {
	in := "date,VTI,BND\n2020-01-01,100,50\n2020-01-02,,51.5\n2020-02-01,101.25,\n2020-03-01,99,52\n"
	s, err := Read("h.csv", strings.NewReader(in), known("VTI", "BND"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.Instruments, ","); got != "VTI,BND" {
		t.Fatalf("instruments %s", got)
	}
	if len(s.Rows) != 4 || s.Rows[1].Present[0] || !s.Rows[1].Present[1] || s.Rows[1].Line != 3 {
		t.Fatalf("rows %+v", s.Rows)
	}
	if !s.Rows[2].Prices[0].Equal(decimal.RequireFromString("101.25")) {
		t.Fatalf("price %s", s.Rows[2].Prices[0])
	}
	from, to, cover, ok := s.Span()
	if !ok || from.Format(DateLayout) != "2020-01-01" || to.Format(DateLayout) != "2020-03-01" {
		t.Fatalf("span %v %v %v", from, to, ok)
	}
	if cover[0].Last.Format(DateLayout) != "2020-03-01" || cover[1].First.Format(DateLayout) != "2020-01-01" {
		t.Fatalf("cover %+v", cover)
	}
	var out bytes.Buffer
	if err := s.Write(&out); err != nil {
		t.Fatal(err)
	}
	if out.String() != in {
		t.Fatalf("round trip:\n%s\nwant\n%s", out.String(), in)
	}
}

func TestReadRefuses(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"empty", "", "h.csv: empty file"},
		{"no date column", "day,VTI\n2020-01-01,1\n", "h.csv:1: the first column must be `date`"},
		{"unknown instrument", "date,VTI,XYZ\n2020-01-01,1,2\n", `h.csv:1: column "XYZ" names no instrument of the policy`},
		{"duplicate column", "date,VTI,VTI\n2020-01-01,1,2\n", `h.csv:1: column "VTI" appears twice`},
		{"zero price", "date,VTI\n2020-01-01,1\n2020-01-02,0\n", `h.csv:3: column "VTI": price 0 must be positive`},
		{"negative price", "date,VTI\n2020-01-01,-1\n", `h.csv:2: column "VTI": price -1 must be positive`},
		{"malformed price", "date,VTI\n2020-01-01,1O0\n", `h.csv:2: column "VTI": "1O0" is not a plain decimal number`},
		{"exponent", "date,VTI\n2020-01-01,1e39\n", `h.csv:2: column "VTI": "1e39" is not a plain decimal number`},
		{"overlong", "date,VTI\n2020-01-01," + strings.Repeat("9", 100) + "\n", `h.csv:2: column "VTI": number`},
		{"bad date", "date,VTI\n01/02/2020,1\n", `h.csv:2: date "01/02/2020": want YYYY-MM-DD`},
		{"dates out of order", "date,VTI\n2020-02-01,1\n2020-01-01,1\n", "h.csv:3: date 2020-01-01 is not after 2020-02-01 (line 2)"},
		{"repeated date", "date,VTI\n2020-02-01,1\n2020-02-01,1\n", "h.csv:3: date 2020-02-01 is not after"},
		{"short row", "date,VTI,BND\n2020-02-01,1\n", "wrong number of fields"},
		{"header only", "date,VTI\n", "h.csv: no dated rows"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Read("h.csv", strings.NewReader(c.in), known("VTI", "BND"))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestSpanAndCarry(t *testing.T) {
	in := "date,A,B\n2020-01-01,1,\n2020-01-02,2,\n2020-02-01,3,10\n2020-02-02,4,\n2020-03-01,,11\n"
	s, err := Read("h.csv", strings.NewReader(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	from, to, cover, ok := s.Span()
	if !ok || from.Format(DateLayout) != "2020-02-01" || to.Format(DateLayout) != "2020-02-01" {
		t.Fatalf("span %v..%v ok=%v", from, to, ok)
	}
	if cover[1].First.Format(DateLayout) != "2020-02-01" || cover[0].Last.Format(DateLayout) != "2020-02-02" {
		t.Fatalf("cover %+v", cover)
	}
	c := s.Carry()
	if c.Rows[0].Present[1] {
		t.Fatal("carry invented a price before B's first one")
	}
	if !c.Rows[3].Present[1] || !c.Rows[3].Prices[1].Equal(decimal.NewFromInt(10)) || !c.Rows[4].Prices[0].Equal(decimal.NewFromInt(4)) {
		t.Fatalf("carried rows %+v", c.Rows)
	}
	if s.Rows[3].Present[1] {
		t.Fatal("Carry changed its receiver")
	}
	from, to, _, _ = c.Span()
	if from.Format(DateLayout) != "2020-02-01" || to.Format(DateLayout) != "2020-03-01" {
		t.Fatalf("carried span %v..%v", from, to)
	}
}

func d(s string) time.Time { t, _ := time.Parse(DateLayout, s); return t }

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func TestEquityTotalReturn(t *testing.T) {
	price := []Point{{d("2000-01-01"), dec("100")}, {d("2000-02-01"), dec("110")}, {d("2000-03-01"), dec("99")}, {d("2000-04-01"), dec("120")}}
	div := []Point{{d("2000-01-01"), dec("12")}, {d("2000-02-01"), dec("12")}, {d("2000-03-01"), dec("24")}}
	got := EquityTotalReturn(price, div)
	// Hand-computed: 100; 100×(110+1)/100 = 111; 111×(99+2)/110 = 101.918181…,
	// rounded to 101.918182; April has no dividend, so the index stops.
	want := []string{"100", "111", "101.918182"}
	if len(got) != len(want) {
		t.Fatalf("got %d points %v, want %d", len(got), got, len(want))
	}
	for i, w := range want {
		if !got[i].Value.Equal(dec(w)) {
			t.Errorf("month %d: %s, want %s", i, got[i].Value, w)
		}
	}
}

func TestParBondPrice(t *testing.T) {
	// A bond whose coupon equals its yield is priced at par.
	for _, y := range []string{"0.01", "0.05", "0.1532"} {
		p := parBondPrice(dec(y), dec(y), 119)
		if p.Sub(decimal.NewFromInt(1)).Abs().GreaterThan(dec("1e-18")) {
			t.Errorf("coupon = yield = %s: price %s, want 1", y, p)
		}
	}
	// A rise of 10 basis points costs about the modified duration (~7.8
	// years for a 10-year bond at 5%) times 0.001.
	p := parBondPrice(dec("0.05"), dec("0.051"), 119)
	if loss := decimal.NewFromInt(1).Sub(p); loss.LessThan(dec("0.0074")) || loss.GreaterThan(dec("0.0080")) {
		t.Errorf("price at +10bp %s: loss %s, want about 0.0077", p, loss)
	}
	// Zero yield: the coupons and the face, undiscounted.
	if p := parBondPrice(dec("0.012"), decimal.Zero, 10); !p.Equal(dec("1.01")) {
		t.Errorf("zero yield: %s, want 1.01", p)
	}
}

func TestBondTotalReturnConstantYield(t *testing.T) {
	// At a constant 6% yield the index earns the coupon, 0.5% a month.
	var y []Point
	for m := range 13 {
		y = append(y, Point{d("2000-01-01").AddDate(0, m, 0), dec("6")})
	}
	got := BondTotalReturn(y)
	want := dec("100").Mul(dec("1.005").Pow(decimal.NewFromInt(12)))
	if len(got) != 13 || got[12].Value.Sub(want).Abs().GreaterThan(dec("0.00001")) {
		t.Fatalf("after a year %v, want %s", got[len(got)-1], want)
	}
}

// TestShippedHistoriesAreGenerated regenerates configs/examples/backtest
// from configs/history/source and compares byte for byte, so the shipped
// files cannot drift from the documented method.
func TestShippedHistoriesAreGenerated(t *testing.T) {
	root := filepath.Join("..", "..")
	src, err := LoadSources(os.DirFS(filepath.Join(root, "configs", "history", "source")))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range Examples {
		var buf bytes.Buffer
		if err := src.WriteExample(e, &buf); err != nil {
			t.Fatal(err)
		}
		shipped, err := os.ReadFile(filepath.Join(root, "configs", "examples", "backtest", e.Name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), shipped) {
			t.Errorf("%s differs from what the sources give: run go generate ./internal/history", e.Name)
		}
		s, err := Read(e.Name, bytes.NewReader(shipped), nil)
		if err != nil {
			t.Fatalf("shipped %s does not read back: %v", e.Name, err)
		}
		if _, _, _, ok := s.Span(); !ok {
			t.Errorf("%s has no date with every price", e.Name)
		}
	}
}

func TestShillerZeroMeansMissing(t *testing.T) {
	in := "Date,SP500,Dividend\n2023-05-01,4146.17,68.54\n2023-07-01,4508.07,0.0\n"
	got, err := ReadColumns("s.csv", strings.NewReader(in), true, "SP500", "Dividend")
	if err != nil {
		t.Fatal(err)
	}
	if len(got["Dividend"]) != 1 || len(got["SP500"]) != 2 {
		t.Fatalf("got %v", got)
	}
	if _, err := ReadColumns("s.csv", strings.NewReader(in), false, "SP500", "Dividend"); err == nil || !strings.Contains(err.Error(), `s.csv:3: column "Dividend": 0 must be positive`) {
		t.Fatalf("zero not refused without zeroIsMissing: %v", err)
	}
	if _, err := ReadColumns("s.csv", strings.NewReader(in), true, "Price"); err == nil || !strings.Contains(err.Error(), `no column "Price"`) {
		t.Fatalf("missing column: %v", err)
	}
}
