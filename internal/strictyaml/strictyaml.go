// Package strictyaml reads hand-edited YAML files strictly and reports every
// problem at once, each with the file, line and dotted field path it concerns.
//
// It parses with go.yaml.in/yaml/v3 and walks the resulting yaml.Node tree
// instead of decoding into structs: yaml/v3's KnownFields checking does not
// apply to Node.Decode, stops at type boundaries, and names Go types in its
// messages, while a walk over the nodes can report unknown and duplicate keys,
// missing required fields and malformed values for the user's own field names,
// all in one pass. Numbers are read from the scalar text, never through
// float64, so money is exact.
package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/shopspring/decimal"
	"go.yaml.in/yaml/v3"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
)

// MaxFileSize is the largest YAML file the readers accept, in bytes. Policy,
// holdings and price files are small; a larger input is a mistake or an attack.
const MaxFileSize = 1 << 20

// Error is one problem found in a file.
type Error struct {
	File  string // file name as given by the caller
	Line  int    // 1-based line, 0 when unknown
	Field string // dotted path of the field, e.g. "targets.crypto.weight"
	Msg   string
}

// Error formats the problem as "file:line: field: message".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is a list of problems; it is an error when not empty.
type Errors []*Error

// Error joins the problems, one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Err returns es as an error, or nil when it holds no problem. The problems
// are sorted by file and line so that output is stable.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].File != es[j].File {
			return es[i].File < es[j].File
		}
		return es[i].Line < es[j].Line
	})
	return es
}

// AsErrors returns the problems carried by err: the list itself when err is
// (or wraps) Errors, otherwise a single problem with err's text.
func AsErrors(err error) Errors {
	if err == nil {
		return nil
	}
	var es Errors
	if errors.As(err, &es) {
		return es
	}
	var e *Error
	if errors.As(err, &e) {
		return Errors{e}
	}
	return Errors{{Msg: err.Error()}}
}

// Entry is one key and value of a mapping, in file order.
type Entry struct {
	Key string
	KeyNode,
	Value *yaml.Node
}

// Reader walks one file's nodes and collects problems.
type Reader struct {
	File string
	Errs Errors

	lines int // the file's line count once Parse has seen it, else 0
}

// Errorf records a problem at node n (which may be nil) for the given field.
func (r *Reader) Errorf(n *yaml.Node, field, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	r.ErrorfLine(line, field, format, args...)
}

// ErrorfLine records a problem at the given line (0 when unknown).
//
// Problems quote at most a short excerpt of the file: a string argument
// formatted with %q is shown as Excerpt shows it, and a message is cut at
// maxMsgLen bytes. A file that is not what the reader expects (a password
// or key file given as a policy, say) must not end up in the log, /status
// and /readyz.
func (r *Reader) ErrorfLine(line int, field, format string, args ...any) {
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = excerptArg(s)
		}
	}
	msg := fmt.Sprintf(format, args...)
	if len(msg) > maxMsgLen {
		msg = strings.ToValidUTF8(msg[:maxMsgLen], "") + "…"
	}
	r.Errs = append(r.Errs, &Error{File: r.File, Line: r.clamp(line), Field: field, Msg: msg})
}

// maxMsgLen bounds the message of a problem, in bytes (the list of known
// fields of a policy's top level is about 250).
const maxMsgLen = 400

// excerptLen is how much of a value or key from a file a problem quotes,
// in bytes.
const excerptLen = 64

// Excerpt quotes the start of s, escaped as Go quotes strings: at most
// excerptLen bytes, with an ellipsis after it when s is longer.
func Excerpt(s string) string {
	if len(s) <= excerptLen {
		return strconv.Quote(s)
	}
	return strconv.Quote(strings.ToValidUTF8(s[:excerptLen], "")) + "…"
}

// excerptArg formats a string argument of a problem: as Excerpt with %q,
// as itself otherwise (the readers' own lists of known names).
type excerptArg string

func (a excerptArg) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		io.WriteString(f, Excerpt(string(a)))
		return
	}
	io.WriteString(f, string(a))
}

