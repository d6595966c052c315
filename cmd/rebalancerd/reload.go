// Reload: policy files read again on a change or SIGHUP; a reload that
// fails keeps what was loaded before. Households (households_dir) are
// each on their own: a household whose files are invalid keeps its last
// accepted version, blocked (invalid_policy), or does not start, and the
// others load.

package main

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/config"
	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/households"
	"github.com/rebalancerd/rebalancerd/internal/metrics"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/shortlist"
	"github.com/rebalancerd/rebalancerd/internal/statusdoc"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// householdState is what the reloads of households_dir remember.
type householdState struct {
	// accepted is, by household file, the version last loaded: it runs,
	// blocked, while the file on disk is invalid.
	accepted map[string]engine.Loaded
	// cache spares a reload the parsing of unchanged households.
	cache households.Cache
}

// readResult is one reading of every policy and household file.
type readResult struct {
	set  []engine.Loaded
	dirs []string
	// err fails the whole reading (an explicit policy, an unreadable
	// directory): nothing is loaded.
	err error
	// refused are the problems of household files that do not run as
	// they are on disk (blocked or not started); the others load.
	refused strictyaml.Errors
	// nextAccepted replaces householdState.accepted once set is loaded.
	nextAccepted map[string]engine.Loaded
	households   int
}

// read reads the explicit policies and the households. Called with
// m.loadMu held.
func (m *Main) read() readResult {
	rr := readPolicies(m.Config, m.households.accepted, &m.households.cache)
	for i, l := range rr.set {
		if why := ttlBeyondStream(m.Config, l.Policy); why != "" && l.Blocked == "" {
			rr.set[i].Blocked = why
		}
	}
	return rr
}

// ttlBeyondStream says why a policy must not plan when its orders may
// outlive the orders stream (rebalance.order_ttl longer than
// nats.stream.max_age), or "". The stream would drop an order while an
// executor may still act on it: an executor that reads it late never sees
// it, and a lost or restored state directory cannot be reconciled with it
// (docs/OPERATIONS.md, "Lost or restored state").
func ttlBeyondStream(cfg *config.Config, p *policy.Policy) string {
	if ttl, age := p.Rebalance.OrderTTL, cfg.NATS.MaxAge; age > 0 && ttl > age {
		return fmt.Sprintf("%s: rebalance.order_ttl %s is longer than the orders stream keeps orders (nats.stream.max_age %s in %s)",
			p.File, ttl, age, cfg.File)
	}
	return ""
}

// readPolicies reads the policies and households cfg names; accepted are
// the households' versions last loaded, by file (nil for none), and cache
// what the last reading composed (nil for none).
func readPolicies(cfg *config.Config, accepted map[string]engine.Loaded, cache *households.Cache) readResult {
	set, dirs, err := engine.ReadSources(cfg.Policies)
	out := readResult{set: set, dirs: dirs, err: err}
	if err != nil || cfg.HouseholdsDir == "" {
		return out
	}
	res, err := households.Read(cfg.ModelsDir, cfg.HouseholdsDir, time.Local, cache)
	if err != nil {
		out.err = &strictyaml.Error{File: cfg.File, Line: cfg.HouseholdsLine, Field: "households_dir", Msg: err.Error()}
		return out
	}
	out.dirs = mergeDirs(out.dirs, res.Dirs)
	out.refused = append(out.refused, res.ModelErrs...)
	out.nextAccepted = make(map[string]engine.Loaded, len(res.Households))
	names := make(map[string]bool, len(set)+len(res.Households))
	for _, l := range set {
		names[l.Policy.Name] = true
	}
	for _, h := range res.Households {
		l := h.Loaded
		if h.Err == nil && names[l.Policy.Name] {
			h.Err = strictyaml.Errors{{File: h.File, Line: 1, Field: "household",
				Msg: fmt.Sprintf("%q is also the name of a policy in policies", l.Policy.Name)}}
		}
		if h.Err != nil {
			out.refused = append(out.refused, strictyaml.AsErrors(h.Err)...)
			prev, ok := accepted[h.File]
			if !ok || names[prev.Policy.Name] {
				continue
			}
			l = prev
			l.Blocked = "household file invalid, running its last accepted version blocked: " + firstLine(h.Err)
		}
		names[l.Policy.Name] = true
		out.set = append(out.set, l)
		out.nextAccepted[h.File] = l
		out.households++
	}
	return out
}

// firstLine is the first problem of err, and how many more there are.
func firstLine(err error) string {
	es := strictyaml.AsErrors(err)
	if len(es) == 1 {
		return es[0].Error()
	}
	return fmt.Sprintf("%s (and %d more problems)", es[0].Error(), len(es)-1)
}

