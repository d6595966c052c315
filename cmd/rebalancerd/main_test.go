package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const (
	examplePolicy   = "../../configs/policies/example.yaml"
	exampleHoldings = "../../configs/holdings/example.yaml"
	examplePrices   = "../../configs/prices/example.yaml"
)

// run calls Run as the binary would and returns the exit code and output.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// planGolden runs `plan` with args, as text and as JSON, and compares
// each with its golden file (name.txt, name.json).
func planGolden(t *testing.T, args []string, name string) (text, jsonText string) {
	t.Helper()
	for _, f := range []struct {
		extra []string
		out   *string
		file  string
	}{{nil, &text, name + ".txt"}, {[]string{"-json"}, &jsonText, name + ".json"}} {
		code, out, errOut := run(t, append(args, f.extra...)...)
		if code != exitOK {
			t.Fatalf("plan %v: exit %d: %s", f.extra, code, errOut)
		}
		golden(t, f.file, out)
		*f.out = out
	}
	return text, jsonText
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run with -update after checking it):\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestCheckValid(t *testing.T) {
	code, out, errOut := run(t, "check", "-policy", examplePolicy, "-holdings", exampleHoldings, "-prices", examplePrices)
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if lines := strings.Count(out, "\n"); lines != 1 || !strings.Contains(out, "policy smith-household") || !strings.Contains(out, "is valid") {
		t.Errorf("want a one-line summary, got %q", out)
	}
	// check says which zone dates are counted in: the example's schedule
	// has CRON_TZ=America/New_York.
	if !strings.Contains(out, "; investor time zone America/New_York (rebalance.schedule's CRON_TZ)") {
		t.Errorf("the summary does not say the investor's time zone: %q", out)
	}
}

// TestCheckInvalid: every problem of every file is printed at once, each
// with file, line and field, and the exit code is 1.
func TestCheckInvalid(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	hold := filepath.Join(dir, "holdings.yaml")
	data, err := os.ReadFile(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data), "equities: 55%", "equities: 60%", 1)
	bad = strings.Replace(bad, `schedule: "CRON_TZ=America/New_York 0 10 * * MON-FRI"`, `schedule: "@quarterly"`, 1)
	if err := os.WriteFile(pol, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hold, []byte("as_of: 2026-11-20T21:00:00Z\naccounts:\n  roth: {cash: \"-5\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run(t, "check", "-policy", pol, "-holdings", hold)
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitInvalid, errOut)
	}
	for _, want := range []string{
		pol + ":5: targets: level sums to 105%, want 100%",
		pol + `:22: rebalance.schedule: "@quarterly": @quarterly does not exist in cron; write "0 0 1 1,4,7,10 *"`,
		hold + ":3: accounts.roth.cash: must not be negative",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"bogus"}, {"plan", "-policy", examplePolicy}, {"check"}, {"plan", "-destination", "x", "-policy", examplePolicy, "-holdings", exampleHoldings, "-prices", examplePrices}} {
		if code, _, _ := run(t, args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
	}
	if code, out, _ := run(t, "help"); code != exitOK || !strings.Contains(out, "rebalancerd plan") {
		t.Errorf("help: exit %d, output %q", code, out)
	}
}

func TestPlanText(t *testing.T) {
	code, out, errOut := run(t, "plan", "-policy", examplePolicy, "-holdings", exampleHoldings, "-prices", examplePrices)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	golden(t, "example.plan.txt", out)
}

