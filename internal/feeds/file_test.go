package feeds

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml/yamltest"
)

func fetchFile(t *testing.T, path string) ([]Quote, error) {
	t.Helper()
	f, err := NewFileFetcher(path)
	if err != nil {
		t.Fatal(err)
	}
	return f.Fetch(context.Background())
}

func TestFileFetcherGood(t *testing.T) {
	tests := []struct {
		path string
		want []string
	}{
		{"testdata/prices.yaml", []string{
			"BND 72.15 2026-11-20T21:00:00Z",
			"VMFXX 1 2026-11-20T21:00:00Z",
			"VTI 285.12 2026-11-20T21:00:00Z",
		}},
		{"testdata/prices.csv", []string{
			"BND 72.15 2026-11-20T21:00:00Z",
			"BTC 67187.33 2026-11-20T20:04:05.5Z",
			"VTI 285.12 2026-11-20T21:00:00Z",
		}},
		{"testdata/prices_crlf_noheader.csv", []string{
			"BND 72.15 2026-11-20T21:00:00Z",
			"VTI 285.12 2026-11-20T21:00:00Z",
		}},
		{"../../configs/prices/example.yaml", []string{
			"BND 72.15 2026-11-20T21:00:00Z",
			"TM-BAL 1830.25 2026-11-20T21:00:00Z",
			"TM-GROWTH 96.1 2026-11-20T21:00:00Z",
			"TM-LARGE 41250 2026-11-20T21:00:00Z",
			"VMFXX 1 2026-11-20T21:00:00Z",
			"VNQ 88.9 2026-11-20T21:00:00Z",
			"VTI 285.12 2026-11-20T21:00:00Z",
			"VXUS 61.4 2026-11-20T21:00:00Z",
		}},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			got, err := fetchFile(t, tt.path)
			if err != nil {
				t.Fatal(err)
			}
			wantQuotes(t, got, tt.want...)
		})
	}
}

// badFiles lists, for each testdata/*.bad.*, every problem Fetch must
// report, in order.
var badFiles = map[string][]string{
	"bad_values.bad.csv": {
		"testdata/bad_values.bad.csv:3: price: price must be positive, got 0",
		"testdata/bad_values.bad.csv:4: price: price must be positive, got -61.4",
		`testdata/bad_values.bad.csv:5: price: "8.89e1" is not a plain decimal number`,
		`testdata/bad_values.bad.csv:6: price: "1,900.00" is not a plain decimal number`,
		`testdata/bad_values.bad.csv:7: time: want an RFC 3339 time like 2026-11-20T21:00:00Z, got "2026-11-20 21:04"`,
		"testdata/bad_values.bad.csv:8: symbol: duplicate symbol VTI (first at line 2)",
		"testdata/bad_values.bad.csv:9: symbol: symbol is empty",
	},
	"bad_fields.bad.csv": {
		"testdata/bad_fields.bad.csv:2: want 3 fields (symbol,price,time), got 2",
		"testdata/bad_fields.bad.csv:3: want 3 fields (symbol,price,time), got 4",
	},
	"bad_quote.bad.csv": {
		`testdata/bad_quote.bad.csv:3: bare " in non-quoted-field (column 7)`,
	},
	"empty.bad.csv": {
		"testdata/empty.bad.csv: no quotes",
	},
	"zero.bad.yaml": {
		"testdata/zero.bad.yaml:4: prices.VTI: price must be positive, got 0",
	},
	"empty.bad.yml": {
		"testdata/empty.bad.yml:2: prices: no quotes",
	},
}

func TestFileFetcherBad(t *testing.T) {
	yamltest.BadFiles(t, "testdata/*.bad.*", badFiles, func(path, name string, data []byte) (error, bool) {
		got, err := fetchFile(t, path)
		if err != nil {
			yamltest.CheckFailure(t, err, path, data)
		}
		return err, got != nil
	})
}

func TestFileFetcherErrors(t *testing.T) {
	if _, err := NewFileFetcher("prices.json"); err == nil || !strings.Contains(err.Error(), `unknown extension ".json"`) {
		t.Errorf("NewFileFetcher(prices.json) = %v, want an unknown extension error", err)
	}
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.csv")
	if _, err := fetchFile(t, missing); err == nil || !os.IsNotExist(err) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Fetch of a missing file = %v, want a not-exist error naming it", err)
	}
	big := filepath.Join(dir, "big.csv")
	line := "VTI,285.12,2026-11-20T21:00:00Z\n"
	if err := os.WriteFile(big, []byte(strings.Repeat(line, strictyaml.MaxFileSize/len(line)+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := fetchFile(t, big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Fetch of a too large file = %v, want a size error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f, _ := NewFileFetcher("testdata/prices.csv")
	if _, err := f.Fetch(ctx); err == nil {
		t.Error("Fetch with a cancelled context succeeded")
	}
}

// TestFileFetcherRereads checks that every Fetch reads the file again.
func TestFileFetcherRereads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prices.yml")
	write := func(price string) {
		t.Helper()
		data := "as_of: 2026-11-20T21:00:00Z\nprices: {VTI: \"" + price + "\"}\n"
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f, err := NewFileFetcher(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, price := range []string{"285.12", "286.5", "0"} {
		write(price)
		got, err := f.Fetch(context.Background())
		if price == "0" {
			if err == nil || !strings.Contains(err.Error(), path+":2: prices.VTI: price must be positive") {
				t.Errorf("Fetch after writing a zero price = %v, %v", got, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		wantQuotes(t, got, "VTI "+price+" 2026-11-20T21:00:00Z")
	}
}

// FuzzParseCSV checks that parseCSV never panics, that what it accepts is
// valid (a usable symbol once, a positive price, a time) and that what it
// refuses is explained by problems naming the file and a line within it.
func FuzzParseCSV(f *testing.F) {
	for _, name := range []string{"prices.csv", "prices_crlf_noheader.csv", "bad_values.bad.csv", "bad_fields.bad.csv", "bad_quote.bad.csv"} {
		f.Add(readTestdata(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		quotes, err := parseCSV("fuzz.csv", data)
		if err != nil {
			if quotes != nil {
				t.Fatal("parseCSV returned quotes with its error")
			}
			yamltest.CheckFailure(t, err, "fuzz.csv", data)
			return
		}
		if len(quotes) == 0 {
			t.Fatal("parseCSV accepted a file without quotes")
		}
		seen := map[string]bool{}
		for _, q := range quotes {
			if err := checkSymbol(q.Symbol); err != nil || seen[q.Symbol] {
				t.Fatalf("bad or repeated symbol %q (%v)", q.Symbol, err)
			}
			seen[q.Symbol] = true
			if q.Price.Sign() <= 0 || q.At.IsZero() {
				t.Fatalf("accepted quote %+v", q)
			}
		}
	})
}
