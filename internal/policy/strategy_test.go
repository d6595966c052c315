package policy

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

func TestGlidePathPolicy(t *testing.T) {
	p := parseFile(t, "testdata/glidepath.good.yml")
	if inv := p.Investor; inv == nil || !inv.BirthDate.Equal(time.Date(1990, 5, 1, 0, 0, 0, 0, time.UTC)) || inv.RetirementAge != 65 || inv.Line != 6 {
		t.Fatalf("Investor = %+v", p.Investor)
	}
	// Rows may list sleeves in any order: weights are indexed like
	// Sleeves (stocks, bonds, crypto, crypto/aggressive,
	// crypto/conservative, cash). "retirement" is the retirement age.
	rows := []struct {
		age   int
		line  int
		local []string
	}{
		{30, 18, []string{"0.7", "0.05", "0.2", "0.6", "0.4", "0.05"}},
		{50, 24, []string{"0.45", "0.4", "0.1", "0.2", "0.8", "0.05"}},
		{65, 32, []string{"0.35", "0.6", "0", "0", "1", "0.05"}},
	}
	if len(p.GlidePath) != len(rows) {
		t.Fatalf("%d rows, want %d", len(p.GlidePath), len(rows))
	}
	for k, want := range rows {
		g := p.GlidePath[k]
		if g.Age != want.age || g.Line != want.line {
			t.Errorf("row %d: age %d line %d, want %d line %d", k, g.Age, g.Line, want.age, want.line)
		}
		for i, w := range want.local {
			if !g.Local[i].Equal(dec(w)) {
				t.Errorf("row %d: %s weight %s, want %s", k, p.Sleeves[i].Path, g.Local[i], w)
			}
		}
	}
	// Parsing leaves the sleeves at the weights of targets.
	if !p.Sleeves[2].Target.Equal(dec("0.15")) || !p.Sleeves[3].Target.Equal(dec("0.075")) {
		t.Errorf("crypto targets %s %s, want those of targets", p.Sleeves[2].Target, p.Sleeves[3].Target)
	}
	tilts := []struct {
		sleeve, delta, until, reason string
		from                         []string // nil: every sibling
		line                         int
	}{
		{"crypto", "0.02", "2027-03-31", "halving cycle", []string{"bonds", "stocks"}, 39},
		{"crypto/aggressive", "-0.1", "2026-12-31", "trim after the rally", nil, 40},
		{"cash", "0.015", "2030-01-01", "house deposit", nil, 44},
	}
	if len(p.Tilts) != len(tilts) {
		t.Fatalf("%d tilts, want %d", len(p.Tilts), len(tilts))
	}
	for k, want := range tilts {
		tl := p.Tilts[k]
		var from []string
		for _, f := range tl.From {
			from = append(from, p.Sleeves[f].Path)
		}
		if p.Sleeves[tl.Sleeve].Path != want.sleeve || !tl.Delta.Equal(dec(want.delta)) || tl.Until.Format(DateLayout) != want.until ||
			tl.Reason != want.reason || !slices.Equal(from, want.from) || (tl.From == nil) != (want.from == nil) || tl.Line != want.line {
			t.Errorf("tilt %d = %s %s until %s %q from %v line %d, want %+v", k, p.Sleeves[tl.Sleeve].Path, tl.Delta,
				tl.Until.Format(DateLayout), tl.Reason, from, tl.Line, want)
		}
	}
	if !p.HasStrategy() {
		t.Error("HasStrategy = false")
	}
}

func TestNoStrategy(t *testing.T) {
	p := parseFile(t, examplePath)
	if p.HasStrategy() || p.Investor != nil || p.GlidePath != nil || p.Tilts != nil {
		t.Errorf("example: HasStrategy %v, investor %v, %d rows, %d tilts", p.HasStrategy(), p.Investor, len(p.GlidePath), len(p.Tilts))
	}
}

func TestLevels(t *testing.T) {
	p := parseFile(t, "testdata/nested.good.yml")
	var got []string
	for _, level := range p.Levels() {
		var names []string
		for _, i := range level {
			names = append(names, p.Sleeves[i].Path)
		}
		got = append(got, strings.Join(names, " "))
	}
	want := []string{
		"growth cash",
		"growth/equity growth/alternatives",
		"growth/equity/home growth/equity/world",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Levels = %q, want %q", got, want)
	}
}

