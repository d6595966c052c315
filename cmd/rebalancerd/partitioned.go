// Partitioned high availability (ha.partitions above 1): the households
// are shared among the live instances by partition; each instance loads,
// plans, publishes and takes reports only for the households of the
// partitions it holds.

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/events"
	rnats "github.com/rebalancerd/rebalancerd/internal/nats"
)

// joinPartitions prepares the shared state and the partition manager of a
// partitioned group. Nothing is held until startPartitions.
func (m *Main) joinPartitions(ctx context.Context) error {
	cfg := m.Config
	instance, err := m.haInstance()
	if err != nil {
		return err
	}
	base := m.haBase()
	m.kvState, err = rnats.NewStateStore(ctx, m.Bus, rnats.StateStoreConfig{Bucket: base + "_STATE", Replicas: cfg.NATS.Replicas,
		// Every write of a household's state carries the term of its
		// partition's lease and needs that lease valid.
		TermFor: func(policy string) (uint64, error) { return m.parts.Term(policy) },
		// Called while the engine holds its lock: Drop only marks the
		// partition and hands it to the manager's goroutine.
		FencedFor: func(policy string, err error) { m.parts.Drop(m.parts.Of(policy), err) }})
	if err != nil {
		return fmt.Errorf("ha: %w", err)
	}
	if err := m.checkLocalState(); err != nil {
		return fmt.Errorf("ha: %w", err)
	}
	m.parts, err = rnats.NewPartitions(ctx, m.Bus, rnats.PartitionsConfig{Bucket: base + "_LEASE", Instance: instance,
		Partitions: cfg.HA.Partitions, TTL: cfg.HA.LeaseTTL, Replicas: cfg.NATS.Replicas, OnChange: m.repartition})
	if err != nil {
		return fmt.Errorf("ha: %w", err)
	}
	m.Log.Info("high availability: partitioned group", zap.String("instance", instance),
		zap.Int("partitions", cfg.HA.Partitions), zap.Duration("lease_ttl", cfg.HA.LeaseTTL))
	m.Bus.SetGate(m.mayPublishPartitioned)
	m.Bus.SetSubjectGate(m.maySendSubject)
	return nil
}

// startPartitions starts the partition manager; close stops it once the
// engine has stopped publishing, and it then releases every partition.
func (m *Main) startPartitions() {
	ctx, cancel := context.WithCancel(context.Background())
	m.cancelParts = cancel
	m.partsDone = make(chan struct{})
	go func() {
		defer close(m.partsDone)
		if err := m.parts.Run(ctx); err != nil {
			m.stepDown(err)
		}
	}()
}

// stopPartitions stops the manager, which releases every partition.
func (m *Main) stopPartitions() {
	m.partsClosing.Store(true) // the engine is stopped: nothing to unload, no retry to make
	if m.cancelParts == nil {
		return
	}
	m.cancelParts()
	<-m.partsDone
}

// mayPublishPartitioned is the check before each message that does not
// depend on the household: this instance is not stepping down.
func (m *Main) mayPublishPartitioned() error {
	if m.stepping.Load() {
		return fmt.Errorf("stepping down: this instance left its partitioned group")
	}
	return nil
}

// maySendSubject refuses a message about a household whose partition
// this instance does not hold with its lease's margin left, or whose state
// it loaded under an older term of that partition (lost and taken back
// since: the household is loaded afresh first). Subjects are
// <prefix>.<kind>.<household>[.<account>]; a subject without a household
// passes.
func (m *Main) maySendSubject(subject string) error {
	rest, ok := strings.CutPrefix(subject, m.Config.NATS.Prefix+".")
	if !ok {
		return nil
	}
	_, rest, _ = strings.Cut(rest, ".")
	household, _, _ := strings.Cut(rest, ".")
	if household == "" {
		return nil
	}
	return m.kvState.MayPublish(household)
}

