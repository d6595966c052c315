package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var scaleHouseholds = flag.Int("scale-households", 0,
	"run TestBinaryStartsManyHouseholds with this many household files (issue 14: 100000); 0 skips it")

// scaleModel is the example model (configs/examples/models/growth-2045.yaml)
// with a threshold trigger: 8 instruments, 3 accounts per household.
const scaleModel = `model: growth-2045
currency: USD
targets:
  equities: 55%
  bonds: 25%
  real_estate: 10%
  crypto:
    weight: 5%
    sleeves: {large_cap: 65%, balanced: 25%, growth: 10%}
  cash: 5%
bands: {absolute: 5%, relative: 25%, sleeves: {crypto: {absolute: 2%}}}
rebalance: {trigger: threshold, check_every: 1m, destination: band_edge, min_trade: "50"}
instruments:
  VTI:       {sleeve: equities, share: 70%}
  VXUS:      {sleeve: equities, share: 30%}
  BND:       {sleeve: bonds}
  VNQ:       {sleeve: real_estate}
  TM-LARGE:  {sleeve: crypto/large_cap, step: "0.0001"}
  TM-BAL:    {sleeve: crypto/balanced, step: "0.0001"}
  TM-GROWTH: {sleeve: crypto/growth, step: "0.0001"}
  VMFXX:     {sleeve: cash}
`

const scaleHoldings = `as_of: 2026-11-20T21:00:00Z
accounts:
  roth:    {cash: "5000", positions: {VXUS: "537", VNQ: "225", TM-LARGE: "0.1576", TM-BAL: "1.366", TM-GROWTH: "10.4"}}
  k401:    {cash: "0", positions: {VTI: "270", BND: "693"}}
  taxable: {cash: "25000"}
`

// TestBinaryStartsManyHouseholds starts the real daemon (built without the
// race detector) on -scale-households household files of one model, with
// the embedded NATS server and a fresh state directory, and waits, with a
// deadline, for it to say it started. It reports the time to start and
// the resident memory then, stops it, and starts it again on its saved
// state. Behind a flag: 100,000 households take minutes on this machine.
func TestBinaryStartsManyHouseholds(t *testing.T) {
	n := *scaleHouseholds
	if n == 0 {
		t.Skip("run with -scale-households=100000")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "rebalancerd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	writeFile(t, filepath.Join(dir, "models", "growth-2045.yaml"), scaleModel)
	writeFile(t, filepath.Join(dir, "holdings", "h.yaml"), scaleHoldings)
	hdir := filepath.Join(dir, "households")
	if err := os.MkdirAll(hdir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		name := fmt.Sprintf("household-%06d", i)
		body := "household: " + name + "\nmodel: growth-2045\nholdings: ../holdings/h.yaml\n" +
			"accounts:\n  roth: {type: roth_ira}\n  k401: {type: traditional_401k, may_hold: [VTI, BND, VMFXX]}\n  taxable: {type: taxable, reserve: \"20000\"}\n"
		if err := os.WriteFile(filepath.Join(hdir, name+".yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "rebalancerd.yaml"), fmt.Sprintf(`state_dir: state
models_dir: models
households_dir: households
nats:
  embedded: {port: %d}
http:
  listen: 127.0.0.1:0
`, freePort(t)))
	for _, run := range []string{"first start", "restart on saved state"} {
		start := time.Now()
		cmd, logs, done := startBinary(t, bin, filepath.Join(dir, "rebalancerd.yaml"))
		checkFor(t, 20*time.Minute, 100*time.Millisecond, func() error {
			if logs.find("rebalancerd started") == nil {
				select {
				case <-done:
					t.Fatalf("%s: the daemon exited before it started", run)
				default:
				}
				return fmt.Errorf("%s: not started after %s", run, time.Since(start).Round(time.Second))
			}
			return nil
		})
		took := time.Since(start)
		t.Logf("%s: %d households started in %s, resident memory %d MiB", run, n, took.Round(100*time.Millisecond), rssMiB(t, cmd.Process.Pid))
		stopBinary(t, cmd, done, 2*time.Minute)
	}
}

// rssMiB reads a process's resident set size from /proc.
func rssMiB(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return kb / 1024
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
