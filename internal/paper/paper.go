// Package paper is a paper-trading executor for rebalancerd: it reads the
// orders the daemon publishes, pretends to execute each one, and reports
// the fill back exactly as a broker integration would. It closes the loop
// of the quick start (orders → fills → the ledger moves → the household is
// back inside its bands) and is meant to be read as an example executor.
//
// The contract it follows is docs/EVENTS.md:
//
//  1. Orders are read from the orders stream (<PREFIX>_ORDERS, subjects
//     <prefix>.orders.>) through a durable JetStream consumer, so that an
//     executor that restarts continues where it stopped and misses nothing
//     published while it was down. One order at a time, in stream order:
//     a plan's phase 1 sells come before the phase 2 buys they fund.
//  2. An order may be delivered more than once. The fill id is derived from
//     the order id ("paper-<order_id>"), so a second delivery produces the
//     same fill, which the reports stream (Nats-Msg-Id) and the daemon's
//     ledger (fill ids) both ignore.
//  3. The fill is published to the reports stream with a JetStream publish
//     and its acknowledgement awaited: only once the fill is stored is the
//     order acknowledged (a confirmed "double ack"). A crash in between
//     redelivers the order, which gives the same fill again (2).
//  4. An order past its expires_at is not executed: the daemon no longer
//     counts it, and a real executor must not trade on a stale plan.
//
// How an order is filled is a pure function (Fill) of the order, the
// price to start from and the settings: slippage moves the price against
// the order, fees are charged on the notional, and a fraction of each order
// can be left unfilled to show partial fills.
package paper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
	"github.com/rebalancerd/rebalancerd/internal/events"
	rnats "github.com/rebalancerd/rebalancerd/internal/nats"
)

// DefaultDurable is the name of the executor's durable consumer.
const DefaultDurable = "rebalancerd-paper"

// FeePlaces is the number of decimal places fees are rounded to (half away
// from zero): cents, for the currencies the examples use.
const FeePlaces = 2

// Settings say how orders are filled.
type Settings struct {
	// FeeBps is the fee in basis points of the fill's notional (10 is 0.1%).
	FeeBps decimal.Decimal
	// SlippageBps moves the price against the order, in basis points: a
	// buy pays more, a sell receives less.
	SlippageBps decimal.Decimal
	// Unfilled is the fraction of each order left unfilled, from 0 (fill
	// everything) to below 1. With more than 0 the fill is reported as
	// "partial": the order stays pending in the daemon until it expires.
	Unfilled decimal.Decimal
}

// Validate checks the settings' ranges.
func (s Settings) Validate() error {
	switch {
	case s.FeeBps.IsNegative():
		return fmt.Errorf("fee must not be negative, got %s bps", s.FeeBps)
	case s.SlippageBps.IsNegative():
		return fmt.Errorf("slippage must not be negative, got %s bps", s.SlippageBps)
	case s.SlippageBps.GreaterThanOrEqual(decimal.NewFromInt(10000)):
		return fmt.Errorf("slippage must be below 10000 bps, got %s", s.SlippageBps)
	case s.Unfilled.IsNegative() || s.Unfilled.GreaterThanOrEqual(decimal.NewFromInt(1)):
		return fmt.Errorf("unfilled fraction must be in [0, 1), got %s", s.Unfilled)
	}
	return nil
}

// FillID is the fill id reported for an order: the same order always gives
// the same id, which makes redeliveries harmless.
func FillID(orderID string) string { return "paper-" + orderID }

// Fill returns the fill of order o executed at price (before slippage) at
// time at. It is exact: the price with slippage is price x (1 ± bps/10000)
// without rounding; the filled quantity is the order's quantity less the
// unfilled fraction, rounded down to the order quantity's decimal places
// (so that it stays a multiple of a step like 0.0001); fees are rounded to
// FeePlaces.
func Fill(o events.Order, price decimal.Decimal, s Settings, at time.Time) events.Fill {
	slip := s.SlippageBps.Shift(-4) // basis points to a fraction, exactly
	if o.Side == "sell" {
		price = price.Mul(decimal.NewFromInt(1).Sub(slip))
	} else {
		price = price.Mul(decimal.NewFromInt(1).Add(slip))
	}
	qty, status := o.Quantity, events.FillFilled
	if s.Unfilled.IsPositive() {
		places := max(-o.Quantity.Exponent(), 0)
		qty = o.Quantity.Mul(decimal.NewFromInt(1).Sub(s.Unfilled)).RoundDown(places)
		status = events.FillPartial
	}
	fees := qty.Mul(price).Mul(s.FeeBps).Shift(-4).Round(FeePlaces)
	return events.Fill{SchemaVersion: events.SchemaVersion, FillID: FillID(o.OrderID), OrderID: o.OrderID,
		Status: status, Quantity: qty, Price: price, Fees: fees, At: at.UTC()}
}

