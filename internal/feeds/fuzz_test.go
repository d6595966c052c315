package feeds

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
)

// FuzzNATSPrice feeds arbitrary messages to the NATS feed's decoder: it
// must refuse what it cannot use, with a reason, and every quote it
// accepts must pass the quote checks.
func FuzzNATSPrice(f *testing.F) {
	for _, s := range []string{
		`{"schema_version": 1, "symbol": "VTI", "price": "285.12", "at": "2026-11-20T21:00:00Z"}`,
		`{"symbol": "BND", "price": 72.15, "at": "2026-11-20T21:00:00Z", "venue": "ARCX"}`,
		`{"symbol": "VTI", "price": "-1", "at": "2026-11-20T21:00:00Z"}`,
		`{"symbol": "VTI", "price": "1e9999999999", "at": "2026-11-20T21:00:00Z"}`,
		`{"symbol": "", "price": "1"}`, `null`, `[]`, `{"schema_version": 2}`,
		`{"schema_version": -5, "symbol": "VTI", "price": "285.12", "at": "2026-11-20T21:00:00Z"}`,
		`{"symbol": "VTI", "Price": "` + strings.Repeat("9", 41) + `", "at": "2026-11-20T21:00:00Z"}`,
		`{"symbol": "VTI", "price": 2.8512e2, "at": "2026-11-20T21:00:00Z"}`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 11, 20, 21, 0, 30, 0, time.UTC)
	feed := NewNATSFeed(nil, "rebalance.prices.>", nil, WithNATSClock(func() time.Time { return now }))
	f.Fuzz(func(t *testing.T, data []byte) {
		q, err := feed.decode(&nats.Msg{Subject: "rebalance.prices.X", Data: data})
		if err != nil {
			if RejectReason(err) == "" {
				t.Fatalf("refused without a reason: %v", err)
			}
			return
		}
		if err := checkQuote(q, now, MaxClockSkew); err != nil {
			t.Fatalf("accepted a quote that fails the checks: %+v: %v", q, err)
		}
		// Within decimaltext's limits: plain text of at most MaxLen
		// characters has no positive exponent and at most MaxLen digits.
		if e := q.Price.Exponent(); e > 0 || e < -decimaltext.MaxLen || q.Price.NumDigits() > decimaltext.MaxLen {
			t.Fatalf("accepted price %s (%d digits, exponent %d)", q.Price, q.Price.NumDigits(), e)
		}
	})
}

// FuzzHTTPResponse serves arbitrary response bodies to the HTTP JSON feed
// and the CoinGecko preset: each either fails the poll or gives quotes for
// the configured symbols only, with usable prices, never a panic.
func FuzzHTTPResponse(f *testing.F) {
	for _, s := range []string{
		`{"data": {"VTI": {"last": "285.12", "time": 1763672400}, "BND": {"last": 72.15}}}`,
		`{"bitcoin": {"usd": 91234.5, "last_updated_at": 1763672400}, "ethereum": {"usd": "3012.25"}}`,
		`{"data": {"VTI": {"last": "NaN"}}}`, `{"data": {"VTI": {"last": -3}}}`, `{"data": []}`, `{}`, `null`, `"x"`,
	} {
		f.Add([]byte(s))
	}
	var body atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*body.Load())
	}))
	f.Cleanup(srv.Close)
	now := time.Date(2025, 11, 20, 21, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	generic, err := NewHTTPFetcher(HTTPConfig{URL: srv.URL, Clock: clock,
		Fields: map[string]string{"VTI": "data.VTI.last", "BND": "data.BND.last"}, TimeFields: map[string]string{"VTI": "data.VTI.time"}})
	if err != nil {
		f.Fatal(err)
	}
	gecko, err := NewCoinGecko(CoinGeckoConfig{BaseURL: srv.URL, IDs: map[string]string{"BTC": "bitcoin", "ETH": "ethereum"}, VsCurrency: "usd"})
	if err != nil {
		f.Fatal(err)
	}
	fetchers := map[string]*HTTPFetcher{"generic": generic, "coingecko": gecko}
	symbols := map[string]map[string]bool{"generic": {"VTI": true, "BND": true}, "coingecko": {"BTC": true, "ETH": true}}
	f.Fuzz(func(t *testing.T, data []byte) {
		body.Store(&data)
		for name, fetcher := range fetchers {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			quotes, err := fetcher.Fetch(ctx)
			cancel()
			if err != nil {
				continue
			}
			for _, q := range quotes {
				if !symbols[name][q.Symbol] || q.Price.Sign() <= 0 || q.At.IsZero() {
					t.Fatalf("%s: quote %+v from %q", name, q, data)
				}
			}
		}
	})
}
