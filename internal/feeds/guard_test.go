package feeds

import (
	"fmt"
	"math/rand/v2"
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
	// recv is when the quote arrives, after t0 (the injected clock);
	// offer sets it to the quote's own time.
	recv time.Duration
	// check: symbols to check at t0+at, and the problems "SYM reason".
	check    []string
	at       time.Duration
	problems []string
	// accepted/pending: a symbol's price that must be accepted/pending
	// ("VTI 100"; "VTI -" for none).
	accepted, pending string
}

func offer(sym, price string, at time.Duration, v Verdict) guardStep {
	return guardStep{offer: &Quote{Symbol: sym, Price: dec(price), At: t0.Add(at)}, verdict: v, recv: at}
}

// offerFrom is offer of a quote from a named feed, dated at and received
// at recv.
func offerFrom(source, sym, price string, at, recv time.Duration, v Verdict) guardStep {
	return guardStep{offer: &Quote{Symbol: sym, Price: dec(price), At: t0.Add(at), Source: source}, verdict: v, recv: recv}
}

func check(symbols string, at time.Duration, problems ...string) guardStep {
	return guardStep{check: strings.Split(symbols, ","), at: at, problems: problems}
}

func accepted(s string) guardStep { return guardStep{accepted: s} }
func pending(s string) guardStep  { return guardStep{pending: s} }

const (
	sec = time.Second
	ms  = time.Millisecond
)

