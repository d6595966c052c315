package backtest

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/policy"
)

// Report is what the HTML report shows: one self-contained page (no
// script, no font, no network) with inline SVG charts drawn here, readable
// printed.
type Report struct {
	Policy              *policy.Policy
	From, To            string
	Carried             bool
	FeeBps, SlippageBps decimal.Decimal
	Results             []*Result
	Summaries           []Summary
}

// The chart area, in SVG user units.
const (
	chartW, chartH = 900.0, 320.0
	padL, padR     = 70.0, 150.0
	padT, padB     = 16.0, 28.0
)

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"}

func color(i int) string { return palette[i%len(palette)] }

// axes maps dates and values into the chart area.
type axes struct {
	t0, t1 time.Time
	y0, y1 float64
	log    bool
}

func (a axes) x(t time.Time) float64 {
	span := a.t1.Sub(a.t0).Seconds()
	if span <= 0 {
		return padL
	}
	return padL + (chartW-padL-padR)*t.Sub(a.t0).Seconds()/span
}

func (a axes) y(v float64) float64 {
	lo, hi := a.y0, a.y1
	if a.log {
		v, lo, hi = math.Log10(math.Max(v, 1e-9)), math.Log10(lo), math.Log10(hi)
	}
	if hi <= lo {
		return chartH - padB
	}
	return chartH - padB - (chartH-padT-padB)*(v-lo)/(hi-lo)
}

func f64(d decimal.Decimal) float64 { f, _ := d.Float64(); return f }

// frame draws the axes, year ticks and value ticks.
func (a axes) frame(b *strings.Builder, label func(float64) string) {
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#999"/>`, padL, padT, chartW-padL-padR, chartH-padT-padB)
	years := a.t1.Year() - a.t0.Year()
	every := max(1, years/10)
	for y := a.t0.Year() + 1; y <= a.t1.Year(); y++ {
		if (y-a.t0.Year())%every != 0 {
			continue
		}
		x := a.x(time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC))
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/><text x="%.1f" y="%.1f" font-size="11" text-anchor="middle">%d</text>`,
			x, padT, x, chartH-padB, x, chartH-padB+14, y)
	}
	for _, v := range a.ticks() {
		y := a.y(v)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/><text x="%.1f" y="%.1f" font-size="11" text-anchor="end">%s</text>`,
			padL, y, chartW-padR, y, padL-4, y+4, template.HTMLEscapeString(label(v)))
	}
}

func (a axes) ticks() []float64 {
	var out []float64
	if a.log {
		for e := math.Floor(math.Log10(a.y0)); e <= math.Ceil(math.Log10(a.y1)); e++ {
			if v := math.Pow(10, e); v >= a.y0 && v <= a.y1 {
				out = append(out, v)
			}
		}
		return out
	}
	for i := 0; i <= 4; i++ {
		out = append(out, a.y0+(a.y1-a.y0)*float64(i)/4)
	}
	return out
}

func polyline(b *strings.Builder, pts [][2]float64, stroke string, width float64, dash string) {
	b.WriteString(`<polyline fill="none" stroke="` + stroke + `" stroke-width="` + fmt.Sprint(width) + `"`)
	if dash != "" {
		b.WriteString(` stroke-dasharray="` + dash + `"`)
	}
	b.WriteString(` points="`)
	for _, p := range pts {
		fmt.Fprintf(b, "%.1f,%.1f ", p[0], p[1])
	}
	b.WriteString(`"/>`)
}

func legend(b *strings.Builder, i int, name, c string) {
	y := padT + 14 + float64(i)*16
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="12" height="4" fill="%s"/><text x="%.1f" y="%.1f" font-size="11">%s</text>`,
		chartW-padR+8, y-4, c, chartW-padR+24, y, template.HTMLEscapeString(name))
}

func svg(title string, body string) template.HTML {
	return template.HTML(fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s" class="chart">%s</svg>`,
		chartW, chartH, template.HTMLEscapeString(title), body))
}

