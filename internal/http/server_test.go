package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// open starts s on a free loopback port and closes it when the test ends.
func open(t *testing.T, s *Server) *Server {
	t.Helper()
	if s.Addr == "" {
		s.Addr = "127.0.0.1:0"
	}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// do sends a request and returns the status, the headers and the body.
func do(t *testing.T, method, url string, header http.Header, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestHealthz(t *testing.T) {
	s := open(t, &Server{})
	code, h, body := do(t, "GET", s.URL()+"/healthz", nil, "")
	if code != 200 || body != "ok\n" {
		t.Fatalf("GET /healthz = %d %q, want 200 \"ok\\n\"", code, body)
	}
	if got := h.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", got)
	}
	code, _, body = do(t, "HEAD", s.URL()+"/healthz", nil, "")
	if code != 200 || body != "" {
		t.Errorf("HEAD /healthz = %d %q, want 200 and no body", code, body)
	}
}

func TestReadyz(t *testing.T) {
	var reasons atomic.Pointer[[]string]
	reasons.Store(&[]string{"nats: not connected", "policy smith: stale price VTI\n(age 2h)"})
	s := open(t, &Server{Ready: func() []string { return *reasons.Load() }})

	code, h, body := do(t, "GET", s.URL()+"/readyz", nil, "")
	if want := "nats: not connected\npolicy smith: stale price VTI (age 2h)\n"; code != 503 || body != want {
		t.Errorf("not ready: GET /readyz = %d %q, want 503 %q", code, body, want)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want text/plain", ct)
	}

	accept := http.Header{"Accept": {"text/html;q=0.9, application/json"}}
	code, h, body = do(t, "GET", s.URL()+"/readyz", accept, "")
	var got readiness
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("JSON /readyz: %v in %q", err, body)
	}
	if code != 503 || got.Ready || len(got.Reasons) != 2 || got.Reasons[0] != "nats: not connected" {
		t.Errorf("not ready, JSON: %d %+v", code, got)
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}

	reasons.Store(&[]string{})
	if code, _, body := do(t, "GET", s.URL()+"/readyz", nil, ""); code != 200 || body != "ready\n" {
		t.Errorf("ready: GET /readyz = %d %q, want 200 \"ready\\n\"", code, body)
	}
	code, _, body = do(t, "GET", s.URL()+"/readyz", accept, "")
	if want := "{\n  \"ready\": true,\n  \"reasons\": []\n}\n"; code != 200 || body != want {
		t.Errorf("ready, JSON: %d %q, want 200 %q", code, body, want)
	}
}

func TestReadyzWithoutCallbackIsReady(t *testing.T) {
	s := open(t, &Server{})
	if code, _, body := do(t, "GET", s.URL()+"/readyz", nil, ""); code != 200 || body != "ready\n" {
		t.Errorf("GET /readyz = %d %q, want 200 ready", code, body)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "rebalancerd_test_total", Help: "A test counter."})
	reg.MustRegister(c)
	c.Add(7)
	own := prometheus.NewRegistry()
	s := open(t, &Server{Gatherer: reg, Registerer: own})

	code, h, body := do(t, "GET", s.URL()+"/metrics", nil, "")
	if code != 200 || !strings.Contains(body, "\nrebalancerd_test_total 7\n") {
		t.Fatalf("GET /metrics = %d, body:\n%s", code, body)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q, want the text exposition format", ct)
	}
	// promhttp's own metrics go to the Registerer, not to the Gatherer.
	if strings.Contains(body, "promhttp_") {
		t.Errorf("promhttp metrics leaked into the served registry:\n%s", body)
	}
	mfs, err := own.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	if !strings.Contains(strings.Join(names, " "), "promhttp_metric_handler_requests_total") {
		t.Errorf("Registerer has %v, want promhttp_metric_handler_requests_total", names)
	}
}

// failing is a collector whose collection always fails.
type failing struct{ desc *prometheus.Desc }

func (f failing) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }
func (f failing) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(f.desc, errors.New("broken collector"))
}

func TestMetricsGatherErrorFailsTheScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(failing{prometheus.NewDesc("rebalancerd_broken", "Broken.", nil, nil)})
	core, logs := observer.New(zapcore.DebugLevel)
	s := open(t, &Server{Gatherer: reg, Log: zap.New(core)})
	code, _, body := do(t, "GET", s.URL()+"/metrics", nil, "")
	if code != 500 || !strings.Contains(body, "broken collector") {
		t.Errorf("GET /metrics with a broken collector = %d %q, want 500 naming the error", code, body)
	}
	if logs.FilterMessageSnippet("broken collector").Len() == 0 {
		t.Errorf("the gather error was not logged; logs: %v", logs.All())
	}
}

