package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// modelBadFiles lists, for each testdata/models/*.bad.yml, every problem
// ParseModel (for *.model.bad.yml) or ParseHousehold and Compose (for the
// household files) must report, as substrings of the error's lines.
var modelBadFiles = map[string][]string{
	"household_fields.model.bad.yml": {
		"household_fields.model.bad.yml:9: accounts: unknown field (known: model, currency, targets, bands, rebalance, prices, limits, instruments, glide_path, glide_bands, tilts, tax, asset_location, correlation, phase_in)",
		"household_fields.model.bad.yml:11: investor: unknown field",
	},
	"sums.model.bad.yml": {
		`sums.model.bad.yml:1: model: "bad name": use letters, digits`,
		"sums.model.bad.yml:3: targets: level sums to 95%, want 100%",
		"sums.model.bad.yml:5: rebalance.schedule: required for the calendar trigger",
		`sums.model.bad.yml:10: asset_location.nowhere: no sleeve "nowhere"`,
	},
	"model_fields.bad.yml": {
		"model_fields.bad.yml:4: targets: set by the model: a household may replace only bands, rebalance, limits, tax, asset_location",
		"model_fields.bad.yml:5: instruments: set by the model",
		"model_fields.bad.yml:8: owner: unknown field (known: household, model, holdings, accounts, investor, contributions, bands, rebalance, limits, tax, asset_location, currency, targets,",
	},
	"missing.bad.yml": {
		"missing.bad.yml:1: household: \"doe.family\": use letters, digits, '-' and '_' only",
		"missing.bad.yml:1: model: required field is missing",
		"missing.bad.yml:1: holdings: required field is missing",
	},
	"no_account.bad.yml": {
		`no_account.bad.yml:5: accounts.taxable.may_hold: no instrument "BIT" in instruments`,
		`no_account.bad.yml:9: bands.sleeves.gold: no sleeve "gold" in targets`,
		`growth-2045.model.good.yml:36: asset_location.bonds: "traditional_401k" is neither an account nor the type of one (accounts: taxable) (for household no_account.bad.yml)`,
		`growth-2045.model.good.yml:36: asset_location.bonds: "roth" is neither an account nor the type of one (accounts: taxable) (for household no_account.bad.yml)`,
	},
	"unknown_model.bad.yml": {
		`unknown_model.bad.yml:2: model: no model "value-2030" (known: glide-2060, growth-2045)`,
	},
	"no_birth.bad.yml": {
		"glide.model.good.yml:8: glide_path: needs investor.birth_date: the rows' ages are counted from it (for household no_birth.bad.yml)",
	},
}

// testModels parses testdata/models/*.model.good.yml.
func testModels(t *testing.T) Models {
	t.Helper()
	files, err := filepath.Glob("testdata/models/*.model.good.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no models: %v", err)
	}
	ms := Models{}
	for _, path := range files {
		name, data := readFile(t, path)
		m, err := ParseModel(name, data)
		if err != nil {
			t.Fatalf("ParseModel(%s):\n%v", name, err)
		}
		ms[m.Name] = m
	}
	return ms
}

// composeFile parses and composes a household file of testdata/models.
func composeFile(ms Models, name string, data []byte) (*Policy, error) {
	h, err := ParseHousehold(name, data)
	if err != nil {
		return nil, err
	}
	return ms.Compose(h)
}

func TestModelGoodFiles(t *testing.T) {
	ms := testModels(t)
	files, _ := filepath.Glob("testdata/models/*.good.yml")
	for _, path := range files {
		if strings.HasSuffix(path, ".model.good.yml") {
			continue
		}
		name, data := readFile(t, path)
		p, err := composeFile(ms, name, data)
		if err != nil {
			t.Errorf("%s:\n%v", name, err)
			continue
		}
		if p.File != name || p.Model == "" || p.ModelVersion != ms[p.Model].Version || len(p.Version) != 16 {
			t.Errorf("%s: file %q, model %q@%q, version %q", name, p.File, p.Model, p.ModelVersion, p.Version)
		}
	}
}

