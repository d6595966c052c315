package feeds

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// serverDate is the Date header the replay servers send.
var serverDate = time.Date(2026, 11, 20, 21, 0, 5, 0, time.UTC)

// replay returns a server answering every request with the testdata file,
// status 200 and a Date header.
func replay(t *testing.T, name string) *httptest.Server {
	t.Helper()
	body := readTestdata(t, name)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", serverDate.Format(http.TimeFormat))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// serve returns a server answering every request with status and body.
func serve(t *testing.T, status int, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestHTTPFetcher(t *testing.T) {
	srv := replay(t, "http_quotes.json")
	f, err := NewHTTPFetcher(HTTPConfig{
		URL: srv.URL + "/v1/quotes?symbols=VTI,BND,VNQ,VXUS",
		Fields: map[string]string{
			"VTI":  "data.VTI.price",
			"BND":  "data.BND.price",
			"VNQ":  "data.VNQ.price",
			"VXUS": "quotes.0.last",
		},
		TimeFields: map[string]string{
			"VTI":  "data.VTI.time",
			"BND":  "data.BND.time",
			"VXUS": "quotes.0.ts",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantQuotes(t, mustFetch(t, f),
		"BND 72.15 2026-11-20T21:00:00Z",    // unix seconds
		"VNQ 88.9 2026-11-20T21:00:05Z",     // no time path: the Date header
		"VTI 285.12 2026-11-20T21:00:00Z",   // RFC 3339, price as a string
		"VXUS 61.4 2026-11-20T20:59:59.25Z", // list index, fractional seconds
	)
}

// TestHTTPFetcherClock checks that without a Date header a quote's time is
// the clock's.
func TestHTTPFetcherClock(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Date"] = nil // suppress the automatic header
		_, _ = w.Write([]byte(`{"price": 12.5}`))
	}))
	t.Cleanup(srv.Close)
	at := time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC)
	f, err := NewHTTPFetcher(HTTPConfig{URL: srv.URL, Fields: map[string]string{"X": "price"}, Clock: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	wantQuotes(t, mustFetch(t, f), "X 12.5 2026-11-20T09:30:00Z")
}

func TestHTTPFetcherErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		fields map[string]string
		times  map[string]string
		want   string // the error after "GET <url>: "
	}{
		{"status", 503, `{"error":"maintenance"}`, nil, nil, `503 Service Unavailable: "{\"error\":\"maintenance\"}"`},
		{"not JSON", 200, `<html>`, nil, nil, "response is not JSON: invalid character '<'"},
		{"truncated JSON", 200, `{"p": 1`, nil, nil, "response is not JSON: unexpected EOF"},
		{"trailing data", 200, `{"p": 1} {"p": 2}`, nil, nil, "trailing data after the JSON value"},
		{"missing key", 200, `{"data": {"VTI": {}}}`, map[string]string{"VTI": "data.VTI.price"}, nil,
			`price of VTI at "data.VTI.price": no key "price" in "data.VTI"`},
		{"missing top key", 200, `{"p": 1}`, map[string]string{"VTI": "data.VTI"}, nil,
			`price of VTI at "data.VTI": no key "data" in the top level`},
		{"through a number", 200, `{"data": 5}`, map[string]string{"VTI": "data.VTI"}, nil,
			`price of VTI at "data.VTI": "data" is a number, not an object or a list`},
		{"index out of range", 200, `{"q": [1]}`, map[string]string{"VTI": "q.1"}, nil,
			`price of VTI at "q.1": no index "1" in "q", a list of 1`},
		{"zero", 200, `{"p": 0}`, nil, nil, `price of X at "p": price must be positive, got 0`},
		{"negative string", 200, `{"p": "-1.5"}`, nil, nil, `price of X at "p": price must be positive, got -1.5`},
		{"null", 200, `{"p": null}`, nil, nil, `price of X at "p": want a number or a numeric string, got null`},
		{"bool", 200, `{"p": true}`, nil, nil, `price of X at "p": want a number or a numeric string, got a boolean`},
		{"not numeric", 200, `{"p": "$1.00"}`, nil, nil, `price of X at "p": "$1.00" is not a number`},
		{"huge", 200, `{"p": 1e400}`, nil, nil, `price of X at "p": number "1e400" has an exponent beyond ±40`},
		{"bad time", 200, `{"p": 1, "t": "yesterday"}`, nil, map[string]string{"X": "t"},
			`time of X at "t": want an RFC 3339 time like 2026-11-20T21:00:00Z, got "yesterday"`},
		{"negative unix", 200, `{"p": 1, "t": -5}`, nil, map[string]string{"X": "t"}, `time of X at "t": unix time -5 is out of range`},
		{"missing time", 200, `{"p": 1}`, nil, map[string]string{"X": "t"}, `time of X at "t": no key "t" in the top level`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, tt.status, tt.body)
			fields := tt.fields
			if fields == nil {
				fields = map[string]string{"X": "p"}
			}
			f, err := NewHTTPFetcher(HTTPConfig{URL: srv.URL + "/prices?key=s3cret", Fields: fields, TimeFields: tt.times})
			if err != nil {
				t.Fatal(err)
			}
			got, err := f.Fetch(context.Background())
			if err == nil {
				t.Fatalf("Fetch = %v, want an error", got)
			}
			prefix := "GET " + srv.URL + "/prices: "
			if msg := err.Error(); !strings.HasPrefix(msg, prefix+tt.want) {
				t.Errorf("error:\n  %s\nwant it to start with:\n  %s", msg, prefix+tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q shows the URL's query", err)
			}
		})
	}
}

