package plan

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSortByKey: sortByKey orders as slices.SortStableFunc by the keys
// does, ties kept in their order, on random keys with many ties.
func TestSortByKey(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 60; n++ {
		key := make([]int, n)
		for k := range key {
			key[k] = r.IntN(4)
		}
		got, want := make([]int, n), make([]int, n)
		for k := range got {
			got[k] = n - 1 - k // not in order of position either
			want[k] = got[k]
		}
		sortByKey(got, key)
		slices.SortStableFunc(want, func(x, y int) int { return key[x] - key[y] })
		if !slices.Equal(got, want) {
			t.Fatalf("keys %v: sortByKey %v, want %v", key, got, want)
		}
	}
}
