package feeds

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
)

// DefaultMaxBody is the largest HTTP response body a fetcher reads.
const DefaultMaxBody = 1 << 20

// HTTPConfig configures an HTTPFetcher.
type HTTPConfig struct {
	// URL is fetched with GET on every poll.
	URL string
	// Header is the name of the request header that carries APIKey, such
	// as "X-API-Key". Required when APIKey is set.
	Header string
	// APIKey is the secret sent in Header, already read by the caller from
	// a file or the environment. It never appears in errors.
	APIKey string
	// Fields maps each symbol to the dot path of its price in the JSON
	// response, e.g. "data.VTI.price"; a path step into a list is an index
	// ("quotes.0.last"). The price may be a JSON number or a numeric
	// string; it is read exactly.
	Fields map[string]string
	// TimeFields optionally maps a symbol to the dot path of its quote
	// time: an RFC 3339 string or a number of Unix seconds. Without one, a
	// quote's time is the response's Date header, or else the time of the
	// fetch by Clock.
	TimeFields map[string]string
	// Client makes the requests; nil means a client with default
	// settings. Per-request deadlines come from the context.
	Client *http.Client
	// Clock gives the fetch time; nil means time.Now.
	Clock func() time.Time
	// MaxBody is the largest response body read, in bytes; 0 means
	// DefaultMaxBody.
	MaxBody int64
}

// HTTPFetcher reads quotes from a JSON HTTP API.
type HTTPFetcher struct {
	url     string
	display string // url without query, fragment or password: for messages
	host    string
	header  string
	key     string
	fields  []httpField
	client  *http.Client
	clock   func() time.Time
	maxBody int64
}

// httpField is where one symbol's price (and maybe time) is in a response.
type httpField struct {
	symbol      string
	price, time string // dot paths; time may be empty
}

// NewHTTPFetcher checks cfg and returns its fetcher.
func NewHTTPFetcher(cfg HTTPConfig) (*HTTPFetcher, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("price feed URL: %w", stripURLError(err))
	}
	f := &HTTPFetcher{
		url:     cfg.URL,
		display: displayURL(u),
		host:    u.Host,
		header:  cfg.Header,
		key:     cfg.APIKey,
		clock:   cfg.Clock,
		maxBody: cfg.MaxBody,
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("price feed URL %s: want an absolute http or https URL", f.display)
	}
	if f.key != "" {
		if f.header == "" {
			return nil, fmt.Errorf("price feed %s: an API key needs the name of the header that carries it", f.display)
		}
		if strings.ContainsFunc(f.key, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return nil, fmt.Errorf("price feed %s: the API key holds a control character", f.display)
		}
	}
	if f.header != "" && strings.ContainsFunc(f.header, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == ':' }) {
		return nil, fmt.Errorf("price feed %s: %q is not a valid header name", f.display, f.header)
	}
	if len(cfg.Fields) == 0 {
		return nil, fmt.Errorf("price feed %s: no fields: map each symbol to the path of its price", f.display)
	}
	for _, sym := range slices.Sorted(maps.Keys(cfg.Fields)) {
		if err := checkSymbol(sym); err != nil {
			return nil, fmt.Errorf("price feed %s: %w", f.display, err)
		}
		hf := httpField{symbol: sym, price: cfg.Fields[sym], time: cfg.TimeFields[sym]}
		if err := checkPath(hf.price); err != nil {
			return nil, fmt.Errorf("price feed %s: price path of %s: %w", f.display, sym, err)
		}
		if _, ok := cfg.TimeFields[sym]; ok {
			if err := checkPath(hf.time); err != nil {
				return nil, fmt.Errorf("price feed %s: time path of %s: %w", f.display, sym, err)
			}
		}
		f.fields = append(f.fields, hf)
	}
	for sym := range cfg.TimeFields {
		if _, ok := cfg.Fields[sym]; !ok {
			return nil, fmt.Errorf("price feed %s: time path given for %s, which has no price path", f.display, sym)
		}
	}
	if f.clock == nil {
		f.clock = time.Now
	}
	if f.maxBody <= 0 {
		f.maxBody = DefaultMaxBody
	}
	f.client = f.safeClient(cfg.Client)
	return f, nil
}