func TestHTTPFetcherBodyLimit(t *testing.T) {
	srv := serve(t, 200, `{"p": "1", "pad": "`+strings.Repeat("x", 2000)+`"}`)
	f, err := NewHTTPFetcher(HTTPConfig{URL: srv.URL, Fields: map[string]string{"X": "p"}, MaxBody: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "larger than 1000 bytes") {
		t.Errorf("Fetch of a large body = %v, want a size error", err)
	}
}

func TestNewHTTPFetcherErrors(t *testing.T) {
	ok := map[string]string{"X": "p"}
	tests := []struct {
		name string
		cfg  HTTPConfig
		want string
	}{
		{"relative URL", HTTPConfig{URL: "/prices", Fields: ok}, "want an absolute http or https URL"},
		{"ftp", HTTPConfig{URL: "ftp://example.com/p", Fields: ok}, "want an absolute http or https URL"},
		{"bad URL", HTTPConfig{URL: "http://exa mple.com/?key=s3cret", Fields: ok}, "price feed URL: invalid character"},
		{"no fields", HTTPConfig{URL: "https://example.com"}, "no fields"},
		{"key without header", HTTPConfig{URL: "https://example.com", Fields: ok, APIKey: "s3cret"}, "needs the name of the header"},
		{"key with newline", HTTPConfig{URL: "https://example.com", Fields: ok, Header: "X-Key", APIKey: "s3cret\r\nX: y"}, "control character"},
		{"bad header", HTTPConfig{URL: "https://example.com", Fields: ok, Header: "X Key", APIKey: "s3cret"}, "not a valid header name"},
		{"empty path", HTTPConfig{URL: "https://example.com", Fields: map[string]string{"X": ""}}, "price path of X: empty path"},
		{"empty step", HTTPConfig{URL: "https://example.com", Fields: map[string]string{"X": "a..b"}}, `price path of X: path "a..b" has an empty step`},
		{"bad symbol", HTTPConfig{URL: "https://example.com", Fields: map[string]string{"V TI": "p"}}, `symbol "V TI" holds a space`},
		{"time without price", HTTPConfig{URL: "https://example.com", Fields: ok, TimeFields: map[string]string{"Y": "t"}}, "time path given for Y"},
		{"empty time path", HTTPConfig{URL: "https://example.com", Fields: ok, TimeFields: map[string]string{"X": ""}}, "time path of X: empty path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewHTTPFetcher(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewHTTPFetcher = %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error %q shows a secret", err)
			}
		})
	}
}

// TestHTTPFetcherAPIKey checks that the key is sent in its header and
// appears in no error, even when the server echoes it.
func TestHTTPFetcherAPIKey(t *testing.T) {
	const key = "k-0123456789abcdef"
	var fail atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("X-API-Key")
		switch {
		case got != key:
			http.Error(w, `{"error":"bad key"}`, http.StatusUnauthorized)
		case fail.Load():
			http.Error(w, `{"error":"quota exceeded for key `+got+`"}`, http.StatusTooManyRequests)
		default:
			_, _ = w.Write([]byte(`{"p": "1.25"}`))
		}
	}))
	t.Cleanup(srv.Close)
	fetcher := func(k string) *HTTPFetcher {
		f, err := NewHTTPFetcher(HTTPConfig{URL: srv.URL, Header: "X-API-Key", APIKey: k, Fields: map[string]string{"X": "p"}})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	if _, err := fetcher(key).Fetch(context.Background()); err != nil {
		t.Fatalf("Fetch with the right key: %v", err)
	}
	if _, err := fetcher("wrong-key-42").Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "401 Unauthorized") || strings.Contains(err.Error(), "wrong-key-42") {
		t.Errorf("Fetch with a wrong key = %v, want a 401 error without the key", err)
	}
	fail.Store(true)
	_, err := fetcher(key).Fetch(context.Background())
	if err == nil || !strings.Contains(err.Error(), "quota exceeded for key [api key]") || strings.Contains(err.Error(), key) {
		t.Errorf("Fetch from a server echoing the key = %v, want a 429 error with the key masked", err)
	}
}