func TestWithLocals(t *testing.T) {
	p := parseFile(t, examplePath)
	// equities, bonds, real_estate, crypto, crypto/large_cap,
	// crypto/balanced, crypto/growth, cash
	local := []decimal.Decimal{dec("0.5"), dec("0.25"), dec("0.1"), dec("0.1"), dec("0.5"), dec("0.3"), dec("0.2"), dec("0.05")}
	q, err := p.WithLocals(local, "v2")
	if err != nil {
		t.Fatal(err)
	}
	// crypto 10% with the absolute 2% band; large_cap 50% of 10% = 5%;
	// equities 50%: min(5%, 25% x 50% = 12.5%) = 5%; real_estate 10%:
	// min(5%, 2.5%) = 2.5%.
	want := []struct{ path, target, hw, low, high string }{
		{"equities", "0.5", "0.05", "0.45", "0.55"},
		{"real_estate", "0.1", "0.025", "0.075", "0.125"},
		{"crypto", "0.1", "0.02", "0.08", "0.12"},
		{"crypto/large_cap", "0.05", "0.02", "0.03", "0.07"},
		{"crypto/growth", "0.02", "0.02", "0", "0.04"},
	}
	for _, w := range want {
		i, _ := q.SleeveIndex(w.path)
		s := q.Sleeves[i]
		if !s.Target.Equal(dec(w.target)) || !s.HalfWidth.Equal(dec(w.hw)) || !s.BandLow.Equal(dec(w.low)) || !s.BandHigh.Equal(dec(w.high)) {
			t.Errorf("%s: target %s half-width %s band %s-%s, want %+v", w.path, s.Target, s.HalfWidth, s.BandLow, s.BandHigh, w)
		}
	}
	if q.Version != "v2" || q.Name != p.Name || &q.Instruments[0] != &p.Instruments[0] {
		t.Errorf("copy: version %q name %q, instruments shared %v", q.Version, q.Name, &q.Instruments[0] == &p.Instruments[0])
	}
	if !p.Sleeves[0].Target.Equal(dec("0.55")) || p.Version == "v2" {
		t.Errorf("WithLocals changed the original: equities %s, version %s", p.Sleeves[0].Target, p.Version)
	}
	// The weights Parse read give back the same sleeves.
	same := make([]decimal.Decimal, len(p.Sleeves))
	for i := range p.Sleeves {
		same[i] = p.Sleeves[i].Local
	}
	r, err := p.WithLocals(same, p.Version)
	if err != nil || !slices.EqualFunc(r.Sleeves, p.Sleeves, sameSleeve) {
		t.Errorf("WithLocals(own weights) = %v, %v", r, err)
	}

	bad := []struct {
		name  string
		local []decimal.Decimal
		want  string
	}{
		{"short", local[:3], "policy smith-household: 3 weights for 8 sleeves"},
		{"sum", replace(local, 0, "0.6"), `policy smith-household: the level of sleeve "equities" sums to 1.1, want 1`},
		{"nested sum", replace(local, 6, "0.1"), `policy smith-household: the level of sleeve "crypto/large_cap" sums to 0.9, want 1`},
		{"negative", replace(replace(local, 0, "-0.1"), 1, "0.85"), `policy smith-household: sleeve "equities": weight -0.1 is outside 0%-100%`},
	}
	for _, tt := range bad {
		if _, err := p.WithLocals(tt.local, "x"); err == nil || err.Error() != tt.want {
			t.Errorf("%s: error %v, want %s", tt.name, err, tt.want)
		}
	}
	z := parseFile(t, "testdata/zero_target.good.yml")
	zl := make([]decimal.Decimal, len(z.Sleeves))
	for i := range z.Sleeves {
		zl[i] = z.Sleeves[i].Local
	}
	gold, _ := z.SleeveIndex("gold")
	donor := z.Cash
	zl[gold], zl[donor] = zl[gold].Add(dec("0.01")), zl[donor].Sub(dec("0.01"))
	if _, err := z.WithLocals(zl, "x"); err == nil || !strings.Contains(err.Error(), `sleeve "gold" gets a target of 0.01 but no instrument fills it`) {
		t.Errorf("gold without an instrument: %v", err)
	}
}

