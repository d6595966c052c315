package correlation

import (
	"encoding/json"
	"testing"
)

// FuzzHistoryJSON decodes arbitrary saved price histories: a history is
// refused or keeps its bound (window+2 closes per symbol) and encodes back
// to the same history, never a panic.
func FuzzHistoryJSON(f *testing.F) {
	h, err := NewHistory(24*60*60*1e9, 20)
	if err != nil {
		f.Fatal(err)
	}
	good, err := json.Marshal(h)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{string(good), `null`, `{}`, `{"interval":"24h","window":20,"closes":{"VTI":[]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var h History
		if json.Unmarshal(data, &h) != nil {
			return
		}
		for _, sym := range h.Symbols() {
			if n := len(h.Closes(sym)); n > h.Window()+2 {
				t.Fatalf("%s: %d closes for a window of %d", sym, n, h.Window())
			}
		}
		out, err := json.Marshal(&h)
		if err != nil {
			t.Fatalf("decoded history does not encode: %v", err)
		}
		var again History
		if err := json.Unmarshal(out, &again); err != nil {
			t.Fatalf("re-encoded history does not decode: %v\n%s", err, out)
		}
		if out2, _ := json.Marshal(&again); string(out2) != string(out) {
			t.Fatalf("not stable:\n%s\n%s", out, out2)
		}
	})
}
