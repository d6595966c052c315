package tax_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// day parses a YYYY-MM-DD date or fails the test.
func day(t testing.TB, s string) tax.Date {
	t.Helper()
	d, err := tax.ParseDate(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestParseDate(t *testing.T) {
	for _, s := range []string{"2025-03-01", "2024-02-29", "0001-01-01", "9999-12-31", "1970-01-01", "1969-12-31"} {
		d, err := tax.ParseDate(s)
		if err != nil || d.IsZero() || d.String() != s {
			t.Errorf("ParseDate(%q) = %v (zero %v), %v", s, d, d.IsZero(), err)
		}
		if got := d.Time().Format(time.DateOnly); got != s || d.Time().Location() != time.UTC {
			t.Errorf("%s: Time() = %v", s, d.Time())
		}
	}
	for _, s := range []string{"", "2025-02-29", "2025-3-1", "2025-03-01T00:00:00Z", "0000-01-01", "01/03/2025", "2025-13-01", " 2025-03-01"} {
		if d, err := tax.ParseDate(s); err == nil {
			t.Errorf("ParseDate(%q) = %v, want an error", s, d)
		}
	}
}

func TestDateArithmetic(t *testing.T) {
	a, b := day(t, "2024-12-31"), day(t, "2025-01-01")
	if a.AddDays(1) != b || b.AddDays(-1) != a || a.DaysUntil(b) != 1 || b.DaysUntil(a) != -1 {
		t.Errorf("AddDays/DaysUntil across a year end: %v %v", a.AddDays(1), a.DaysUntil(b))
	}
	if got := day(t, "2024-02-28").AddDays(1); got.String() != "2024-02-29" {
		t.Errorf("2024-02-28 + 1 = %v", got)
	}
	if day(t, "2024-01-01").DaysUntil(day(t, "2025-01-01")) != 366 {
		t.Error("2024 does not have 366 days")
	}
	if !a.Before(b) || a.After(b) || !b.After(a) || a.Compare(b) != -1 || b.Compare(a) != 1 || a.Compare(a) != 0 {
		t.Error("ordering of 2024-12-31 and 2025-01-01 is wrong")
	}
	if tax.NewDate(2025, time.February, 29) != day(t, "2025-03-01") {
		t.Error("NewDate does not normalize 2025-02-29 to 2025-03-01")
	}
	var zero tax.Date
	if !zero.IsZero() || zero.String() != "" || !zero.Before(day(t, "0001-01-01")) {
		t.Errorf("zero Date = %q, IsZero %v", zero.String(), zero.IsZero())
	}
}

func TestDateOf(t *testing.T) {
	// 01:00 UTC on the 21st is still the 20th in New York (UTC-5 in November).
	utc := time.Date(2026, 11, 21, 1, 0, 0, 0, time.UTC)
	if got := tax.DateOf(utc); got.String() != "2026-11-21" {
		t.Errorf("DateOf(UTC) = %v", got)
	}
	if got := tax.DateOf(utc.In(time.FixedZone("EST", -5*3600))); got.String() != "2026-11-20" {
		t.Errorf("DateOf(EST) = %v, want 2026-11-20", got)
	}
}

func TestDateJSON(t *testing.T) {
	type doc struct {
		D tax.Date `json:"d"`
		Z tax.Date `json:"z"`
	}
	in := doc{D: day(t, "2026-03-02")}
	data, err := json.Marshal(in)
	if err != nil || string(data) != `{"d":"2026-03-02","z":""}` {
		t.Fatalf("Marshal = %s, %v", data, err)
	}
	var out doc
	if err := json.Unmarshal(data, &out); err != nil || out != in {
		t.Errorf("Unmarshal = %+v, %v; want %+v", out, err, in)
	}
	if err := json.Unmarshal([]byte(`{"d":"2026-02-30"}`), &out); err == nil {
		t.Error("Unmarshal accepted 2026-02-30")
	}
}

// TestLongTermFrom checks the holding-period rule: long-term from the day
// after the anniversary of acquisition, the anniversary of a month's last
// day being the last day of that month a year later.
func TestLongTermFrom(t *testing.T) {
	tests := []struct{ acquired, longTermFrom string }{
		{"2025-03-01", "2026-03-02"}, // the example of the rule
		{"2025-01-15", "2026-01-16"},
		{"2025-01-31", "2026-02-01"}, // last day of January: anniversary Jan 31
		{"2025-04-30", "2026-05-01"},
		{"2025-12-31", "2027-01-01"},
		{"2024-02-29", "2025-03-01"}, // anniversary 2025-02-28, the last day of February
		{"2023-02-28", "2024-03-01"}, // last day of February 2023: anniversary 2024-02-29
		{"2024-02-28", "2025-03-01"}, // not the last day of February 2024: anniversary 2025-02-28
		{"2023-02-27", "2024-02-28"},
		{"2027-02-28", "2028-03-01"}, // 2028 is a leap year: anniversary 2028-02-29
	}
	for _, tt := range tests {
		acq := day(t, tt.acquired)
		lt := tax.LongTermFrom(acq)
		if lt.String() != tt.longTermFrom {
			t.Errorf("LongTermFrom(%s) = %s, want %s", tt.acquired, lt, tt.longTermFrom)
		}
		// The boundary: short-term the day before, long-term on the day.
		if tax.IsLongTerm(acq, lt.AddDays(-1)) || !tax.IsLongTerm(acq, lt) || !tax.IsLongTerm(acq, lt.AddDays(400)) {
			t.Errorf("%s: IsLongTerm around %s is wrong", tt.acquired, lt)
		}
	}
	// Sold the same day, or exactly one year later: short-term.
	acq := day(t, "2025-03-01")
	if tax.IsLongTerm(acq, acq) || tax.IsLongTerm(acq, day(t, "2026-03-01")) {
		t.Error("a lot held one year or less counts as long-term")
	}
}

// FuzzParseDate checks that ParseDate never panics, that what it accepts
// formats back to the same text, and that the long-term boundary of an
// accepted date lies 366 or 367 days after it (the day after a one-year
// anniversary).
func FuzzParseDate(f *testing.F) {
	for _, s := range []string{"2025-03-01", "2024-02-29", "2023-02-28", "0001-01-01", "9999-12-31", "2025-02-29", "", "2025-1-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := tax.ParseDate(s)
		if err != nil {
			return
		}
		if d.IsZero() || d.String() != s {
			t.Fatalf("ParseDate(%q) = %q", s, d)
		}
		if n := d.DaysUntil(tax.LongTermFrom(d)); n != 366 && n != 367 {
			t.Fatalf("%s: long-term %d days later, at %s", s, n, tax.LongTermFrom(d))
		}
	})
}

func TestAddMonthsClamped(t *testing.T) {
	for _, c := range []struct {
		from   string
		months int
		want   string
	}{
		{"1967-05-20", 59*12 + 6, "2026-11-20"},
		{"1967-05-31", 59*12 + 6, "2026-11-30"}, // time.AddDate: 2026-12-01
		{"1967-08-31", 59*12 + 6, "2027-02-28"}, // time.AddDate: 2027-03-03
		{"1968-08-31", 59*12 + 6, "2028-02-29"}, // leap year
		{"2024-01-31", 1, "2024-02-29"},
		{"2024-12-31", -1, "2024-11-30"},
	} {
		from, _ := time.Parse("2006-01-02", c.from)
		if got := tax.AddMonthsClamped(from, c.months).Format("2006-01-02"); got != c.want {
			t.Errorf("%s + %d months = %s, want %s", c.from, c.months, got, c.want)
		}
	}
}
