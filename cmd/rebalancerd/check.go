package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/rebalancerd/rebalancerd/internal/engine"
)

// CheckCommand validates a policy and, optionally, holdings and prices
// against it. It prints a one-line summary when everything is valid and
// every problem, with file, line and field, when not.
type CheckCommand struct {
	Stdout io.Writer
}

// Run executes the command.
func (c *CheckCommand) Run(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("rebalancerd check", flag.ContinueOnError)
	fs.SetOutput(c.Stdout)
	var in inputs
	fs.StringVar(&in.policyFile, "policy", "", "policy `file` (YAML)")
	fs.StringVar(&in.holdingsFile, "holdings", "", "holdings `file` to check against the policy")
	fs.StringVar(&in.pricesFile, "prices", "", "prices `file` to check against the policy")
	configFile := fs.String("config", "", "daemon configuration `file`: check it and every policy it names")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("check: unexpected argument %q", fs.Arg(0))}
	}
	if *configFile != "" {
		if in.policyFile != "" || in.holdingsFile != "" || in.pricesFile != "" {
			return usageError{"check: -config goes alone"}
		}
		return c.checkConfig(*configFile)
	}
	if in.policyFile == "" {
		return usageError{"check: -policy or -config is required"}
	}
	if err := in.load(); err != nil {
		return err
	}
	p := in.policy
	fmt.Fprintf(c.Stdout, "%s: policy %s (version %s) is valid: %d sleeves, %d instruments, %d accounts, trigger %s, destination %s",
		in.policyFile, p.Name, p.Version, len(p.Sleeves), len(p.Instruments), len(p.Accounts), p.Rebalance.Trigger, p.Rebalance.Destination)
	if in.holdings != nil {
		positions := 0
		for _, a := range in.holdings.Accounts {
			positions += len(a.Positions)
		}
		fmt.Fprintf(c.Stdout, "; holdings: %d accounts, %d positions", len(in.holdings.Accounts), positions)
	}
	if in.prices != nil {
		fmt.Fprintf(c.Stdout, "; prices: %d quotes", len(in.prices.Quotes))
	}
	fmt.Fprintln(c.Stdout)
	return nil
}

// checkConfig validates the daemon configuration and every policy and
// holdings file it names.
func (c *CheckCommand) checkConfig(file string) error {
	cfg, err := readConfig(file)
	if err != nil {
		return err
	}
	set, _, err := engine.ReadSources(cfg.Policies)
	if err != nil {
		return err
	}
	names := make([]string, len(set))
	for i, l := range set {
		names[i] = l.Policy.Name
	}
	nats := "embedded NATS"
	if cfg.NATS.URL != "" {
		nats = "NATS at " + cfg.NATS.URL
	}
	fmt.Fprintf(c.Stdout, "%s: configuration is valid: %d policies (%s), %d feeds, %s\n",
		file, len(set), strings.Join(names, ", "), len(cfg.Feeds), nats)
	return nil
}
