package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	householdsConfig = "../../configs/examples/households.yaml"
	exampleModel     = "../../configs/examples/models/growth-2045.yaml"
)

// TestCheckShippedModels: `check` accepts the shipped model on its own and
// the configuration that runs its two households.
func TestCheckShippedModels(t *testing.T) {
	code, out, errOut := run(t, "check", "-config", householdsConfig)
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	if !strings.Contains(out, "configuration is valid: 2 households on 1 models (growth-2045)") {
		t.Errorf("summary %q", out)
	}
	code, out, errOut = run(t, "check", "-model", exampleModel)
	if code != exitOK || errOut != "" || !strings.Contains(out, "model growth-2045 (version ") || !strings.Contains(out, "is valid: 8 sleeves, 8 instruments") {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	for _, args := range [][]string{{"check", "-model", exampleModel, "-policy", examplePolicy}, {"check", "-config", householdsConfig, "-model", exampleModel}} {
		if code, _, _ := run(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
}

// TestCheckHouseholdsInvalid: `check -config` reports the problems of the
// model and of every household at once, each with file, line and field.
func TestCheckHouseholdsInvalid(t *testing.T) {
	dir := t.TempDir()
	copyTree(t, "../../configs/examples", dir, "households.yaml", "models", "households")
	model := filepath.Join(dir, "models", "growth-2045.yaml")
	smith := filepath.Join(dir, "households", "smith.yaml")
	jones := filepath.Join(dir, "households", "jones.yaml")
	edit(t, model, "  bonds: 25%", "  bonds: 25%\n  gold: 1%")
	edit(t, smith, "k401:    {type: traditional_401k,", "k401:    {type: 401k,")
	edit(t, jones, "bands:", "instruments: {GLD: {sleeve: gold}}\nbands:")
	code, _, errOut := run(t, "check", "-config", filepath.Join(dir, "households.yaml"))
	if code != exitInvalid {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	for _, want := range []string{
		model + ":10: targets: level sums to 101%, want 100%",
		smith + `:3: model: model "growth-2045" (` + model + `) is invalid`,
		jones + ":12: instruments: set by the model: a household may replace only bands, rebalance, limits, tax, asset_location",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	// With the model fixed, smith's own problem shows.
	edit(t, model, "  gold: 1%", "")
	_, _, errOut = run(t, "check", "-config", filepath.Join(dir, "households.yaml"))
	for _, want := range []string{
		smith + `:10: accounts.k401.type: "401k" is not an account type`,
		// The model's asset_location names a type smith no longer has.
		model + `:42: asset_location.bonds: "traditional_401k" is neither an account nor the type of one (accounts: roth, k401, taxable) (for household ` + smith + ")",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

// copyTree copies the named files and directories of from into to.
func copyTree(t *testing.T, from, to string, names ...string) {
	t.Helper()
	for _, name := range names {
		err := filepath.WalkDir(filepath.Join(from, name), func(path string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			rel, err := filepath.Rel(from, path)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			writeFile(t, filepath.Join(to, rel), string(data))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// edit replaces old with new in a file, once; old must be there.
func edit(t *testing.T, path, old, new string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		t.Fatalf("%s has no %q", path, old)
	}
	writeFile(t, path, strings.Replace(string(data), old, new, 1))
}
