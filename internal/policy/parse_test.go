package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/dec64"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml/yamltest"
)

// examplePath is the example policy shipped in configs.
const examplePath = "../../configs/policies/example.yaml"

// Test files are parsed under their base name, so messages read
// "bad_sum.bad.yml:5: targets: ...".
func readFile(t testing.TB, path string) (string, []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(path), data
}

func parseFile(t testing.TB, path string) *Policy {
	t.Helper()
	name, data := readFile(t, path)
	p, err := Parse(name, data)
	if err != nil {
		t.Fatalf("Parse(%s):\n%v", name, err)
	}
	checkPolicy(t, p, name, data)
	return p
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func TestGoodFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*.good.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no good files: %v", err)
	}
	files = append(files, examplePath)
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) { parseFile(t, path) })
	}
}

// badFiles lists, for each testdata/*.bad.yml, every problem Parse must
// report, in order.
var badFiles = map[string][]string{
	// A model or household file given where a policy file goes says so.
	"model_as_policy.bad.yml": {
		`model_as_policy.bad.yml:1: model: a model file is not a policy: list it in models_dir (docs/CONFIG.md, "Models and households"); check it with check -model`,
		"model_as_policy.bad.yml:1: policy: required field is missing",
		"model_as_policy.bad.yml:1: accounts: required field is missing",
	},
	"household_as_policy.bad.yml": {
		`household_as_policy.bad.yml:1: household: a household file is not a policy: put it in households_dir (docs/CONFIG.md, "Models and households"); check it with check -config`,
		"household_as_policy.bad.yml:1: policy: required field is missing",
		"household_as_policy.bad.yml:1: currency: required field is missing",
		"household_as_policy.bad.yml:1: targets: required field is missing",
		"household_as_policy.bad.yml:1: bands: required field is missing",
		"household_as_policy.bad.yml:1: rebalance: required field is missing",
		"household_as_policy.bad.yml:1: instruments: required field is missing",
		"household_as_policy.bad.yml:2: model: unknown field (known: policy, currency, targets, bands, rebalance, prices, limits, instruments, accounts, investor, glide_path, glide_bands, tilts, tax, asset_location, correlation, phase_in, contributions)",
	},
	"contributions.bad.yml": {
		`contributions.bad.yml:13: contributions[0].account: no account "k401" (known: broker)`,
		`contributions.bad.yml:14: contributions[1].amount: must be positive, got 0`,
		`contributions.bad.yml:15: contributions[2].schedule: `,
		`contributions.bad.yml:16: contributions[3].schedule: required field is missing`,
	},
	"phase_in.bad.yml": {
		"phase_in.bad.yml:18: phase_in.over: 10d is shorter than every (30d)",
		"phase_in.bad.yml:20: phase_in.start: unknown field (known: over, every, deposits_above)",
	},
	"phase_in_steps.bad.yml": {
		"phase_in_steps.bad.yml:12: phase_in.every: 8761 steps over 365d: at most 120",
	},
	"unknown_key.bad.yml": {
		"unknown_key.bad.yml:3: owner: unknown field (known: policy, currency, targets, bands, rebalance, prices, limits, instruments, accounts, investor, glide_path, glide_bands, tilts, tax, asset_location, correlation, phase_in, contributions)",
		"unknown_key.bad.yml:6: targets.bonds.sleves: unknown field (known: weight, sleeves)",
		"unknown_key.bad.yml:6: targets.bonds.sleeves: required field is missing (or write the weight alone, like bonds: 10%)",
		"unknown_key.bad.yml:10: bands.relativ: unknown field (known: absolute, relative, within_sleeve, sleeves)",
		"unknown_key.bad.yml:13: rebalance.every: unknown field (known: trigger, schedule, check_every, cooldown, order_ttl, destination, min_trade)",
		"unknown_key.bad.yml:15: instruments.VTI.weight: unknown field (known: sleeve, share, step)",
		"unknown_key.bad.yml:18: accounts.roth.owner: unknown field (known: type, reserve, may_hold)",
	},
	"duplicate_key.bad.yml": {
		"duplicate_key.bad.yml:6: targets.stocks: duplicate key (first defined at line 4)",
		"duplicate_key.bad.yml:8: bands.absolute: duplicate key (first defined at line 8)",
		"duplicate_key.bad.yml:14: instruments.VTI: duplicate key (first defined at line 12)",
		"duplicate_key.bad.yml:17: currency: duplicate key (first defined at line 2)",
	},
	"bad_daemon_fields.bad.yml": {
		`bad_daemon_fields.bad.yml:11: rebalance.cooldown: want a positive duration like 5m or 1h, got "0s"`,
		`bad_daemon_fields.bad.yml:12: rebalance.order_ttl: want a positive duration like 5m or 1h, got "soon"`,
		`bad_daemon_fields.bad.yml:14: prices.max_age: want a positive duration like 5m or 1h, got "-1m"`,
		`bad_daemon_fields.bad.yml:15: prices.max_move: must be above 0%`,
		`bad_daemon_fields.bad.yml:16: prices.stale: unknown field (known: max_age, max_move, confirm_after)`,
		`bad_daemon_fields.bad.yml:18: limits.max_order_notional: must be above 0 (leave it out for no absolute limit)`,
		`bad_daemon_fields.bad.yml:19: limits.max_order_share: must be between 0% and 100%, got 120%`,
		`bad_daemon_fields.bad.yml:20: limits.max_turnover: want more than 0% and at most 200%`,
		`bad_daemon_fields.bad.yml:21: limits.max_orders: want a whole number from 1 to 10000, got 1.5`,
		`bad_daemon_fields.bad.yml:22: limits.max_plans_per_day: want a whole number from 1 to 10000, got 0`,
		`bad_daemon_fields.bad.yml:23: limits.max_loss: unknown field (known: max_order_notional, max_order_share, max_turnover, max_orders, max_plans_per_day, max_value_change)`,
	},
	"confirmation.bad.yml": {
		`confirmation.bad.yml:12: prices.confirm_after: want a positive duration like 5m or 1h, got "0s"`,
		`confirmation.bad.yml:14: limits.max_value_change: want more than 0% and at most 1000%`,
	},
	"confirmation_big.bad.yml": {
		`confirmation_big.bad.yml:12: prices.confirm_after: want at most 24h, got 25h0m0s`,
		`confirmation_big.bad.yml:14: limits.max_value_change: want more than 0% and at most 1000%`,
	},
	"bad_sum.bad.yml": {
		"bad_sum.bad.yml:5: targets: level sums to 105%, want 100%",
	},
	"bad_nested_sum.bad.yml": {
		"bad_nested_sum.bad.yml:9: targets.crypto.sleeves: level sums to 90%, want 100%",
	},
	"bad_number.bad.yml": {
		`bad_number.bad.yml:12: rebalance.min_trade: "1e5" is not a plain decimal number`,
		`bad_number.bad.yml:14: instruments.VTI.step: "abc" is not a plain decimal number`,
		`bad_number.bad.yml:15: instruments.BND.step: ".nan" is not a plain decimal number`,
		`bad_number.bad.yml:17: accounts.roth.reserve: "1,000" is not a plain decimal number`,
		`bad_number.bad.yml:18: accounts.ira.reserve: "NaN" is not a plain decimal number`,
		`bad_number.bad.yml:19: accounts.hsa.reserve: "0x10" is not a plain decimal number`,
		`bad_number.bad.yml:20: accounts.k401.reserve: number "123456789012"… is longer than 40 characters`,
	},
	"negative_number.bad.yml": {
		"negative_number.bad.yml:5: targets.stocks: must be between 0% and 100%, got 105%",
		"negative_number.bad.yml:6: targets.bonds: must be between 0% and 100%, got -10%",
		"negative_number.bad.yml:9: bands.absolute: must be between 0% and 100%, got -1%",
		"negative_number.bad.yml:10: bands.relative: must not be negative",
		"negative_number.bad.yml:13: rebalance.min_trade: must not be negative, got -50",
		"negative_number.bad.yml:15: instruments.VTI.step: must be positive, got -0.5",
		"negative_number.bad.yml:16: instruments.BND.step: must be positive, got 0",
		"negative_number.bad.yml:18: accounts.roth.reserve: must not be negative, got -100",
	},
	"percent_without_sign.bad.yml": {
		`percent_without_sign.bad.yml:5: targets.stocks: "60" is not a percentage; write it like 55%`,
		`percent_without_sign.bad.yml:6: targets.bonds: "0.35" is not a percentage; write it like 55%`,
		`percent_without_sign.bad.yml:7: targets.cash: "5" is not a percentage; write it like 55%`,
		`percent_without_sign.bad.yml:9: bands.absolute: "5" is not a percentage; write it like 55%`,
		`percent_without_sign.bad.yml:14: instruments.VTI.share: "1" is not a percentage; write it like 55%`,
	},
	"unknown_sleeve.bad.yml": {
		`unknown_sleeve.bad.yml:14: instruments.BND.sleeve: no sleeve "bond" in targets (known: stocks, bonds, cash)`,
	},
	"non_leaf_sleeve.bad.yml": {
		`non_leaf_sleeve.bad.yml:18: instruments.BTC.sleeve: sleeve "crypto" has sub-sleeves; name one of them`,
	},
	"unknown_band_sleeve.bad.yml": {
		`unknown_band_sleeve.bad.yml:12: bands.sleeves.bond: no sleeve "bond" in targets (known: stocks, bonds, cash)`,
	},
	"may_hold_unknown.bad.yml": {
		`may_hold_unknown.bad.yml:20: accounts.roth.may_hold: no instrument "VXUS" in instruments`,
		`may_hold_unknown.bad.yml:21: accounts.k401.may_hold: no instrument "bnd" in instruments`,
	},
	"cron_tz_only.bad.yml": {
		`cron_tz_only.bad.yml:12: rebalance.schedule: "CRON_TZ=UTC" names a time zone but no schedule`,
	},
	"cron_never.bad.yml": {
		`cron_never.bad.yml:12: rebalance.schedule: "0 0 30 2 *" never fires`,
	},
	"cron_quarterly.bad.yml": {
		`cron_quarterly.bad.yml:12: rebalance.schedule: "@quarterly": @quarterly does not exist in cron; write "0 0 1 1,4,7,10 *"`,
	},
	"cron_malformed.bad.yml": {
		`cron_malformed.bad.yml:12: rebalance.schedule: "0 10 * * MON-FRI 2026" is not a valid cron schedule: expected exactly 5 fields, found 6`,
	},
	"bad_trigger.bad.yml": {
		`bad_trigger.bad.yml:11: rebalance.trigger: "weekly" is not a trigger; want calendar, threshold or hybrid`,
	},
	"bad_destination.bad.yml": {
		`bad_destination.bad.yml:12: rebalance.destination: "halfway" is not a destination; want target, band_edge or midway`,
	},
	// A missing field is reported at the first line of the mapping that
	// lacks it.
	"missing_required.bad.yml": {
		"missing_required.bad.yml:2: policy: required field is missing",
		"missing_required.bad.yml:2: currency: required field is missing",
		"missing_required.bad.yml:2: targets: required field is missing",
		"missing_required.bad.yml:2: bands: required field is missing",
		"missing_required.bad.yml:2: accounts: required field is missing",
		"missing_required.bad.yml:3: instruments.VTI.sleeve: required field is missing",
		"missing_required.bad.yml:5: rebalance.trigger: required field is missing",
	},
	"missing_nested_required.bad.yml": {
		"missing_nested_required.bad.yml:6: targets.bonds.sleeves: required field is missing (or write the weight alone, like bonds: 10%)",
		"missing_nested_required.bad.yml:11: rebalance.trigger: required field is missing",
		"missing_nested_required.bad.yml:14: instruments.BND.sleeve: required field is missing",
		"missing_nested_required.bad.yml:16: accounts.roth.type: required field is missing",
	},
	"missing_schedule_hybrid.bad.yml": {
		"missing_schedule_hybrid.bad.yml:11: rebalance.schedule: required for the hybrid trigger",
	},
	"missing_schedule_calendar.bad.yml": {
		"missing_schedule_calendar.bad.yml:10: rebalance.schedule: required for the calendar trigger",
	},
	"bad_shares.bad.yml": {
		`bad_shares.bad.yml:13: instruments: shares of sleeve "stocks" sum to 90%, want 100%`,
		`bad_shares.bad.yml:15: instruments: shares of sleeve "bonds" sum to 110%, want 100%`,
	},
	"partial_shares.bad.yml": {
		`partial_shares.bad.yml:15: instruments.VXUS.share: sleeve "stocks" gives shares to some instruments; give one to every instrument or to none`,
		`partial_shares.bad.yml:16: instruments.VEA.share: sleeve "stocks" gives shares to some instruments; give one to every instrument or to none`,
	},
	"no_instrument.bad.yml": {
		`no_instrument.bad.yml:6: targets.bonds: sleeve "bonds" has a target but no instrument fills it`,
		`no_instrument.bad.yml:10: targets.crypto.sleeves.large_cap: sleeve "crypto/large_cap" has a target but no instrument fills it`,
	},
	"no_cash.bad.yml": {
		"no_cash.bad.yml:5: targets: no top-level \"cash\" sleeve: free cash counts toward it (write `cash: 0%` to hold none)",
	},
	"cash_sub_sleeves.bad.yml": {
		"cash_sub_sleeves.bad.yml:9: targets.cash.sleeves: the cash sleeve cannot have sub-sleeves",
	},
	"anchors.bad.yml": {
		"anchors.bad.yml:5: targets.stocks: YAML anchors and aliases are not supported",
		"anchors.bad.yml:8: bands: YAML anchors and aliases are not supported",
		"anchors.bad.yml:15: accounts.roth.may_hold: YAML anchors and aliases are not supported",
	},
	"syntax.bad.yml": {
		"syntax.bad.yml:6: YAML syntax: did not find expected ',' or '}'",
	},
	"empty.bad.yml": {
		"empty.bad.yml: file is empty",
	},
	"comments_only.bad.yml": {
		"comments_only.bad.yml: file is empty",
	},
	"multi_doc.bad.yml": {
		"multi_doc.bad.yml:3: file holds more than one YAML document",
	},
	"top_level_list.bad.yml": {
		"top_level_list.bad.yml:2: top level must be a mapping of fields",
	},
	"bad_names.bad.yml": {
		`bad_names.bad.yml:2: policy: "smith.household": use letters, digits, '-' and '_' only (it names NATS subjects)`,
		`bad_names.bad.yml:3: currency: "usd" is not a three-letter ISO 4217 code like USD`,
		`bad_names.bad.yml:5: targets.us stocks: sleeve names use letters, digits, '-' and '_' only`,
		`bad_names.bad.yml:13: instruments.$VTI: symbols use letters, digits and . _ : - only, at most 32 characters`,
		`bad_names.bad.yml:16: accounts.roth.ira: account names use letters, digits, '-' and '_' only (they name NATS subjects)`,
		`bad_names.bad.yml:17: accounts.k401.type: "401k" is not an account type (known: taxable, traditional_ira, roth_ira, sep_ira, simple_ira, traditional_401k, roth_401k, 403b, 457b, hsa, 529)`,
	},
	"bad_band.bad.yml": {
		"bad_band.bad.yml:9: bands.absolute: must be between 0% and 100%, got 150%",
		"bad_band.bad.yml:10: bands.within_sleeve: must be between 0% and 100%, got 120%",
		"bad_band.bad.yml:12: bands.sleeves.stocks: set absolute, relative or both",
		`bad_band.bad.yml:13: bands.sleeves.bonds: want a mapping, got "5%"`,
		`bad_band.bad.yml:14: bands.sleeves.cash.within_sleeve: "ten" is not a percentage; write it like 55%`,
	},
	"bad_check_every.bad.yml": {
		`bad_check_every.bad.yml:12: rebalance.check_every: want a positive duration like 5m or 1h, got "5 minutes"`,
	},
	"not_held.bad.yml": {
		"not_held.bad.yml:14: instruments.BND: no account may hold it (see accounts.*.may_hold), yet its sleeve has a target",
	},
	"glide_no_investor.bad.yml": {
		"glide_no_investor.bad.yml:8: glide_path: needs investor.birth_date: the rows' ages are counted from it",
		`glide_no_investor.bad.yml:10: glide_path[1].age: "retirement" needs investor.retirement_age`,
	},
	// Rows are checked against the tree of targets, level by level.
	"glide_rows.bad.yml": {
		"glide_rows.bad.yml:19: glide_path[1].age: ages must increase down the table: 35 follows 40 (line 14)",
		`glide_rows.bad.yml:22: glide_path[1].targets.crypto: sleeve "crypto" has sub-sleeves in targets: give its weight and sleeves here too`,
		"glide_rows.bad.yml:24: glide_path[2].age: want a whole number of years from 0 to 150, got 41.5",
		`glide_rows.bad.yml:26: glide_path[2].targets: sleeve "cash" of targets is missing: every row gives the whole tree`,
		`glide_rows.bad.yml:27: glide_path[2].targets.crypto.sleeves.tiny: no sleeve "crypto/tiny" in targets (a row has the sleeves of targets: crypto/large, crypto/small)`,
		`glide_rows.bad.yml:27: glide_path[2].targets.crypto.sleeves: sleeve "crypto/small" of targets is missing`,
		`glide_rows.bad.yml:28: glide_path[3].age: "retirement" needs investor.retirement_age`,
		"glide_rows.bad.yml:30: glide_path[3].targets: level sums to 95%, want 100%",
		"glide_rows.bad.yml:31: glide_path[3].targets.crypto.sleeves: level sums to 90%, want 100%",
		`glide_rows.bad.yml:32: glide_path[3].targets.cash.sleeves: sleeve "cash" has no sub-sleeves in targets`,
		"glide_rows.bad.yml:33: glide_path[4].age: required field is missing",
		`glide_rows.bad.yml:33: glide_path[4].targets: sleeve "crypto" of targets is missing`,
		`glide_rows.bad.yml:33: glide_path[4].targets: sleeve "cash" of targets is missing`,
		"glide_rows.bad.yml:34: glide_path[5].age: want a whole number of years from 0 to 150, got 200",
		"glide_rows.bad.yml:34: glide_path[5].targets: required field is missing",
		"glide_rows.bad.yml:35: glide_path[5].stocks: unknown field (known: age, targets)",
		"glide_rows.bad.yml:36: glide_path[6]: want a mapping, got the number 45",
		"glide_rows.bad.yml:37: glide_path_typo: unknown field",
	},
	"investor.bad.yml": {
		`investor.bad.yml:5: investor.birth_date: want a date like 1990-05-01 (year, month, day), got "05/01/1990"`,
		"investor.bad.yml:6: investor.retirement_age: must be above 0",
		"investor.bad.yml:7: investor.name: unknown field (known: birth_date, retirement_age, time_zone)",
	},
	"investor_missing_birth.bad.yml": {
		"investor_missing_birth.bad.yml:4: investor.birth_date: required field is missing",
		"investor_missing_birth.bad.yml:4: investor.retirement_age: want a whole number of years from 0 to 150, got 67.5",
	},
	"tilts.bad.yml": {
		`tilts.bad.yml:13: tilts[0].sleeve: no sleeve "gold" in targets (known: stocks, bonds, crypto, crypto/large, cash)`,
		"tilts.bad.yml:14: tilts[1].tilt: want a change from -100% to +100%, other than 0%, got 0%",
		"tilts.bad.yml:15: tilts[2].tilt: want a change from -100% to +100%, other than 0%, got 150%",
		`tilts.bad.yml:16: tilts[3].tilt: "2" is not a percentage; write it like 55%`,
		`tilts.bad.yml:17: tilts[4].until: want a date like 1990-05-01 (year, month, day), got "31.03.2027"`,
		"tilts.bad.yml:18: tilts[5].reason: required field is missing",
		"tilts.bad.yml:19: tilts[6].reason: must not be empty",
		`tilts.bad.yml:20: tilts[7].from: "crypto/large" is not a sibling of "stocks": a tilt takes from sleeves of its level (bonds, crypto, cash)`,
		`tilts.bad.yml:20: tilts[7].from: "stocks" is the tilted sleeve itself`,
		`tilts.bad.yml:20: tilts[7].from: "bonds" is listed twice`,
		"tilts.bad.yml:21: tilts[8].from: no sleeves (leave from out to take from every sibling pro rata)",
		`tilts.bad.yml:22: tilts[9].sleeve: sleeve "crypto/large" has no siblings to take from or give to`,
		"tilts.bad.yml:23: tilts[10].since: unknown field (known: sleeve, tilt, until, reason, from)",
	},
	// A sleeve at 0% in targets that a glide path row or a tilt may raise
	// needs an instrument, and an account that may hold it; bonds at 0%
	// everywhere but in a row counts, reits raised by a tilt too.
	"strategy_coverage.bad.yml": {
		`strategy_coverage.bad.yml:8: targets.gold: sleeve "gold" has a target but no instrument fills it (from the glide path or a tilt)`,
		`strategy_coverage.bad.yml:9: targets.reits: sleeve "reits" has a target but no instrument fills it (from the glide path or a tilt)`,
		"strategy_coverage.bad.yml:25: instruments.BND: no account may hold it (see accounts.*.may_hold), yet its sleeve has a target (from the glide path or a tilt)",
	},
	// Every problem of the file at once, in line order.
	"many_problems.bad.yml": {
		`many_problems.bad.yml:2: policy: "many problems": use letters, digits, '-' and '_' only`,
		"many_problems.bad.yml:4: color: unknown field",
		`many_problems.bad.yml:7: targets.bonds: "30" is not a percentage; write it like 55%`,
		"many_problems.bad.yml:11: targets.crypto.sleeves: level sums to 90%, want 100%",
		`many_problems.bad.yml:17: bands.sleeves.crypt: no sleeve "crypt" in targets (known: stocks, bonds, crypto, crypto/large_cap, crypto/growth, cash)`,
		`many_problems.bad.yml:20: rebalance.schedule: "@quarterly": @quarterly does not exist in cron; write "0 0 1 1,4,7,10 *"`,
		`many_problems.bad.yml:21: rebalance.destination: "edge" is not a destination`,
		"many_problems.bad.yml:22: rebalance.min_trade: must not be negative, got -1",
		`many_problems.bad.yml:24: instruments.VTI.step: "1e3" is not a plain decimal number`,
		`many_problems.bad.yml:25: instruments.BTC.sleeve: sleeve "crypto" has sub-sleeves; name one of them`,
		`many_problems.bad.yml:26: instruments.SOL.sleeve: no sleeve "crypto/moon" in targets`,
		"many_problems.bad.yml:27: instruments.VTI: duplicate key (first defined at line 24)",
		`many_problems.bad.yml:29: accounts.roth.may_hold: no instrument "GME" in instruments`,
	},
}