// clamp keeps a line within the file. yaml/v3 places an empty node at the
// end of the input (a document that is only "---", a key with no value on
// the last line) on the line after it, which the file may not have.
func (r *Reader) clamp(line int) int {
	if r.lines > 0 && line > r.lines {
		return r.lines
	}
	return line
}

var yamlLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// Parse parses data as a single YAML document whose top level is a mapping
// and returns that mapping. On failure it records the problem and returns nil.
func (r *Reader) Parse(data []byte) *yaml.Node {
	if len(data) > MaxFileSize {
		r.Errorf(nil, "", "file is %d bytes, larger than the limit of %d", len(data), MaxFileSize)
		return nil
	}
	r.lines = lineCount(data)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			r.Errorf(nil, "", "file is empty")
			return nil
		}
		r.syntaxError(err, data)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		if err != nil {
			r.syntaxError(err, data)
		} else {
			r.Errorf(&extra, "", "file holds more than one YAML document")
		}
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		r.Errorf(&doc, "", "file is empty")
		return nil
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" && root.Value == "" {
		r.Errorf(nil, "", "file is empty") // "---" and nothing else
		return nil
	}
	if root.Kind != yaml.MappingNode {
		r.Errorf(root, "", "top level must be a mapping of fields")
		return nil
	}
	return root
}

// parserProblems are the messages of yaml/v3's parser (as opposed to its
// scanner), whose line yaml/v3 reports counted from 0.
var parserProblems = []string{
	"did not find expected <stream-start>",
	"did not find expected <document start>",
	"did not find expected node content",
	"did not find expected key",
	"did not find expected '-' indicator",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found duplicate %TAG directive",
	"found undefined tag handle",
}

// readerProblems are the messages of yaml/v3's input reader, which come
// without a line: they concern a byte that is not valid UTF-8 or a character
// YAML does not allow.
var readerProblems = []string{
	"control characters are not allowed",
	"invalid leading UTF-8 octet",
	"incomplete UTF-8 octet sequence",
	"invalid trailing UTF-8 octet",
	"invalid length of a UTF-8 sequence",
	"invalid Unicode character",
}

func (r *Reader) syntaxError(err error, data []byte) {
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	// yaml/v3 counts lines from 0 internally. It adds 1 for the scanner's
	// problems but not for the parser's, and it omits the line when its
	// count is 0, so problems on the first line come without one. Reader
	// problems come without one wherever they are.
	switch {
	case line > 0 && contains(parserProblems, msg):
		line++
	case line > 0:
	case contains(readerProblems, msg):
		line = badCharLine(data)
	case strings.HasPrefix(msg, "unknown anchor"), strings.HasPrefix(msg, "attempted to go past"):
		// Raised outside the parser, with no position at all.
	default:
		line = 1
	}
	// At the end of the input, yaml/v3 counts one line more than the file
	// has when the last line has no line break; point at the last line.
	r.Errs = append(r.Errs, &Error{File: r.File, Line: r.clamp(line), Msg: "YAML syntax: " + msg})
}

// lineCount returns the number of lines of data: the line breaks (\n, \r\n
// or \r), plus one for a last line without a break.
func lineCount(data []byte) int {
	n := bytes.Count(data, []byte("\n")) + bytes.Count(data, []byte("\r")) - bytes.Count(data, []byte("\r\n"))
	if len(data) > 0 && data[len(data)-1] != '\n' && data[len(data)-1] != '\r' {
		n++
	}
	return n
}

// badCharLine returns the line of the first byte of data that is not valid
// UTF-8 or is a character YAML does not allow, or 0 when there is none.
func badCharLine(data []byte) int {
	if bytes.HasPrefix(data, []byte{0xFE, 0xFF}) || bytes.HasPrefix(data, []byte{0xFF, 0xFE}) {
		return 0 // UTF-16: the offsets below would not apply
	}
	line := 1
	for i := 0; i < len(data); {
		c, size := utf8.DecodeRune(data[i:])
		if c == utf8.RuneError && size <= 1 || !allowedChar(c) {
			return line
		}
		if c == '\n' || c == '\r' && (i+1 == len(data) || data[i+1] != '\n') {
			line++
		}
		i += size
	}
	return 0
}