func money(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.0fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// valueChart draws every variant's value over time.
func (r *Report) valueChart(log bool) template.HTML {
	a := axes{t0: r.Results[0].Points[0].Date, t1: r.Results[0].Points[len(r.Results[0].Points)-1].Date, y0: math.Inf(1), y1: math.Inf(-1), log: log}
	for _, res := range r.Results {
		for _, p := range res.Points {
			v := f64(p.Value)
			a.y0, a.y1 = math.Min(a.y0, v), math.Max(a.y1, v)
		}
	}
	if !log {
		a.y0 = 0
	}
	var b strings.Builder
	a.frame(&b, money)
	for i, res := range r.Results {
		pts := make([][2]float64, len(res.Points))
		for k, p := range res.Points {
			pts[k] = [2]float64{a.x(p.Date), a.y(f64(p.Value))}
		}
		polyline(&b, pts, color(i), 1.5, "")
		legend(&b, i, res.Variant, color(i))
	}
	title := "Value over time"
	if log {
		title += " (log scale)"
	}
	return svg(title, b.String())
}

// topSleeves are the indices of the policy's top-level sleeves.
func (r *Report) topSleeves() []int {
	var out []int
	for i, s := range r.Policy.Sleeves {
		if s.Parent < 0 {
			out = append(out, i)
		}
	}
	return out
}

// allocationChart stacks the top-level sleeves' weights of one variant,
// with the targets' cumulative edges dashed.
func (r *Report) allocationChart(res *Result) template.HTML {
	a := axes{t0: res.Points[0].Date, t1: res.Points[len(res.Points)-1].Date, y0: 0, y1: 1}
	var b strings.Builder
	a.frame(&b, func(v float64) string { return fmt.Sprintf("%.0f%%", 100*v) })
	top := r.topSleeves()
	lower := make([]float64, len(res.Points))
	lowerT := make([]float64, len(res.Points))
	for n, si := range top {
		upper := make([]float64, len(res.Points))
		var poly strings.Builder
		for k, p := range res.Points {
			upper[k] = lower[k] + f64(p.Weights[si])
			fmt.Fprintf(&poly, "%.1f,%.1f ", a.x(p.Date), a.y(upper[k]))
		}
		for k := len(res.Points) - 1; k >= 0; k-- {
			fmt.Fprintf(&poly, "%.1f,%.1f ", a.x(res.Points[k].Date), a.y(lower[k]))
		}
		fmt.Fprintf(&b, `<polygon fill="%s" fill-opacity="0.55" stroke="none" points="%s"/>`, color(n), poly.String())
		tpts := make([][2]float64, len(res.Points))
		for k, p := range res.Points {
			lowerT[k] += f64(res.Targets[k][si])
			tpts[k] = [2]float64{a.x(p.Date), a.y(lowerT[k])}
		}
		polyline(&b, tpts, "#000", 1, "4 3")
		legend(&b, n, r.Policy.Sleeves[si].Path, color(n))
		lower = upper
	}
	return svg("Allocation over time: "+res.Variant, b.String())
}

// driftChart draws each top-level sleeve's weight less its target, with
// its band shaded, for one variant.
func (r *Report) driftChart(res *Result, si, n int) template.HTML {
	s := r.Policy.Sleeves[si]
	half := f64(s.HalfWidth)
	lim := half * 2
	for _, p := range res.Points {
		lim = math.Max(lim, math.Abs(f64(p.Weights[si])-f64(s.Target)))
	}
	a := axes{t0: res.Points[0].Date, t1: res.Points[len(res.Points)-1].Date, y0: -lim, y1: lim}
	var b strings.Builder
	x0, x1 := a.x(a.t0), a.x(a.t1)
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#e8f4e8"/>`, x0, a.y(half), x1-x0, a.y(-half)-a.y(half))
	a.frame(&b, func(v float64) string { return fmt.Sprintf("%+.1f pt", 100*v) })
	pts := make([][2]float64, 0, len(res.Points))
	for k, p := range res.Points {
		tgt := f64(res.Targets[k][si])
		pts = append(pts, [2]float64{a.x(p.Date), a.y(f64(p.Weights[si]) - tgt)})
	}
	polyline(&b, pts, color(n), 1.2, "")
	legend(&b, 0, s.Path, color(n))
	return svg(fmt.Sprintf("Drift of %s (band ±%.1f points): %s", s.Path, 100*half, res.Variant), b.String())
}

// tradesChart marks the dates on which each variant traded.
func (r *Report) tradesChart() template.HTML {
	res0 := r.Results[0]
	a := axes{t0: res0.Points[0].Date, t1: res0.Points[len(res0.Points)-1].Date, y0: 0, y1: float64(len(r.Results))}
	var b strings.Builder
	a.frame(&b, func(float64) string { return "" })
	for i, res := range r.Results {
		y := a.y(float64(len(r.Results)-i) - 0.5)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="end">%s</text>`, padL-4, y+4, template.HTMLEscapeString(res.Variant))
		for _, p := range res.Points {
			if p.Traded != "" {
				x := a.x(p.Date)
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5"/>`, x, y-7, x, y+7, color(i))
			}
		}
	}
	return svg("When each variant traded", b.String())
}

type reportSleeveChart struct {
	Path  string
	Chart template.HTML
}

type reportPage struct {
	*Report
	ValueLinear, ValueLog template.HTML
	Allocation            template.HTML
	Drift                 []reportSleeveChart
	Trades                template.HTML
	Rows                  []reportRow
}

