package http

import (
	"bytes"
	"cmp"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/statusdoc"
)

// The status page: server-rendered HTML of the document /status serves.
//
//	GET /                    every household, breaching first; ?q= filters
//	                         by name, ?sort= name|value|breaching|pending|next,
//	                         ?attention=1 keeps those breaching or blocked
//	GET /household/{name}    one household: sleeves against their bands,
//	                         orders, blocks, prices and their ages
//	GET /assets/...          the stylesheet and the refresh script
//
// Everything is embedded in the binary and nothing is loaded from elsewhere
// (the Content-Security-Policy says so to the browser). The pages are
// complete without JavaScript; the script only fetches the same URL every
// few seconds and swaps the elements marked data-live, so that a fill shows
// without a reload. Nothing on the pages changes anything: they are
// read-only.

//go:embed assets
var assetFS embed.FS

// pageCSP allows the page its own stylesheet and script, and nothing else.
const pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

var (
	pageFuncs = template.FuncMap{
		"pct":     statusdoc.Percent,
		"join":    strings.Join,
		"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	}
	overviewTmpl  = template.Must(template.New("layout.html").Funcs(pageFuncs).ParseFS(assetFS, "assets/layout.html", "assets/overview.html"))
	householdTmpl = template.Must(template.New("layout.html").Funcs(pageFuncs).ParseFS(assetFS, "assets/layout.html", "assets/household.html"))
)

// assetsHandler serves the embedded stylesheet and script. The embedded
// tree has the same paths as the URLs (assets/style.css).
func assetsHandler() http.Handler {
	files := http.FileServerFS(assetFS)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".html") || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // templates and listings are not assets
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		files.ServeHTTP(w, r)
	})
}

// document reads the status as the page's type, through its JSON: the
// page shows what /status shows, field for field.
func (s *Server) document() (*statusdoc.Document, error) {
	data, err := json.Marshal(s.Status())
	if err != nil {
		return nil, fmt.Errorf("encode status: %w", err)
	}
	var doc statusdoc.Document
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("decode status: %w", err)
	}
	return &doc, nil
}

// page is what every page's layout needs.
type page struct {
	Title string
	Doc   *statusdoc.Document
	Feeds []feedRow
}

// feedRow is one price feed's health.
type feedRow struct {
	Name, Kind, LastSuccess, LastError, Breaker string
	Failing                                     bool
}

func newPage(title string, doc *statusdoc.Document) page {
	p := page{Title: title, Doc: doc}
	for _, f := range doc.Feeds {
		r := feedRow{Name: f.Name, Kind: f.Kind, LastSuccess: "never", LastError: f.LastError, Failing: f.ConsecutiveFailures > 0}
		if !f.LastSuccess.IsZero() {
			r.LastSuccess = statusdoc.Ago(doc.At, f.LastSuccess)
		}
		if f.LastError != "" && !f.LastErrorAt.IsZero() {
			r.LastError = f.LastError + " (" + statusdoc.Ago(doc.At, f.LastErrorAt) + ")"
		}
		if f.BreakerOpen {
			r.Breaker = "open until " + f.BreakerUntil.UTC().Format(time.RFC3339)
		}
		p.Feeds = append(p.Feeds, r)
	}
	return p
}

// overviewPage is the list of households.
type overviewPage struct {
	page
	Query     string
	Sort      string
	Attention bool
	Total     int
	Matching  int // rows before the cut at maxRows
	Rows      []householdRow
	Sorts     []sortLink
}

// maxRows is the most households the list shows at once; with more, the
// page says so and the filter narrows them.
const maxRows = 500

// householdRow is one household in the list.
type householdRow struct {
	Name, Trigger, TotalValue, NextFiring string
	Breaching                             []string
	Blocked                               []engine.Block
	Pending                               int
	LastError                             string
	next                                  time.Time
	value                                 decimal.Decimal
}

// sortLink is a column's sort link.
type sortLink struct {
	Key, Label, Href string
	Current          bool
}