// TestPlanJSON checks the JSON form's fields and that two runs print
// byte-identical output.
func TestPlanJSON(t *testing.T) {
	args := []string{"plan", "-json", "-policy", examplePolicy, "-holdings", exampleHoldings, "-prices", examplePrices}
	code, out, errOut := run(t, args...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if _, again, _ := run(t, args...); again != out {
		t.Fatal("two runs differ")
	}
	golden(t, "example.plan.json", out)
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"policy", "policy_version", "as_of", "total_value", "sleeves", "orders", "unresolved"} {
		if _, ok := doc[key]; !ok {
			t.Errorf("JSON lacks %q", key)
		}
	}
	var p struct {
		Total   string `json:"total_value"`
		Sleeves []struct {
			Sleeve, Target, Weight, Deviation, BandLow, BandHigh string
			Breach                                               bool
		} `json:"sleeves"`
		Orders []struct {
			OrderID, Account, Instrument, Side, Quantity, Price, Notional, Sleeve string
			Phase                                                                 int
		} `json:"orders"`
		Unresolved []json.RawMessage `json:"unresolved"`
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	if p.Total != "203706.9" || len(p.Sleeves) != 8 || len(p.Orders) == 0 || p.Unresolved == nil {
		t.Errorf("unexpected plan: total %s, %d sleeves, %d orders, unresolved %v", p.Total, len(p.Sleeves), len(p.Orders), p.Unresolved)
	}
}

// TestBinary builds the real binary and runs the README's first command.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "rebalancerd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "plan", "-json", "-policy", examplePolicy, "-holdings", exampleHoldings, "-prices", examplePrices).Output()
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	want, err := os.ReadFile("testdata/example.plan.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, want) {
		t.Error("the binary's output differs from the golden plan")
	}
	cmd := exec.Command(bin, "check", "-policy", "testdata/does-not-exist.yaml")
	if err := cmd.Run(); cmd.ProcessState.ExitCode() != exitInvalid {
		t.Errorf("check of a missing file: %v, exit %d", err, cmd.ProcessState.ExitCode())
	}
}

const (
	glidePolicy   = "../../configs/examples/glidepath.yaml"
	glideHoldings = "../../configs/examples/glidepath-holdings.yaml"
	glidePrices   = "../../configs/examples/glidepath-prices.yaml"
)

// TestPlanGlidePath plans the glide path example on its holdings' date:
// the text names the glide path rows and the active tilt, the JSON
// carries the explanation, and the targets are the effective ones
// (worked out by hand in internal/targets TestGlideExample).
func TestPlanGlidePath(t *testing.T) {
	base := []string{"plan", "-policy", glidePolicy, "-holdings", glideHoldings, "-prices", glidePrices, "-at", "2026-11-20T21:00:00Z"}
	out, outJSON := planGolden(t, base, "glidepath.plan")
	for _, want := range []string{
		"targets for 2026-11-20: glide path between the rows of age 35 (line 35) and age 50 (line 41), 10.37% of the way",
		"tilt active: crypto +2.00% until 2027-03-31 (from equities, bonds): post-halving momentum",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}

	var doc struct {
		PolicyVersion string `json:"policy_version"`
		Sleeves       []struct{ Sleeve, Target string }
		Strategy      *struct {
			Date  string
			Glide *struct {
				FromAge int    `json:"from_age"`
				ToAge   int    `json:"to_age"`
				Age     string `json:"age"`
			} `json:"glide_path"`
			Active  []struct{ Sleeve, Tilt, Applied, Until string } `json:"active_tilts"`
			Expired []json.RawMessage                               `json:"expired_tilts"`
		} `json:"strategy"`
	}
	if err := json.Unmarshal([]byte(outJSON), &doc); err != nil {
		t.Fatal(err)
	}
	s := doc.Strategy
	if s == nil || s.Date != "2026-11-20" || s.Glide == nil || s.Glide.FromAge != 35 || s.Glide.ToAge != 50 || s.Glide.Age != "36.556164" ||
		len(s.Active) != 1 || s.Active[0].Sleeve != "crypto" || s.Active[0].Applied != "0.02" || s.Expired == nil {
		t.Errorf("strategy = %+v", s)
	}
	if len(doc.Sleeves) != 7 || doc.Sleeves[2].Sleeve != "crypto" || doc.Sleeves[2].Target != "0.20962557" {
		t.Errorf("sleeves = %+v, want crypto at the effective 0.20962557", doc.Sleeves)
	}
	if !strings.Contains(doc.PolicyVersion, "-") {
		t.Errorf("policy_version %q does not name the effective targets", doc.PolicyVersion)
	}

	// After the tilt's until day: it is listed as expired, and the
	// targets (and so the version) change.
	code, later, _ := run(t, "plan", "-policy", glidePolicy, "-holdings", glideHoldings, "-prices", glidePrices, "-at", "2027-04-01")
	if code != exitOK || !strings.Contains(later, "tilt expired: crypto +2.00% ended 2027-03-31: post-halving momentum") ||
		strings.Contains(later, "tilt active") || strings.Contains(later, doc.PolicyVersion) {
		t.Errorf("2027-04-01: exit %d\n%s", code, later)
	}
}

