package shortlist

import (
	"fmt"
	"slices"
	"testing"
)

func TestFirst(t *testing.T) {
	ids := make([]string, 5000)
	for i := range ids {
		ids[i] = fmt.Sprintf("o%d", i)
	}
	got := First(ids, Max)
	want := []string{"o0", "o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8", "o9", "… and 4990 more"}
	if !slices.Equal(got, want) {
		t.Errorf("First(5000 ids) = %q, want %q", got, want)
	}
	if ids[Max] != "o10" {
		t.Error("First changed its input")
	}
	if got := Join(ids[:3], Max, ", "); got != "o0, o1, o2" {
		t.Errorf("Join(3 ids) = %q", got)
	}
	if got := Join(ids[:12], 2, ", "); got != "o0, o1, … and 10 more" {
		t.Errorf("Join(12 ids, 2) = %q", got)
	}
}
