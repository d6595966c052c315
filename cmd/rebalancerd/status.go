package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/statusdoc"
)

// StatusCommand prints a running daemon's status (GET /status) as tables
// for a terminal: the same document the status page shows.
type StatusCommand struct {
	Stdout, Stderr io.Writer
}

// Run executes the command.
func (c *StatusCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("rebalancerd status", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	configFile := fs.String("config", "", "daemon configuration `file`: its HTTP address, token and certificate")
	url := fs.String("url", "", "daemon HTTP `url` (default: from -config, else http://127.0.0.1:8080)")
	only := fs.String("policy", "", "show only this `policy`")
	asJSON := fs.Bool("json", false, "print the status document (or the policy's part of it) as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("status: unexpected argument %q", fs.Arg(0))}
	}
	sc, err := newStatusClient(*configFile, *url)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	doc, err := sc.get(ctx)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	var v any = doc
	if *only != "" {
		p := doc.Policy(*only)
		if p == nil {
			var names []string
			for _, p := range doc.Policies {
				names = append(names, p.Policy)
			}
			return fmt.Errorf("status: no policy %q (the daemon runs: %s)", *only, strings.Join(names, ", "))
		}
		doc.Policies = []engine.PolicyStatus{*p}
		v = p
	}
	if *asJSON {
		enc := json.NewEncoder(c.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	printStatus(c.Stdout, doc, *only == "")
	return nil
}

// printStatus writes the document as tables; daemon adds the daemon-wide
// part (kill switch, NATS, feeds).
func printStatus(out io.Writer, doc *statusdoc.Document, daemon bool) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	defer w.Flush()
	now := doc.At
	if daemon {
		commit := doc.Build.Commit
		if commit == "" {
			commit = "unknown commit"
		}
		fmt.Fprintf(w, "rebalancerd %s (%s), %s, as of %s\n", doc.Build.Version, commit, doc.Role, now.Format(time.RFC3339))
		nats := "connected"
		if !doc.NATSConnected {
			nats = "DISCONNECTED"
		}
		fmt.Fprintf(w, "NATS %s; kill switch %s; %d plans waiting for JetStream\n", nats, haltText(doc.Halt), doc.Outbox)
		if !doc.LastReload.OK {
			fmt.Fprintf(w, "LAST RELOAD FAILED (%s): %s\n", doc.LastReload.Reason, doc.LastReload.Error)
		}
		for _, f := range doc.Feeds {
			line := fmt.Sprintf("feed %s (%s): last success %s", f.Name, f.Kind, statusdoc.Ago(now, f.LastSuccess))
			if f.LastError != "" {
				line += fmt.Sprintf("; last error %s: %s", statusdoc.Ago(now, f.LastErrorAt), f.LastError)
			}
			if f.BreakerOpen {
				line += "; BREAKER OPEN"
			}
			fmt.Fprintln(w, line)
		}
	}
	for _, p := range doc.Policies {
		fmt.Fprintf(w, "\n%s: trigger %s, total value %s, prices as of %s\n", p.Policy, p.Trigger, orText(p.TotalValue, "not valued yet"), timeText(p.PricesAsOf))
		if !p.NextFiring.IsZero() {
			fmt.Fprintf(w, "next firing: %s (%s, %s)\n", p.NextFiring.Format(time.RFC3339), statusdoc.Until(now, p.NextFiring), p.NextTrigger)
		}
		if len(p.Sleeves) > 0 {
			fmt.Fprintln(w, "SLEEVE\tWEIGHT\tTARGET\tBAND\tDRIFT\tSTATE\t")
			for _, sl := range p.Sleeves {
				name := sl.Sleeve
				if sl.Parent != "" {
					name = strings.Repeat("  ", strings.Count(sl.Sleeve, "/")) + sl.Sleeve[strings.LastIndexByte(sl.Sleeve, '/')+1:]
				}
				state := "in"
				if sl.Breach {
					state = "OUT"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s–%s\t%s\t%s\t\n", name, statusdoc.Percent(sl.Weight), statusdoc.Percent(sl.Target),
					statusdoc.Percent(sl.BandLow), statusdoc.Percent(sl.BandHigh), statusdoc.Points(sl.Deviation), state)
			}
		}
		if len(p.PendingOrders) > 0 {
			fmt.Fprintf(w, "pending orders (%d):\n", len(p.PendingOrders))
			fmt.Fprintln(w, "ORDER\tSTATUS\tAGE\tACCOUNT\tSIDE\tQUANTITY\tINSTRUMENT\tPRICE\tFILLED\tREASON\t")
			for _, o := range p.PendingOrders {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s: %s\t\n", o.OrderID, o.Status, statusdoc.Ago(now, o.CreatedAt),
					o.Account, o.Side, o.Quantity, o.Instrument, o.Price, o.Filled, o.Sleeve, o.Rule)
			}
		} else {
			fmt.Fprintln(w, "pending orders: none")
		}
		if len(p.Blocked) == 0 {
			fmt.Fprintln(w, "blocked: no")
		}
		for _, b := range p.Blocked {
			fmt.Fprintf(w, "blocked: %s: %s\n", b.Reason, b.Detail)
		}
		if p.LastError != "" {
			fmt.Fprintf(w, "last error: %s\n", p.LastError)
		}
	}
}

func haltText(h *engine.Halt) string {
	if h == nil {
		return "released"
	}
	return fmt.Sprintf("ENGAGED at %s by %q: %s", h.At.UTC().Format(time.RFC3339), h.By, h.Reason)
}

func orText(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}
