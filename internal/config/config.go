// Package config reads the daemon's configuration: which policies it runs
// and where each one's holdings come from, the price feeds, NATS, the HTTP
// listener, the state directory and logging. It is separate from the
// policies themselves, which people edit while the daemon runs.
//
// Parsing is strict, like the policy parser: unknown or duplicate keys,
// malformed values and inconsistent settings are all reported at once, each
// with file, line and field. Relative paths are taken relative to the
// directory of the configuration file.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"go.yaml.in/yaml/v3"

	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/partition"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// Defaults.
const (
	DefaultHTTPListen   = "127.0.0.1:8080"
	DefaultEmbeddedHost = "127.0.0.1"
	DefaultEmbeddedPort = 4222
	DefaultStateDir     = "/var/lib/rebalancerd"
	DefaultPollInterval = time.Minute
	DefaultPollTimeout  = 10 * time.Second
	DefaultStreamMaxAge = 30 * 24 * time.Hour
	DefaultDuplicates   = 24 * time.Hour
	DefaultLogLevel     = "info"
	DefaultLogFormat    = "auto"
)

// Config is the daemon configuration.
type Config struct {
	// File is the path the configuration was read from.
	File string
	// StateDir holds the daemon's journal and the embedded JetStream store.
	StateDir string
	Policies []PolicySource
	// HouseholdsDir holds household files (policy.ParseHousehold), every
	// *.yaml or *.yml file in it one household, on the models in
	// ModelsDir; both empty without households.
	HouseholdsDir string
	ModelsDir     string
	// HouseholdsLine is the line of households_dir, for messages.
	HouseholdsLine int
	Feeds          []Feed
	NATS           NATS
	HTTP           HTTP
	Log            Log
	// ControlTokenFile holds the token that kill-switch requests on
	// <prefix>.control.* must carry; without it, only NATS permissions
	// protect the control subjects.
	ControlTokenFile string
	// JournalFsync makes the local journal fsync a plan's orders before
	// the first of them is published (default true). Without it a plan
	// survives a crash of the process but not a power loss, which the
	// daemon then recovers from the orders stream.
	JournalFsync bool
	// HA runs the daemon as one of several instances for the same
	// policies; see HA.
	HA HA
	// Reports bounds what executors' fills and positions may say.
	Reports Reports
	// DriftEvery is how often each household's drift event is published
	// at most (default 1m); a change of its breaching sleeves is
	// published at once.
	DriftEvery time.Duration
	// Metrics configures the per-household series of /metrics.
	Metrics Metrics
}

// Metrics configures the per-household series of /metrics.
type Metrics struct {
	// HouseholdSeries is how many households (the first by name) get
	// series of their own (sleeve weights, price ages, blocks, pending
	// orders); -1: every household. Aggregates cover all of them.
	HouseholdSeries int
}

// Defaults of the drift events and the per-household series.
const (
	DefaultDriftEvery      = time.Minute
	DefaultHouseholdSeries = 1000
)

// Reports bounds what fills and positions snapshots may say; reports
// outside the bounds are refused (rebalancerd_inputs_rejected_total).
type Reports struct {
	// MaxClockSkew is how far a report may be dated after the daemon's
	// clock, and a fill before its order's creation (default 5m).
	MaxClockSkew time.Duration
	// FillPriceCollar is how far a fill's price may be from its order's
	// reference price, as a fraction of it (default 0.2: ±20%).
	FillPriceCollar decimal.Decimal
}

// Default report bounds, and the largest clock skew accepted.
const (
	DefaultMaxClockSkew = 5 * time.Minute
	MaxMaxClockSkew     = time.Hour
)

// DefaultFillPriceCollar is the default Reports.FillPriceCollar (20%).
var DefaultFillPriceCollar = decimal.New(2, -1)

