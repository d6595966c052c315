package ledger

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/events"
)

// TestCheckFill: fills dated beyond the skew or before their order, off
// the instrument's step, above the order's remaining quantity or priced
// outside the collar are refused with their reason; the others pass.
func TestCheckFill(t *testing.T) {
	now := t0.Add(time.Hour)
	lim := FillLimits{MaxSkew: 5 * time.Minute, Collar: DefaultCollar,
		Step: func(sym string) decimal.Decimal { return dec("1") }}
	for _, tc := range []struct {
		name   string
		f      *events.Fill
		reason string
	}{
		{"good", fill("g", "x-1", events.FillFilled, "4", "101", "0", now), ""},
		{"within the skew", fill("g", "x-1", events.FillFilled, "4", "101", "0", now.Add(4*time.Minute)), ""},
		{"collar edges", fill("g", "x-1", events.FillPartial, "1", "120", "0", now), ""},
		{"collar low edge", fill("g", "x-1", events.FillPartial, "1", "80", "0", now), ""},
		{"year 9999", fill("f", "x-1", events.FillFilled, "4", "101", "0", time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)), RejectFillFuture},
		{"beyond the skew", fill("f", "x-1", events.FillFilled, "4", "101", "0", now.Add(6*time.Minute)), RejectFillFuture},
		{"before the order", fill("f", "x-1", events.FillFilled, "4", "101", "0", t0.Add(-time.Hour)), RejectFillBeforeOrder},
		{"off step", fill("f", "x-1", events.FillPartial, "0.5", "101", "0", now), RejectFillOffStep},
		{"above the remaining", fill("f", "x-1", events.FillFilled, "5", "101", "0", now), RejectFillOverQuantity},
		{"price 1e30", fill("f", "x-1", events.FillFilled, "4", "1000000000000000000000000000000", "0", now), RejectFillPrice},
		{"price too low", fill("f", "x-2", events.FillFilled, "5", "79.99", "0", now), RejectFillPrice},
		{"unknown order: ApplyFill decides", fill("f", "nope", events.FillFilled, "4", "1e30", "0", now), ""},
	} {
		l := newLedger()
		for _, o := range l.Orders {
			o.CreatedAt = t0
		}
		err := l.CheckFill(tc.f, lim, now)
		if got := RejectReason(err); got != tc.reason || (err == nil) != (tc.reason == "") {
			t.Errorf("%s: CheckFill = %v (reason %q), want reason %q", tc.name, err, got, tc.reason)
		}
	}
}

// TestAsOfNeverPassesTheClock: a fill dated a little ahead of the clock
// (within the skew) and a snapshot dated ahead leave the ledger's as_of
// at now, so that a positions snapshot taken a moment later is newer.
func TestAsOfNeverPassesTheClock(t *testing.T) {
	l := newLedger()
	now := t0.Add(time.Hour)
	if _, err := l.ApplyFill("ira", fill("f", "x-1", events.FillFilled, "4", "101", "0", now.Add(3*time.Minute)), now); err != nil {
		t.Fatal(err)
	}
	if !l.AsOf.Equal(now) {
		t.Fatalf("as_of %v after a fill dated ahead, want now %v", l.AsOf, now)
	}
	l.SetBase(now.Add(24*time.Hour), "", map[string]*Account{}, now)
	if !l.AsOf.Equal(now) || !l.BaseAsOf.Equal(now) {
		t.Fatalf("as_of %v, base %v after a snapshot dated ahead, want now %v", l.AsOf, l.BaseAsOf, now)
	}
}
