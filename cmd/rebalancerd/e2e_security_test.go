package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natstest "github.com/nats-io/nats-server/v2/test"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/config"
	"github.com/rebalancerd/rebalancerd/internal/events"
)

// TestLeastPrivilege runs nats-server with the shipped
// configs/nats/permissions.conf: rebalancerd works with its restricted
// user (streams, orders, reports, control); an executor reads the orders
// and reports fills, but its forged order is refused and never stored; a
// control request from anyone but the operator is refused.
func TestLeastPrivilege(t *testing.T) {
	for _, ha := range []bool{false, true} {
		t.Run(fmt.Sprintf("ha=%v", ha), func(t *testing.T) { testLeastPrivilege(t, ha) })
	}
}

// testLeastPrivilege runs the scenario with one daemon, or with the daemon
// in a high-availability group (lease and state in key-value buckets).
func testLeastPrivilege(t *testing.T, ha bool) {
	opts, err := server.ProcessConfigFile("../../configs/nats/permissions.conf")
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.StoreDir = "127.0.0.1", -1, t.TempDir()
	opts.NoLog, opts.NoSigs = true, true
	srv := natstest.RunServer(opts)
	t.Cleanup(srv.Shutdown)
	url := srv.ClientURL()

	dir := t.TempDir()
	pass := filepath.Join(dir, "rebalancerd.pass")
	if err := os.WriteFile(pass, []byte("change-me-rebalancerd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pol := policyText("threshold", "")
	d := startDaemon(t, pol, monday0959, func(c *config.Config, _ *Main) {
		c.NATS.URL, c.NATS.User, c.NATS.PasswordFile = url, "rebalancerd", pass
		c.HA = config.HA{Enabled: ha, Instance: "test", LeaseTTL: 2 * time.Second}
	})
	dial := func(user string) *natsgo.Conn {
		nc, err := natsgo.Connect(url, natsgo.UserInfo(user, "change-me-"+user))
		if err != nil {
			t.Fatalf("connect as %s: %v", user, err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	d.nc = dial("pricefeed") // the price helper publishes as the price feed
	d.prices("VTI", "130", "BND", "100")
	d.waitAcked()

	// The executor reads the orders through a consumer of its own.
	exec := dial("executor")
	js, err := jetstream.New(exec)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, "REBALANCE_ORDERS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"rebalance.orders.>"}})
	if err != nil {
		t.Fatal(err)
	}
	var orders []events.Order
	for len(orders) < 2 {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("executor reading orders: %v", err)
		}
		var o events.Order
		if err := json.Unmarshal(msg.Data(), &o); err != nil {
			t.Fatal(err)
		}
		orders = append(orders, o)
	}

	// A forged order: refused by the server, never stored.
	forged, _ := json.Marshal(events.Order{SchemaVersion: 1, OrderID: "forged-1", Policy: "test-household", Account: "ira"})
	fctx, fcancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = js.Publish(fctx, "rebalance.orders.test-household.ira", forged, jetstream.WithMsgID("forged-1"))
	fcancel()
	if err == nil {
		t.Fatal("the executor's forged order was acknowledged")
	}
	if n := streamCount(t, js, "rebalance.orders.>"); n != len(orders) {
		t.Errorf("orders stream holds %d orders, want %d", n, len(orders))
	}
	if ha {
		// Nor may it write the shared state or take the lease.
		for _, subj := range []string{"$KV.REBALANCE_STATE.ledger.test-household", "$KV.REBALANCE_LEASE.planner"} {
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := js.Publish(pctx, subj, []byte(`{}`))
			pcancel()
			if err == nil {
				t.Errorf("the executor wrote %s", subj)
			}
		}
	}

	// The executor's fills are applied.
	for _, o := range orders {
		f, _ := json.Marshal(events.Fill{SchemaVersion: 1, FillID: "f-" + o.OrderID, OrderID: o.OrderID, Status: events.FillFilled,
			Quantity: o.Quantity, Price: o.Price, Fees: decimal.Zero, At: d.clock.Now()})
		if err := exec.Publish(events.Subjects{Prefix: "rebalance"}.Fill(o.Policy, o.Account), f); err != nil {
			t.Fatal(err)
		}
	}
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := len(d.policyStatus().PendingOrders); n > 0 {
			return fmt.Errorf("%d orders pending", n)
		}
		return nil
	})

	// Control: the executor may not halt; the operator may.
	req, _ := json.Marshal(events.ControlRequest{SchemaVersion: 1, Reason: "test", By: "executor"})
	if _, err := exec.Request("rebalance.control.halt", req, time.Second); err == nil {
		t.Error("the executor's halt request was answered")
	}
	msg, err := dial("operator").Request("rebalance.control.halt", req, 5*time.Second)
	if err != nil {
		t.Fatalf("operator halt: %v", err)
	}
	var reply events.ControlReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil || !reply.OK || !reply.Halted {
		t.Fatalf("operator halt answered %s (%v)", msg.Data, err)
	}
}

// streamCount counts the stored messages of the orders stream on subject.
func streamCount(t *testing.T, js jetstream.JetStream, subject string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "REBALANCE_ORDERS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}
