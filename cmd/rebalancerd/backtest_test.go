package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	backtestPolicy  = "../../configs/examples/backtest/balanced.yaml"
	backtestHistory = "../../configs/examples/backtest/history-1975-2023.csv"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestBacktestJSONIsDeterministic(t *testing.T) {
	args := []string{"backtest", "-policy", backtestPolicy, "-history", backtestHistory, "-initial", "100000", "-compare", "-json",
		"-fee-bps", "5", "-slippage-bps", "10"}
	code, first, stderr := runCmd(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	_, second, _ := runCmd(t, args...)
	if first != second {
		t.Fatal("the same inputs gave different JSON")
	}
	var out struct {
		From, To    string
		Instruments []struct{ Symbol, First, Last string }
		Variants    []map[string]any
	}
	if err := json.Unmarshal([]byte(first), &out); err != nil {
		t.Fatal(err)
	}
	if out.From != "1975-01-01" || out.To != "2023-06-01" || len(out.Instruments) != 4 {
		t.Fatalf("span %s..%s, %d instruments", out.From, out.To, len(out.Instruments))
	}
	var names []string
	for _, v := range out.Variants {
		names = append(names, v["name"].(string))
		for _, k := range []string{"trigger", "final_value", "cagr", "volatility", "max_drawdown", "tracking_error", "rebalances",
			"orders", "turnover", "costs", "realized_gains", "days_out_of_band"} {
			if _, ok := v[k]; !ok {
				t.Errorf("variant %v has no %q", v["name"], k)
			}
		}
		if _, ok := v["final_value"].(string); !ok {
			t.Errorf("final_value is not a decimal string: %v", v["final_value"])
		}
		if c, _ := v["costs"].(string); c == "0" || c == "" {
			t.Errorf("variant %v: costs %q with fees and slippage", v["name"], c)
		}
	}
	if got := strings.Join(names, ","); got != "policy,buy_and_hold,monthly,quarterly,annual,threshold,hybrid_quarterly" {
		t.Fatalf("variants %s", got)
	}
}

func TestBacktestRefusals(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no history", []string{"-policy", backtestPolicy, "-initial", "1000"}, exitUsage, "-policy and -history are required"},
		{"both starts", []string{"-policy", backtestPolicy, "-history", backtestHistory, "-initial", "1", "-holdings", "x"}, exitUsage, "one of -holdings and -initial"},
		{"bad initial", []string{"-policy", backtestPolicy, "-history", backtestHistory, "-initial", "-5"}, exitUsage, "-initial"},
		{"bad date", []string{"-policy", backtestPolicy, "-history", backtestHistory, "-initial", "1000", "-from", "1/2/2000"}, exitUsage, "-from"},
		{"bad fee", []string{"-policy", backtestPolicy, "-history", backtestHistory, "-initial", "1000", "-fee-bps", "1e3"}, exitUsage, "-fee-bps"},
		{"unknown column", []string{"-policy", backtestPolicy, "-initial", "1000", "-history",
			write("u.csv", "date,SPX-TR,UST10-TR,US-HOME,GOLD,XYZ\n2000-01-01,1,1,1,1,1\n")}, exitInvalid, `u.csv:1: column "XYZ" names no instrument of the policy`},
		{"non-positive price", []string{"-policy", backtestPolicy, "-initial", "1000", "-history",
			write("n.csv", "date,SPX-TR,UST10-TR,US-HOME,GOLD\n2000-01-01,1,1,1,1\n2000-02-01,1,0,1,1\n")}, exitInvalid, `n.csv:3: column "UST10-TR": price 0 must be positive`},
		{"malformed price", []string{"-policy", backtestPolicy, "-initial", "1000", "-history",
			write("m.csv", "date,SPX-TR,UST10-TR,US-HOME,GOLD\n2000-01-01,1,1,1,x\n")}, exitInvalid, `m.csv:2: column "GOLD": "x" is not a plain decimal number`},
		{"dates out of order", []string{"-policy", backtestPolicy, "-initial", "1000", "-history",
			write("o.csv", "date,SPX-TR,UST10-TR,US-HOME,GOLD\n2000-02-01,1,1,1,1\n2000-01-01,1,1,1,1\n")}, exitInvalid, "o.csv:3: date 2000-01-01 is not after 2000-02-01"},
		{"no complete date", []string{"-policy", backtestPolicy, "-initial", "1000", "-history",
			write("g.csv", "date,SPX-TR,UST10-TR,US-HOME,GOLD\n2000-01-01,1,1,1,\n2000-02-01,1,1,,1\n")}, exitInvalid, "use -carry"},
		{"missing instrument", []string{"-policy", backtestPolicy, "-initial", "1000", "-history",
			write("i.csv", "date,SPX-TR,UST10-TR,US-HOME\n2000-01-01,1,1,1\n")}, exitInvalid, "no column for instrument GOLD"},
		{"not a regular file", []string{"-policy", backtestPolicy, "-initial", "1000", "-history", dir}, exitInvalid, "not a regular file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runCmd(t, append([]string{"backtest"}, c.args...)...)
			if code != c.code || !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr, c.code, c.want)
			}
		})
	}
}

