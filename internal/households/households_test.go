package households

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/config"
	"github.com/rebalancerd/rebalancerd/internal/engine"
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
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, path), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func read(t *testing.T, dir string) *Result {
	t.Helper()
	res, err := Read(filepath.Join(dir, "models"), filepath.Join(dir, "households"), time.UTC, nil)
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

// TestReadCache: a Read with the cache of the last one keeps what did not
// change (the same policy, not parsed again) and reads again what did: a
// household file, its holdings, its model.
func TestReadCache(t *testing.T) {
	dir := tree(t, map[string]string{
		"models/growth.yaml": testModel,
		"households/a.yaml":  household("a", "growth-2045"),
		"households/b.yaml":  household("b", "growth-2045"),
		"households/c.yaml":  household("c", "growth-2045"),
		"holdings/a.yaml":    testHoldings,
		"holdings/b.yaml":    testHoldings,
		"holdings/c.yaml":    testHoldings,
	})
	cache := &Cache{}
	readCached := func() *Result {
		t.Helper()
		res, err := Read(filepath.Join(dir, "models"), filepath.Join(dir, "households"), time.UTC, cache)
		if err != nil || res.Bad() != 0 {
			t.Fatalf("%v: %+v", err, res)
		}
		return res
	}
	first := readCached()
	write := func(path, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, path), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("households/a.yaml", household("a", "growth-2045")+"limits: {max_orders: 5}\n")
	write("holdings/b.yaml", strings.Replace(testHoldings, `cash: "100"`, `cash: "200"`, 1))
	if err := os.Remove(filepath.Join(dir, "households", "c.yaml")); err != nil {
		t.Fatal(err)
	}
	second := readCached()
	if len(second.Households) != 2 || len(cache.entries) != 2 {
		t.Fatalf("%d households, %d cached", len(second.Households), len(cache.entries))
	}
	a0, a1 := first.Households[0].Loaded, second.Households[0].Loaded
	if a1.Policy == a0.Policy || a1.Policy.Version == a0.Policy.Version || a1.Policy.Limits.MaxOrders != 5 {
		t.Errorf("a edited: version %s -> %s, max_orders %d", a0.Policy.Version, a1.Policy.Version, a1.Policy.Limits.MaxOrders)
	}
	b0, b1 := first.Households[1].Loaded, second.Households[1].Loaded
	if b1.HoldingsHash == b0.HoldingsHash || b1.Holdings.Accounts[0].Cash.String() != "200" {
		t.Errorf("b's holdings edited: hash %s -> %s", b0.HoldingsHash, b1.HoldingsHash)
	}
	third := readCached()
	for i := range third.Households {
		if third.Households[i].Loaded.Policy != second.Households[i].Loaded.Policy {
			t.Errorf("%s parsed again without a change", third.Households[i].File)
		}
	}
	write("models/growth.yaml", strings.Replace(testModel, "check_every: 5m", "check_every: 6m", 1))
	fourth := readCached()
	for i := range fourth.Households {
		p := fourth.Households[i].Loaded.Policy
		if p == third.Households[i].Loaded.Policy || p.Version == third.Households[i].Loaded.Policy.Version || p.Rebalance.CheckEvery != 6*time.Minute {
			t.Errorf("%s: the model's edit not followed (check_every %v)", fourth.Households[i].File, p.Rebalance.CheckEvery)
		}
	}
}

func TestReadMissingDir(t *testing.T) {
	dir := t.TempDir()
	if _, err := Read(filepath.Join(dir, "models"), dir, time.UTC, nil); err == nil {
		t.Error("no error for a missing models directory")
	}
}

var benchHouseholds = flag.Int("households", 1000, "households in BenchmarkRead")

// BenchmarkRead reads -households household files (default 1,000) on the
// shipped example model (8 sleeves, 8 instruments), each a copy of the
// shipped smith household (3 accounts) with its holdings file: "cold" as at a daemon's start,
// "cached" as a reload after one file changed (every file read, none
// parsed again but that one). Besides the wall time it reports the
// process's CPU time per household (user and system: the machine is
// shared, so wall time depends on the other load) and the heap the result
// holds.
func BenchmarkRead(b *testing.B) {
	n := *benchHouseholds
	example := func(path string) string {
		data, err := os.ReadFile(filepath.Join("..", "..", "configs", "examples", path))
		if err != nil {
			b.Fatal(err)
		}
		return string(data)
	}
	smith := example("households/smith.yaml")
	files := map[string]string{"models/growth.yaml": example("models/growth-2045.yaml")}
	holdings := example("households/holdings/smith.yaml")
	householdText := func(name string) string {
		return strings.NewReplacer("household: smith", "household: "+name,
			"holdings: holdings/smith.yaml", "holdings: ../holdings/"+name+".yaml").Replace(smith)
	}
	for i := range n {
		name := fmt.Sprintf("h%06d", i)
		files["households/"+name+".yaml"] = householdText(name)
		files["holdings/"+name+".yaml"] = holdings
	}
	// The same households as policy files of their own, the way to run
	// them before models: a policies entry with dir and holdings_dir.
	model := files["models/growth.yaml"]
	own := smith[strings.Index(smith, "investor:"):]
	for i := range n {
		name := fmt.Sprintf("h%06d", i)
		files["policies/"+name+".yaml"] = strings.Replace(model, "model: growth-2045", "policy: "+name, 1) + own
	}
	dir := tree(b, files)
	files = nil // not counted in the heap per household
	models, households := filepath.Join(dir, "models"), filepath.Join(dir, "households")
	b.Run("policy-files", func(b *testing.B) {
		src := []config.PolicySource{{Dir: filepath.Join(dir, "policies"), HoldingsDir: filepath.Join(dir, "holdings")}}
		var set []engine.Loaded
		b.ReportAllocs()
		cpu0 := cpuTime(b)
		for b.Loop() {
			set = nil
			var err error
			if set, _, err = engine.ReadSources(src); err != nil || len(set) != n {
				b.Fatalf("%v: %d policies", err, len(set))
			}
		}
		cpu := cpuTime(b) - cpu0
		b.StopTimer()
		reportPer(b, n, cpu)
		runtime.KeepAlive(set)
	})
	for _, cached := range []bool{false, true} {
		name := map[bool]string{false: "cold", true: "cached"}[cached]
		b.Run(name, func(b *testing.B) {
			var cache *Cache
			if cached {
				cache = &Cache{}
				if _, err := Read(models, households, time.UTC, cache); err != nil {
					b.Fatal(err)
				}
			}
			var res *Result
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime(b)
			for b.Loop() {
				if cached {
					if err := os.WriteFile(filepath.Join(households, "h000000.yaml"), []byte(householdText("h000000")+"# edited\n"), 0o644); err != nil {
						b.Fatal(err)
					}
				}
				res = nil // the previous result is garbage while the next is read
				var err error
				res, err = Read(models, households, time.UTC, cache)
				if err != nil || res.Bad() != 0 || len(res.Households) != n {
					b.Fatalf("%v: %d bad of %d", err, res.Bad(), len(res.Households))
				}
			}
			cpu := cpuTime(b) - cpu0
			b.StopTimer()
			reportPer(b, n, cpu)
			runtime.KeepAlive(res)
		})
	}
}

// reportPer reports the wall and CPU time per household of a benchmark
// over n households, and the heap per household with what it read alive.
func reportPer(b *testing.B, n int, cpu time.Duration) {
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(n), "µs/household")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N)/float64(n), "cpu-µs/household")
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapAlloc)/float64(n)/1024, "heap-KiB/household")
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