// TestHTTPFetcherRedirect checks that the API key never follows a redirect
// to another host, while a key-less fetcher follows it.
func TestHTTPFetcherRedirect(t *testing.T) {
	var leaked atomic.Bool
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-API-Key") != "" {
			leaked.Store(true)
		}
		_, _ = w.Write([]byte(`{"p": 2}`))
	}))
	t.Cleanup(other.Close)
	// 127.0.0.1 and localhost are different hosts to the client.
	target := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
	srv := httptest.NewServer(http.RedirectHandler(target+"/moved", http.StatusFound))
	t.Cleanup(srv.Close)

	f, err := NewHTTPFetcher(HTTPConfig{URL: srv.URL, Header: "X-API-Key", APIKey: "s3cret", Fields: map[string]string{"X": "p"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "refusing a redirect") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Fetch redirected to another host = %v, want a refusal", err)
	}
	if leaked.Load() {
		t.Error("the API key was sent to the other host")
	}

	f, err = NewHTTPFetcher(HTTPConfig{URL: srv.URL, Fields: map[string]string{"X": "p"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := f.Fetch(context.Background()); err != nil || len(got) != 1 {
		t.Errorf("Fetch without a key = %v, %v; want the redirect followed", got, err)
	}
}

func TestCoinGecko(t *testing.T) {
	var query atomic.Value
	body := readTestdata(t, "coingecko_simple_price.json")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v3/simple/price" || r.Header.Get("x-cg-demo-api-key") != "CG-demo" {
			http.NotFound(w, r)
			return
		}
		query.Store(r.URL.Query())
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	f, err := NewCoinGecko(CoinGeckoConfig{
		BaseURL: srv.URL + "/api/v3/",
		IDs:     map[string]string{"ETH": "ethereum", "BTC": "bitcoin", "XBT": "bitcoin", "SHIB": "shiba-inu"},
		APIKey:  "CG-demo",
	})
	if err != nil {
		t.Fatal(err)
	}
	wantQuotes(t, mustFetch(t, f),
		"BTC 67187.33 2024-03-25T08:45:00Z",
		"ETH 3459.61 2024-03-25T08:44:55Z",
		"SHIB 0.00002832 2024-03-25T08:44:47Z",
		"XBT 67187.33 2024-03-25T08:45:00Z",
	)
	q, _ := query.Load().(url.Values)
	want := map[string]string{"ids": "bitcoin,ethereum,shiba-inu", "vs_currencies": "usd", "include_last_updated_at": "true"}
	for k, v := range want {
		if len(q[k]) != 1 || q[k][0] != v {
			t.Errorf("query %s = %v, want %q", k, q[k], v)
		}
	}
}

func TestCoinGeckoErrors(t *testing.T) {
	ids := map[string]string{"BTC": "bitcoin", "ETH": "ethereum"}
	srv := replay(t, "coingecko_missing_coin.json")
	f, err := NewCoinGecko(CoinGeckoConfig{BaseURL: srv.URL, IDs: ids, VsCurrency: "USD"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), `price of ETH at "ethereum.usd": no key "ethereum" in the top level`) {
		t.Errorf("Fetch with a coin missing = %v", err)
	}

	limited := readTestdata(t, "coingecko_rate_limited.json")
	srv429 := serve(t, http.StatusTooManyRequests, string(limited))
	f, err = NewCoinGecko(CoinGeckoConfig{BaseURL: srv429.URL, IDs: ids})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "GET "+srv429.URL+"/simple/price: 429 Too Many Requests") {
		t.Errorf("Fetch when rate limited = %v", err)
	}

	for _, cfg := range []CoinGeckoConfig{
		{},
		{IDs: map[string]string{"BTC": ""}},
		{IDs: map[string]string{"BTC": "bit.coin"}},
		{IDs: ids, VsCurrency: "usd,eur"},
	} {
		if _, err := NewCoinGecko(cfg); err == nil {
			t.Errorf("NewCoinGecko(%+v) succeeded", cfg)
		}
	}
}
