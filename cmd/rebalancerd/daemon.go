package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/buildinfo"
	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/config"
	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/feeds"
	rhttp "github.com/rebalancerd/rebalancerd/internal/http"
	"github.com/rebalancerd/rebalancerd/internal/inputfile"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/metrics"
	rnats "github.com/rebalancerd/rebalancerd/internal/nats"
	"github.com/rebalancerd/rebalancerd/internal/state"
	"github.com/rebalancerd/rebalancerd/internal/statusdoc"
	"github.com/rebalancerd/rebalancerd/internal/systemd"
	"github.com/rebalancerd/rebalancerd/internal/watch"
)

// Main is the daemon: everything `rebalancerd run` starts, wired together.
// Open starts it and returns; Close stops it. End-to-end tests build one
// with a test config (":0" ports, t.TempDir() state) and a fake clock.
type Main struct {
	Config *config.Config
	Log    *zap.Logger
	Level  *zap.AtomicLevel
	// Clock drives triggers and price ages (default: the system clock).
	Clock clock.Clock
	// EmbeddedPort overrides the embedded server's port (-1: random).
	EmbeddedPort int
	// Env resolves API key environment variables (default os.Getenv).
	Env func(string) string
	// Debounce and Recheck tune the policy file watcher.
	Debounce, Recheck time.Duration
	// OnPublished is passed to the engine (benchmarks).
	OnPublished func(policy, planID string, orders int)
	// ShutdownGrace bounds the publishing after a stop (engine default 10s).
	ShutdownGrace time.Duration
	// Retention is how long finished orders stay in a ledger (engine
	// default 7 days).
	Retention time.Duration
	// InlinePublishTimeout is passed to the engine (default 1s; negative:
	// every plan goes through the publisher goroutine, as benchmarks
	// compare).
	InlinePublishTimeout time.Duration
	// WrapPublisher, when set, wraps the NATS publisher (tests inject
	// faults with it).
	WrapPublisher func(engine.Publisher) engine.Publisher

	Metrics  *metrics.Metrics
	Engine   *engine.Engine
	Bus      *rnats.Bus
	Server   *server.Server // the embedded NATS server, if any
	Conn     *natsgo.Conn
	HTTP     *rhttp.Server
	Notifier *systemd.Notifier

	cancel  context.CancelFunc
	wg      sync.WaitGroup
	engDone chan struct{}

	store      *state.Store
	kvState    *rnats.StateStore // high availability: the shared state
	lease      *rnats.Lease      // high availability: held while planning
	lost       chan error        // the lease was lost
	stepping   atomic.Bool       // high availability: stepping down, publishing nothing
	cancelHold context.CancelFunc
	holdDone   chan struct{}
	httpOpen   bool
	eng        atomic.Pointer[engine.Engine] // for HTTP and NATS callbacks
	controlSub *natsgo.Subscription
	loadMu     sync.Mutex // one load or reload at a time
	closeOnce  sync.Once
	closeErr   error

	reloadMu    sync.Mutex
	lastReload  statusdoc.Reload
	fingerprint string
	sources     []feeds.Source
}

