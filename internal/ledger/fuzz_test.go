package ledger

import (
	"encoding/json"
	"testing"

	"github.com/shopspring/decimal"
)

// FuzzLedgerJSON decodes arbitrary state files: a ledger is refused or
// holds lots that add up to its positions, and encodes back to a ledger
// that decodes the same, never a panic.
func FuzzLedgerJSON(f *testing.F) {
	for _, s := range []string{
		`{"policy":"p","base_as_of":"2026-11-20T21:00:00Z","as_of":"2026-11-20T21:00:00Z","accounts":{"a":{"cash":"500","positions":{"VTI":"60"},"lots":{"VTI":[{"id":1,"quantity":"60","cost_basis":"9000","acquired":"2024-01-02"}]}}},"orders":[]}`,
		`{"policy":"p","accounts":{"a":{"cash":"1","positions":{"VTI":"2"},"lots":{"VTI":[{"id":1,"quantity":"1","cost_basis":"1","acquired":"2024-01-02"}]}}}}`,
		`{"policy":"p","orders":[{"order_id":"x-1","status":"outbox","filled":"0"}],"tax_history":{"loss_sales":[{"instrument":"VTI","account":"a","date":"2026-11-20"}]}}`,
		`null`, `{}`, `{"accounts":{"a":null}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var l Ledger
		if json.Unmarshal(data, &l) != nil {
			return
		}
		for name, a := range l.Accounts {
			if a == nil {
				continue
			}
			for sym, lots := range a.Lots {
				sum := decimal.Zero
				for _, lot := range lots {
					sum = sum.Add(lot.Quantity)
				}
				if !sum.Equal(a.Positions[sym]) {
					t.Fatalf("%s %s: lots sum to %s, position %s", name, sym, sum, a.Positions[sym])
				}
			}
		}
		out, err := json.Marshal(&l)
		if err != nil {
			t.Fatalf("decoded ledger does not encode: %v", err)
		}
		var again Ledger
		if err := json.Unmarshal(out, &again); err != nil {
			t.Fatalf("re-encoded ledger does not decode: %v\n%s", err, out)
		}
		if out2, _ := json.Marshal(&again); string(out2) != string(out) {
			t.Fatalf("not stable:\n%s\n%s", out, out2)
		}
	})
}
