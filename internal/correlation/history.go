package correlation

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
)

// Close is the closing price of one symbol in one interval: the last quote
// whose time falls in the interval.
type Close struct {
	// Bucket numbers the interval: floor(At / interval), counted from the
	// Unix epoch (for a day: the UTC day).
	Bucket int64
	Price  decimal.Decimal
	// At is the time of the quote.
	At time.Time
}

// History keeps the recent closing prices of each symbol: one per
// interval, for the intervals a window of the given length needs.
//
// For each symbol it keeps the closes of the last window+2 intervals up to
// that symbol's latest: window+1 completed intervals give window returns,
// and one more is the interval in progress. So a history holds at most
// symbols x (window+2) closes; the daemon adds only the symbols it
// watches (see Watch.Symbols, Watch.Fit).
//
// The close of an interval is the quote with the latest time in it,
// whatever the order quotes arrive in: a quote older than the interval's
// close, or at the same instant, is ignored; a late quote for an earlier
// interval within reach counts. So the content does not depend on arrival
// order. Quote times are taken as given: a quote far in the future would
// push every older close out, so feeds must refuse those (the daemon's do).
//
// A History is not safe for concurrent use.
type History struct {
	interval time.Duration
	window   int
	closes   map[string][]Close
}

// NewHistory returns an empty history of closes per interval for windows
// of the given number of intervals.
func NewHistory(interval time.Duration, window int) (*History, error) {
	if interval <= 0 {
		return nil, fmt.Errorf("correlation history: interval %s is not positive", interval)
	}
	if window < 1 {
		return nil, fmt.Errorf("correlation history: window of %d intervals, want at least 1", window)
	}
	return &History{interval: interval, window: window, closes: map[string][]Close{}}, nil
}

// Interval returns the length of one interval.
func (h *History) Interval() time.Duration { return h.interval }

// Window returns the number of intervals of a window.
func (h *History) Window() int { return h.window }

// Bucket returns the number of the interval that holds t.
func (h *History) Bucket(t time.Time) int64 {
	n, d := t.UnixNano(), int64(h.interval)
	b := n / d
	if n%d < 0 {
		b-- // floor, for times before 1970
	}
	return b
}

// Start returns the time the interval numbered b begins.
func (h *History) Start(b int64) time.Time { return time.Unix(0, b*int64(h.interval)).UTC() }

// Add records a quote. It reports whether the quote changed the history:
// it does not when the price is not above zero, when the quote is older
// than the kept intervals, or when its interval already has a close at
// the same time or later.
func (h *History) Add(symbol string, price decimal.Decimal, at time.Time) bool {
	if price.Sign() <= 0 {
		return false
	}
	b := h.Bucket(at)
	s := h.closes[symbol]
	c := Close{Bucket: b, Price: price, At: at}
	if len(s) == 0 {
		h.closes[symbol] = []Close{c}
		return true
	}
	latest := s[len(s)-1].Bucket
	if b < h.oldest(latest) {
		return false
	}
	i := sort.Search(len(s), func(i int) bool { return s[i].Bucket >= b })
	if i < len(s) && s[i].Bucket == b {
		if !at.After(s[i].At) {
			return false
		}
		s[i] = c
		return true
	}
	s = slices.Insert(s, i, c)
	if b > latest {
		// Drop what the new latest interval puts out of reach, moving the
		// rest down so that the array does not grow.
		k := sort.Search(len(s), func(i int) bool { return s[i].Bucket >= h.oldest(b) })
		n := copy(s, s[k:])
		clear(s[n:])
		s = s[:n]
	}
	h.closes[symbol] = s
	return true
}

// oldest returns the oldest interval kept when latest is the newest.
func (h *History) oldest(latest int64) int64 { return latest - int64(h.window) - 1 }

// Closes returns a copy of a symbol's closes, oldest first.
func (h *History) Closes(symbol string) []Close { return slices.Clone(h.closes[symbol]) }

// Symbols returns the symbols with closes, sorted.
func (h *History) Symbols() []string {
	out := make([]string, 0, len(h.closes))
	for s := range h.closes {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Len returns the number of closes kept, all symbols together.
func (h *History) Len() int {
	n := 0
	for _, s := range h.closes {
		n += len(s)
	}
	return n
}

// Rebucket returns a history with the given interval and window that
// holds h's closes of the given symbols (all when symbols is nil), added
// again: an exact re-bucketing when the new interval is a whole multiple
// of h's, otherwise each new interval gets the latest of h's closes that
// fall in it. h is unchanged.
func (h *History) Rebucket(interval time.Duration, window int, symbols []string) (*History, error) {
	out, err := NewHistory(interval, window)
	if err != nil {
		return nil, err
	}
	for sym, closes := range h.closes {
		if symbols != nil && !slices.Contains(symbols, sym) {
			continue
		}
		for _, c := range closes {
			out.Add(sym, c.Price, c.At)
		}
	}
	return out, nil
}

// historyJSON is the persisted form of a History. Buckets are not stored:
// they follow from the times and the interval.
type historyJSON struct {
	Interval string                 `json:"interval"`
	Window   int                    `json:"window"`
	Closes   map[string][]closeJSON `json:"closes"`
}

type closeJSON struct {
	At    time.Time       `json:"at"`
	Price decimal.Decimal `json:"price"`
}

// MarshalJSON writes the interval (a Go duration), the window and every
// symbol's closes, oldest first, as {"at", "price"} objects.
func (h *History) MarshalJSON() ([]byte, error) {
	v := historyJSON{Interval: h.interval.String(), Window: h.window, Closes: make(map[string][]closeJSON, len(h.closes))}
	for sym, closes := range h.closes {
		out := make([]closeJSON, len(closes))
		for i, c := range closes {
			out[i] = closeJSON{At: c.At, Price: c.Price}
		}
		v.Closes[sym] = out
	}
	return json.Marshal(v)
}

// UnmarshalJSON reads what MarshalJSON writes. Closes are added again, so
// the bounds hold whatever the input; a price that is not above zero is
// an error.
func (h *History) UnmarshalJSON(data []byte) error {
	var v historyJSON
	if err := decimaltext.Unmarshal(data, &v); err != nil {
		return fmt.Errorf("correlation history: %w", err)
	}
	interval, err := time.ParseDuration(v.Interval)
	if err != nil {
		return fmt.Errorf("correlation history: interval: %w", err)
	}
	fresh, err := NewHistory(interval, v.Window)
	if err != nil {
		return err
	}
	for sym, closes := range v.Closes {
		for _, c := range closes {
			if c.Price.Sign() <= 0 {
				return fmt.Errorf("correlation history: %s at %s: price %s is not above zero", sym, c.At.Format(time.RFC3339), c.Price)
			}
			fresh.Add(sym, c.Price, c.At)
		}
	}
	*h = *fresh
	return nil
}
