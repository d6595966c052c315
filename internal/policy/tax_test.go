package policy

import (
	"os"
	"strings"
	"testing"

	"github.com/rebalancerd/rebalancerd/internal/strictyaml/yamltest"
	"github.com/rebalancerd/rebalancerd/internal/tax"
)

// TestTaxBlock reads every field of the tax block and the asset location.
func TestTaxBlock(t *testing.T) {
	p := parseFile(t, "testdata/tax.yml")
	tr := p.Tax
	if tr == nil || tr.Zone.String() != "America/New_York" || tr.ShortTermGains != tax.ShortTermBlock || tr.WaitLongTermDays != 30 || tr.Line != 25 {
		t.Fatalf("tax = %+v", tr)
	}
	w := tr.WashSale
	if w.Window != 31 || w.Windows["stocks/intl"] != 61 || len(w.Windows) != 1 || strings.Join(w.Exempt, ",") != "crypto" ||
		len(w.SubstituteGroups) != 1 || strings.Join(w.SubstituteGroups[0], ",") != "VTI,VXUS" {
		t.Errorf("wash sale = %+v", w)
	}
	h := tr.Harvest
	if !h.Enabled || !h.MinLoss.Equal(dec("500")) || !h.MinLossPct.Equal(dec("0.05")) || len(h.Substitutes) != 1 || h.Substitutes["VTI"] != "ITOT" {
		t.Errorf("harvest = %+v", h)
	}
	// bonds: k401, then every traditional IRA (ira); stocks/us inherits
	// stocks (taxable); stocks/intl has its own (roth); crypto has none.
	for sleeve, want := range map[string]string{"bonds": "k401,ira", "stocks/us": "taxable", "stocks": "taxable", "stocks/intl": "roth", "crypto": ""} {
		si, _ := p.SleeveIndex(sleeve)
		var names []string
		for _, a := range p.PreferredAccounts(si) {
			names = append(names, p.Accounts[a].Name)
		}
		if got := strings.Join(names, ","); got != want {
			t.Errorf("preferred accounts of %s = %s, want %s", sleeve, got, want)
		}
	}
}

// TestTaxDefaults: without a tax block the policy has no tax rules; an
// empty one gives the zero options and UTC.
func TestTaxDefaults(t *testing.T) {
	p := parseFile(t, "testdata/minimal.good.yml")
	if p.Tax != nil || p.AssetLocation != nil {
		t.Errorf("tax = %+v, asset location = %+v", p.Tax, p.AssetLocation)
	}
	data, err := os.ReadFile("testdata/minimal.good.yml")
	if err != nil {
		t.Fatal(err)
	}
	p, err = Parse("empty-tax.yml", append(data, "tax: {}\n"...))
	if err != nil {
		t.Fatal(err)
	}
	if p.Tax == nil || p.Tax.Zone.String() != "UTC" || p.Tax.WaitLongTermDays != 0 || p.Tax.Harvest.Enabled || p.Tax.ShortTermGains != "" {
		t.Errorf("tax = %+v", p.Tax)
	}
}