// TestPlanTax plans the tax example (configs/examples/tax.yaml, worked
// out in its comments): the text and JSON show each sell's lots, the
// gains, the lot held back and the harvest.
func TestPlanTax(t *testing.T) {
	base := []string{"plan", "-policy", "../../configs/examples/tax.yaml", "-holdings", "../../configs/examples/lots-holdings.yaml",
		"-prices", "../../configs/examples/tax-prices.yaml", "-at", "2026-11-20T21:00:00Z"}
	out, outJSON := planGolden(t, base, "tax.plan")
	for _, want := range []string{
		"long-term gains 192.00, losses 1970.00; net -1778.00 USD",
		"held back: taxable 20 VXUS: 20 of 50 not sold: 20 waits until 2026-11-26",
		"taxable  sell  200       BND         72.15    14430.00  bonds             harvest",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}

	var doc struct {
		Orders []struct {
			ID               string `json:"order_id"`
			Instrument, Rule string
			Lots             []struct{ Lot int }
		}
		Tax *struct {
			TradeDate string `json:"trade_date"`
			Net       string
			Gains     struct {
				LongTermLosses string `json:"long_term_losses"`
			}
		}
	}
	if err := json.Unmarshal([]byte(outJSON), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Tax == nil || doc.Tax.TradeDate != "2026-11-20" || doc.Tax.Net != "-1778" || doc.Tax.Gains.LongTermLosses != "1970" {
		t.Errorf("tax = %+v", doc.Tax)
	}
	lots := 0
	for _, o := range doc.Orders {
		lots += len(o.Lots)
		// One numbering: the text's LOT column is the JSON's lot (the
		// index in the holdings file, from 0); it was one more before.
		for _, l := range o.Lots {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(o.ID) + `\s+` + fmt.Sprint(l.Lot) + `\s`).MatchString(out) {
				t.Errorf("the text does not number lot %d of %s as the JSON does:\n%s", l.Lot, o.ID, out)
			}
		}
	}
	if lots != 2 {
		t.Errorf("%d lots in the orders, want 2 (VXUS and the harvested BND)", lots)
	}
}

// TestPlanAtDefault: without -at the command plans at its clock's time,
// and -at takes a date alone as midnight UTC.
func TestPlanAtDefault(t *testing.T) {
	files := []string{"-policy", glidePolicy, "-holdings", glideHoldings, "-prices", glidePrices}
	var fromClock bytes.Buffer
	cmd := &PlanCommand{Stdout: &fromClock, Now: func() time.Time { return time.Date(2026, 11, 20, 21, 0, 0, 0, time.UTC) }}
	if err := cmd.Run(context.Background(), files); err != nil {
		t.Fatal(err)
	}
	_, fromFlag, _ := run(t, append([]string{"plan", "-at", "2026-11-20"}, files...)...)
	if fromClock.String() != fromFlag {
		t.Errorf("the clock's time and -at of the same day differ:\n%s\n%s", fromClock.String(), fromFlag)
	}
	// The example without a glide path plans the same whatever the date.
	_, a, _ := run(t, "plan", "-at", "2001-01-01", "-policy", examplePolicy, "-holdings", exampleHoldings, "-prices", examplePrices)
	want, err := os.ReadFile("testdata/example.plan.txt")
	if err != nil || a != string(want) {
		t.Errorf("example with -at differs from its golden plan (%v)", err)
	}
	for _, bad := range []string{"yesterday", "2026-13-01", "20.11.2026"} {
		code, _, errOut := run(t, append([]string{"plan", "-at", bad}, files...)...)
		if code != exitUsage || !strings.Contains(errOut, "-at") {
			t.Errorf("-at %s: exit %d, stderr %q", bad, code, errOut)
		}
	}
	// A date before the investor's birth is refused.
	code, _, errOut := run(t, append([]string{"plan", "-at", "1980-01-01"}, files...)...)
	if code != exitInvalid || !strings.Contains(errOut, "before the investor's birth date 1990-05-01") {
		t.Errorf("-at 1980-01-01: exit %d, stderr %q", code, errOut)
	}
}