func TestBadFiles(t *testing.T) {
	yamltest.BadFiles(t, "testdata/*.bad.yml", badFiles, func(path, name string, data []byte) (error, bool) {
		p, err := Parse(name, data)
		if err != nil {
			yamltest.CheckFailure(t, err, name, data)
		}
		return err, p != nil
	})
	if n := len(badFiles["many_problems.bad.yml"]); n != 13 {
		t.Errorf("many_problems.bad.yml should show 13 problems at once, the table lists %d", n)
	}
}

func TestFileTooBig(t *testing.T) {
	_, data := readFile(t, examplePath)
	pad := bytes.Repeat([]byte("#"), strictyaml.MaxFileSize-len(data))
	atLimit := append(append([]byte{}, data...), pad...)
	if _, err := Parse("limit.yml", atLimit); err != nil {
		t.Errorf("file of exactly %d bytes: %v", len(atLimit), err)
	}
	tooBig := append(atLimit, '\n')
	_, err := Parse("big.yml", tooBig)
	if err == nil {
		t.Fatal("Parse accepted a file over the size limit")
	}
	want := fmt.Sprintf("big.yml: file is %d bytes, larger than the limit of %d", len(tooBig), strictyaml.MaxFileSize)
	yamltest.Match(t, yamltest.Problems(t, err, "big.yml"), []string{want})
}

