package nats

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/inputfile"
)

// Defaults of ConnConfig.
const (
	DefaultReconnectWait    = 2 * time.Second
	DefaultReconnectBufSize = 1 << 20 // 1 MiB
	DefaultPingInterval     = 20 * time.Second
)

// ConnConfig configures the connection to an external NATS server. Secrets
// are given as paths of files holding them (systemd credentials, Kubernetes
// secrets), never inline in the configuration.
type ConnConfig struct {
	// URL is one server URL or a comma-separated list (nats://, tls://).
	URL string
	// Name is the client name the server shows in its monitoring.
	Name string

	// User, with Password or PasswordFile, authenticates with a user name
	// and password.
	User string
	// Password is the password itself, for callers that already hold it;
	// set at most one of Password and PasswordFile.
	Password     string
	PasswordFile string
	// TokenFile holds an authentication token.
	TokenFile string
	// NKeySeedFile holds a user NKey seed (SU...).
	NKeySeedFile string
	// CredsFile is a .creds file: user JWT and NKey seed (operator mode).
	CredsFile string

	// CAFile is a PEM bundle of the CAs trusted to sign the server's
	// certificate; setting it requires TLS.
	CAFile string
	// CertFile and KeyFile are the client certificate and key presented to
	// a server that verifies clients; both or neither.
	CertFile, KeyFile string

	// ReconnectWait is the pause between reconnect attempts to the same
	// server, plus a random jitter; default 2s.
	ReconnectWait time.Duration
	// ReconnectBufSize bounds what core publishes buffer while reconnecting;
	// default 1 MiB, -1 disables buffering. Orders never rely on it: they are
	// published through JetStream and retried until acknowledged.
	ReconnectBufSize int
	// PingInterval is how often the client pings the server to detect a
	// dead connection (after two missed pongs); default 20s.
	PingInterval time.Duration
}

// Connect connects to the NATS server of cfg. It never gives up: the
// initial connection and every reconnection are retried forever, so a NATS
// outage, even at start, only delays the daemon. It returns an error only
// for a configuration that can never work (unreadable secret or
// certificate files, conflicting authentication methods).
//
// onState, if not nil, is called with true when the connection is
// established or re-established and with false when it is lost or closed;
// calls are serialized and only report changes, the state before the
// first call being disconnected.
func Connect(cfg ConnConfig, log *zap.Logger, onState func(connected bool)) (*natsgo.Conn, error) {
	if cfg.URL == "" {
		return nil, errors.New("nats: connect: no URL")
	}
	if log == nil {
		log = zap.NewNop()
	}
	redacted := redactURL(cfg.URL)
	opts, err := cfg.options()
	if err != nil {
		return nil, fmt.Errorf("nats: connect to %s: %w", redacted, err)
	}
	opts = append(opts, connOptions(cfg.Name, cfg.ReconnectWait, log, onState)...)
	nc, err := natsgo.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats: connect to %s: %w", redacted, err)
	}
	if !nc.IsConnected() {
		log.Warn("NATS server unreachable; retrying in the background", zap.String("url", redacted))
	}
	return nc, nil
}

// ConnectEmbedded connects to an in-process server started by
// StartEmbedded, without TCP. It has the same reconnect behaviour and
// onState contract as Connect.
func ConnectEmbedded(s *server.Server, log *zap.Logger, onState func(connected bool)) (*natsgo.Conn, error) {
	if s == nil {
		return nil, errors.New("nats: connect to embedded server: no server")
	}
	if log == nil {
		log = zap.NewNop()
	}
	opts := append([]natsgo.Option{natsgo.InProcessServer(s)},
		connOptions("rebalancerd", 0, log, onState)...)
	nc, err := natsgo.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("nats: connect to embedded server: %w", err)
	}
	return nc, nil
}

// options translates the authentication and TLS settings of cfg, reading
// the secret files now so that a wrong path fails at start.
func (cfg ConnConfig) options() ([]natsgo.Option, error) { return cfg.Options() }

// Options returns the client options for the configured authentication and
// TLS, after checking the secret files (present, private, not empty), for
// command-line clients that dial NATS themselves.
func (cfg ConnConfig) Options() ([]natsgo.Option, error) {
	var opts []natsgo.Option
	var methods []string

	if cfg.Password != "" && cfg.PasswordFile != "" {
		return nil, errors.New("both password and password file set")
	}
	if cfg.User != "" || cfg.Password != "" || cfg.PasswordFile != "" {
		if cfg.User == "" {
			return nil, errors.New("a password is set without a user")
		}
		password := cfg.Password
		if cfg.PasswordFile != "" {
			p, err := readSecret("password file", cfg.PasswordFile)
			if err != nil {
				return nil, err
			}
			password = p
		}
		if password == "" {
			return nil, fmt.Errorf("user %q has no password", cfg.User)
		}
		opts = append(opts, natsgo.UserInfo(cfg.User, password))
		methods = append(methods, "user/password")
	}
	if cfg.TokenFile != "" {
		token, err := readSecret("token file", cfg.TokenFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, natsgo.Token(token))
		methods = append(methods, "token")
	}
	if cfg.NKeySeedFile != "" {
		if err := CheckPrivate("nkey seed file", cfg.NKeySeedFile); err != nil {
			return nil, err
		}
		opt, err := natsgo.NkeyOptionFromSeed(cfg.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nkey seed file %s: %w", cfg.NKeySeedFile, err)
		}
		opts = append(opts, opt)
		methods = append(methods, "nkey")
	}
	if cfg.CredsFile != "" {
		// The client reads the file at every (re)connect, which lets it be
		// rotated; check now that it is there.
		if _, err := readSecret("credentials file", cfg.CredsFile); err != nil {
			return nil, err
		}
		opts = append(opts, natsgo.UserCredentials(cfg.CredsFile))
		methods = append(methods, "creds")
	}
	if len(methods) > 1 {
		return nil, fmt.Errorf("several authentication methods set (%s); set one", strings.Join(methods, ", "))
	}

	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, errors.New("a client certificate needs both a certificate file and a key file")
	}
	if cfg.CAFile != "" {
		opts = append(opts, natsgo.RootCAs(cfg.CAFile))
	}
	if cfg.CertFile != "" {
		if err := CheckPrivate("TLS key file", cfg.KeyFile); err != nil {
			return nil, err
		}
		opts = append(opts, natsgo.ClientCert(cfg.CertFile, cfg.KeyFile))
	}
	if cfg.ReconnectBufSize != 0 {
		opts = append(opts, natsgo.ReconnectBufSize(cfg.ReconnectBufSize))
	}
	if cfg.PingInterval > 0 {
		opts = append(opts, natsgo.PingInterval(cfg.PingInterval))
	}
	return opts, nil
}

