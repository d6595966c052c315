package households

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testModel = `model: growth-2045
currency: USD
targets: {equities: 60%, bonds: 35%, cash: 5%}
bands: {absolute: 5%, relative: 25%}
rebalance: {trigger: threshold, check_every: 5m}
instruments:
  VTI:   {sleeve: equities}
  BND:   {sleeve: bonds}
  VMFXX: {sleeve: cash}
`

const testHoldings = `as_of: 2026-11-20T21:00:00Z
accounts:
  roth:    {cash: "100", positions: {VTI: "10"}}
  taxable: {cash: "5000", positions: {BND: "40"}}
`

// household returns a household file on model named name.
func household(name, model string) string {
	return fmt.Sprintf(`household: %s
model: %s
holdings: ../holdings/%s.yaml
accounts:
  roth:    {type: roth_ira}
  taxable: {type: taxable, reserve: "1000"}
`, name, model, name)
}

// tree writes models/, households/ and holdings/ under a temporary
// directory; files maps a path relative to it to its content.
func tree(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"models", "households", "holdings"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for path, text := range files {
		if err := os.WriteFile(filepath.Join(dir, path), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func read(t *testing.T, dir string) *Result {
	t.Helper()
	res, err := Read(filepath.Join(dir, "models"), filepath.Join(dir, "households"), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestRead(t *testing.T) {
	dir := tree(t, map[string]string{
		"models/growth.yaml":      testModel,
		"households/a.yaml":       household("a", "growth-2045"),
		"households/b.yml":        household("b", "growth-2045"),
		"households/.hidden.yaml": "not: read",
		"households/notes.txt":    "not read",
		"holdings/a.yaml":         testHoldings,
		"holdings/b.yaml":         testHoldings,
	})
	res := read(t, dir)
	if len(res.Households) != 2 || res.Bad() != 0 || len(res.ModelErrs) != 0 {
		t.Fatalf("%d households, %d bad, model problems %v: %+v", len(res.Households), res.Bad(), res.ModelErrs, res.Households)
	}
	for i, name := range []string{"a", "b"} {
		l := res.Households[i].Loaded
		if l.Policy.Name != name || l.Policy.Model != "growth-2045" || l.Holdings == nil ||
			l.Holdings.File != filepath.Join(dir, "holdings", name+".yaml") || l.HoldingsHash == "" || l.Policy.LocalZone != time.UTC {
			t.Errorf("household %d: %+v", i, l)
		}
	}
	want := []string{filepath.Join(dir, "holdings"), filepath.Join(dir, "households"), filepath.Join(dir, "models")}
	if strings.Join(res.Dirs, ",") != strings.Join(want, ",") {
		t.Errorf("dirs %v, want %v", res.Dirs, want)
	}
}

// TestReadProblems: a bad household file, a household with a bad
// holdings file, one on a broken model, one on an unknown model and a
// duplicate name each concern their own household; the others load.
func TestReadProblems(t *testing.T) {
	dir := tree(t, map[string]string{
		"models/growth.yaml":       testModel,
		"models/broken.yaml":       strings.Replace(strings.Replace(testModel, "growth-2045", "value-2030", 1), "bonds: 35%", "bonds: 30%", 1),
		"households/a.yaml":        household("a", "growth-2045"),
		"households/b.yaml":        household("b", "growth-2045") + "targets: {equities: 100%}\n",
		"households/c.yaml":        household("c", "value-2030"),
		"households/d.yaml":        household("d", "income"),
		"households/e.yaml":        household("a", "growth-2045"),
		"households/f.yaml":        household("f", "growth-2045"),
		"holdings/a.yaml":          testHoldings,
		"holdings/b.yaml":          testHoldings,
		"holdings/c.yaml":          testHoldings,
		"holdings/d.yaml":          testHoldings,
		"holdings/f.yaml":          strings.Replace(testHoldings, "roth:", "ira:", 1),
		"households/zz.notyaml.md": "x",
	})
	res := read(t, dir)
	got := map[string]string{}
	for _, h := range res.Households {
		if h.Err != nil {
			got[filepath.Base(h.File)] = h.Err.Error()
		}
	}
	want := map[string]string{
		"b.yaml": "b.yaml:7: targets: set by the model: a household may replace only bands, rebalance, limits, tax, asset_location",
		"c.yaml": `c.yaml:2: model: model "value-2030" (` + filepath.Join(dir, "models", "broken.yaml") + `) is invalid`,
		"d.yaml": `d.yaml:2: model: no model "income" (known: growth-2045)`,
		"e.yaml": `e.yaml:1: household: household "a" is also defined in ` + filepath.Join(dir, "households", "a.yaml"),
		"f.yaml": `f.yaml:3: accounts.ira: policy f has no account "ira"`,
	}
	for file, w := range want {
		if !strings.Contains(got[file], w) {
			t.Errorf("%s: got %q, want %q", file, got[file], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("problems %v", got)
	}
	if res.Households[0].Err != nil || res.Households[0].Loaded.Policy.Name != "a" {
		t.Errorf("a: %+v", res.Households[0])
	}
	if len(res.ModelErrs) != 1 || !strings.Contains(res.ModelErrs[0].Error(), "broken.yaml:3: targets: level sums to 95%") {
		t.Errorf("model problems: %v", res.ModelErrs)
	}
	if _, ok := res.Models["value-2030"]; ok || res.Models["growth-2045"] == nil {
		t.Errorf("models %v", res.Models)
	}
}

// TestReadDuplicateModel: two files defining one model break it for every
// household on it (which of them was meant is unknown).
func TestReadDuplicateModel(t *testing.T) {
	dir := tree(t, map[string]string{
		"models/a.yaml":     testModel,
		"models/b.yaml":     testModel,
		"households/a.yaml": household("a", "growth-2045"),
		"holdings/a.yaml":   testHoldings,
	})
	res := read(t, dir)
	if len(res.ModelErrs) != 1 || !strings.Contains(res.ModelErrs[0].Error(), `b.yaml:1: model: model "growth-2045" is also defined in`) {
		t.Errorf("model problems: %v", res.ModelErrs)
	}
	if res.Bad() != 1 || !strings.Contains(res.Households[0].Err.Error(), "is invalid") {
		t.Errorf("household: %+v", res.Households[0])
	}
}

func TestReadMissingDir(t *testing.T) {
	dir := t.TempDir()
	if _, err := Read(filepath.Join(dir, "models"), dir, time.UTC); err == nil {
		t.Error("no error for a missing models directory")
	}
}

var benchHouseholds = flag.Int("households", 1000, "households in BenchmarkRead")

// BenchmarkRead reads -households household files (default 1,000) on one
// model, each with its holdings file: what a daemon's start and every
// reload does.
func BenchmarkRead(b *testing.B) {
	files := map[string]string{"models/growth.yaml": testModel}
	for i := range *benchHouseholds {
		name := fmt.Sprintf("h%06d", i)
		files["households/"+name+".yaml"] = household(name, "growth-2045")
		files["holdings/"+name+".yaml"] = testHoldings
	}
	dir := tree(b, files)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res, err := Read(filepath.Join(dir, "models"), filepath.Join(dir, "households"), time.UTC)
		if err != nil || res.Bad() != 0 || len(res.Households) != *benchHouseholds {
			b.Fatalf("%v: %d bad of %d", err, res.Bad(), len(res.Households))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(*benchHouseholds), "µs/household")
}
