package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rebalancerd/rebalancerd/internal/config"
	"github.com/rebalancerd/rebalancerd/internal/events"
	rnats "github.com/rebalancerd/rebalancerd/internal/nats"
)

// TailCommand prints the order events (and, with -plans, the plans) of
// the orders stream as they arrive: a second terminal's view of what the
// daemon publishes.
type TailCommand struct {
	Stdout, Stderr io.Writer
}

// Run executes the command.
func (c *TailCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("rebalancerd tail", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	configFile := fs.String("config", "", "daemon configuration `file`: NATS address, credentials and prefix")
	server := fs.String("server", "", "NATS `url` (default: from -config, else nats://127.0.0.1:4222)")
	all := fs.Bool("all", false, "print the stream from its start, not only new events")
	raw := fs.Bool("json", false, "print each event's JSON as received")
	plans := fs.Bool("plans", false, "also print plan events")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("tail: unexpected argument %q", fs.Arg(0))}
	}
	cfg, nc, err := dialFromConfig(*configFile, *server, "rebalancerd-tail")
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	defer nc.Close()
	n := cfg.NATS
	cc := struct{ URL string }{nc.ConnectedUrlRedacted()} // for messages
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	stream, _ := rnats.StreamNames(n.Prefix)
	subjects := events.Subjects{Prefix: n.Prefix}
	filter := []string{subjects.Orders()}
	if *plans {
		filter = append(filter, subjects.Plans())
	}
	occ := jetstream.OrderedConsumerConfig{FilterSubjects: filter, DeliverPolicy: jetstream.DeliverNewPolicy}
	if *all {
		occ.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	cons, err := js.OrderedConsumer(ctx, stream, occ)
	if err != nil {
		return fmt.Errorf("tail: stream %s on %s: %w (is rebalancerd running?)", stream, cc.URL, err)
	}
	fmt.Fprintf(c.Stderr, "tail: waiting for events on %s (stream %s at %s); Ctrl-C to stop\n", strings.Join(filter, ", "), stream, cc.URL)
	cc2, err := cons.Consume(func(msg jetstream.Msg) {
		c.print(msg, *raw)
	})
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	<-ctx.Done()
	cc2.Stop()
	return nil
}

func (c *TailCommand) print(msg jetstream.Msg, raw bool) {
	if raw {
		fmt.Fprintf(c.Stdout, "%s %s\n", msg.Subject(), msg.Data())
		return
	}
	if strings.Contains(msg.Subject(), ".plans.") {
		var p events.Plan
		if err := json.Unmarshal(msg.Data(), &p); err != nil || p.Plan == nil {
			fmt.Fprintf(c.Stdout, "%s (undecodable: %v)\n", msg.Subject(), err)
			return
		}
		fmt.Fprintf(c.Stdout, "plan  %s policy %s trigger %s: %d orders, breaching %s\n",
			p.ID, p.Policy, p.Trigger, len(p.Orders), strings.Join(p.Breaching, ","))
		return
	}
	var o events.Order
	if err := json.Unmarshal(msg.Data(), &o); err != nil {
		fmt.Fprintf(c.Stdout, "%s (undecodable: %v)\n", msg.Subject(), err)
		return
	}
	fmt.Fprintf(c.Stdout, "order %-20s %s/%s phase %d %-4s %s %s @ %s = %s (%s, %s, trigger %s)\n",
		o.OrderID, o.Policy, o.Account, o.Phase, o.Side, o.Quantity, o.Instrument, o.Price, o.Notional, o.Sleeve, o.Rule, o.Trigger)
}

// dialFromConfig connects to the NATS the daemon configuration names (its
// embedded server's address when it has no URL), or to server when given,
// with the configuration's credentials.
func dialFromConfig(configFile, server, name string) (*config.Config, *natsgo.Conn, error) {
	cfg := config.DefaultConfig()
	if configFile != "" {
		var err error
		if cfg, err = readConfig(configFile); err != nil {
			return nil, nil, err
		}
	}
	n := cfg.NATS
	cc := rnats.ConnConfig{URL: n.URL, Name: name, User: n.User, PasswordFile: n.PasswordFile,
		TokenFile: n.TokenFile, NKeySeedFile: n.NKeySeedFile, CredsFile: n.CredsFile, CAFile: n.CAFile,
		CertFile: n.CertFile, KeyFile: n.KeyFile}
	if cc.URL == "" {
		cc.URL = fmt.Sprintf("nats://%s:%d", n.EmbeddedHost, n.EmbeddedPort)
	}
	if server != "" {
		cc.URL = server
	}
	// A command-line client fails fast when NATS is not there, unlike the
	// daemon, which waits for it.
	opts := []natsgo.Option{natsgo.Name(name)}
	extra, err := cc.Options()
	if err != nil {
		return nil, nil, err
	}
	nc, err := natsgo.Connect(cc.URL, append(opts, extra...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s: %w", cc.URL, err)
	}
	return cfg, nc, nil
}
