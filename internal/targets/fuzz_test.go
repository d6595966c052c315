package targets_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/targets"
)

// FuzzEffective checks that, for every policy Parse accepts and any date,
// Effective never panics, fails only for a date before the investor's
// birth, and keeps the invariants of a parsed policy.
func FuzzEffective(f *testing.F) {
	seeds, _ := filepath.Glob("../policy/testdata/*.good.yml")
	seeds = append(seeds, glideExample, handPath, examplePath)
	for _, path := range seeds {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, int64(20000))
	}
	f.Fuzz(func(t *testing.T, data []byte, days int64) {
		p, err := policy.Parse("fuzz.yml", data)
		if err != nil {
			return
		}
		at := time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(days%100000) * 24 * time.Hour)
		q, _, err := targets.Effective(p, at)
		if err != nil {
			if len(p.GlidePath) == 0 || !strings.Contains(err.Error(), "before the investor's birth date") {
				t.Fatalf("Effective: %v", err)
			}
			return
		}
		checkEffective(t, p, q)
	})
}