// TestPlanCashFlow plans a deposit and a withdrawal on the tax example:
// the deposit into the Roth only buys (rule invest) and says what deposit
// would bring every sleeve inside its band; the withdrawal from the
// taxable account only sells there (rule withdraw), losses first.
func TestPlanCashFlow(t *testing.T) {
	base := []string{"plan", "-policy", "../../configs/examples/tax.yaml", "-holdings", "../../configs/examples/lots-holdings.yaml",
		"-prices", "../../configs/examples/tax-prices.yaml", "-at", "2026-11-20T21:00:00Z"}
	out, outJSON := planGolden(t, append(base, "-deposit", "20000", "-account", "roth"), "cashflow-deposit.plan")
	if !strings.Contains(out, "deposit to return inside the bands without selling: ") || strings.Contains(out, " sell ") {
		t.Errorf("deposit output:\n%s", out)
	}
	var doc struct {
		Orders   []struct{ Side, Rule string }
		CashFlow *struct {
			Kind           string
			DepositToBands *string `json:"deposit_to_bands"`
		} `json:"cash_flow"`
	}
	if err := json.Unmarshal([]byte(outJSON), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.CashFlow == nil || doc.CashFlow.Kind != "invest" || doc.CashFlow.DepositToBands == nil || len(doc.Orders) == 0 {
		t.Errorf("deposit JSON: %+v", doc)
	}
	for _, o := range doc.Orders {
		if o.Side != "buy" || o.Rule != "invest" {
			t.Errorf("deposit order %+v", o)
		}
	}

	out, outJSON = planGolden(t, append(base, "-withdraw", "10000", "-account", "taxable"), "cashflow-withdraw.plan")
	if !strings.Contains(out, "cash flow: withdraw 10000.00 USD from taxable without buying") || !strings.Contains(out, "withdrawn 10000.00, short 0.00") {
		t.Errorf("withdraw output:\n%s", out)
	}
	doc.Orders = nil
	if err := json.Unmarshal([]byte(outJSON), &doc); err != nil {
		t.Fatal(err)
	}
	for _, o := range doc.Orders {
		if o.Side != "sell" || o.Rule != "withdraw" {
			t.Errorf("withdrawal order %+v", o)
		}
	}

	// Without -account the withdrawal is split in the withdrawal order:
	// the taxable account pays what it can (its 5,000 of cash and what it
	// holds), the 401(k) the rest.
	code, out, errOut := run(t, append(base, "-withdraw", "60000")...)
	if code != exitOK || !strings.Contains(out, "cash flow: withdraw 60000.00 USD from taxable, k401 in the order of withdrawals without buying") ||
		!strings.Contains(out, "\n  taxable pays 24828.00: 5000.00 from its free cash, sells raise 19828.00; estimated tax 0.00\n") ||
		!strings.Contains(out, "\n  k401 pays 35172.00: ") || !strings.Contains(out, "withdrawn 60000.00, short 0.00") {
		t.Errorf("split withdrawal: exit %d: %s\n%s", code, errOut, out)
	}

	for _, args := range [][]string{
		{"-deposit", "100"},                         // several accounts: which?
		{"-deposit", "100", "-account", "nope"},     // no such account
		{"-deposit", "-1", "-account", "roth"},      // negative
		{"-withdraw", "0", "-account", "roth"},      // nothing to withdraw
		{"-deposit", "1", "-withdraw", "1"},         // both
		{"-account", "roth"},                        // alone
		{"-deposit", "1", "-destination", "midway"}, // a cash flow has no destination
		{"-withdraw", "ten", "-account", "taxable"}, // not an amount
	} {
		if code, _, errOut := run(t, append(base, args...)...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d (%s)", args, code, exitUsage, errOut)
		}
	}
}

// TestPlanPhasedNewMoney: under phase_in, plan shows the first step of a
// first investment (an all-cash household) and of a deposit above
// deposits_above, with the cash waiting. 70000 over seven steps: 10000
// now, buying 6000 of A (60) and 4000 of B (80), 60000 waiting; a deposit
// of 100000 into a household on target: 14285.71 now, 85714.29 waiting.
// Before, plan invested everything at once.
func TestPlanPhasedNewMoney(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policy.yaml")
	prices := filepath.Join(dir, "prices.yaml")
	cash := filepath.Join(dir, "cash.yaml")
	held := filepath.Join(dir, "held.yaml")
	for name, text := range map[string]string{
		pol: `policy: dca
currency: USD
targets: {stocks: 60%, bonds: 40%, cash: 0%}
bands: {absolute: 5%}
rebalance: {trigger: threshold, destination: target, min_trade: "0"}
instruments: {A: {sleeve: stocks}, B: {sleeve: bonds}}
accounts: {ira: {type: traditional_ira}}
phase_in: {over: 180d, every: 30d, deposits_above: "10000"}
`,
		prices: "as_of: 2026-11-20T21:00:00Z\nprices: {A: \"100\", B: \"50\"}\n",
		cash:   "as_of: 2026-11-20T21:00:00Z\naccounts: {ira: {cash: \"70000\"}}\n",
		held:   "as_of: 2026-11-20T21:00:00Z\naccounts: {ira: {cash: \"0\", positions: {A: \"60\", B: \"80\"}}}\n",
	} {
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := []string{"plan", "-policy", pol, "-prices", prices, "-at", "2026-11-20T21:00:00Z"}
	code, out, errOut := run(t, append(base, "-holdings", cash)...)
	if code != exitOK || !strings.Contains(out, "phase-in: 60000.00 USD of first-investment in ira waits for later steps (step 1 of 7, next 2026-12-20 21:00 UTC)") ||
		!regexp.MustCompile(`ira\s+buy\s+60\s+A\s`).MatchString(out) || !regexp.MustCompile(`ira\s+buy\s+80\s+B\s`).MatchString(out) {
		t.Errorf("first investment: exit %d, %s\n%s", code, errOut, out)
	}
	code, out, errOut = run(t, append(base, "-holdings", held, "-deposit", "100000", "-json")...)
	var doc struct {
		Waiting []struct {
			Amount      string
			Step, Steps int
		} `json:"waiting_cash"`
	}
	if err := json.Unmarshal([]byte(out), &doc); code != exitOK || err != nil || len(doc.Waiting) != 1 ||
		doc.Waiting[0].Amount != "85714.29" || doc.Waiting[0].Step != 1 || doc.Waiting[0].Steps != 7 {
		t.Errorf("deposit: exit %d, %s, %v: %+v", code, errOut, err, doc)
	}
	code, out, _ = run(t, append(base, "-holdings", held, "-deposit", "10000", "-json")...)
	if code != exitOK || strings.Contains(out, "waiting_cash") {
		t.Errorf("a deposit of 10000 (not above) waits:\n%s", out)
	}
}
