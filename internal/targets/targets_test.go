package targets_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/targets"
)

const (
	examplePath   = "../../configs/policies/example.yaml"
	glideExample  = "../../configs/examples/glidepath.yaml"
	handPath      = "testdata/hand.yml"
	tiltsTreePath = "testdata/tilts.yml"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func load(t testing.TB, path string) *policy.Policy {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parse(t, filepath.Base(path), data)
}

func parse(t testing.TB, name string, data []byte) *policy.Policy {
	t.Helper()
	p, err := policy.Parse(name, data)
	if err != nil {
		t.Fatalf("Parse(%s):\n%v", name, err)
	}
	return p
}

// withTilts returns the policy of testdata/tilts.yml with the given tilts.
func withTilts(t testing.TB, tilts ...string) *policy.Policy {
	t.Helper()
	data, err := os.ReadFile(tiltsTreePath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data) + "tilts:\n"
	for _, tl := range tilts {
		text += "  - " + tl + "\n"
	}
	return parse(t, "tilts.yml", []byte(text))
}

func day(s string) time.Time {
	d, err := time.Parse(time.RFC3339, s)
	if err != nil {
		d, err = time.Parse(policy.DateLayout, s)
	}
	if err != nil {
		panic(err)
	}
	return d
}

func effective(t testing.TB, p *policy.Policy, at time.Time) (*policy.Policy, *targets.Explanation) {
	t.Helper()
	q, ex, err := targets.Effective(p, at)
	if err != nil {
		t.Fatalf("Effective(%s, %s): %v", p.Name, at, err)
	}
	return q, ex
}

// checkLocals compares each sleeve's weight within its parent with want,
// given in sleeve order.
func checkLocals(t testing.TB, p *policy.Policy, want ...string) {
	t.Helper()
	if len(want) != len(p.Sleeves) {
		t.Fatalf("%d weights for %d sleeves", len(want), len(p.Sleeves))
	}
	for i, w := range want {
		if s := p.Sleeves[i]; !s.Local.Equal(dec(w)) {
			t.Errorf("%s: weight %s, want %s", s.Path, s.Local, w)
		}
	}
}

// TestGlideHandWorked checks the glide path of testdata/hand.yml (born
// 2000-01-01; rows at 30, 40 and 50) on dates whose answers are worked
// out below. Sleeves: stocks, bonds, crypto, crypto/aggressive,
// crypto/balanced, crypto/conservative, cash.
func TestGlideHandWorked(t *testing.T) {
	p := load(t, handPath)
	tests := []struct {
		name, date           string
		years, days, inYear  int
		from, to             int
		fraction             string
		local                []string
		cryptoAggressiveGoal string // its fraction of the whole portfolio
	}{
		// Age 20 + 152/366 (2020 is a leap year): before the first row,
		// which holds as written.
		{"before the first row", "2020-06-01", 20, 152, 366, 30, 30, "0",
			[]string{"0.6", "0.1", "0.25", "0.5", "0.3", "0.2", "0.05"}, "0.125"},
		// On the 30th birthday the row holds exactly.
		{"on a row", "2030-01-01", 30, 0, 365, 30, 40, "0",
			[]string{"0.6", "0.1", "0.25", "0.5", "0.3", "0.2", "0.05"}, "0.125"},
		// Age 35 + 0/365 (2035-01-01 to 2036-01-01 is 365 days): n = 5 x
		// 365 = 1825 of m = 10 x 365 = 3650, exactly half way.
		// stocks 60% + (50% - 60%)/2 = 55%; bonds 10% + 25%/2 = 22.5%;
		// crypto 25% - 15%/2 = 17.5%; cash 5%. Crypto's split: 50->30 is
		// 40%, 30->50 is 40%, 20% stays. Aggressive: 40% x 17.5% = 7%.
		{"half way", "2035-01-01", 35, 0, 365, 30, 40, "0.5",
			[]string{"0.55", "0.225", "0.175", "0.4", "0.4", "0.2", "0.05"}, "0.07"},
		// One day later: n = 1826, m - n = 1824.
		// stocks (60% x 1824 + 50% x 1826)/3650 = 2007.4/3650 = 0.549972602...
		// bonds (10% x 1824 + 35% x 1826)/3650 = 821.5/3650 = 0.225068493...
		// crypto (25% x 1824 + 10% x 1826)/3650 = 638.6/3650 = 0.174958904...
		// cash 5% x 3650/3650 = 0.05 exactly.
		// Rounded down to 8 places they sum to 0.99999999: the residue
		// 0.00000001 goes to the largest, stocks: 0.54997261.
		// Crypto: aggressive (50% x 1824 + 30% x 1826)/3650 = 1459.8/3650
		// = 0.399945205..., balanced 1460.2/3650 = 0.400054794...,
		// conservative 20%; rounded down: 0.39994520 + 0.40005479 + 0.2 =
		// 0.99999999, the residue to balanced (the larger): 0.40005480.
		// Aggressive of the whole: 0.3999452 x 0.1749589 = 0.06997397225228.
		{"between rows", "2035-01-02T23:59:59Z", 35, 1, 365, 30, 40, "0.500274",
			[]string{"0.54997261", "0.22506849", "0.1749589", "0.3999452", "0.4000548", "0.2", "0.05"}, "0.06997397225228"},
		// Age 60: after the last row (50), which holds as written.
		{"after the last row", "2060-03-01", 60, 60, 366, 50, 50, "0",
			[]string{"0.4", "0.55", "0", "0", "0", "1", "0.05"}, "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, ex := effective(t, p, day(tt.date))
			checkLocals(t, q, tt.local...)
			g := ex.Glide
			if g == nil {
				t.Fatal("no glide step in the explanation")
			}
			if g.Years != tt.years || g.Days != tt.days || g.DaysInYear != tt.inYear || g.FromAge != tt.from || g.ToAge != tt.to ||
				!g.Fraction.Equal(dec(tt.fraction)) {
				t.Errorf("glide step %+v, want age %d + %d/%d, rows %d-%d, fraction %s", *g, tt.years, tt.days, tt.inYear, tt.from, tt.to, tt.fraction)
			}
			if i, _ := q.SleeveIndex("crypto/aggressive"); !q.Sleeves[i].Target.Equal(dec(tt.cryptoAggressiveGoal)) {
				t.Errorf("crypto/aggressive target %s, want %s", q.Sleeves[i].Target, tt.cryptoAggressiveGoal)
			}
			if ex.Date != tt.date[:10] {
				t.Errorf("Date = %s", ex.Date)
			}
		})
	}
}