func replace(xs []decimal.Decimal, i int, v string) []decimal.Decimal {
	out := slices.Clone(xs)
	out[i] = dec(v)
	return out
}

func sameSleeve(a, b Sleeve) bool {
	return a.Path == b.Path && a.Local.Equal(b.Local) && a.Target.Equal(b.Target) && a.HalfWidth.Equal(b.HalfWidth) &&
		a.BandLow.Equal(b.BandLow) && a.BandHigh.Equal(b.BandHigh)
}

// TestZone: the investor's time zone comes from investor.time_zone, else
// the schedule's CRON_TZ, else the local zone the shell gives, else UTC; tax.time_zone, when given,
// sets the trade dates' zone. An investor block may give the zone alone.
func TestZone(t *testing.T) {
	base := `policy: z
currency: USD
targets: {stocks: 100%, cash: 0%}
bands: {absolute: 5%}
instruments: {A: {sleeve: stocks}}
accounts: {tx: {type: taxable}}
`
	for _, tc := range []struct{ extra, zone, from, trade string }{
		{"rebalance: {trigger: threshold}\ninvestor: {time_zone: Europe/Paris}\n", "Europe/Paris", "investor.time_zone", "Europe/Paris"},
		{"rebalance: {trigger: calendar, schedule: \"CRON_TZ=America/New_York 0 10 * * MON-FRI\"}\n", "America/New_York", "rebalance.schedule's CRON_TZ", "America/New_York"},
		{"rebalance: {trigger: calendar, schedule: \"CRON_TZ=America/New_York 0 10 * * MON-FRI\"}\ninvestor: {time_zone: Asia/Tokyo}\n", "Asia/Tokyo", "investor.time_zone", "Asia/Tokyo"},
		{"rebalance: {trigger: threshold}\n", "UTC", "UTC (no zone given)", "UTC"},
		{"rebalance: {trigger: threshold}\ninvestor: {time_zone: Europe/Paris}\ntax: {time_zone: America/Chicago}\n", "Europe/Paris", "investor.time_zone", "America/Chicago"},
	} {
		p, err := Parse("z.yml", []byte(base+tc.extra))
		if err != nil {
			t.Fatalf("%s: %v", tc.extra, err)
		}
		loc, from := p.Zone()
		if loc.String() != tc.zone || from != tc.from || p.TradeZone().String() != tc.trade {
			t.Errorf("%s: zone %s from %s, trade zone %s; want %s from %s, %s", tc.extra, loc, from, p.TradeZone(), tc.zone, tc.from, tc.trade)
		}
	}
	// The shell gives the host's zone as the last fallback; Parse never
	// reads it (the core reads no process state).
	p, _ := Parse("z.yml", []byte(base+"rebalance: {trigger: threshold}\n"))
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Fatal(err)
	}
	p.LocalZone = tokyo
	if loc, from := p.Zone(); loc != tokyo || from != "the daemon's local zone" {
		t.Errorf("with LocalZone: zone %s from %s, want Asia/Tokyo from the daemon's local zone", loc, from)
	}
	// 2026-11-21 02:00 UTC is 2026-11-20 in New York: the investor's day.
	p, _ = Parse("z.yml", []byte(base+"rebalance: {trigger: threshold}\ninvestor: {time_zone: America/New_York}\n"))
	if d := p.Day(time.Date(2026, 11, 21, 2, 0, 0, 0, time.UTC)); d.Format(DateLayout) != "2026-11-20" {
		t.Errorf("day = %s, want 2026-11-20", d.Format(DateLayout))
	}
	for extra, want := range map[string]string{
		"rebalance: {trigger: threshold}\ninvestor: {time_zone: Mars/Olympus}\n": `investor.time_zone: "Mars/Olympus" is not a time zone`,
		"rebalance: {trigger: threshold}\ninvestor: {time_zone: Local}\n":        "investor.time_zone: Local depends on the machine",
		"rebalance: {trigger: threshold}\ninvestor: {retirement_age: 65}\n":      "investor.birth_date: required field is missing",
	} {
		if _, err := Parse("z.yml", []byte(base+extra)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", extra, err, want)
		}
	}
}
