package partition

import (
	"strconv"

	"fmt"
	"github.com/nats-io/nats-server/v2/server"
	"testing"
)

// TestOfIsStable pins the function: instances of different versions in
// one group must map every household to the same partition. The expected
// values are FNV-1a 32 of the name modulo n, computed independently
// (offset basis 2166136261, prime 16777619) and checked against
// nats-server's {{partition(64,1)}} subject mapping below.
func TestOfIsStable(t *testing.T) {
	for _, c := range []struct {
		name string
		n    int
		want int
	}{
		{"", 64, int(uint32(2166136261) % 64)},
		{"a", 64, int(uint32(0xe40c292c) % 64)},
		{"foobar", 1000, int(uint32(0xbf9cf968) % 1000)},
		{"household-00042", 1, 0},
		{"household-00042", 0, 0},
	} {
		if got := Of(c.name, c.n); got != c.want {
			t.Errorf("Of(%q, %d) = %d, want %d", c.name, c.n, got, c.want)
		}
	}
}

// TestOfSpreads checks that 3,000 generated names spread over 64
// partitions without an empty or a crowded one.
func TestOfSpreads(t *testing.T) {
	counts := make([]int, 64)
	for i := range 3000 {
		counts[Of(fmt.Sprintf("h%05d", i), 64)]++
	}
	for p, c := range counts {
		if c < 20 || c > 80 {
			t.Errorf("partition %d holds %d of 3,000 households (mean 47)", p, c)
		}
	}
}

func TestTarget(t *testing.T) {
	for _, c := range []struct{ n, live, want int }{{64, 3, 22}, {64, 2, 32}, {64, 1, 64}, {64, 0, 64}, {1, 3, 1}, {64, 64, 1}, {64, 100, 1}} {
		if got := Target(c.n, c.live); got != c.want {
			t.Errorf("Target(%d, %d) = %d, want %d", c.n, c.live, got, c.want)
		}
	}
}

// TestOfMatchesNATSMapping checks that Of is nats-server's
// {{partition(n,1)}} subject mapping over the household's token.
func TestOfMatchesNATSMapping(t *testing.T) {
	for _, n := range []int{2, 7, 64, 1024} {
		tr, err := server.NewSubjectTransform("h.*", fmt.Sprintf("{{partition(%d,1)}}", n))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 500 {
			name := fmt.Sprintf("household-%d", i*7919)
			got, err := tr.Match("h." + name)
			if err != nil {
				t.Fatal(err)
			}
			if want := strconv.Itoa(Of(name, n)); got != want {
				t.Fatalf("%s among %d: nats-server maps it to %s, Of to %s", name, n, got, want)
			}
		}
	}
}
