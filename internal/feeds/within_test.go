package feeds

import (
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"
)

// TestWithinFixedExact: the integer test of a move agrees with decimal
// arithmetic wherever it answers, including moves exactly at the limit.
func TestWithinFixedExact(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	answered := 0
	for k := range 100000 {
		ref := decimal.New(r.Int64N(1e12)+1, int32(r.IntN(12)-8))
		move := decimal.New(r.Int64N(5000), -4)
		p := ref.Add(ref.Mul(decimal.New(r.Int64N(4000)-2000, -4)))
		switch k % 4 {
		case 3: // exactly at the edge, at the reference's exponent
			ref = decimal.New((r.Int64N(1e8)+1)*10000, ref.Exponent())
			p = ref.Add(ref.Mul(move)).Round(-ref.Exponent())
		case 0: // exactly at the edge
			p = ref.Add(ref.Mul(move))
		case 1: // at the reference's exponent, as a feed's prices are
			p = p.Round(-ref.Exponent())
		}
		if p.Sign() <= 0 {
			continue
		}
		want := p.Sub(ref).Abs().Cmp(move.Mul(ref)) <= 0
		got, ok := withinFixed(p, ref, move)
		if !ok {
			continue
		}
		answered++
		if got != want {
			t.Fatalf("p %s ref %s max_move %s: got %v, want %v", p, ref, move, got, want)
		}
	}
	if answered < 90000 {
		t.Fatalf("answered %d of 100000", answered)
	}
}
