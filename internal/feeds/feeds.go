// Package feeds brings prices into the daemon and decides whether they may
// be planned on.
//
// A Fetcher takes one reading of a price source: a prices file (YAML or
// CSV), a JSON HTTP API or the CoinGecko simple-price API. A Poller turns a
// Fetcher into a Source: it polls at an interval with per-attempt timeouts,
// retries with jittered exponential backoff, and a circuit breaker that
// stops hammering a source that keeps failing. NATSFeed is a Source fed by
// price messages pushed on NATS.
//
// A Guard keeps, per policy, the last accepted quote of each symbol and
// fails closed: Check reports every symbol whose price is missing, stale or
// quarantined after a jump, and the engine plans only when it reports
// nothing. A jump is believed only once it is confirmed (see Confirmer):
// quotes agreeing with it persisted for a while, or a second feed reports
// it; a repeat from the same feed is not a confirmation. The Guard resumes
// by itself once good quotes arrive again.
package feeds

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"
	"unicode"

	"github.com/shopspring/decimal"
)

// Quote is the price of one symbol at a time, from a named source.
type Quote struct {
	Symbol string
	Price  decimal.Decimal
	At     time.Time
	// Source is the name of the feed the quote came from (set by Poller
	// and NATSFeed; fetchers leave it empty).
	Source string
}

// Fetcher does one poll: it returns the current quotes of its source, or an
// error when it could not get all of them. It must return when ctx ends.
type Fetcher interface {
	Fetch(ctx context.Context) ([]Quote, error)
}

// Source produces quotes until ctx ends. Run returns nil when ctx is done,
// or an error if it cannot start. It delivers each batch of quotes to sink,
// from Run's goroutine, one call at a time. Status is safe to call
// concurrently with Run.
type Source interface {
	Name() string
	Run(ctx context.Context, sink func([]Quote)) error
	Status() Status
}

// Status is a snapshot of a Source's health, for the status endpoint and
// metrics. Its JSON form uses snake_case keys.
type Status struct {
	Name string `json:"name"`
	// Kind is the kind of source: file, http, coingecko, nats...
	Kind string `json:"kind"`
	// LastSuccess is when the source last delivered quotes.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// LastError is the text of the last failure, kept after later
	// successes; LastErrorAt says when it happened.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// ConsecutiveFailures counts the failed polls (or bad messages) since
	// the last success.
	ConsecutiveFailures int `json:"consecutive_failures"`
	// BreakerOpen is set while the circuit breaker skips polls, and during
	// its half-open trial poll.
	BreakerOpen bool `json:"breaker_open"`
	// BreakerUntil is when an open breaker next allows a trial poll.
	BreakerUntil time.Time `json:"breaker_until,omitzero"`
	// Polls counts the polls made (for a push source: the messages
	// received); Failures counts those that failed.
	Polls    uint64 `json:"polls"`
	Failures uint64 `json:"failures"`
	// Skipped counts the polls the open breaker skipped.
	Skipped uint64 `json:"skipped"`
	// Rejected counts the quotes and price messages refused, by reason
	// (the Reject* constants); each also counts as a failure.
	Rejected map[string]uint64 `json:"rejected,omitempty"`
	// Dropped counts the messages a push source lost because it could not
	// keep up (NATS slow consumer).
	Dropped uint64 `json:"dropped"`
}

// MaxClockSkew is how far ahead of the local clock a quote's time may be.
// A quote further in the future comes from a wrong clock or a wrong unit
// (milliseconds read as seconds); accepting it would make every later,
// correct quote look older and keep a frozen price fresh.
const MaxClockSkew = time.Minute

// maxExponent and maxDigits bound the exponent and the digits of a price,
// so that no input can make later arithmetic build huge numbers
// (1e999999999).
const (
	maxExponent = 40
	maxDigits   = 40
)

// checkPrice checks that d is a usable price: positive and of ordinary
// magnitude.
func checkPrice(d decimal.Decimal) error {
	if e := d.Exponent(); e > maxExponent || e < -maxExponent || d.NumDigits() > maxDigits {
		// Not d.String(): it would spell out every digit of 1e999999999.
		return fmt.Errorf("price is out of range (%d digits, exponent %d)", d.NumDigits(), d.Exponent())
	}
	if d.Sign() <= 0 {
		return fmt.Errorf("price must be positive, got %s", d)
	}
	return nil
}

// checkSymbol checks that s is a usable symbol: not empty, at most 64
// bytes, no spaces or control characters.
func checkSymbol(s string) error {
	if s == "" {
		return fmt.Errorf("symbol is empty")
	}
	if len(s) > 64 {
		return fmt.Errorf("symbol %.16q… is longer than 64 bytes", s)
	}
	if printableASCII(s) {
		return nil // the common case, without decoding runes
	}
	if strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar }) >= 0 {
		return fmt.Errorf("symbol %q holds a space, a control character or invalid UTF-8", s)
	}
	return nil
}

// printableASCII reports whether s holds only ASCII from '!' to '~': no
// space, control character or invalid UTF-8 (checkSymbol's rule, for the
// symbols most feeds send).
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// Reasons a quote or a price message is rejected, as counted in
// Status.Rejected and the rebalancerd_inputs_rejected_total metric.
const (
	RejectSymbol    = "bad_symbol"     // empty, too long, spaces or control characters
	RejectPrice     = "bad_price"      // zero, negative or out of range
	RejectNoTime    = "no_time"        // a quote without a time
	RejectFuture    = "future_time"    // a time ahead of the clock
	RejectMalformed = "malformed"      // a message that is not a price event
	RejectSchema    = "schema_version" // a newer schema than this daemon reads
)

// rejection is an error carrying the reason an input was refused.
type rejection struct {
	reason string
	err    error
}

func (r *rejection) Error() string { return r.err.Error() }
func (r *rejection) Unwrap() error { return r.err }

// reject wraps err with a reason.
func reject(reason string, err error) error { return &rejection{reason: reason, err: err} }

// RejectReason returns why err refused an input (one of the Reject*
// constants), or "" when err is not such a refusal.
func RejectReason(err error) string {
	var r *rejection
	if errors.As(err, &r) {
		return r.reason
	}
	return ""
}

// countRejection adds err's reason, if any, to s.Rejected.
func (s *Status) countRejection(err error) {
	if r := RejectReason(err); r != "" {
		if s.Rejected == nil {
			s.Rejected = map[string]uint64{}
		}
		s.Rejected[r]++
	}
}

// clone returns s with its own copy of the Rejected map.
func (s Status) clone() Status {
	s.Rejected = maps.Clone(s.Rejected)
	return s
}

// checkQuote checks a quote a source is about to deliver: a valid symbol, a
// positive price and a time that is set and not more than skew ahead of
// now.
func checkQuote(q Quote, now time.Time, skew time.Duration) error {
	if err := checkSymbol(q.Symbol); err != nil {
		return reject(RejectSymbol, err)
	}
	if err := checkPrice(q.Price); err != nil {
		return reject(RejectPrice, fmt.Errorf("%s: %w", q.Symbol, err))
	}
	if q.At.IsZero() {
		return reject(RejectNoTime, fmt.Errorf("%s: quote has no time", q.Symbol))
	}
	if ahead := q.At.Sub(now); ahead > skew {
		return reject(RejectFuture, fmt.Errorf("%s: quote time %s is %s ahead of the clock (more than %s)",
			q.Symbol, q.At.Format(time.RFC3339), ahead.Round(time.Second), skew))
	}
	return nil
}
