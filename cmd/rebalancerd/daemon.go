package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
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
	// A partitioned group (ha.partitions above 1): the manager, the
	// partitions held, the households the engine runs of them, and the
	// configured households.
	parts        *rnats.Partitions
	cancelParts  context.CancelFunc
	partsDone    chan struct{}
	partsClosing atomic.Bool
	heldParts    atomic.Pointer[map[int]bool]
	ownedNames   atomic.Pointer[map[string]bool]
	allNames     atomic.Pointer[map[string]bool]
	allSet       []engine.Loaded // guarded by loadMu
	httpOpen     bool
	eng          atomic.Pointer[engine.Engine] // for HTTP and NATS callbacks
	controlSub   *natsgo.Subscription
	loadMu       sync.Mutex // one load or reload at a time
	closeOnce    sync.Once
	closeErr     error

	reloadMu    sync.Mutex
	lastReload  statusdoc.Reload
	fingerprint string
	households  householdState // reload.go
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
	m.heldParts.Store(&map[int]bool{})
	m.ownedNames.Store(&map[string]bool{})
	m.allNames.Store(&map[string]bool{})

	store, err := state.OpenWith(cfg.StateDir, state.Options{AsyncJournal: !cfg.JournalFsync})
	if err != nil {
		return err
	}
	m.store = store
	if !cfg.HA.Enabled {
		// High availability keeps its state in NATS: a former state
		// directory stays as it is, and checkLocalState refuses it.
		if err := m.migrate(); err != nil {
			return err
		}
	}
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
	var mayPublishPolicy func(string) error
	if cfg.HA.Enabled && cfg.HA.Partitions > 1 {
		if err := m.joinPartitions(ctx); err != nil {
			return err
		}
		engStore = m.kvState
		mayPublish = m.mayPublishPartitioned
		// The partition is held, and the household was loaded under the
		// partition's current term.
		mayPublishPolicy = m.kvState.MayPublish
	} else if cfg.HA.Enabled {
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
	var aux engine.AuxStore = store
	if m.kvState != nil {
		aux = m.kvState // shared in high availability
	}
	eng := engine.New(engine.Options{Clock: m.Clock, Publisher: pub, Store: engStore, MayPublish: mayPublish,
		Aux:     aux,
		Metrics: m.Metrics, Log: m.Log.Named("engine"), OnPublished: m.OnPublished, ShutdownGrace: m.ShutdownGrace,
		DedupeWindow: cfg.NATS.Duplicates, Retention: m.Retention, InlinePublishTimeout: m.InlinePublishTimeout,
		MaxSkew: cfg.Reports.MaxClockSkew, FillCollar: cfg.Reports.FillPriceCollar, Partitioned: m.parts != nil, MayPublishPolicy: mayPublishPolicy,
		DriftEvery: cfg.DriftEvery, HouseholdMetrics: cfg.Metrics.HouseholdSeries})
	m.Engine = eng
	m.eng.Store(eng)
	eng.SetNATSConnected(m.Conn.IsConnected())

	// Until Open returns: the first evaluation of every household allocates
	// too, and the collection the default then starts runs beside a daemon
	// that is up.
	defer startGC()()
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
			if err := m.reportElsewhere(r.Policy); err != nil {
				return err // the instance holding its partition takes it
			}
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
	if m.parts != nil {
		m.startPartitions()
	}
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

// Reload reasons.
const (
	reasonFileChange = "file change"
	reasonSIGHUP     = "SIGHUP"
)

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
	if m.parts != nil && !m.stepping.Load() {
		role = m.partitionsRole()
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
	m.stopPartitions()
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

// natsURL is where the daemon's NATS is, for logs: the embedded server's
// client URL (the daemon itself is connected in process) or the external
// server it is connected to, without credentials.
func (m *Main) natsURL() string {
	if m.Server != nil {
		return m.Server.ClientURL()
	}
	return m.Conn.ConnectedUrlRedacted()
}

// migrate imports the state directory's former layout into the store,
// once: the ledgers and journals (ledgers/) and the engine's documents
// (strategy/), each directory renamed with state.MigratedSuffix after.
func (m *Main) migrate() error {
	for _, d := range []struct {
		name    string
		ledgers bool
	}{{"ledgers", true}, {"strategy", false}} {
		mig, err := m.store.Migrate(filepath.Join(m.Config.StateDir, d.name), d.ledgers)
		if err != nil {
			return fmt.Errorf("migrate the state directory: %w", err)
		}
		if mig.Dir == "" {
			continue
		}
		m.Log.Warn("state directory migrated into the state file; the former files are kept",
			zap.String("from", mig.Dir), zap.String("to", m.store.Path()), zap.String("kept_as", mig.RenamedTo),
			zap.Int("ledgers", mig.Ledgers), zap.Int("journal_entries", mig.Entries), zap.Int("documents", mig.Documents),
			zap.Int("orphan_journals_ignored", mig.Orphans), zap.Bool("resumed", mig.Resumed))
	}
	return nil
}

// startGCPercent is the garbage collector's GOGC while the daemon reads and
// loads its households at start, up to "rebalancerd started". Parsing
// 100,000 household and holdings files allocates gigabytes that die at
// once while the live heap grows to its full size: at the default 100 the
// collector marks that growing heap again and again, a fifth of a start's
// CPU time. At 400 a restart of 100,000 households took about a fifth less
// CPU time to start, for a quarter to a half more resident memory at
// "started" and about a tenth more a minute later (docs/SCALING.md,
// "Start-up").
const startGCPercent = 400

// gcAtStart counts the Mains of the process that are starting (several in
// tests), and keeps the GOGC from before the first.
var gcAtStart struct {
	sync.Mutex
	starting int
	prev     int
}

// startGC sets GOGC to startGCPercent for the load at start, unless the
// operator set GOGC, and returns what sets it back once no other start of
// the process needs it.
func startGC() (restore func()) {
	if os.Getenv("GOGC") != "" {
		return func() {}
	}
	gcAtStart.Lock()
	defer gcAtStart.Unlock()
	if gcAtStart.starting == 0 {
		gcAtStart.prev = debug.SetGCPercent(startGCPercent)
	}
	gcAtStart.starting++
	var once sync.Once
	return func() {
		once.Do(func() {
			gcAtStart.Lock()
			defer gcAtStart.Unlock()
			if gcAtStart.starting--; gcAtStart.starting == 0 {
				debug.SetGCPercent(gcAtStart.prev)
			}
		})
	}
}