func TestStatus(t *testing.T) {
	type policy struct {
		Name    string `json:"name"`
		Blocked bool   `json:"blocked"`
	}
	s := open(t, &Server{Status: func() any { return map[string]any{"policies": []policy{{"smith", true}}} }})
	code, h, body := do(t, "GET", s.URL()+"/status", nil, "")
	if code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /status = %d %s", code, h.Get("Content-Type"))
	}
	var got struct{ Policies []policy }
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%v in %q", err, body)
	}
	if len(got.Policies) != 1 || got.Policies[0] != (policy{"smith", true}) {
		t.Errorf("status = %+v", got)
	}
}

func TestStatusEncodeError(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	s := open(t, &Server{Status: func() any { return make(chan int) }, Log: zap.New(core)})
	code, _, body := do(t, "GET", s.URL()+"/status", nil, "")
	if code != 500 || strings.Contains(body, "{") {
		t.Errorf("unencodable status = %d %q, want 500 and no partial JSON", code, body)
	}
	if logs.FilterMessage("encode JSON response").Len() != 1 {
		t.Errorf("encode error not logged: %v", logs.All())
	}
}

func TestRouting(t *testing.T) {
	lvl := zap.NewAtomicLevel()
	s := open(t, &Server{Gatherer: prometheus.NewRegistry(), Status: func() any { return 1 }, Level: &lvl})
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/nope", 404},
		{"POST", "/", 405},
		{"POST", "/household/x", 405},
		{"GET", "/healthz/x", 404},
		{"POST", "/healthz", 405},
		{"PUT", "/readyz", 405},
		{"DELETE", "/metrics", 405},
		{"POST", "/status", 405},
		{"POST", "/loglevel", 405},
		{"HEAD", "/readyz", 200},
		{"HEAD", "/metrics", 200},
		{"HEAD", "/status", 200},
		{"HEAD", "/loglevel", 200},
	} {
		code, h, _ := do(t, tc.method, s.URL()+tc.path, nil, "")
		if code != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, code, tc.want)
		}
		if code == 405 && h.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without an Allow header", tc.method, tc.path)
		}
	}
}

func TestOptionalEndpointsAbsent(t *testing.T) {
	s := open(t, &Server{})
	for _, path := range []string{"/metrics", "/status", "/loglevel", "/", "/household/x", "/assets/style.css"} {
		if code, _, _ := do(t, "GET", s.URL()+path, nil, ""); code != 404 {
			t.Errorf("GET %s without its field = %d, want 404", path, code)
		}
	}
}

func TestLogLevel(t *testing.T) {
	lvl := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	core, logs := observer.New(zapcore.DebugLevel)
	s := open(t, &Server{Level: &lvl, Log: zap.New(core)})

	if code, _, body := do(t, "GET", s.URL()+"/loglevel", nil, ""); code != 200 || body != "{\"level\":\"info\"}\n" {
		t.Errorf("GET /loglevel = %d %q", code, body)
	}
	code, h, body := do(t, "PUT", s.URL()+"/loglevel", http.Header{"Content-Type": {"application/json"}}, `{"level":"debug"}`)
	if code != 200 || lvl.Level() != zapcore.DebugLevel {
		t.Fatalf("PUT debug = %d %q; level now %v", code, body, lvl.Level())
	}
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	changed := logs.FilterMessage("log level changed").All()
	if len(changed) != 1 || changed[0].ContextMap()["from"] != "info" || changed[0].ContextMap()["to"] != "debug" {
		t.Errorf("level change log = %v", changed)
	}

	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	if code, _, body := do(t, "PUT", s.URL()+"/loglevel", form, "level=warn"); code != 200 || lvl.Level() != zapcore.WarnLevel {
		t.Fatalf("PUT level=warn (form) = %d %q; level now %v", code, body, lvl.Level())
	}
	if code, _, body := do(t, "PUT", s.URL()+"/loglevel", nil, `{"level":"debug"}`); code != 200 || lvl.Level() != zapcore.DebugLevel {
		t.Fatalf("PUT debug = %d %q; level now %v", code, body, lvl.Level())
	}

	code, _, _ = do(t, "PUT", s.URL()+"/loglevel", nil, `{"level":"loud"}`)
	if code != 400 || lvl.Level() != zapcore.DebugLevel {
		t.Errorf("PUT bad level = %d, level %v; want 400 and debug kept", code, lvl.Level())
	}
	big := `{"level":"warn","pad":"` + strings.Repeat("x", maxBodyBytes) + `"}`
	code, _, _ = do(t, "PUT", s.URL()+"/loglevel", nil, big)
	if code != 400 || lvl.Level() != zapcore.DebugLevel {
		t.Errorf("PUT oversized body = %d, level %v; want 400 and debug kept", code, lvl.Level())
	}
}

