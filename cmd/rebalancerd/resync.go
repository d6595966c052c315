package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/inputfile"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// ResyncCommand replaces a policy's ledger in the running daemon with a
// holdings file, whatever its date and the ledger's: the operator's way out
// of a block on the holdings (unknown_order_state, a refused snapshot, a
// ledger dated in the future). It is a control request over NATS, like
// halt; the daemon checks the file against the policy, saves the ledger
// durably, records the resync in it and logs it.
type ResyncCommand struct {
	Stdout, Stderr io.Writer
}

// Run executes the command.
func (c *ResyncCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("rebalancerd resync", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	configFile := fs.String("config", "", "daemon configuration `file`: NATS address, credentials, prefix and control token")
	server := fs.String("server", "", "NATS `url` (default: from -config)")
	pol := fs.String("policy", "", "the `policy` whose ledger to replace")
	holdings := fs.String("holdings", "", "holdings `file` that becomes the ledger (the format of the daemon's holdings files)")
	reason := fs.String("reason", "", "why (required; recorded in the ledger)")
	by := fs.String("by", os.Getenv("USER"), "who asks (recorded in the ledger)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageError{fmt.Sprintf("resync: unexpected argument %q", fs.Arg(0))}
	case *pol == "":
		return usageError{"resync: -policy is required"}
	case *holdings == "":
		return usageError{"resync: -holdings is required"}
	case strings.TrimSpace(*reason) == "":
		return usageError{"resync: -reason is required"}
	}
	data, err := inputfile.Read(*holdings, strictyaml.MaxFileSize)
	if err != nil {
		return fmt.Errorf("resync: %s: %w", *holdings, err)
	}
	// Checked here first, for errors with the file's lines; the daemon
	// checks it again, against the policy.
	if _, err := portfolio.ParseHoldings(*holdings, data); err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	req := events.ControlRequest{SchemaVersion: events.SchemaVersion, Reason: *reason, By: *by, Policy: *pol,
		Holdings: string(data), HoldingsFile: *holdings}
	reply, err := sendControl(ctx, *configFile, *server, events.ControlResync, req)
	if err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	if !reply.OK {
		return fmt.Errorf("resync: refused: %s", reply.Error)
	}
	fmt.Fprintf(c.Stdout, "resync: the ledger of %s is now %s\n", *pol, *holdings)
	return nil
}

// resync applies a resync request in the daemon: the holdings it carries
// replace the policy's ledger (engine.Resync).
func (m *Main) resync(req events.ControlRequest) error {
	file := req.HoldingsFile
	if file == "" {
		file = "(resync request)"
	}
	h, err := portfolio.ParseHoldings(file, []byte(req.Holdings))
	if err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(req.Holdings))
	return m.Engine.Resync(req.Policy, h, "resync:"+hex.EncodeToString(sum[:8]), req.By, req.Reason)
}
