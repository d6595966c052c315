package policy

import (
	"maps"
	"slices"
	"testing"
	"time"
)

// correlationBadFiles lists the problems of testdata/correlation*.bad.yml;
// TestBadFiles checks them with the other bad files.
var correlationBadFiles = map[string][]string{
	"correlation.bad.yml": {
		`correlation.bad.yml:23: correlation.window: want a positive duration like 90d, 12h or 30m, got "3 months"`,
		"correlation.bad.yml:24: correlation.interval: must be at least 1m0s, got 30s",
		`correlation.bad.yml:25: correlation.threshold: "80%" is not a plain decimal number`,
		`correlation.bad.yml:27: correlation.for: want a positive duration like 90d, 12h or 30m, got "0d"`,
		"correlation.bad.yml:28: correlation.lookback: unknown field (known: window, interval, threshold, clear_below, for, pairs)",
		`correlation.bad.yml:30: correlation.pairs[0]: no sleeve "gold" in targets (known: equities, bonds, crypto, crypto/large, crypto/empty, cash)`,
		"correlation.bad.yml:31: correlation.pairs[1]: the cash sleeve has no returns to correlate",
		`correlation.bad.yml:32: correlation.pairs[2]: "crypto" and "crypto/large": one contains the other, so their returns are correlated by construction`,
		`correlation.bad.yml:33: correlation.pairs[3]: "bonds" is paired with itself`,
		`correlation.bad.yml:35: correlation.pairs[5]: the pair "bonds", "equities" is listed twice`,
		"correlation.bad.yml:36: correlation.pairs[6]: want two sleeves, like [equities, crypto], got 1",
		`correlation.bad.yml:37: correlation.pairs[7]: want a list, got "equities"`,
		`correlation.bad.yml:38: correlation.pairs[8]: sleeve "crypto/empty" holds no instrument with a weight in it, so it has no prices`,
	},
	"correlation_window.bad.yml": {
		"correlation_window.bad.yml:13: correlation.window: spans 10 intervals of 1d; want 20 to 3660 (a correlation needs at least 20 returns)",
		"correlation_window.bad.yml:16: correlation.clear_below: want a correlation above -1 and at most the threshold 0.95, got -1",
		`correlation_window.bad.yml:17: correlation.for: want a positive duration like 90d, 12h or 30m, got "1w"`,
		"correlation_window.bad.yml:18: correlation.pairs: no pairs (leave pairs out to watch every pair of top-level sleeves)",
	},
	"correlation_interval.bad.yml": {
		"correlation_interval.bad.yml:13: correlation.window: 90d is not a whole number of intervals of 7d",
		"correlation_interval.bad.yml:13: correlation.pairs: fewer than two top-level sleeves besides cash hold instruments: name the pairs to watch",
		"correlation_interval.bad.yml:16: correlation.clear_below: want a correlation above -1 and at most the threshold 0.8, got 0.85",
	},
	"correlation_short.bad.yml": {
		"correlation_short.bad.yml:14: correlation.window: spans 3661 intervals of 1d; want 20 to 3660 (a correlation needs at least 20 returns)",
		"correlation_short.bad.yml:14: correlation.for: required field is missing",
		"correlation_short.bad.yml:15: correlation.threshold: want a correlation above 0 and below 1, like 0.8, got 1",
	},
}

// The table of TestBadFiles covers every testdata/*.bad.yml, these too.
func init() { maps.Copy(badFiles, correlationBadFiles) }

// pairPaths names a watch's pairs by sleeve path.
func pairPaths(p *Policy) [][2]string {
	var out [][2]string
	for _, pr := range p.Correlation.Pairs {
		out = append(out, [2]string{p.Sleeves[pr[0]].Path, p.Sleeves[pr[1]].Path})
	}
	return out
}

func TestCorrelationBlock(t *testing.T) {
	tests := []struct {
		file             string
		window, interval time.Duration
		intervals        int
		threshold, clear string
		wait             time.Duration
		pairs            [][2]string
		line             int
	}{
		{"correlation.good.yml", 90 * 24 * time.Hour, 24 * time.Hour, 90, "0.8", "0.7", 7 * 24 * time.Hour,
			[][2]string{{"equities", "crypto"}, {"bonds", "crypto/small"}, {"crypto/large", "crypto/small"}}, 27},
		// Defaults: daily interval, clear_below 0.05 under the threshold,
		// every pair of top-level sleeves but cash and gold (0%, no
		// instrument), in sleeve order.
		{"correlation_defaults.good.yml", 30 * 24 * time.Hour, 24 * time.Hour, 30, "0.9", "0.85", 36 * time.Hour,
			[][2]string{{"equities", "bonds"}, {"equities", "crypto"}, {"bonds", "crypto"}}, 21},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			p := parseFile(t, "testdata/"+tt.file)
			c := p.Correlation
			if c == nil {
				t.Fatal("Correlation = nil")
			}
			if c.Window != tt.window || c.Interval != tt.interval || c.Intervals != tt.intervals || c.For != tt.wait || c.Line != tt.line {
				t.Errorf("window %s interval %s (%d) for %s line %d, want %s %s (%d) %s line %d",
					c.Window, c.Interval, c.Intervals, c.For, c.Line, tt.window, tt.interval, tt.intervals, tt.wait, tt.line)
			}
			if !c.Threshold.Equal(dec(tt.threshold)) || !c.ClearBelow.Equal(dec(tt.clear)) {
				t.Errorf("threshold %s clear_below %s, want %s %s", c.Threshold, c.ClearBelow, tt.threshold, tt.clear)
			}
			if got := pairPaths(p); !slices.Equal(got, tt.pairs) {
				t.Errorf("pairs %v, want %v", got, tt.pairs)
			}
		})
	}
	ex := parseFile(t, "../../configs/examples/correlation.yaml")
	want := [][2]string{{"equities", "bonds"}, {"equities", "crypto"}, {"equities", "real_estate"}, {"crypto/large_cap", "crypto/growth"}}
	if c := ex.Correlation; c == nil || !slices.Equal(pairPaths(ex), want) || c.Intervals != 90 || !c.ClearBelow.Equal(dec("0.7")) {
		t.Errorf("configs/examples/correlation.yaml: %+v", c)
	}
	if p := parseFile(t, examplePath); p.Correlation != nil {
		t.Errorf("example without a correlation block: Correlation = %+v", p.Correlation)
	}
}

func TestParseDays(t *testing.T) {
	const day = 24 * time.Hour
	good := []struct {
		in   string
		want time.Duration
		out  string
	}{
		{"90d", 90 * day, "90d"},
		{" 1d ", day, "1d"},
		{"100000d", 100000 * day, "100000d"},
		{"36h", 36 * time.Hour, "36h0m0s"},
		{"48h", 2 * day, "2d"},
		{"1m", time.Minute, "1m0s"},
	}
	for _, tt := range good {
		got, err := ParseDays(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseDays(%q) = %s, %v; want %s", tt.in, got, err, tt.want)
		}
		if s := FormatDays(got); s != tt.out {
			t.Errorf("FormatDays(%s) = %q, want %q", got, s, tt.out)
		}
	}
	for _, in := range []string{"", "0d", "-1d", "1.5d", "100001d", "1000000d", "d", "1w", "0s", "-5m", "90 d", "1d12h"} {
		if got, err := ParseDays(in); err == nil {
			t.Errorf("ParseDays(%q) = %s, want an error", in, got)
		}
	}
}