// dropTopLevel removes a top-level field, with every line below it, from
// a policy file.
func dropTopLevel(data []byte, key string) []byte {
	var out []string
	skipping := false
	for _, line := range strings.SplitAfter(string(data), "\n") {
		top := line != "" && line[0] != ' ' && line[0] != '#' && line[0] != '\n'
		if top {
			skipping = strings.HasPrefix(line, key+":")
		}
		if !skipping {
			out = append(out, line)
		}
	}
	return []byte(strings.Join(out, ""))
}

func TestMissingTopLevelField(t *testing.T) {
	_, data := readFile(t, examplePath)
	// The example's first field is on line 2, after a comment; without
	// "policy", "currency" takes its place.
	tests := []struct {
		key  string
		want []string
	}{
		{"policy", []string{"x.yml:2: policy: required field is missing"}},
		{"currency", []string{"x.yml:2: currency: required field is missing"}},
		{"targets", []string{"x.yml:2: targets: required field is missing"}},
		{"bands", []string{"x.yml:2: bands: required field is missing"}},
		{"rebalance", []string{"x.yml:2: rebalance: required field is missing"}},
		{"accounts", []string{"x.yml:2: accounts: required field is missing"}},
		// may_hold then names instruments that are not there.
		{"instruments", []string{
			"x.yml:2: instruments: required field is missing",
			`x.yml:28: accounts.k401.may_hold: no instrument "VTI" in instruments`,
			`x.yml:28: accounts.k401.may_hold: no instrument "BND" in instruments`,
			`x.yml:28: accounts.k401.may_hold: no instrument "VMFXX" in instruments`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			in := dropTopLevel(data, tt.key)
			if bytes.Equal(in, data) || bytes.Contains(in, []byte("\n"+tt.key+":")) {
				t.Fatalf("did not drop %s", tt.key)
			}
			_, err := Parse("x.yml", in)
			if err == nil {
				t.Fatalf("Parse succeeded without %s", tt.key)
			}
			yamltest.Match(t, yamltest.Problems(t, err, "x.yml"), tt.want)
		})
	}
}

