package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
