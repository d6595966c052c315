package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natstest "github.com/nats-io/nats-server/v2/test"
	"go.uber.org/zap/zaptest"

	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/config"
)

// TestHARefusesLocalState: turning high availability on over a state
// directory with an engaged kill switch, or with a ledger the shared state
// lacks, stops the start instead of trading on without them.
func TestHARefusesLocalState(t *testing.T) {
	opts := natstest.DefaultTestOptions
	opts.Port, opts.JetStream, opts.StoreDir = -1, true, t.TempDir()
	srv := natstest.RunServer(&opts)
	t.Cleanup(srv.Shutdown)

	for _, tc := range []struct {
		name, file, want string
	}{
		{"halt", "halt.json", "the kill switch is engaged"},
		{"ledger", filepath.Join("ledgers", "test-household.json"), "has a ledger in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "policies", "test.yaml"), policyText("threshold", ""))
			writeFile(t, filepath.Join(dir, "holdings", "test.yaml"), testHoldings)
			writeFile(t, filepath.Join(dir, "state", tc.file), `{"reason": "left from before"}`)
			cfg := config.DefaultConfig()
			cfg.File = filepath.Join(dir, "rebalancerd.yaml")
			cfg.StateDir = filepath.Join(dir, "state")
			cfg.HTTP.Listen = "127.0.0.1:0"
			cfg.NATS.URL = srv.ClientURL()
			cfg.HA = config.HA{Enabled: true, Instance: "a", LeaseTTL: 2 * time.Second}
			cfg.Policies = []config.PolicySource{{Policy: filepath.Join(dir, "policies", "test.yaml"), Holdings: filepath.Join(dir, "holdings", "test.yaml")}}
			m := &Main{Config: cfg, Log: zaptest.NewLogger(t), Clock: clock.NewFake(monday0959)}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := m.Open(ctx)
			if err == nil {
				m.Close()
				t.Fatal("started over local state the shared state does not have")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want %q", err, tc.want)
			}
			if _, statErr := os.Stat(filepath.Join(dir, "state", tc.file)); statErr != nil {
				t.Errorf("the local state was touched: %v", statErr)
			}
		})
	}
}