func TestBacktestCarrySaysSo(t *testing.T) {
	code, out, stderr := runCmd(t, "backtest", "-policy", "../../configs/examples/backtest/crypto.yaml",
		"-history", "../../configs/examples/backtest/history-2014-2021-crypto.csv", "-initial", "100000", "-carry")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"2014-10-01 to 2021-08-24 (missing prices carried forward)", "instruments priced on different spans: BTC 2014-09-17..2021-08-24"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCmd(t, "backtest", "-policy", "../../configs/examples/backtest/crypto.yaml",
		"-history", "../../configs/examples/backtest/history-2014-2021-crypto.csv", "-initial", "100000")
	if code != 0 || !strings.Contains(out, "2014-10-01 to 2021-08-01, fee") {
		t.Fatalf("without -carry the span ends at the last date with every price:\n%s", out)
	}
}

func TestBacktestReport(t *testing.T) {
	report := filepath.Join(t.TempDir(), "report.html")
	code, _, stderr := runCmd(t, "backtest", "-policy", backtestPolicy, "-history", backtestHistory, "-initial", "100000", "-compare", "-report", report)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	page := string(data)
	for _, id := range []string{`id="figures"`, `id="value"`, `id="value-log"`, `id="allocation"`, `class="drift"`, `id="trades"`, "What a backtest does not prove"} {
		if !strings.Contains(page, id) {
			t.Errorf("report lacks %s", id)
		}
	}
	for _, banned := range []string{"<script", "http://", "https://", "@import", "url("} {
		if banned == "http://" {
			page = strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, "")
		}
		if strings.Contains(page, banned) {
			t.Errorf("report is not self-contained: it has %q", banned)
		}
	}
}

// TestBacktestFromHoldings starts from a holdings file instead of cash: its
// positions are valued at the first date's prices and rebalanced by the
// policy, and its accounts must be the policy's.
func TestBacktestFromHoldings(t *testing.T) {
	dir := t.TempDir()
	holdings := filepath.Join(dir, "h.yaml")
	// All in equities at the start: 1,000 units at 100 and 5,000 in cash.
	if err := os.WriteFile(holdings, []byte("as_of: 1975-01-01T00:00:00Z\naccounts:\n  taxable: {cash: \"5000\", positions: {SPX-TR: \"1000\"}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCmd(t, "backtest", "-policy", backtestPolicy, "-history", backtestHistory, "-holdings", holdings, "-to", "1975-12-01", "-json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res struct {
		To       string
		Variants []struct {
			Rebalances int    `json:"rebalances"`
			Orders     int    `json:"orders"`
			FinalValue string `json:"final_value"`
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.To != "1975-12-01" || len(res.Variants) != 1 || res.Variants[0].Rebalances < 1 || res.Variants[0].Orders < 2 {
		t.Fatalf("from an all-equities household the policy must rebalance: %+v", res)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("as_of: 1975-01-01T00:00:00Z\naccounts:\n  roth: {cash: \"5000\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCmd(t, "backtest", "-policy", backtestPolicy, "-history", backtestHistory, "-holdings", bad); code != exitInvalid || !strings.Contains(stderr, "bad.yaml") {
		t.Fatalf("holdings with an account the policy lacks: exit %d, %q", code, stderr)
	}
}
