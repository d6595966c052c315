package plan_test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/plan"
)

// TestFastScoringExact plans random households twice, with the polish
// rating its moves in int64 where the figures fit (MakeWith) and in
// decimal arithmetic throughout (MakeExact), and requires the same plan,
// byte for byte: the fast rating may not change a plan. Both generators
// are used: the plan-quality households (every destination, up to six
// accounts, tiny steps and large prices, where figures overflow an int64
// and fall back to decimals) and the property households with tax lots
// and history.
func TestFastScoringExact(t *testing.T) { samePlans(t, "the decimal one", plan.MakeExact) }

// TestPolishShortcutsExact is TestFastScoringExact against the polish
// without its shortcuts (MakePlain: no order index, every move made and
// rated over every sleeve): rating a move before making it from the
// sleeves it moves, and keeping the view of the projection up to date
// move by move, may not change a plan.
func TestPolishShortcutsExact(t *testing.T) { samePlans(t, "the plain one", plan.MakePlain) }

// samePlans plans random households of both generators with MakeWith and
// with other (called name), and requires the same plans, byte for byte.
func samePlans(t *testing.T, name string, other func(*drift.Snapshot, plan.Options) *plan.Plan) {
	n := defaultCases(1000)
	var compared, trades int
	same := func(seed int, fast, exact *plan.Plan) {
		t.Helper()
		f, err := json.Marshal(fast)
		if err != nil {
			t.Fatal(err)
		}
		e, err := json.Marshal(exact)
		if err != nil {
			t.Fatal(err)
		}
		compared++
		if len(fast.Orders) > 0 {
			trades++
		}
		if !bytes.Equal(f, e) {
			t.Fatalf("seed %d: MakeWith planned\n%s\n%s\n%s", seed, f, name, e)
		}
	}
	for seed := 0; seed < n; seed++ {
		r := rand.New(rand.NewPCG(uint64(seed), 1111))
		pol, hold, prices := genHousehold(r)
		b := book(t, pol, hold, prices)
		s := drift.Compute(b)
		same(seed, plan.MakeWith(s, plan.Options{}), other(s, plan.Options{}))

		r = rand.New(rand.NewPCG(uint64(seed), 42))
		var rt *rand.Rand
		if seed%3 == 2 {
			rt = rand.New(rand.NewPCG(uint64(seed), 7))
		}
		g := generate(r, rt)
		b = book(t, g.policy, g.holdings, g.prices)
		s = drift.Compute(b)
		o := plan.Options{History: g.history}
		same(seed, plan.MakeWith(s, o), other(s, o))
	}
	if trades < compared/2 {
		t.Fatalf("only %d of %d plans trade: the comparison would not exercise the polish", trades, compared)
	}
	t.Logf("%d plans compared, %d with orders", compared, trades)
}
