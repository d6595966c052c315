package tax

import (
	"fmt"
	"time"
)

// Date is a calendar day with no time of day and no zone: the trade date of
// a purchase or a sale. The zero Date means "no date"; every Date made by
// NewDate, ParseDate or DateOf from year 1 on is not zero. Dates compare
// with ==, Before, After and Compare.
type Date struct {
	n int64 // days since 0001-01-01, plus one; 0 is the zero Date
}

// unixDay0 is 0001-01-01 in days since 1970-01-01.
var unixDay0 = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Unix() / secondsPerDay

const secondsPerDay = 24 * 60 * 60

// NewDate returns the date of year, month and day, normalized as time.Date
// normalizes (2025-02-29 is 2025-03-01).
func NewDate(year int, month time.Month, day int) Date {
	return fromTime(time.Date(year, month, day, 0, 0, 0, 0, time.UTC))
}

// DateOf returns the calendar day of t in t's own location. Convert t to
// the investor's or the exchange's zone first: 01:00 UTC is the previous
// day in New York.
func DateOf(t time.Time) Date {
	y, m, d := t.Date()
	return NewDate(y, m, d)
}

func fromTime(t time.Time) Date {
	return Date{n: t.Unix()/secondsPerDay - unixDay0 + 1}
}

// ParseDate reads a date written YYYY-MM-DD, such as 2025-03-01. The day
// must exist (2025-02-29 does not) and the year must be 0001 or later.
func ParseDate(s string) (Date, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil || t.Year() < 1 {
		return Date{}, fmt.Errorf("want a date like 2025-03-01, got %q", s)
	}
	return fromTime(t), nil
}

// Time returns midnight UTC of the date.
func (d Date) Time() time.Time {
	return time.Unix((d.n-1+unixDay0)*secondsPerDay, 0).UTC()
}

// IsZero reports whether d is the zero Date.
func (d Date) IsZero() bool { return d.n == 0 }

// String formats d as YYYY-MM-DD, or "" for the zero Date.
func (d Date) String() string {
	if d.IsZero() {
		return ""
	}
	return d.Time().Format(time.DateOnly)
}

// MarshalText formats d as YYYY-MM-DD (empty for the zero Date), so that
// dates appear in JSON as "2025-03-01".
func (d Date) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a date written YYYY-MM-DD; empty text is the zero Date.
func (d *Date) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*d = Date{}
		return nil
	}
	v, err := ParseDate(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// AddDays returns the date n days after d (before, for a negative n).
func (d Date) AddDays(n int) Date { return Date{n: d.n + int64(n)} }

// DaysUntil returns the number of days from d to e: negative when e is
// before d.
func (d Date) DaysUntil(e Date) int { return int(e.n - d.n) }

// Compare returns -1, 0 or +1 as d is before, equal to or after e.
func (d Date) Compare(e Date) int {
	switch {
	case d.n < e.n:
		return -1
	case d.n > e.n:
		return 1
	}
	return 0
}

// Before reports whether d is before e.
func (d Date) Before(e Date) bool { return d.n < e.n }

// After reports whether d is after e.
func (d Date) After(e Date) bool { return d.n > e.n }

// LongTermFrom returns the first sale date on which a lot acquired on
// acquired is held long-term, under the US rule (26 U.S.C. §1222, with the
// counting of Rev. Rul. 66-7 and Rev. Rul. 70-598): a gain or loss is
// long-term when the property is held more than one year, counting from the
// day after acquisition and including the day of sale. The holding period
// reaches one year on the anniversary of the acquisition, so a sale is
// long-term from the day after the anniversary: acquired 2025-03-01, it is
// short-term through 2026-03-01 and long-term from 2026-03-02.
//
// A lot acquired on the last day of a month reaches one year on the last
// day of that month a year later (Rev. Rul. 66-7: its holding months end on
// the last day of each month). Only February differs from the plain
// anniversary: acquired 2024-02-29, the anniversary is 2025-02-28 and the
// lot is long-term from 2025-03-01; acquired 2023-02-28, the anniversary is
// 2024-02-29 and the lot is long-term from 2024-03-01, not 2024-02-29.
func LongTermFrom(acquired Date) Date {
	y, m, day := acquired.Time().Date()
	if day == daysIn(y, m) {
		day = daysIn(y+1, m)
	}
	return NewDate(y+1, m, day).AddDays(1)
}

// daysIn returns the number of days of month m of year y.
func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// IsLongTerm reports whether a lot acquired on acquired and sold on sold is
// held long-term (see LongTermFrom).
func IsLongTerm(acquired, sold Date) bool {
	return !sold.Before(LongTermFrom(acquired))
}

// AddMonthsClamped returns t moved by months, with the day of the month
// capped at the last day of the month reached: 31 May plus six months is
// 30 November, where time.AddDate would give 1 December. It is how an age
// such as 59½ (six months after the 59th birthday) falls at a month's end.
func AddMonthsClamped(t time.Time, months int) time.Time {
	y, m, d := t.Date()
	h, mi, s := t.Clock()
	first := time.Date(y, m+time.Month(months), 1, h, mi, s, t.Nanosecond(), t.Location())
	last := first.AddDate(0, 1, -1).Day()
	return time.Date(first.Year(), first.Month(), min(d, last), h, mi, s, t.Nanosecond(), t.Location())
}
