package plan

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
)

// TestSortOrders: sortOrders, which moves each order once, orders as a
// stable sort of the orders themselves by phase, account and instrument
// does, ties kept in their order, on random lists longer and shorter than
// its scratch on the stack.
func TestSortOrders(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		orders := make([]Order, r.IntN(80))
		for k := range orders {
			orders[k] = Order{ID: strconv.Itoa(k), Phase: 1 + r.IntN(2), account: r.IntN(3), instrument: r.IntN(4)}
		}
		want := slices.Clone(orders)
		slices.SortStableFunc(want, func(x, y Order) int {
			if x.Phase != y.Phase {
				return x.Phase - y.Phase
			}
			if x.account != y.account {
				return x.account - y.account
			}
			return x.instrument - y.instrument
		})
		sortOrders(orders)
		for k := range orders {
			if orders[k].ID != want[k].ID {
				t.Fatalf("%d orders: position %d holds order %s, want %s", len(orders), k, orders[k].ID, want[k].ID)
			}
		}
	}
}