// safeClient returns a copy of c (or of a default client) that refuses
// redirects that would send the API key to another host or over plain
// HTTP: net/http forwards custom headers on every redirect.
func (f *HTTPFetcher) safeClient(c *http.Client) *http.Client {
	out := &http.Client{}
	if c != nil {
		*out = *c
	}
	next := out.CheckRedirect
	out.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if f.key != "" && (req.URL.Host != f.host || (req.URL.Scheme != "https" && via[0].URL.Scheme == "https")) {
			return fmt.Errorf("refusing a redirect to %s://%s, which would receive the API key", req.URL.Scheme, req.URL.Host)
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return out
}

// checkPath checks a dot path: not empty, no empty step.
func checkPath(p string) error {
	if p == "" {
		return errors.New("empty path")
	}
	if slices.Contains(strings.Split(p, "."), "") {
		return fmt.Errorf("path %q has an empty step", p)
	}
	return nil
}

// displayURL returns u for messages: without its query and fragment,
// which may hold secrets, and with any password masked.
func displayURL(u *url.URL) string {
	c := *u
	c.RawQuery, c.ForceQuery, c.Fragment, c.RawFragment = "", false, "", ""
	return c.Redacted()
}

// stripURLError returns the error a *url.Error wraps: its text repeats the
// whole URL, query secrets included.
func stripURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Fetch gets the URL and reads every configured symbol from the response.
// It fails if any symbol's price or time is missing or invalid.
func (f *HTTPFetcher) Fetch(ctx context.Context) ([]Quote, error) {
	doc, date, err := f.get(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Quote, 0, len(f.fields))
	for _, hf := range f.fields {
		q := Quote{Symbol: hf.symbol, At: date}
		v, err := lookup(doc, hf.price)
		if err == nil {
			q.Price, err = jsonPrice(v)
		}
		if err != nil {
			return nil, fmt.Errorf("GET %s: price of %s at %q: %w", f.display, hf.symbol, hf.price, err)
		}
		if hf.time != "" {
			v, err := lookup(doc, hf.time)
			if err == nil {
				q.At, err = jsonTime(v)
			}
			if err != nil {
				return nil, fmt.Errorf("GET %s: time of %s at %q: %w", f.display, hf.symbol, hf.time, err)
			}
		}
		out = append(out, q)
	}
	return out, nil
}

// get fetches and decodes the response, numbers as json.Number. It returns
// the document and the response time: the Date header, else the clock.
func (f *HTTPFetcher) get(ctx context.Context) (any, time.Time, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url, nil)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("GET %s: %w", f.display, stripURLError(err))
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "rebalancerd")
	if f.key != "" {
		req.Header.Set(f.header, f.key)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("GET %s: %w", f.display, stripURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.maxBody+1))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("GET %s: reading the response: %w", f.display, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, time.Time{}, fmt.Errorf("GET %s: %s: %s", f.display, resp.Status, f.snippet(body))
	}
	if int64(len(body)) > f.maxBody {
		return nil, time.Time{}, fmt.Errorf("GET %s: response body is larger than %d bytes", f.display, f.maxBody)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, time.Time{}, fmt.Errorf("GET %s: response is not JSON: %w", f.display, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, time.Time{}, fmt.Errorf("GET %s: trailing data after the JSON value", f.display)
	}
	date, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		date = f.clock()
	}
	return doc, date.UTC(), nil
}

// snippet returns the start of an error response's body for a message,
// quoted, with the API key masked in case the server echoes it.
func (f *HTTPFetcher) snippet(body []byte) string {
	const max = 200
	s := string(body)
	if f.key != "" {
		s = strings.ReplaceAll(s, f.key, "[api key]")
	}
	return strconv.Quote(truncate(s, max))
}

// lookup follows a dot path through a decoded JSON document.
func lookup(doc any, path string) (any, error) {
	steps := strings.Split(path, ".")
	cur := doc
	for i, step := range steps {
		where := "the top level"
		if i > 0 {
			where = strconv.Quote(strings.Join(steps[:i], "."))
		}
		switch c := cur.(type) {
		case map[string]any:
			next, ok := c[step]
			if !ok {
				return nil, fmt.Errorf("no key %q in %s", step, where)
			}
			cur = next
		case []any:
			n, err := strconv.Atoi(step)
			if err != nil || n < 0 || n >= len(c) {
				return nil, fmt.Errorf("no index %q in %s, a list of %d", step, where, len(c))
			}
			cur = c[n]
		default:
			return nil, fmt.Errorf("%s is %s, not an object or a list", where, describeJSON(cur))
		}
	}
	return cur, nil
}

// describeJSON names the kind of a decoded JSON value.
func describeJSON(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "a list"
	default:
		return "an object"
	}
}

// jsonNumberText returns the text of a JSON number or numeric string.
func jsonNumberText(v any) (string, error) {
	switch n := v.(type) {
	case json.Number:
		return string(n), nil
	case string:
		return n, nil
	}
	return "", fmt.Errorf("want a number or a numeric string, got %s", describeJSON(v))
}

// parseJSONDecimal reads a JSON number's text exactly, within
// decimaltext's limits. Unlike the policy files it accepts a bounded
// exponent, which APIs use for small prices (6.5e-06).
func parseJSONDecimal(s string) (decimal.Decimal, error) {
	return decimaltext.ParseExponent(s)
}

// jsonPrice reads a price: a positive JSON number or numeric string.
func jsonPrice(v any) (decimal.Decimal, error) {
	s, err := jsonNumberText(v)
	if err != nil {
		return decimal.Decimal{}, err
	}
	d, err := parseJSONDecimal(s)
	if err != nil {
		return decimal.Decimal{}, err
	}
	if err := checkPrice(d); err != nil {
		return decimal.Decimal{}, err
	}
	return d, nil
}

// maxUnix is 9999-12-31T23:59:59Z in Unix seconds.
const maxUnix = 253402300799

// jsonTime reads a time: an RFC 3339 string or a JSON number of Unix
// seconds (a fraction is kept to the nanosecond).
func jsonTime(v any) (time.Time, error) {
	switch t := v.(type) {
	case string:
		at, err := time.Parse(time.RFC3339, t)
		if err != nil {
			return time.Time{}, fmt.Errorf("want an RFC 3339 time like 2026-11-20T21:00:00Z, got %.40q", t)
		}
		return at.UTC(), nil
	case json.Number:
		d, err := parseJSONDecimal(string(t))
		if err != nil {
			return time.Time{}, err
		}
		if d.Sign() <= 0 || d.GreaterThan(decimal.NewFromInt(maxUnix)) {
			return time.Time{}, fmt.Errorf("unix time %s is out of range", t)
		}
		sec := d.Truncate(0)
		nsec := d.Sub(sec).Shift(9).Truncate(0)
		return time.Unix(sec.IntPart(), nsec.IntPart()).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("want an RFC 3339 string or unix seconds, got %s", describeJSON(v))
}
