package nats

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Defaults of EmbeddedConfig.
const (
	DefaultEmbeddedHost         = "127.0.0.1"
	DefaultEmbeddedPort         = 4222
	DefaultEmbeddedReadyTimeout = 10 * time.Second
)

// EmbeddedConfig configures the NATS server the daemon runs in its own
// process when no NATS URL is configured.
type EmbeddedConfig struct {
	// Host is the address clients connect to; default 127.0.0.1.
	Host string
	// Port is the client port; 0 means 4222, -1 a random free port.
	Port int
	// StoreDir is the JetStream store directory, under the daemon's state
	// directory. Required: orders must not land in a temporary directory.
	StoreDir string
	// SyncInterval is how often JetStream fsyncs its files. Zero, the
	// default, fsyncs every write (sync_interval: always): an acknowledged
	// order survives a power loss. A positive value trades that for
	// throughput, as the server's own default of two minutes does.
	SyncInterval time.Duration
	// ServerName names the server in logs and monitoring; default
	// "rebalancerd-embedded".
	ServerName string
	// ReadyTimeout bounds the wait for the server to accept connections;
	// default 10s.
	ReadyTimeout time.Duration
}

// StartEmbedded starts an in-process NATS server with JetStream and waits
// until it accepts connections. The server never installs signal handlers
// (the daemon owns them) and logs through log (nil: no logs). The caller
// stops it with Shutdown and WaitForShutdown.
//
// It fails with a clear error, and leaves nothing running, when the port is
// taken or JetStream cannot use StoreDir.
func StartEmbedded(cfg EmbeddedConfig, log *zap.Logger) (*server.Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("nats: embedded server: a JetStream store directory is required")
	}
	if cfg.Host == "" {
		cfg.Host = DefaultEmbeddedHost
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultEmbeddedPort
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "rebalancerd-embedded"
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = DefaultEmbeddedReadyTimeout
	}
	if log == nil {
		log = zap.NewNop()
	}
	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	if cfg.Port < 0 {
		addr = net.JoinHostPort(cfg.Host, "<random port>")
	}

	opts := &server.Options{
		ServerName: cfg.ServerName,
		Host:       cfg.Host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		// Logs go through the zap logger set below, never the server's own.
		NoLog: true,
	}
	if cfg.SyncInterval > 0 {
		opts.SyncInterval = cfg.SyncInterval
	} else {
		opts.SyncAlways = true
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats: embedded server on %s: %w", addr, err)
	}
	sl := &serverLogger{log: log.Named("nats-server")}
	s.SetLoggerV2(sl, log.Core().Enabled(zapcore.DebugLevel), false, false)

	// Start returns once the client listener is open, or after a fatal
	// error (port taken, JetStream store unusable) that it reports only
	// through the logger.
	s.Start()
	if ferr := sl.fatal(); ferr != nil {
		s.Shutdown()
		s.WaitForShutdown()
		if strings.Contains(ferr.Error(), "listening on port") {
			return nil, fmt.Errorf("nats: embedded server cannot listen on %s (is the port taken? choose another port, or set the NATS URL to use the server already running there): %w", addr, ferr)
		}
		return nil, fmt.Errorf("nats: embedded server on %s (store %s) failed to start: %w", addr, cfg.StoreDir, ferr)
	}
	if !s.ReadyForConnections(cfg.ReadyTimeout) {
		s.Shutdown()
		s.WaitForShutdown()
		if ferr := sl.fatal(); ferr != nil {
			return nil, fmt.Errorf("nats: embedded server on %s failed to start: %w", addr, ferr)
		}
		return nil, fmt.Errorf("nats: embedded server on %s not ready for connections after %s", addr, cfg.ReadyTimeout)
	}
	if !s.JetStreamEnabled() {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("nats: embedded server on %s started without JetStream (store %s)", addr, cfg.StoreDir)
	}
	log.Info("embedded NATS server started",
		zap.String("url", s.ClientURL()), zap.String("store_dir", cfg.StoreDir),
		zap.Bool("sync_always", opts.SyncAlways))
	return s, nil
}

// serverLogger routes the server's logs to zap and remembers the first
// fatal error, which the server reports only by logging it.
type serverLogger struct {
	log *zap.Logger

	mu       sync.Mutex
	firstErr error
}

// fatal returns the first fatal error the server logged, or nil.
func (l *serverLogger) fatal() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firstErr
}

func (l *serverLogger) logf(level zapcore.Level, format string, v []any) {
	if !l.log.Core().Enabled(level) {
		return
	}
	// Checked with the final message, which sampling keys on.
	if ce := l.log.Check(level, fmt.Sprintf(format, v...)); ce != nil {
		ce.Write()
	}
}

// Noticef logs a server notice at Info.
func (l *serverLogger) Noticef(format string, v ...any) { l.logf(zapcore.InfoLevel, format, v) }

// Warnf logs a server warning at Warn.
func (l *serverLogger) Warnf(format string, v ...any) { l.logf(zapcore.WarnLevel, format, v) }

// Errorf logs a server error at Error.
func (l *serverLogger) Errorf(format string, v ...any) { l.logf(zapcore.ErrorLevel, format, v) }

// Debugf logs a server debug statement at Debug.
func (l *serverLogger) Debugf(format string, v ...any) { l.logf(zapcore.DebugLevel, format, v) }

// Tracef logs a server trace statement at Debug.
func (l *serverLogger) Tracef(format string, v ...any) { l.logf(zapcore.DebugLevel, format, v) }

// Fatalf logs at Error and records the error; it never exits the process.
func (l *serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.log.Error(msg, zap.Bool("fatal", true))
	l.mu.Lock()
	if l.firstErr == nil {
		l.firstErr = errors.New(msg)
	}
	l.mu.Unlock()
}