var sortKeys = []struct{ key, label string }{
	{"name", "Household"}, {"breaching", "Breaching"}, {"value", "Total value"}, {"pending", "Pending orders"}, {"next", "Next firing"},
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	doc, err := s.document()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	q := r.URL.Query()
	v := overviewPage{page: newPage("Households", doc), Query: strings.TrimSpace(q.Get("q")), Sort: q.Get("sort"),
		Attention: q.Get("attention") != "", Total: len(doc.Policies)}
	if !slices.ContainsFunc(sortKeys, func(k struct{ key, label string }) bool { return k.key == v.Sort }) {
		v.Sort = "breaching"
	}
	for _, p := range doc.Policies {
		if v.Query != "" && !strings.Contains(strings.ToLower(p.Policy), strings.ToLower(v.Query)) {
			continue
		}
		row := householdRow{Name: p.Policy, Trigger: p.Trigger, TotalValue: p.TotalValue, Breaching: p.Breaching,
			Pending: len(p.PendingOrders), LastError: p.LastError, next: p.NextFiring}
		for _, b := range p.Blocked {
			if b.Reason != "pending_orders" { // shown as the count
				row.Blocked = append(row.Blocked, b)
			}
		}
		if v.Attention && len(row.Breaching) == 0 && len(row.Blocked) == 0 && row.LastError == "" {
			continue
		}
		row.value, _ = decimal.NewFromString(p.TotalValue)
		if !p.NextFiring.IsZero() {
			row.NextFiring = p.NextFiring.UTC().Format("2006-01-02 15:04 MST") + " (" + statusdoc.Until(doc.At, p.NextFiring) + ", " + p.NextTrigger + ")"
		}
		v.Rows = append(v.Rows, row)
	}
	sortRows(v.Rows, v.Sort)
	v.Matching = len(v.Rows)
	if len(v.Rows) > maxRows {
		v.Rows = v.Rows[:maxRows] // the most urgent first: filter to see others
	}
	for _, k := range sortKeys {
		u := url.Values{}
		if v.Query != "" {
			u.Set("q", v.Query)
		}
		if v.Attention {
			u.Set("attention", "1")
		}
		u.Set("sort", k.key)
		v.Sorts = append(v.Sorts, sortLink{Key: k.key, Label: k.label, Href: "/?" + u.Encode(), Current: k.key == v.Sort})
	}
	s.render(w, r, overviewTmpl, v)
}

// sortRows orders the rows by key, then by name. "breaching" puts the
// households that need attention first: most sleeves out of band, then
// blocked, then the rest.
func sortRows(rows []householdRow, key string) {
	slices.SortStableFunc(rows, func(a, b householdRow) int {
		var c int
		switch key {
		case "name":
		case "value":
			c = b.value.Cmp(a.value)
		case "pending":
			c = cmp.Compare(b.Pending, a.Pending)
		case "next":
			c = compareNext(a.next, b.next)
		default:
			c = cmp.Or(cmp.Compare(len(b.Breaching), len(a.Breaching)), cmp.Compare(len(b.Blocked), len(a.Blocked)))
		}
		return cmp.Or(c, strings.Compare(a.Name, b.Name))
	})
}

// compareNext orders firing times soonest first, none last.
func compareNext(a, b time.Time) int {
	switch {
	case a.IsZero() && b.IsZero():
		return 0
	case a.IsZero():
		return 1
	case b.IsZero():
		return -1
	}
	return a.Compare(b)
}

// householdPage is one household.
type householdPage struct {
	page
	P        *engine.PolicyStatus
	Sleeves  []sleeveRow
	Prices   []priceRow
	Pending  []orderRow
	LastPlan []orderRow
	Blocked  []engine.Block
	Accounts []accountRow
}

// sleeveRow is one sleeve and the geometry of its band chart: positions
// in percent of the chart's width.
type sleeveRow struct {
	engine.SleeveStatus
	Name              string
	Depth             int
	Weight, Target    string
	Band, Deviation   string
	BandX, BandW      string
	TargetX, WeightX  string
	Label             string
	ScaleMax          string
	HasWeight, Parent bool
}

// priceRow is the quote of one instrument.
type priceRow struct {
	engine.PriceStatus
	Missing bool
}

// orderRow is one order.
type orderRow struct {
	*ledger.Order
	Age string
}

// accountRow is one account of the ledger.
type accountRow struct {
	Name      string
	Cash      string
	Positions []string
}

