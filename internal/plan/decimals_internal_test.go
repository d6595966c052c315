package plan

import (
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/dec64"
)

// TestAppendDecimal checks appendDecimal against String, which order ids
// were derived from before it existed, on edge cases and random values.
func TestAppendDecimal(t *testing.T) {
	check := func(d decimal.Decimal) {
		t.Helper()
		if got, want := string(appendDecimal([]byte("x"), d)), "x"+d.String(); got != want {
			t.Fatalf("appendDecimal(%s, exp %d) = %q, want %q", d.Coefficient(), d.Exponent(), got, want)
		}
	}
	for _, s := range []string{"0", "0.0", "-0.000", "1", "-1", "10", "1.50", "0.0001", "-0.0010", "285.12", "41250.00",
		"0.3396", "100000000000000000", "999999999999999999", "9999999999999999999", "0.000000000000000001",
		"0.0000000000000000001", "123456789012345678901234567890.5", "1e3", "-2.5e2", "12.000000000000000000"} {
		check(decimal.RequireFromString(s))
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		c := r.Int64N(1_000_000_000_000_000_000) >> r.IntN(60)
		if r.IntN(2) == 0 {
			c = -c
		}
		check(decimal.New(c, int32(r.IntN(24)-21)))
	}
}

// TestWholeSteps checks wholeSteps with and without the step's power of
// ten (dec64's PowerOfTen, which its own tests check against decimal).
func TestWholeSteps(t *testing.T) {
	for _, tt := range []struct {
		q, step string
		want    bool
	}{
		{"10", "1", true}, {"10.5", "1", false}, {"10.0", "1", true}, {"0.5", "0.0001", true}, {"0.00005", "0.0001", false},
		{"0.00010", "0.0001", true}, {"6", "2", true}, {"7", "2", false}, {"0.75", "0.25", true},
	} {
		q, step := decimal.RequireFromString(tt.q), decimal.RequireFromString(tt.step)
		k, ok := dec64.Read(step).PowerOfTen()
		for _, known := range []bool{false, ok} {
			steps, got := wholeSteps(q, step, k, known)
			if got != tt.want {
				t.Errorf("wholeSteps(%s, %s, power known %v) = %v, want %v", tt.q, tt.step, known, got, tt.want)
			}
			if !known && !step.Mul(steps).Equal(q) && got {
				t.Errorf("wholeSteps(%s, %s) = %s steps", tt.q, tt.step, steps)
			}
		}
	}
}

// TestPercentText: percentText gives what d.Shift(2).StringFixed(2) + "%"
// gives.
func TestPercentText(t *testing.T) {
	for _, s := range []string{"0", "0.602927", "-0.052927", "0.00005", "-0.00005", "0.00004999", "1", "0.1", "0.123456789012", "-0.0000001", "12345.6789", "0.99995",
		// 16 to 19 digits, at the edges of the int64 path.
		"0.1234567890123456", "-0.9999499999999999", "0.123456789012345678", "0.999949999999999999", "-0.000049999999999999",
		"12345678901234.5678", "123456789012345.678", "0.1234567890123456789", "0.9999999999999999999", "-0.9223372036854775808", "999999999999999999", "99999999999999.9999",
		// Exponents above zero.
		"1", "7", "1e3", "-2e5", "123e12", "1234e12"} {
		d := decimal.RequireFromString(s)
		if got, want := percentText(d), d.Shift(2).StringFixed(2)+"%"; got != want {
			t.Errorf("percentText(%s) = %s, want %s", s, got, want)
		}
	}
}