// TestTiltsHandWorked applies tilts to testdata/tilts.yml: stocks 55%,
// bonds 30%, crypto 10% (large 70%, small 30%), cash 5%. Weights are
// given in sleeve order: stocks, bonds, crypto, crypto/large,
// crypto/small, cash.
func TestTiltsHandWorked(t *testing.T) {
	const (
		cryptoFromBonds = `{sleeve: crypto, tilt: +2%, until: 2027-03-31, reason: "r", from: [bonds, stocks]}`
	)
	tests := []struct {
		name    string
		tilts   []string
		date    string
		local   []string
		applied []string // per active tilt
		expired int
	}{
		// crypto 10% + 2% = 12%. The donors' 85% becomes 83%, pro rata:
		// stocks 83% x 55/85 = 0.537058823..., bonds 83% x 30/85 =
		// 0.292941176...; rounded down 0.53705882 + 0.29294117 = 0.82999999,
		// the residue to stocks (the larger): 0.53705883.
		{"pro rata from listed siblings, on its until day", []string{cryptoFromBonds}, "2027-03-31T23:59:59Z",
			[]string{"0.53705883", "0.29294117", "0.12", "0.7", "0.3", "0.05"}, []string{"0.02"}, 0},
		// From 2027-04-01 (UTC) the tilt has expired.
		{"expired the day after", []string{cryptoFromBonds}, "2027-04-01",
			[]string{"0.55", "0.3", "0.1", "0.7", "0.3", "0.05"}, nil, 1},
		// cash 5% + 3% = 8%, taken from all siblings: their 95% becomes
		// 92%: stocks 92% x 55/95 = 0.532631578..., bonds 92% x 30/95 =
		// 0.290526315..., crypto 92% x 10/95 = 0.096842105...; rounded down
		// they sum to 0.91999998, the residue 0.00000002 to stocks.
		{"pro rata from every sibling", []string{`{sleeve: cash, tilt: 3%, until: 2030-01-01, reason: "r"}`}, "2026-01-01",
			[]string{"0.53263159", "0.29052631", "0.0968421", "0.7", "0.3", "0.08"}, []string{"0.03"}, 0},
		// A negative tilt of a sub-sleeve gives to its sibling: small 30%
		// - 10% = 20%, large 70% + 10% = 80%. The top level is untouched.
		{"negative, within crypto", []string{`{sleeve: crypto/small, tilt: -10%, until: 2030-01-01, reason: "r"}`}, "2026-01-01",
			[]string{"0.55", "0.3", "0.1", "0.8", "0.2", "0.05"}, []string{"-0.1"}, 0},
		// large 70% + 50% would be 120%: the tilt takes all small has,
		// 30%, and stops at 100%.
		{"clamped at 100%", []string{`{sleeve: crypto/large, tilt: +50%, until: 2030-01-01, reason: "r"}`}, "2026-01-01",
			[]string{"0.55", "0.3", "0.1", "1", "0", "0.05"}, []string{"0.3"}, 0},
		// bonds 30% - 40% would be -10%: it gives its 30% to stocks.
		{"clamped at 0%", []string{`{sleeve: bonds, tilt: -40%, until: 2030-01-01, reason: "r", from: [stocks]}`}, "2026-01-01",
			[]string{"0.85", "0", "0.1", "0.7", "0.3", "0.05"}, []string{"-0.3"}, 0},
		// In file order: bonds gives its 30% to cash (35%); then stocks
		// can take nothing from bonds.
		{"nothing left to take", []string{
			`{sleeve: bonds, tilt: -30%, until: 2030-01-01, reason: "r", from: [cash]}`,
			`{sleeve: stocks, tilt: +5%, until: 2030-01-01, reason: "r", from: [bonds]}`,
		}, "2026-01-01", []string{"0.55", "0", "0.1", "0.7", "0.3", "0.35"}, []string{"-0.3", "0"}, 0},
		// large takes small's 30% (100%), then gives 10% back: small
		// weighs 0%, so the receivers share equally: small 10%.
		{"giving to sleeves at 0%", []string{
			`{sleeve: crypto/large, tilt: +30%, until: 2030-01-01, reason: "r"}`,
			`{sleeve: crypto/large, tilt: -10%, until: 2030-01-01, reason: "r"}`,
		}, "2026-01-01", []string{"0.55", "0.3", "0.1", "0.9", "0.1", "0.05"}, []string{"0.3", "-0.1"}, 0},
		// Tilts at two levels: crypto 12% as above; small 20%, large 80%.
		// Large of the whole: 80% x 12% = 9.6%.
		{"two levels", []string{cryptoFromBonds, `{sleeve: crypto/small, tilt: -10%, until: 2027-03-31, reason: "r"}`}, "2027-01-15",
			[]string{"0.53705883", "0.29294117", "0.12", "0.8", "0.2", "0.05"}, []string{"0.02", "-0.1"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := withTilts(t, tt.tilts...)
			q, ex := effective(t, p, day(tt.date))
			checkLocals(t, q, tt.local...)
			if len(ex.Active) != len(tt.applied) || len(ex.Expired) != tt.expired {
				t.Fatalf("%d active, %d expired; want %d, %d", len(ex.Active), len(ex.Expired), len(tt.applied), tt.expired)
			}
			for k, a := range ex.Active {
				if !a.Applied.Equal(dec(tt.applied[k])) || a.Clamped() != !a.Applied.Equal(a.Tilt) {
					t.Errorf("tilt %d applied %s (clamped %v), want %s", k, a.Applied, a.Clamped(), tt.applied[k])
				}
			}
			if ex.Glide != nil {
				t.Errorf("glide step without a glide path: %+v", ex.Glide)
			}
		})
	}
	q, _ := effective(t, withTilts(t, cryptoFromBonds, `{sleeve: crypto/small, tilt: -10%, until: 2027-03-31, reason: "r"}`), day("2027-01-15"))
	if i, _ := q.SleeveIndex("crypto/large"); !q.Sleeves[i].Target.Equal(dec("0.096")) {
		t.Errorf("crypto/large target %s, want 0.096", q.Sleeves[i].Target)
	}
}

