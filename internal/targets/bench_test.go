package targets_test

import (
	"testing"

	"github.com/rebalancerd/rebalancerd/internal/targets"
)

// BenchmarkEffective computes the shipped glide path example's targets on
// a date between two rows with its tilt active: interpolation of both
// levels, one tilt, the version hash and the derived policy.
func BenchmarkEffective(b *testing.B) { benchEffective(b, glideExample) }

// BenchmarkEffectiveNoStrategy is the cost for a policy without a glide
// path or tilts: what every existing policy pays.
func BenchmarkEffectiveNoStrategy(b *testing.B) { benchEffective(b, examplePath) }

func benchEffective(b *testing.B, path string) {
	p := load(b, path)
	at := day("2026-11-20T21:00:00Z")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := targets.Effective(p, at); err != nil {
			b.Fatal(err)
		}
	}
}
