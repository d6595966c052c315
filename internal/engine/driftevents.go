// Drift events: the latest snapshot of each household, queued and sent
// without blocking evaluation.

package engine

import (
	"time"

	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/events"
)

// publishDrift sets the drift metrics and queues the drift event.
func (e *Engine) publishDrift(rt *runtime, s *drift.Snapshot, now time.Time) {
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
	m := e.opts.Metrics
	if !rt.metered {
		m = nil // past the cap of households with metrics of their own
	}
	for i, sl := range s.Sleeves {
		d.Sleeves[i] = events.DriftSleeve{Sleeve: sl.Path, Target: sl.Target, Weight: sl.Weight, Deviation: sl.Deviation,
			BandLow: sl.BandLow, BandHigh: sl.BandHigh, Breach: sl.Breach, Value: sl.Value}
		if m != nil {
			m.SleeveWeight.WithLabelValues(rt.pol.Name, sl.Path).Set(sl.Weight.InexactFloat64())
			m.SleeveTarget.WithLabelValues(rt.pol.Name, sl.Path).Set(sl.Target.InexactFloat64())
			m.SleeveDeviation.WithLabelValues(rt.pol.Name, sl.Path).Set(sl.Deviation.InexactFloat64())
			breach := 0.0
			if sl.Breach {
				breach = 1
			}
			m.SleeveBreach.WithLabelValues(rt.pol.Name, sl.Path).Set(breach)
		}
	}
	if m != nil {
		for _, sym := range rt.symbols {
			if q, ok := rt.guard.Quote(sym); ok {
				m.PriceAge.WithLabelValues(rt.pol.Name, sym).Set(now.Sub(q.At).Seconds())
			}
		}
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