func TestGuard(t *testing.T) {
	tests := []struct {
		name    string
		maxMove string
		// confirmAfter: how long a move must persist (0: 10s, so that
		// the older cases confirm at their next agreeing quote).
		confirmAfter time.Duration
		steps        []guardStep
	}{
		{"missing", "0.10", 0, []guardStep{
			check("VTI,BND", 0, "BND missing", "VTI missing"),
			accepted("VTI -"),
		}},
		{"stale and recovery", "0.10", 0, []guardStep{
			offer("VTI", "100", 0, Accepted),
			check("VTI", 300*sec), // exactly maxAge old: fresh
			check("VTI", 300*sec+1, "VTI stale"),
			offer("VTI", "101", 290*sec, Accepted),
			check("VTI", 300*sec+1),
			accepted("VTI 101"),
		}},
		{"jump quarantined then confirmed", "0.10", 0, []guardStep{
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
		{"spike discarded", "0.10", 0, []guardStep{
			offer("VTI", "100", 0, Accepted),
			offer("VTI", "150", 10*sec, Quarantined),
			offer("VTI", "101", 20*sec, Discarded),
			accepted("VTI 101"),
			pending("VTI -"),
			check("VTI", 30*sec),
			// The spike's price is no reference any more.
			offer("VTI", "150", 30*sec, Quarantined),
		}},
		{"a new jump replaces the candidate", "0.10", 0, []guardStep{
			offer("VTI", "100", 0, Accepted),
			offer("VTI", "150", 10*sec, Quarantined),
			offer("VTI", "200", 20*sec, Quarantined),
			pending("VTI 200"),
			check("VTI", 20*sec, "VTI quarantined"),
			offer("VTI", "205", 30*sec, Confirmed),
			accepted("VTI 205"),
		}},
		{"exact bounds", "0.10", 0, []guardStep{
			offer("VTI", "100", 0, Accepted),
			offer("VTI", "110", 10*sec, Accepted), // exactly 10%
			offer("VTI", "121.0000001", 20*sec, Quarantined),
			offer("VTI", "90", 30*sec, Quarantined), // 25.6% from 121.0000001, 18.2% from 110
			pending("VTI 90"),
			offer("VTI", "98.9999999", 40*sec, Confirmed), // 8.9999999 above 90, 11.0000001 below 110
			accepted("VTI 98.9999999"),
			pending("VTI -"),
		}},
		{"exact bounds of agreement", "0.10", 0, []guardStep{
			offer("VTI", "100", 0, Accepted),
			offer("VTI", "80", 10*sec, Quarantined),
			offer("VTI", "88", 15*sec, Agreeing), // exactly 10% above 80 (8 <= 8)
			offer("VTI", "80.0000001", 18*sec, Agreeing),
			offer("VTI", "79.9999999", 19*sec, Quarantined), // 88 is more than 10% above it: a new move
			offer("VTI", "87.99999989", 29*sec, Confirmed),  // 7.99999999 <= 7.99999999, 10s after the new move
			accepted("VTI 87.99999989"),
			offer("VTI", "99", 40*sec, Quarantined),  // 11.00000011 > 8.799999989
			offer("VTI", "96.78", 50*sec, Discarded), // back within 10% of the accepted price (8.78000011 <= 8.799999989)
		}},
		{"spike resolved to the accepted side", "0.10", 0, []guardStep{
			offer("VTI", "110", 0, Accepted),
			offer("VTI", "130", 10*sec, Quarantined),
			offer("VTI", "99", 20*sec, Discarded), // 23.8% from 130, exactly 10% from 110
		}},
		{"ignored quotes", "0.10", 0, []guardStep{
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
		{"zero maxMove disables the jump check", "0", 0, []guardStep{
			offer("BTC", "100", 0, Accepted),
			offer("BTC", "1000", 10*sec, Accepted),
			offer("BTC", "0.01", 20*sec, Accepted),
			check("BTC", 30*sec),
		}},
		{"negative maxMove fails closed", "-0.1", 0, []guardStep{
			offer("BTC", "100", 0, Accepted),
			offer("BTC", "100", 10*sec, Quarantined),
			offer("BTC", "100", 20*sec, Quarantined),
			check("BTC", 20*sec, "BTC quarantined"),
		}},
		{"rejected quotes", "0.10", 0, []guardStep{
			offer("VTI", "0", 0, Rejected),
			offer("VTI", "-1", 0, Rejected),
			offer("", "1", 0, Rejected),
			offer("V TI", "1", 0, Rejected),
			{offer: &Quote{Symbol: "VTI", Price: dec("1")}, verdict: Rejected},
			{offer: &Quote{Symbol: "VTI", Price: decimal.New(1, 400), At: t0}, verdict: Rejected},
			check("VTI", 0, "VTI missing"),
		}},
		{"quote from the future", "0.10", 0, []guardStep{
			offer("VTI", "100", 2*time.Minute, Accepted),
			check("VTI", time.Minute), // exactly MaxClockSkew ahead
			check("VTI", time.Minute-1, "VTI future"),
		}},
		{"quarantine of a stale symbol reports quarantined", "0.10", 0, []guardStep{
			offer("VTI", "100", 0, Accepted),
			offer("VTI", "150", 400*sec, Quarantined),
			check("VTI", 500*sec, "VTI quarantined"),
			offer("VTI", "151", 450*sec, Confirmed),
			check("VTI", 500*sec),
		}},
		{"sorted, once per symbol, independent symbols", "0.10", 0, []guardStep{
			offer("VTI", "100", 0, Accepted),
			offer("BND", "70", 0, Accepted),
			offer("BND", "80", 10*sec, Quarantined),
			check("VTI,GLD,BND,VTI,GLD", 400*sec, "BND quarantined", "GLD missing", "VTI stale"),
			check("VTI", 10*sec),
		}},
		// Issue 12: a 1e39 quote confirmed by an identical one 300 ms
		// later was traded.
		{"an absurd price twice within 300ms stays unconfirmed", "0.10", 5 * time.Minute, []guardStep{
			offer("VTI", "100", 0, Accepted),
			offer("VTI", "1e39", 60*sec, Quarantined),
			offer("VTI", "1e39", 60*sec+300*ms, Agreeing),
			check("VTI", 61*sec, "VTI quarantined"),
			accepted("VTI 100"),
			pending("VTI 1e39"),
			offer("VTI", "1e39", 60*sec+5*time.Minute-ms, Agreeing),
			check("VTI", 60*sec+5*time.Minute, "VTI quarantined"),
			accepted("VTI 100"),
			// A price within max_move of the accepted one ends it.
			offer("VTI", "101", 60*sec+5*time.Minute, Discarded),
			check("VTI", 60*sec+5*time.Minute),
		}},
		{"a move that persists for confirm_after is accepted", "0.10", 5 * time.Minute, []guardStep{
			offer("VTI", "100", 0, Accepted),
			offer("VTI", "150", 10*sec, Quarantined),
			offer("VTI", "160", time.Minute, Agreeing),          // 150..160: within 10% of each other
			offer("VTI", "140", 2*time.Minute, Quarantined),     // 140..160 is not: the period starts again
			offer("VTI", "145", 5*time.Minute+10*sec, Agreeing), // 5m after the first, not after the restart
			offer("VTI", "146", 7*time.Minute-ms, Agreeing),
			check("VTI", 7*time.Minute, "VTI quarantined"),
			offer("VTI", "147", 7*time.Minute, Confirmed),
			accepted("VTI 147"),
			pending("VTI -"),
			check("VTI", 7*time.Minute),
		}},
		{"persistence counts by the local clock and the quotes' times alike", "0.10", 5 * time.Minute, []guardStep{
			offer("VTI", "100", 0, Accepted),
			// Dated 5 minutes apart but received 300 ms apart (back-dated).
			offerFrom("bus", "VTI", "1e39", 10*sec, 6*time.Minute, Quarantined),
			offerFrom("bus", "VTI", "1e39", 5*time.Minute+10*sec, 6*time.Minute+300*ms, Agreeing),
			// Received 5 minutes later but dated 1 s later.
			offerFrom("bus", "VTI", "1e39", 5*time.Minute+11*sec, 11*time.Minute, Confirmed),
			accepted("VTI 1e39"),
		}},
		{"a quote dated only 1s later does not confirm however late it arrives", "0.10", 5 * time.Minute, []guardStep{
			offer("VTI", "100", 0, Accepted),
			offerFrom("bus", "VTI", "1e39", 10*sec, 10*sec, Quarantined),
			offerFrom("bus", "VTI", "1e39", 11*sec, 20*time.Minute, Agreeing),
			accepted("VTI 100"),
		}},
		{"a second feed confirms at once", "0.10", 5 * time.Minute, []guardStep{
			offerFrom("bus", "VTI", "100", 0, 0, Accepted),
			offerFrom("bus", "VTI", "150", 10*sec, 10*sec, Quarantined),
			offerFrom("bus", "VTI", "151", 11*sec, 11*sec, Agreeing), // the same feed again
			offerFrom("", "VTI", "151", 12*sec, 12*sec, Agreeing),    // a quote of no named feed is not another feed
			offerFrom("coingecko", "VTI", "152", 13*sec, 13*sec, Confirmed),
			accepted("VTI 152"),
			check("VTI", 13*sec),
		}},
		{"a second feed that disagrees does not confirm", "0.10", 5 * time.Minute, []guardStep{
			offerFrom("bus", "VTI", "100", 0, 0, Accepted),
			offerFrom("bus", "VTI", "1e39", 10*sec, 10*sec, Quarantined),
			offerFrom("http", "VTI", "2e39", 11*sec, 11*sec, Quarantined), // not within 10% of 1e39: a new move
			pending("VTI 2e39"),
			offerFrom("http", "VTI", "2e39", 12*sec, 12*sec, Agreeing),
			offerFrom("bus", "VTI", "2.1e39", 13*sec, 13*sec, Confirmed), // now two feeds agree
			accepted("VTI 2.1e39"),
			offerFrom("http", "VTI", "100", 14*sec, 14*sec, Quarantined),
			offerFrom("bus", "VTI", "2.1e39", 15*sec, 15*sec, Discarded),
		}},
		{"a held move from no named feed needs persistence", "0.10", 5 * time.Minute, []guardStep{
			offerFrom("", "VTI", "100", 0, 0, Accepted),
			offerFrom("", "VTI", "150", 10*sec, 10*sec, Quarantined),
			offerFrom("bus", "VTI", "150", 11*sec, 11*sec, Agreeing),
			offerFrom("coingecko", "VTI", "150", 12*sec, 12*sec, Confirmed), // bus and coingecko: two feeds
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			confirmAfter := tt.confirmAfter
			if confirmAfter == 0 {
				confirmAfter = 10 * sec
			}
			g := NewGuard(5*time.Minute, dec(tt.maxMove), confirmAfter)
			for i, s := range tt.steps {
				where := fmt.Sprintf("step %d", i)
				switch {
				case s.offer != nil:
					if v := g.Offer(*s.offer, t0.Add(s.recv)); v != s.verdict {
						t.Errorf("%s: Offer(%s %s at +%s, received +%s) = %s, want %s", where, s.offer.Symbol, s.offer.Price,
							s.offer.At.Sub(t0), s.recv, v, s.verdict)
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
	g := NewGuard(5*time.Minute, dec("0.1"), 5*time.Minute)
	g.Offer(Quote{Symbol: "VTI", Price: dec("100"), At: t0}, t0)
	g.Offer(Quote{Symbol: "VTI", Price: dec("115.5"), At: t0.Add(10 * sec), Source: "bus"}, t0.Add(10*sec))
	g.Offer(Quote{Symbol: "VTI", Price: dec("116"), At: t0.Add(20 * sec), Source: "bus"}, t0.Add(20*sec))
	g.Offer(Quote{Symbol: "BND", Price: dec("72.15"), At: t0}, t0)
	g.Offer(Quote{Symbol: "GLD", Price: dec("190"), At: t0.Add(3 * time.Minute)}, t0)
	const vti = "VTI: quarantined: unconfirmed price 115.5 at 2026-11-20T21:00:10Z from feed bus moved 15.5% from the accepted 100 at 2026-11-20T21:00:00Z, " +
		"more than 10%; the accepted price stays in force until quotes agreeing within 10% persist for 5m0s (not before 2026-11-20T21:05:10Z) or another feed reports the move"
	tests := []struct {
		at   time.Duration
		want []string
	}{
		{330 * sec, []string{
			"BND: stale: last price 72.15 is from 2026-11-20T21:00:00Z, 5m30s old, more than the 5m0s allowed",
			vti,
			"VXUS: missing: no price received",
		}},
		{30 * sec, []string{
			"GLD: future: last price 190 is dated 2026-11-20T21:03:00Z, 2m30s ahead of the clock",
			vti,
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
		Discarded: "discarded", Ignored: "ignored", Rejected: "rejected", Agreeing: "agreeing", 0: "Verdict(0)", 99: "Verdict(99)"} {
		if got := v.String(); got != want {
			t.Errorf("Verdict(%d).String() = %q, want %q", int(v), got, want)
		}
	}
}

// TestConfirmerProperties offers random series of quotes (two feeds and
// unnamed quotes, jumps and spikes, quotes received late or back-dated)
// and checks every verdict against the rules: a value more than maxMove
// from the accepted one is only ever accepted as Confirmed, and only after
// agreeing values from its run persisted for confirmAfter (by the local
// clock and the quotes' times) or came from a second named feed.
func TestConfirmerProperties(t *testing.T) {
	maxMove, after := dec("0.1"), 5*time.Minute
	within := func(p, ref decimal.Decimal) bool { return p.Sub(ref).Abs().Cmp(maxMove.Mul(ref)) <= 0 }
	sources := []string{"bus", "http", ""}
	seen := map[string]int{}
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 12))
		c := NewConfirmer(maxMove, after)
		price, at, recv := dec("100"), t0, t0
		c.Offer(Quote{Symbol: "VTI", Price: price, At: at}, recv)
		for step := range 200 {
			switch rng.IntN(4) {
			case 0: // a jump of up to ±60%
				price = price.Mul(decimal.NewFromInt(int64(40 + rng.IntN(121)))).Div(decimal.NewFromInt(100)).Round(4)
			case 1: // a small move
				price = price.Mul(decimal.NewFromInt(int64(97 + rng.IntN(7)))).Div(decimal.NewFromInt(100)).Round(4)
			}
			if price.Sign() <= 0 {
				price = dec("1")
			}
			at = at.Add(time.Duration(rng.IntN(120)) * time.Second)
			recv = recv.Add(time.Duration(rng.IntN(120)) * time.Second)
			q := Quote{Symbol: "VTI", Price: price, At: at, Source: sources[rng.IntN(len(sources))]}
			prev, _ := c.Accepted()
			held, wasHeld := c.Held()
			v := c.Offer(q, recv)
			acc, _ := c.Accepted()
			where := fmt.Sprintf("seed %d step %d: %s %s from %q after accepted %s (held %v %+v)", seed, step, v, q.Price, q.Source, prev.Price, wasHeld, held)
			switch v {
			case Accepted, Discarded:
				if !within(q.Price, prev.Price) || !acc.Price.Equal(q.Price) || (v == Discarded) != wasHeld {
					t.Fatal(where)
				}
			case Confirmed:
				persisted := recv.Sub(held.Since) >= after && q.At.Sub(held.First.At) >= after
				otherFeed := q.Source != "" && slices.ContainsFunc(held.Sources, func(s string) bool { return s != q.Source })
				if !wasHeld || within(q.Price, prev.Price) || !acc.Price.Equal(q.Price) || !(persisted || otherFeed) {
					t.Fatal(where)
				}
				if otherFeed {
					seen["confirmed by another feed"]++
				} else {
					seen["confirmed by persistence"]++
				}
			case Quarantined, Agreeing:
				if within(q.Price, prev.Price) || !acc.Price.Equal(prev.Price) || (v == Agreeing && !wasHeld) {
					t.Fatal(where)
				}
				if h, _ := c.Held(); v == Quarantined && (!h.Since.Equal(recv) || !h.First.Price.Equal(q.Price)) {
					t.Fatal(where + ": a new run must start at this quote")
				}
			default:
				t.Fatal(where)
			}
			seen[v.String()]++
		}
	}
	for _, k := range []string{"accepted", "discarded", "quarantined", "agreeing", "confirmed by persistence", "confirmed by another feed"} {
		if seen[k] == 0 {
			t.Errorf("no %s verdict in the random series: %v", k, seen)
		}
	}
	t.Logf("verdicts: %v", seen)
}