// TestGlideExample works out the shipped example on 2026-11-20, the date
// of its holdings. The investor, born 1990-05-01, is 36 + 203/365 (May 1
// to November 20 is 30+30+31+31+30+31+20 = 203 days; to 2027-05-01, 365):
// between the rows at 35 and 50, n = 365 + 203 = 568 of m = 15 x 365 =
// 5475 days, m - n = 4907.
//
//	equities (60% x 4907 + 55% x 568)/5475 = 3256.6/5475 = 0.594812785...
//	bonds    (15% x 4907 + 30% x 568)/5475 =  906.45/5475 = 0.165561643...
//	crypto   (20% x 4907 + 10% x 568)/5475 = 1038.2/5475 = 0.189625570...
//	cash     5% exactly
//
// Rounded down: 0.59481278 + 0.16556164 + 0.18962557 + 0.05 = 0.99999999,
// the residue to equities: 0.59481279. Within crypto:
//
//	aggressive   (30% x 4907 + 10% x 568)/5475 = 1528.9/5475 = 0.279251141...
//	balanced     (50% x 4907 + 30% x 568)/5475 = 2623.9/5475 = 0.479251141...
//	conservative (20% x 4907 + 60% x 568)/5475 = 1322.2/5475 = 0.241497716...
//
// Rounded down they sum to 0.99999999; balanced gets the residue:
// 0.47925115. The tilt adds 2% to crypto: 0.20962557. Equities and bonds,
// 0.76037443 together, give it pro rata: their new total 0.74037443 x
// 0.59481279/0.76037443 = 0.579167529..., and x 0.16556164/0.76037443 =
// 0.161206900...; rounded down 0.57916752 + 0.16120690 = 0.74037442, the
// residue to equities: 0.57916753.
func TestGlideExample(t *testing.T) {
	p := load(t, glideExample)
	at := day("2026-11-20T21:00:00Z")
	q, ex := effective(t, p, at)
	// equities, bonds, crypto, aggressive, balanced, conservative, cash
	checkLocals(t, q, "0.57916753", "0.1612069", "0.20962557", "0.27925114", "0.47925115", "0.24149771", "0.05")
	// balanced of the whole: 0.47925115 x 0.20962557 = 0.1004632954919055.
	if i, _ := q.SleeveIndex("crypto/balanced"); !q.Sleeves[i].Target.Equal(dec("0.1004632954919055")) {
		t.Errorf("crypto/balanced target %s", q.Sleeves[i].Target)
	}
	g := ex.Glide
	if g == nil || g.FromAge != 35 || g.ToAge != 50 || g.Years != 36 || g.Days != 203 || !g.Age.Equal(dec("36.556164")) ||
		!g.Fraction.Equal(dec("0.103744")) || g.FromLine != 35 || g.ToLine != 41 {
		t.Errorf("glide step %+v", g)
	}
	if len(ex.Active) != 1 || ex.Active[0].Sleeve != "crypto" || ex.Active[0].Until != "2027-03-31" ||
		strings.Join(ex.Active[0].From, ",") != "equities,bonds" || len(ex.Expired) != 0 {
		t.Errorf("tilts: active %+v, expired %+v", ex.Active, ex.Expired)
	}
	if !regexp.MustCompile(`^` + p.Version + `-[0-9a-f]{8}$`).MatchString(q.Version) {
		t.Errorf("Version %q, want %s-<8 hex digits>", q.Version, p.Version)
	}
	// On retirement (2055-05-01) and ever after, the last row holds.
	r, ex := effective(t, p, day("2070-01-01"))
	checkLocals(t, r, "0.4", "0.52", "0.03", "0", "0", "1", "0.05")
	if ex.Glide.FromAge != 65 || ex.Glide.ToAge != 65 || len(ex.Expired) != 1 {
		t.Errorf("2070: glide %+v, expired %+v", ex.Glide, ex.Expired)
	}
}

