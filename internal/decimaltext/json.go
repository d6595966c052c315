package decimaltext

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/shopspring/decimal"
)

// Unmarshal decodes the JSON document data into v, as json.Unmarshal does,
// after checking that every value bound for a decimal.Decimal in v is
// text Parse accepts (a JSON string or number; null is left to the
// decoder). A document with a number that is too long or has an exponent
// is refused before any of its decimals is parsed.
//
// Fields are matched to keys as encoding/json matches them: by the json
// tag or the field name, exactly or else case-insensitively, through
// embedded structs, pointers, slices, arrays and maps. A type with its own
// UnmarshalJSON (other than decimal.Decimal) is not looked into: it must
// decode its decimals with Unmarshal itself.
func Unmarshal(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() && holdsDecimal(rv.Type().Elem()) && !passes(data, rv.Type().Elem()) {
		// The document is read as a stream of tokens, not decoded into a
		// map: a key that appears twice is checked both times, as the
		// decoder parses both. This finds the problem and where it is.
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := check(dec, rv.Type().Elem(), ""); err != nil {
			var numErr *numberError
			if errors.As(err, &numErr) {
				return err
			}
			return json.Unmarshal(data, v) // the decoder's own error
		}
	}
	return json.Unmarshal(data, v)
}

var (
	decimalType     = reflect.TypeFor[decimal.Decimal]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
)