func TestExamplePolicy(t *testing.T) {
	p := parseFile(t, examplePath)
	if p.Name != "smith-household" || p.Currency != "USD" || p.File != "example.yaml" {
		t.Errorf("Name, Currency, File = %q, %q, %q", p.Name, p.Currency, p.File)
	}
	sleeves := []struct {
		path          string
		parent        string
		local, target string
		halfWidth     string
		line          int
	}{
		{"equities", "", "0.55", "0.55", "0.05", 5},                  // min(5%, 25% x 55% = 13.75%)
		{"bonds", "", "0.25", "0.25", "0.05", 6},                     // min(5%, 6.25%)
		{"real_estate", "", "0.10", "0.10", "0.025", 7},              // min(5%, 2.5%)
		{"crypto", "", "0.05", "0.05", "0.02", 8},                    // override: absolute 2% only
		{"crypto/large_cap", "crypto", "0.65", "0.0325", "0.02", 11}, // inherits the override
		{"crypto/balanced", "crypto", "0.25", "0.0125", "0.02", 12},
		{"crypto/growth", "crypto", "0.10", "0.005", "0.02", 13},
		{"cash", "", "0.05", "0.05", "0.0125", 14}, // min(5%, 1.25%)
	}
	if len(p.Sleeves) != len(sleeves) {
		t.Fatalf("%d sleeves, want %d", len(p.Sleeves), len(sleeves))
	}
	for i, want := range sleeves {
		s := p.Sleeves[i]
		parent := ""
		if s.Parent >= 0 {
			parent = p.Sleeves[s.Parent].Path
		}
		if s.Path != want.path || parent != want.parent || s.Line != want.line {
			t.Errorf("sleeve %d = %s (parent %q, line %d), want %s (parent %q, line %d)", i, s.Path, parent, s.Line, want.path, want.parent, want.line)
		}
		if !s.Local.Equal(dec(want.local)) || !s.Target.Equal(dec(want.target)) || !s.HalfWidth.Equal(dec(want.halfWidth)) {
			t.Errorf("%s: local %s target %s half-width %s, want %s %s %s", s.Path, s.Local, s.Target, s.HalfWidth, want.local, want.target, want.halfWidth)
		}
	}
	if p.Sleeves[p.Cash].Path != CashSleeve {
		t.Errorf("Cash = %d (%s)", p.Cash, p.Sleeves[p.Cash].Path)
	}
	// The override replaces the 5/25 rule for crypto and below: no
	// relative part is inherited from the global band.
	crypto := p.Sleeves[3].Band
	if !crypto.HasAbsolute || crypto.HasRelative || !crypto.Absolute.Equal(dec("0.02")) {
		t.Errorf("crypto band = %+v, want absolute 2%% only", crypto)
	}
	if p.Sleeves[4].Band != crypto {
		t.Errorf("crypto/large_cap band = %+v, want crypto's %+v", p.Sleeves[4].Band, crypto)
	}
	eq := p.Sleeves[0].Band
	if !eq.HasAbsolute || !eq.HasRelative || !eq.Absolute.Equal(dec("0.05")) || !eq.Relative.Equal(dec("0.25")) {
		t.Errorf("equities band = %+v, want the global 5/25 rule", eq)
	}

	instruments := []struct {
		symbol, sleeve, share, step string
		line                        int
	}{
		{"VTI", "equities", "0.7", "1", 27},
		{"VXUS", "equities", "0.3", "1", 28},
		{"BND", "bonds", "1", "1", 29},
		{"VNQ", "real_estate", "1", "1", 30},
		{"TM-LARGE", "crypto/large_cap", "1", "0.0001", 31},
		{"TM-BAL", "crypto/balanced", "1", "0.0001", 32},
		{"TM-GROWTH", "crypto/growth", "1", "0.0001", 33},
		{"VMFXX", "cash", "1", "1", 34},
	}
	if len(p.Instruments) != len(instruments) {
		t.Fatalf("%d instruments, want %d", len(p.Instruments), len(instruments))
	}
	for i, want := range instruments {
		in := p.Instruments[i]
		if in.Symbol != want.symbol || p.Sleeves[in.Sleeve].Path != want.sleeve || in.Line != want.line ||
			!in.Share.Equal(dec(want.share)) || !in.Step.Equal(dec(want.step)) {
			t.Errorf("instrument %d = %s in %s share %s step %s line %d, want %+v",
				i, in.Symbol, p.Sleeves[in.Sleeve].Path, in.Share, in.Step, in.Line, want)
		}
		if j, ok := p.InstrumentIndex(want.symbol); !ok || j != i {
			t.Errorf("InstrumentIndex(%s) = %d, %v", want.symbol, j, ok)
		}
	}
	if i, ok := p.SleeveIndex("crypto/large_cap"); !ok || i != 4 {
		t.Errorf("SleeveIndex(crypto/large_cap) = %d, %v", i, ok)
	}
	if _, ok := p.SleeveIndex("large_cap"); ok {
		t.Errorf("SleeveIndex found a sub-sleeve by its bare name")
	}
	if _, ok := p.InstrumentIndex("AAPL"); ok {
		t.Errorf("InstrumentIndex found AAPL")
	}

	accounts := []struct {
		name     string
		typ      AccountType
		reserve  string
		mayHold  []string // nil: all
		advTaxed bool
		line     int
	}{
		{"roth", AccountRothIRA, "0", nil, true, 36},
		{"k401", AccountTraditional401k, "0", []string{"VTI", "BND", "VMFXX"}, true, 37},
		{"taxable", AccountTaxable, "20000", nil, false, 38},
	}
	if len(p.Accounts) != len(accounts) {
		t.Fatalf("%d accounts, want %d", len(p.Accounts), len(accounts))
	}
	for i, want := range accounts {
		a := &p.Accounts[i]
		if a.Name != want.name || a.Type != want.typ || !a.Reserve.Equal(dec(want.reserve)) || a.Line != want.line ||
			a.Type.TaxAdvantaged() != want.advTaxed {
			t.Errorf("account %d = %s %s reserve %s line %d, want %+v", i, a.Name, a.Type, a.Reserve, a.Line, want)
		}
		if j, ok := p.AccountIndex(want.name); !ok || j != i {
			t.Errorf("AccountIndex(%s) = %d, %v", want.name, j, ok)
		}
		if (a.MayHold == nil) != (want.mayHold == nil) {
			t.Errorf("%s: MayHold = %v, want %v", a.Name, a.MayHold, want.mayHold)
		}
		for j, in := range p.Instruments {
			allowed := want.mayHold == nil || slices.Contains(want.mayHold, in.Symbol)
			if a.Allows(j) != allowed {
				t.Errorf("%s.Allows(%s) = %v, want %v", a.Name, in.Symbol, a.Allows(j), allowed)
			}
		}
	}

	rb := p.Rebalance
	if rb.Trigger != TriggerHybrid || rb.Schedule != "CRON_TZ=America/New_York 0 10 * * MON-FRI" ||
		rb.CheckEvery != 5*time.Minute || rb.Destination != DestinationTarget || !rb.MinTrade.Equal(dec("50")) {
		t.Errorf("Rebalance = %+v", rb)
	}
	// Friday 2026-11-20 16:00 UTC is 11:00 in New York: the next weekday
	// 10:00 there is Monday 2026-11-23 10:00 EST, 15:00 UTC.
	next := rb.Cron.Next(time.Date(2026, 11, 20, 16, 0, 0, 0, time.UTC))
	if want := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC); !next.Equal(want) {
		t.Errorf("next firing = %v, want %v", next, want)
	}
}