// allowedChar reports whether YAML allows character c in a stream.
func allowedChar(c rune) bool {
	switch {
	case c == '\t', c == '\n', c == '\r', c >= 0x20 && c <= 0x7E, c == 0x85:
	case c >= 0xA0 && c <= 0xD7FF, c >= 0xE000 && c <= 0xFFFD, c >= 0x10000 && c <= 0x10FFFF:
	default:
		return false
	}
	return true
}

// Join returns the dotted path of key below field. A key longer than
// excerptLen bytes, or with a character that is not printable, a quote or
// a backslash, is shown as an Excerpt.
func Join(field, key string) string {
	if len(key) > excerptLen || strings.IndexFunc(key, func(c rune) bool { return !unicode.IsPrint(c) || c == '"' || c == '\\' }) >= 0 {
		key = Excerpt(key)
	}
	if field == "" {
		return key
	}
	return field + "." + key
}

// fieldName matches the keys that look like the readers' field names.
var fieldName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// usable reports whether n is a plain node the readers accept; aliases and
// anchors are refused so that a small file cannot expand into a huge tree.
func (r *Reader) usable(n *yaml.Node, field string) bool {
	if n == nil {
		r.Errorf(nil, field, "missing")
		return false
	}
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		r.Errorf(n, field, "YAML anchors and aliases are not supported")
		return false
	}
	return true
}

// Entries checks that n is a mapping with unique scalar keys and returns its
// entries in file order.
func (r *Reader) Entries(n *yaml.Node, field string) []Entry {
	if !r.usable(n, field) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		r.Errorf(n, field, "want a mapping, got %s", describe(n))
		return nil
	}
	out := make([]Entry, 0, len(n.Content)/2)
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value == "" || k.Value == "<<" {
			r.Errorf(k, field, "keys must be plain names")
			continue
		}
		if k.Anchor != "" {
			r.Errorf(k, Join(field, k.Value), "YAML anchors and aliases are not supported")
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			r.Errorf(k, Join(field, k.Value), "duplicate key (first defined at line %d)", prev)
			continue
		}
		seen[k.Value] = k.Line
		out = append(out, Entry{Key: k.Value, KeyNode: k, Value: v})
	}
	return out
}