// check reads the next value of dec, checking it along type t.
func check(dec *json.Decoder, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok := tok.(type) {
	case json.Delim:
		switch {
		case tok == '{' && t.Kind() == reflect.Struct && holdsDecimal(t):
			fields := structFields(t)
			for dec.More() {
				key, err := dec.Token()
				if err != nil {
					return err
				}
				k, _ := key.(string)
				if f, ok := matchField(fields, k); ok {
					err = check(dec, f.typ, join(path, k))
				} else {
					err = skip(dec)
				}
				if err != nil {
					return err
				}
			}
		case tok == '{' && t.Kind() == reflect.Map && holdsDecimal(t):
			for dec.More() {
				key, err := dec.Token()
				if err != nil {
					return err
				}
				k, _ := key.(string)
				if err := check(dec, t.Elem(), join(path, k)); err != nil {
					return err
				}
			}
		case tok == '[' && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && holdsDecimal(t):
			for i := 0; dec.More(); i++ {
				if err := check(dec, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		default:
			if err := skipRest(dec); err != nil {
				return err
			}
		}
		_, err := dec.Token() // the closing delimiter
		return err
	case string:
		if t == decimalType {
			return at(path, Check(tok))
		}
	case json.Number:
		if t == decimalType {
			return at(path, Check(string(tok)))
		}
	}
	return nil
}

// matchField finds the field for a key as encoding/json does: an exact
// match, else a case-insensitive one.
func matchField(fields []field, key string) (field, bool) {
	for _, f := range fields {
		if f.name == key {
			return f, true
		}
	}
	for _, f := range fields {
		if strings.EqualFold(f.name, key) {
			return f, true
		}
	}
	return field{}, false
}

// skip reads the next value of dec without looking at it.
func skip(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if _, ok := tok.(json.Delim); ok { // an opening one: values end with a closing one
		if err := skipRest(dec); err != nil {
			return err
		}
		_, err = dec.Token()
	}
	return err
}

// skipRest reads the values of an object or a list up to its closing
// delimiter, which it leaves.
func skipRest(dec *json.Decoder) error {
	for dec.More() {
		if err := skip(dec); err != nil { // keys are skipped as values
			return err
		}
	}
	return nil
}

func at(path string, err error) error {
	if err == nil {
		return nil
	}
	return &numberError{msg: where(path) + ": " + err.Error(), err: errors.Unwrap(err)}
}

func join(path, key string) string {
	if len(key) > 40 {
		key = key[:40] + "…"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func where(path string) string {
	if path == "" {
		return "value"
	}
	return fmt.Sprintf("%q", path)
}

// field is a JSON field of a struct type: its key and Go type.
type field struct {
	name string
	typ  reflect.Type
}

var (
	fieldsCache sync.Map // reflect.Type -> []field
	holdsCache  sync.Map // reflect.Type -> bool
)

// structFields lists the JSON fields of struct type t that hold decimals,
// with encoding/json's rules: the tag's name or the field name, "-"
// skipped, unexported fields skipped, the fields of untagged embedded
// structs promoted (the shallowest field of a name wins), in the order of
// their index sequences (encoding/json's order, in which it takes the
// first field whose name matches a key ignoring case).
func structFields(t reflect.Type) []field {
	if f, ok := fieldsCache.Load(t); ok {
		return f.([]field)
	}
	type found struct {
		field
		index []int
	}
	byName := map[string]found{}
	walking := map[reflect.Type]bool{} // the embedding structs above
	var walk func(t reflect.Type, index []int)
	walk = func(t reflect.Type, index []int) {
		walking[t] = true
		defer delete(walking, t)
		for i := range t.NumField() {
			sf := t.Field(i)
			tag := sf.Tag.Get("json")
			if tag == "-" {
				continue
			}
			at := append(index[:len(index):len(index)], i)
			name, _, _ := strings.Cut(tag, ",")
			ft := sf.Type
			if sf.Anonymous && name == "" {
				et := ft
				if et.Kind() == reflect.Pointer {
					et = et.Elem()
				}
				if et.Kind() == reflect.Struct {
					if !walking[et] { // not a struct that embeds itself
						walk(et, at)
					}
					continue
				}
			}
			if !sf.IsExported() {
				continue
			}
			if name == "" {
				name = sf.Name
			}
			if prev, ok := byName[name]; ok && len(prev.index) <= len(at) {
				continue
			}
			byName[name] = found{field{name, ft}, at}
		}
	}
	walk(t, nil)
	var all []found
	for _, f := range byName {
		if holdsDecimal(f.typ) {
			all = append(all, f)
		}
	}
	slices.SortFunc(all, func(a, b found) int { return slices.Compare(a.index, b.index) })
	out := make([]field, len(all))
	for i, f := range all {
		out[i] = f.field
	}
	fieldsCache.Store(t, out) // whoever stores it stores the same
	return out
}

// holdsDecimal reports whether a value of type t may hold a decimal.Decimal
// that the JSON decoder fills through t's shape (not through a custom
// UnmarshalJSON).
func holdsDecimal(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == decimalType {
		return true
	}
	if h, ok := holdsCache.Load(t); ok {
		return h.(bool)
	}
	h := reachesDecimal(t, map[reflect.Type]bool{})
	holdsCache.Store(t, h) // whoever stores it stores the same
	return h
}

// reachesDecimal is holdsDecimal without the cache: whether a decimal is
// reachable from t through the shapes the decoder fills, seen holding the
// types already looked into (a recursive type reaches a decimal through
// its first visit or not at all).
func reachesDecimal(t reflect.Type, seen map[reflect.Type]bool) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == decimalType {
		return true
	}
	if seen[t] || reflect.PointerTo(t).Implements(unmarshalerType) {
		return false
	}
	seen[t] = true
	switch t.Kind() {
	case reflect.Struct:
		for i := range t.NumField() {
			sf := t.Field(i)
			if (sf.IsExported() || sf.Anonymous) && sf.Tag.Get("json") != "-" && reachesDecimal(sf.Type, seen) {
				return true
			}
		}
	case reflect.Map, reflect.Slice, reflect.Array:
		return reachesDecimal(t.Elem(), seen)
	}
	return false
}

// passes reports whether check would find nothing wrong in data for type
// t, at the speed of one decoding: data is decoded into t's probe (probeOf),
// whose every decimal checks its text as check does. When it does not pass
// (or t has no probe), Unmarshal runs check itself, which says what is wrong
// and where. It never passes a document check refuses: the probe has the
// fields check looks into, under the names check matches keys to (exactly,
// else ignoring case, the first in structFields' order, as encoding/json
// matches them), lists where t has arrays (check looks at every element),
// and nothing else.
func passes(data []byte, t reflect.Type) bool {
	probe := probeOf(t)
	return probe != nil && json.Unmarshal(data, reflect.New(probe).Interface()) == nil
}

// checkedNumber is a decimal's place in a probe: it accepts what check
// accepts there.
type checkedNumber struct{}

// UnmarshalJSON refuses a string or number that Check refuses; it leaves
// anything else (null, or a value of the wrong kind) to the decoder.
func (*checkedNumber) UnmarshalJSON(b []byte) error {
	switch {
	case len(b) == 0:
		return nil
	case len(b) > MaxLen+2 && (b[0] == '"' || b[0] == '-' || b[0] >= '0' && b[0] <= '9'):
		// Longer than a number Check accepts, or escaped: check says which,
		// without a copy of what may be a megabyte of digits.
		return ErrTooLong
	case b[0] == '"':
		var s string
		if bytes.IndexByte(b, '\\') < 0 && len(b) >= 2 {
			s = string(b[1 : len(b)-1])
		} else if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		return Check(s)
	case b[0] == '-' || b[0] >= '0' && b[0] <= '9':
		return Check(string(b))
	}
	return nil
}

var (
	checkedNumberType = reflect.TypeFor[checkedNumber]()
	probeCache        sync.Map // reflect.Type -> reflect.Type, or nil for none
)

// probeOf returns the type passes decodes a document for t into: t's shape
// reduced to the places that hold decimals, or nil when it cannot be built
// (a recursive type; a field name that encoding/json would not take as a
// tag).
func probeOf(t reflect.Type) reflect.Type {
	if p, ok := probeCache.Load(t); ok {
		p, _ := p.(reflect.Type)
		return p
	}
	p := buildProbe(t, map[reflect.Type]bool{})
	probeCache.Store(t, p) // whoever stores it stores the same
	return p
}

// buildProbe is probeOf without the cache; building holds the types whose
// probe is being built.
func buildProbe(t reflect.Type, building map[reflect.Type]bool) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == decimalType {
		return checkedNumberType
	}
	if building[t] {
		return nil // recursive: reflect cannot build such a type
	}
	building[t] = true
	defer delete(building, t)
	switch t.Kind() {
	case reflect.Struct:
		var fields []reflect.StructField
		for i, f := range structFields(t) {
			ft := buildProbe(f.typ, building)
			if ft == nil || !plainKey(f.name) {
				return nil
			}
			// The comma: a name "-" is the key "-", not "leave out".
			fields = append(fields, reflect.StructField{Name: fmt.Sprintf("F%d", i), Type: ft, Tag: reflect.StructTag(`json:"` + f.name + `,"`)})
		}
		return reflect.StructOf(fields)
	case reflect.Map:
		if e := buildProbe(t.Elem(), building); e != nil {
			return reflect.MapOf(reflect.TypeFor[string](), e) // check does not look at keys
		}
	case reflect.Slice, reflect.Array:
		if e := buildProbe(t.Elem(), building); e != nil {
			return reflect.SliceOf(e)
		}
	}
	return nil
}

// plainKey reports whether encoding/json takes name, in a tag, as the
// field's key: letters, digits and a few punctuation marks.
func plainKey(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range name {
		if !(c == '_' || c == '-' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
