package decimaltext

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want string // exact value, or the error
	}{
		{"0", "0"},
		{"1200.50", "1200.5"},
		{"-3", "-3"},
		{"+5", "5"},
		{".5", "0.5"},
		{"5.", "5"},
		{"-0", "0"},
		{"007", "7"},
		{"0.0001", "0.0001"},
		{"1234567890.123456789", "1234567890.123456789"},
		{"0.000000000000000000000000000000000001", "0.000000000000000000000000000000000001"},
		{"1234567890123456789012345678901234567890", "1234567890123456789012345678901234567890"},
		{"12345678901234567890123456789012345678901", `number "123456789012"… is longer than 40 characters`},
		{"1e5", `"1e5" is not a plain decimal number`},
		{"1E5", `"1E5" is not a plain decimal number`},
		{"abc", `"abc" is not a plain decimal number`},
		{"NaN", `"NaN" is not a plain decimal number`},
		{".nan", `".nan" is not a plain decimal number`},
		{"Inf", `"Inf" is not a plain decimal number`},
		{"-.inf", `"-.inf" is not a plain decimal number`},
		{"1,000", `"1,000" is not a plain decimal number`},
		{"1_000", `"1_000" is not a plain decimal number`},
		{"0x10", `"0x10" is not a plain decimal number`},
		{"$5", `"$5" is not a plain decimal number`},
		{"5%", `"5%" is not a plain decimal number`},
		{"", `"" is not a plain decimal number`},
		{".", `"." is not a plain decimal number`},
		{"-", `"-" is not a plain decimal number`},
		{"1.2.3", `"1.2.3" is not a plain decimal number`},
		{"--1", `"--1" is not a plain decimal number`},
		{" 1", `" 1" is not a plain decimal number`},
		{"1\n", `"1\n" is not a plain decimal number`},
	}
	for _, tt := range tests {
		if got := result(Parse(tt.in)); got != tt.want {
			t.Errorf("Parse(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// FuzzParse checks that Parse never panics, accepts only
// short plain decimals, and is exact: what it accepts reads back equal.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"0", "1200.50", "-3", ".5", "5.", "+1", "1e5", "NaN", "1,000", "0x10", "1_000",
		"1234567890.123456789", strings.Repeat("9", 41), "", ".", "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if err != nil {
			return
		}
		if len(s) > MaxLen {
			t.Fatalf("accepted %d characters: %q", len(s), s)
		}
		if !plain.MatchString(s) {
			t.Fatalf("accepted %q, which is not a plain decimal", s)
		}
		// Exact: the value is the text itself, written canonically.
		if want := canonical(s); d.String() != want {
			t.Fatalf("Parse(%q) = %s, want %s", s, d, want)
		}
	})
}

// canonical writes a plain decimal without a plus sign, leading or trailing
// zeros, or a dangling point: the form decimal.Decimal.String gives.
func canonical(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimLeft(s, "+-")
	whole, frac, _ := strings.Cut(s, ".")
	whole = strings.TrimLeft(whole, "0")
	frac = strings.TrimRight(frac, "0")
	if whole == "" {
		whole = "0"
	}
	out := whole
	if frac != "" {
		out += "." + frac
	}
	if neg && out != "0" {
		out = "-" + out
	}
	return out
}

func TestParseExponent(t *testing.T) {
	tests := []struct{ in, want string }{
		{"6.5e-06", "0.0000065"},
		{"1E3", "1000"},
		{"42.5", "42.5"},
		{"1e40", "10000000000000000000000000000000000000000"},
		{"1e-40", "0.0000000000000000000000000000000000000001"},
		{"1e41", `number "1e41" has an exponent beyond ±40`},
		{"1e-2000000000", `"1e-2000000000" is not a number`},
		{"NaN", `"NaN" is not a number`},
		{strings.Repeat("1", 41), `number "111111111111"… is longer than 40 characters`},
	}
	for _, tt := range tests {
		if got := result(ParseExponent(tt.in)); got != tt.want {
			t.Errorf("ParseExponent(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// result is a parse's value or error, as text.
func result(d decimal.Decimal, err error) string {
	if err != nil {
		return err.Error()
	}
	return d.String()
}

// TestParseRefusesHugeTextFast: a megabyte of digits is refused by its
// length, before decimal.NewFromString (which takes seconds on it).
func TestParseRefusesHugeTextFast(t *testing.T) {
	huge := strings.Repeat("7", 1<<20)
	start := time.Now()
	for _, parse := range []func(string) error{
		func(s string) error { _, err := Parse(s); return err },
		func(s string) error { _, err := ParseExponent(s); return err },
	} {
		if err := parse(huge); !errors.Is(err, ErrTooLong) {
			t.Fatalf("1 MiB number: %v, want ErrTooLong", err)
		}
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("refusing a 1 MiB number took %v", d)
	}
}
