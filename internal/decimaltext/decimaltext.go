// Package decimaltext turns decimal text from any source (policy and
// holdings files, NATS messages, HTTP feed responses, saved state) into
// decimal.Decimal values, refusing text whose parsing or later arithmetic
// could cost without bound before any big-number work is done.
//
// The limits are those of the policy files: at most MaxLen characters and
// no exponent. shopspring/decimal parses a million-digit number in seconds
// and keeps a number like 1e-2000000000 whose every later operation
// allocates gigabytes; neither is a price, a quantity or an amount.
//
// Parse reads one number. Unmarshal decodes a JSON document like
// json.Unmarshal after checking every value bound for a decimal.Decimal.
package decimaltext

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/shopspring/decimal"
)

// MaxLen is the longest decimal text accepted, in bytes: 40 digits cover
// any amount of money or quantity with room for 18 decimal places.
const MaxLen = 40

// MaxExponent bounds the exponent ParseExponent accepts (6.5e-06 has -6).
const MaxExponent = 40

// ErrTooLong is wrapped by the error for text longer than MaxLen.
var ErrTooLong = errors.New("number is too long")

// ErrNotPlain is wrapped by the error for text that is not a plain decimal
// (an exponent, NaN, an infinity, a separator, another character).
var ErrNotPlain = errors.New("not a plain decimal number")

var (
	plain    = regexp.MustCompile(`^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$`)
	exponent = regexp.MustCompile(`^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]{1,3}))?$`)
)

// Parse parses plain decimal text ("1200.50", "-3", ".5", "+5", "5.")
// exactly. It refuses text longer than MaxLen, exponents, NaN, infinities,
// thousands separators and surrounding space, so that every accepted number
// is an ordinary amount. The length is checked first: refusing a megabyte
// of digits costs nothing.
func Parse(s string) (decimal.Decimal, error) {
	if err := Check(s); err != nil {
		return decimal.Decimal{}, err
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return decimal.Decimal{}, notPlain(s)
	}
	return d, nil
}

// Check reports whether Parse would accept s, without parsing it.
func Check(s string) error {
	if len(s) > MaxLen {
		return tooLong(s)
	}
	if !plain.MatchString(s) {
		return notPlain(s)
	}
	return nil
}

// ParseExponent is Parse that also accepts an exponent of at most
// MaxExponent in absolute value (6.5e-06, 1E3), within the same MaxLen
// characters. It is for the numbers of third-party JSON APIs, which write
// small prices that way; the messages and files of rebalancerd's own
// formats go through Parse.
func ParseExponent(s string) (decimal.Decimal, error) {
	if len(s) > MaxLen {
		return decimal.Decimal{}, tooLong(s)
	}
	m := exponent.FindStringSubmatch(s)
	if m == nil {
		return decimal.Decimal{}, notNumber(s)
	}
	if m[1] != "" {
		if e, err := strconv.Atoi(m[1]); err != nil || e > MaxExponent || e < -MaxExponent {
			return decimal.Decimal{}, &numberError{msg: fmt.Sprintf("number %q has an exponent beyond ±%d", s, MaxExponent), err: ErrNotPlain}
		}
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return decimal.Decimal{}, notNumber(s)
	}
	return d, nil
}

func tooLong(s string) error {
	return &numberError{msg: fmt.Sprintf("number %.12q… is longer than %d characters", s, MaxLen), err: ErrTooLong}
}

func notNumber(s string) error {
	return &numberError{msg: fmt.Sprintf("%q is not a number", s), err: ErrNotPlain}
}

func notPlain(s string) error {
	return &numberError{msg: fmt.Sprintf("%q is not a plain decimal number", s), err: ErrNotPlain}
}

// numberError keeps the messages the policy parser has always given while
// wrapping a sentinel for callers.
type numberError struct {
	msg string
	err error
}

func (e *numberError) Error() string { return e.msg }
func (e *numberError) Unwrap() error { return e.err }