// HA configures high availability: instances against the same NATS elect
// one holder of a lease in a JetStream key-value bucket; only the holder
// plans and publishes, and the state lives in JetStream so that another
// instance can take over.
type HA struct {
	Enabled bool
	// Instance names this instance in the lease (default: the host name).
	Instance string
	// LeaseTTL is how long a lease lives without renewal: the longest a
	// dead holder keeps its policies without a planner (default 10s).
	LeaseTTL time.Duration
	// Partitions, above 1, shares the policies among the live instances
	// instead of electing one planner: each household hashes to one of
	// Partitions partitions (partition.Of), and each instance holds a
	// lease on about Partitions/instances of them (docs/SCALING.md). 0 or
	// 1: one planner, the others stand by.
	Partitions int
	Line       int
}

// Default HA settings.
const (
	DefaultLeaseTTL = 10 * time.Second
	MinLeaseTTL     = time.Second
)

// PolicySource is one policy file and the holdings file that seeds its
// ledger. With Dir set, it stands for every *.yaml or *.yml file in Dir,
// each with the holdings file of the same base name in HoldingsDir.
type PolicySource struct {
	Policy      string
	Holdings    string
	Dir         string
	HoldingsDir string
	Line        int
}

// Feed kinds.
const (
	FeedFile      = "file"
	FeedHTTP      = "http"
	FeedCoinGecko = "coingecko"
	FeedNATS      = "nats"
	FeedReplay    = "replay"
)

// Feed is one price feed.
type Feed struct {
	Name     string
	Kind     string
	Interval time.Duration
	Timeout  time.Duration
	Retries  int
	// Path is the file of a file or replay feed.
	Path string
	// URL, Header and the API key source of an http or coingecko feed.
	URL        string
	Header     string
	APIKeyFile string
	APIKeyEnv  string
	// Fields maps a symbol to the dot path of its price in an http feed's
	// response; TimeFields to the path of its time.
	Fields     map[string]string
	TimeFields map[string]string
	// IDs maps a symbol to its CoinGecko coin id; VsCurrency is the quote
	// currency ("usd").
	IDs        map[string]string
	VsCurrency string
	Line       int
}

// NATS says how to reach NATS. With URL empty, the daemon runs an embedded
// server.
type NATS struct {
	URL          string
	Prefix       string
	User         string
	PasswordFile string
	TokenFile    string
	NKeySeedFile string
	CredsFile    string
	CAFile       string
	CertFile     string
	KeyFile      string
	// Embedded server address (when URL is empty).
	EmbeddedHost string
	EmbeddedPort int
	// EmbeddedSync is how often the embedded server fsyncs JetStream:
	// 0 ("always", the default) fsyncs every write, so that an
	// acknowledged order survives a power loss.
	EmbeddedSync time.Duration
	// Stream settings for the orders stream.
	Replicas   int
	MaxAge     time.Duration
	Duplicates time.Duration
	// AtomicBatches publishes each plan's orders and event as one atomic
	// batch on servers that take them (nats-server 2.12.1 or later);
	// default true.
	AtomicBatches bool
}

// HTTP is the status listener.
type HTTP struct {
	Listen string
	// TokenFile holds the bearer token required off loopback.
	TokenFile string
	// CertFile and KeyFile serve HTTPS.
	CertFile, KeyFile string
	// AllowPlaintext acknowledges plain HTTP off loopback.
	AllowPlaintext bool
}

// Log settings; a -log-level or -log-format flag overrides them.
type Log struct {
	Level  string // debug, info, warn, error
	Format string // auto (console on a terminal, JSON otherwise), json, console
}

// DefaultConfig returns the configuration with every default set and no
// policies or feeds.
func DefaultConfig() *Config {
	return &Config{
		StateDir: DefaultStateDir,
		NATS: NATS{
			Prefix:       events.DefaultPrefix,
			EmbeddedHost: DefaultEmbeddedHost,
			EmbeddedPort: DefaultEmbeddedPort,
			Replicas:     1,
			MaxAge:       DefaultStreamMaxAge,
			Duplicates:   DefaultDuplicates,
			// Atomic batches where the server takes them.
			AtomicBatches: true,
		},
		HTTP:         HTTP{Listen: DefaultHTTPListen},
		Log:          Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
		JournalFsync: true,
		HA:           HA{LeaseTTL: DefaultLeaseTTL},
		Reports:      Reports{MaxClockSkew: DefaultMaxClockSkew, FillPriceCollar: DefaultFillPriceCollar},
		DriftEvery:   DefaultDriftEvery,
		Metrics:      Metrics{HouseholdSeries: DefaultHouseholdSeries},
	}
}

