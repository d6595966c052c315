package strictyaml

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"go.yaml.in/yaml/v3"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
)

// lines returns the messages of r's problems, sorted like Errors.Err sorts
// them.
func lines(r *Reader) []string {
	es := AsErrors(r.Errs.Err())
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Error()
	}
	return out
}

func equalLines(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// value parses "v: <text>" and returns the reader and the value node.
func value(t *testing.T, text string) (*Reader, *yaml.Node) {
	t.Helper()
	r := &Reader{File: "v.yml"}
	root := r.Parse([]byte("v: " + text + "\n"))
	if root == nil {
		t.Fatalf("parse %q: %v", text, r.Errs)
	}
	return r, root.Content[1]
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{File: "p.yml", Line: 7, Field: "targets", Msg: "level sums to 105%, want 100%"}, "p.yml:7: targets: level sums to 105%, want 100%"},
		{Error{File: "p.yml", Line: 0, Field: "", Msg: "file is empty"}, "p.yml: file is empty"},
		{Error{File: "p.yml", Line: 3, Msg: "YAML syntax: x"}, "p.yml:3: YAML syntax: x"},
		{Error{File: "dir/p.yml", Field: "as_of", Msg: "required field is missing"}, "dir/p.yml: as_of: required field is missing"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestErrorsErr(t *testing.T) {
	if err := (Errors{}).Err(); err != nil {
		t.Errorf("empty Errors.Err() = %v, want nil", err)
	}
	if err := Errors(nil).Err(); err != nil {
		t.Errorf("nil Errors.Err() = %v, want nil", err)
	}
	es := Errors{
		{File: "b.yml", Line: 2, Msg: "b2"},
		{File: "a.yml", Line: 9, Msg: "a9"},
		{File: "b.yml", Line: 1, Msg: "b1 first"},
		{File: "a.yml", Line: 0, Msg: "a0"},
		{File: "b.yml", Line: 1, Msg: "b1 second"},
	}
	err := es.Err()
	want := "a.yml: a0\na.yml:9: a9\nb.yml:1: b1 first\nb.yml:1: b1 second\nb.yml:2: b2"
	if err == nil || err.Error() != want {
		t.Errorf("Err() =\n%v\nwant\n%s", err, want)
	}
}

func TestAsErrors(t *testing.T) {
	one := &Error{File: "f.yml", Line: 1, Msg: "one"}
	list := Errors{one, {File: "f.yml", Line: 2, Msg: "two"}}
	tests := []struct {
		name string
		err  error
		want []string
	}{
		{"nil", nil, nil},
		{"list", list, []string{"f.yml:1: one", "f.yml:2: two"}},
		{"wrapped list", fmt.Errorf("loading: %w", list), []string{"f.yml:1: one", "f.yml:2: two"}},
		{"single", one, []string{"f.yml:1: one"}},
		{"wrapped single", fmt.Errorf("x: %w", one), []string{"f.yml:1: one"}},
		{"other", errors.New("boom"), []string{": boom"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es := AsErrors(tt.err)
			if tt.want == nil {
				if es != nil {
					t.Fatalf("AsErrors = %v, want nil", es)
				}
				return
			}
			got := make([]string, len(es))
			for i, e := range es {
				got[i] = e.Error()
			}
			equalLines(t, got, tt.want)
		})
	}
}

func TestParse(t *testing.T) {
	big := "a: |\n  " + strings.Repeat("x", MaxFileSize) + "\n"
	atLimit := "a: " + strings.Repeat("x", MaxFileSize-4) + "\n"
	tests := []struct {
		name string
		in   string
		want []string // problems; none means the root must be returned
	}{
		{"mapping", "a: 1\nb: [x]\n", nil},
		{"document end marker", "a: 1\n...\n", nil},
		{"explicit document start", "---\na: 1\n", nil},
		{"at the size limit", atLimit, nil},
		{"empty", "", []string{"f.yml: file is empty"}},
		{"comments only", "# nothing\n\n# here\n", []string{"f.yml: file is empty"}},
		{"over the size limit", big, []string{fmt.Sprintf("f.yml: file is %d bytes, larger than the limit of %d", len(big), MaxFileSize)}},
		{"only a document marker", "---", []string{"f.yml: file is empty"}},
		{"only document markers", "# c\n---\n...\n", []string{"f.yml: file is empty"}},
		{"explicit null", "--- ~\n", []string{"f.yml:1: top level must be a mapping of fields"}},
		{"two documents", "a: 1\n---\nb: 2\n", []string{"f.yml:2: file holds more than one YAML document"}},
		{"empty second document", "a: 1\nb: 2\n---\n", []string{"f.yml:3: file holds more than one YAML document"}},
		{"syntax error in second document", "a: 1\n---\n[\n", []string{"f.yml:3: YAML syntax: did not find expected node content"}},
		{"top-level list", "# c\n- a\n- b\n", []string{"f.yml:2: top level must be a mapping of fields"}},
		{"top-level scalar", "hello\n", []string{"f.yml:1: top level must be a mapping of fields"}},
		// Scanner problems: yaml/v3 gives the line, except on line 1.
		{"scanner error", "a: 1\nb: c: d\n", []string{"f.yml:2: YAML syntax: mapping values are not allowed in this context"}},
		{"scanner error on line 1", "a: b: c\n", []string{"f.yml:1: YAML syntax: mapping values are not allowed in this context"}},
		{"tab indentation", "a: 1\n\tb: 2\n", []string{"f.yml:2: YAML syntax: found a tab character that violates indentation"}},
		{"unterminated string", "a: 1\nb: \"x\n", []string{"f.yml:2: YAML syntax: found unexpected end of stream"}},
		// Parser problems: yaml/v3 reports them one line early.
		{"unclosed flow mapping", "a: 1\nb: 2\nc: {x: 1\n", []string{"f.yml:3: YAML syntax: did not find expected ',' or '}'"}},
		{"unclosed flow sequence", "a: 1\nb: 2\nc: [1, 2\nd: 3\n", []string{"f.yml:3: YAML syntax: did not find expected ',' or ']'"}},
		{"list item in mapping", "a: 1\nb: 2\n- c\n", []string{"f.yml:3: YAML syntax: did not find expected key"}},
		{"undefined tag handle", "a: 1\nb: !x!y 2\n", []string{"f.yml:2: YAML syntax: found undefined tag handle"}},
		{"parser error on line 1", "a: !x!y 2\nb: 1\n", []string{"f.yml:1: YAML syntax: found undefined tag handle"}},
		// At the end of the file yaml/v3 counts a line more; the problem is
		// reported on the last line.
		{"parser error at the end", "a: [\n", []string{"f.yml:1: YAML syntax: did not find expected node content"}},
		{"at the end without a line break", "{", []string{"f.yml:1: YAML syntax: did not find expected node content"}},
		{"at the end after blank lines", "a: 1\nb: [\n\n\n", []string{"f.yml:4: YAML syntax: did not find expected node content"}},
		{"scanner error at the end", "a: 1\nb: \"x", []string{"f.yml:2: YAML syntax: found unexpected end of stream"}},
		// Reader problems: yaml/v3 gives no line at all.
		{"control character", "a: 1\nb: 2\nc: x\x01y\n", []string{"f.yml:3: YAML syntax: control characters are not allowed"}},
		{"invalid UTF-8", "a: 1\r\nb: \xff\n", []string{"f.yml:2: YAML syntax: invalid leading UTF-8 octet"}},
		{"unknown anchor", "a: 1\nb: *x\n", []string{"f.yml: YAML syntax: unknown anchor 'x' referenced"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Reader{File: "f.yml"}
			root := r.Parse([]byte(tt.in))
			equalLines(t, lines(r), tt.want)
			if (root != nil) != (tt.want == nil) {
				t.Errorf("root returned: %v, want %v", root != nil, tt.want == nil)
			}
		})
	}
}

func TestLineCount(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"", 0},
		{"a", 1},
		{"a\n", 1},
		{"a\nb", 2},
		{"a\r\nb\r\n", 2},
		{"a\rb\rc", 3},
		{"\n\n", 2},
	}
	for _, tt := range tests {
		if got := lineCount([]byte(tt.in)); got != tt.want {
			t.Errorf("lineCount(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestBadCharLine(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"a: 1\n", 0},
		{"\x00", 1},
		{"a\nb\nc\x7f", 3},
		{"a\r\nb\rc\x08", 3},
		{"a: é ✓ 😀\nb: \xc3", 2},
		{"\ufeffa: 1\n\x1b", 2},
		{"\xff\xfea\x00", 0}, // UTF-16
	}
	for _, tt := range tests {
		if got := badCharLine([]byte(tt.in)); got != tt.want {
			t.Errorf("badCharLine(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestEntriesAndObject(t *testing.T) {
	tests := []struct {
		name string
		in   string
		keys []string // keys Object returns
		want []string
	}{
		{"known keys", "m: {a: 1, b: 2}\n", []string{"a", "b"}, nil},
		{"unknown key", "m:\n  a: 1\n  c: 2\n", []string{"a"}, []string{"f.yml:3: m.c: unknown field (known: a, b)"}},
		{"duplicate key", "m:\n  a: 1\n  b: 2\n  a: 3\n", []string{"a", "b"}, []string{"f.yml:4: m.a: duplicate key (first defined at line 2)"}},
		{"not a mapping", "m: [a, b]\n", nil, []string{"f.yml:1: m: want a mapping, got a list"}},
		{"null", "m:\n", nil, []string{"f.yml:1: m: want a mapping, got nothing"}},
		{"anchored mapping", "m: &x {a: 1}\n", nil, []string{"f.yml:1: m: YAML anchors and aliases are not supported"}},
		{"alias", "x: &x {a: 1}\nm: *x\n", nil, []string{"f.yml:2: m: YAML anchors and aliases are not supported"}},
		{"anchored key", "m: {&k a: 1, b: 2}\n", []string{"b"}, []string{"f.yml:1: m.a: YAML anchors and aliases are not supported"}},
		{"merge key", "m:\n  <<: {a: 1}\n  b: 2\n", []string{"b"}, []string{"f.yml:2: m: keys must be plain names"}},
		{"complex key", "m:\n  ? [a]\n  : 1\n", nil, []string{"f.yml:2: m: keys must be plain names"}},
		{"empty key", "m: {\"\": 1}\n", nil, []string{"f.yml:1: m: keys must be plain names"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Reader{File: "f.yml"}
			root := r.Parse([]byte(tt.in))
			if root == nil {
				t.Fatalf("parse: %v", r.Errs)
			}
			var m *yaml.Node
			for i := 0; i+1 < len(root.Content); i += 2 {
				if root.Content[i].Value == "m" {
					m = root.Content[i+1]
				}
			}
			f := r.Object(m, "m", "a", "b")
			var keys []string
			for _, k := range []string{"a", "b"} {
				if _, ok := f[k]; ok {
					keys = append(keys, k)
				}
			}
			if strings.Join(keys, ",") != strings.Join(tt.keys, ",") {
				t.Errorf("Object keys = %v, want %v", keys, tt.keys)
			}
			equalLines(t, lines(r), tt.want)
		})
	}
}

// TestLineClamped checks that no problem points past the end of the file:
// yaml/v3 puts an empty value at the end of the input on the next line.
func TestLineClamped(t *testing.T) {
	for _, in := range []string{"a: 1\n? b", "a: 1\n? b\n"} {
		r := &Reader{File: "f.yml"}
		root := r.Parse([]byte(in))
		if root == nil || len(root.Content) != 4 {
			t.Fatalf("parse %q: %v", in, r.Errs)
		}
		r.Scalar(root.Content[3], "b")
		equalLines(t, lines(r), []string{"f.yml:2: b: missing value"})
	}
}

func TestEntriesOrder(t *testing.T) {
	r, n := value(t, "{z: 1, a: 2, m: 3}")
	var got []string
	for _, e := range r.Entries(n, "v") {
		got = append(got, fmt.Sprintf("%s=%s@%d", e.Key, e.Value.Value, e.KeyNode.Line))
	}
	if want := "z=1@1 a=2@1 m=3@1"; strings.Join(got, " ") != want {
		t.Errorf("Entries = %v, want %s", got, want)
	}
	if r.Entries(nil, "x") != nil || len(r.Errs) != 1 || r.Errs[0].Error() != "v.yml: x: missing" {
		t.Errorf("Entries(nil) problems = %v", r.Errs)
	}
}

func TestStringAndScalar(t *testing.T) {
	tests := []struct {
		in   string
		want string // value, or the problem
		ok   bool
	}{
		{"hello", "hello", true},
		{"\"quoted\"", "quoted", true},
		{"'42'", "42", true},
		{"42", "v.yml:1: v: want a string, got the number 42", false},
		{"1.5", "v.yml:1: v: want a string, got the number 1.5", false},
		{"true", "v.yml:1: v: want a string, got a boolean \"true\"", false},
		{"~", "v.yml:1: v: missing value", false},
		{"", "v.yml:1: v: missing value", false},
		{"\"  \"", "v.yml:1: v: must not be empty", false},
		{"[a]", "v.yml:1: v: want a single value, got a list", false},
		{"{a: 1}", "v.yml:1: v: want a single value, got a mapping", false},
		{"&a x", "v.yml:1: v: YAML anchors and aliases are not supported", false},
	}
	for _, tt := range tests {
		r, n := value(t, tt.in)
		got, ok := r.String(n, "v")
		if ok != tt.ok {
			t.Errorf("String(%q) ok = %v, want %v (problems %v)", tt.in, ok, tt.ok, r.Errs)
			continue
		}
		if ok {
			if got != tt.want || len(r.Errs) != 0 {
				t.Errorf("String(%q) = %q, %v; want %q", tt.in, got, r.Errs, tt.want)
			}
			continue
		}
		equalLines(t, lines(r), []string{tt.want})
	}
}

func TestDecimalExact(t *testing.T) {
	must := func(s string) decimal.Decimal {
		d, err := decimaltext.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if sum := must("0.1").Add(must("0.2")); !sum.Equal(must("0.3")) {
		t.Errorf("0.1 + 0.2 = %s, want exactly 0.3", sum)
	}
	// A YAML float, unquoted, keeps every digit: the reader uses the text.
	for _, text := range []string{"1234567890.123456789", "\"1234567890.123456789\""} {
		r, n := value(t, text)
		d, ok := r.Decimal(n, "v")
		if !ok || d.String() != "1234567890.123456789" {
			t.Errorf("Decimal(%s) = %s, %v (%v); want 1234567890.123456789 exactly", text, d, ok, r.Errs)
		}
	}
	p, err := ParsePercent("33.3333333333333333333%")
	if err != nil || p.String() != "0.333333333333333333333" {
		t.Errorf("ParsePercent = %s, %v; want 0.333333333333333333333", p, err)
	}
}

func TestReaderDecimal(t *testing.T) {
	tests := []struct {
		in, want string
		nonNeg   bool
	}{
		{"50", "50", false},
		{"\"50\"", "50", false},
		{"'0.0001'", "0.0001", false},
		{"-1.5", "-1.5", false},
		{" \" 7 \"", "7", false},
		{"1e5", `v.yml:1: v: "1e5" is not a plain decimal number`, false},
		{".inf", `v.yml:1: v: ".inf" is not a plain decimal number`, false},
		{"true", `v.yml:1: v: want a number, got a boolean "true"`, false},
		{"2026-11-20", `v.yml:1: v: want a number, got "2026-11-20"`, false},
		{"!!binary aGk=", `v.yml:1: v: want a number, got "aGk="`, false},
		{"~", "v.yml:1: v: missing value", false},
		{"[1]", "v.yml:1: v: want a single value, got a list", false},
		{"0", "0", true},
		{"-0", "0", true},
		{"-0.01", "v.yml:1: v: must not be negative, got -0.01", true},
	}
	for _, tt := range tests {
		r, n := value(t, tt.in)
		var d decimal.Decimal
		var ok bool
		if tt.nonNeg {
			d, ok = r.NonNegative(n, "v")
		} else {
			d, ok = r.Decimal(n, "v")
		}
		got := d.String()
		if !ok {
			got = strings.Join(lines(r), "\n")
		} else if len(r.Errs) != 0 {
			t.Errorf("%q: ok with problems %v", tt.in, r.Errs)
		}
		if got != tt.want {
			t.Errorf("Decimal(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestParsePercent(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"55%", "0.55"},
		{"5%", "0.05"},
		{"0%", "0"},
		{"100%", "1"},
		{"-1.5%", "-0.015"},
		{"0.0067%", "0.000067"},
		{" 12.5 % ", "0.125"},
		{"150%", "1.5"},
		{"55", `"55" is not a percentage; write it like 55%`},
		{"0.55", `"0.55" is not a percentage; write it like 55%`},
		{"%", `"%" is not a percentage; write it like 55%`},
		{"abc%", `"abc%" is not a percentage; write it like 55%`},
		{"1e1%", `"1e1%" is not a percentage; write it like 55%`},
		{"NaN%", `"NaN%" is not a percentage; write it like 55%`},
		{"5%%", `"5%%" is not a percentage; write it like 55%`},
		{"", `"" is not a percentage; write it like 55%`},
	}
	for _, tt := range tests {
		d, err := ParsePercent(tt.in)
		got := d.String()
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("ParsePercent(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestReaderPercent(t *testing.T) {
	tests := []struct {
		in      string
		bounded bool
		want    string
	}{
		{"55%", true, "0.55"},
		{"0%", true, "0"},
		{"100%", true, "1"},
		{"\"7.5%\"", true, "0.075"},
		{"100.01%", true, "v.yml:1: v: must be between 0% and 100%, got 100.01%"},
		{"-1%", true, "v.yml:1: v: must be between 0% and 100%, got -1%"},
		{"150%", false, "1.5"},
		{"-1%", false, "-0.01"},
		{"55", true, `v.yml:1: v: "55" is not a percentage; write it like 55%`},
		{"~", true, "v.yml:1: v: missing value"},
	}
	for _, tt := range tests {
		r, n := value(t, tt.in)
		d, ok := r.Percent(n, "v", tt.bounded)
		got := d.String()
		if !ok {
			got = strings.Join(lines(r), "\n")
		}
		if got != tt.want {
			t.Errorf("Percent(%q, %v) = %s, want %s", tt.in, tt.bounded, got, tt.want)
		}
	}
}

func TestReaderTime(t *testing.T) {
	tests := []struct {
		in   string
		want string // UTC time, or the problem
	}{
		{"2026-11-20T21:00:00Z", "2026-11-20T21:00:00Z"},
		{"2026-11-20T16:00:00-05:00", "2026-11-20T21:00:00Z"},
		{"\"2026-11-20T21:00:00.123456789Z\"", "2026-11-20T21:00:00.123456789Z"},
		{"2026-11-20", `v.yml:1: v: want an RFC 3339 time like 2026-11-20T21:00:00Z, got "2026-11-20"`},
		{"2026-11-20 21:00:00", `v.yml:1: v: want an RFC 3339 time like 2026-11-20T21:00:00Z, got "2026-11-20 21:00:00"`},
		{"2026-11-20T21:00:00", `v.yml:1: v: want an RFC 3339 time like 2026-11-20T21:00:00Z, got "2026-11-20T21:00:00"`},
		{"2026-02-30T21:00:00Z", `v.yml:1: v: want an RFC 3339 time like 2026-11-20T21:00:00Z, got "2026-02-30T21:00:00Z"`},
		{"1764000000", `v.yml:1: v: want an RFC 3339 time like 2026-11-20T21:00:00Z, got "1764000000"`},
		{"~", "v.yml:1: v: missing value"},
	}
	for _, tt := range tests {
		r, n := value(t, tt.in)
		tm, ok := r.Time(n, "v")
		got := tm.UTC().Format(time.RFC3339Nano)
		if !ok {
			got = strings.Join(lines(r), "\n")
		}
		if got != tt.want {
			t.Errorf("Time(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestReaderDuration(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"5m", "5m0s"},
		{"1h30m", "1h30m0s"},
		{"\"90s\"", "1m30s"},
		{"0s", `v.yml:1: v: want a positive duration like 5m or 1h, got "0s"`},
		{"-5m", `v.yml:1: v: want a positive duration like 5m or 1h, got "-5m"`},
		{"5", `v.yml:1: v: want a positive duration like 5m or 1h, got "5"`},
		{"5 minutes", `v.yml:1: v: want a positive duration like 5m or 1h, got "5 minutes"`},
		{"1d", `v.yml:1: v: want a positive duration like 5m or 1h, got "1d"`},
	}
	for _, tt := range tests {
		r, n := value(t, tt.in)
		d, ok := r.Duration(n, "v")
		got := d.String()
		if !ok {
			got = strings.Join(lines(r), "\n")
		}
		if got != tt.want {
			t.Errorf("Duration(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestReaderSequence(t *testing.T) {
	tests := []struct {
		in   string
		want string // item values, or the problem
	}{
		{"[a, b]", "a b"},
		{"[]", ""},
		{"\n  - x\n  - y", "x y"},
		{"a", `v.yml:1: v: want a list, got "a"`},
		{"{a: 1}", "v.yml:1: v: want a list, got a mapping"},
		{"~", "v.yml:1: v: want a list, got nothing"},
		{"&l [a]", "v.yml:1: v: YAML anchors and aliases are not supported"},
	}
	for _, tt := range tests {
		r, n := value(t, tt.in)
		items := r.Sequence(n, "v")
		var vals []string
		for _, it := range items {
			vals = append(vals, it.Value)
		}
		got := strings.Join(vals, " ")
		if len(r.Errs) > 0 {
			got = strings.Join(lines(r), "\n")
		}
		if got != tt.want {
			t.Errorf("Sequence(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestJoin(t *testing.T) {
	if got := Join("", "a"); got != "a" {
		t.Errorf("Join(\"\", a) = %q", got)
	}
	if got := Join("a.b", "c"); got != "a.b.c" {
		t.Errorf("Join(a.b, c) = %q", got)
	}
}

// FuzzParsePercent checks that ParsePercent never panics and that an
// accepted percentage is the number before the sign, divided by 100.
func FuzzParsePercent(f *testing.F) {
	for _, s := range []string{"55%", "-1.5%", " 12.5 % ", "55", "%", "1e1%", "NaN%", "100%", "0.0067%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePercent(s)
		if err != nil {
			return
		}
		num, ok := strings.CutSuffix(strings.TrimSpace(s), "%")
		if !ok {
			t.Fatalf("accepted %q without a %% sign", s)
		}
		d, err := decimaltext.Parse(strings.TrimSpace(num))
		if err != nil {
			t.Fatalf("accepted %q, but its number does not parse: %v", s, err)
		}
		if !p.Mul(decimal.NewFromInt(100)).Equal(d) {
			t.Fatalf("%q -> %s, want %s/100", s, p, d)
		}
	})
}

// TestExcerpts: problems quote at most a short, escaped excerpt of a file
// that parsed as YAML: values formatted with %q, keys in field paths, and
// the whole message are bounded; a top level none of whose keys is even a
// name is reported without quoting any of it.
func TestExcerpts(t *testing.T) {
	secret := strings.Repeat("S3CRET", 30) // 180 bytes
	r := &Reader{File: "p.yaml"}
	r.ErrorfLine(1, "currency", "%q is not a currency code (known: %s)", secret+"\x00", "USD, EUR")
	r.ErrorfLine(2, Join("accounts", "\x1b[31m"+secret), "unknown field")
	r.ErrorfLine(3, "x", "%v", errors.New(secret+secret+secret))
	got := lines(r)
	want := []string{
		`p.yaml:1: currency: "` + secret[:64] + `"… is not a currency code (known: USD, EUR)`,
		`p.yaml:2: accounts."\x1b[31m` + secret[:59] + `"…: unknown field`,
		"p.yaml:3: x: " + (secret + secret + secret)[:maxMsgLen] + "…",
	}
	equalLines(t, got, want)

	r = &Reader{File: "shadow"}
	root := r.Parse([]byte("root:$6$salt$" + secret + ":19000:0:99999:7:::\nsvc: x\n"))
	r.Object(root, "", "policy", "currency")
	equalLines(t, lines(r), []string{"shadow: none of the 2 top-level keys is a known field (known: policy, currency): not a file of this kind"})
}