func TestMinimalDefaults(t *testing.T) {
	p := parseFile(t, "testdata/minimal.good.yml")
	rb := p.Rebalance
	if rb.Trigger != TriggerThreshold || rb.Schedule != "" || rb.Cron != nil || rb.CheckEvery != DefaultCheckEvery ||
		rb.Destination != DestinationTarget || !rb.MinTrade.IsZero() ||
		rb.Cooldown != DefaultCooldown || rb.OrderTTL != DefaultOrderTTL {
		t.Errorf("Rebalance = %+v, want threshold with defaults", rb)
	}
	if p.Prices.MaxAge != DefaultMaxAge || !p.Prices.MaxMove.Equal(dec("0.1")) || p.Prices.ConfirmAfter != 5*time.Minute {
		t.Errorf("Prices = %+v, want 15m, 10%% and 5m", p.Prices)
	}
	if l := p.Limits; !l.MaxOrderNotional.IsZero() || !l.MaxOrderShare.Equal(dec("0.25")) || !l.MaxTurnover.Equal(dec("1")) ||
		l.MaxOrders != 100 || l.MaxPlansPerDay != 6 || !l.MaxValueChange.Equal(dec("0.2")) {
		t.Errorf("Limits = %+v, want the defaults", l)
	}
	for i, in := range p.Instruments {
		if !in.Step.Equal(decimal.NewFromInt(1)) || !in.Share.Equal(decimal.NewFromInt(1)) {
			t.Errorf("%s: step %s share %s, want 1 and 1", in.Symbol, in.Step, in.Share)
		}
		if !p.Accounts[0].Allows(i) {
			t.Errorf("account without may_hold refuses %s", in.Symbol)
		}
	}
	a := p.Accounts[0]
	if a.MayHold != nil || !a.Reserve.IsZero() || a.Type.TaxAdvantaged() {
		t.Errorf("account = %+v, want taxable, no reserve, no may_hold", a)
	}
	// Only the absolute part is set: every sleeve gets it, whatever its target.
	for _, s := range p.Sleeves {
		if !s.HalfWidth.Equal(dec("0.05")) {
			t.Errorf("%s half-width %s, want 0.05", s.Path, s.HalfWidth)
		}
	}
}

func TestDaemonFields(t *testing.T) {
	p := parseFile(t, "testdata/daemon.good.yml")
	rb := p.Rebalance
	if rb.Cooldown != 4*time.Hour || rb.OrderTTL != 90*time.Minute || rb.CheckEvery != 10*time.Second {
		t.Errorf("Rebalance = %+v, want cooldown 4h, order_ttl 1h30m, check_every 10s", rb)
	}
	if p.Prices.MaxAge != 2*time.Minute || !p.Prices.MaxMove.Equal(dec("0.075")) || p.Prices.ConfirmAfter != 2*time.Minute {
		t.Errorf("Prices = %+v, want 2m, 7.5%% and 2m", p.Prices)
	}
	l := p.Limits
	if !l.MaxOrderNotional.Equal(dec("25000")) || !l.MaxOrderShare.Equal(dec("0.2")) || !l.MaxTurnover.Equal(dec("0.6")) ||
		l.MaxOrders != 12 || l.MaxPlansPerDay != 2 || !l.MaxValueChange.Equal(dec("0.35")) {
		t.Errorf("Limits = %+v", l)
	}
}

func TestEqualSplit(t *testing.T) {
	p := parseFile(t, "testdata/equal_split.good.yml")
	tests := []struct {
		sleeve string
		shares []string
	}{
		{"thirds", []string{"0.333333333333", "0.333333333333", "0.333333333334"}},
		{"sevenths", []string{"0.142857142857", "0.142857142857", "0.142857142857", "0.142857142857", "0.142857142857", "0.142857142857", "0.142857142858"}},
	}
	for _, tt := range tests {
		i, ok := p.SleeveIndex(tt.sleeve)
		if !ok {
			t.Fatalf("no sleeve %s", tt.sleeve)
		}
		s := p.Sleeves[i]
		if len(s.Instruments) != len(tt.shares) {
			t.Fatalf("%s: %d instruments, want %d", tt.sleeve, len(s.Instruments), len(tt.shares))
		}
		sum := decimal.Zero
		for k, j := range s.Instruments {
			share := p.Instruments[j].Share
			if !share.Equal(dec(tt.shares[k])) {
				t.Errorf("%s: share %s, want %s", p.Instruments[j].Symbol, share, tt.shares[k])
			}
			sum = sum.Add(share)
		}
		if !sum.Equal(decimal.NewFromInt(1)) {
			t.Errorf("%s: shares sum to %s, want exactly 1", tt.sleeve, sum)
		}
	}
	// Relative band only: the half-width scales with the target.
	for _, want := range []struct{ sleeve, hw string }{{"thirds", "0.14"}, {"sevenths", "0.04"}, {"cash", "0.02"}} {
		i, _ := p.SleeveIndex(want.sleeve)
		if hw := p.Sleeves[i].HalfWidth; !hw.Equal(dec(want.hw)) {
			t.Errorf("%s half-width %s, want %s", want.sleeve, hw, want.hw)
		}
	}
	if p.Rebalance.Destination != DestinationBandEdge || p.Rebalance.Trigger != TriggerCalendar {
		t.Errorf("Rebalance = %+v", p.Rebalance)
	}
	next := p.Rebalance.Cron.Next(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC))
	if want := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC); !next.Equal(want) {
		t.Errorf("quarterly schedule fires next at %v, want %v", next, want)
	}
}

