package plan

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"
)

// randDecimal returns a random decimal: coefficients from 0 to beyond an
// int64 (so that both the int64 path and the fallback run), exponents from
// -20 to 4, half of them negative.
func randDecimal(r *rand.Rand) decimal.Decimal {
	var d decimal.Decimal
	switch r.IntN(6) {
	case 0: // near the int64 limits
		d = decimal.New(math.MaxInt64-r.Int64N(1000), int32(r.IntN(25)-20))
	case 1: // beyond them
		d = decimal.New(math.MaxInt64, 0).Mul(decimal.New(r.Int64N(1000)+2, int32(r.IntN(25)-20)))
	case 2: // small
		d = decimal.New(r.Int64N(1000), int32(r.IntN(8)-4))
	default:
		d = decimal.New(r.Int64N(math.MaxInt64)>>r.IntN(63), int32(r.IntN(25)-20))
	}
	if r.IntN(2) == 0 {
		d = d.Neg()
	}
	return d
}

// TestNumMatchesDecimal checks every operation of num against decimal's on
// random operands, ties of the rounding division included.
func TestNumMatchesDecimal(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 200000 {
		x, y := randDecimal(r), randDecimal(r)
		if r.IntN(4) == 1 {
			// Both at one exponent (odd coefficients, which numOf keeps
			// there), below 2^31 or up to 2^62: the short paths of Add,
			// Sub, Cmp, Mul and the divisions, inlined where they are
			// called, and the limits of Mul's.
			e := int32(r.IntN(25) - 20)
			odd := func() int64 {
				v := 2*r.Int64N(1<<(30+r.IntN(2)*32)) + 1
				if r.IntN(2) == 0 {
					v = -v
				}
				return v
			}
			x, y = decimal.New(odd(), e), decimal.New(odd(), e)
		}
		if r.IntN(4) == 0 {
			// A tie for DivRound: x = (k + 1/2) y.
			x = y.Mul(decimal.New(2*r.Int64N(1000)+1, -1).Div(decimal.NewFromInt(2)).Mul(decimal.NewFromInt(10)))
		}
		nx, ny := numOf(x), numOf(y)
		check := func(op string, got num, want decimal.Decimal) {
			t.Helper()
			if !got.dec().Equal(want) {
				t.Fatalf("%s(%s, %s) = %s, want %s", op, x, y, got.dec(), want)
			}
		}
		check("Add", nx.Add(ny), x.Add(y))
		check("Sub", nx.Sub(ny), x.Sub(y))
		check("Mul", nx.Mul(ny), x.Mul(y))
		check("Neg", nx.Neg(), x.Neg())
		check("Abs", nx.Abs(), x.Abs())
		places := int32(r.IntN(30) - 8)
		check("RoundFloor", nx.RoundFloor(-places), x.RoundFloor(places))
		if got, want := nx.Cmp(ny), x.Cmp(y); got != want {
			t.Fatalf("Cmp(%s, %s) = %d, want %d", x, y, got, want)
		}
		if nx.Sign() != x.Sign() {
			t.Fatalf("Sign(%s) = %d", x, nx.Sign())
		}
		if !y.IsZero() {
			q, rem := nx.QuoRem(ny)
			wq, wr := x.QuoRem(y, 0)
			check("QuoRem quotient", q, wq)
			check("QuoRem remainder", rem, wr)
			check("DivRound", nx.DivRound(ny), x.DivRound(y, 0))
			places := int32(r.IntN(12))
			check("DivRoundTo", nx.DivRoundTo(ny, places), x.DivRound(y, places))
		}
		a, b, c, d := x.Abs(), y.Abs(), randDecimal(r).Abs(), randDecimal(r).Abs()
		if got, want := cmpProducts(numOf(a), numOf(b), numOf(c), numOf(d)), a.Mul(b).Cmp(c.Mul(d)); got != want {
			t.Fatalf("cmpProducts(%s, %s, %s, %s) = %d, want %d", a, b, c, d, got, want)
		}
	}
}
