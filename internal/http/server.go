// Package http serves rebalancerd's operating endpoints: liveness,
// readiness, Prometheus metrics, a JSON status document, the status page
// for people and the log level.
//
//	GET /          the status page (page.go): households, sleeves, orders
//	GET /household/{name}
//	GET /healthz   200 "ok" while the process serves HTTP at all
//	GET /readyz    200 "ready", or 503 with the reasons one per line
//	               (JSON with Accept: application/json)
//	GET /metrics   Prometheus exposition of the Gatherer
//	GET /status    200 application/json of Status()
//	GET /loglevel  {"level":"info"}; PUT /loglevel {"level":"debug"} changes it
//
// The read endpoints also answer HEAD; other methods get 405, unknown paths
// 404. The server listens on 127.0.0.1 by default: nothing here is meant for
// the network at large (PUT /loglevel has no authentication).
package http

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/rebalancerd/rebalancerd/internal/shortlist"
)

// DefaultAddr is the address Open listens on when Server.Addr is empty.
const DefaultAddr = "127.0.0.1:8080"

// Timeouts of the server. Every endpoint answers from memory; the longest is
// /metrics, which gathers the registry.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	maxBodyBytes      = 4 << 10 // PUT /loglevel
)

// Server is the operating HTTP server. Set the fields, then call Open; the
// fields must not change afterwards. The callbacks are called from request
// goroutines, concurrently: they must be safe for concurrent use and quick.
type Server struct {
	// Addr is the TCP address to listen on; DefaultAddr when empty. Use
	// "127.0.0.1:0" for a free port and URL to learn it.
	Addr string
	// Gatherer is served at /metrics; without one /metrics is 404.
	Gatherer prometheus.Gatherer
	// Registerer, if set, receives promhttp's own metrics
	// (promhttp_metric_handler_requests_total and friends).
	Registerer prometheus.Registerer
	// Ready reports why the daemon is not ready: nil or empty means ready.
	// A nil Ready means always ready.
	Ready func() []string
	// Status returns the document served as JSON at /status, a
	// statusdoc.Document or a value with the same JSON, which the status
	// page at / renders; without one /status and the page are 404.
	Status func() any
	// Level, if set, is served at /loglevel (GET, PUT) by zap's handler.
	Level *zap.AtomicLevel
	// Log receives server errors; nil means no logging.
	Log *zap.Logger
	// Token, when set, is the bearer token every request but /healthz
	// must carry (Authorization: Bearer <token>), compared in constant
	// time. Required when Addr is not a loopback address.
	Token string
	// CertFile and KeyFile serve HTTPS. Off loopback, either TLS or
	// AllowPlaintext is required.
	CertFile, KeyFile string
	// AllowPlaintext acknowledges serving plain HTTP off loopback (behind
	// a TLS-terminating proxy on a private network, say).
	AllowPlaintext bool

	mu       sync.Mutex
	ln       net.Listener
	srv      *http.Server
	done     chan struct{} // closed when Serve has returned
	serveErr error         // what Serve returned, unless ErrServerClosed
}

// Open listens on Addr and serves in the background until Close. When it
// returns, URL is known and requests are accepted.
func (s *Server) Open() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("http server: already open")
	}
	addr := s.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	if err := CheckExposure(addr, s.Token != "", s.CertFile, s.KeyFile, s.AllowPlaintext); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("http server: listen on %s: %w", addr, err)
	}
	log := s.logger()
	errLog, err := zap.NewStdLogAt(log, zapcore.WarnLevel)
	if err != nil {
		ln.Close()
		return fmt.Errorf("http server: error log: %w", err)
	}
	s.ln = ln
	s.done = make(chan struct{})
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errLog,
	}
	srv, done := s.srv, s.done
	tls := s.CertFile != ""
	go func() {
		defer close(done)
		var err error
		if tls {
			err = srv.ServeTLS(ln, s.CertFile, s.KeyFile)
		} else {
			err = srv.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", zap.String("addr", ln.Addr().String()), zap.Error(err))
			s.mu.Lock()
			s.serveErr = fmt.Errorf("http server on %s: %w", ln.Addr(), err)
			s.mu.Unlock()
		}
	}()
	log.Info("http server listening", zap.String("url", s.scheme()+"://"+ln.Addr().String()),
		zap.Bool("token_required", s.Token != ""))
	return nil
}

func (s *Server) scheme() string {
	if s.CertFile != "" {
		return "https"
	}
	return "http"
}

// CheckExposure refuses to serve on addr (DefaultAddr when empty) off
// loopback without a token, and without TLS unless plain HTTP is
// acknowledged. Open applies it; `rebalancerd check -config` too, so that
// it refuses what `run` refuses.
func CheckExposure(addr string, token bool, certFile, keyFile string, allowPlaintext bool) error {
	if addr == "" {
		addr = DefaultAddr
	}
	if (certFile == "") != (keyFile == "") {
		return errors.New("http server: a certificate needs both cert_file and key_file")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("http server: address %q: %w", addr, err)
	}
	if loopback(host) {
		return nil
	}
	if !token {
		return fmt.Errorf("http server: %s is not a loopback address: set a bearer token (http.token_file) to listen there", addr)
	}
	if certFile == "" && !allowPlaintext {
		return fmt.Errorf("http server: %s is not a loopback address: serve TLS (http.tls) or acknowledge plain HTTP (http.allow_plaintext: true)", addr)
	}
	return nil
}

