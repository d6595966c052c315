package http

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/statusdoc"
)

var pageNow = time.Date(2026, 11, 29, 5, 42, 40, 0, time.UTC)

// testDoc is a status with three households: one breaching with a
// pending order, one blocked on a stale price, one calm with a calendar.
func testDoc() *statusdoc.Document {
	order := &ledger.Order{Order: events.Order{OrderID: "abc-1", PlanID: "abc", Policy: "jones", Account: "roth",
		Instrument: "VTI", Side: "sell", Quantity: decimal.RequireFromString("120"), Price: decimal.RequireFromString("285.12"),
		Sleeve: "equities", Rule: "to_band_edge", Trigger: "threshold", CreatedAt: pageNow.Add(-90 * time.Second)},
		Status: ledger.Published}
	return &statusdoc.Document{Role: "planner", Status: engine.Status{At: pageNow, NATSConnected: true, Policies: []engine.PolicyStatus{
		{Policy: "smith", Trigger: "hybrid", TotalValue: "5000.00", NextFiring: pageNow.Add(3 * time.Hour), NextTrigger: "hybrid",
			Sleeves: []engine.SleeveStatus{{Sleeve: "equities", Target: "0.6", Weight: "0.61", BandLow: "0.55", BandHigh: "0.65", Deviation: "0.01"}}},
		{Policy: "jones", Trigger: "threshold", TotalValue: "203706.90", Breaching: []string{"equities", "crypto/large_cap"},
			Blocked:       []engine.Block{{Reason: "pending_orders", Detail: "1 order of plan abc not yet filled"}},
			PendingOrders: []*ledger.Order{order}, LastPlanOrders: []*ledger.Order{order}, LastPlanID: "abc",
			Sleeves: []engine.SleeveStatus{
				{Sleeve: "equities", Target: "0.55", Weight: "0.602927", Deviation: "0.052927", BandLow: "0.5", BandHigh: "0.6", Breach: true, Value: "122820.40"},
				{Sleeve: "crypto", Target: "0.05", Weight: "0.101", Deviation: "0.051", BandLow: "0.03", BandHigh: "0.07", Breach: true},
				{Sleeve: "crypto/large_cap", Parent: "crypto", Target: "0.0325", Weight: "0.101", BandLow: "0.0125", BandHigh: "0.0525", Breach: true},
				{Sleeve: "cash", Target: "0.05", Weight: "0.05", BandLow: "0.0375", BandHigh: "0.0625"},
			},
			Prices: []engine.PriceStatus{{Symbol: "VTI", Price: "285.12", At: pageNow.Add(-8 * time.Second), Age: "8s", Source: "demo"}, {Symbol: "BND"}}},
		{Policy: "<b>evil</b>", Trigger: "threshold", Blocked: []engine.Block{{Reason: "stale_price", Detail: "BND: 20m old"}}},
	}}}
}

func pageServer(t *testing.T, token string) *Server {
	return open(t, &Server{Status: func() any { return testDoc() }, Token: token})
}