func (s *Server) household(w http.ResponseWriter, r *http.Request) {
	doc, err := s.document()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	p := doc.Policy(r.PathValue("name"))
	if p == nil {
		http.NotFound(w, r)
		return
	}
	v := householdPage{page: newPage(p.Policy, doc), P: p}
	for _, sl := range p.Sleeves {
		v.Sleeves = append(v.Sleeves, newSleeveRow(sl))
	}
	for _, ps := range p.Prices {
		v.Prices = append(v.Prices, priceRow{PriceStatus: ps, Missing: ps.Price == ""})
	}
	for _, o := range p.PendingOrders {
		v.Pending = append(v.Pending, orderRow{Order: o, Age: statusdoc.Ago(doc.At, o.CreatedAt)})
	}
	for _, o := range p.LastPlanOrders {
		v.LastPlan = append(v.LastPlan, orderRow{Order: o, Age: statusdoc.Ago(doc.At, o.CreatedAt)})
	}
	v.Blocked = p.Blocked
	for _, name := range slices.Sorted(maps.Keys(p.Holdings)) {
		a := p.Holdings[name]
		row := accountRow{Name: name, Cash: a.Cash.String()}
		for _, sym := range slices.Sorted(maps.Keys(a.Positions)) {
			row.Positions = append(row.Positions, a.Positions[sym].String()+" "+sym)
		}
		v.Accounts = append(v.Accounts, row)
	}
	s.render(w, r, householdTmpl, v)
}

var (
	hundred = decimal.NewFromInt(100)
	minimum = decimal.RequireFromString("0.01")
	margin  = decimal.RequireFromString("1.25")
)

// newSleeveRow lays out a sleeve's chart. The chart spans 0 to 1.25 times
// the largest of weight, target and band edge (at least 1%, at most
// 100%), so that a 3% sleeve is as readable as a 55% one; the scale is
// printed next to it. Positions are rounded to 2 places (half away from
// zero): they are drawing coordinates, not figures.
func newSleeveRow(sl engine.SleeveStatus) sleeveRow {
	d := func(s string) decimal.Decimal { v, _ := decimal.NewFromString(s); return v }
	weight, target, lo, hi := d(sl.Weight), d(sl.Target), d(sl.BandLow), d(sl.BandHigh)
	scale := decimal.Max(weight, target, hi, minimum).Mul(margin)
	if scale.GreaterThan(decimal.NewFromInt(1)) {
		scale = decimal.NewFromInt(1)
	}
	x := func(v decimal.Decimal) decimal.Decimal {
		return decimal.Min(v, scale).Mul(hundred).DivRound(scale, 2)
	}
	name := sl.Sleeve
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	row := sleeveRow{SleeveStatus: sl, Name: name, Depth: strings.Count(sl.Sleeve, "/"), Parent: sl.Parent != "",
		Weight: statusdoc.Percent(sl.Weight), Target: statusdoc.Percent(sl.Target), Band: statusdoc.Percent(sl.BandLow) + " – " + statusdoc.Percent(sl.BandHigh),
		Deviation: statusdoc.Points(sl.Deviation), HasWeight: sl.Weight != "",
		BandX: x(lo).String(), BandW: x(hi).Sub(x(lo)).String(), TargetX: x(target).String(), WeightX: x(weight).String(),
		ScaleMax: statusdoc.Percent(scale.String())}
	state := "inside its band"
	if sl.Breach {
		state = "OUT OF BAND"
	}
	row.Label = fmt.Sprintf("%s: weight %s, target %s, band %s, %s", sl.Sleeve, row.Weight, row.Target, row.Band, state)
	return row
}

// render executes a page template into a buffer first, so that a failure
// gives a clean 500.
func (s *Server) render(w http.ResponseWriter, r *http.Request, t *template.Template, v any) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, v); err != nil {
		s.pageError(w, r, fmt.Errorf("render: %w", err))
		return
	}
	noStore(w, "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Write(buf.Bytes())
}

func (s *Server) pageError(w http.ResponseWriter, r *http.Request, err error) {
	s.logger().Error("status page", zap.String("path", r.URL.Path), zap.Error(err))
	noStore(w, "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	w.Write([]byte("internal error: cannot show the status page\n"))
}