var (
	feedName    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	subjectName = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

// Parse reads a configuration file. env looks up environment variables for
// ${VAR} references in paths (typically ${CREDENTIALS_DIRECTORY} under
// systemd); nil means none are set.
func Parse(file string, data []byte, env func(string) string) (*Config, error) {
	if env == nil {
		env = func(string) string { return "" }
	}
	r := &strictyaml.Reader{File: file}
	c := DefaultConfig()
	c.File = file
	p := &parser{r: r, c: c, base: filepath.Dir(file), env: env}
	if root := r.Parse(data); root != nil {
		p.parse(root)
	}
	if len(r.Errs) == 0 {
		r.Errs = append(r.Errs, c.validate()...)
	}
	if err := r.Errs.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

type parser struct {
	r    *strictyaml.Reader
	c    *Config
	base string
	env  func(string) string
}

// path resolves a path relative to the configuration file and expands
// ${VAR} references.
func (p *parser) path(n *yaml.Node, field string) string {
	s, ok := p.r.String(n, field)
	if !ok {
		return ""
	}
	if strings.Contains(varRef.ReplaceAllString(s, ""), "$") {
		p.r.Errorf(n, field, "%q: write an environment variable as ${NAME} or $NAME, and no other '$'", s)
		return ""
	}
	var missing []string
	s = expand(s, p.env, &missing)
	for _, m := range missing {
		p.r.Errorf(n, field, "environment variable %s is not set", m)
	}
	if len(missing) > 0 {
		return ""
	}
	if !filepath.IsAbs(s) {
		return filepath.Join(p.base, s)
	}
	return filepath.Clean(s)
}

// varRef matches the environment variable references that path expands.
var varRef = regexp.MustCompile(`\$(?:\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)`)

// expand replaces ${VAR} (and $VAR) with env's value, noting unset names.
func expand(s string, env func(string) string, missing *[]string) string {
	return os.Expand(s, func(name string) string {
		v := env(name)
		if v == "" {
			*missing = append(*missing, name)
		}
		return v
	})
}

func (p *parser) parse(root *yaml.Node) {
	r, c := p.r, p.c
	f := r.Object(root, "", "state_dir", "journal_fsync", "policies", "households_dir", "models_dir", "feeds", "nats", "http", "log", "control", "ha", "reports", "drift_every", "metrics")
	if v, ok := f["drift_every"]; ok {
		if d, ok := r.Duration(v, "drift_every"); ok {
			c.DriftEvery = d
		}
	}
	if v, ok := f["metrics"]; ok {
		mf := r.Object(v, "metrics", "household_series")
		if n, ok := mf["household_series"]; ok {
			if s, ok := r.Scalar(n, "metrics.household_series"); ok {
				k, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil || k < -1 || k == 0 {
					r.Errorf(n, "metrics.household_series", "want a number of households (at least 1), or -1 for every household; got %q", s)
				} else {
					c.Metrics.HouseholdSeries = k
				}
			}
		}
	}
	if v, ok := f["journal_fsync"]; ok {
		c.JournalFsync, _ = p.bool(v, "journal_fsync")
	}
	if v, ok := f["ha"]; ok {
		p.ha(v)
	}
	if v, ok := f["reports"]; ok {
		p.reports(v)
	}
	if v, ok := f["control"]; ok {
		cf := r.Object(v, "control", "token_file")
		if n, ok := cf["token_file"]; ok {
			c.ControlTokenFile = p.path(n, "control.token_file")
		}
	}
	if v, ok := f["state_dir"]; ok {
		c.StateDir = p.path(v, "state_dir")
	}
	p.households(f)
	if v, ok := f["policies"]; ok {
		before := len(r.Errs)
		items := r.Sequence(v, "policies")
		if len(items) == 0 && len(r.Errs) == before && c.HouseholdsDir == "" {
			r.Errorf(v, "policies", "name at least one policy")
		}
		for i, item := range items {
			p.policy(item, fmt.Sprintf("policies[%d]", i))
		}
	} else if _, ok := f["households_dir"]; !ok {
		r.Errorf(root, "policies", "required field is missing: name at least one policy (or set households_dir)")
	}
	if v, ok := f["feeds"]; ok {
		for i, item := range r.Sequence(v, "feeds") {
			p.feed(item, fmt.Sprintf("feeds[%d]", i))
		}
	}
	if v, ok := f["nats"]; ok {
		p.nats(v)
	}
	if v, ok := f["http"]; ok {
		hf := r.Object(v, "http", "listen", "token_file", "tls", "allow_plaintext")
		if l, ok := hf["listen"]; ok {
			c.HTTP.Listen, _ = r.String(l, "http.listen")
		}
		if n, ok := hf["token_file"]; ok {
			c.HTTP.TokenFile = p.path(n, "http.token_file")
		}
		if n, ok := hf["tls"]; ok {
			tf := r.Object(n, "http.tls", "cert_file", "key_file")
			if x, ok := tf["cert_file"]; ok {
				c.HTTP.CertFile = p.path(x, "http.tls.cert_file")
			}
			if x, ok := tf["key_file"]; ok {
				c.HTTP.KeyFile = p.path(x, "http.tls.key_file")
			}
			if (c.HTTP.CertFile == "") != (c.HTTP.KeyFile == "") {
				r.Errorf(n, "http.tls", "cert_file and key_file go together")
			}
		}
		if n, ok := hf["allow_plaintext"]; ok {
			c.HTTP.AllowPlaintext, _ = p.bool(n, "http.allow_plaintext")
		}
	}
	if v, ok := f["log"]; ok {
		lf := r.Object(v, "log", "level", "format")
		if n, ok := lf["level"]; ok {
			if s, ok := r.String(n, "log.level"); ok {
				if err := CheckLogLevel(s); err != nil {
					r.Errorf(n, "log.level", "%v", err)
				}
				c.Log.Level = s
			}
		}
		if n, ok := lf["format"]; ok {
			if s, ok := r.String(n, "log.format"); ok {
				if err := CheckLogFormat(s); err != nil {
					r.Errorf(n, "log.format", "%v", err)
				}
				c.Log.Format = s
			}
		}
	}
}

// CheckLogLevel reports whether s names a log level.
func CheckLogLevel(s string) error {
	switch s {
	case "debug", "info", "warn", "error":
		return nil
	}
	return fmt.Errorf("%q is not a log level; want debug, info, warn or error", s)
}

// CheckLogFormat reports whether s names a log format.
func CheckLogFormat(s string) error {
	switch s {
	case "auto", "json", "console":
		return nil
	}
	return fmt.Errorf("%q is not a log format; want auto, json or console", s)
}

// households reads households_dir and models_dir, which go together.
func (p *parser) households(f map[string]*yaml.Node) {
	r, c := p.r, p.c
	h, hok := f["households_dir"]
	m, mok := f["models_dir"]
	if hok {
		c.HouseholdsDir, c.HouseholdsLine = p.path(h, "households_dir"), h.Line
	}
	if mok {
		c.ModelsDir = p.path(m, "models_dir")
	}
	switch {
	case hok && !mok:
		r.Errorf(h, "models_dir", "required field is missing: the directory of the models the households name")
	case mok && !hok:
		r.Errorf(m, "households_dir", "required field is missing: models_dir serves the households of households_dir")
	case hok && c.HouseholdsDir != "" && c.HouseholdsDir == c.ModelsDir:
		r.Errorf(m, "models_dir", "must differ from households_dir: a model is not a household")
	}
}

func (p *parser) policy(n *yaml.Node, field string) {
	r := p.r
	f := r.Object(n, field, "policy", "holdings", "dir", "holdings_dir")
	src := PolicySource{Line: n.Line}
	if v, ok := f["policy"]; ok {
		src.Policy = p.path(v, field+".policy")
	}
	if v, ok := f["holdings"]; ok {
		src.Holdings = p.path(v, field+".holdings")
	}
	if v, ok := f["dir"]; ok {
		src.Dir = p.path(v, field+".dir")
	}
	if v, ok := f["holdings_dir"]; ok {
		src.HoldingsDir = p.path(v, field+".holdings_dir")
	}
	// Decide on the keys present, so that a bad value is reported once.
	_, policy := f["policy"]
	_, holdings := f["holdings"]
	_, dir := f["dir"]
	_, holdingsDir := f["holdings_dir"]
	switch {
	case policy && dir:
		r.Errorf(n, field, "set either policy (one file) or dir (a directory of policies), not both")
	case policy && !holdings:
		r.Errorf(n, field+".holdings", "required field is missing: the holdings file that seeds the policy's ledger")
	case policy && holdingsDir:
		r.Errorf(n, field+".holdings_dir", "goes with dir, not with policy")
	case dir && !holdingsDir:
		r.Errorf(n, field+".holdings_dir", "required field is missing: the directory of holdings files named like the policies")
	case dir && holdings:
		r.Errorf(n, field+".holdings", "goes with policy, not with dir (use holdings_dir)")
	case !policy && !dir:
		r.Errorf(n, field, "set policy (a file) or dir (a directory of policies)")
	}
	p.c.Policies = append(p.c.Policies, src)
}

func (p *parser) feed(n *yaml.Node, field string) {
	r := p.r
	f := r.Object(n, field, "name", "kind", "interval", "timeout", "retries", "path", "url", "header",
		"api_key_file", "api_key_env", "fields", "time_fields", "ids", "vs_currency")
	fd := Feed{Line: n.Line, Interval: DefaultPollInterval, Timeout: DefaultPollTimeout, Retries: 2}
	if v, ok := f["name"]; ok {
		if s, ok := r.String(v, field+".name"); ok {
			if !feedName.MatchString(s) {
				r.Errorf(v, field+".name", "%q: use letters, digits, '-' and '_' only", s)
			}
			fd.Name = s
		}
	} else {
		r.Errorf(n, field+".name", "required field is missing")
	}
	if v, ok := f["kind"]; ok {
		if s, ok := r.String(v, field+".kind"); ok {
			switch s {
			case FeedFile, FeedHTTP, FeedCoinGecko, FeedNATS, FeedReplay:
				fd.Kind = s
			default:
				r.Errorf(v, field+".kind", "%q is not a feed kind; want file, http, coingecko, nats or replay", s)
			}
		}
	} else {
		r.Errorf(n, field+".kind", "required field is missing")
	}
	if v, ok := f["interval"]; ok {
		if d, ok := r.Duration(v, field+".interval"); ok {
			fd.Interval = d
		}
	}
	if v, ok := f["timeout"]; ok {
		if d, ok := r.Duration(v, field+".timeout"); ok {
			fd.Timeout = d
		}
	}
	if v, ok := f["retries"]; ok {
		if d, ok := r.NonNegative(v, field+".retries"); ok {
			if !d.IsInteger() || d.GreaterThan(decimal.NewFromInt(10)) {
				r.Errorf(v, field+".retries", "want a whole number from 0 to 10, got %s", d)
			} else {
				fd.Retries = int(d.IntPart())
			}
		}
	}
	if v, ok := f["path"]; ok {
		fd.Path = p.path(v, field+".path")
	}
	if v, ok := f["url"]; ok {
		fd.URL, _ = r.String(v, field+".url")
		if fd.URL != "" && !strings.HasPrefix(fd.URL, "https://") && !strings.HasPrefix(fd.URL, "http://") {
			r.Errorf(v, field+".url", "%q is not an http(s) URL", fd.URL)
		}
	}
	if v, ok := f["header"]; ok {
		fd.Header, _ = r.String(v, field+".header")
	}
	if v, ok := f["api_key_file"]; ok {
		fd.APIKeyFile = p.path(v, field+".api_key_file")
	}
	if v, ok := f["api_key_env"]; ok {
		fd.APIKeyEnv, _ = r.String(v, field+".api_key_env")
	}
	if v, ok := f["fields"]; ok {
		fd.Fields = p.stringMap(v, field+".fields")
	}
	if v, ok := f["time_fields"]; ok {
		fd.TimeFields = p.stringMap(v, field+".time_fields")
	}
	if v, ok := f["ids"]; ok {
		fd.IDs = p.stringMap(v, field+".ids")
	}
	if v, ok := f["vs_currency"]; ok {
		fd.VsCurrency, _ = r.String(v, field+".vs_currency")
	}
	p.feedKind(n, field, &fd, f)
	p.c.Feeds = append(p.c.Feeds, fd)
}

// feedKind checks that a feed has the fields its kind needs and no others.
func (p *parser) feedKind(n *yaml.Node, field string, fd *Feed, f map[string]*yaml.Node) {
	need := map[string][]string{
		FeedFile:      {"path"},
		FeedReplay:    {"path"},
		FeedHTTP:      {"url", "fields"},
		FeedCoinGecko: {"ids"},
		FeedNATS:      {},
	}
	allow := map[string][]string{
		FeedFile:      {"path", "interval", "timeout", "retries"},
		FeedReplay:    {"path", "interval"},
		FeedHTTP:      {"url", "header", "api_key_file", "api_key_env", "fields", "time_fields", "interval", "timeout", "retries"},
		FeedCoinGecko: {"url", "header", "api_key_file", "api_key_env", "ids", "vs_currency", "interval", "timeout", "retries"},
		FeedNATS:      {},
	}
	if fd.Kind == "" {
		return
	}
	for _, k := range need[fd.Kind] {
		if _, ok := f[k]; !ok {
			p.r.Errorf(n, field+"."+k, "required field is missing for %s %s feed", article(fd.Kind), fd.Kind)
		}
	}
	allowed := map[string]bool{"name": true, "kind": true}
	for _, k := range allow[fd.Kind] {
		allowed[k] = true
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !allowed[k] {
			p.r.Errorf(f[k], field+"."+k, "does not apply to %s %s feed", article(fd.Kind), fd.Kind)
		}
	}
	if fd.APIKeyFile != "" && fd.APIKeyEnv != "" {
		p.r.Errorf(n, field, "set api_key_file or api_key_env, not both")
	}
	if fd.Kind == FeedCoinGecko && fd.VsCurrency == "" {
		fd.VsCurrency = "usd"
	}
}

// article returns the indefinite article for a feed kind.
func article(kind string) string {
	if kind == FeedHTTP {
		return "an"
	}
	return "a"
}

func (p *parser) stringMap(n *yaml.Node, field string) map[string]string {
	out := map[string]string{}
	for _, e := range p.r.Entries(n, field) {
		if s, ok := p.r.String(e.Value, strictyaml.Join(field, e.Key)); ok {
			out[e.Key] = s
		}
	}
	return out
}

func (p *parser) nats(n *yaml.Node) {
	r, c := p.r, &p.c.NATS
	f := r.Object(n, "nats", "url", "prefix", "user", "password_file", "token_file", "nkey_seed_file", "creds_file",
		"tls", "embedded", "stream")
	str := func(key string, dst *string) {
		if v, ok := f[key]; ok {
			*dst, _ = r.String(v, "nats."+key)
		}
	}
	file := func(key string, dst *string) {
		if v, ok := f[key]; ok {
			*dst = p.path(v, "nats."+key)
		}
	}
	str("url", &c.URL)
	str("prefix", &c.Prefix)
	if v, ok := f["prefix"]; ok && !subjectName.MatchString(c.Prefix) {
		r.Errorf(v, "nats.prefix", "%q is not a subject prefix: dot-separated tokens of letters, digits, '-' and '_'", c.Prefix)
	}
	str("user", &c.User)
	file("password_file", &c.PasswordFile)
	file("token_file", &c.TokenFile)
	file("nkey_seed_file", &c.NKeySeedFile)
	file("creds_file", &c.CredsFile)
	if v, ok := f["tls"]; ok {
		tf := r.Object(v, "nats.tls", "ca_file", "cert_file", "key_file")
		for _, k := range []struct {
			key string
			dst *string
		}{{"ca_file", &c.CAFile}, {"cert_file", &c.CertFile}, {"key_file", &c.KeyFile}} {
			if n, ok := tf[k.key]; ok {
				*k.dst = p.path(n, "nats.tls."+k.key)
			}
		}
		_, cert := tf["cert_file"]
		_, key := tf["key_file"]
		if cert != key {
			r.Errorf(v, "nats.tls", "cert_file and key_file go together")
		}
	}
	if v, ok := f["embedded"]; ok {
		ef := r.Object(v, "nats.embedded", "host", "port", "sync_interval")
		if n, ok := ef["sync_interval"]; ok {
			if sv, ok := r.Scalar(n, "nats.embedded.sync_interval"); ok && sv != "always" {
				c.EmbeddedSync, _ = r.Duration(n, "nats.embedded.sync_interval")
			}
		}
		if h, ok := ef["host"]; ok {
			c.EmbeddedHost, _ = r.String(h, "nats.embedded.host")
		}
		if pn, ok := ef["port"]; ok {
			if d, ok := r.NonNegative(pn, "nats.embedded.port"); ok {
				if !d.IsInteger() || d.GreaterThan(decimal.NewFromInt(65535)) {
					r.Errorf(pn, "nats.embedded.port", "want a port from 0 to 65535, got %s", d)
				} else {
					c.EmbeddedPort = int(d.IntPart())
				}
			}
		}
	}
	if v, ok := f["stream"]; ok {
		sf := r.Object(v, "nats.stream", "replicas", "max_age", "duplicates", "atomic_batches")
		if n, ok := sf["atomic_batches"]; ok {
			c.AtomicBatches, _ = p.bool(n, "nats.stream.atomic_batches")
		}
		if n, ok := sf["replicas"]; ok {
			if d, ok := r.NonNegative(n, "nats.stream.replicas"); ok {
				if !d.IsInteger() || d.Sign() == 0 || d.GreaterThan(decimal.NewFromInt(5)) {
					r.Errorf(n, "nats.stream.replicas", "want 1 to 5, got %s", d)
				} else {
					c.Replicas = int(d.IntPart())
				}
			}
		}
		if n, ok := sf["max_age"]; ok {
			if d, ok := r.Duration(n, "nats.stream.max_age"); ok {
				c.MaxAge = d
			}
		}
		if n, ok := sf["duplicates"]; ok {
			if d, ok := r.Duration(n, "nats.stream.duplicates"); ok {
				c.Duplicates = d
			}
		}
		if c.Duplicates > c.MaxAge {
			r.Errorf(v, "nats.stream.duplicates", "the dedupe window (%v) cannot exceed max_age (%v)", c.Duplicates, c.MaxAge)
		}
	}
	if c.URL == "" {
		for _, key := range []string{"user", "password_file", "token_file", "nkey_seed_file", "creds_file", "tls"} {
			if _, set := f[key]; set {
				r.Errorf(f[key], "nats."+key, "applies to an external NATS: set nats.url too (without url the daemon runs an embedded server)")
			}
		}
		if c.Replicas > 1 {
			r.Errorf(f["stream"], "nats.stream.replicas", "the embedded server is a single node: want 1 (set nats.url to use a cluster)")
		}
	} else if _, ok := f["embedded"]; ok {
		r.Errorf(f["embedded"], "nats.embedded", "applies only without nats.url")
	}
	_, user := f["user"]
	_, password := f["password_file"]
	if user && !password {
		r.Errorf(f["user"], "nats.user", "needs password_file")
	}
	if password && !user {
		r.Errorf(f["password_file"], "nats.password_file", "needs user")
	}
}

// bool reads true or false.
func (p *parser) bool(n *yaml.Node, field string) (v, ok bool) {
	sv, ok := p.r.Scalar(n, field)
	if !ok {
		return false, false
	}
	switch sv {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	p.r.Errorf(n, field, "want true or false, got %q", sv)
	return false, false
}

// ha reads the ha block: its presence enables HA unless enabled: false.
func (p *parser) reports(v *yaml.Node) {
	r, c := p.r, &p.c.Reports
	f := r.Object(v, "reports", "max_clock_skew", "fill_price_collar")
	if n, ok := f["max_clock_skew"]; ok {
		if d, ok := r.Duration(n, "reports.max_clock_skew"); ok {
			if d > MaxMaxClockSkew {
				r.Errorf(n, "reports.max_clock_skew", "%s is more than %s: fix the clocks instead", d, MaxMaxClockSkew)
			}
			c.MaxClockSkew = d
		}
	}
	if n, ok := f["fill_price_collar"]; ok {
		if d, ok := r.Percent(n, "reports.fill_price_collar", true); ok {
			if d.Sign() == 0 {
				r.Errorf(n, "reports.fill_price_collar", "must be more than 0%%: a fill is never exactly at the reference price")
			}
			c.FillPriceCollar = d
		}
	}
}

func (p *parser) ha(v *yaml.Node) {
	r, c := p.r, p.c
	c.HA.Enabled, c.HA.Line = true, v.Line
	f := r.Object(v, "ha", "enabled", "instance", "lease_ttl", "partitions")
	if n, ok := f["partitions"]; ok {
		if d, ok := r.NonNegative(n, "ha.partitions"); ok {
			if !d.IsInteger() || d.Sign() == 0 || d.GreaterThan(decimal.NewFromInt(partition.Max)) {
				r.Errorf(n, "ha.partitions", "want a whole number from 1 to %d, got %s", partition.Max, d)
			} else {
				c.HA.Partitions = int(d.IntPart())
			}
		}
	}
	if n, ok := f["enabled"]; ok {
		c.HA.Enabled, _ = p.bool(n, "ha.enabled")
	}
	if n, ok := f["instance"]; ok {
		if s, ok := r.String(n, "ha.instance"); ok {
			if !feedName.MatchString(s) {
				r.Errorf(n, "ha.instance", "%q: use letters, digits, '-' and '_' (at most 64)", s)
			}
			c.HA.Instance = s
		}
	}
	if n, ok := f["lease_ttl"]; ok {
		if d, ok := r.Duration(n, "ha.lease_ttl"); ok {
			if d < MinLeaseTTL {
				r.Errorf(n, "ha.lease_ttl", "%v is too short: at least %v", d, MinLeaseTTL)
			}
			c.HA.LeaseTTL = d
		}
	}
}

// validate checks what spans several fields.
func (c *Config) validate() strictyaml.Errors {
	var errs strictyaml.Errors
	add := func(line int, field, format string, args ...any) {
		errs = append(errs, &strictyaml.Error{File: c.File, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	seen := map[string]int{}
	for i, f := range c.Feeds {
		if first, ok := seen[f.Name]; ok {
			add(f.Line, fmt.Sprintf("feeds[%d].name", i), "feed %q is already defined at line %d", f.Name, first)
		}
		seen[f.Name] = f.Line
	}
	if c.HA.Enabled && c.NATS.URL == "" {
		add(c.HA.Line, "ha", "needs an external NATS (nats.url): instances cannot share an embedded server")
	}
	files := map[string]int{}
	for i, p := range c.Policies {
		name, field := p.Policy, fmt.Sprintf("policies[%d].policy", i)
		if name == "" {
			name, field = p.Dir, fmt.Sprintf("policies[%d].dir", i)
		}
		if first, ok := files[name]; ok {
			add(p.Line, field, "%s is already listed at line %d", name, first)
			continue
		}
		files[name] = p.Line
	}
	return errs
}

// Validate checks a configuration built in code (tests, DefaultConfig plus
// changes) the way Parse checks a file.
func (c *Config) Validate() error {
	var errs strictyaml.Errors
	if len(c.Policies) == 0 && c.HouseholdsDir == "" {
		errs = append(errs, &strictyaml.Error{File: c.File, Field: "policies", Msg: "name at least one policy"})
	}
	if c.StateDir == "" {
		errs = append(errs, &strictyaml.Error{File: c.File, Field: "state_dir", Msg: "required"})
	}
	if c.NATS.Prefix == "" || !subjectName.MatchString(c.NATS.Prefix) {
		errs = append(errs, &strictyaml.Error{File: c.File, Field: "nats.prefix", Msg: fmt.Sprintf("%q is not a subject prefix", c.NATS.Prefix)})
	}
	errs = append(errs, c.validate()...)
	return errs.Err()
}