// TestTaxErrors: every problem at once, with its line, named as the file
// names it (tax.Options.Validate's messages included).
func TestTaxErrors(t *testing.T) {
	data, err := os.ReadFile("testdata/tax_errors.yml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse("tax_errors.yml", data)
	if p != nil || err == nil {
		t.Fatal("parsed")
	}
	yamltest.Match(t, yamltest.Problems(t, err, "tax_errors.yml"), []string{
		`tax_errors.yml:15: tax.time_zone: "Mars/Olympus" is not a time zone like America/New_York or UTC`,
		`tax_errors.yml:16: tax.short_term_gains: want allow or block, got "never"`,
		`tax_errors.yml:17: tax.wait_long_term_days: want a whole number of days up to 3660, got 2.5`,
		`tax_errors.yml:19: tax.wash_sale.window: must not be negative, got -1`,
		`tax_errors.yml:20: tax.wash_sale.windows.gold: no sleeve "gold" in targets (known: stocks, bonds, cash)`,
		`tax_errors.yml:20: tax.wash_sale.windows.bonds: must be positive, got 0; list the sleeve under exempt to skip the guard`,
		`tax_errors.yml:21: tax.wash_sale.exempt: bonds also has a window under wash_sale.windows`,
		`tax_errors.yml:22: tax.wash_sale.substitute_groups[1]: no instrument "GME" in instruments`,
		`tax_errors.yml:22: tax.wash_sale.substitute_groups[0]: a group needs at least two instruments, got 1`,
		`tax_errors.yml:24: tax.harvest.enabled: want true or false, got "yes"`,
		`tax_errors.yml:25: tax.harvest.min_loss: must not be negative, got -5`,
		`tax_errors.yml:26: tax.harvest.min_loss_pct: must be between 0% and 100%, got 150%`,
		`tax_errors.yml:27: tax.harvest.substitutes.VTI: BND fills sleeve "bonds", VTI fills "stocks": a substitute must fill the same sleeve, so that harvesting keeps the sleeve's weight`,
		`tax_errors.yml:27: tax.harvest.substitutes.BND: the substitute must be another instrument, got "BND"`,
		`tax_errors.yml:28: tax.since: unknown field (known: time_zone, short_term_gains, wait_long_term_days, wash_sale, harvest, withdrawals)`,
		`tax_errors.yml:30: asset_location.bonds: "k401" is neither an account nor the type of one (accounts: roth, taxable)`,
		`tax_errors.yml:30: asset_location.bonds: account roth is listed twice`,
		`tax_errors.yml:31: asset_location.cash: the cash sleeve is never bought: it needs no location`,
		`tax_errors.yml:32: asset_location.gold: no sleeve "gold" in targets (known: stocks, bonds, cash)`,
		`tax_errors.yml:33: asset_location.stocks: want at least one account`,
	})
}

// TestWithdrawalRules: tax.withdrawals reads its rates, its order (names
// and types; the accounts left out follow in the default order) and the
// types exempt from the additional tax; mistakes name their field.
func TestWithdrawalRules(t *testing.T) {
	base, err := os.ReadFile("testdata/tax.yml")
	if err != nil {
		t.Fatal(err)
	}
	with := func(block string) (*Policy, error) {
		return Parse("tax.yml", []byte(strings.Replace(string(base), "\ntax:\n", "\ntax:\n  withdrawals: "+block+"\n", 1)))
	}
	names := func(p *Policy, order []int) string {
		var out []string
		for _, a := range order {
			out = append(out, p.Accounts[a].Name)
		}
		return strings.Join(out, ",")
	}
	p, err := with(`{order: [roth_ira, k401], ordinary_income_rate: 24%, long_term_gains_rate: 15%, penalty_exempt: [403b]}`)
	if err != nil {
		t.Fatal(err)
	}
	w := p.Tax.Withdrawals
	if !w.HasOrdinary || !w.OrdinaryRate.Equal(dec("0.24")) || !w.LongTermRate.Equal(dec("0.15")) || w.HasShortTerm ||
		len(w.PenaltyExempt) != 1 || w.PenaltyExempt[0] != Account403b {
		t.Errorf("withdrawals = %+v", w)
	}
	// Listed first roth (the roth_ira type) and k401; then the others in
	// the default order: taxable, then the tax-deferred ira.
	if got := names(p, p.WithdrawalOrder()); got != "roth,k401,taxable,ira" {
		t.Errorf("order = %s", got)
	}
	def, _ := with(`{}`)
	if got := names(def, def.WithdrawalOrder()); got != "taxable,k401,ira,roth" {
		t.Errorf("default order = %s", got)
	}
	for block, want := range map[string]string{
		`{order: [nobody]}`:            `tax.withdrawals.order: "nobody" is neither an account nor an account type`,
		`{ordinary_income_rate: 120%}`: "tax.withdrawals.ordinary_income_rate: must be between 0% and 100%",
		`{penalty_exempt: [pension]}`:  `tax.withdrawals.penalty_exempt: "pension" is not an account type`,
		`{rates: 1}`:                   "tax.withdrawals.rates: unknown field",
	} {
		if _, err := with(block); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", block, err, want)
		}
	}
}
