package decimaltext

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

// tokenCheck is what Unmarshal does without the probe: check over the
// document's tokens.
func tokenCheck(data []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return check(dec, t, "")
}

// cased has two decimal fields whose keys differ only in case and an
// array.
type cased struct {
	Lower decimal.Decimal    `json:"amount"`
	Upper decimal.Decimal    `json:"AMOUNT"`
	Pair  [2]decimal.Decimal `json:"pair"`
}

// recursive has no probe (reflect cannot build a recursive type): Unmarshal
// checks it with the token check alone.
type recursive struct {
	Amount decimal.Decimal `json:"amount"`
	Next   *recursive      `json:"next"`
}

// dashed has a field whose key is "-" (the tag "-,"), and fields whose
// keys differ only in case where one is a decimal and the other holds one:
// check takes the first in encoding/json's order, and so must the probe.
type dashed struct {
	Dash   decimal.Decimal `json:"-,"`
	Amount decimal.Decimal `json:"amount"`
	Nested struct {
		D decimal.Decimal
	} `json:"AMOUNT"`
	Embedded *embedded
	Lots     map[string][]embedded `json:"lots"`
}

type embedded struct {
	Basis decimal.Decimal `json:"basis"`
}

// mutualA and mutualB hold a decimal through each other.
type mutualA struct {
	B *mutualB `json:"b"`
	D decimal.Decimal
}

type mutualB struct {
	A *mutualA `json:"a"`
}

var probeTypes = []reflect.Type{reflect.TypeFor[doc](), reflect.TypeFor[cased](), reflect.TypeFor[[]map[string]decimal.Decimal](), reflect.TypeFor[dashed]()}

// probeCases are documents for the probe types, valid and not.
var probeCases = []string{
	`{"quantity":"1.5","price":2,"Fees":"0.1","accounts":{"a":{"cash":"-3","positions":{"VTI":"10"}}},"lots":[{"quantity":".5"}]}`,
	`{"QUANTITY":"1e-5","quantity":"1"}`, `{"price":1e5}`, `{"price":"\u0031e5"}`, `{"price":"1\/2"}`, `{"lots":[{"quantity":"1"},null]}`,
	`null`, `[]`, `{"accounts":{"a":null}}`, `{"accounts":{"a":{"positions":{"VTI":"1e9"}}}}`, `{"Fees":"NaN"}`, `{"fees":"NaN"}`,
	`{"quantity":"` + strings.Repeat("9", 41) + `"}`, `{"quantity":` + strings.Repeat("9", 41) + `}`, `{"Skipped":"1e9"}`, `{"quantity":{"x":"1e9"}}`,
	`{"amount":"1","AMOUNT":"2e3"}`, `{"Amount":"1e3"}`, `{"pair":["1","2","3e3"]}`, `{"pair":"1e3"}`,
	`[{"a":"1"},{"b":"1e1"}]`, `[{"a":"1"},{"b":2}]`, `{"quantity":true}`, `{"quantity":"1",}`, `{"quantity":"\ud800"}`, `{"quantity":"１"}`,
	`{"-":"1e300"}`, `{"-":"1"}`, `{"Amount":{"D":"1e300"}}`, `{"amount":{"D":"1"}}`, `{"AMOUNT":{"D":"1e3"}}`, `{"basis":"1e3"}`, `{"Embedded":{"basis":"1"}}`,
	`{"lots":{"VTI":[{"basis":"1"},{"basis":"1e9"}]}}`,
}

// TestProbeNeverPassesWhatCheckRefuses: wherever the token check finds a
// problem, the probe does not pass, so Unmarshal runs the check and
// reports it; and the probe passes the documents the check finds well
// formed, or it would spare nothing.
func TestProbeNeverPassesWhatCheckRefuses(t *testing.T) {
	var passed, refused int
	for _, typ := range probeTypes {
		if probeOf(typ) == nil {
			t.Fatalf("no probe for %s", typ)
		}
		for _, in := range probeCases {
			samePassing(t, []byte(in), typ)
			if passes([]byte(in), typ) {
				passed++
			} else {
				refused++
			}
		}
	}
	if passed == 0 || refused == 0 {
		t.Fatalf("%d documents passed and %d did not: the cases do not exercise both", passed, refused)
	}
	for _, in := range []string{`{"-":"1e300"}`, `{"Amount":{"D":"1e300"}}`, `{"lots":{"VTI":[{"basis":"1e9"}]}}`} {
		var d dashed
		if err := Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("Unmarshal accepted %s", in)
		}
	}
	var m mutualA
	if err := Unmarshal([]byte(`{"b":{"a":{"b":{"a":{"D":"1e300"}}}}}`), &m); err == nil || !strings.Contains(err.Error(), "is not a plain decimal number") {
		t.Errorf("Unmarshal of mutually recursive types: %v", err)
	}
	if p := probeOf(reflect.TypeFor[recursive]()); p != nil {
		t.Fatalf("a probe for a recursive type: %s", p)
	}
	var r recursive
	if err := Unmarshal([]byte(`{"next":{"next":{"amount":"1e3"}}}`), &r); err == nil || !strings.Contains(err.Error(), `"next.next.amount": "1e3" is not a plain decimal number`) {
		t.Fatalf("Unmarshal of a recursive type: %v", err)
	}
	var d doc
	if err := Unmarshal([]byte(probeCases[0]), &d); err != nil || !d.Quantity.Equal(decimal.RequireFromString("0.5")) && !d.Quantity.Equal(decimal.RequireFromString("1.5")) {
		t.Fatalf("Unmarshal of a valid document: %v, %+v", err, d)
	}
}

// FuzzProbe is TestProbeNeverPassesWhatCheckRefuses on fuzzed documents.
func FuzzProbe(f *testing.F) {
	for _, in := range probeCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, typ := range probeTypes {
			samePassing(t, data, typ)
		}
	})
}

// samePassing fails when the probe passes data that the token check
// refuses for a number; it requires the probe to pass data that decodes
// into typ without a problem.
func samePassing(t *testing.T, data []byte, typ reflect.Type) {
	t.Helper()
	checkErr := tokenCheck(data, typ)
	var numErr *numberError
	refused := checkErr != nil && errors.As(checkErr, &numErr)
	pass := passes(data, typ)
	if pass && refused {
		t.Fatalf("%s: the probe passes %q, the check refuses it: %v", typ, data, checkErr)
	}
	if !pass && checkErr == nil && json.Unmarshal(data, reflect.New(typ).Interface()) == nil {
		t.Fatalf("%s: the probe refuses %q, which the check and the decoder accept", typ, data)
	}
}

// selfEmbedded embeds a pointer to its own type.
type selfEmbedded struct {
	*selfEmbedded
	D decimal.Decimal
}

// TestSelfEmbedded: a struct that embeds itself is walked once, not
// without end, and its decimals are checked.
func TestSelfEmbedded(t *testing.T) {
	var s selfEmbedded
	if err := Unmarshal([]byte(`{"D":"1e3"}`), &s); err == nil || !strings.Contains(err.Error(), `"D": "1e3" is not a plain decimal number`) {
		t.Fatalf("Unmarshal: %v", err)
	}
	if err := Unmarshal([]byte(`{"D":"1.5"}`), &s); err != nil || s.D.String() != "1.5" {
		t.Fatalf("Unmarshal: %v, %s", err, s.D)
	}
}
