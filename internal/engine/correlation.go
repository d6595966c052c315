package engine

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/correlation"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/feeds"
)

// AlertPublisher is a Publisher that can also publish alerts. The
// correlation watch needs one; with a Publisher without it, alerts are
// logged only.
type AlertPublisher interface {
	// PublishAlert must not return nil before JetStream has
	// acknowledged the alert; it is retried with the same AlertID.
	PublishAlert(ctx context.Context, a events.Alert) error
}

// AuxStore keeps data of the engine other than ledgers: the correlation
// watch's price history and alert state, one JSON document per name.
type AuxStore interface {
	// ReadJSON decodes the document name into v; ok is false when there
	// is none.
	ReadJSON(name string, v any) (ok bool, err error)
	// WriteJSON replaces the document name with v.
	WriteJSON(name string, v any) error
}

// corrEvery is how often a policy's correlations are measured at most:
// its interval, and at least hourly for longer intervals (a measurement
// only changes when an interval completes, but the alert's `for` is
// checked at each measurement).
func corrEvery(interval time.Duration) time.Duration { return min(interval, time.Hour) }

// corrWatch is a policy's correlation watch and its data.
type corrWatch struct {
	w       *correlation.Watch
	hist    *correlation.History
	state   correlation.State
	lastRun time.Time
	// out holds alerts not yet acknowledged, oldest first; the state is
	// saved once they are.
	out []events.Alert
}

func histName(policy string) string  { return policy + ".prices" }
func alertName(policy string) string { return policy + ".correlation" }

// loadCorrelation (re)builds the correlation watch of a policy whose
// correlation block is set, keeping the history and state it had, or
// loading them from the AuxStore. Called with e.mu held.
func (e *Engine) loadCorrelation(rt *runtime) {
	if rt.pol.Correlation == nil {
		rt.corr = nil
		return
	}
	w, err := correlation.New(rt.pol)
	if err != nil {
		e.log.Error("correlation watch not started", zap.String("policy", rt.pol.Name), zap.Error(err))
		rt.corr = nil
		return
	}
	c := rt.corr
	if c == nil {
		c = &corrWatch{}
		if s := e.opts.Aux; s != nil {
			var h correlation.History
			if ok, err := s.ReadJSON(histName(rt.pol.Name), &h); err != nil {
				e.log.Warn("correlation price history not read; starting a new one", zap.String("policy", rt.pol.Name), zap.Error(err))
			} else if ok {
				c.hist = &h
			}
			if _, err := s.ReadJSON(alertName(rt.pol.Name), &c.state); err != nil {
				e.log.Warn("correlation alert state not read; starting afresh", zap.String("policy", rt.pol.Name), zap.Error(err))
				c.state = correlation.State{}
			}
		}
	}
	h, err := w.Fit(c.hist)
	if err != nil {
		e.log.Warn("correlation price history does not fit the policy; starting a new one", zap.String("policy", rt.pol.Name), zap.Error(err))
		if h, err = w.Fit(nil); err != nil {
			e.log.Error("correlation watch not started", zap.String("policy", rt.pol.Name), zap.Error(err))
			rt.corr = nil
			return
		}
	}
	c.w, c.hist = w, h
	rt.corr = c
}

// recordQuote adds an accepted quote to the policy's price history.
// Called with e.mu held.
func (rt *runtime) recordQuote(q feeds.Quote) {
	if rt.corr != nil {
		rt.corr.hist.Add(q.Symbol, q.Price, q.At)
	}
}

// watchCorrelations measures the correlations of the policies due, and
// queues the alerts of the transitions. Called with e.mu held.
func (e *Engine) watchCorrelations(now time.Time) {
	for _, rt := range e.corrRTs {
		name := rt.pol.Name
		c := rt.corr
		if c == nil || now.Sub(c.lastRun) < corrEvery(rt.pol.Correlation.Interval) {
			continue
		}
		c.lastRun = now
		ms, err := c.w.Evaluate(c.hist, now)
		if err != nil {
			e.log.Error("correlations not measured", zap.String("policy", name), zap.Error(err))
			continue
		}
		if m := e.opts.Metrics; m != nil {
			for _, x := range ms {
				if x.Sufficient() {
					m.Correlation.WithLabelValues(name, x.Pair.String()).Set(x.Value().InexactFloat64())
				}
			}
		}
		for _, t := range c.state.Step(c.w.Rules(), ms, now) {
			a := c.w.Alert(t)
			e.log.Warn("correlation alert", zap.String("policy", name), zap.String("kind", a.Kind),
				zap.Strings("sleeves", a.Sleeves), zap.String("correlation", a.Correlation.String()),
				zap.String("threshold", a.Threshold.String()), zap.Time("since", a.Since))
			c.out = append(c.out, a)
		}
		if m := e.opts.Metrics; m != nil {
			for _, p := range c.w.Pairs() {
				v := 0.0
				if c.state.Raised(p) {
					v = 1
				}
				m.CorrelationAlert.WithLabelValues(name, p.String()).Set(v)
			}
		}
		if len(c.out) == 0 {
			e.saveCorrelation(rt)
		}
	}
}

// saveCorrelation writes a policy's price history and alert state.
// Called with e.mu held.
func (e *Engine) saveCorrelation(rt *runtime) {
	s := e.opts.Aux
	if s == nil || rt.corr == nil {
		return
	}
	if err := s.WriteJSON(histName(rt.pol.Name), rt.corr.hist); err != nil {
		e.log.Warn("correlation price history not saved", zap.String("policy", rt.pol.Name), zap.Error(err))
	}
	if len(rt.corr.out) > 0 {
		// The state has alerts not yet acknowledged: saved, it would say
		// they were sent; unsaved, the next start raises them again.
		return
	}
	if err := s.WriteJSON(alertName(rt.pol.Name), &rt.corr.state); err != nil {
		e.log.Warn("correlation alert state not saved", zap.String("policy", rt.pol.Name), zap.Error(err))
	}
}

// flushAlerts publishes the queued alerts, outside the engine's lock, and
// saves the state of each policy whose alerts are all acknowledged. An
// alert that fails stays queued for the next tick, under the same id.
func (e *Engine) flushAlerts() {
	ap, ok := e.opts.Publisher.(AlertPublisher)
	if ok && e.mayPublish() != nil {
		return // not the planner now: the alerts wait
	}
	e.mu.Lock()
	if ok && !e.natsUp {
		e.mu.Unlock()
		return // they wait for NATS rather than hold up the tick
	}
	var todo []events.Alert
	for _, rt := range e.corrRTs { // in name order, as e.rts
		todo = append(todo, rt.corr.out...)
	}
	e.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	done := map[string]bool{}
	for _, a := range todo {
		if !ok {
			done[a.AlertID] = true // logged when queued; nothing to publish with
			continue
		}
		err := e.mayPublish() // high availability: checked before each message
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err = ap.PublishAlert(ctx, a)
			cancel()
		}
		if err != nil {
			e.log.Warn("alert not published; retrying at the next tick", zap.String("alert_id", a.AlertID), zap.Error(fmt.Errorf("%w", err)))
			break // keep their order
		}
		done[a.AlertID] = true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, rt := range e.corrRTs {
		c := rt.corr
		if len(c.out) == 0 {
			continue
		}
		kept := c.out[:0]
		for _, a := range c.out {
			if !done[a.AlertID] {
				kept = append(kept, a)
			}
		}
		c.out = kept
		if len(c.out) == 0 {
			e.saveCorrelation(rt)
		}
	}
}
