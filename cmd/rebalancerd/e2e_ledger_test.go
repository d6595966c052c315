package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	natstest "github.com/nats-io/nats-server/v2/test"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rebalancerd/rebalancerd/internal/config"
)

// externalNATS runs a NATS server with JetStream outside the daemons, so
// that its streams and the reports consumer outlive their state
// directories.
func externalNATS(t *testing.T) string {
	t.Helper()
	opts := natstest.DefaultTestOptions
	opts.Port, opts.JetStream, opts.StoreDir = -1, true, t.TempDir()
	srv := natstest.RunServer(&opts)
	t.Cleanup(srv.Shutdown)
	return srv.ClientURL()
}

// planFilledThenStateLost runs a daemon on an external NATS until its
// plan is published and filled (the fills acknowledged by the reports
// consumer), calls before, stops it and deletes its state directory. It
// returns the stopped daemon, the holdings after the fills and the number
// of orders.
func planFilledThenStateLost(t *testing.T, url string, before func(*daemon)) (first *daemon, after map[string]string, n int) {
	t.Helper()
	first = startDaemon(t, policyText("threshold", ""), monday0959, func(c *config.Config, m *Main) { c.NATS.URL = url })
	w := first.watchOrders()
	first.prices("VTI", "130", "BND", "100")
	n = first.waitAcked()
	first.fillAll(w.waitOrders(t, n))
	after = iraHoldings(first)
	if before != nil {
		before(first)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(first.Config.StateDir); err != nil {
		t.Fatal(err)
	}
	return first, after, n
}

// iraHoldings returns the test policy's ira account as strings.
func iraHoldings(d *daemon) map[string]string {
	h := d.policyStatus().Holdings["ira"]
	return map[string]string{"cash": h.Cash.String(), "VTI": h.Positions["VTI"].String(), "BND": h.Positions["BND"].String()}
}

// restartOn starts a daemon on first's configuration and external NATS,
// at the given time.
func restartOn(t *testing.T, first *daemon, url string, at time.Time) *daemon {
	t.Helper()
	return startDaemon(t, policyText("threshold", ""), at, func(c *config.Config, m *Main) {
		c.NATS.URL, c.StateDir, c.Policies = url, first.Config.StateDir, first.Config.Policies
	})
}

// TestLostStateRecoversFills: the state directory is deleted after a plan
// whose fills were acknowledged. At the next start, past the orders'
// order_ttl, the ledger is seeded from the older holdings file; the daemon
// adopts the orders the stream holds after it, reads their fills back from
// the reports stream, and does not plan the same rebalance a second time.
// (It used to plan it again on the stale holdings file.)
func TestLostStateRecoversFills(t *testing.T) {
	url := externalNATS(t)
	first, after, n := planFilledThenStateLost(t, url, nil)

	second := restartOn(t, first, url, monday0959.Add(3*time.Hour))
	if got := iraHoldings(second); fmt.Sprint(got) != fmt.Sprint(after) {
		t.Errorf("holdings after the restart %v, want those after the fills %v", got, after)
	}
	st := second.policyStatus()
	if st.RecoveredFills != n || st.AdoptedOrders != n || len(st.PendingOrders) != 0 {
		t.Errorf("recovered %d fills, adopted %d orders, %d pending; want %d, %d, 0", st.RecoveredFills, st.AdoptedOrders, len(st.PendingOrders), n, n)
	}
	second.prices("VTI", "130", "BND", "100")
	second.Engine.EvaluateAll()
	if got := second.streamOrders(); got != n {
		t.Fatalf("the stream holds %d orders, want %d: the executed rebalance was planned again", got, n)
	}
	if code, body := second.httpGet("/metrics"); code != 200 || !strings.Contains(body, fmt.Sprintf(`rebalancerd_fills_recovered_total{policy="test-household"} %d`, n)) {
		t.Errorf("/metrics (%d) does not count the %d recovered fills", code, n)
	}
	if _, body := second.httpGet("/status"); !regexp.MustCompile(fmt.Sprintf(`"recovered_fills": ?%d`, n)).MatchString(body) {
		t.Errorf("/status does not show the %d recovered fills", n)
	}
}

// TestLostStateUnrecoverableFillsBlock: as above, but the reports stream
// no longer holds the fills (its limits dropped them; here, a purge): the
// policy is blocked (unknown_order_state) instead of planning again on the
// holdings file, until a positions snapshot replaces the holdings.
func TestLostStateUnrecoverableFillsBlock(t *testing.T) {
	url := externalNATS(t)
	first, _, n := planFilledThenStateLost(t, url, func(d *daemon) {
		js, err := jetstream.New(d.client())
		if err != nil {
			t.Fatal(err)
		}
		s, err := js.Stream(context.Background(), "REBALANCE_REPORTS")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Purge(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	second := restartOn(t, first, url, monday0959.Add(3*time.Hour))
	second.prices("VTI", "130", "BND", "100")
	second.Engine.EvaluateAll()
	second.waitBlocked("unknown_order_state")
	if got := second.streamOrders(); got != n {
		t.Fatalf("the stream holds %d orders, want %d: planned again on the holdings file", got, n)
	}
	if _, body := second.httpGet("/metrics"); !strings.Contains(body, `rebalancerd_planning_blocked{policy="test-household",reason="unknown_order_state"} 1`) {
		t.Error("/metrics does not show the unknown_order_state block")
	}
}