// connOptions are the options every connection of the daemon shares:
// reconnect forever, a bounded reconnect buffer, and handlers that log
// without secrets and report the state.
func connOptions(name string, reconnectWait time.Duration, log *zap.Logger, onState func(bool)) []natsgo.Option {
	if name == "" {
		name = "rebalancerd"
	}
	if reconnectWait <= 0 {
		reconnectWait = DefaultReconnectWait
	}
	st := &stateNotifier{fn: onState}
	// Later options win: ConnConfig.options may override the buffer size and
	// ping interval set here, so these come first.
	return []natsgo.Option{
		natsgo.ReconnectBufSize(DefaultReconnectBufSize),
		natsgo.PingInterval(DefaultPingInterval),
		natsgo.Name(name),
		natsgo.MaxReconnects(-1),
		natsgo.RetryOnFailedConnect(true),
		natsgo.ReconnectWait(reconnectWait),
		natsgo.ReconnectJitter(reconnectWait/4, reconnectWait/2),
		natsgo.ConnectHandler(func(nc *natsgo.Conn) {
			log.Info("connected to NATS", zap.String("url", nc.ConnectedUrlRedacted()),
				zap.String("server", nc.ConnectedServerName()))
			st.set(true)
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) {
			log.Info("reconnected to NATS", zap.String("url", nc.ConnectedUrlRedacted()),
				zap.String("server", nc.ConnectedServerName()), zap.Uint64("reconnects", nc.Stats().Reconnects))
			st.set(true)
		}),
		natsgo.DisconnectErrHandler(func(nc *natsgo.Conn, err error) {
			if nc.IsClosed() {
				log.Info("disconnected from NATS: connection closing", zap.Error(err))
			} else {
				log.Warn("disconnected from NATS; reconnecting", zap.Error(err))
			}
			st.set(false)
		}),
		natsgo.ReconnectErrHandler(func(nc *natsgo.Conn, err error) {
			log.Debug("NATS reconnect attempt failed", zap.Error(err))
		}),
		natsgo.ClosedHandler(func(nc *natsgo.Conn) {
			log.Info("NATS connection closed", zap.NamedError("last_error", nc.LastError()))
			st.set(false)
		}),
		natsgo.LameDuckModeHandler(func(nc *natsgo.Conn) {
			log.Warn("NATS server entering lame duck mode; will reconnect to another",
				zap.String("url", nc.ConnectedUrlRedacted()))
		}),
		natsgo.ErrorHandler(func(nc *natsgo.Conn, sub *natsgo.Subscription, err error) {
			fields := []zap.Field{zap.Error(err)}
			if sub != nil {
				fields = append(fields, zap.String("subject", sub.Subject))
			}
			log.Error("NATS asynchronous error", fields...)
		}),
	}
}

// stateNotifier reports connection state changes, once per change, from
// an initial disconnected state.
type stateNotifier struct {
	fn func(bool)

	mu        sync.Mutex
	connected bool
}

func (s *stateNotifier) set(connected bool) {
	if s.fn == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.connected == connected {
		return
	}
	s.connected = connected
	s.fn(connected)
}

// readSecret reads a secret from a file, dropping a final line break. Its
// errors name the file, never the content.
func readSecret(what, path string) (string, error) {
	if err := CheckPrivate(what, path); err != nil {
		return "", err
	}
	b, err := inputfile.Read(path, inputfile.MaxSecretSize)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s %s is empty", what, path)
	}
	return s, nil
}

// CheckPrivate refuses a secret file that group or others may read or
// write, the way OpenSSH refuses an unprotected private key: a secret that
// other users can read is already compromised, and saying so early is
// better than running with it.
func CheckPrivate(what, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s %s is accessible by group or others (mode %04o): run chmod 600 on it", what, path, perm)
	}
	return nil
}

// redactURL hides the user information of every URL in a comma-separated
// list, for logs and errors.
func redactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		u, err := url.Parse(p)
		if err != nil {
			if strings.Contains(p, "@") {
				parts[i] = "<unparsable URL>"
			}
			continue
		}
		if u.User != nil {
			u.User = url.User("redacted")
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
