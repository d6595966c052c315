package targets

import (
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

func date(s string) time.Time {
	d, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return d
}

func TestAge(t *testing.T) {
	tests := []struct {
		birth, day        string
		years, days, span int
	}{
		// May 1 to November 20: 30+30+31+31+30+31+20 days; the next
		// birthday is 365 days after the last.
		{"1990-05-01", "2026-11-20", 36, 203, 365},
		{"1990-05-01", "2026-05-01", 36, 0, 365},
		{"1990-05-01", "2026-04-30", 35, 364, 365},
		{"1990-05-01", "1990-05-01", 0, 0, 365},
		// 2027-05-01 to 2028-05-01 spans February 29, 2028.
		{"1990-05-01", "2027-05-02", 37, 1, 366},
		// Born on February 29: the birthday is March 1 in common years.
		// 2000-02-29 to 2001-02-28 is 365 days, to 2001-03-01 366.
		{"2000-02-29", "2001-02-28", 0, 365, 366},
		{"2000-02-29", "2001-03-01", 1, 0, 365},
		// 2003-03-01 to 2004-02-28 is 364 days, to 2004-02-29 365.
		{"2000-02-29", "2004-02-28", 3, 364, 365},
		// 2004-02-29 to 2005-03-01 is 366 days.
		{"2000-02-29", "2004-02-29", 4, 0, 366},
	}
	for _, tt := range tests {
		y, d, s, err := age(date(tt.birth), date(tt.day))
		if err != nil || y != tt.years || d != tt.days || s != tt.span {
			t.Errorf("age(%s, %s) = %d + %d/%d (%v), want %d + %d/%d", tt.birth, tt.day, y, d, s, err, tt.years, tt.days, tt.span)
		}
	}
	if _, _, _, err := age(date("2000-02-29"), date("2000-02-28")); err == nil || !strings.Contains(err.Error(), "before the investor's birth date") {
		t.Errorf("a day before birth: %v", err)
	}
}

func TestDistribute(t *testing.T) {
	d := decimal.RequireFromString
	tests := []struct {
		name  string
		total string
		w     []string
		want  []string
	}{
		{"exact", "1", []string{"0.55", "0.3", "0.15"}, []string{"0.55", "0.3", "0.15"}},
		{"scaled exactly", "0.5", []string{"2", "1", "1"}, []string{"0.25", "0.125", "0.125"}},
		// 1/3 each rounds down to 0.33333333; the residue 0.00000001 goes
		// to the first of the equally large weights.
		{"thirds", "1", []string{"1", "1", "1"}, []string{"0.33333334", "0.33333333", "0.33333333"}},
		// All at 0: equal shares.
		{"all zero", "1", []string{"0", "0", "0"}, []string{"0.33333334", "0.33333333", "0.33333333"}},
		// 2/3 and 1/3 of 0.1: 0.06666666 and 0.03333333 rounded down; the
		// residue 0.00000001 to the larger weight, the second.
		{"residue to the largest", "0.1", []string{"1", "2"}, []string{"0.03333333", "0.06666667"}},
		{"a zero weight stays zero", "0.7", []string{"0", "3", "4"}, []string{"0", "0.3", "0.4"}},
		{"nothing to share", "0", []string{"1", "2"}, []string{"0", "0"}},
	}
	for _, tt := range tests {
		w := make([]decimal.Decimal, len(tt.w))
		for k, s := range tt.w {
			w[k] = d(s)
		}
		prefix := []decimal.Decimal{d("9")}
		got := distribute(prefix, d(tt.total), w)
		if len(got) != 1+len(tt.want) || !got[0].Equal(d("9")) {
			t.Fatalf("%s: distribute did not append: %v", tt.name, got)
		}
		sum := decimal.Zero
		for k, want := range tt.want {
			if !got[1+k].Equal(d(want)) {
				t.Errorf("%s: share %d = %s, want %s", tt.name, k, got[1+k], want)
			}
			sum = sum.Add(got[1+k])
		}
		if !sum.Equal(d(tt.total)) {
			t.Errorf("%s: shares sum to %s, want %s", tt.name, sum, tt.total)
		}
	}
}