// Open starts the daemon: state, NATS, engine, policies, feeds, report
// consumer, file watcher and HTTP. On error it stops what it started.
func (m *Main) Open(ctx context.Context) (err error) {
	if m.Log == nil {
		m.Log = zap.NewNop()
	}
	if m.Clock == nil {
		m.Clock = clock.Real{}
	}
	if m.Env == nil {
		m.Env = os.Getenv
	}
	if m.Notifier == nil {
		m.Notifier = systemd.New(m.Log)
	}
	if m.Debounce <= 0 {
		m.Debounce = 100 * time.Millisecond
	}
	if m.Recheck <= 0 {
		m.Recheck = 30 * time.Second
	}
	cfg := m.Config
	runCtx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	m.Metrics = metrics.New()

	store, err := state.Open(filepath.Join(cfg.StateDir, "ledgers"))
	if err != nil {
		return err
	}
	store.SyncJournal = cfg.JournalFsync
	m.store = store
	m.lost = make(chan error, 1)

	// NATS: embedded unless a URL is configured.
	if cfg.NATS.URL == "" {
		port := cfg.NATS.EmbeddedPort
		if m.EmbeddedPort != 0 {
			port = m.EmbeddedPort
		}
		m.Server, err = rnats.StartEmbedded(rnats.EmbeddedConfig{Host: cfg.NATS.EmbeddedHost, Port: port,
			StoreDir: filepath.Join(cfg.StateDir, "jetstream"), SyncInterval: cfg.NATS.EmbeddedSync},
			// The server's banner and notices are noise in the daemon's log.
			m.Log.Named("nats-server").WithOptions(zap.IncreaseLevel(zap.WarnLevel)))
		if err != nil {
			return fmt.Errorf("embedded NATS: %w", err)
		}
		m.Log.Info("embedded NATS server started", zap.String("url", m.Server.ClientURL()))
	}
	// The connection reports its state from its own goroutine, possibly
	// before the engine exists.
	onState := func(up bool) {
		if eng := m.eng.Load(); eng != nil {
			eng.SetNATSConnected(up)
		}
	}
	if m.Server != nil {
		// In process, without TCP: the embedded server lives and dies with
		// this process, and the loopback round trips were a third of the
		// time from a price tick to the acknowledged orders.
		m.Conn, err = rnats.ConnectEmbedded(m.Server, m.Log.Named("nats"), onState)
	} else {
		n := cfg.NATS
		var reconnectWait time.Duration // the client's default
		if cfg.HA.Enabled {
			// A holder must reconnect well within its lease's life to
			// keep it through a NATS restart.
			reconnectWait = rnats.ReconnectWait(cfg.HA.LeaseTTL)
		}
		m.Conn, err = rnats.Connect(rnats.ConnConfig{URL: n.URL, Name: "rebalancerd", User: n.User, PasswordFile: n.PasswordFile,
			TokenFile: n.TokenFile, NKeySeedFile: n.NKeySeedFile, CredsFile: n.CredsFile, CAFile: n.CAFile,
			CertFile: n.CertFile, KeyFile: n.KeyFile, ReconnectWait: reconnectWait}, m.Log.Named("nats"), onState)
	}
	if err != nil {
		return fmt.Errorf("NATS: %w", err)
	}
	m.Bus, err = rnats.NewBus(ctx, m.Conn, rnats.StreamConfig{Prefix: cfg.NATS.Prefix, Replicas: cfg.NATS.Replicas,
		MaxAge: cfg.NATS.MaxAge, Duplicates: cfg.NATS.Duplicates, NoAtomicBatches: !cfg.NATS.AtomicBatches,
		Rejected: func(reason string) { m.Metrics.InputsRejected.WithLabelValues(metrics.InputReport, reason).Inc() },
	}, m.Log.Named("bus"))
	if err != nil {
		return fmt.Errorf("NATS streams: %w", err)
	}

	var engStore engine.Store = store
	var mayPublish func() error
	if cfg.HA.Enabled {
		if err := m.standBy(ctx, runCtx); err != nil {
			return err
		}
		engStore = m.kvState
		mayPublish = m.mayPublish
		// Checked again by the bus immediately before each message.
		m.Bus.SetGate(mayPublish)
	}

	var pub engine.Publisher = publisher{m.Bus}
	if m.WrapPublisher != nil {
		pub = m.WrapPublisher(pub)
	}
	var aux engine.AuxStore = m.kvState // shared in high availability
	if m.kvState == nil {
		auxDir := filepath.Join(cfg.StateDir, "strategy")
		if err := os.MkdirAll(auxDir, 0o700); err != nil {
			return fmt.Errorf("state: %w", err)
		}
		aux = auxStore{auxDir}
	}
	eng := engine.New(engine.Options{Clock: m.Clock, Publisher: pub, Store: engStore, MayPublish: mayPublish,
		Aux:     aux,
		Metrics: m.Metrics, Log: m.Log.Named("engine"), OnPublished: m.OnPublished, ShutdownGrace: m.ShutdownGrace,
		DedupeWindow: cfg.NATS.Duplicates, Retention: m.Retention, InlinePublishTimeout: m.InlinePublishTimeout,
		MaxSkew: cfg.Reports.MaxClockSkew, FillCollar: cfg.Reports.FillPriceCollar})
	m.Engine = eng
	m.eng.Store(eng)
	eng.SetNATSConnected(m.Conn.IsConnected())

	dirs, err := m.load("start")
	if err != nil {
		return err
	}

	// The journal may have lost what a power loss took from the page
	// cache; the orders stream has every acknowledged order.
	// A lost or restored state directory lost fills the reports consumer
	// acknowledged long ago: the reports stream still has them.
	if orders, fills, err := eng.Reconcile(ctx, history{m.Bus}); err != nil {
		return fmt.Errorf("reconcile with the streams: %w", err)
	} else if orders > 0 || fills > 0 {
		m.Log.Warn("ledgers reconciled with the streams", zap.Int("orders", orders), zap.Int("fills_recovered", fills))
	}

	if err := m.restoreHalt(); err != nil {
		return err
	}
	token, err := m.controlToken()
	if err != nil {
		return err
	}
	if m.controlSub, err = m.subscribeControl(token); err != nil {
		return fmt.Errorf("control subjects: %w", err)
	}

	m.engDone = make(chan struct{})
	go func() {
		defer close(m.engDone)
		_ = eng.Run(runCtx)
	}()

	// Feeds.
	for _, f := range cfg.Feeds {
		src, err := m.feed(f)
		if err != nil {
			return fmt.Errorf("%s:%d: feed %s: %w", cfg.File, f.Line, f.Name, err)
		}
		m.sources = append(m.sources, src)
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			_ = src.Run(runCtx, eng.Quotes)
		}()
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.feedMetrics(runCtx)
	}()

	// Fills and positions.
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		err := m.Bus.ConsumeReports(runCtx, func(r rnats.Report) error {
			err := eng.HandleReport(engine.Report{Policy: r.Policy, Account: r.Account, Fill: r.Fill, Positions: r.Positions, CashFlow: r.CashFlow})
			return reportError(err)
		})
		if err != nil && runCtx.Err() == nil {
			m.Log.Error("report consumer stopped", zap.Error(err))
		}
	}()

	// Policy files.
	w, err := watch.New(dirs, m.Debounce, m.Recheck, m.Log.Named("watch"))
	if err != nil {
		return fmt.Errorf("watch policy files: %w", err)
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		_ = w.Run(runCtx, func() { _ = m.Reload(reasonFileChange) })
	}()

	if err := m.openHTTP(runCtx); err != nil {
		return err
	}
	eng.EvaluateAll()
	m.Log.Info("rebalancerd started", zap.String("http", m.HTTP.URL()), zap.String("nats", m.natsURL()),
		zap.Int("policies", m.lastReload.Files), zap.Int("feeds", len(cfg.Feeds)))
	m.Notifier.Ready(fmt.Sprintf("running %d policies", m.lastReload.Files))
	return nil
}