func TestCloseWaitsForRequestsInFlight(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	s := &Server{Addr: "127.0.0.1:0", Status: func() any {
		close(entered)
		<-release
		return "done"
	}}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	url := s.URL()
	type result struct {
		code int
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get(url + "/status")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{resp.StatusCode, string(b), err}
	}()
	<-entered

	closed := make(chan error, 1)
	go func() { closed <- s.Close(context.Background()) }()
	// Close must not return while the request is in flight, and the
	// listener must stop accepting meanwhile.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "http://"), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting 5s after Close began")
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronization
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) with a request in flight", err)
	default:
	}
	close(release)
	r := <-got
	if r.err != nil || r.code != 200 || r.body != "\"done\"\n" {
		t.Fatalf("in-flight request = %d %q %v, want 200 \"done\"", r.code, r.body, r.err)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close = %v", err)
	}
}

func TestCloseForcesAfterContext(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	s := &Server{Addr: "127.0.0.1:0", Status: func() any {
		close(entered)
		<-release
		return nil
	}}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	client := make(chan error, 1)
	go func() {
		resp, err := http.Get(s.URL() + "/status")
		if err == nil {
			resp.Body.Close()
		}
		client <- err
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := s.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with a stuck request = %v, want DeadlineExceeded", err)
	}
	if err := <-client; err == nil {
		t.Error("the stuck request got a response; want its connection closed")
	}
}

func TestOpenErrors(t *testing.T) {
	s := open(t, &Server{})
	if err := s.Open(); err == nil {
		t.Error("second Open succeeded")
	}
	busy := &Server{Addr: strings.TrimPrefix(s.URL(), "http://")}
	err := busy.Open()
	if err == nil || !strings.Contains(err.Error(), busy.Addr) {
		t.Errorf("Open on a busy port = %v, want an error naming %s", err, busy.Addr)
	}
	if err := busy.Close(context.Background()); err != nil {
		t.Errorf("Close after a failed Open = %v", err)
	}
	if (&Server{}).URL() != "" {
		t.Error("URL before Open is not empty")
	}
}

func TestHandlerWithoutOpen(t *testing.T) {
	srv := httptest.NewServer((&Server{}).Handler())
	defer srv.Close()
	if code, _, body := do(t, "GET", srv.URL+"/healthz", nil, ""); code != 200 || body != "ok\n" {
		t.Errorf("Handler() /healthz = %d %q", code, body)
	}
}

// TestReadyzBounded: /readyz shows the first shortlist.Max reasons, each
// cut to maxReasonLen bytes, and a count of the rest, whatever the daemon
// reports (5,000 fills for unknown orders made an 85 KB /readyz).
func TestReadyzBounded(t *testing.T) {
	reasons := make([]string, 5000)
	for i := range reasons {
		reasons[i] = fmt.Sprintf("p%d: unknown_order_state: holdings uncertain", i)
	}
	reasons[0] = "p0: " + strings.Repeat("x", 100_000)
	s := open(t, &Server{Ready: func() []string { return reasons }})
	code, _, body := do(t, "GET", s.URL()+"/readyz", nil, "")
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	if code != 503 || len(lines) != 11 || lines[10] != "… and 4990 more" || len(body) > 2000 {
		t.Fatalf("GET /readyz: %d, %d lines, %d bytes, last %q; want 503, 11 lines ending with a count", code, len(lines), len(body), lines[len(lines)-1])
	}
	if len(lines[0]) != maxReasonLen+len("…") {
		t.Errorf("first reason is %d bytes, want it cut to %d", len(lines[0]), maxReasonLen)
	}
	_, _, body = do(t, "GET", s.URL()+"/readyz", http.Header{"Accept": {"application/json"}}, "")
	var got readiness
	if err := json.Unmarshal([]byte(body), &got); err != nil || len(got.Reasons) != 11 || got.Ready {
		t.Errorf("JSON /readyz: %v, %d reasons", err, len(got.Reasons))
	}
	if reasons[0] != "p0: "+strings.Repeat("x", 100_000) {
		t.Error("/readyz changed the daemon's reasons")
	}
}