// repartition runs when the partitions this instance holds change: the
// engine runs the households of the partitions now held, and those of
// partitions gone leave it (their queued orders stay journaled in the
// shared state for their next holder).
func (m *Main) repartition([]int) {
	if m.partsClosing.Load() {
		return
	}
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	// Read under the lock: a retry must not apply an older set after a
	// newer one.
	held := m.parts.Held()
	set := make(map[int]bool, len(held))
	for _, p := range held {
		set[p] = true
	}
	m.heldParts.Store(&set)
	start := time.Now()
	err := m.loadOwned(m.allSet)
	var partial *engine.PartialLoadError
	if err != nil && !errors.As(err, &partial) {
		// Nothing changed: keep what is loaded and still held (no shared
		// state is read for it, so this cannot fail the same way).
		var running []engine.Loaded
		names := *m.ownedNames.Load()
		for _, l := range m.allSet {
			if names[l.Policy.Name] {
				running = append(running, l)
			}
		}
		if rerr := m.loadOwned(running); rerr != nil {
			m.Log.Error("partitions: households of released partitions not unloaded", zap.Error(rerr))
		}
	}
	if err != nil {
		// Typically a partition lost while its households loaded.
		m.Log.Warn("partitions: some households of the partitions held not loaded; trying again in a second", zap.Error(err))
		time.AfterFunc(time.Second, func() { m.repartition(nil) })
	}
	m.Log.Info("partitions: households loaded", zap.Int("partitions", len(held)), zap.Int("households", len(*m.ownedNames.Load())),
		zap.Duration("took", time.Since(start)))
	m.Engine.EvaluateAll()
}

// loadConfigured hands the engine the households of a configuration just
// read: those of the held partitions in a partitioned group, all of them
// otherwise, and records the set for later changes of the partitions held.
// Households of a partitioned group whose state could not be read (their
// partition was lost meanwhile) do not fail it: they are tried again.
// Called with loadMu held.
func (m *Main) loadConfigured(set []engine.Loaded) error {
	err := m.loadOwned(set)
	var partial *engine.PartialLoadError
	if errors.As(err, &partial) {
		m.Log.Warn("partitions: some households of the partitions held not loaded; trying again in a second", zap.Error(err))
		time.AfterFunc(time.Second, func() { m.repartition(nil) })
		err = nil
	}
	if err != nil {
		return err
	}
	m.allSet = set
	names := make(map[string]bool, len(set))
	for _, l := range set {
		names[l.Policy.Name] = true
	}
	m.allNames.Store(&names)
	return nil
}

// loadOwned hands the engine the households of set that are in held
// partitions (all of set when the group is not partitioned), and forgets
// the shared state of those it no longer runs. Called with loadMu held.
func (m *Main) loadOwned(set []engine.Loaded) error {
	if m.parts == nil {
		return m.Engine.Load(set)
	}
	held := *m.heldParts.Load()
	if err := m.unloadStale(set, held); err != nil {
		return err
	}
	var owned []engine.Loaded
	names := map[string]bool{}
	for _, l := range set {
		if held[m.parts.Of(l.Policy.Name)] {
			owned = append(owned, l)
			names[l.Policy.Name] = true
		}
	}
	err := m.Engine.Load(owned)
	var partial *engine.PartialLoadError
	switch {
	case errors.As(err, &partial):
		for name := range partial.Failed {
			delete(names, name)
		}
	case err != nil:
		return err // nothing changed
	}
	// The shared state of every household the engine does not run is
	// forgotten: taken again, it is claimed anew (a claim made by a load
	// that failed would otherwise be taken as current).
	for _, l := range m.allSet {
		if !names[l.Policy.Name] {
			m.kvState.Forget(l.Policy.Name)
		}
	}
	for _, l := range set {
		if !names[l.Policy.Name] {
			m.kvState.Forget(l.Policy.Name)
		}
	}
	m.ownedNames.Store(&names)
	return err
}