// PriceFunc returns the price to fill an order at (before slippage). An
// error leaves the order unfilled for now: it is delivered again later.
type PriceFunc func(ctx context.Context, o events.Order) (decimal.Decimal, error)

// ReferencePrice fills at the order's own price, the reference price the
// plan was made with.
func ReferencePrice(_ context.Context, o events.Order) (decimal.Decimal, error) { return o.Price, nil }

// Executor fills the orders of one orders stream on paper.
type Executor struct {
	// JS is the JetStream context of the daemon's NATS.
	JS jetstream.JetStream
	// Prefix is the daemon's subject prefix (nats.prefix; "rebalance").
	Prefix string
	// Durable is the consumer's name; DefaultDurable when empty.
	Durable  string
	Settings Settings
	// Price gives the price to fill at; ReferencePrice when nil.
	Price PriceFunc
	// Delay is how long an order "takes" to execute.
	Delay time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	Log *zap.Logger
	// OnFill, when set, is called after each fill is stored (tests).
	OnFill func(events.Fill)
}

// Run consumes orders until ctx ends; it returns nil then, or the error
// that stopped it.
func (x *Executor) Run(ctx context.Context) error {
	if err := x.Settings.Validate(); err != nil {
		return err
	}
	if x.Durable == "" {
		x.Durable = DefaultDurable
	}
	if x.Price == nil {
		x.Price = ReferencePrice
	}
	if x.Now == nil {
		x.Now = time.Now
	}
	if x.Log == nil {
		x.Log = zap.NewNop()
	}
	subjects := events.Subjects{Prefix: x.Prefix}
	ordersStream, _ := rnats.StreamNames(x.Prefix)
	cons, err := x.JS.CreateOrUpdateConsumer(ctx, ordersStream, jetstream.ConsumerConfig{
		Durable:       x.Durable,
		Description:   "rebalancerd paper executor",
		FilterSubject: subjects.Orders(),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		// One order at a time, in stream order; the ack wait covers the
		// execution delay and the fill's publish.
		MaxAckPending: 1,
		AckWait:       x.Delay + 30*time.Second,
	})
	if err != nil {
		return fmt.Errorf("paper: consumer %s on %s: %w", x.Durable, ordersStream, err)
	}
	x.Log.Info("paper executor consuming orders", zap.String("stream", ordersStream), zap.String("consumer", x.Durable))
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("paper: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return fmt.Errorf("paper: next order: %w", err)
		}
		if err := x.handle(ctx, msg); err != nil {
			if ctx.Err() != nil {
				return nil // stopping: the order is redelivered to the next run
			}
			x.Log.Warn("order not filled; delivered again later", zap.String("subject", msg.Subject()), zap.Error(err))
			_ = msg.NakWithDelay(5 * time.Second)
		}
	}
}

// handle fills one order and acknowledges it once the fill is stored. An
// error means "try again later"; orders that can never be filled are
// terminated and logged.
func (x *Executor) handle(ctx context.Context, msg jetstream.Msg) error {
	var o events.Order
	if err := decimaltext.Unmarshal(msg.Data(), &o); err != nil || o.OrderID == "" || o.SchemaVersion != events.SchemaVersion {
		data := msg.Data()
		x.Log.Error("not an order this executor understands; terminated", zap.String("subject", msg.Subject()),
			zap.ByteString("data", data[:min(len(data), 256)]), zap.Int("bytes", len(data)), zap.Error(err))
		return msg.Term()
	}
	if !o.ExpiresAt.IsZero() && !x.Now().Before(o.ExpiresAt) {
		x.Log.Warn("order expired before execution; not filled", zap.String("order_id", o.OrderID), zap.Time("expires_at", o.ExpiresAt))
		return msg.DoubleAck(ctx)
	}
	if x.Delay > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(x.Delay):
		}
	}
	price, err := x.Price(ctx, o)
	if err != nil {
		return fmt.Errorf("order %s: price: %w", o.OrderID, err)
	}
	f := Fill(o, price, x.Settings, x.Now())
	data, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("order %s: encode fill: %w", o.OrderID, err)
	}
	subj := events.Subjects{Prefix: x.Prefix}.Fill(o.Policy, o.Account)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ack, err := x.JS.Publish(pctx, subj, data, jetstream.WithMsgID(f.FillID))
	if err != nil {
		return fmt.Errorf("order %s: publish fill: %w", o.OrderID, err)
	}
	// Stored (or already stored, for a redelivered order): only now is the
	// order done.
	if err := msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("order %s: ack: %w", o.OrderID, err)
	}
	x.Log.Info("paper fill", zap.String("order_id", o.OrderID), zap.String("fill_id", f.FillID), zap.String("side", o.Side),
		zap.String("quantity", f.Quantity.String()), zap.String("instrument", o.Instrument), zap.String("price", f.Price.String()),
		zap.String("fees", f.Fees.String()), zap.String("status", string(f.Status)), zap.Bool("duplicate", ack.Duplicate))
	if x.OnFill != nil {
		x.OnFill(f)
	}
	return nil
}
