package decimaltext

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

type inner struct {
	Quantity decimal.Decimal `json:"quantity"`
}

type account struct {
	Cash      decimal.Decimal            `json:"cash"`
	Positions map[string]decimal.Decimal `json:"positions"`
}

type doc struct {
	inner
	Price    *decimal.Decimal    `json:"price"`
	Fees     decimal.Decimal     // untagged: key "Fees"
	Accounts map[string]*account `json:"accounts"`
	Lots     []inner             `json:"lots"`
	Skipped  decimal.Decimal     `json:"-"`
	Name     string              `json:"name"`
}

func TestUnmarshal(t *testing.T) {
	long := strings.Repeat("9", 41)
	tests := []struct {
		name, in, err string
	}{
		{"valid", `{"quantity":"1.5","price":2,"Fees":"0.1","accounts":{"a":{"cash":"-3","positions":{"VTI":"10"}}},"lots":[{"quantity":".5"}],"name":"` + long + `"}`, ""},
		{"null decimal", `{"quantity":null,"price":null}`, ""},
		{"embedded field", `{"quantity":"` + long + `"}`, `"quantity": number "999999999999"… is longer than 40 characters`},
		{"pointer", `{"price":"1e5"}`, `"price": "1e5" is not a plain decimal number`},
		{"bare number with exponent", `{"price":1e5}`, `"price": "1e5" is not a plain decimal number`},
		{"untagged field", `{"Fees":"NaN"}`, `"Fees": "NaN" is not a plain decimal number`},
		{"key in another case", `{"QUANTITY":"1e-2000000000"}`, `"QUANTITY": "1e-2000000000" is not a plain decimal number`},
		{"map of structs of maps", `{"accounts":{"a":{"positions":{"VTI":"1e9"}}}}`, `"accounts.a.positions.VTI": "1e9" is not a plain decimal number`},
		{"slice", `{"lots":[{"quantity":"1"},{"quantity":"1E1"}]}`, `"lots[1].quantity": "1E1" is not a plain decimal number`},
		{"skipped field", `{"Skipped":"1e9"}`, ""},
		{"duplicate key", `{"quantity":"` + long + `","quantity":"1"}`, `"quantity": number "999999999999"… is longer than 40 characters`},
		{"unknown fields skipped", `{"x":{"quantity":"1e9","y":[1e9,{"z":null}]},"name":"n","quantity":"2"}`, ""},
		{"syntax error", `{"quantity":`, "unexpected end of JSON input"},
	}
	for _, tt := range tests {
		var d doc
		err := Unmarshal([]byte(tt.in), &d)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tt.err {
			t.Errorf("%s: Unmarshal = %q, want %q", tt.name, got, tt.err)
		}
	}
	// What is accepted decodes as json.Unmarshal decodes it.
	in := `{"quantity":"1.5","price":2,"accounts":{"a":{"cash":"-3","positions":{"VTI":"10"}}}}`
	var got, want doc
	if err := Unmarshal([]byte(in), &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(in), &want); err != nil {
		t.Fatal(err)
	}
	if !got.Quantity.Equal(want.Quantity) || !got.Price.Equal(*want.Price) || !got.Accounts["a"].Positions["VTI"].Equal(decimal.NewFromInt(10)) {
		t.Errorf("Unmarshal = %+v, want %+v", got, want)
	}
}

// custom decodes itself: Unmarshal leaves its shape to its UnmarshalJSON.
type custom struct{ d decimal.Decimal }

func (c *custom) UnmarshalJSON(b []byte) error {
	var v struct {
		D decimal.Decimal `json:"d"`
	}
	if err := Unmarshal(b, &v); err != nil {
		return err
	}
	c.d = v.D
	return nil
}

func TestUnmarshalCustom(t *testing.T) {
	var v struct {
		C custom `json:"c"`
	}
	err := Unmarshal([]byte(`{"c":{"d":"1e3"}}`), &v)
	if !errors.Is(err, ErrNotPlain) {
		t.Fatalf("custom type's own check: %v, want ErrNotPlain", err)
	}
}

// TestUnmarshalRefusesHugeNumberFast: a fill with a 1,000,000-digit
// quantity (2.4 s to parse with decimal.NewFromString) is refused fast.
func TestUnmarshalRefusesHugeNumberFast(t *testing.T) {
	for _, quoted := range []bool{true, false} {
		q := strings.Repeat("1", 1_000_000)
		if quoted {
			q = `"` + q + `"`
		}
		data := []byte(`{"quantity":` + q + `}`)
		start := time.Now()
		var d doc
		if err := Unmarshal(data, &d); !errors.Is(err, ErrTooLong) {
			t.Fatalf("1M-digit quantity: %v, want ErrTooLong", err)
		}
		if took := time.Since(start); took > 2*time.Second { // generous for -race on a shared machine; parsing took 2.4-5.9 s without -race
			t.Errorf("refusing a 1M-digit quantity took %v", took)
		}
	}
}

func BenchmarkUnmarshalHugeQuantity(b *testing.B) {
	data := []byte(`{"quantity":"` + strings.Repeat("1", 1_000_000) + `"}`)
	b.Run("decimaltext.Unmarshal", func(b *testing.B) {
		for b.Loop() {
			var d doc
			if Unmarshal(data, &d) == nil {
				b.Fatal("accepted")
			}
		}
	})
	b.Run("json.Unmarshal", func(b *testing.B) {
		for b.Loop() {
			var d doc
			_ = json.Unmarshal(data, &d)
		}
	})
}

// FuzzUnmarshal checks Unmarshal against json.Unmarshal: it accepts only
// what json.Unmarshal accepts, decodes it the same, and every decimal it
// accepts is within the limits.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{
		`{"quantity":"1.5","price":2,"Fees":"0.1","accounts":{"a":{"cash":"-3","positions":{"VTI":"10"}}},"lots":[{"quantity":".5"}]}`,
		`{"QUANTITY":"1e-5","quantity":"1"}`, `{"price":1e5}`, `{"lots":[{"quantity":"1"},null]}`, `null`, `[]`, `{"accounts":{"a":null}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got, want doc
		err := Unmarshal(data, &got)
		wantErr := json.Unmarshal(data, &want)
		if err != nil {
			return
		}
		if wantErr != nil {
			t.Fatalf("accepted %q, which json.Unmarshal refuses: %v", data, wantErr)
		}
		ds := []decimal.Decimal{got.Quantity, got.Fees}
		if got.Price != nil {
			ds = append(ds, *got.Price)
		}
		for _, a := range got.Accounts {
			if a != nil {
				ds = append(ds, a.Cash)
				for _, q := range a.Positions {
					ds = append(ds, q)
				}
			}
		}
		for _, l := range got.Lots {
			ds = append(ds, l.Quantity)
		}
		for _, d := range ds {
			if d.Exponent() > 0 || d.Exponent() < -MaxLen || d.NumDigits() > MaxLen {
				t.Fatalf("accepted %s (%d digits, exponent %d) from %q", d, d.NumDigits(), d.Exponent(), data)
			}
		}
		if !got.Quantity.Equal(want.Quantity) || len(got.Accounts) != len(want.Accounts) || len(got.Lots) != len(want.Lots) {
			t.Fatalf("%q decodes as %+v, json.Unmarshal as %+v", data, got, want)
		}
	})
}
