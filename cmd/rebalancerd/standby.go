// High availability: a standby instance waits for the planner lease and
// steps down when it loses it or its local state is in doubt.

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/engine"
	rnats "github.com/rebalancerd/rebalancerd/internal/nats"
	"github.com/rebalancerd/rebalancerd/internal/state"
)

// standBy, for high availability, prepares the shared state and waits
// until this instance holds the lease, serving health and metrics
// meanwhile; then it keeps renewing the lease until runCtx ends, and
// reports a loss on Lost.
func (m *Main) standBy(ctx, runCtx context.Context) error {
	cfg := m.Config
	instance, err := m.haInstance()
	if err != nil {
		return err
	}
	base := m.haBase()
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
	leases, err := rnats.OpenLeaseBucket(ctx, m.Bus, rnats.LeaseConfig{Bucket: base + "_LEASE", TTL: cfg.HA.LeaseTTL,
		Replicas: cfg.NATS.Replicas})
	if err != nil {
		return fmt.Errorf("ha: %w", err)
	}
	if err := leases.CheckNoPartitions(ctx); err != nil {
		return fmt.Errorf("ha: %w", err)
	}
	m.lease = leases.Lease("planner", instance)
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

// haInstance is this instance's name in its group: ha.instance, else the
// host name.
func (m *Main) haInstance() (string, error) {
	if i := m.Config.HA.Instance; i != "" {
		return i, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("ha: instance name: %w (set ha.instance)", err)
	}
	return h, nil
}

// haBase is the prefix of the group's buckets: the orders stream's name
// without _ORDERS.
func (m *Main) haBase() string { return strings.TrimSuffix(m.Bus.OrdersStream(), "_ORDERS") }

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
	former := filepath.Join(m.Config.StateDir, "ledgers") // the layout before the state file
	for _, where := range []string{m.store.Path(), former} {
		var local []string
		var err error
		if where == former {
			local, err = state.DirPolicies(former)
		} else {
			local, err = m.store.Policies()
		}
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
					"(docs/OPERATIONS.md, \"High availability\")", p, where)
			}
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