func TestModelBadFiles(t *testing.T) {
	ms := testModels(t)
	files, _ := filepath.Glob("testdata/models/*.bad.yml")
	if len(files) != len(modelBadFiles) {
		t.Errorf("%d bad files, %d in the table", len(files), len(modelBadFiles))
	}
	for _, path := range files {
		name, data := readFile(t, path)
		var err error
		if strings.HasSuffix(name, ".model.bad.yml") {
			_, err = ParseModel(name, data)
		} else {
			_, err = composeFile(ms, name, data)
		}
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		want, ok := modelBadFiles[name]
		if !ok {
			t.Errorf("%s: not in the table; errors:\n%v", name, err)
			continue
		}
		lines := strings.Split(err.Error(), "\n")
		for _, w := range want {
			found := false
			for _, l := range lines {
				found = found || strings.Contains(l, w)
			}
			if !found {
				t.Errorf("%s: no problem %q in:\n%v", name, w, err)
			}
		}
		if len(lines) != len(want) {
			t.Errorf("%s: %d problems, want %d:\n%v", name, len(lines), len(want), err)
		}
	}
}

// TestComposeEqualsPolicyFile: a household on a model compiles to what the
// same fields in one policy file compile to.
func TestComposeEqualsPolicyFile(t *testing.T) {
	ms := testModels(t)
	name, data := readFile(t, "testdata/models/overrides.good.yml")
	got, err := composeFile(ms, name, data)
	if err != nil {
		t.Fatal(err)
	}
	// The model's fields with the household's in their place, by hand.
	model, _ := os.ReadFile("testdata/models/growth-2045.model.good.yml")
	text := strings.Replace(string(model), "model: growth-2045", "policy: jones", 1)
	start, end := strings.Index(text, "bands:\n"), strings.Index(text, "rebalance:\n")
	text = text[:start] + "bands: {absolute: 3%}\n" + text[end:]
	start, end = strings.Index(text, "rebalance:\n"), strings.Index(text, "instruments:\n")
	text = text[:start] + "rebalance: {trigger: threshold, check_every: 1m}\nlimits: {max_turnover: 20%}\n" + text[end:]
	text += `investor: {birth_date: 1975-03-01, time_zone: Europe/Paris}
accounts:
  roth:    {type: roth_ira}
  k401:    {type: traditional_401k}
contributions:
  - {account: k401, amount: "500", schedule: "0 9 1 * *"}
`
	want, err := Parse("merged.yml", []byte(text))
	if err != nil {
		t.Fatalf("merged:\n%v\n%s", err, text)
	}
	if got.Name != "jones" || got.Sleeves[0].HalfWidth.String() != "0.03" {
		t.Errorf("name %q, equities half-width %s", got.Name, got.Sleeves[0].HalfWidth)
	}
	sameCompiled(t, got, want)
}

// sameCompiled checks that a composed policy equals one compiled from a
// policy file, but for names of files, versions and lines.
func sameCompiled(t *testing.T, got, want *Policy) {
	t.Helper()
	norm := func(p *Policy) *Policy {
		q := *p
		q.File, q.Version, q.Model, q.ModelVersion = "", "", "", ""
		q.Sleeves = slices.Clone(p.Sleeves)
		for i := range q.Sleeves {
			q.Sleeves[i].Line = 0
		}
		q.Instruments = slices.Clone(p.Instruments)
		for i := range q.Instruments {
			q.Instruments[i].Line = 0
		}
		q.Accounts = slices.Clone(p.Accounts)
		for i := range q.Accounts {
			q.Accounts[i].Line = 0
		}
		q.Contributions = slices.Clone(p.Contributions)
		for i := range q.Contributions {
			q.Contributions[i].Line = 0
		}
		q.AssetLocation = slices.Clone(p.AssetLocation)
		for i := range q.AssetLocation {
			q.AssetLocation[i].Line = 0
		}
		if p.Investor != nil {
			inv := *p.Investor
			inv.Line = 0
			q.Investor = &inv
		}
		return &q
	}
	got, want = norm(got), norm(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("composed policy differs from the merged file:\n got %+v\nwant %+v", got, want)
	}
}

