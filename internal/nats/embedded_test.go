package nats

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestStartEmbedded(t *testing.T) {
	dir := t.TempDir()
	log, logs := testLogger(t)
	s, err := StartEmbedded(EmbeddedConfig{Port: -1, StoreDir: dir}, log)
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	defer s.Shutdown()
	if !s.JetStreamEnabled() {
		t.Fatal("JetStream not enabled")
	}
	if logs.FilterMessageSnippet("embedded NATS server started").Len() != 1 {
		t.Error("start not logged")
	}
	serverLogs := 0
	for _, e := range logs.All() {
		if e.LoggerName == "nats-server" {
			serverLogs++
		}
	}
	if serverLogs == 0 {
		t.Error("server logs not routed to zap")
	}
	p := s.Addr().(*net.TCPAddr).Port
	url := s.ClientURL()

	nc := connect(t, url)
	b := newBus(t, nc, fastConfig())
	orders := householdOrders("embedded", 5)
	if _, err := b.PublishOrders(t.Context(), orders); err != nil {
		t.Fatal(err)
	}

	// A second server on the same port fails fast and says why.
	start := time.Now()
	_, err = StartEmbedded(EmbeddedConfig{Port: p, StoreDir: t.TempDir(), ReadyTimeout: time.Minute}, nil)
	if err == nil {
		t.Fatal("second server on the same port: no error")
	}
	if m := missing(err.Error(), "cannot listen", "address already in use"); m != nil {
		t.Errorf("error %q lacks %v", err, m)
	}
	if time.Since(start) > 30*time.Second {
		t.Errorf("the failure took %s", time.Since(start))
	}

	// Clean shutdown; the same port and store serve the stored orders again.
	nc.Close()
	s.Shutdown()
	s.WaitForShutdown()
	s2, err := StartEmbedded(EmbeddedConfig{Port: p, StoreDir: dir}, nil)
	if err != nil {
		t.Fatalf("restart on port %d: %v", p, err)
	}
	defer func() {
		s2.Shutdown()
		s2.WaitForShutdown()
	}()
	nc2 := connect(t, url)
	js, err := jetstream.New(nc2)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "REBALANCE_ORDERS")
	if err != nil {
		t.Fatalf("orders stream after restart: %v", err)
	}
	if n := st.CachedInfo().State.Msgs; n != uint64(len(orders)) {
		t.Errorf("orders stream holds %d messages after restart; want %d", n, len(orders))
	}
}

func TestStartEmbeddedErrors(t *testing.T) {
	if _, err := StartEmbedded(EmbeddedConfig{Port: -1}, nil); err == nil {
		t.Error("no store dir: no error")
	}
	// A store directory that cannot be created: a file is in the way.
	file := writeFile(t, "file", "x")
	_, err := StartEmbedded(EmbeddedConfig{Port: -1, StoreDir: filepath.Join(file, "js")}, nil)
	if err == nil || !strings.Contains(err.Error(), "JetStream") {
		t.Errorf("unusable store dir: %v", err)
	}
}
