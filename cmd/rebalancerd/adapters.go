// Adapters between the engine's interfaces and the NATS bus.

package main

import (
	"context"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/events"
	rnats "github.com/rebalancerd/rebalancerd/internal/nats"
)

// publisher adapts the bus to the engine.
type publisher struct{ b *rnats.Bus }

// PublishOrders publishes the orders, with the plan event in the same
// atomic batch where the server takes one, and waits for the ack.
func (p publisher) PublishOrders(ctx context.Context, orders []events.Order, plan *events.Plan) (bool, error) {
	_, planSent, err := p.b.PublishPlanOrders(ctx, orders, plan)
	return planSent, err
}

// PublishPlan publishes the plan event and waits for its ack.
func (p publisher) PublishPlan(ctx context.Context, pl events.Plan) error {
	return p.b.PublishPlan(ctx, pl)
}

// PublishAlert publishes an alert and waits for its ack.
func (p publisher) PublishAlert(ctx context.Context, a events.Alert) error {
	return p.b.PublishAlert(ctx, a)
}

// PublishDrift publishes a drift event (core NATS).
func (p publisher) PublishDrift(d events.Drift) error { return p.b.PublishDrift(d) }

// history reads the streams back for the engine's reconciliation.
type history struct{ b *rnats.Bus }

// OrdersSince returns the order events stored since the given time.
func (h history) OrdersSince(ctx context.Context, since time.Time) ([]events.Order, error) {
	return h.b.OrdersSince(ctx, since)
}

// FillsSince returns the fills stored since the given time as reports.
func (h history) FillsSince(ctx context.Context, since time.Time) ([]engine.Report, bool, error) {
	rs, complete, err := h.b.FillsSince(ctx, since)
	out := make([]engine.Report, len(rs))
	for i, r := range rs {
		out[i] = engine.Report{Policy: r.Policy, Account: r.Account, Fill: r.Fill}
	}
	return out, complete, err
}

// ReportsSince returns the positions snapshots and cash flows stored since
// the given time, with whether the reports consumer acknowledged each.
func (h history) ReportsSince(ctx context.Context, since time.Time) ([]engine.StoredReport, error) {
	rs, err := h.b.ReportsSince(ctx, since)
	out := make([]engine.StoredReport, len(rs))
	for i, r := range rs {
		out[i] = engine.StoredReport{Report: engine.Report{Policy: r.Policy, Positions: r.Positions, CashFlow: r.CashFlow},
			Stored: r.Stored, Handled: r.Handled}
	}
	return out, err
}