// TestComposeVersion: the effective version changes when the model or the
// household file changes, and only then (order ids derive from it).
func TestComposeVersion(t *testing.T) {
	modelName, model := readFile(t, "testdata/models/growth-2045.model.good.yml")
	hName, household := readFile(t, "testdata/models/smith.good.yml")
	version := func(model, household []byte) string {
		t.Helper()
		m, err := ParseModel(modelName, model)
		if err != nil {
			t.Fatal(err)
		}
		h, err := ParseHousehold(hName, household)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Compose(m, h)
		if err != nil {
			t.Fatal(err)
		}
		return p.Version
	}
	base := version(model, household)
	if again := version(model, household); again != base {
		t.Errorf("same files: version %s then %s", base, again)
	}
	editedModel := []byte(strings.Replace(string(model), "min_trade: \"50\"", "min_trade: \"75\"", 1))
	if v := version(editedModel, household); v == base {
		t.Errorf("model edited: version stays %s", v)
	}
	commentOnly := append(append([]byte{}, model...), "# reviewed\n"...)
	if v := version(commentOnly, household); v == base {
		t.Errorf("model file changed: version stays %s", v)
	}
	editedHousehold := []byte(strings.Replace(string(household), `reserve: "20000"`, `reserve: "25000"`, 1))
	if v := version(model, editedHousehold); v == base {
		t.Errorf("household edited: version stays %s", v)
	}
	// A policy file with the same bytes as the household is not the same
	// version: the model is part of it.
	if p, err := Parse(hName, household); err == nil && p.Version == base {
		t.Errorf("household version %s equals a lone file's", base)
	}
}

// TestComposeShares: households on one model share its sleeves and
// instruments (one copy in memory), except the sleeves of a household
// with bands of its own, and are equal to what they would be unshared.
func TestComposeShares(t *testing.T) {
	ms := testModels(t)
	compose := func(path string) *Policy {
		t.Helper()
		name, data := readFile(t, path)
		p, err := composeFile(ms, name, data)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	smith, jones := compose("testdata/models/smith.good.yml"), compose("testdata/models/overrides.good.yml")
	model := ms["growth-2045"].Policy
	if &smith.Sleeves[0] != &model.Sleeves[0] || &smith.Instruments[0] != &model.Instruments[0] || &jones.Instruments[0] != &model.Instruments[0] {
		t.Error("sleeves or instruments not shared with the model")
	}
	if &jones.Sleeves[0] == &model.Sleeves[0] || !jones.Sleeves[0].HalfWidth.Equal(dec("0.03")) || !model.Sleeves[0].HalfWidth.Equal(dec("0.05")) {
		t.Errorf("jones's own bands shared: half-width %s, model's %s", jones.Sleeves[0].HalfWidth, model.Sleeves[0].HalfWidth)
	}
	// Zones are loaded once per model: a Location is 4 KiB.
	if again := compose("testdata/models/overrides.good.yml"); again.Investor.Zone != jones.Investor.Zone || again.Investor.Zone.String() != "Europe/Paris" {
		t.Errorf("zone %p %s, then %p", jones.Investor.Zone, jones.Investor.Zone, again.Investor.Zone)
	}
	// The same file as a policy of its own compiles to equal sleeves.
	text, _ := os.ReadFile("testdata/models/growth-2045.model.good.yml")
	alone, err := Parse("alone.yml", []byte(strings.Replace(string(text), "model: growth-2045", "policy: smith-household", 1)+
		"accounts:\n  roth:    {type: roth_ira}\n  k401:    {type: traditional_401k, may_hold: [VTI, BND, VMFXX]}\n  taxable: {type: taxable, reserve: \"20000\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	sameCompiled(t, smith, alone)
}

// FuzzHousehold checks that a household file, whatever its bytes, composed
// with the test models never panics, that what is accepted keeps every
// invariant of a Policy, and that every problem names one of the two
// files.
func FuzzHousehold(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/models/*.yml")
	for _, path := range seeds {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	ms := Models{}
	files := map[string]bool{"fuzz.yml": true}
	for _, path := range []string{"testdata/models/growth-2045.model.good.yml", "testdata/models/glide.model.good.yml"} {
		files[path] = true
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		m, err := ParseModel(path, data)
		if err != nil {
			f.Fatal(err)
		}
		ms[m.Name] = m
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := composeFile(ms, "fuzz.yml", data)
		if err != nil {
			if p != nil {
				t.Fatal("a policy returned with its error")
			}
			es := strictyaml.AsErrors(err)
			for _, e := range es {
				if e.Msg == "" || e.Line < 0 || !files[e.File] {
					t.Fatalf("bad problem %q", e.Error())
				}
			}
			return
		}
		// The invariants of a policy file, the version aside (it hashes
		// the model too).
		q := *p
		sum := sha256.Sum256(data)
		q.Version = hex.EncodeToString(sum[:8])
		checkPolicy(t, &q, "fuzz.yml", data)
		if len(p.Version) != 16 || p.Version == q.Version || p.ModelVersion != ms[p.Model].Version {
			t.Fatalf("version %q, model %s@%s", p.Version, p.Model, p.ModelVersion)
		}
	})
}
