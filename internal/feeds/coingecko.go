package feeds

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// DefaultCoinGeckoURL is the base URL of CoinGecko's public API.
const DefaultCoinGeckoURL = "https://api.coingecko.com/api/v3"

// CoinGeckoConfig configures a CoinGecko simple-price fetcher.
type CoinGeckoConfig struct {
	// BaseURL is the API root; empty means DefaultCoinGeckoURL. The Pro
	// API is https://pro-api.coingecko.com/api/v3.
	BaseURL string
	// IDs maps each symbol to its CoinGecko coin id, e.g. BTC: bitcoin.
	// Several symbols may share a coin.
	IDs map[string]string
	// VsCurrency is the currency prices are quoted in; empty means "usd".
	VsCurrency string
	// Header carries APIKey. Empty means x-cg-pro-api-key for the Pro
	// API's host and x-cg-demo-api-key otherwise.
	Header string
	// APIKey is the secret, already read by the caller; it may be empty on
	// the public API.
	APIKey string
	// Client makes the requests; nil means a client with default
	// settings.
	Client *http.Client
	// Clock is passed to the HTTP fetcher; nil means time.Now.
	Clock func() time.Time
}

// NewCoinGecko returns a fetcher of CoinGecko's
// /simple/price?ids=…&vs_currencies=…&include_last_updated_at=true, whose
// response reads
//
//	{"bitcoin":{"usd":67187.33,"last_updated_at":1711356300}}
//
// Each quote's time is its coin's last_updated_at. The coin ids are sorted
// in the request, so that it is the same on every poll. It is an
// HTTPFetcher with one price path ("bitcoin.usd") and one time path
// ("bitcoin.last_updated_at") per symbol.
func NewCoinGecko(cfg CoinGeckoConfig) (*HTTPFetcher, error) {
	base := cfg.BaseURL
	if base == "" {
		base = DefaultCoinGeckoURL
	}
	vs := strings.ToLower(cfg.VsCurrency)
	if vs == "" {
		vs = "usd"
	}
	if strings.ContainsAny(vs, "., ") {
		return nil, fmt.Errorf("coingecko: %q is not a currency", cfg.VsCurrency)
	}
	if len(cfg.IDs) == 0 {
		return nil, fmt.Errorf("coingecko: no coin ids: map each symbol to its coin id")
	}
	fields := make(map[string]string, len(cfg.IDs))
	times := make(map[string]string, len(cfg.IDs))
	var ids []string
	for _, sym := range slices.Sorted(maps.Keys(cfg.IDs)) {
		id := cfg.IDs[sym]
		if id == "" || strings.ContainsAny(id, "., \t") {
			return nil, fmt.Errorf("coingecko: %s: %q is not a coin id", sym, id)
		}
		fields[sym] = id + "." + vs
		times[sym] = id + ".last_updated_at"
		ids = append(ids, id)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	u, err := url.Parse(strings.TrimRight(base, "/") + "/simple/price")
	if err != nil {
		return nil, fmt.Errorf("coingecko base URL: %w", stripURLError(err))
	}
	u.RawQuery = url.Values{
		"ids":                     {strings.Join(ids, ",")},
		"vs_currencies":           {vs},
		"include_last_updated_at": {"true"},
	}.Encode()
	header := cfg.Header
	if header == "" && cfg.APIKey != "" {
		header = "x-cg-demo-api-key"
		if u.Hostname() == "pro-api.coingecko.com" {
			header = "x-cg-pro-api-key"
		}
	}
	return NewHTTPFetcher(HTTPConfig{
		URL:        u.String(),
		Header:     header,
		APIKey:     cfg.APIKey,
		Fields:     fields,
		TimeFields: times,
		Client:     cfg.Client,
		Clock:      cfg.Clock,
	})
}
