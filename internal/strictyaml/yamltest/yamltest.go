// Package yamltest holds test helpers for code that reports problems as
// strictyaml.Errors.
package yamltest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sort"
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

// CheckFailure checks the error of a failed parse of data: a sorted,
// non-empty strictyaml.Errors whose every entry names file and a line in it.
// Fuzz targets call it on every rejected input.
func CheckFailure(t testing.TB, err error, file string, data []byte) {
	t.Helper()
	var es strictyaml.Errors
	if !errors.As(err, &es) || len(es) == 0 {
		t.Fatalf("error %v (%T) is not a non-empty strictyaml.Errors", err, err)
	}
	// yaml/v3 counts \r, \n, NEL, LS and PS as line breaks.
	maxLine := 1
	for _, br := range []string{"\n", "\r", "\u0085", "\u2028", "\u2029"} {
		maxLine += bytes.Count(data, []byte(br))
	}
	lines := make([]int, len(es))
	for i, e := range es {
		if e.File != file || e.Line < 0 || e.Line > maxLine || e.Msg == "" {
			t.Fatalf("bad problem %q (file %q line %d of %d)", e.Error(), e.File, e.Line, maxLine)
		}
		lines[i] = e.Line
	}
	if !sort.IntsAreSorted(lines) {
		t.Fatalf("problems out of line order: %v", err)
	}
}

// BadFiles runs one subtest per file matching pattern: parse must fail on
// it with exactly the problems want lists for the file's base name (see
// Match). Every file needs an entry and every entry a file. parse gets the
// path, the base name and the content, and returns the error and whether
// it also returned a value (which it must not on failure).
func BadFiles(t *testing.T, pattern string, want map[string][]string, parse func(path, name string, data []byte) (err error, gotValue bool)) {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no files match %s: %v", pattern, err)
	}
	seen := map[string]bool{}
	for _, path := range files {
		name := filepath.Base(path)
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			w, ok := want[name]
			if !ok {
				t.Fatalf("no expected problems listed for %s", name)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			perr, gotValue := parse(path, name, data)
			if perr == nil {
				t.Fatalf("parse succeeded, want %d problems", len(w))
			}
			if gotValue {
				t.Error("parse returned a value with its error")
			}
			Match(t, Problems(t, perr, ""), w)
		})
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("the table lists %s, which is not in %s", name, filepath.Dir(pattern))
		}
	}
}
