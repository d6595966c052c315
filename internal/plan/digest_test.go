package plan_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"hash"
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
)

var planDigest = flag.String("plan-digest", "",
	`TestPlanDigest: the SHA-256 the drift and plans of -cases random households of each generator (default 10,000) must hash to; "print" prints it`)

// TestPlanDigest hashes what drift and the planner make of random
// households of both generators (the plan-quality households and the
// property households with tax lots and history): each drift snapshot's
// figures, the JSON of its plan (MakeWith, with the history of the household where it has one) and of the plan that invests a
// tenth of its value as new cash (Invest). A change meant to make drift or
// the planner faster, not different, shows that its plans are byte for
// byte those of the code before it by giving the same digest on both:
//
//	go test ./internal/plan -run TestPlanDigest -plan-digest print -cases 10000   # on the code before
//	go test ./internal/plan -run TestPlanDigest -plan-digest <that digest> -cases 10000
//
// Decimals are hashed as their text, as the JSON shows them: without
// trailing zeros, so a value the planner now keeps at another exponent
// (with fewer trailing zeros, as num and dec64 make some) hashes the same.
//
// Behind a flag: a digest of the plans of today's code could only be
// written into the test by hand, and every intended change of a plan
// would have to rewrite it.
func TestPlanDigest(t *testing.T) {
	if *planDigest == "" {
		t.Skip("run with -plan-digest print, or -plan-digest <sha256> to compare")
	}
	n := 10000
	if *cases > 0 {
		n = *cases
	}
	h := sha256.New()
	var plans, orders int
	add := func(b *portfolio.Book, o plan.Options) {
		s := drift.Compute(b)
		writeSnapshot(h, s)
		p := plan.MakeWith(s, o)
		writeJSON(t, h, p)
		cash := s.Total.Div(decimal.NewFromInt(10)).Round(2)
		writeJSON(t, h, plan.Invest(drift.Compute(plan.AddCash(b, 0, cash)), o))
		plans += 2
		orders += len(p.Orders)
	}
	for seed := 0; seed < n; seed++ {
		r := rand.New(rand.NewPCG(uint64(seed), 1111))
		pol, hold, prices := genHousehold(r)
		add(book(t, pol, hold, prices), plan.Options{})

		r = rand.New(rand.NewPCG(uint64(seed), 42))
		var rt *rand.Rand
		if seed%3 == 2 {
			rt = rand.New(rand.NewPCG(uint64(seed), 7))
		}
		g := generate(r, rt)
		add(book(t, g.policy, g.holdings, g.prices), plan.Options{History: g.history})
	}
	if orders == 0 {
		t.Fatal("no plan has an order: the digest would not cover the planner")
	}
	got := hex.EncodeToString(h.Sum(nil))
	t.Logf("%d households of each generator, %d plans, %d orders in Make's: sha256 %s", n, plans, orders, got)
	if *planDigest != "print" && got != *planDigest {
		t.Fatalf("digest %s, want %s: drift or the plans differ", got, *planDigest)
	}
}

// writeSnapshot writes every figure of a drift snapshot to h.
func writeSnapshot(h hash.Hash, s *drift.Snapshot) {
	fmt.Fprintf(h, "%s %s\n", s.AsOf, s.Total)
	for _, sl := range s.Sleeves {
		fmt.Fprintf(h, "%+v\n", sl)
	}
	fmt.Fprintf(h, "%v %v\n", s.Values, s.FreeCash)
}

// writeJSON writes v's JSON to h.
func writeJSON(t *testing.T, h hash.Hash, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	h.Write(append(data, '\n'))
}
