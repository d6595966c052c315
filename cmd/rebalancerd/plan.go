package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/policy"
)

// PlanCommand prints the drift of every sleeve and the orders that bring
// the household back to its policy. It exits 0 whether or not there are
// orders; only bad input fails it.
type PlanCommand struct {
	Stdout io.Writer
}

// Run executes the command.
func (c *PlanCommand) Run(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("rebalancerd plan", flag.ContinueOnError)
	fs.SetOutput(c.Stdout)
	var in inputs
	fs.StringVar(&in.policyFile, "policy", "", "policy `file` (YAML)")
	fs.StringVar(&in.holdingsFile, "holdings", "", "holdings `file` (YAML)")
	fs.StringVar(&in.pricesFile, "prices", "", "prices `file` (YAML)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of tables")
	dest := fs.String("destination", "", "override the policy's destination: target, band_edge or midway")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("plan: unexpected argument %q", fs.Arg(0))}
	}
	if in.policyFile == "" || in.holdingsFile == "" || in.pricesFile == "" {
		return usageError{"plan: -policy, -holdings and -prices are required"}
	}
	if err := in.load(); err != nil {
		return err
	}
	d := in.policy.Rebalance.Destination
	if *dest != "" {
		switch d = policy.Destination(*dest); d {
		case policy.DestinationTarget, policy.DestinationBandEdge, policy.DestinationMidway:
		default:
			return usageError{fmt.Sprintf("plan: -destination %q: want target, band_edge or midway", *dest)}
		}
	}
	p := plan.MakeTo(drift.Compute(in.book), d)
	if *asJSON {
		enc := json.NewEncoder(c.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(p)
	}
	return writeText(c.Stdout, p)
}

func pct(d decimal.Decimal) string { return d.Shift(2).StringFixed(2) + "%" }

func writeText(w io.Writer, p *plan.Plan) error {
	fmt.Fprintf(w, "policy %s (version %s), prices as of %s, holdings as of %s\n",
		p.Policy, p.PolicyVersion, p.AsOf.Format("2006-01-02 15:04 MST"), p.HoldingsAsOf.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "investable value %s %s (reserves excluded), destination %s, plan %s\n\n",
		p.Total.StringFixed(2), p.Currency, p.Destination, p.ID)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SLEEVE\tVALUE\tTARGET\tWEIGHT\tDEVIATION\tBAND\tBREACH\tAFTER\t")
	for _, s := range p.Sleeves {
		breach := ""
		if s.Breach {
			breach = "yes"
		}
		depth := strings.Count(s.Sleeve, "/")
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%s-%s\t%s\t%s\t\n", strings.Repeat("  ", depth), s.Sleeve,
			s.Value.StringFixed(2), pct(s.Target), pct(s.Weight), pct(s.Deviation), pct(s.BandLow), pct(s.BandHigh), breach, pct(s.WeightAfter))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if len(p.Orders) == 0 {
		fmt.Fprintln(w, "no orders")
	} else {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PHASE\tACCOUNT\tSIDE\tQUANTITY\tINSTRUMENT\tPRICE\tNOTIONAL\tSLEEVE\tRULE\tORDER ID")
		for _, o := range p.Orders {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.Phase, o.Account, o.Side, o.Quantity, o.Instrument,
				o.Price, o.Notional.StringFixed(2), o.Sleeve, o.Rule, o.ID)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, u := range p.Unresolved {
		fmt.Fprintf(w, "unresolved: %s stays at %s: %s\n", u.Sleeve, pct(u.WeightAfter), u.Reason)
	}
	return nil
}