// loopback reports whether host names only the local machine; an empty
// host (all interfaces) does not.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// URL is the base URL of the open server, such as "http://127.0.0.1:8080";
// empty before Open.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.scheme() + "://" + s.ln.Addr().String()
}

// Close stops accepting connections and waits for the requests in flight to
// finish, or for ctx to end, in which case it closes the remaining
// connections and returns ctx's error. It also returns any error that ended
// serving early. Close before Open does nothing.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	if err != nil {
		err = fmt.Errorf("http server: graceful shutdown: %w", err)
		if cerr := srv.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("http server: close: %w", cerr))
		}
	}
	<-done
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(err, s.serveErr)
}

// Handler returns the handler of every endpoint, for tests and for serving
// on a listener of your own. It does not need Open.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	// "GET /path" also matches HEAD; ServeMux answers 405 with an Allow
	// header for other methods and 404 for other paths.
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.Gatherer != nil {
		mux.Handle("GET /metrics", s.metricsHandler())
	}
	if s.Status != nil {
		mux.HandleFunc("GET /status", s.status)
		mux.HandleFunc("GET /{$}", s.overview)
		mux.HandleFunc("GET /household/{name}", s.household)
		mux.Handle("GET /assets/", assetsHandler())
	}
	if s.Level != nil {
		mux.HandleFunc("GET /loglevel", s.loglevel)
		mux.HandleFunc("PUT /loglevel", s.loglevel)
	}
	if s.Token == "" {
		return mux
	}
	want := []byte(s.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" && subtle.ConstantTimeCompare(bearerToken(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rebalancerd"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header, or nil. The scheme is case-insensitive (RFC 9110, section 11.1)
// and may be followed by more than one space.
func bearerToken(header string) []byte {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil
	}
	return []byte(strings.TrimLeft(token, " "))
}

func (s *Server) logger() *zap.Logger {
	if s.Log == nil {
		return zap.NewNop()
	}
	return s.Log
}

func (s *Server) metricsHandler() http.Handler {
	opts := promhttp.HandlerOpts{
		ErrorLog: zap.NewStdLog(s.logger().Named("promhttp")),
		// A registry that fails to gather is a bug: fail the scrape (up
		// becomes 0) rather than serve part of it.
		ErrorHandling: promhttp.HTTPErrorOnError,
		Registry:      s.Registerer,
	}
	h := promhttp.HandlerFor(s.Gatherer, opts)
	if s.Registerer != nil {
		h = promhttp.InstrumentMetricHandler(s.Registerer, h)
	}
	return h
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	noStore(w, "text/plain; charset=utf-8")
	io.WriteString(w, "ok\n")
}

// readiness is the JSON body of /readyz.
type readiness struct {
	Ready   bool     `json:"ready"`
	Reasons []string `json:"reasons"`
}

// maxReasonLen bounds each reason /readyz shows, in bytes.
const maxReasonLen = 500

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	var reasons []string
	if s.Ready != nil {
		// Bounded whatever the daemon's state: the first reasons, each
		// cut short, and a count of the rest (/status has them all).
		reasons = slices.Clone(shortlist.First(s.Ready(), shortlist.Max))
		for i, reason := range reasons {
			if len(reason) > maxReasonLen {
				reasons[i] = strings.ToValidUTF8(reason[:maxReasonLen], "") + "…"
			}
		}
	}
	code := http.StatusOK
	if len(reasons) > 0 {
		code = http.StatusServiceUnavailable
	}
	if wantsJSON(r) {
		if reasons == nil {
			reasons = []string{}
		}
		s.writeJSON(w, r, code, readiness{Ready: len(reasons) == 0, Reasons: reasons})
		return
	}
	noStore(w, "text/plain; charset=utf-8")
	w.WriteHeader(code)
	if code == http.StatusOK {
		io.WriteString(w, "ready\n")
		return
	}
	for _, reason := range reasons {
		// One reason per line, whatever the reason says.
		io.WriteString(w, strings.ReplaceAll(reason, "\n", " ")+"\n")
	}
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, r, http.StatusOK, s.Status())
}

func (s *Server) loglevel(w http.ResponseWriter, r *http.Request) {
	noStore(w, "application/json")
	if r.Method == http.MethodHead {
		// zap's handler knows GET and PUT only; the body is discarded.
		r = r.Clone(r.Context())
		r.Method = http.MethodGet
	}
	if r.Method != http.MethodPut {
		s.Level.ServeHTTP(w, r)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	before := s.Level.Level()
	s.Level.ServeHTTP(w, r)
	if after := s.Level.Level(); after != before {
		s.logger().Info("log level changed", zap.Stringer("from", before), zap.Stringer("to", after),
			zap.String("remote", r.RemoteAddr))
	}
}

// writeJSON encodes v before writing anything, so that a value that cannot
// be encoded gives a clean 500.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		s.logger().Error("encode JSON response", zap.String("path", r.URL.Path), zap.Error(err))
		noStore(w, "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "internal error: cannot encode the response\n")
		return
	}
	noStore(w, "application/json")
	w.WriteHeader(code)
	w.Write(buf.Bytes())
}

// wantsJSON reports whether the request's Accept header names
// application/json.
func wantsJSON(r *http.Request) bool {
	for _, accept := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(accept, ",") {
			if mt, _, err := mime.ParseMediaType(part); err == nil && mt == "application/json" {
				return true
			}
		}
	}
	return false
}

func noStore(w http.ResponseWriter, contentType string) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
}