// openHTTP starts the HTTP listener and the systemd watchdog, once: a
// standby instance serves health and metrics while it waits for the lease.
func (m *Main) openHTTP(runCtx context.Context) error {
	if m.httpOpen {
		return nil
	}
	m.HTTP = &rhttp.Server{Addr: m.Config.HTTP.Listen, Gatherer: m.Metrics.Registry(), Ready: m.ready,
		Status: m.status, Level: m.Level, Log: m.Log.Named("http"),
		CertFile: m.Config.HTTP.CertFile, KeyFile: m.Config.HTTP.KeyFile, AllowPlaintext: m.Config.HTTP.AllowPlaintext}
	tok, err := httpToken(m.Config.HTTP)
	if err != nil {
		return err
	}
	m.HTTP.Token = tok
	if err := m.HTTP.Open(); err != nil {
		return fmt.Errorf("http: %w", err)
	}
	m.httpOpen = true
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.Notifier.RunWatchdog(runCtx, func() bool {
			eng := m.eng.Load()
			return (eng == nil || eng.Alive()) && !m.Conn.IsClosed()
		})
	}()
	return nil
}

// standBy, for high availability, prepares the shared state and waits
// until this instance holds the lease, serving health and metrics
// meanwhile; then it keeps renewing the lease until runCtx ends, and
// reports a loss on Lost.
func (m *Main) standBy(ctx, runCtx context.Context) error {
	cfg := m.Config
	instance := cfg.HA.Instance
	if instance == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("ha: instance name: %w (set ha.instance)", err)
		}
		instance = h
	}
	base := strings.TrimSuffix(m.Bus.OrdersStream(), "_ORDERS")
	var err error
	m.kvState, err = rnats.NewStateStore(ctx, m.Bus, rnats.StateStoreConfig{Bucket: base + "_STATE", Replicas: cfg.NATS.Replicas,
		// Called while the engine holds its lock (a save): step down from
		// a goroutine of its own, which ends once the halt is set.
		Fenced: func(err error) { go m.stepDown(fmt.Errorf("shared state written by another instance: %w", err)) },
		// Every write carries the lease's term and needs a valid lease
		// (the lease exists before anything is written: Load runs after
		// Acquire).
		Term: func() (uint64, error) { return m.lease.Term() }})
	if err != nil {
		return fmt.Errorf("ha: %w", err)
	}
	if err := m.checkLocalState(); err != nil {
		return fmt.Errorf("ha: %w", err)
	}
	m.lease, err = rnats.NewLease(ctx, m.Bus, rnats.LeaseConfig{Bucket: base + "_LEASE", Key: "planner", Holder: instance,
		TTL: cfg.HA.LeaseTTL, Replicas: cfg.NATS.Replicas})
	if err != nil {
		return fmt.Errorf("ha: %w", err)
	}
	if err := m.openHTTP(runCtx); err != nil {
		return err
	}
	m.Notifier.Ready("standby: waiting for the planner lease")
	m.Log.Info("high availability: waiting for the planner lease", zap.String("instance", instance),
		zap.Duration("lease_ttl", cfg.HA.LeaseTTL))
	if err := m.lease.Acquire(ctx); err != nil {
		return fmt.Errorf("ha: waiting for the lease: %w", err)
	}
	m.Log.Info("high availability: this instance is the planner", zap.String("instance", instance))
	// Renewed until the engine has stopped publishing (Close), not merely
	// until the daemon is asked to stop: the lease must outlive the last
	// publish.
	holdCtx, cancelHold := context.WithCancel(context.WithoutCancel(runCtx))
	m.holdDone = make(chan struct{})
	m.cancelHold = cancelHold
	go func() {
		defer close(m.holdDone)
		if err := m.lease.Hold(holdCtx); err != nil {
			m.stepDown(err)
		}
	}()
	return nil
}