func mergeDirs(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range append(a, b...) {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

// maxRefusedShown bounds the problems /status and /readyz repeat: a
// directory of 100,000 broken households must not make them megabytes.
const maxRefusedShown = 20

// summary is the text of the refused files for /status, /readyz and the
// log.
func (rr *readResult) summary() string {
	if len(rr.refused) == 0 {
		return ""
	}
	lines := make([]string, len(rr.refused))
	for i, e := range rr.refused {
		lines[i] = e.Error()
	}
	return fmt.Sprintf("%d problems in household or model files: %s", len(lines), shortlist.Join(lines, maxRefusedShown, "; "))
}

// load reads every policy and hands the set to the engine.
func (m *Main) load(reason string) ([]string, error) {
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	began := time.Now()
	rr := m.read()
	read := time.Since(began)
	err := m.apply(reason, &rr)
	if err == nil {
		// Where a start's time goes, for an operator of many households.
		m.Log.Info("policies loaded", zap.String("reason", reason), zap.Int("policies", len(rr.set)),
			zap.Duration("read", read), zap.Duration("load", time.Since(began)-read))
	}
	if err == nil && len(rr.refused) > 0 {
		m.Log.Error("household files refused; the other households run", zap.String("reason", reason),
			zap.Int("problems", len(rr.refused)), zap.String("problems_shown", rr.summary()))
	}
	return rr.dirs, err
}

// apply records a load attempt and, when it read cleanly, swaps the set in.
// Refused household files do not fail it: the set holds the others.
func (m *Main) apply(reason string, rr *readResult) error {
	err := rr.err
	if err == nil {
		err = m.loadConfigured(rr.set)
	}
	now := m.Clock.Now()
	m.reloadMu.Lock()
	m.lastReload = statusdoc.Reload{OK: err == nil && len(rr.refused) == 0, At: now, Files: len(rr.set), Reason: reason,
		Households: rr.households, Refused: len(rr.refused)}
	switch {
	case err != nil:
		m.lastReload.Error = err.Error()
	default:
		m.lastReload.Error = rr.summary()
		m.fingerprint = rr.fingerprint()
		if rr.nextAccepted != nil {
			m.households.accepted = rr.nextAccepted
		}
	}
	m.reloadMu.Unlock()
	m.Metrics.ObserveReload(err == nil && len(rr.refused) == 0, now)
	if err != nil || len(rr.refused) > 0 {
		m.Metrics.InputsRejected.WithLabelValues(metrics.InputPolicyFile, "invalid").Inc()
	}
	return err
}

// fingerprint identifies the content of a reading: the policies and what
// was refused.
func (rr *readResult) fingerprint() string {
	parts := make([]string, len(rr.set))
	for i, l := range rr.set {
		parts[i] = l.Policy.Name + "@" + l.Policy.Version + "+" + l.HoldingsHash + "!" + l.Blocked
	}
	sort.Strings(parts)
	for _, e := range rr.refused {
		parts = append(parts, e.Error())
	}
	return strings.Join(parts, ",")
}

// Reload re-reads the policies and holdings files. An invalid edit keeps
// the running policies; the error is logged with file and line and shown
// in /status, /readyz and rebalancerd_config_last_reload_successful. An
// invalid household file keeps that household's last accepted version,
// blocked; the other households reload.
// A file-change notification that changes nothing (same content hashes,
// or the same error as last time) is ignored quietly; SIGHUP always
// reloads and reports.
func (m *Main) Reload(reason string) error {
	// A watcher reload and a SIGHUP must not interleave their reads and
	// swaps: the older read could win.
	m.loadMu.Lock()
	defer m.loadMu.Unlock()
	rr := m.read()
	if reason == reasonFileChange {
		m.reloadMu.Lock()
		last := m.lastReload
		same := (rr.err == nil && rr.fingerprint() == m.fingerprint && last.Error == rr.summary()) ||
			(rr.err != nil && !last.OK && rr.err.Error() == last.Error)
		m.reloadMu.Unlock()
		if same {
			return nil
		}
	}
	m.Notifier.Reloading()
	if err := m.apply(reason, &rr); err != nil {
		m.Log.Error("reload failed; the running policies stay as they were", zap.String("reason", reason), zap.Error(err))
		m.Notifier.Reloaded("reload failed: running the previous policies")
		return err
	}
	if len(rr.refused) > 0 {
		m.Log.Error("household files refused; the other households reloaded", zap.String("reason", reason),
			zap.Int("policies", len(rr.set)), zap.Int("problems", len(rr.refused)), zap.String("problems_shown", rr.summary()))
		m.Notifier.Reloaded(fmt.Sprintf("running %d policies; %d problems in household files", len(rr.set), len(rr.refused)))
		m.Engine.EvaluateAll()
		return errors.New(rr.summary())
	}
	m.Log.Info("policies reloaded", zap.String("reason", reason), zap.Int("policies", len(rr.set)))
	m.Notifier.Reloaded(fmt.Sprintf("running %d policies", len(rr.set)))
	m.Engine.EvaluateAll()
	return nil
}
