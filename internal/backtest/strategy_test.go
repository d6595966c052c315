package backtest

import (
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/history"
	"github.com/rebalancerd/rebalancerd/internal/policy"
)

// TestStrategyAsInTheDaemon replays a glide path, a tilt and monthly
// contributions: the targets of each date are the glide path's row for the
// investor's age on that date with the tilt until its last day, and each
// contribution arrives as cash and is invested.
func TestStrategyAsInTheDaemon(t *testing.T) {
	pol := loadPolicy(t, "testdata/glide.yaml")
	var csv strings.Builder
	csv.WriteString("date,EQ,BD\n")
	for _, d := range []string{"1999-12-01", "2000-01-01", "2000-02-01", "2000-03-01", "2000-04-01", "2000-05-01",
		"2000-06-01", "2000-07-01", "2000-08-01"} {
		csv.WriteString(d + ",100,50\n") // flat prices: only the targets move the weights
		if d != "2000-08-01" {
			csv.WriteString(d[:8] + "15,100,50\n")
		}
	}
	h, err := history.Read("flat.csv", strings.NewReader(csv.String()), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(Config{Policy: pol, Holdings: cash("taxable", "10000", h.Rows[0].Date), History: h}, AsWritten)
	if err != nil {
		t.Fatal(err)
	}
	eq, _ := pol.SleeveIndex("equities")
	want := map[string]string{
		// Before the 50th birthday the glide path interpolates between
		// the rows of age 40 and 50 by the age in years and days (the
		// year from 1999-03-01 has 366 days), less the 5% tilt:
		// 0.8 - 0.2 x (9 + 275/366)/10 - 0.05 and 0.8 - 0.2 x (9 + 337/366)/10 - 0.05.
		"1999-12-01": "0.55497268", "2000-02-01": "0.5515847",
		// From the birthday: the age-50 row, less the tilt until 2000-06-30.
		"2000-03-01": "0.55", "2000-06-01": "0.55",
		// After the tilt: the row as written.
		"2000-07-01": "0.6", "2000-08-01": "0.6",
	}
	for i, p := range r.Points {
		d := p.Date.Format(history.DateLayout)
		w, ok := want[d]
		if !ok {
			continue
		}
		if got := r.Targets[i][eq]; !got.Equal(decimal.RequireFromString(w)) {
			t.Errorf("%s: equities target %s, want %s", d, got, w)
		}
		// Calendar monthly to target on the 1st: the household sits on
		// the target after the date's trades (to the step's rounding).
		if dev := p.Weights[eq].Sub(r.Targets[i][eq]).Abs(); dev.GreaterThan(decimal.RequireFromString("0.0001")) {
			t.Errorf("%s: equities at %s after trading, target %s", d, p.Weights[eq], r.Targets[i][eq])
		}
	}
	// 10,000 at the start and 1,000 on each of the 8 15ths of the month
	// after it, all invested at flat prices: 18,000.
	last := r.Points[len(r.Points)-1]
	if last.Value.Sub(decimal.NewFromInt(18000)).Abs().GreaterThan(decimal.RequireFromString("0.01")) {
		t.Errorf("final value %s, want 18000 (every contribution arrived)", last.Value)
	}
	in := decimal.Zero
	for _, p := range r.Points {
		in = in.Add(p.Inflow)
	}
	if !in.Equal(decimal.NewFromInt(8000)) {
		t.Errorf("contributions %s, want 8 x 1000", in)
	}
	if s := r.Summary(); s.CAGR != 0 || s.MaxDrawdown != 0 {
		t.Errorf("flat prices: CAGR %v, drawdown %v; contributions must not count as return", s.CAGR, s.MaxDrawdown)
	}
}

// TestPhaseInOfNewMoney: with phase_in, the starting cash is invested in
// equal steps on the phase_in schedule (days 0, 30, 60 and 90 for 90d
// every 30d), and so is a contribution above deposits_above, from its day:
// the daemon's rules (plan.FirstInvestment, targets.CashPhase), replayed.
func TestPhaseInOfNewMoney(t *testing.T) {
	pol := loadPolicy(t, "testdata/dca.yaml")
	var csv strings.Builder
	csv.WriteString("date,EQ,BD\n")
	day := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	for d := range 200 {
		csv.WriteString(day.AddDate(0, 0, d).Format(history.DateLayout) + ",100,50\n")
	}
	h, err := history.Read("flat.csv", strings.NewReader(csv.String()), nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(Config{Policy: pol, Holdings: cash("taxable", "12000", day), History: h}, AsWritten)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range r.Points {
		if p.Traded != "" {
			got = append(got, p.Date.Format("01-02")+" "+p.Traded)
		}
	}
	// First investment: 1 January and 30, 60, 90 days later. The
	// contribution of 15 February: that day and 30, 60, 90 days later.
	want := []string{"01-01 phase_in", "01-31 phase_in", "02-15 phase_in", "03-02 phase_in", "03-17 phase_in",
		"04-01 phase_in", "04-16 phase_in", "05-16 phase_in"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Fatalf("trades on\n  %s\nwant\n  %s", strings.Join(got, ", "), strings.Join(want, ", "))
	}
	// With flat prices nothing is lost: 12,000 + 8,000 at the end, all
	// invested at 60/40.
	last := r.Points[len(r.Points)-1]
	if !last.Value.Equal(decimal.NewFromInt(20000)) {
		t.Errorf("final value %s, want 20000", last.Value)
	}
	eq, _ := pol.SleeveIndex("equities")
	if !last.Weights[eq].Equal(decimal.RequireFromString("0.6")) {
		t.Errorf("equities end at %s, want 0.6", last.Weights[eq])
	}
}

// TestFastSchedulesOverSparseHistory: a rebalance schedule of every minute
// over a century between two dates acts once, at once, and a contribution
// of every minute is refused with its line instead of making millions of
// deposits (it took 40 s, and gigabytes, before).
func TestFastSchedulesOverSparseHistory(t *testing.T) {
	h, err := history.Read("sparse.csv", strings.NewReader("date,EQ,BD\n1960-01-01,100,50\n2060-01-01,100,50\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pol := loadPolicy(t, "testdata/glide.yaml")
	cp := *pol
	cp.Contributions = nil
	r := cp.Rebalance
	if r, err = withSchedule(r, policy.TriggerCalendar, "* * * * *"); err != nil {
		t.Fatal(err)
	}
	cp.Rebalance = r
	cfg := Config{Policy: &cp, Holdings: cash("taxable", "10000", h.Rows[0].Date), History: h}
	done := make(chan error, 1)
	go func() { _, err := Run(cfg, AsWritten); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a minute schedule over a century did not finish in 20 s")
	}
	_, err = Run(Config{Policy: pol, Holdings: cash("taxable", "10000", h.Rows[0].Date), History: h}, AsWritten)
	if err == nil || !strings.Contains(err.Error(), "fires more than 1000 times") {
		t.Fatalf("a monthly contribution over a century: %v", err)
	}
}