// mayPublish is the high-availability check before each message: the
// lease is held with its margin left (read on the monotonic clock) and
// this instance is not stepping down.
func (m *Main) mayPublish() error {
	if m.stepping.Load() {
		return errors.New("stepping down: no longer the planner")
	}
	if !m.lease.Valid() {
		return errors.New("the high-availability lease is not held with its margin left")
	}
	return nil
}

// stepDown stops publishing at once (the check before each message fails
// from now on, and the kill switch, not persisted, cancels the attempt in
// flight) and reports on Lost that this instance is no longer the
// planner.
func (m *Main) stepDown(err error) {
	if m.stepping.Swap(true) {
		return // stepping down already
	}
	m.Log.Error("high availability: no longer the planner; publishing stopped, stepping down", zap.Error(err))
	if eng := m.eng.Load(); eng != nil {
		eng.SetHalt(&engine.Halt{Reason: "high availability: this instance lost the planner lease", By: "ha",
			At: m.Clock.Now().UTC()})
	}
	select {
	case m.lost <- err:
	default: // reported already
	}
}

// checkLocalState refuses to run in high availability over local state
// the shared state does not have: an engaged kill switch or a ledger in the
// state directory would otherwise be ignored (trading resumes, fills since
// the holdings file are forgotten).
func (m *Main) checkLocalState() error {
	if _, err := os.Stat(m.haltFile()); err == nil {
		return fmt.Errorf("the kill switch is engaged in %s, which high availability does not read: "+
			"release it without ha (rebalancerd release), or remove the file and halt again with ha", m.haltFile())
	}
	local, err := m.store.Policies()
	if err != nil {
		return err
	}
	for _, p := range local {
		ok, err := m.kvState.Has(p)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("policy %s has a ledger in %s but none in the shared state; high availability would start it "+
				"from its holdings file and forget the fills since: move the ledger away only after updating the holdings file "+
				"(docs/OPERATIONS.md, \"High availability\")", p, m.store.Dir())
		}
	}
	return nil
}