func TestNestedPolicy(t *testing.T) {
	p := parseFile(t, "testdata/nested.good.yml")
	tests := []struct {
		path, target, hw string
		band             string
	}{
		{"growth", "0.8", "0.04", "global"},                      // min(4%, 20% x 80%)
		{"growth/equity", "0.6", "0.06", "relative 10%"},         // 10% x 60%; no absolute part
		{"growth/equity/home", "0.24", "0.01", "own"},            // min(1%, 50% x 24%)
		{"growth/equity/world", "0.36", "0.036", "relative 10%"}, // inherits growth/equity
		{"growth/alternatives", "0.2", "0.04", "global"},         // inherits growth: min(4%, 4%)
		{"cash", "0.2", "0.04", "global"},
	}
	for _, tt := range tests {
		i, ok := p.SleeveIndex(tt.path)
		if !ok {
			t.Errorf("no sleeve %s", tt.path)
			continue
		}
		s := p.Sleeves[i]
		if !s.Target.Equal(dec(tt.target)) || !s.HalfWidth.Equal(dec(tt.hw)) {
			t.Errorf("%s: target %s half-width %s, want %s %s (%s band)", tt.path, s.Target, s.HalfWidth, tt.target, tt.hw, tt.band)
		}
	}
	rb := p.Rebalance
	if rb.Trigger != TriggerHybrid || rb.Schedule != "@monthly" || rb.CheckEvery != 90*time.Minute ||
		rb.Destination != DestinationMidway || !rb.MinTrade.Equal(dec("25.5")) {
		t.Errorf("Rebalance = %+v", rb)
	}
	steps := map[string]string{"VUKE": "1", "VWRL": "1", "GLD": "0.001"}
	for _, in := range p.Instruments {
		if !in.Step.Equal(dec(steps[in.Symbol])) {
			t.Errorf("%s step %s, want %s", in.Symbol, in.Step, steps[in.Symbol])
		}
	}
	isa, _ := p.AccountIndex("isa")
	if r := p.Accounts[isa].Reserve.String(); r != "1234567890.123456789" {
		t.Errorf("isa reserve = %s, want 1234567890.123456789 exactly", r)
	}
	allowed := map[string][]string{"isa": {"VUKE", "VWRL"}, "sipp": {"VWRL", "GLD"}}
	for _, a := range p.Accounts {
		var got []string
		for i, in := range p.Instruments {
			if a.Allows(i) {
				got = append(got, in.Symbol)
			}
		}
		if strings.Join(got, ",") != strings.Join(allowed[a.Name], ",") {
			t.Errorf("%s may hold %v, want %v", a.Name, got, allowed[a.Name])
		}
	}
}

func TestExactPercentages(t *testing.T) {
	p := parseFile(t, "testdata/exact.good.yml")
	want := map[string]string{"a": "0.3333", "b": "0.3333", "c": "0.333333", "cash": "0.000067"}
	for path, target := range want {
		i, _ := p.SleeveIndex(path)
		if !p.Sleeves[i].Target.Equal(dec(target)) {
			t.Errorf("%s target %s, want %s", path, p.Sleeves[i].Target, target)
		}
	}
	shares := map[string]string{"A1": "0.101", "A2": "0.202", "A3": "0.697", "B1": "1", "C1": "1"}
	for _, in := range p.Instruments {
		if !in.Share.Equal(dec(shares[in.Symbol])) {
			t.Errorf("%s share %s, want %s", in.Symbol, in.Share, shares[in.Symbol])
		}
	}
	// 0.1% absolute versus 12.5% of 0.000067: the relative part is smaller.
	cash := p.Sleeves[p.Cash]
	if !cash.HalfWidth.Equal(dec("0.000008375")) {
		t.Errorf("cash half-width %s, want 0.000008375", cash.HalfWidth)
	}
	if !p.Rebalance.MinTrade.Equal(dec("0.1")) || p.Accounts[0].Reserve.String() != "0.3" {
		t.Errorf("min_trade %s reserve %s", p.Rebalance.MinTrade, p.Accounts[0].Reserve)
	}
}

func TestZeroTarget(t *testing.T) {
	p := parseFile(t, "testdata/zero_target.good.yml")
	gold, _ := p.SleeveIndex("gold")
	if s := p.Sleeves[gold]; !s.Target.IsZero() || !s.HalfWidth.Equal(dec("0.03")) || len(s.Instruments) != 0 {
		t.Errorf("gold: target %s half-width %s instruments %v; want 0, the absolute 3%%, none", s.Target, s.HalfWidth, s.Instruments)
	}
	if p.Rebalance.CheckEvery != 30*time.Second {
		t.Errorf("CheckEvery = %v", p.Rebalance.CheckEvery)
	}
}

func TestBandHalfWidth(t *testing.T) {
	abs := func(a string) Band { return Band{Absolute: dec(a), HasAbsolute: true} }
	rel := func(r string) Band { return Band{Relative: dec(r), HasRelative: true} }
	both := func(a, r string) Band {
		return Band{Absolute: dec(a), HasAbsolute: true, Relative: dec(r), HasRelative: true}
	}
	tests := []struct {
		band   Band
		target string
		want   string
	}{
		{both("0.05", "0.25"), "0.55", "0.05"},
		{both("0.05", "0.25"), "0.1", "0.025"},
		{both("0.05", "0.25"), "0.2", "0.05"},
		{both("0.05", "0.25"), "0", "0.05"}, // a 0% target uses the absolute part
		{abs("0.02"), "0.0325", "0.02"},
		{rel("0.25"), "0.0325", "0.008125"},
		{rel("0.25"), "0", "0"},
		{Band{}, "0.5", "0"},
	}
	for _, tt := range tests {
		if got := tt.band.HalfWidth(dec(tt.target)); !got.Equal(dec(tt.want)) {
			t.Errorf("%+v.HalfWidth(%s) = %s, want %s", tt.band, tt.target, got, tt.want)
		}
	}
}

func TestVersion(t *testing.T) {
	_, data := readFile(t, examplePath)
	p1, err1 := Parse("a.yml", data)
	p2, err2 := Parse("b.yml", append([]byte{}, data...))
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	sum := sha256.Sum256(data)
	if want := hex.EncodeToString(sum[:])[:16]; p1.Version != want {
		t.Errorf("Version = %s, want %s", p1.Version, want)
	}
	if p1.Version != p2.Version {
		t.Errorf("same bytes, different versions: %s, %s", p1.Version, p2.Version)
	}
	// Any change of the bytes, even a comment, is a new version.
	for _, edit := range [][]byte{
		append(append([]byte{}, data...), "# edited\n"...),
		bytes.Replace(data, []byte("min_trade: \"50\""), []byte("min_trade: \"51\""), 1),
		bytes.Replace(data, []byte("currency: USD"), []byte("currency:  USD"), 1),
	} {
		p3, err := Parse("c.yml", edit)
		if err != nil {
			t.Fatal(err)
		}
		if p3.Version == p1.Version {
			t.Errorf("edited file keeps version %s", p1.Version)
		}
	}
}

func TestParseSchedule(t *testing.T) {
	from := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC) // a Friday
	tests := []struct {
		spec string
		next string // RFC 3339 in UTC, or the start of the error
	}{
		{"0 10 * * MON-FRI", "2026-11-23T10:00:00Z"},
		{"CRON_TZ=America/New_York 0 10 * * MON-FRI", "2026-11-20T15:00:00Z"}, // 07:00 in New York
		{"TZ=Europe/London 30 9 1 * *", "2026-12-01T09:30:00Z"},
		{"0 0 1 1,4,7,10 *", "2027-01-01T00:00:00Z"},
		{"@monthly", "2026-12-01T00:00:00Z"},
		{"@weekly", "2026-11-22T00:00:00Z"},
		{"@every 1h", "2026-11-20T13:00:00Z"},
		{"0 0 29 2 *", "2028-02-29T00:00:00Z"},
		{"CRON_TZ=UTC", `"CRON_TZ=UTC" names a time zone but no schedule`},
		{"TZ=UTC", `"TZ=UTC" names a time zone but no schedule`},
		{"CRON_TZ=UTC\t@daily", `"CRON_TZ=UTC\t@daily" names a time zone but no schedule`},
		{"CRON_TZ=Mars/Olympus 0 0 * * *", `"CRON_TZ=Mars/Olympus 0 0 * * *" is not a valid cron schedule: provided bad location Mars/Olympus`},
		{"0 0 30 2 *", `"0 0 30 2 *" never fires`},
		{"0 0 31 4,6,9,11 *", `"0 0 31 4,6,9,11 *" never fires`},
		{"@quarterly", `"@quarterly": @quarterly does not exist in cron; write "0 0 1 1,4,7,10 *"`},
		{"CRON_TZ=UTC @quarterly", `"CRON_TZ=UTC @quarterly": @quarterly does not exist in cron; write "0 0 1 1,4,7,10 *"`},
		{"@every 0s", `"@every 0s": the interval of @every must be at least 1s`},
		{"@every -5m", `"@every -5m": the interval of @every must be at least 1s`},
		{"@every soon", `"@every soon" is not a valid cron schedule: failed to parse duration`},
		{"@fortnightly", `"@fortnightly" is not a valid cron schedule: unrecognized descriptor`},
		{"", `"" is not a valid cron schedule: empty spec string`},
		{"* * * *", `"* * * *" is not a valid cron schedule: expected exactly 5 fields, found 4`},
		{"0 0 0 10 * *", `"0 0 0 10 * *" is not a valid cron schedule: expected exactly 5 fields, found 6`},
		{"60 * * * *", `"60 * * * *" is not a valid cron schedule: end of range (60) above maximum (59)`},
		{"0 0 * * 7", `"0 0 * * 7" is not a valid cron schedule`},
	}
	for _, tt := range tests {
		sched, err := ParseSchedule(tt.spec)
		var got string
		if err != nil {
			got = err.Error()
			if sched != nil {
				t.Errorf("ParseSchedule(%q) returned a schedule with its error", tt.spec)
			}
		} else {
			got = sched.Next(from).UTC().Format(time.RFC3339)
		}
		if !strings.HasPrefix(got, tt.next) {
			t.Errorf("ParseSchedule(%q) = %s, want %s", tt.spec, got, tt.next)
		}
	}
}

