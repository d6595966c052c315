// Reload: policy files read again on a change or SIGHUP; a reload that
// fails keeps what was loaded before.

package main

import (
	"fmt"
	"sort"
	"strings"

	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/metrics"
	"github.com/rebalancerd/rebalancerd/internal/statusdoc"
)

// load reads every policy and hands the set to the engine.
func (m *Main) load(reason string) ([]string, error) {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	set, dirs, err := engine.ReadSources(m.Config.Policies)
	return dirs, m.apply(reason, set, err)
}

// apply records a load attempt and, when it read cleanly, swaps the set in.
func (m *Main) apply(reason string, set []engine.Loaded, err error) error {
	if err == nil {
		err = m.loadOwned(set) // the engine runs the held partitions' households only
	}
	if err == nil {
		m.allSet = set
		names := make(map[string]bool, len(set))
		for _, l := range set {
			names[l.Policy.Name] = true
		}
		m.allNames.Store(&names)
	}
	now := m.Clock.Now()
	m.reloadMu.Lock()
	m.lastReload = statusdoc.Reload{OK: err == nil, At: now, Files: len(set), Reason: reason}
	if err != nil {
		m.lastReload.Error = err.Error()
	} else {
		m.fingerprint = fingerprint(set)
	}
	m.reloadMu.Unlock()
	m.Metrics.ObserveReload(err == nil, now)
	if err != nil {
		m.Metrics.InputsRejected.WithLabelValues(metrics.InputPolicyFile, "invalid").Inc()
	}
	return err
}

// fingerprint identifies the content of a policy set.
func fingerprint(set []engine.Loaded) string {
	parts := make([]string, len(set))
	for i, l := range set {
		parts[i] = l.Policy.Name + "@" + l.Policy.Version + "+" + l.HoldingsHash
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// Reload re-reads the policies and holdings files. An invalid edit keeps
// the running policies; the error is logged with file and line and shown
// in /status, /readyz and rebalancerd_config_last_reload_successful.
// A file-change notification that changes nothing (same content hashes,
// or the same error as last time) is ignored quietly; SIGHUP always
// reloads and reports.
func (m *Main) Reload(reason string) error {
	// A watcher reload and a SIGHUP must not interleave their reads and
	// swaps: the older read could win.
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	set, _, err := engine.ReadSources(m.Config.Policies)
	if reason == reasonFileChange {
		m.reloadMu.Lock()
		last := m.lastReload
		same := (err == nil && last.OK && fingerprint(set) == m.fingerprint) ||
			(err != nil && !last.OK && err.Error() == last.Error)
		m.reloadMu.Unlock()
		if same {
			return nil
		}
	}
	m.Notifier.Reloading()
	if err = m.apply(reason, set, err); err != nil {
		m.Log.Error("reload failed; the running policies stay as they were", zap.String("reason", reason), zap.Error(err))
		m.Notifier.Reloaded("reload failed: running the previous policies")
		return err
	}
	m.Log.Info("policies reloaded", zap.String("reason", reason), zap.Int("policies", len(set)))
	m.Notifier.Reloaded(fmt.Sprintf("running %d policies", len(set)))
	m.Engine.EvaluateAll()
	return nil
}
