package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/config"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/paper"
)

// PaperCommand runs the paper executor (package paper): it fills the
// daemon's orders on paper and reports the fills back, until interrupted.
type PaperCommand struct {
	Stderr io.Writer
}

// Run executes the command.
func (c *PaperCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("rebalancerd paper", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	configFile := fs.String("config", "", "daemon configuration `file`: NATS address, credentials, prefix and HTTP address")
	server := fs.String("server", "", "NATS `url` (default: from -config, else nats://127.0.0.1:4222)")
	priceFrom := fs.String("price", "reference", "fill at the order's `reference` price or at the daemon's latest feed price (`latest`, read from /status)")
	statusURL := fs.String("status-url", "", "daemon HTTP `url` for -price latest (default: from -config, else http://127.0.0.1:8080)")
	fee := fs.String("fee-bps", "0", "fee in basis `points` of each fill's notional")
	slip := fs.String("slippage-bps", "0", "slippage in basis `points`, against the order")
	unfilled := fs.String("unfilled", "0", "`fraction` of each order left unfilled (reported as partial), 0 to below 1")
	delay := fs.Duration("delay", 0, "execution `delay` of each order")
	durable := fs.String("durable", paper.DefaultDurable, "durable consumer `name` on the orders stream")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("paper: unexpected argument %q", fs.Arg(0))}
	}
	var s paper.Settings
	for _, f := range []struct {
		name, v string
		dst     *decimal.Decimal
	}{{"-fee-bps", *fee, &s.FeeBps}, {"-slippage-bps", *slip, &s.SlippageBps}, {"-unfilled", *unfilled, &s.Unfilled}} {
		d, err := decimal.NewFromString(f.v)
		if err != nil {
			return usageError{fmt.Sprintf("paper: %s: not a decimal: %q", f.name, f.v)}
		}
		*f.dst = d
	}
	if err := s.Validate(); err != nil {
		return usageError{"paper: " + err.Error()}
	}
	if *delay < 0 {
		return usageError{"paper: -delay must not be negative"}
	}
	price := paper.ReferencePrice
	switch *priceFrom {
	case "reference":
	case "latest":
		sc, err := newStatusClient(*configFile, *statusURL)
		if err != nil {
			return fmt.Errorf("paper: %w", err)
		}
		price = latestPrice(sc)
	default:
		return usageError{fmt.Sprintf("paper: -price: want reference or latest, got %q", *priceFrom)}
	}

	cfg, nc, err := dialFromConfig(*configFile, *server, "rebalancerd-paper")
	if err != nil {
		return fmt.Errorf("paper: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("paper: %w", err)
	}
	log, _, err := newLogger(config.Log{Level: "info", Format: "auto"}, c.Stderr)
	if err != nil {
		return err
	}
	defer log.Sync()
	log.Info("paper executor: filling orders on paper, not trading", zap.String("nats", nc.ConnectedUrlRedacted()),
		zap.String("price", *priceFrom), zap.String("fee_bps", s.FeeBps.String()), zap.String("slippage_bps", s.SlippageBps.String()),
		zap.String("unfilled", s.Unfilled.String()), zap.Duration("delay", *delay))
	x := &paper.Executor{JS: js, Prefix: cfg.NATS.Prefix, Durable: *durable, Settings: s, Price: price, Delay: *delay, Log: log}
	return x.Run(ctx)
}

// latestPrice reads the price of the order's instrument that the daemon
// last accepted from its feeds, from /status. No price there (or a
// quarantined one) fails: the order waits.
func latestPrice(sc *statusClient) paper.PriceFunc {
	return func(ctx context.Context, o events.Order) (decimal.Decimal, error) {
		doc, err := sc.get(ctx)
		if err != nil {
			return decimal.Decimal{}, err
		}
		p := doc.Policy(o.Policy)
		if p == nil {
			return decimal.Decimal{}, fmt.Errorf("policy %s not in the daemon's status", o.Policy)
		}
		for _, q := range p.Prices {
			if q.Symbol != o.Instrument {
				continue
			}
			if q.Price == "" || q.Quarantined != "" {
				return decimal.Decimal{}, fmt.Errorf("%s: no accepted price now", o.Instrument)
			}
			return decimal.NewFromString(q.Price)
		}
		return decimal.Decimal{}, fmt.Errorf("%s: not among the prices of %s", o.Instrument, o.Policy)
	}
}