// TestKnownListBounded checks that a message about an unknown sleeve lists
// a bounded number of known ones: with every message listing every sleeve,
// a 1 MB file with many sleeves and many bad references needed gigabytes.
func TestKnownListBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("policy: many\ncurrency: USD\ntargets:\n  cash: 100%\n  s:\n    weight: 0%\n    sleeves:\n")
	for i := range 100 {
		fmt.Fprintf(&b, "      s%d: 1%%\n", i)
	}
	b.WriteString("bands: {absolute: 1%}\nrebalance: {trigger: threshold}\naccounts: {a: {type: hsa}}\ninstruments:\n")
	const bad = 50
	for i := range bad {
		fmt.Fprintf(&b, "  I%d: {sleeve: nowhere}\n", i)
	}
	_, err := Parse("many.yml", []byte(b.String()))
	es := strictyaml.AsErrors(err)
	if len(es) != bad {
		t.Fatalf("%d problems, want %d:\n%v", len(es), bad, err)
	}
	want := `no sleeve "nowhere" in targets (known: cash, s, s/s0, s/s1, s/s2, s/s3, s/s4, s/s5, s/s6, s/s7, s/s8, s/s9, s/s10, s/s11, s/s12, s/s13, s/s14, s/s15, s/s16, s/s17 and 82 more)`
	for _, e := range es {
		if e.Msg != want {
			t.Fatalf("message %q, want %q", e.Msg, want)
		}
	}
}

// checkPolicy checks the invariants every parsed policy keeps.
func checkPolicy(t testing.TB, p *Policy, file string, data []byte) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s: "+format, append([]any{file}, args...)...)
	}
	one := decimal.NewFromInt(1)
	sum := sha256.Sum256(data)
	if p.File != file || p.Version != hex.EncodeToString(sum[:8]) {
		fail("File %q Version %q", p.File, p.Version)
	}
	if !identifier.MatchString(p.Name) || !currency.MatchString(p.Currency) {
		fail("Name %q Currency %q", p.Name, p.Currency)
	}
	if p.Cash < 0 || p.Cash >= len(p.Sleeves) || p.Sleeves[p.Cash].Path != CashSleeve || p.Sleeves[p.Cash].Parent != -1 || !p.Sleeves[p.Cash].Leaf() {
		fail("Cash = %d", p.Cash)
	}
	levels := map[int]decimal.Decimal{}
	leaves := decimal.Zero
	for i := range p.Sleeves {
		s := &p.Sleeves[i]
		if j, ok := p.SleeveIndex(s.Path); !ok || j != i {
			fail("SleeveIndex(%s) = %d, %v; want %d", s.Path, j, ok, i)
		}
		if s.Local.Sign() < 0 || s.Local.GreaterThan(one) {
			fail("%s: local weight %s", s.Path, s.Local)
		}
		scale := one
		if s.Parent >= 0 {
			if s.Parent >= i {
				fail("%s: parent %d does not precede it", s.Path, s.Parent)
			}
			parent := &p.Sleeves[s.Parent]
			if !strings.HasPrefix(s.Path, parent.Path+"/") || !slices.Contains(parent.Children, i) {
				fail("%s: not a child of %s", s.Path, parent.Path)
			}
			scale = parent.Target
		} else if strings.Contains(s.Path, "/") {
			fail("%s: top-level path with a slash", s.Path)
		}
		if !s.Target.Equal(s.Local.Mul(scale)) {
			fail("%s: target %s, want %s x %s", s.Path, s.Target, s.Local, scale)
		}
		levels[s.Parent] = levels[s.Parent].Add(s.Local)
		for _, c := range s.Children {
			if p.Sleeves[c].Parent != i {
				fail("%s: child %d has parent %d", s.Path, c, p.Sleeves[c].Parent)
			}
		}
		if !s.HalfWidth.Equal(s.Band.HalfWidth(s.Target)) || s.HalfWidth.Sign() < 0 {
			fail("%s: half-width %s", s.Path, s.HalfWidth)
		}
		if s.Leaf() {
			leaves = leaves.Add(s.Target)
			if i != p.Cash && s.Target.Sign() > 0 && len(s.Instruments) == 0 {
				fail("%s: target and no instrument", s.Path)
			}
		} else if len(s.Instruments) > 0 {
			fail("%s: instruments in a sleeve with sub-sleeves", s.Path)
		}
	}
	for parent, total := range levels {
		if !total.Equal(one) {
			fail("level under %d sums to %s", parent, total)
		}
	}
	if !leaves.Equal(one) {
		fail("leaf targets sum to %s", leaves)
	}
	shares := map[int]decimal.Decimal{}
	for i := range p.Instruments {
		in := &p.Instruments[i]
		if j, ok := p.InstrumentIndex(in.Symbol); !ok || j != i {
			fail("InstrumentIndex(%s) = %d, %v", in.Symbol, j, ok)
		}
		if in.Sleeve < 0 || in.Sleeve >= len(p.Sleeves) || !p.Sleeves[in.Sleeve].Leaf() || !slices.Contains(p.Sleeves[in.Sleeve].Instruments, i) {
			fail("%s: sleeve %d is not a leaf holding it", in.Symbol, in.Sleeve)
		}
		if in.Step.Sign() <= 0 || in.Share.Sign() < 0 || in.Share.GreaterThan(one) || in.Line <= 0 {
			fail("%s: step %s share %s line %d", in.Symbol, in.Step, in.Share, in.Line)
		}
		shares[in.Sleeve] = shares[in.Sleeve].Add(in.Share)
		if p.Sleeves[in.Sleeve].Target.Sign() > 0 && in.Share.Sign() > 0 {
			held := false
			for a := range p.Accounts {
				held = held || p.Accounts[a].Allows(i)
			}
			if !held {
				fail("%s: targeted, but no account may hold it", in.Symbol)
			}
		}
	}
	for s, total := range shares {
		if !total.Equal(one) {
			fail("shares of %s sum to %s", p.Sleeves[s].Path, total)
		}
	}
	if len(p.Accounts) == 0 {
		fail("no accounts")
	}
	for i := range p.Accounts {
		a := &p.Accounts[i]
		if j, ok := p.AccountIndex(a.Name); !ok || j != i {
			fail("AccountIndex(%s) = %d, %v", a.Name, j, ok)
		}
		if a.Reserve.Sign() < 0 || (a.MayHold != nil && len(a.MayHold) != len(p.Instruments)) || !slices.Contains(AccountTypes, a.Type) {
			fail("account %+v", a)
		}
	}
	rb := p.Rebalance
	switch rb.Trigger {
	case TriggerCalendar, TriggerHybrid:
		if rb.Cron == nil || rb.Schedule == "" {
			fail("%s trigger without a schedule", rb.Trigger)
		}
	case TriggerThreshold:
	default:
		fail("trigger %q", rb.Trigger)
	}
	if (rb.Schedule == "") != (rb.Cron == nil) {
		fail("schedule %q, cron %v", rb.Schedule, rb.Cron)
	}
	if rb.Cron != nil && rb.Cron.Next(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		fail("schedule %q never fires", rb.Schedule)
	}
	switch rb.Destination {
	case DestinationTarget, DestinationBandEdge, DestinationMidway:
	default:
		fail("destination %q", rb.Destination)
	}
	if rb.CheckEvery <= 0 || rb.MinTrade.Sign() < 0 {
		fail("check_every %v min_trade %s", rb.CheckEvery, rb.MinTrade)
	}
	checkStrategy(t, p, fail)
}

