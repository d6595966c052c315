package policy

import (
	"testing"
)

// BenchmarkHousehold measures what loading one more household on a
// parsed model costs (ParseHousehold and Compose) against parsing the same
// effective policy as one file: the model's YAML is parsed once.
func BenchmarkHousehold(b *testing.B) {
	_, model := readFile(b, "testdata/models/growth-2045.model.good.yml")
	name, household := readFile(b, "testdata/models/smith.good.yml")
	m, err := ParseModel("growth-2045.model.good.yml", model)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("compose", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h, err := ParseHousehold(name, household)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := Compose(m, h); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("policy-file", func(b *testing.B) {
		_, data := readFile(b, "../../configs/policies/example.yaml")
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Parse("example.yaml", data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
