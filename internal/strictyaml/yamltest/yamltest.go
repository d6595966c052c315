// Package yamltest holds test helpers for code that reports problems as
// strictyaml.Errors.
package yamltest

import (
	"errors"
	"strings"
	"testing"

	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// Problems returns err's problems, one "file:line: field: msg" each, after
// checking that err is a non-empty strictyaml.Errors. When file is not
// empty, every problem must name it.
func Problems(t testing.TB, err error, file string) []string {
	t.Helper()
	var es strictyaml.Errors
	if !errors.As(err, &es) || len(es) == 0 {
		t.Fatalf("error %v (%T) is not a non-empty strictyaml.Errors", err, err)
	}
	out := make([]string, len(es))
	for i, e := range es {
		if file != "" && e.File != file {
			t.Errorf("problem %q names file %q, want %q", e.Error(), e.File, file)
		}
		out[i] = e.Error()
	}
	return out
}

// Match checks that got holds exactly one problem per want, in order, each
// starting with its want: the whole "file:line: field: " prefix and the
// message or its beginning.
func Match(t testing.TB, got, want []string) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = strings.HasPrefix(got[i], want[i])
	}
	if !ok {
		t.Errorf("got %d problems:\n  %s\nwant %d:\n  %s", len(got), strings.Join(got, "\n  "), len(want), strings.Join(want, "\n  "))
	}
}
