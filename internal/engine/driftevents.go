// Drift events: the latest snapshot of each household, queued and sent
// without blocking evaluation.

package engine

import (
	"hash/fnv"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/events"
)

// publishDrift sets the drift metrics of a household that has its own
// (Options.HouseholdMetrics) and, when one is due (Options.DriftEvery) or
// its breaching sleeves changed, queues its drift event.
func (e *Engine) publishDrift(rt *runtime, s *drift.Snapshot, now time.Time) {
	if m := e.opts.Metrics; m != nil && rt.metered {
		for _, sl := range s.Sleeves {
			m.SleeveWeight.WithLabelValues(rt.pol.Name, sl.Path).Set(sl.Weight.InexactFloat64())
			m.SleeveTarget.WithLabelValues(rt.pol.Name, sl.Path).Set(sl.Target.InexactFloat64())
			m.SleeveDeviation.WithLabelValues(rt.pol.Name, sl.Path).Set(sl.Deviation.InexactFloat64())
			breach := 0.0
			if sl.Breach {
				breach = 1
			}
			m.SleeveBreach.WithLabelValues(rt.pol.Name, sl.Path).Set(breach)
		}
		for _, sym := range rt.symbols {
			if q, ok := rt.guard.Quote(sym); ok {
				m.PriceAge.WithLabelValues(rt.pol.Name, sym).Set(now.Sub(q.At).Seconds())
			}
		}
	}
	if !e.driftDue(rt, now) && slices.Equal(rt.driftBreaching, rt.breaching) {
		return // rate-limited
	}
	every := e.opts.DriftEvery
	if rt.driftNext.IsZero() && every > 0 {
		// The first: the next is due after a part of the period that
		// depends on the name, so that households loaded together do
		// not all report in the same tick.
		h := fnv.New64a()
		_, _ = h.Write([]byte(rt.pol.Name))
		every -= time.Duration(h.Sum64() % uint64(every))
	}
	rt.driftNext = now.Add(every)
	rt.driftBreaching = rt.breaching
	d := events.Drift{
		SchemaVersion: events.SchemaVersion,
		Policy:        rt.pol.Name,
		PolicyVersion: s.Book.Policy.Version,
		EvaluatedAt:   now.UTC(),
		PricesAsOf:    s.AsOf.UTC(),
		HoldingsAsOf:  s.Book.HoldingsAsOf.UTC(),
		Currency:      rt.pol.Currency,
		Total:         s.Total,
		Sleeves:       make([]events.DriftSleeve, len(s.Sleeves)),
		Breaching:     rt.breaching,
	}
	if d.Breaching == nil {
		d.Breaching = []string{}
	}
	for i, sl := range s.Sleeves {
		d.Sleeves[i] = events.DriftSleeve{Sleeve: sl.Path, Target: sl.Target, Weight: sl.Weight, Deviation: sl.Deviation,
			BandLow: sl.BandLow, BandHigh: sl.BandHigh, Breach: sl.Breach, Value: sl.Value}
	}
	// One pending event per policy: the latest evaluation's.
	if i, ok := e.driftAt[d.Policy]; ok {
		e.driftOut[i] = d
		return
	}
	if e.driftAt == nil {
		e.driftAt = map[string]int{}
	}
	e.driftAt[d.Policy] = len(e.driftOut)
	e.driftOut = append(e.driftOut, d)
}

// driftDue reports whether the household's drift event is due at now.
func (e *Engine) driftDue(rt *runtime, now time.Time) bool {
	return e.opts.DriftEvery < 0 || !now.Before(rt.driftNext)
}

// flushDrift publishes the drift events queued by evaluations. Called
// without e.mu held.
//
// While orders are being published the drift events wait: the publisher
// sends them once the outbox is empty, so that an informational event
// never delays orders (it cost a fifth of the time from a price tick to
// the acknowledged orders). While the outbox cannot drain (halted, NATS
// down) they go out as usual.
func (e *Engine) flushDrift() {
	e.mu.Lock()
	if len(e.outbox) > 0 && e.halt == nil && e.natsUp {
		e.mu.Unlock()
		return // the publisher flushes them once the outbox is empty
	}
	out := e.driftOut
	e.driftOut = nil
	clear(e.driftAt)
	e.mu.Unlock()
	for _, d := range out {
		if err := e.mayPublish(); err != nil {
			e.log.Debug("drift event not published", zap.String("policy", d.Policy), zap.Error(err))
			continue // informational: the next evaluation sends a newer one
		}
		if err := e.opts.Publisher.PublishDrift(d); err != nil {
			e.log.Debug("drift event not published", zap.String("policy", d.Policy), zap.Error(err))
		}
	}
}
