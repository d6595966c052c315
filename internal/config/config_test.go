package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml/yamltest"
)

// credDir is $CREDENTIALS_DIRECTORY as systemd sets it for LoadCredential.
const credDir = "/run/credentials/rebalancerd.service"

// systemdEnv is the environment of the daemon under systemd.
func systemdEnv(name string) string {
	if name == "CREDENTIALS_DIRECTORY" {
		return credDir
	}
	return ""
}

// readFile returns a testdata file's base name, under which it is parsed so
// that messages read "name.bad.yml:5: field: ...", and its content.
func readFile(t testing.TB, path string) (string, []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(path), data
}

func TestGoodFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/*.good.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no good files: %v", err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			name, data := readFile(t, path)
			c, err := Parse(name, data, systemdEnv)
			if err != nil {
				t.Fatalf("Parse:\n%v", err)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Validate of a parsed configuration:\n%v", err)
			}
			checkConfig(t, c)
		})
	}
}

// TestFullConfig checks every field of full.good.yml, read as if installed
// in /etc/rebalancerd so that relative paths resolve there.
func TestFullConfig(t *testing.T) {
	_, data := readFile(t, "testdata/full.good.yml")
	const file = "/etc/rebalancerd/rebalancerd.yml"
	c, err := Parse(file, data, systemdEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File:     file,
		StateDir: "/etc/rebalancerd/state",
		Policies: []PolicySource{
			{Policy: "/etc/rebalancerd/policies/growth.yaml", Holdings: "/etc/rebalancerd/holdings/growth.yaml", Line: 5},
			{Dir: "/srv/policies.d", HoldingsDir: credDir + "/holdings.d", Line: 7},
		},
		Feeds: []Feed{
			{Name: "local", Kind: FeedFile, Path: "/etc/rebalancerd/prices/latest.yaml",
				Interval: 30 * time.Second, Timeout: 5 * time.Second, Retries: 0, Line: 10},
			{Name: "broker", Kind: FeedHTTP, URL: "https://prices.example.com/v1/quotes", Header: "X-API-Key",
				APIKeyFile: credDir + "/broker-key",
				Fields:     map[string]string{"VTI": "data.VTI.last", "BND": "data.BND.last"},
				TimeFields: map[string]string{"VTI": "data.VTI.time"},
				Interval:   90 * time.Second, Timeout: 10 * time.Second, Retries: 3, Line: 16},
			{Name: "crypto", Kind: FeedCoinGecko, URL: "https://pro-api.coingecko.com/api/v3", Header: "x-cg-pro-api-key",
				APIKeyEnv: "COINGECKO_API_KEY", IDs: map[string]string{"BTC": "bitcoin", "ETH": "ethereum"}, VsCurrency: "eur",
				Interval: 5 * time.Minute, Timeout: 15 * time.Second, Retries: 10, Line: 29},
			{Name: "bus", Kind: FeedNATS, Interval: DefaultPollInterval, Timeout: DefaultPollTimeout, Retries: 2, Line: 39},
			{Name: "backtest_2026", Kind: FeedReplay, Path: "/var/lib/rebalancerd/replay.yaml",
				Interval: time.Second, Timeout: DefaultPollTimeout, Retries: 2, Line: 41},
		},
		NATS: NATS{
			URL:          "tls://nats.example.com:4222",
			Prefix:       "prod.rebalance",
			User:         "rebalancer",
			PasswordFile: credDir + "/nats-password",
			CAFile:       "/etc/rebalancerd/tls/ca.pem",
			CertFile:     "/etc/rebalancerd/tls/client.pem",
			KeyFile:      "/etc/rebalancerd/tls/client-key.pem",
			EmbeddedHost: DefaultEmbeddedHost,
			EmbeddedPort: DefaultEmbeddedPort,
			Replicas:     3,
			MaxAge:       90 * 24 * time.Hour,
			Duplicates:   48 * time.Hour,
			// Atomic batches where the server takes them.
			AtomicBatches: true,
		},
		HTTP:       HTTP{Listen: "0.0.0.0:9090"},
		Log:        Log{Level: "debug", Format: "json"},
		HA:         HA{Enabled: true, Instance: "node-b", LeaseTTL: 6 * time.Second, Partitions: 64, Line: 65},
		Reports:    Reports{MaxClockSkew: 2 * time.Minute, FillPriceCollar: decimal.RequireFromString("0.15")},
		DriftEvery: 30 * time.Second,
		Metrics:    Metrics{HouseholdSeries: 200},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse(full.good.yml):\n got %+v\nwant %+v", c, want)
	}
}

// TestMinimalDefaults checks that a file naming only a policy gets exactly
// DefaultConfig's values.
func TestMinimalDefaults(t *testing.T) {
	name, data := readFile(t, "testdata/minimal.good.yml")
	c, err := Parse(name, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.File = name
	want.Policies = []PolicySource{{Policy: "policy.yaml", Holdings: "holdings.yaml", Line: 3}}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v\nwant %+v", c, want)
	}
}

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	want := &Config{
		StateDir: "/var/lib/rebalancerd",
		NATS: NATS{
			Prefix:       events.DefaultPrefix,
			EmbeddedHost: "127.0.0.1",
			EmbeddedPort: 4222,
			Replicas:     1,
			MaxAge:       30 * 24 * time.Hour,
			Duplicates:   24 * time.Hour,
			// Atomic batches where the server takes them.
			AtomicBatches: true,
		},
		HTTP:         HTTP{Listen: "127.0.0.1:8080"},
		Log:          Log{Level: "info", Format: "auto"},
		JournalFsync: true,
		HA:           HA{LeaseTTL: 10 * time.Second},
		Reports:      Reports{MaxClockSkew: 5 * time.Minute, FillPriceCollar: decimal.New(2, -1)},
		DriftEvery:   time.Minute,
		Metrics:      Metrics{HouseholdSeries: 1000},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("DefaultConfig() = %+v\nwant %+v", c, want)
	}
	if c.NATS.Duplicates > c.NATS.MaxAge {
		t.Errorf("default dedupe window %v exceeds the default max age %v", c.NATS.Duplicates, c.NATS.MaxAge)
	}
	if err := CheckLogLevel(c.Log.Level); err != nil {
		t.Error(err)
	}
	if err := CheckLogFormat(c.Log.Format); err != nil {
		t.Error(err)
	}
	c.Policies = append(c.Policies, PolicySource{Policy: "p.yaml", Holdings: "h.yaml"})
	if DefaultConfig().Policies != nil {
		t.Error("DefaultConfig shares state between calls")
	}
}

func TestValidate(t *testing.T) {
	withPolicy := func(change func(*Config)) *Config {
		c := DefaultConfig()
		c.File = "built.yml"
		c.Policies = []PolicySource{{Policy: "p.yaml", Holdings: "h.yaml", Line: 3}}
		change(c)
		return c
	}
	if err := withPolicy(func(*Config) {}).Validate(); err != nil {
		t.Fatalf("DefaultConfig plus a policy: %v", err)
	}
	for _, tc := range []struct {
		name string
		c    *Config
		want []string
	}{
		{"default", DefaultConfig(), []string{": policies: name at least one policy"}},
		{"no state dir", withPolicy(func(c *Config) { c.StateDir = "" }), []string{"built.yml: state_dir: required"}},
		{"empty prefix", withPolicy(func(c *Config) { c.NATS.Prefix = "" }), []string{`built.yml: nats.prefix: "" is not a subject prefix`}},
		{"wildcard prefix", withPolicy(func(c *Config) { c.NATS.Prefix = "a.*" }), []string{`built.yml: nats.prefix: "a.*" is not a subject prefix`}},
		{"duplicate feed", withPolicy(func(c *Config) {
			c.Feeds = []Feed{{Name: "f", Kind: FeedNATS, Line: 7}, {Name: "f", Kind: FeedNATS, Line: 9}}
		}), []string{`built.yml:9: feeds[1].name: feed "f" is already defined at line 7`}},
		{"duplicate policy", withPolicy(func(c *Config) {
			c.Policies = append(c.Policies, PolicySource{Policy: "p.yaml", Holdings: "h2.yaml", Line: 5})
		}), []string{"built.yml:5: policies[1].policy: p.yaml is already listed at line 3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yamltest.Match(t, yamltest.Problems(t, tc.c.Validate(), tc.c.File), tc.want)
		})
	}
}

// badFiles lists, for each testdata/*.bad.yml, every problem Parse must
// report, in order. The files are parsed with an empty environment.
var badFiles = map[string][]string{
	"unknown_key.bad.yml": {
		"unknown_key.bad.yml:3: policies[0].holdings: required field is missing: the holdings file that seeds the policy's ledger",
		"unknown_key.bad.yml:4: policies[0].holding: unknown field (known: policy, holdings, dir, holdings_dir)",
		"unknown_key.bad.yml:9: feeds[0].intervall: unknown field (known: name, kind, interval, timeout, retries, path, url, header, api_key_file, api_key_env, fields, time_fields, ids, vs_currency)",
		"unknown_key.bad.yml:12: nats.password: unknown field (known: url, prefix, user, password_file, token_file, nkey_seed_file, creds_file, tls, embedded, stream)",
		"unknown_key.bad.yml:14: nats.tls.ca: unknown field (known: ca_file, cert_file, key_file)",
		"unknown_key.bad.yml:16: nats.stream.max_msgs: unknown field (known: replicas, max_age, duplicates, atomic_batches)",
		"unknown_key.bad.yml:18: http.address: unknown field (known: listen, token_file, tls, allow_plaintext)",
		"unknown_key.bad.yml:20: log.lvl: unknown field (known: level, format)",
		"unknown_key.bad.yml:21: statedir: unknown field (known: state_dir, journal_fsync, policies, households_dir, models_dir, feeds, nats, http, log, control, ha, reports, drift_every, metrics)",
	},
	"ha.bad.yml": {
		`ha.bad.yml:3: journal_fsync: want true or false, got "sometimes"`,
		`ha.bad.yml:5: ha.enabled: want true or false, got "yes"`,
		`ha.bad.yml:6: ha.instance: "node a": use letters, digits, '-' and '_' (at most 64)`,
		`ha.bad.yml:7: ha.lease_ttl: 200ms is too short: at least 1s`,
		`ha.bad.yml:8: ha.leader: unknown field (known: enabled, instance, lease_ttl, partitions)`,
		`ha.bad.yml:9: ha.partitions: want a whole number from 1 to 4096, got 0`,
	},
	"households.bad.yml": {
		"households.bad.yml:2: models_dir: required field is missing: the directory of the models the households name",
	},
	"models_alone.bad.yml": {
		"models_alone.bad.yml:2: households_dir: required field is missing: models_dir serves the households of households_dir",
	},
	"ha_embedded.bad.yml": {
		`ha_embedded.bad.yml:4: ha: needs an external NATS (nats.url): instances cannot share an embedded server`,
	},
	"duplicate_key.bad.yml": {
		"duplicate_key.bad.yml:5: policies[0].policy: duplicate key (first defined at line 3)",
		"duplicate_key.bad.yml:10: feeds[0].path: duplicate key (first defined at line 9)",
		"duplicate_key.bad.yml:13: log: duplicate key (first defined at line 11)",
	},
	"no_policies.bad.yml": {
		"no_policies.bad.yml:2: policies: required field is missing: name at least one policy",
	},
	"policy_source.bad.yml": {
		"policy_source.bad.yml:3: policies[0]: set policy (a file) or dir (a directory of policies)",
		"policy_source.bad.yml:4: policies[1]: set either policy (one file) or dir (a directory of policies), not both",
		"policy_source.bad.yml:7: policies[2].holdings: required field is missing: the holdings file that seeds the policy's ledger",
		"policy_source.bad.yml:8: policies[3].holdings_dir: goes with dir, not with policy",
		"policy_source.bad.yml:11: policies[4].holdings_dir: required field is missing: the directory of holdings files named like the policies",
		"policy_source.bad.yml:12: policies[5].holdings: goes with policy, not with dir (use holdings_dir)",
		"policy_source.bad.yml:15: policies[6]: set policy (a file) or dir (a directory of policies)",
	},
	"no_holdings.bad.yml": {
		"no_holdings.bad.yml:5: policies[1].holdings: required field is missing: the holdings file that seeds the policy's ledger",
	},
	"feed_kind.bad.yml": {
		`feed_kind.bad.yml:6: feeds[0].kind: "ftp" is not a feed kind; want file, http, coingecko, nats or replay`,
		`feed_kind.bad.yml:7: feeds[0].url: "ftp://prices.example.com" is not an http(s) URL`,
		`feed_kind.bad.yml:8: feeds[1].name: "no kind": use letters, digits, '-' and '_' only`,
		"feed_kind.bad.yml:8: feeds[1].kind: required field is missing",
		"feed_kind.bad.yml:10: feeds[2].name: required field is missing",
		"feed_kind.bad.yml:12: feeds[3].name: must not be empty",
	},
	"feed_fields.bad.yml": {
		"feed_fields.bad.yml:8: feeds[0].url: does not apply to a file feed",
		"feed_fields.bad.yml:9: feeds[0].fields: does not apply to a file feed",
		"feed_fields.bad.yml:13: feeds[1].timeout: does not apply to a replay feed",
		"feed_fields.bad.yml:14: feeds[1].retries: does not apply to a replay feed",
		"feed_fields.bad.yml:17: feeds[2].interval: does not apply to a nats feed",
		"feed_fields.bad.yml:21: feeds[3].fields: does not apply to a coingecko feed",
		"feed_fields.bad.yml:22: feeds[4]: set api_key_file or api_key_env, not both",
		"feed_fields.bad.yml:26: feeds[4].ids: does not apply to an http feed",
		"feed_fields.bad.yml:27: feeds[4].vs_currency: does not apply to an http feed",
	},
	// A missing field is reported at the first line of the feed.
	"feed_required.bad.yml": {
		"feed_required.bad.yml:5: feeds[0].path: required field is missing for a file feed",
		"feed_required.bad.yml:7: feeds[1].path: required field is missing for a replay feed",
		"feed_required.bad.yml:10: feeds[2].url: required field is missing for an http feed",
		"feed_required.bad.yml:10: feeds[2].fields: required field is missing for an http feed",
		"feed_required.bad.yml:12: feeds[3].fields: required field is missing for an http feed",
		"feed_required.bad.yml:15: feeds[4].ids: required field is missing for a coingecko feed",
	},
	// ./growth.yaml and growth.yaml are one file.
	"duplicate_names.bad.yml": {
		"duplicate_names.bad.yml:5: policies[1].policy: growth.yaml is already listed at line 3",
		`duplicate_names.bad.yml:13: feeds[2].name: feed "prices" is already defined at line 8`,
	},
	"durations.bad.yml": {
		`durations.bad.yml:8: feeds[0].interval: want a positive duration like 5m or 1h, got "0s"`,
		`durations.bad.yml:9: feeds[0].timeout: want a positive duration like 5m or 1h, got "soon"`,
		`durations.bad.yml:14: feeds[1].interval: want a positive duration like 5m or 1h, got "-1m"`,
		`durations.bad.yml:15: feeds[1].timeout: want a positive duration like 5m or 1h, got "10"`,
		`durations.bad.yml:19: nats.stream.duplicates: want a positive duration like 5m or 1h, got "1d"`,
	},
	"retries.bad.yml": {
		"retries.bad.yml:5: feeds[0].retries: want a whole number from 0 to 10, got 11",
		"retries.bad.yml:6: feeds[1].retries: must not be negative, got -1",
		"retries.bad.yml:7: feeds[2].retries: want a whole number from 0 to 10, got 1.5",
		`retries.bad.yml:8: feeds[3].retries: "many" is not a plain decimal number`,
	},
	"credentials_without_url.bad.yml": {
		"credentials_without_url.bad.yml:6: nats.user: applies to an external NATS: set nats.url too (without url the daemon runs an embedded server)",
		"credentials_without_url.bad.yml:7: nats.password_file: applies to an external NATS: set nats.url too",
		"credentials_without_url.bad.yml:8: nats.token_file: applies to an external NATS: set nats.url too",
		"credentials_without_url.bad.yml:9: nats.nkey_seed_file: applies to an external NATS: set nats.url too",
		"credentials_without_url.bad.yml:10: nats.creds_file: applies to an external NATS: set nats.url too",
		"credentials_without_url.bad.yml:12: nats.tls: applies to an external NATS: set nats.url too",
	},
	"embedded_with_url.bad.yml": {
		"embedded_with_url.bad.yml:7: nats.embedded: applies only without nats.url",
	},
	"tls.bad.yml": {
		"tls.bad.yml:7: nats.tls: cert_file and key_file go together",
	},
	"user_without_password.bad.yml": {
		"user_without_password.bad.yml:6: nats.user: needs password_file",
	},
	"prefix.bad.yml": {
		`prefix.bad.yml:5: nats.prefix: "rebalance.>" is not a subject prefix: dot-separated tokens of letters, digits, '-' and '_'`,
	},
	"prefix_empty_token.bad.yml": {
		`prefix_empty_token.bad.yml:5: nats.prefix: "rebalance..orders" is not a subject prefix`,
	},
	"duplicates_over_max_age.bad.yml": {
		"duplicates_over_max_age.bad.yml:7: nats.stream.duplicates: the dedupe window (2h0m0s) cannot exceed max_age (1h0m0s)",
	},
	"max_age_under_default_duplicates.bad.yml": {
		"max_age_under_default_duplicates.bad.yml:6: nats.stream.duplicates: the dedupe window (24h0m0s) cannot exceed max_age (12h0m0s)",
	},
	"stream_numbers.bad.yml": {
		"stream_numbers.bad.yml:6: nats.embedded.port: want a port from 0 to 65535, got 70000",
		"stream_numbers.bad.yml:8: nats.stream.replicas: want 1 to 5, got 0",
	},
	"unset_var.bad.yml": {
		"unset_var.bad.yml:2: state_dir: environment variable STATE_DIRECTORY is not set",
		"unset_var.bad.yml:4: policies[0].policy: environment variable CREDENTIALS_DIRECTORY is not set",
		"unset_var.bad.yml:9: nats.password_file: environment variable CREDENTIALS_DIRECTORY is not set",
	},
	"log.bad.yml": {
		`log.bad.yml:5: log.level: "verbose" is not a log level; want debug, info, warn or error`,
		`log.bad.yml:6: log.format: "text" is not a log format; want auto, json or console`,
	},
	"url.bad.yml": {
		`url.bad.yml:7: feeds[0].url: "prices.example.com/quotes" is not an http(s) URL`,
	},
	"types.bad.yml": {
		"types.bad.yml:3: policies: want a list, got a mapping",
		"types.bad.yml:4: feeds: want a list, got a mapping",
		`types.bad.yml:5: nats: want a mapping, got "nats://127.0.0.1:4222"`,
		"types.bad.yml:7: http.listen: want a string, got the number 8080",
		`types.bad.yml:8: log: want a mapping, got "debug"`,
	},
	"syntax.bad.yml": {
		"syntax.bad.yml:2: YAML syntax: did not find expected ',' or ']'",
	},
	"empty.bad.yml": {
		"empty.bad.yml: file is empty",
	},
	"reports.bad.yml": {
		"reports.bad.yml:5: reports.max_clock_skew: 2h0m0s is more than 1h0m0s: fix the clocks instead",
		"reports.bad.yml:6: reports.fill_price_collar: must be more than 0%: a fill is never exactly at the reference price",
		"reports.bad.yml:7: reports.collar: unknown field (known: max_clock_skew, fill_price_collar)",
	},
	"scale.bad.yml": {
		"scale.bad.yml:4: drift_every: ",
		"scale.bad.yml:6: metrics.household_series: want a number of households (at least 1), or -1 for every household; got \"0\"",
		"scale.bad.yml:7: metrics.series: unknown field (known: household_series)",
	},
	"top_level_list.bad.yml": {
		"top_level_list.bad.yml:1: top level must be a mapping of fields",
	},
}

func TestBadFiles(t *testing.T) {
	yamltest.BadFiles(t, "testdata/*.bad.yml", badFiles, func(path, name string, data []byte) (error, bool) {
		c, err := Parse(name, data, nil)
		if err != nil {
			yamltest.CheckFailure(t, err, name, data)
		}
		return err, c != nil
	})
}

// TestRelativePaths checks that every path field resolves against the
// directory of the configuration file, whatever form that file name takes,
// and that absolute paths are kept.
func TestRelativePaths(t *testing.T) {
	const data = `
state_dir: state
policies:
  - {policy: p.yaml, holdings: ../shared/h.yaml}
  - {dir: /abs/policies, holdings_dir: ./holdings}
feeds:
  - {name: f, kind: file, path: prices/f.yaml}
  - {name: h, kind: http, url: "https://example.com", fields: {A: a}, api_key_file: keys/h}
nats:
  url: nats://example.com:4222
  user: u
  password_file: pw
  tls: {ca_file: ca.pem}
`
	for _, tc := range []struct{ file, dir string }{
		{"/etc/rebalancerd/rebalancerd.yml", "/etc/rebalancerd"},
		{"conf/rebalancerd.yml", "conf"},
		{"rebalancerd.yml", ""},
		{"./a/../b/rebalancerd.yml", "b"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			c, err := Parse(tc.file, []byte(data), nil)
			if err != nil {
				t.Fatal(err)
			}
			j := func(p string) string { return filepath.Join(tc.dir, p) }
			got := []string{c.StateDir, c.Policies[0].Policy, c.Policies[0].Holdings, c.Policies[1].Dir,
				c.Policies[1].HoldingsDir, c.Feeds[0].Path, c.Feeds[1].APIKeyFile, c.NATS.PasswordFile, c.NATS.CAFile}
			want := []string{j("state"), j("p.yaml"), j("../shared/h.yaml"), "/abs/policies",
				j("holdings"), j("prices/f.yaml"), j("keys/h"), j("pw"), j("ca.pem")}
			if !slices.Equal(got, want) {
				t.Errorf("paths\n got %q\nwant %q", got, want)
			}
		})
	}
}

// TestEnvExpansion checks that ${VAR} and $VAR in paths come from the env
// func, not the process environment, and that an expanded relative path
// still resolves against the configuration's directory.
func TestEnvExpansion(t *testing.T) {
	const data = `
state_dir: ${STATE_DIRECTORY}
policies:
  - policy: ${CREDENTIALS_DIRECTORY}/policy.yaml
    holdings: $SUBDIR/holdings.yaml
nats:
  url: nats://example.com:4222
  creds_file: ${CREDENTIALS_DIRECTORY}/nats.creds
`
	t.Setenv("CREDENTIALS_DIRECTORY", "/from/the/process")
	var asked []string
	env := func(name string) string {
		asked = append(asked, name)
		return map[string]string{
			"CREDENTIALS_DIRECTORY": credDir,
			"STATE_DIRECTORY":       "/var/lib/rebalancerd-2",
			"SUBDIR":                "seed",
		}[name]
	}
	c, err := Parse("/etc/rebalancerd/r.yml", []byte(data), env)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{c.StateDir, c.Policies[0].Policy, c.Policies[0].Holdings, c.NATS.CredsFile}
	want := []string{"/var/lib/rebalancerd-2", credDir + "/policy.yaml", "/etc/rebalancerd/seed/holdings.yaml", credDir + "/nats.creds"}
	if !slices.Equal(got, want) {
		t.Errorf("paths\n got %q\nwant %q", got, want)
	}
	slices.Sort(asked)
	if want := []string{"CREDENTIALS_DIRECTORY", "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "SUBDIR"}; !slices.Equal(asked, want) {
		t.Errorf("env asked for %q, want %q", asked, want)
	}
	// A nil env has nothing set, whatever the process environment holds.
	_, err = Parse("r.yml", []byte(data), nil)
	yamltest.Match(t, yamltest.Problems(t, err, "r.yml"), []string{
		"r.yml:2: state_dir: environment variable STATE_DIRECTORY is not set",
		"r.yml:4: policies[0].policy: environment variable CREDENTIALS_DIRECTORY is not set",
		"r.yml:5: policies[0].holdings: environment variable SUBDIR is not set",
		"r.yml:8: nats.creds_file: environment variable CREDENTIALS_DIRECTORY is not set",
	})
}

// checkConfig checks the invariants of a configuration Parse accepted.
func checkConfig(t testing.TB, c *Config) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("accepted configuration breaks an invariant: "+format, args...)
	}
	clean := func(p string) {
		if p != "" && filepath.Clean(p) != p {
			fail("path %q is not clean", p)
		}
	}
	clean(c.StateDir)
	clean(c.HouseholdsDir)
	clean(c.ModelsDir)
	if (c.HouseholdsDir == "") != (c.ModelsDir == "") || (c.HouseholdsDir != "" && c.HouseholdsDir == c.ModelsDir) {
		fail("households_dir %q, models_dir %q", c.HouseholdsDir, c.ModelsDir)
	}
	if len(c.Policies) == 0 && c.HouseholdsDir == "" {
		fail("no policies and no households")
	}
	for _, p := range c.Policies {
		if (p.Policy == "") == (p.Dir == "") || (p.Policy != "") != (p.Holdings != "") || (p.Dir != "") != (p.HoldingsDir != "") {
			fail("policy source %+v", p)
		}
		for _, f := range []string{p.Policy, p.Holdings, p.Dir, p.HoldingsDir} {
			clean(f)
		}
	}
	names := map[string]bool{}
	for _, f := range c.Feeds {
		if names[f.Name] || !feedName.MatchString(f.Name) {
			fail("feed name %q", f.Name)
		}
		names[f.Name] = true
		if f.Interval <= 0 || f.Timeout <= 0 || f.Retries < 0 || f.Retries > 10 {
			fail("feed %s: interval %v timeout %v retries %d", f.Name, f.Interval, f.Timeout, f.Retries)
		}
		ok := false
		switch f.Kind {
		case FeedFile, FeedReplay:
			ok = f.Path != "" && f.URL == "" && f.Fields == nil && f.IDs == nil
		case FeedHTTP:
			ok = f.URL != "" && len(f.Fields) > 0 && f.Path == "" && f.IDs == nil
		case FeedCoinGecko:
			ok = len(f.IDs) > 0 && f.VsCurrency != "" && f.Path == "" && f.Fields == nil
		case FeedNATS:
			ok = f.Path == "" && f.URL == "" && f.Fields == nil && f.IDs == nil
		}
		if !ok || f.APIKeyFile != "" && f.APIKeyEnv != "" {
			fail("feed %+v", f)
		}
		clean(f.Path)
		clean(f.APIKeyFile)
	}
	n := c.NATS
	if !subjectName.MatchString(n.Prefix) || n.Replicas < 1 || n.Replicas > 5 || n.EmbeddedPort < 0 || n.EmbeddedPort > 65535 ||
		n.MaxAge <= 0 || n.Duplicates <= 0 || n.Duplicates > n.MaxAge {
		fail("nats %+v", n)
	}
	external := n.User != "" || n.PasswordFile != "" || n.TokenFile != "" || n.NKeySeedFile != "" || n.CredsFile != "" ||
		n.CAFile != "" || n.CertFile != "" || n.KeyFile != ""
	if n.URL == "" && external || n.User != "" && n.PasswordFile == "" || (n.CertFile == "") != (n.KeyFile == "") {
		fail("nats %+v", n)
	}
	if CheckLogLevel(c.Log.Level) != nil || CheckLogFormat(c.Log.Format) != nil || c.HTTP.Listen == "" {
		fail("log %+v http %+v", c.Log, c.HTTP)
	}
	// What Parse accepts, Validate accepts.
	if err := c.Validate(); err != nil {
		fail("Validate: %v", err)
	}
	if n.URL == "" && n.Replicas != 1 || n.PasswordFile != "" && n.User == "" {
		fail("nats %+v", n)
	}
}

// FuzzParse checks that Parse never panics, that what it accepts keeps the
// invariants of a Config, and that what it refuses is reported as problems
// of the file.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yml")
	for _, path := range seeds {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yml", data, systemdEnv)
		if err != nil {
			if c != nil {
				t.Fatal("Parse returned a configuration with its error")
			}
			yamltest.CheckFailure(t, err, "fuzz.yml", data)
			// The same bytes give the same problems, in the same order.
			_, again := Parse("fuzz.yml", data, systemdEnv)
			if again == nil || again.Error() != err.Error() {
				t.Fatalf("second parse: %v\nfirst: %v", again, err)
			}
			return
		}
		checkConfig(t, c)
	})
}

// TestFileTooBig checks that the size limit applies to configuration files.
func TestFileTooBig(t *testing.T) {
	_, data := readFile(t, "testdata/minimal.good.yml")
	big := append(data, strings.Repeat("#", strictyaml.MaxFileSize)...)
	_, err := Parse("big.yml", big, nil)
	yamltest.Match(t, yamltest.Problems(t, err, "big.yml"), []string{"big.yml: file is "})
}

// TestAtomicBatchesOff: nats.stream.atomic_batches false turns the atomic
// plan batches off; anything but a boolean is refused.
func TestAtomicBatchesOff(t *testing.T) {
	const base = "policies:\n  - {policy: policy.yaml, holdings: holdings.yaml}\nnats:\n  stream:\n    atomic_batches: "
	c, err := Parse("off.yml", []byte(base+"false\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.AtomicBatches {
		t.Errorf("atomic_batches: false parsed as true")
	}
	_, err = Parse("bad.yml", []byte(base+"sometimes\n"), nil)
	if err == nil || !strings.Contains(err.Error(), `bad.yml:5: nats.stream.atomic_batches: want true or false, got "sometimes"`) {
		t.Errorf("atomic_batches: sometimes: error %v", err)
	}
}

// TestDriftEveryAndSeries: drift_every and metrics.household_series are
// read, with their defaults when absent.
func TestDriftEveryAndSeries(t *testing.T) {
	const base = "policies:\n  - {policy: policy.yaml, holdings: holdings.yaml}\n"
	c, err := Parse("d.yml", []byte(base), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.DriftEvery != DefaultDriftEvery || c.Metrics.HouseholdSeries != DefaultHouseholdSeries {
		t.Errorf("defaults: drift_every %s, household_series %d", c.DriftEvery, c.Metrics.HouseholdSeries)
	}
	c, err = Parse("d.yml", []byte(base+"drift_every: 5m\nmetrics: {household_series: -1}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.DriftEvery != 5*time.Minute || c.Metrics.HouseholdSeries != -1 {
		t.Errorf("drift_every %s, household_series %d", c.DriftEvery, c.Metrics.HouseholdSeries)
	}
}