// checkStrategy checks the invariants of the investor, glide path and
// tilts of a parsed policy.
func checkStrategy(t testing.TB, p *Policy, fail func(string, ...any)) {
	t.Helper()
	one := decimal.NewFromInt(1)
	midnight := func(d time.Time) bool { return d.Location() == time.UTC && d.Equal(d.Truncate(24*time.Hour)) }
	if inv := p.Investor; inv != nil && (!midnight(inv.BirthDate) || inv.RetirementAge < 0 || inv.RetirementAge > 150) {
		fail("investor %+v", inv)
	}
	if len(p.GlidePath) > 0 && p.Investor == nil {
		fail("glide path without an investor")
	}
	for k, g := range p.GlidePath {
		if g.Age < 0 || g.Age > 150 || (k > 0 && g.Age <= p.GlidePath[k-1].Age) || len(g.Local) != len(p.Sleeves) {
			fail("glide row %d: age %d, %d weights", k, g.Age, len(g.Local))
		}
		for _, level := range p.Levels() {
			sum := decimal.Zero
			for _, i := range level {
				if g.Local[i].Sign() < 0 || g.Local[i].GreaterThan(one) {
					fail("glide row %d: %s weight %s", k, p.Sleeves[i].Path, g.Local[i])
				}
				sum = sum.Add(g.Local[i])
			}
			if !sum.Equal(one) {
				fail("glide row %d: level of %s sums to %s", k, p.Sleeves[level[0]].Path, sum)
			}
		}
	}
	for k, tl := range p.Tilts {
		if tl.Sleeve < 0 || tl.Sleeve >= len(p.Sleeves) || tl.Delta.IsZero() || tl.Delta.Abs().GreaterThan(one) ||
			!midnight(tl.Until) || strings.TrimSpace(tl.Reason) == "" || (tl.From != nil && len(tl.From) == 0) {
			fail("tilt %d: %+v", k, tl)
		}
		for j, f := range tl.From {
			if f == tl.Sleeve || p.Sleeves[f].Parent != p.Sleeves[tl.Sleeve].Parent || slices.Contains(tl.From[:j], f) {
				fail("tilt %d takes from %s", k, p.Sleeves[f].Path)
			}
		}
	}
}

// FuzzParsePolicy checks that Parse never panics, that what it accepts
// keeps every invariant of a Policy, and that what it refuses is reported
// as problems of the file.
func FuzzParsePolicy(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yml")
	for _, path := range append(seeds, examplePath) {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yml", data)
		if err != nil {
			if p != nil {
				t.Fatal("Parse returned a policy with its error")
			}
			yamltest.CheckFailure(t, err, "fuzz.yml", data)
			// Deterministic: the same bytes give the same problems.
			if _, again := Parse("fuzz.yml", data); again == nil || again.Error() != err.Error() {
				t.Fatalf("second parse: %v\nfirst: %v", again, err)
			}
			return
		}
		checkPolicy(t, p, "fuzz.yml", data)
	})
}

// TestWithinSleeve: bands.within_sleeve sets the split tolerance of the
// sleeves it covers; without it, a sleeve's split tolerance is its own
// relative band (half-width / target).
func TestWithinSleeve(t *testing.T) {
	const doc = `policy: w
currency: USD
targets: {stocks: 60%%, bonds: 40%%, cash: 0%%}
bands:
  absolute: 5%%
%s
rebalance: {trigger: threshold}
instruments:
  A: {sleeve: stocks}
  B: {sleeve: bonds}
accounts: {ira: {type: roth_ira}}
`
	for _, tt := range []struct{ bands, stocks, bonds string }{
		// 5 points of 60% and of 40%.
		{"", "0.08333333", "0.125"},
		{"  within_sleeve: 10%", "0.1", "0.1"},
		{"  within_sleeve: 10%\n  sleeves: {bonds: {absolute: 2%, within_sleeve: 30%}}", "0.1", "0.3"},
		// An override without within_sleeve replaces the rule: bonds falls
		// back to its own relative band, 2 points of 40%.
		{"  within_sleeve: 10%\n  sleeves: {bonds: {absolute: 2%}}", "0.1", "0.05"},
	} {
		p, err := Parse("w.yml", []byte(fmt.Sprintf(doc, tt.bands)))
		if err != nil {
			t.Fatalf("%q: %v", tt.bands, err)
		}
		if got := p.Sleeves[0].SplitTolerance(); !got.Equal(dec(tt.stocks)) {
			t.Errorf("%q: stocks split tolerance %s, want %s", tt.bands, got, tt.stocks)
		}
		if got := p.Sleeves[1].SplitTolerance(); !got.Equal(dec(tt.bonds)) {
			t.Errorf("%q: bonds split tolerance %s, want %s", tt.bands, got, tt.bonds)
		}
	}
}

// TestGlideBandAgesBounded: the ages of glide_bands go through the same
// bounded decimal parser as every other number (no exponent, at most 40
// characters).
func TestGlideBandAgesBounded(t *testing.T) {
	data, err := os.ReadFile("../../configs/examples/glidepath-seeds.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, ages := range []string{"2e1-35", "20-" + strings.Repeat("3", 41)} {
		bad := strings.Replace(string(data), "ages: 20-35", "ages: "+ages, 1)
		_, err := Parse("seeds.yaml", []byte(bad))
		if err == nil || !strings.Contains(err.Error(), "want ages like 20-35") {
			t.Errorf("ages %.20s…: %v, want the ages refused", ages, err)
		}
	}
}

// TestSplitToleranceMadeOnce: SplitTolerance gives the division of the
// sleeve's half-width by its target, and Figures the two as figures,
// whether they were made when the policy was derived or are made again
// because Target or HalfWidth changed since.
func TestSplitToleranceMadeOnce(t *testing.T) {
	p := parseFile(t, examplePath)
	figures := func(s *Sleeve) {
		t.Helper()
		tf, hf := s.Figures()
		if tf != dec64.Read(s.Target) || hf != dec64.Read(s.HalfWidth) {
			t.Errorf("%s: Figures %s, %s, want %s, %s", s.Path, tf.D, hf.D, s.Target, s.HalfWidth)
		}
	}
	for i := range p.Sleeves {
		s := p.Sleeves[i]
		figures(&s)
		defer figures(&s) // after the changes below
		if s.Band.HasWithinSleeve || s.Target.Sign() <= 0 {
			continue
		}
		if got, want := s.SplitTolerance(), s.HalfWidth.DivRound(s.Target, 8); got.String() != want.String() {
			t.Errorf("%s: SplitTolerance %s, want %s", s.Path, got, want)
		}
		// A sleeve changed after Parse is not answered from the division
		// made for the old figures.
		s.Target = s.Target.Add(decimal.New(1, -2))
		if got, want := s.SplitTolerance(), s.HalfWidth.DivRound(s.Target, 8); got.String() != want.String() {
			t.Errorf("%s with target %s: SplitTolerance %s, want %s", s.Path, s.Target, got, want)
		}
		s.HalfWidth = s.HalfWidth.Add(decimal.New(1, -2))
		if got, want := s.SplitTolerance(), s.HalfWidth.DivRound(s.Target, 8); got.String() != want.String() {
			t.Errorf("%s with half-width %s: SplitTolerance %s, want %s", s.Path, s.HalfWidth, got, want)
		}
	}
}
