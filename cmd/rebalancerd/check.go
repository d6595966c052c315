package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/config"
	"github.com/rebalancerd/rebalancerd/internal/inputfile"
	rnats "github.com/rebalancerd/rebalancerd/internal/nats"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// CheckCommand validates a policy and, optionally, holdings and prices
// against it. It prints a one-line summary when everything is valid and
// every problem, with file, line and field, when not.
type CheckCommand struct {
	Stdout io.Writer
	// Stderr receives flag errors and -h; Stdout when nil.
	Stderr io.Writer
}

// Run executes the command.
func (c *CheckCommand) Run(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("rebalancerd check", flag.ContinueOnError)
	fs.SetOutput(c.Stdout)
	if c.Stderr != nil {
		fs.SetOutput(c.Stderr)
	}
	var in inputs
	fs.StringVar(&in.policyFile, "policy", "", "policy `file` (YAML)")
	fs.StringVar(&in.holdingsFile, "holdings", "", "holdings `file` to check against the policy")
	fs.StringVar(&in.pricesFile, "prices", "", "prices `file` to check against the policy")
	configFile := fs.String("config", "", "daemon configuration `file`: check it and every policy, model and household it names")
	modelFile := fs.String("model", "", "model `file` (YAML): check it on its own")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("check: unexpected argument %q", fs.Arg(0))}
	}
	if *configFile != "" {
		if in.policyFile != "" || in.holdingsFile != "" || in.pricesFile != "" || *modelFile != "" {
			return usageError{"check: -config goes alone"}
		}
		return c.checkConfig(*configFile)
	}
	if *modelFile != "" {
		if in.policyFile != "" || in.holdingsFile != "" || in.pricesFile != "" {
			return usageError{"check: -model goes alone (check its households with -config)"}
		}
		return c.checkModel(*modelFile)
	}
	if in.policyFile == "" {
		return usageError{"check: -policy, -model or -config is required"}
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
	// The zone of trade dates, holding periods, ages and tilts' last days.
	loc, from := p.Zone()
	fmt.Fprintf(c.Stdout, "; investor time zone %s (%s)", loc, from)
	if p.Tax != nil && p.Tax.ZoneSet && p.Tax.Zone.String() != loc.String() {
		fmt.Fprintf(c.Stdout, ", trade dates in %s (tax.time_zone)", p.Tax.Zone)
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
	rr := readPolicies(cfg, nil, nil)
	if rr.err != nil {
		return rr.err
	}
	if len(rr.refused) > 0 {
		return rr.refused.Err()
	}
	set := rr.set
	// What `run` would fail on beyond the files' syntax: feed files and
	// keys, secret files (present, private), NATS authentication.
	var problems []string
	for _, l := range set {
		if why := ttlBeyondStream(cfg, l.Policy); why != "" {
			problems = append(problems, why)
		}
	}
	for _, f := range cfg.Feeds {
		if f.Kind == config.FeedNATS {
			continue
		}
		if _, _, err := buildFetcher(f, os.Getenv, time.Now); err != nil {
			problems = append(problems, fmt.Sprintf("%s:%d: feeds: %s: %v", file, f.Line, f.Name, err))
		}
	}
	n := cfg.NATS
	if n.URL != "" {
		cc := rnats.ConnConfig{URL: n.URL, User: n.User, PasswordFile: n.PasswordFile, TokenFile: n.TokenFile,
			NKeySeedFile: n.NKeySeedFile, CredsFile: n.CredsFile, CAFile: n.CAFile, CertFile: n.CertFile, KeyFile: n.KeyFile}
		if _, err := cc.Options(); err != nil {
			problems = append(problems, fmt.Sprintf("%s: nats: %v", file, err))
		}
	}
	if _, err := httpToken(cfg.HTTP); err != nil {
		problems = append(problems, fmt.Sprintf("%s: %v", file, err))
	}
	if cfg.ControlTokenFile != "" {
		if err := rnats.CheckPrivate("control token file", cfg.ControlTokenFile); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", file, err))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return errors.New(strings.Join(problems, "\n"))
	}
	names := make([]string, len(set))
	for i, l := range set {
		names[i] = l.Policy.Name
	}
	nats := "embedded NATS"
	if cfg.NATS.URL != "" {
		nats = "NATS at " + cfg.NATS.URL
	}
	what := fmt.Sprintf("%d policies (%s)", len(set), strings.Join(names, ", "))
	if rr.households > 0 {
		// Thousands of households: name the explicit policies and the
		// models only.
		explicit := len(set) - rr.households // set lists them first
		var models []string
		seen := map[string]bool{}
		for _, l := range set[explicit:] {
			if !seen[l.Policy.Model] {
				seen[l.Policy.Model] = true
				models = append(models, l.Policy.Model)
			}
		}
		sort.Strings(models)
		what = fmt.Sprintf("%d households on %d models (%s)", rr.households, len(models), strings.Join(models, ", "))
		if explicit > 0 {
			what = fmt.Sprintf("%d policies (%s), %s", explicit, strings.Join(names[:explicit], ", "), what)
		}
	}
	fmt.Fprintf(c.Stdout, "%s: configuration is valid: %s, %d feeds, %s\n", file, what, len(cfg.Feeds), nats)
	return nil
}

// checkModel validates a model file on its own: what only a household can
// show (the accounts asset_location names, a glide path's birth date) is
// checked with each household by `check -config`.
func (c *CheckCommand) checkModel(file string) error {
	data, err := inputfile.Read(file, strictyaml.MaxFileSize)
	if err != nil {
		return err
	}
	m, err := policy.ParseModel(file, data)
	if err != nil {
		return err
	}
	p := m.Policy
	fmt.Fprintf(c.Stdout, "%s: model %s (version %s) is valid: %d sleeves, %d instruments, trigger %s, destination %s\n",
		file, m.Name, m.Version, len(p.Sleeves), len(p.Instruments), p.Rebalance.Trigger, p.Rebalance.Destination)
	return nil
}