func TestPageHousehold(t *testing.T) {
	s := pageServer(t, "")
	code, h, body := do(t, "GET", s.URL()+"/household/jones", nil, "")
	if code != 200 || h.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /household/jones = %d %s", code, h.Get("Content-Type"))
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
	// Everything is in the HTML: readable without JavaScript.
	for _, want := range []string{
		`data-sleeve="equities" data-weight="0.602927" data-breach="true"`,
		`<td class="num weight">60.29%</td>`, `50.00% – 60.00%`, `&#43;5.29 pt`, `<strong class="badge out">OUT</strong>`,
		`data-sleeve="crypto/large_cap"`, `class="depth-1 breach"`, `<span class="sr-only">crypto / </span>large_cap`,
		`data-sleeve="cash" data-weight="0.05" data-breach="false"`, `in band`,
		`data-order="abc-1" data-status="published"`, `1m30s ago`, `equities: to_band_edge, trigger threshold`,
		`<code>pending_orders</code>: 1 order of plan abc not yet filled`,
		`8s (<time`, `no price received`, `Kill switch released`,
		`<script src="/assets/refresh.js" defer></script>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("household page lacks %q", want)
		}
	}
	if strings.Contains(body, "style=") || strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Error("the page has inline styles or loads something from elsewhere")
	}
	if code, _, _ := do(t, "GET", s.URL()+"/household/nobody", nil, ""); code != 404 {
		t.Errorf("unknown household = %d, want 404", code)
	}
}

func TestPageOverview(t *testing.T) {
	s := pageServer(t, "")
	_, _, body := do(t, "GET", s.URL()+"/", nil, "")
	// Breaching first, then blocked, then the rest; names escaped.
	iJones, iEvil, iSmith := strings.Index(body, `data-policy="jones"`), strings.Index(body, `data-policy="&lt;b&gt;evil&lt;/b&gt;"`), strings.Index(body, `data-policy="smith"`)
	if iJones < 0 || iEvil < 0 || iSmith < 0 || !(iJones < iEvil && iEvil < iSmith) {
		t.Fatalf("default order: jones %d, evil %d, smith %d; want breaching, blocked, calm", iJones, iEvil, iSmith)
	}
	if strings.Contains(body, "<b>evil</b>") {
		t.Error("a policy name is not escaped")
	}
	if !strings.Contains(body, "2026-11-29 08:42 UTC (in 3h0m0s, hybrid)") {
		t.Error("next firing of smith missing")
	}
	_, _, body = do(t, "GET", s.URL()+"/?sort=name", nil, "")
	if i, j := strings.Index(body, `data-policy="jones"`), strings.Index(body, `data-policy="smith"`); !(strings.Index(body, "evil") < i && i < j) {
		t.Error("sort=name does not sort by name")
	}
	_, _, body = do(t, "GET", s.URL()+"/?q=SMI", nil, "")
	if !strings.Contains(body, `data-policy="smith"`) || strings.Contains(body, `data-policy="jones"`) || !strings.Contains(body, "1 of 3 households") {
		t.Error("q=SMI does not filter to smith")
	}
	_, _, body = do(t, "GET", s.URL()+"/?attention=1", nil, "")
	if strings.Contains(body, `data-policy="smith"`) || !strings.Contains(body, `data-policy="jones"`) {
		t.Error("attention=1 keeps a calm household")
	}
	if !strings.Contains(body, `href="/?attention=1&amp;sort=value"`) {
		t.Error("sort links lose the filter")
	}
}

// TestPageAuth: off loopback the page and its assets need the token like
// every other endpoint.
func TestPageAuth(t *testing.T) {
	s := pageServer(t, "s3cret")
	for _, path := range []string{"/", "/household/jones", "/assets/style.css", "/assets/refresh.js"} {
		if code, _, _ := do(t, "GET", s.URL()+path, nil, ""); code != http.StatusUnauthorized {
			t.Errorf("GET %s without the token = %d, want 401", path, code)
		}
		if code, _, _ := do(t, "GET", s.URL()+path, http.Header{"Authorization": {"Bearer s3cret"}}, ""); code != 200 {
			t.Errorf("GET %s with the token = %d, want 200", path, code)
		}
	}
}

func TestPageAssets(t *testing.T) {
	s := pageServer(t, "")
	for path, ct := range map[string]string{"/assets/style.css": "text/css", "/assets/refresh.js": "javascript"} {
		code, h, body := do(t, "GET", s.URL()+path, nil, "")
		if code != 200 || !strings.Contains(h.Get("Content-Type"), ct) || len(body) < 100 {
			t.Errorf("GET %s = %d %s (%d bytes)", path, code, h.Get("Content-Type"), len(body))
		}
	}
	for _, path := range []string{"/assets/layout.html", "/assets/", "/assets/household.html"} {
		if code, _, _ := do(t, "GET", s.URL()+path, nil, ""); code != 404 {
			t.Errorf("GET %s = %d, want 404 (templates are not assets)", path, code)
		}
	}
}

// TestPageUnencodableStatus: a status that cannot be read gives a clean
// 500, like /status.
func TestPageUnencodableStatus(t *testing.T) {
	s := open(t, &Server{Status: func() any { return make(chan int) }})
	if code, _, body := do(t, "GET", s.URL()+"/", nil, ""); code != 500 || strings.Contains(body, "<html") {
		t.Errorf("GET / = %d %q, want a plain 500", code, body)
	}
}

func TestSleeveChartScale(t *testing.T) {
	r := newSleeveRow(engine.SleeveStatus{Sleeve: "crypto/large_cap", Parent: "crypto", Target: "0.0325", Weight: "0.101",
		BandLow: "0.0125", BandHigh: "0.0525", Breach: true})
	// scale = 0.101 x 1.25 = 0.12625; weight at 80%.
	if r.WeightX != "80" || r.TargetX != "25.74" || r.BandX != "9.9" || r.ScaleMax != "12.63%" || r.Depth != 1 || r.Name != "large_cap" {
		t.Errorf("chart: %+v", r)
	}
	if r.Label != "crypto/large_cap: weight 10.10%, target 3.25%, band 1.25% – 5.25%, OUT OF BAND" {
		t.Errorf("label %q", r.Label)
	}
}

// TestPageOverviewCut: with more households than maxRows the list shows
// the first maxRows in its order and says how many match.
func TestPageOverviewCut(t *testing.T) {
	doc := testDoc()
	calm := doc.Policies[0]
	for i := range maxRows + 10 {
		p := calm
		p.Policy = fmt.Sprintf("calm-%04d", i)
		doc.Policies = append(doc.Policies, p)
	}
	s := open(t, &Server{Status: func() any { return doc }})
	_, _, body := do(t, "GET", s.URL()+"/", nil, "")
	if n := strings.Count(body, "<tr data-policy="); n != maxRows {
		t.Errorf("%d rows, want %d", n, maxRows)
	}
	if !strings.Contains(body, fmt.Sprintf("%d of %d households", maxRows+13, maxRows+13)) || !strings.Contains(body, "Showing the first 500") {
		t.Error("the cut is not said")
	}
	if !strings.Contains(body, `data-policy="jones"`) {
		t.Error("the breaching household is not among the first rows")
	}
}