// TestNoStrategy: a policy without a glide path or tilts is returned as
// it is, on any date.
func TestNoStrategy(t *testing.T) {
	p := load(t, examplePath)
	for _, at := range []string{"1900-01-01", "2026-11-20T21:00:00Z", "2999-12-31T23:59:59Z"} {
		q, ex := effective(t, p, day(at))
		if q != p {
			t.Errorf("%s: Effective returned a different policy (version %s, was %s)", at, q.Version, p.Version)
		}
		if ex.Glide != nil || len(ex.Active) != 0 || len(ex.Expired) != 0 {
			t.Errorf("%s: explanation %+v", at, ex)
		}
	}
	// Once every tilt has expired the policy is the file's again.
	tilted := withTilts(t, `{sleeve: cash, tilt: 1%, until: 2026-12-31, reason: "r"}`)
	if q, _ := effective(t, tilted, day("2027-01-01")); q != tilted {
		t.Errorf("expired tilts: version %s, want the policy itself (%s)", q.Version, tilted.Version)
	}
}

// TestVersion: the version follows the effective targets, and only them.
func TestVersion(t *testing.T) {
	p := load(t, handPath)
	v := func(at string) string {
		q, _ := effective(t, p, day(at))
		return q.Version
	}
	if a, b := v("2035-01-02"), v("2035-01-02T18:00:00Z"); a != b {
		t.Errorf("same day, versions %s and %s", a, b)
	}
	if a, b := v("2035-01-02"), v("2035-01-03"); a == b {
		t.Errorf("different targets, same version %s", a)
	}
	// Before the first row and after the last the targets stand still.
	if a, b := v("2010-01-01"), v("2020-06-30"); a != b {
		t.Errorf("same targets, versions %s and %s", a, b)
	}
	if a, b := v("2065-01-01"), v("2080-01-01"); a != b || !strings.HasPrefix(a, p.Version+"-") {
		t.Errorf("after the last row: versions %s and %s", a, b)
	}
	// The instant counts, not the zone it is written in: 2035-01-02
	// 20:00 in New York is 01:00 on January 3 in UTC.
	ny := time.FixedZone("EST", -5*3600)
	if a, b := v("2035-01-03"), effectiveVersion(t, p, time.Date(2035, 1, 2, 20, 0, 0, 0, ny)); a != b {
		t.Errorf("zones: %s and %s", a, b)
	}
}