// standbyReason says why this instance does not plan.
func (m *Main) standbyReason() string {
	if m.lease == nil {
		return "starting"
	}
	if h := m.lease.Holder(); h != "" {
		return "the planner lease is held by " + h
	}
	return "waiting for the planner lease"
}

// Lost delivers an error when this instance has lost the
// high-availability lease. Publishing has stopped by then; the daemon must
// stop too (its supervisor restarts it as a standby), since its view of
// the shared state may be behind the new planner's.
func (m *Main) Lost() <-chan error { return m.lost }

// load reads every policy and hands the set to the engine.
func (m *Main) load(reason string) ([]string, error) {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	set, dirs, err := engine.ReadSources(m.Config.Policies)
	return dirs, m.apply(reason, set, err)
}

// apply records a load attempt and, when it read cleanly, swaps the set in.
func (m *Main) apply(reason string, set []engine.Loaded, err error) error {
	if err == nil {
		err = m.Engine.Load(set)
	}
	now := m.Clock.Now()
	m.reloadMu.Lock()
	m.lastReload = statusdoc.Reload{OK: err == nil, At: now, Files: len(set), Reason: reason}
	if err != nil {
		m.lastReload.Error = err.Error()
	} else {
		m.fingerprint = fingerprint(set)
	}
	m.reloadMu.Unlock()
	m.Metrics.ObserveReload(err == nil, now)
	if err != nil {
		m.Metrics.InputsRejected.WithLabelValues(metrics.InputPolicyFile, "invalid").Inc()
	}
	return err
}

