package correlation

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

const day = 24 * time.Hour

// d0 is midnight UTC of a day; history buckets of a day are UTC days.
var d0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

func mustHistory(t testing.TB, interval time.Duration, window int) *History {
	t.Helper()
	h, err := NewHistory(interval, window)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// closesString writes closes as "interval:price@hh:mm ...", intervals
// counted from the one that holds d0.
func closesString(h *History, cs []Close) string {
	var b strings.Builder
	for i, c := range cs {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d:%s@%s", c.Bucket-h.Bucket(d0), c.Price, c.At.Format("15:04"))
	}
	return b.String()
}

func TestHistoryBucketKeepsLastQuote(t *testing.T) {
	h := mustHistory(t, day, 20)
	add := func(price string, at time.Time, want bool) {
		t.Helper()
		if got := h.Add("VTI", dec(price), at); got != want {
			t.Errorf("Add(%s at %s) = %v, want %v", price, at.Format(time.RFC3339), got, want)
		}
	}
	add("100", d0.Add(14*time.Hour), true)
	add("101", d0.Add(20*time.Hour), true)        // later the same day: the new close
	add("99", d0.Add(16*time.Hour), false)        // earlier than the close, arriving late
	add("98", d0.Add(20*time.Hour), false)        // the same instant again
	add("0", d0.Add(21*time.Hour), false)         // not a price
	add("-5", d0.Add(22*time.Hour), false)        // not a price
	add("102", d0.Add(day-time.Nanosecond), true) // the day's last instant
	add("103", d0.Add(day), true)                 // midnight starts the next day
	add("97", d0.Add(-time.Nanosecond), true)     // a late quote for the day before
	add("96", d0.Add(-2*time.Hour), false)        // earlier than that day's close
	want := "-1:97@23:59 0:102@23:59 1:103@00:00"
	if got := closesString(h, h.Closes("VTI")); got != want {
		t.Errorf("closes %s\nwant %s", got, want)
	}
	if cs := h.Closes("VTI"); cs[0].Bucket != h.Bucket(d0)-1 || cs[2].Bucket != h.Bucket(d0)+1 {
		t.Errorf("buckets %d %d, want %d %d", cs[0].Bucket, cs[2].Bucket, h.Bucket(d0)-1, h.Bucket(d0)+1)
	}
	if h.Len() != 3 || len(h.Closes("BND")) != 0 {
		t.Errorf("Len %d, BND %d closes", h.Len(), len(h.Closes("BND")))
	}
}

func TestHistoryBucketBoundaries(t *testing.T) {
	h := mustHistory(t, day, 20)
	// A UTC day: 2026-03-02T23:30-05:00 is March 3 in UTC.
	ny := time.FixedZone("EST", -5*3600)
	if got, want := h.Bucket(time.Date(2026, 3, 2, 23, 30, 0, 0, ny)), h.Bucket(d0.Add(day)); got != want {
		t.Errorf("bucket %d, want %d", got, want)
	}
	// Before 1970 buckets still floor: the day before the epoch is -1.
	epoch := time.Unix(0, 0)
	if h.Bucket(epoch) != 0 || h.Bucket(epoch.Add(-time.Nanosecond)) != -1 || h.Bucket(epoch.Add(-day)) != -1 || h.Bucket(epoch.Add(-day-1)) != -2 {
		t.Errorf("buckets around the epoch: %d %d %d %d", h.Bucket(epoch), h.Bucket(epoch.Add(-time.Nanosecond)), h.Bucket(epoch.Add(-day)), h.Bucket(epoch.Add(-day-1)))
	}
	if got := h.Start(h.Bucket(d0.Add(13 * time.Hour))); !got.Equal(d0) {
		t.Errorf("Start = %s, want %s", got, d0)
	}
	hourly := mustHistory(t, time.Hour, 24)
	if hourly.Bucket(d0.Add(90*time.Minute)) != hourly.Bucket(d0)+1 {
		t.Error("hourly buckets")
	}
}

// A history keeps window+2 closes per symbol: window+1 completed
// intervals and the one in progress.
func TestHistoryBound(t *testing.T) {
	const window = 5
	h := mustHistory(t, day, window)
	for k := range 40 {
		h.Add("BTC", decimal.NewFromInt(int64(100+k)), d0.Add(time.Duration(k)*day+12*time.Hour))
		if n := len(h.Closes("BTC")); n != min(k+1, window+2) {
			t.Fatalf("after %d days: %d closes, want %d", k+1, n, min(k+1, window+2))
		}
	}
	cs := h.Closes("BTC")
	if first, last := cs[0].Bucket, cs[len(cs)-1].Bucket; first != h.Bucket(d0)+33 || last != h.Bucket(d0)+39 {
		t.Errorf("kept days %d to %d, want 33 to 39", first-h.Bucket(d0), last-h.Bucket(d0))
	}
	// Quotes older than the oldest kept interval are refused; a missing
	// interval within reach is filled.
	if h.Add("BTC", dec("1"), d0.Add(32*day+23*time.Hour)) {
		t.Error("accepted a quote for day 32")
	}
	h2 := mustHistory(t, day, window)
	h2.Add("BTC", dec("1"), d0)
	h2.Add("BTC", dec("3"), d0.Add(2*day))
	if !h2.Add("BTC", dec("2"), d0.Add(day)) || closesString(h2, h2.Closes("BTC")) != "0:1@00:00 1:2@00:00 2:3@00:00" {
		t.Errorf("gap not filled: %s", closesString(h2, h2.Closes("BTC")))
	}
	// A jump far ahead drops everything before the new window.
	h2.Add("BTC", dec("9"), d0.Add(100*day))
	if cs := h2.Closes("BTC"); len(cs) != 1 || !cs[0].Price.Equal(dec("9")) {
		t.Errorf("after a jump: %s", closesString(h2, cs))
	}
}

// The content does not depend on the order quotes arrive in, repeated
// quotes (a redelivery) included.
func TestHistoryOrderIndependent(t *testing.T) {
	type quote struct {
		sym   string
		price decimal.Decimal
		at    time.Time
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var quotes []quote
	for k := range 300 {
		if k%7 == 6 {
			quotes = append(quotes, quotes[rng.IntN(len(quotes))])
			continue
		}
		at := d0.Add(time.Duration(rng.Int64N(int64(30 * day))))
		sym := []string{"VTI", "BND", "BTC"}[rng.IntN(3)]
		quotes = append(quotes, quote{sym, decimal.NewFromInt(1 + rng.Int64N(1000)), at})
	}
	var want string
	for trial := range 20 {
		h := mustHistory(t, day, 10)
		for _, i := range rng.Perm(len(quotes)) {
			h.Add(quotes[i].sym, quotes[i].price, quotes[i].at)
		}
		got := ""
		for _, s := range h.Symbols() {
			got += s + " " + closesString(h, h.Closes(s)) + "\n"
		}
		if h.Len() > 3*12 {
			t.Fatalf("%d closes, want at most 3 x 12", h.Len())
		}
		if trial == 0 {
			want = got
		} else if got != want {
			t.Fatalf("trial %d:\n%s\nwant\n%s", trial, got, want)
		}
	}
}

func TestHistoryJSON(t *testing.T) {
	h := mustHistory(t, day, 3)
	h.Add("VTI", dec("287.10"), d0.Add(20*time.Hour))
	h.Add("VTI", dec("288.5"), d0.Add(day+20*time.Hour))
	h.Add("TM-LARGE", dec("41250.123456789"), d0.Add(day+23*time.Hour))
	data, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"interval":"24h0m0s","window":3,"closes":{"TM-LARGE":[{"at":"2026-03-03T23:00:00Z","price":"41250.123456789"}],` +
		`"VTI":[{"at":"2026-03-02T20:00:00Z","price":"287.1"},{"at":"2026-03-03T20:00:00Z","price":"288.5"}]}}`
	if string(data) != want {
		t.Errorf("JSON\n%s\nwant\n%s", data, want)
	}
	var back History
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Interval() != day || back.Window() != 3 || closesString(h, back.Closes("VTI")) != closesString(h, h.Closes("VTI")) ||
		back.Closes("TM-LARGE")[0].Bucket != h.Closes("TM-LARGE")[0].Bucket {
		t.Errorf("round trip: %+v", back)
	}
	// The bound holds for any input: six days in a window of 3 keep 5.
	var many strings.Builder
	many.WriteString(`{"interval":"24h0m0s","window":3,"closes":{"X":[`)
	for k := range 6 {
		if k > 0 {
			many.WriteByte(',')
		}
		many.WriteString(`{"at":"` + d0.Add(time.Duration(k)*day).Format(time.RFC3339) + `","price":"1"}`)
	}
	many.WriteString(`]}}`)
	if err := json.Unmarshal([]byte(many.String()), &back); err != nil || back.Len() != 5 {
		t.Errorf("bounded input: %v, %d closes", err, back.Len())
	}
	for _, bad := range []string{
		`{"interval":"1 day","window":3,"closes":{}}`,
		`{"interval":"24h","window":0,"closes":{}}`,
		`{"interval":"0s","window":3,"closes":{}}`,
		`{"interval":"24h","window":3,"closes":{"X":[{"at":"2026-03-02T20:00:00Z","price":"-1"}]}}`,
		`{"interval":"24h","window":3,"closes":{"X":[{"at":"2026-03-02T20:00:00Z","price":"abc"}]}}`,
		`[]`,
	} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestHistoryRebucket(t *testing.T) {
	h := mustHistory(t, day, 20)
	for k := range 6 {
		h.Add("VTI", decimal.NewFromInt(int64(100+k)), d0.Add(time.Duration(k)*day+20*time.Hour))
		h.Add("OLD", decimal.NewFromInt(int64(1+k)), d0.Add(time.Duration(k)*day+20*time.Hour))
	}
	// Two-day intervals: the epoch-aligned pairs of days are (d0, d0+1),
	// (d0+2, d0+3), (d0+4, d0+5) since d0 is an even number of days
	// after the epoch; each keeps its later day's close.
	if h.Bucket(d0)%2 != 0 {
		t.Fatal("d0 is an odd day")
	}
	r, err := h.Rebucket(2*day, 20, []string{"VTI"})
	if err != nil {
		t.Fatal(err)
	}
	// Buckets of two days count from the one holding d0.
	if got := closesString(r, r.Closes("VTI")); got != "0:101@20:00 1:103@20:00 2:105@20:00" {
		t.Errorf("rebucketed: %s", got)
	}
	if len(r.Closes("OLD")) != 0 || len(h.Closes("OLD")) != 6 || len(h.Closes("VTI")) != 6 {
		t.Error("Rebucket kept a dropped symbol or changed its input")
	}
	// A shorter window keeps the last window+2 days.
	r, _ = h.Rebucket(day, 2, nil)
	if got := closesString(r, r.Closes("OLD")); got != "2:3@20:00 3:4@20:00 4:5@20:00 5:6@20:00" {
		t.Errorf("shorter window: %s", got)
	}
	if _, err := h.Rebucket(0, 2, nil); err == nil {
		t.Error("interval 0 accepted")
	}
}
