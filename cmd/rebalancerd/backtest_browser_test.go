package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/rebalancerd/rebalancerd/internal/browsertest"
)

// TestBacktestReportInBrowser opens the report of the shipped 1975-2023
// example in a real browser (internal/browsertest) and checks that it
// renders every chart with data and the table of every variant.
func TestBacktestReportInBrowser(t *testing.T) {
	report := filepath.Join(t.TempDir(), "report.html")
	if code, _, stderr := runCmd(t, "backtest", "-policy", backtestPolicy, "-history", backtestHistory, "-initial", "100000",
		"-compare", "-fee-bps", "5", "-report", report); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	ctx := browsertest.New(t, 2*time.Minute)
	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+report), chromedp.WaitVisible(`#figures`)); err != nil {
		t.Fatal(err)
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#figures tbody tr').length`))
	if err != nil || rows != 7 {
		t.Fatalf("figures table has %d rows (%v), want 7 variants", rows, err)
	}
	// Every chart is an SVG the browser laid out with a size, and has
	// drawn data: lines with points, or the allocation's areas.
	charts := []struct{ sel, data string }{
		{"#value svg", "polyline"},
		{"#allocation svg", "polygon"},
		{"#trades svg", "line[stroke-width='1.5']"},
	}
	for _, c := range charts {
		js := `(() => { const s = document.querySelector("` + c.sel + `"); if (!s) return -1;
			const r = s.getBoundingClientRect(); if (r.width < 300 || r.height < 100) return -2;
			return s.querySelectorAll("` + c.data + `").length; })()`
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](js))
		if err != nil || n < 1 {
			t.Errorf("chart %s: %d %s elements (%v)", c.sel, n, c.data, err)
		}
	}
	points, err := chromedp.Run(ctx, chromedp.Evaluate[int](
		`Math.min(...[...document.querySelectorAll("#value svg polyline")].map(p => p.points.numberOfItems))`))
	if err != nil || points < 500 {
		t.Errorf("value lines have as few as %d points (%v), want one per month (582)", points, err)
	}
	drift, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("figure.drift svg polyline").length`))
	if err != nil || drift != 5 {
		t.Errorf("%d drift charts (%v), want one per top-level sleeve (5)", drift, err)
	}
	browsertest.Screenshot(t, ctx, "backtest-report")
}
