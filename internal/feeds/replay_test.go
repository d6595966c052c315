package feeds

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReplayServesStepsStampedNow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replay.yaml")
	data := "steps:\n  - {VTI: \"100\", BND: \"50.5\"}\n  - {VTI: \"101.25\"}\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
	f, err := NewReplayFetcher(path, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"BND=50.5,VTI=100", "VTI=101.25", "VTI=101.25"} // the last step repeats
	for i, w := range want {
		qs, err := f.Fetch(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, q := range qs {
			if !q.At.Equal(now) {
				t.Errorf("step %d: %s stamped %v, want %v", i, q.Symbol, q.At, now)
			}
			got = append(got, q.Symbol+"="+q.Price.String())
		}
		if g := strings.Join(got, ","); g != w {
			t.Errorf("poll %d = %s, want %s", i, g, w)
		}
		now = now.Add(time.Minute)
	}
}

func TestReplayBadFiles(t *testing.T) {
	for _, tt := range []struct{ name, data, want string }{
		{"no_steps", "prices: {}\n", "no_steps.yaml:1: prices: unknown field"},
		{"bad_price", "steps:\n  - {VTI: \"-1\"}\n", "bad_price.yaml:2: steps[0].VTI:"},
		{"not_number", "steps:\n  - {VTI: abc}\n", `not_number.yaml:2: steps[0].VTI: "abc" is not a plain decimal number`},
		{"empty", "steps: []\n", "steps: no price set"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tt.name+".yaml")
			if err := os.WriteFile(path, []byte(tt.data), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := NewReplayFetcher(path, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