// fingerprint identifies the content of a policy set.
func fingerprint(set []engine.Loaded) string {
	parts := make([]string, len(set))
	for i, l := range set {
		parts[i] = l.Policy.Name + "@" + l.Policy.Version + "+" + l.HoldingsHash
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// Reload re-reads the policies and holdings files. An invalid edit keeps
// the running policies; the error is logged with file and line and shown
// in /status, /readyz and rebalancerd_config_last_reload_successful.
// A file-change notification that changes nothing (same content hashes,
// or the same error as last time) is ignored quietly; SIGHUP always
// reloads and reports.
func (m *Main) Reload(reason string) error {
	// A watcher reload and a SIGHUP must not interleave their reads and
	// swaps: the older read could win.
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	set, _, err := engine.ReadSources(m.Config.Policies)
	if reason == reasonFileChange {
		m.reloadMu.Lock()
		last := m.lastReload
		same := (err == nil && last.OK && fingerprint(set) == m.fingerprint) ||
			(err != nil && !last.OK && err.Error() == last.Error)
		m.reloadMu.Unlock()
		if same {
			return nil
		}
	}
	m.Notifier.Reloading()
	if err = m.apply(reason, set, err); err != nil {
		m.Log.Error("reload failed; the running policies stay as they were", zap.String("reason", reason), zap.Error(err))
		m.Notifier.Reloaded("reload failed: running the previous policies")
		return err
	}
	m.Log.Info("policies reloaded", zap.String("reason", reason), zap.Int("policies", len(set)))
	m.Notifier.Reloaded(fmt.Sprintf("running %d policies", len(set)))
	m.Engine.EvaluateAll()
	return nil
}

// Reload reasons.
const (
	reasonFileChange = "file change"
	reasonSIGHUP     = "SIGHUP"
)

// feed builds a feed source from its configuration.
func (m *Main) feed(f config.Feed) (feeds.Source, error) {
	if f.Kind == config.FeedNATS {
		return feeds.NewNATSFeed(m.Conn, events.Subjects{Prefix: m.Config.NATS.Prefix}.Prices(), m.Log.Named("feed"),
			feeds.WithNATSName(f.Name), feeds.WithNATSClock(m.Clock.Now)), nil
	}
	fetcher, pc, err := buildFetcher(f, m.Env, m.Clock.Now)
	if err != nil {
		return nil, err
	}
	return feeds.NewPoller(f.Name, f.Kind, fetcher, pc, m.Log.Named("feed")), nil
}

// buildFetcher builds a polled feed's fetcher and poll settings: it reads
// the API key (a private file or an environment variable) and the feed's
// files, so that `check -config` finds what `run` would fail on.
func buildFetcher(f config.Feed, env func(string) string, now func() time.Time) (feeds.Fetcher, feeds.PollConfig, error) {
	var pc feeds.PollConfig
	key := ""
	switch {
	case f.APIKeyFile != "":
		if err := rnats.CheckPrivate("api key file", f.APIKeyFile); err != nil {
			return nil, pc, err
		}
		data, err := inputfile.Read(f.APIKeyFile, inputfile.MaxSecretSize)
		if err != nil {
			return nil, pc, fmt.Errorf("api key: %w", err)
		}
		key = string(trimSpace(data))
	case f.APIKeyEnv != "":
		if key = env(f.APIKeyEnv); key == "" {
			return nil, pc, fmt.Errorf("api key: environment variable %s is not set", f.APIKeyEnv)
		}
	}
	var fetcher feeds.Fetcher
	var err error
	switch f.Kind {
	case config.FeedFile:
		fetcher, err = feeds.NewFileFetcher(f.Path)
	case config.FeedReplay:
		fetcher, err = feeds.NewReplayFetcher(f.Path, now)
	case config.FeedHTTP:
		fetcher, err = feeds.NewHTTPFetcher(feeds.HTTPConfig{URL: f.URL, Header: f.Header, APIKey: key,
			Fields: f.Fields, TimeFields: f.TimeFields, Clock: now})
	case config.FeedCoinGecko:
		fetcher, err = feeds.NewCoinGecko(feeds.CoinGeckoConfig{BaseURL: f.URL, IDs: f.IDs, VsCurrency: f.VsCurrency,
			Header: f.Header, APIKey: key})
	default:
		return nil, pc, fmt.Errorf("unknown kind %q", f.Kind)
	}
	if err != nil {
		return nil, pc, err
	}
	pc = feeds.DefaultPollConfig()
	pc.Interval, pc.Timeout, pc.Retries, pc.Clock = f.Interval, f.Timeout, f.Retries, now
	if err := pc.Validate(); err != nil {
		return nil, pc, err
	}
	return fetcher, pc, nil
}

// httpToken reads the HTTP bearer token of c ("" without a token file) and
// checks that the listener may serve with it: off loopback a token is
// required, and TLS or acknowledged plain HTTP. `run` and `check -config`
// both call it, so that check refuses what run refuses.
func httpToken(c config.HTTP) (string, error) {
	tok := ""
	if c.TokenFile != "" {
		if err := rnats.CheckPrivate("http token file", c.TokenFile); err != nil {
			return "", fmt.Errorf("http: %w", err)
		}
		data, err := inputfile.Read(c.TokenFile, inputfile.MaxSecretSize)
		if err != nil {
			return "", fmt.Errorf("http: token: %w", err)
		}
		if tok = string(trimSpace(data)); tok == "" {
			return "", fmt.Errorf("http: token file %s is empty", c.TokenFile)
		}
	}
	if err := rhttp.CheckExposure(c.Listen, tok != "", c.CertFile, c.KeyFile, c.AllowPlaintext); err != nil {
		return "", fmt.Errorf("http: %w", err)
	}
	return tok, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

// feedMetrics copies the feeds' status into the metrics every few seconds
// (and once more when ctx ends).
func (m *Main) feedMetrics(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	last := make([]feeds.Status, len(m.sources))
	for {
		for i, s := range m.sources {
			st := s.Status()
			m.Metrics.FeedPolls.WithLabelValues(st.Name).Add(float64(st.Polls - last[i].Polls))
			m.Metrics.FeedErrors.WithLabelValues(st.Name).Add(float64(st.Failures - last[i].Failures))
			for reason, n := range st.Rejected {
				if d := n - last[i].Rejected[reason]; d > 0 {
					m.Metrics.InputsRejected.WithLabelValues(metrics.InputPrice, reason).Add(float64(d))
				}
			}
			last[i] = st
			if !st.LastSuccess.IsZero() {
				m.Metrics.FeedLastSuccess.WithLabelValues(st.Name).Set(float64(st.LastSuccess.Unix()))
			}
			open := 0.0
			if st.BreakerOpen {
				open = 1
			}
			m.Metrics.FeedBreakerOpen.WithLabelValues(st.Name).Set(open)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Main) ready() []string {
	eng := m.eng.Load()
	if eng == nil {
		return []string{"standby: " + m.standbyReason()}
	}
	out := eng.Ready()
	if m.stepping.Load() {
		out = append(out, "stepping down: no longer the planner")
	}
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	if !m.lastReload.OK {
		out = append(out, "last policy reload failed: "+m.lastReload.Error)
	}
	return out
}

func (m *Main) status() any {
	m.reloadMu.Lock()
	rl := m.lastReload
	m.reloadMu.Unlock()
	fs := make([]feeds.Status, len(m.sources))
	for i, s := range m.sources {
		fs[i] = s.Status()
	}
	role := "planner"
	if m.stepping.Load() {
		role = "stepping down: no longer the planner"
	}
	var st engine.Status
	if eng := m.eng.Load(); eng != nil {
		st = eng.Status()
	} else {
		role = "standby: " + m.standbyReason()
	}
	return &statusdoc.Document{Role: role, Build: buildinfo.Read(), Status: st, LastReload: rl, Feeds: fs}
}

// Close stops the daemon: the feeds, watcher and consumer stop, the engine
// finishes in-flight publishes (bounded), NATS is drained and the embedded
// server shut down.
func (m *Main) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.close() })
	return m.closeErr
}

func (m *Main) close() error {
	if m.Notifier != nil {
		m.Notifier.Stopping()
	}
	if m.controlSub != nil {
		// No control request may start work while the daemon stops.
		_ = m.controlSub.Unsubscribe()
	}
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	if m.engDone != nil {
		<-m.engDone
	} else if m.Engine != nil {
		m.Engine.Close() // Open failed before Run: stop the calendars Load started
	}
	if m.cancelHold != nil {
		m.cancelHold()
		<-m.holdDone
	}
	if m.lease != nil {
		// Nothing is published any more: hand over at once rather than
		// after the lease's TTL.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := m.lease.Release(ctx); err != nil {
			m.Log.Warn("lease not released; a standby takes over when it expires", zap.Error(err))
		}
		cancel()
	}
	var errs []error
	if m.store != nil {
		errs = append(errs, m.store.Close())
	}
	if m.HTTP != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, m.HTTP.Close(ctx))
		cancel()
	}
	if m.Conn != nil {
		if err := m.Conn.Drain(); err != nil && !errors.Is(err, natsgo.ErrConnectionClosed) {
			errs = append(errs, err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !m.Conn.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		m.Conn.Close()
	}
	if m.Server != nil {
		m.Server.Shutdown()
		m.Server.WaitForShutdown()
	}
	return errors.Join(errs...)
}

// reportError tells the report consumer what to do with the engine's
// answer: an error for good (with the reason counted in
// rebalancerd_inputs_rejected_total) or one to retry later.
func reportError(err error) error {
	if reason := ledger.RejectReason(err); reason != "" && errors.Is(err, engine.ErrPermanent) {
		return rnats.Reject(reason, err)
	}
	switch {
	case errors.Is(err, engine.ErrUnknownPolicy):
		return rnats.Reject("unknown_policy", err)
	case errors.Is(err, engine.ErrInvalidFill):
		return rnats.Reject("invalid_fill", err)
	case errors.Is(err, engine.ErrInvalidPositions):
		return rnats.Reject("invalid_positions", err)
	case errors.Is(err, engine.ErrInvalidCashFlow):
		return rnats.Reject("invalid_cash_flow", err)
	case errors.Is(err, engine.ErrPermanent):
		return rnats.Reject(rnats.ReportOther, err)
	}
	return err
}

// publisher adapts the bus to the engine.
type publisher struct{ b *rnats.Bus }

// PublishOrders publishes the orders, with the plan event in the same
// atomic batch where the server takes one, and waits for the ack.
func (p publisher) PublishOrders(ctx context.Context, orders []events.Order, plan *events.Plan) (bool, error) {
	_, planSent, err := p.b.PublishPlanOrders(ctx, orders, plan)
	return planSent, err
}

// PublishPlan publishes the plan event and waits for its ack.
func (p publisher) PublishPlan(ctx context.Context, pl events.Plan) error {
	return p.b.PublishPlan(ctx, pl)
}

// PublishAlert publishes an alert and waits for its ack.
func (p publisher) PublishAlert(ctx context.Context, a events.Alert) error {
	return p.b.PublishAlert(ctx, a)
}

// auxStore keeps the engine's other data as JSON files in a directory.
type auxStore struct{ dir string }

// ReadJSON reads dir/name.json.
func (s auxStore) ReadJSON(name string, v any) (bool, error) {
	return state.ReadJSON(filepath.Join(s.dir, name+".json"), v)
}

// WriteJSON replaces dir/name.json durably.
func (s auxStore) WriteJSON(name string, v any) error {
	return state.WriteJSON(filepath.Join(s.dir, name+".json"), v)
}

// PublishDrift publishes a drift event (core NATS).
func (p publisher) PublishDrift(d events.Drift) error { return p.b.PublishDrift(d) }

// natsURL is where the daemon's NATS is, for logs: the embedded server's
// client URL (the daemon itself is connected in process) or the external
// server it is connected to, without credentials.
func (m *Main) natsURL() string {
	if m.Server != nil {
		return m.Server.ClientURL()
	}
	return m.Conn.ConnectedUrlRedacted()
}

// history reads the streams back for the engine's reconciliation.
type history struct{ b *rnats.Bus }

// OrdersSince returns the order events stored since the given time.
func (h history) OrdersSince(ctx context.Context, since time.Time) ([]events.Order, error) {
	return h.b.OrdersSince(ctx, since)
}

// FillsSince returns the fills stored since the given time as reports.
func (h history) FillsSince(ctx context.Context, since time.Time) ([]engine.Report, bool, error) {
	rs, complete, err := h.b.FillsSince(ctx, since)
	out := make([]engine.Report, len(rs))
	for i, r := range rs {
		out[i] = engine.Report{Policy: r.Policy, Account: r.Account, Fill: r.Fill}
	}
	return out, complete, err
}
