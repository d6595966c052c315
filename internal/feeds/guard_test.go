package feeds

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// A guardStep is one action on a Guard and what it must give.
type guardStep struct {
	offer   *Quote
	verdict Verdict
	// check: symbols to check at t0+at, and the problems "SYM reason".
	check    []string
	at       time.Duration
	problems []string
	// accepted/pending: a symbol's price that must be accepted/pending
	// ("VTI 100"; "VTI -" for none).
	accepted, pending string
}

func offer(sym, price string, at time.Duration, v Verdict) guardStep {
	return guardStep{offer: &Quote{Symbol: sym, Price: dec(price), At: t0.Add(at)}, verdict: v}
}

func check(symbols string, at time.Duration, problems ...string) guardStep {
	return guardStep{check: strings.Split(symbols, ","), at: at, problems: problems}
}

func accepted(s string) guardStep { return guardStep{accepted: s} }
func pending(s string) guardStep  { return guardStep{pending: s} }

const sec = time.Second

func TestGuard(t *testing.T) {
	tests := []struct {
		name    string
		maxMove string
		steps   []guardStep
	}{
		{"missing", "0.10", []guardStep{
			check("VTI,BND", 0, "BND missing", "VTI missing"),
			accepted("VTI -"),
		}},
		{"stale and recovery", "0.10", []guardStep{
			offer("VTI", "100", 0, Accepted),
			check("VTI", 300*sec), // exactly maxAge old: fresh
			check("VTI", 300*sec+1, "VTI stale"),
			offer("VTI", "101", 290*sec, Accepted),
			check("VTI", 300*sec+1),
			accepted("VTI 101"),
		}},
		{"jump quarantined then confirmed", "0.10", []guardStep{
			offer("VTI", "100", 0, Accepted),
			offer("VTI", "115", 10*sec, Quarantined),
			check("VTI", 20*sec, "VTI quarantined"),
			accepted("VTI 100"),
			pending("VTI 115"),
			offer("VTI", "116", 20*sec, Confirmed),
			accepted("VTI 116"),
			pending("VTI -"),
			check("VTI", 30*sec),
		}},
		{"spike discarded", "0.10", []guardStep{
			offer("VTI", "100", 0, Accepted),
			offer("VTI", "150", 10*sec, Quarantined),
			offer("VTI", "101", 20*sec, Discarded),
			accepted("VTI 101"),
			pending("VTI -"),
			check("VTI", 30*sec),
			// The spike's price is no reference any more.
			offer("VTI", "150", 30*sec, Quarantined),
		}},
		{"a new jump replaces the candidate", "0.10", []guardStep{
			offer("VTI", "100", 0, Accepted),
			offer("VTI", "150", 10*sec, Quarantined),
			offer("VTI", "200", 20*sec, Quarantined),
			pending("VTI 200"),
			check("VTI", 20*sec, "VTI quarantined"),
			offer("VTI", "205", 30*sec, Confirmed),
			accepted("VTI 205"),
		}},
		{"exact bounds", "0.10", []guardStep{
			offer("VTI", "100", 0, Accepted),
			offer("VTI", "110", 10*sec, Accepted), // exactly 10%
			offer("VTI", "121.0000001", 20*sec, Quarantined),
			offer("VTI", "90", 30*sec, Quarantined), // 25.6% from 121.0000001, 18.2% from 110
			pending("VTI 90"),
			offer("VTI", "99", 40*sec, Confirmed), // exactly 10% from 90 (9 <= 9)
			accepted("VTI 99"),
			offer("VTI", "108.9", 50*sec, Accepted),
			offer("VTI", "98.0099999", 60*sec, Quarantined),
			offer("VTI", "98.01", 70*sec, Confirmed),
		}},
		{"spike resolved to the accepted side", "0.10", []guardStep{
			offer("VTI", "110", 0, Accepted),
			offer("VTI", "130", 10*sec, Quarantined),
			offer("VTI", "99", 20*sec, Discarded), // 23.8% from 130, exactly 10% from 110
		}},
		{"ignored quotes", "0.10", []guardStep{
			offer("VTI", "100", 10*sec, Accepted),
			offer("VTI", "101", 10*sec, Ignored),
			offer("VTI", "101", 5*sec, Ignored),
			accepted("VTI 100"),
			offer("VTI", "150", 20*sec, Quarantined),
			// Newer than the accepted quote but not than the quarantined one.
			offer("VTI", "151", 15*sec, Ignored),
			offer("VTI", "100", 20*sec, Ignored),
			pending("VTI 150"),
			accepted("VTI 100"),
		}},
		{"zero maxMove disables the jump check", "0", []guardStep{
			offer("BTC", "100", 0, Accepted),
			offer("BTC", "1000", 10*sec, Accepted),
			offer("BTC", "0.01", 20*sec, Accepted),
			check("BTC", 30*sec),
		}},
		{"negative maxMove fails closed", "-0.1", []guardStep{
			offer("BTC", "100", 0, Accepted),
			offer("BTC", "100", 10*sec, Quarantined),
			offer("BTC", "100", 20*sec, Quarantined),
			check("BTC", 20*sec, "BTC quarantined"),
		}},
		{"rejected quotes", "0.10", []guardStep{
			offer("VTI", "0", 0, Rejected),
			offer("VTI", "-1", 0, Rejected),
			offer("", "1", 0, Rejected),
			offer("V TI", "1", 0, Rejected),
			{offer: &Quote{Symbol: "VTI", Price: dec("1")}, verdict: Rejected},
			{offer: &Quote{Symbol: "VTI", Price: decimal.New(1, 400), At: t0}, verdict: Rejected},
			check("VTI", 0, "VTI missing"),
		}},
		{"quote from the future", "0.10", []guardStep{
			offer("VTI", "100", 2*time.Minute, Accepted),
			check("VTI", time.Minute), // exactly MaxClockSkew ahead
			check("VTI", time.Minute-1, "VTI future"),
		}},
		{"quarantine of a stale symbol reports quarantined", "0.10", []guardStep{
			offer("VTI", "100", 0, Accepted),
			offer("VTI", "150", 400*sec, Quarantined),
			check("VTI", 500*sec, "VTI quarantined"),
			offer("VTI", "151", 450*sec, Confirmed),
			check("VTI", 500*sec),
		}},
		{"sorted, once per symbol, independent symbols", "0.10", []guardStep{
			offer("VTI", "100", 0, Accepted),
			offer("BND", "70", 0, Accepted),
			offer("BND", "80", 10*sec, Quarantined),
			check("VTI,GLD,BND,VTI,GLD", 400*sec, "BND quarantined", "GLD missing", "VTI stale"),
			check("VTI", 10*sec),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewGuard(5*time.Minute, dec(tt.maxMove))
			for i, s := range tt.steps {
				where := fmt.Sprintf("step %d", i)
				switch {
				case s.offer != nil:
					if v := g.Offer(*s.offer); v != s.verdict {
						t.Errorf("%s: Offer(%s %s at +%s) = %s, want %s", where, s.offer.Symbol, s.offer.Price,
							s.offer.At.Sub(t0), v, s.verdict)
					}
				case s.check != nil:
					var got []string
					for _, p := range g.Check(s.check, t0.Add(s.at)) {
						got = append(got, p.Symbol+" "+string(p.Reason))
						if p.Detail == "" {
							t.Errorf("%s: problem %v without detail", where, p)
						}
					}
					if !slices.Equal(got, s.problems) {
						t.Errorf("%s: Check at +%s = %q, want %q", where, s.at, got, s.problems)
					}
				case s.accepted != "":
					checkGuardQuote(t, where+": accepted", g.Quote, s.accepted)
				case s.pending != "":
					checkGuardQuote(t, where+": pending", g.Pending, s.pending)
				}
			}
		})
	}
}

