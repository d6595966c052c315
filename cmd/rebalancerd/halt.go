package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/events"
)

// ControlCommand sends a control request to the running daemon over NATS:
// halt (engage the kill switch), release, or rebalance (a policy, now).
type ControlCommand struct {
	Action         string
	Stdout, Stderr io.Writer
}

// Run executes the command.
func (c *ControlCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("rebalancerd "+c.Action, flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	configFile := fs.String("config", "", "daemon configuration `file`: NATS address, credentials, prefix and control token")
	server := fs.String("server", "", "NATS `url` (default: from -config)")
	reason := fs.String("reason", "", "why (required for halt)")
	by := fs.String("by", os.Getenv("USER"), "who asks (recorded with the halt)")
	pol := fs.String("policy", "", "the `policy` to rebalance (rebalance only)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q", c.Action, fs.Arg(0))}
	}
	switch {
	case c.Action == events.ControlHalt && strings.TrimSpace(*reason) == "":
		return usageError{"halt: -reason is required"}
	case c.Action == events.ControlRebalance && *pol == "":
		return usageError{"rebalance: -policy is required"}
	}
	req := events.ControlRequest{SchemaVersion: events.SchemaVersion, Reason: *reason, By: *by, Policy: *pol}
	reply, err := sendControl(ctx, *configFile, *server, c.Action, req)
	if err != nil {
		return fmt.Errorf("%s: %w", c.Action, err)
	}
	if !reply.OK {
		if c.Action == events.ControlRebalance && strings.HasPrefix(reply.Error, engine.ErrRebalanceSkipped.Error()) {
			// Not refused: the daemon tried, and says why nothing was planned.
			return fmt.Errorf("%s: %s", c.Action, reply.Error)
		}
		return fmt.Errorf("%s: refused: %s", c.Action, reply.Error)
	}
	state := "publishing"
	if reply.Halted {
		state = "halted: " + reply.Reason
	}
	fmt.Fprintf(c.Stdout, "%s: done; rebalancerd is %s\n", c.Action, state)
	return nil
}

// sendControl sends a control request to the running daemon, with the
// control token of the configuration, and returns its answer (which may
// be a refusal: reply.OK false, reply.Error why).
func sendControl(ctx context.Context, configFile, server, action string, req events.ControlRequest) (events.ControlReply, error) {
	var reply events.ControlReply
	cfg, nc, err := dialFromConfig(configFile, server, "rebalancerd-"+action)
	if err != nil {
		return reply, err
	}
	defer nc.Close()
	if cfg.ControlTokenFile != "" {
		m := &Main{Config: cfg}
		if req.Token, err = m.controlToken(); err != nil {
			return reply, err
		}
	}
	data, _ := json.Marshal(req)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, events.Subjects{Prefix: cfg.NATS.Prefix}.Control(action), data)
	if err != nil {
		return reply, fmt.Errorf("no answer from rebalancerd: %w", err)
	}
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return reply, fmt.Errorf("bad answer: %w", err)
	}
	return reply, nil
}