type reportRow struct {
	Summary
	CAGR, Volatility, MaxDrawdown, TrackingError, Turnover string
}

// WriteHTML writes the report.
func (r *Report) WriteHTML(w io.Writer) error {
	if len(r.Results) == 0 || len(r.Results[0].Points) == 0 {
		return fmt.Errorf("nothing to report")
	}
	page := reportPage{Report: r, ValueLinear: r.valueChart(false), ValueLog: r.valueChart(true),
		Allocation: r.allocationChart(r.Results[0]), Trades: r.tradesChart()}
	for n, si := range r.topSleeves() {
		page.Drift = append(page.Drift, reportSleeveChart{r.Policy.Sleeves[si].Path, r.driftChart(r.Results[0], si, n)})
	}
	pct := func(x float64) string { return fmt.Sprintf("%.2f%%", 100*x) }
	for _, s := range r.Summaries {
		page.Rows = append(page.Rows, reportRow{Summary: s, CAGR: pct(s.CAGR), Volatility: pct(s.Volatility),
			MaxDrawdown: pct(s.MaxDrawdown), TrackingError: pct(s.TrackingError), Turnover: pct(s.Turnover)})
	}
	return reportTemplate.Execute(w, page)
}

var reportTemplate = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Backtest of {{.Policy.Name}}, {{.From}} to {{.To}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:960px;color:#222;padding:0 1em}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:12px;width:100%}
th,td{border-bottom:1px solid #ddd;padding:4px 6px;text-align:right}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
.chart{width:100%;height:auto;display:block;margin:0.5em 0 1.5em}
.note{color:#555;font-size:13px}
@media print{body{margin:0;max-width:none}.chart{break-inside:avoid}details{display:block}details>summary{display:none}}
</style></head><body>
<h1>Backtest of {{.Policy.Name}}</h1>
<p>{{.From}} to {{.To}}{{if .Carried}}, <strong>missing prices carried forward</strong>{{end}}; fee {{.FeeBps}} bps and slippage {{.SlippageBps}} bps per order.
Each variant ran through rebalancerd's own triggers, planner, risk limits, ledger and tax rules; orders filled in full on the day they were planned.</p>
<h2>Figures</h2>
<div class="scroll"><table id="figures"><thead><tr><th>Variant</th><th>Trigger</th><th>Final value</th><th>CAGR</th><th>Volatility</th><th>Max drawdown</th><th>Tracking error</th><th>Rebalances</th><th>Orders</th><th>Turnover / yr</th><th>Costs</th><th>ST gains</th><th>LT gains</th><th>Days out of band</th></tr></thead><tbody>
{{range .Rows}}<tr><td>{{.Name}}</td><td>{{.Trigger}}</td><td>{{.FinalValue.StringFixed 2}}</td><td>{{.CAGR}}</td><td>{{.Volatility}}</td><td>{{.MaxDrawdown}}</td><td>{{.TrackingError}}</td><td>{{.Rebalances}}</td><td>{{.Orders}}</td><td>{{.Turnover}}</td><td>{{.Costs.StringFixed 2}}</td><td>{{.RealizedGains.ShortTerm.StringFixed 2}}</td><td>{{.RealizedGains.LongTerm.StringFixed 2}}</td><td>{{.DaysOutOfBand}}</td></tr>
{{end}}</tbody></table></div>
<p class="note">CAGR, volatility and drawdown are of the time-weighted return (contributions taken out). Tracking error is against the targets rebalanced continuously. Gains are as each plan computed them from the tax lots at the day's price.</p>
<h2>Value over time</h2>
<figure id="value">{{.ValueLinear}}</figure>
<details><summary>Log scale</summary><figure id="value-log">{{.ValueLog}}</figure></details>
<h2>Allocation over time ({{(index .Results 0).Variant}})</h2>
<p class="note">Stacked weights of the top-level sleeves; dashed lines are the targets' cumulative edges.</p>
<figure id="allocation">{{.Allocation}}</figure>
<h2>Drift of each sleeve ({{(index .Results 0).Variant}})</h2>
<p class="note">Weight less target, in percentage points; the shaded band is the sleeve's tolerance.</p>
{{range .Drift}}<figure class="drift">{{.Chart}}</figure>
{{end}}
<h2>When each variant traded</h2>
<figure id="trades">{{.Trades}}</figure>
<h2>What a backtest does not prove</h2>
<p class="note">History does not repeat: these figures describe one path of prices, not the range of futures. The indexes are proxies (see configs/history/README.md): monthly averages rather than closes, a house-price index rather than a fund, one coin rather than a crypto index. Orders fill in full at the day's price; real fills, spreads, taxes paid from the portfolio and behaviour under stress differ.</p>
</body></html>
`))