// checkGuardQuote checks get's quote against "SYM price" or "SYM -".
func checkGuardQuote(t *testing.T, what string, get func(string) (Quote, bool), want string) {
	t.Helper()
	sym, price, _ := strings.Cut(want, " ")
	q, ok := get(sym)
	switch {
	case price == "-" && ok:
		t.Errorf("%s %s = %s, want none", what, sym, q.Price)
	case price != "-" && (!ok || !q.Price.Equal(dec(price))):
		t.Errorf("%s %s = %s (%v), want %s", what, sym, q.Price, ok, price)
	}
}

func TestGuardDetails(t *testing.T) {
	g := NewGuard(5*time.Minute, dec("0.1"))
	g.Offer(Quote{Symbol: "VTI", Price: dec("100"), At: t0})
	g.Offer(Quote{Symbol: "VTI", Price: dec("115.5"), At: t0.Add(10 * sec)})
	g.Offer(Quote{Symbol: "BND", Price: dec("72.15"), At: t0})
	g.Offer(Quote{Symbol: "GLD", Price: dec("190"), At: t0.Add(3 * time.Minute)})
	tests := []struct {
		at   time.Duration
		want []string
	}{
		{330 * sec, []string{
			"BND: stale: last price 72.15 is from 2026-11-20T21:00:00Z, 5m30s old, more than the 5m0s allowed",
			"VTI: quarantined: price 115.5 at 2026-11-20T21:00:10Z moved 15.5% from the accepted 100 at 2026-11-20T21:00:00Z, more than 10%; waiting for a newer quote to confirm or discard it",
			"VXUS: missing: no price received",
		}},
		{30 * sec, []string{
			"GLD: future: last price 190 is dated 2026-11-20T21:03:00Z, 2m30s ahead of the clock",
			"VTI: quarantined: price 115.5 at 2026-11-20T21:00:10Z moved 15.5% from the accepted 100 at 2026-11-20T21:00:00Z, more than 10%; waiting for a newer quote to confirm or discard it",
			"VXUS: missing: no price received",
		}},
	}
	for _, tt := range tests {
		var lines []string
		for _, p := range g.Check([]string{"VXUS", "VTI", "GLD", "BND"}, t0.Add(tt.at)) {
			lines = append(lines, p.String())
		}
		if !slices.Equal(lines, tt.want) {
			t.Errorf("at +%s, problems:\n  %s\nwant:\n  %s", tt.at, strings.Join(lines, "\n  "), strings.Join(tt.want, "\n  "))
		}
	}
}

func TestVerdictString(t *testing.T) {
	for v, want := range map[Verdict]string{Accepted: "accepted", Quarantined: "quarantined", Confirmed: "confirmed",
		Discarded: "discarded", Ignored: "ignored", Rejected: "rejected", 0: "Verdict(0)", 99: "Verdict(99)"} {
		if got := v.String(); got != want {
			t.Errorf("Verdict(%d).String() = %q, want %q", int(v), got, want)
		}
	}
}