// unloadStale takes out of the engine the households it runs whose state
// was claimed under another term of their partition's lease than the one
// held now: the partition was lost and taken back since, perhaps while
// this load waited for loadMu, and the instance that held it in between
// may have expired, replaced or published what this one still has in
// memory (its runtime, its queued batches, its screen). They leave the
// engine with their queued batches and their shared state is forgotten,
// so that the load that follows reads and claims them afresh under the
// current term; until then the bus's gate and the outbox refuse their
// messages (StateStore.MayPublish). Called with loadMu held.
func (m *Main) unloadStale(set []engine.Loaded, held map[int]bool) error {
	running := *m.ownedNames.Load()
	stale := map[string]bool{}
	for name := range running {
		claimed, ok := m.kvState.ClaimedTerm(name)
		// A partition not held now: its households leave at the load
		// that follows.
		if term, holds := m.parts.HeldTerm(name); holds && (!ok || claimed != term) {
			stale[name] = true
		}
	}
	if len(stale) == 0 {
		return nil
	}
	var keep []engine.Loaded
	for _, l := range set {
		if name := l.Policy.Name; running[name] && !stale[name] && held[m.parts.Of(name)] {
			keep = append(keep, l)
		}
	}
	// Only households already running: nothing is read, nothing can fail
	// to load.
	if err := m.Engine.Load(keep); err != nil {
		return err
	}
	names := make(map[string]bool, len(keep))
	for _, l := range keep {
		names[l.Policy.Name] = true
	}
	for name := range running {
		if !names[name] {
			m.kvState.Forget(name)
		}
	}
	m.ownedNames.Store(&names)
	m.Log.Warn("partitions: households whose partition was lost and taken back since they were loaded unloaded; loading them afresh",
		zap.Int("households", len(stale)), zap.Strings("some", firstNames(stale, 5)))
	return nil
}

// firstNames returns up to n of the names of set, sorted.
func firstNames(set map[string]bool, n int) []string {
	names := slices.Sorted(maps.Keys(set))
	return names[:min(n, len(names))]
}

// reportElsewhere says whether a report belongs to another instance of a
// partitioned group: its household's partition is not held here, or its
// households are still loading (or waiting to be loaded afresh, their
// partition lost and taken back). The holder of the partition decides about
// a household no configuration names.
func (m *Main) reportElsewhere(policy string) error {
	if m.parts == nil {
		return nil
	}
	part := m.parts.Of(policy)
	if !(*m.heldParts.Load())[part] {
		return fmt.Errorf("%w: partition %d of %s is not held here", rnats.ErrElsewhere, part, policy)
	}
	if !(*m.ownedNames.Load())[policy] && m.configured(policy) {
		return fmt.Errorf("%w: %s is still loading", rnats.ErrElsewhere, policy)
	}
	if err := m.kvState.MayPublish(policy); errors.Is(err, rnats.ErrStaleTerm) {
		// Its partition was lost and taken back: it is loaded afresh
		// before a report changes it.
		return fmt.Errorf("%w: %w", rnats.ErrElsewhere, err)
	}
	return nil
}

// controlElsewhere says whether a control request is for another
// instance of a partitioned group: a rebalance or resync of a household
// whose partition is not held here. Every instance receives every control
// request and the requester takes the first answer, so only the holder
// answers those; a halt or release is applied (and answered) by every
// instance.
func (m *Main) controlElsewhere(msg *natsgo.Msg) bool {
	if m.parts == nil {
		return false
	}
	action := msg.Subject[strings.LastIndexByte(msg.Subject, '.')+1:]
	if action != events.ControlRebalance && action != events.ControlResync {
		return false
	}
	var req struct {
		Policy string `json:"policy"`
	}
	if json.Unmarshal(msg.Data, &req) != nil || req.Policy == "" {
		return false // refused by whoever answers first, as malformed
	}
	return !(*m.heldParts.Load())[m.parts.Of(req.Policy)]
}

// configured reports whether the loaded configuration names policy.
// Called without loadMu: it reads the names the last load recorded.
func (m *Main) configured(policy string) bool {
	return (*m.allNames.Load())[policy]
}

// partitionsRole is the status document's role of a partitioned instance.
func (m *Main) partitionsRole() string {
	return fmt.Sprintf("partitioned: holds %d of %d partitions, %d live instances", len((*m.heldParts.Load())),
		m.Config.HA.Partitions, m.parts.Live())
}
