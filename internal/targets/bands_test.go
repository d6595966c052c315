package targets

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/policy"
)

// seedsPolicy reads configs/examples/glidepath-seeds.yaml with its
// glide_bands block edited by edit.
func seedsPolicy(t *testing.T, edit func(string) string) *policy.Policy {
	t.Helper()
	data, err := os.ReadFile("../../configs/examples/glidepath-seeds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Parse("glidepath-seeds.yaml", []byte(edit(string(data))))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// seedBands are the weights of each band of the seeds' table, worked out
// by hand: crypto at the midpoint of its range, the split as written, and
// equities, bonds and cash sharing the rest 60 : 15 : 5 (the rest x 0.75,
// 0.1875, 0.0625). 20-35: crypto 25%, rest 75%; 35-50: 15%, 85%; 50-60:
// 7.5%, 92.5%; 60+: 4%, 96%. The tolerance of crypto is half its range.
var seedBands = map[string]struct{ targets, crypto string }{
	"20-35": {"equities=0.5625 bonds=0.140625 crypto=0.25 crypto/aggressive=0.5 crypto/balanced=0.3 crypto/conservative=0.2 cash=0.046875", "0.25±0.05"},
	"35-50": {"equities=0.6375 bonds=0.159375 crypto=0.15 crypto/aggressive=0.3 crypto/balanced=0.5 crypto/conservative=0.2 cash=0.053125", "0.15±0.05"},
	"50-60": {"equities=0.69375 bonds=0.1734375 crypto=0.075 crypto/aggressive=0.1 crypto/balanced=0.3 crypto/conservative=0.6 cash=0.0578125", "0.075±0.025"},
	"60+":   {"equities=0.72 bonds=0.18 crypto=0.04 crypto/aggressive=0 crypto/balanced=0 crypto/conservative=1 cash=0.06", "0.04±0.01"},
}

// TestGlideBandsBoundaries: the seeds' table at every boundary age, the
// day before, on and after the birthday, with each owner of a shared age.
// Born 1990-05-01: 35 on 2025-05-01; on 2025-04-30 the age is 34 + 364/365
// = 34.997, in 20-35 (split 50/30/20; the interpolating workaround gave
// 30/50/20 there).
func TestGlideBandsBoundaries(t *testing.T) {
	upper := seedsPolicy(t, func(s string) string { return s })
	lower := seedsPolicy(t, func(s string) string { return strings.Replace(s, "boundary: upper", "boundary: lower", 1) })
	for _, tc := range []struct {
		day          string
		upper, lower string
	}{
		{"2009-05-01", "20-35", "20-35"}, // 19: before the first band
		{"2010-04-30", "20-35", "20-35"},
		{"2010-05-01", "20-35", "20-35"}, // 20: the first band's start
		{"2025-04-30", "20-35", "20-35"}, // 34.997
		{"2025-05-01", "35-50", "20-35"}, // 35: shared
		{"2025-05-02", "35-50", "35-50"},
		{"2040-04-30", "35-50", "35-50"},
		{"2040-05-01", "50-60", "35-50"}, // 50: shared
		{"2040-05-02", "50-60", "50-60"},
		{"2050-04-30", "50-60", "50-60"},
		{"2050-05-01", "60+", "50-60"}, // 60: shared
		{"2050-05-02", "60+", "60+"},
		{"2080-05-01", "60+", "60+"}, // 90
	} {
		at, _ := time.Parse(policy.DateLayout, tc.day)
		for _, m := range []struct {
			name string
			p    *policy.Policy
			want string
		}{{"upper", upper, tc.upper}, {"lower", lower, tc.lower}} {
			q, ex, err := Effective(m.p, at)
			if err != nil {
				t.Fatal(err)
			}
			want := seedBands[m.want]
			ci, _ := q.SleeveIndex("crypto")
			crypto := q.Sleeves[ci].Target.String() + "±" + q.Sleeves[ci].HalfWidth.String()
			if ex.Bands == nil || ex.Bands.Band != m.want || targetsOf(q) != want.targets || crypto != want.crypto {
				t.Errorf("%s, boundary %s: band %+v, %s, crypto %s; want %s: %s, crypto %s", tc.day, m.name, ex.Bands, targetsOf(q), crypto, m.want, want.targets, want.crypto)
			}
		}
	}
}

// TestGlideBandsRamp: with ramp_years: 1, the year before 35 moves from
// 20-35 to 35-50. On 2024-11-01 the age is 34 + 184/365: 184/365 of the
// way. Top level: equities (0.5625 x 181 + 0.6375 x 184) / 365 =
// 219.1125 / 365 = 0.60030821..., bonds 54.778125 / 365 = 0.15007705...,
// crypto (0.25 x 181 + 0.15 x 184) / 365 = 72.85 / 365 = 0.19958904...,
// cash 18.259375 / 365 = 0.05002568...; rounded down they sum to
// 0.99999998 and the residue goes to equities: 0.60030823. In crypto:
// aggressive 145.7 / 365 = 0.39917808, balanced 146.3 / 365 = 0.40082191
// + 0.00000001, conservative 0.2. On the birthday 35-50 holds exactly.
// With boundary lower the ramp is the year after 35, from 20-35.
func TestGlideBandsRamp(t *testing.T) {
	p := seedsPolicy(t, func(s string) string {
		return strings.Replace(s, "boundary: upper ", "ramp_years: 1\n  boundary: upper ", 1)
	})
	at := time.Date(2024, 11, 1, 0, 0, 0, 0, time.UTC)
	q, ex, err := Effective(p, at)
	if err != nil {
		t.Fatal(err)
	}
	want := "equities=0.60030823 bonds=0.15007705 crypto=0.19958904 crypto/aggressive=0.39917808 crypto/balanced=0.40082192 crypto/conservative=0.2 cash=0.05002568"
	if got := targetsOf(q); got != want || ex.Bands.Band != "20-35" || ex.Bands.RampTo != "35-50" || ex.Bands.Fraction.String() != "0.50411" {
		t.Errorf("ramp: %s, %+v\nwant %s", got, ex.Bands, want)
	}
	for day, band := range map[string]string{"2024-04-30": "20-35", "2025-05-01": "35-50"} {
		at, _ := time.Parse(policy.DateLayout, day)
		q, ex, _ := Effective(p, at)
		if targetsOf(q) != seedBands[band].targets || ex.Bands.RampTo != "" {
			t.Errorf("%s: %s (%+v), want %s", day, targetsOf(q), ex.Bands, seedBands[band].targets)
		}
	}
	lower := seedsPolicy(t, func(s string) string {
		return strings.Replace(s, "boundary: upper ", "ramp_years: 1\n  boundary: lower ", 1)
	})
	// 2025-11-01: 35 + 184/365, 184/365 of the way from 20-35 to 35-50:
	// the same weights.
	q, ex, _ = Effective(lower, time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC))
	if got := targetsOf(q); got != want || ex.Bands.Band != "35-50" || ex.Bands.RampTo != "20-35" {
		t.Errorf("ramp after the boundary: %s, %+v", got, ex.Bands)
	}
}

// TestGlideBandsErrors: the table's mistakes name their field and line.
func TestGlideBandsErrors(t *testing.T) {
	data, err := os.ReadFile("../../configs/examples/glidepath-seeds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for edit, want := range map[[2]string]string{
		{"ages: 35-50", "ages: 36-50"}:                                             "glide_bands.bands[1].ages: starts at 36, but the band before ends at 35",
		{"ages: 20-35", "ages: 20+"}:                                               "glide_bands.bands[0].ages: only the last band may be open",
		{"range: 20%-30%", "range: 30%-20%"}:                                       "glide_bands.bands[0].crypto.range: want a range like 20%-30%",
		{"range: 10%-20%,", "range: 10%-20%, target: 25%,"}:                        "glide_bands.bands[1].crypto.target: 25% is outside the range 10%-20%",
		{"split: {conservative: 100%}", "split: {conservative: 90%}"}:              "glide_bands.bands[3].crypto.split: the split sums to 90%",
		{"boundary: upper", "boundary: middle"}:                                    "glide_bands.boundary: want upper",
		{"    - ages: 60+\n", "    - ages: 60+\n      bonds: {range: 96%-100%}\n"}: "glide_bands.bands[3]: the targets of the band's sleeves sum to 102%, more than 100%",
	} {
		text := strings.Replace(string(data), edit[0], edit[1], 1)
		_, err := policy.Parse("s.yaml", []byte(text))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q -> %q: %v, want %q", edit[0], edit[1], err, want)
		}
	}
}

// TestTiltExpiryInvestorZone: a tilt until 2026-11-20 still applies at
// 21:00 that evening in New York (02:00 UTC on 2026-11-21) for a New York
// investor, and has expired for one in UTC. Before, days were UTC days.
func TestTiltExpiryInvestorZone(t *testing.T) {
	for zone, active := range map[string]int{"America/New_York": 1, "UTC": 0} {
		p, err := policy.Parse("tilt.yml", []byte(`policy: tilt
currency: USD
investor: {time_zone: `+zone+`}
targets: {stocks: 60%, bonds: 40%, cash: 0%}
bands: {absolute: 5%}
rebalance: {trigger: threshold}
instruments: {A: {sleeve: stocks}, B: {sleeve: bonds}}
accounts: {tx: {type: taxable}}
tilts:
  - {sleeve: stocks, tilt: +5%, until: 2026-11-20, reason: test}
`))
		if err != nil {
			t.Fatal(err)
		}
		_, ex, err := Effective(p, time.Date(2026, 11, 21, 2, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		if len(ex.Active) != active || len(ex.Active)+len(ex.Expired) != 1 {
			t.Errorf("%s: %d tilts active on %s, want %d", zone, len(ex.Active), ex.Date, active)
		}
	}
}