// Object checks that n is a mapping whose keys are drawn from known, each
// at most once, and returns the value nodes by key. Unknown keys are
// reported with the list of known ones.
func (r *Reader) Object(n *yaml.Node, field string, known ...string) map[string]*yaml.Node {
	entries := r.Entries(n, field)
	out := make(map[string]*yaml.Node, len(entries))
	if field == "" && !slices.ContainsFunc(entries, func(e Entry) bool { return contains(known, e.Key) }) &&
		slices.ContainsFunc(entries, func(e Entry) bool { return !fieldName.MatchString(e.Key) }) {
		// None of the file's keys is known and some are not even names:
		// it is not a file of this kind at all (a password file given as
		// a policy). Say so without quoting any of it.
		r.Errorf(nil, "", "none of the %d top-level keys is a known field (known: %s): not a file of this kind", len(entries), strings.Join(known, ", "))
		return out
	}
	for _, e := range entries {
		if !contains(known, e.Key) {
			r.Errorf(e.KeyNode, Join(field, e.Key), "unknown field (known: %s)", strings.Join(known, ", "))
			continue
		}
		out[e.Key] = e.Value
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Scalar returns the text of a scalar node. Null values (`~`, empty) count
// as missing.
func (r *Reader) Scalar(n *yaml.Node, field string) (string, bool) {
	if !r.usable(n, field) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		r.Errorf(n, field, "want a single value, got %s", describe(n))
		return "", false
	}
	if n.Tag == "!!null" {
		r.Errorf(n, field, "missing value")
		return "", false
	}
	return n.Value, true
}

// String reads a non-empty string.
func (r *Reader) String(n *yaml.Node, field string) (string, bool) {
	s, ok := r.Scalar(n, field)
	if !ok {
		return "", false
	}
	if n.Tag != "!!str" {
		r.Errorf(n, field, "want a string, got %s", describe(n))
		return "", false
	}
	if strings.TrimSpace(s) == "" {
		r.Errorf(n, field, "must not be empty")
		return "", false
	}
	return s, true
}

// ParseDecimal is decimaltext.Parse: plain decimal text of at most
// decimaltext.MaxLen characters, without an exponent.
func ParseDecimal(s string) (decimal.Decimal, error) { return decimaltext.Parse(s) }

// Decimal reads a number written as a YAML number or a string ("50", 50,
// "0.0001"), exactly.
func (r *Reader) Decimal(n *yaml.Node, field string) (decimal.Decimal, bool) {
	s, ok := r.Scalar(n, field)
	if !ok {
		return decimal.Decimal{}, false
	}
	switch n.Tag {
	case "!!str", "!!int", "!!float":
	default:
		r.Errorf(n, field, "want a number, got %s", describe(n))
		return decimal.Decimal{}, false
	}
	d, err := decimaltext.Parse(strings.TrimSpace(s))
	if err != nil {
		r.Errorf(n, field, "%v", err)
		return decimal.Decimal{}, false
	}
	return d, true
}

// NonNegative reads a decimal that must be zero or more.
func (r *Reader) NonNegative(n *yaml.Node, field string) (decimal.Decimal, bool) {
	d, ok := r.Decimal(n, field)
	if ok && d.Sign() < 0 {
		r.Errorf(n, field, "must not be negative, got %s", d)
		return decimal.Decimal{}, false
	}
	return d, ok
}

// ParsePercent parses "55%" or "-1.5%" into the fraction it denotes (0.55,
// -0.015), exactly.
func ParsePercent(s string) (decimal.Decimal, error) {
	t := strings.TrimSpace(s)
	if !strings.HasSuffix(t, "%") {
		return decimal.Decimal{}, fmt.Errorf("%q is not a percentage; write it like 55%%", s)
	}
	d, err := decimaltext.Parse(strings.TrimSpace(strings.TrimSuffix(t, "%")))
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("%q is not a percentage; write it like 55%%", s)
	}
	return d.Shift(-2), nil
}

// Percent reads a percentage such as `55%` as a fraction (0.55). With
// bounded set, the fraction must lie in [0, 1].
func (r *Reader) Percent(n *yaml.Node, field string, bounded bool) (decimal.Decimal, bool) {
	s, ok := r.Scalar(n, field)
	if !ok {
		return decimal.Decimal{}, false
	}
	d, err := ParsePercent(s)
	if err != nil {
		r.Errorf(n, field, "%v", err)
		return decimal.Decimal{}, false
	}
	if bounded && (d.Sign() < 0 || d.GreaterThan(decimal.NewFromInt(1))) {
		r.Errorf(n, field, "must be between 0%% and 100%%, got %s", s)
		return decimal.Decimal{}, false
	}
	return d, true
}

// Time reads an RFC 3339 timestamp (2026-11-20T21:00:00Z).
func (r *Reader) Time(n *yaml.Node, field string) (time.Time, bool) {
	s, ok := r.Scalar(n, field)
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
	if err != nil {
		r.Errorf(n, field, "want an RFC 3339 time like 2026-11-20T21:00:00Z, got %q", s)
		return time.Time{}, false
	}
	return t, true
}

// Duration reads a Go duration such as 5m or 1h30m; it must be positive.
func (r *Reader) Duration(n *yaml.Node, field string) (time.Duration, bool) {
	s, ok := r.Scalar(n, field)
	if !ok {
		return 0, false
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil || d <= 0 {
		r.Errorf(n, field, "want a positive duration like 5m or 1h, got %q", s)
		return 0, false
	}
	return d, true
}

// Sequence checks that n is a sequence and returns its items.
func (r *Reader) Sequence(n *yaml.Node, field string) []*yaml.Node {
	if !r.usable(n, field) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		r.Errorf(n, field, "want a list, got %s", describe(n))
		return nil
	}
	return n.Content
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "nothing"
		case "!!bool":
			return "a boolean " + strconv.Quote(n.Value)
		case "!!int", "!!float":
			return "the number " + n.Value
		}
		return Excerpt(n.Value)
	}
	return "an unsupported YAML node"
}