func effectiveVersion(t *testing.T, p *policy.Policy, at time.Time) string {
	q, _ := effective(t, p, at)
	return q.Version
}

func TestNewlyExpired(t *testing.T) {
	p := withTilts(t,
		`{sleeve: cash, tilt: 1%, until: 2026-12-31, reason: "a"}`,
		`{sleeve: bonds, tilt: 1%, until: 2027-06-30, reason: "b"}`,
		`{sleeve: stocks, tilt: -1%, until: 2025-01-01, reason: "c"}`)
	_, before := effective(t, p, day("2026-12-31"))
	_, after := effective(t, p, day("2027-01-01"))
	got := targets.NewlyExpired(before, after)
	if len(got) != 1 || got[0].Sleeve != "cash" || got[0].Reason != "a" || got[0].Until != "2026-12-31" {
		t.Errorf("NewlyExpired = %+v, want the cash tilt", got)
	}
	if got := targets.NewlyExpired(after, after); len(got) != 0 {
		t.Errorf("same explanation: %+v", got)
	}
	if got := targets.NewlyExpired(nil, after); got != nil {
		t.Errorf("no previous explanation: %+v", got)
	}
}

func TestBeforeBirth(t *testing.T) {
	p := load(t, handPath)
	_, _, err := targets.Effective(p, day("1999-12-31"))
	if err == nil || !strings.Contains(err.Error(), "date 1999-12-31 is before the investor's birth date 2000-01-01") {
		t.Errorf("error %v", err)
	}
	if _, _, err := targets.Effective(p, day("2000-01-01")); err != nil {
		t.Errorf("on the birth date: %v", err)
	}
}
