// Command rebalancerd keeps investment portfolios on the targets of their
// Investment Policy Statements.
//
// Usage:
//
//	rebalancerd check -policy FILE [-holdings FILE] [-prices FILE]
//	rebalancerd check -config FILE
//	rebalancerd check -model FILE
//	rebalancerd plan  -policy FILE -holdings FILE -prices FILE [-json] [-at TIME]
//	rebalancerd run   -config FILE [-state-dir DIR] [-log-level L] [-log-format F]
//	rebalancerd tail  [-config FILE] [-server URL] [-all] [-plans] [-json]
//	rebalancerd halt  -config FILE -reason TEXT [-by NAME]
//	rebalancerd release -config FILE
//	rebalancerd rebalance -config FILE -policy NAME
//	rebalancerd resync -config FILE -policy NAME -holdings FILE -reason TEXT [-by NAME]
//	rebalancerd paper [-config FILE] [-server URL] [-price reference|latest] ...
//	rebalancerd status [-config FILE | -url URL] [-policy NAME] [-json]
//	rebalancerd version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // CRON_TZ zones must resolve on hosts without tzdata
)

// Exit codes.
const (
	exitOK      = 0
	exitInvalid = 1 // bad input: the files were read and found wrong
	exitUsage   = 2 // bad command line
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Run dispatches to a subcommand and returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "check":
		err = (&CheckCommand{Stdout: stdout, Stderr: stderr}).Run(ctx, rest)
	case "plan":
		err = (&PlanCommand{Stdout: stdout, Stderr: stderr}).Run(ctx, rest)
	case "backtest":
		err = (&BacktestCommand{Stdout: stdout}).Run(ctx, rest)
	case "run":
		err = (&RunCommand{Stderr: stderr}).Run(ctx, rest)
	case "tail":
		err = (&TailCommand{Stdout: stdout, Stderr: stderr}).Run(ctx, rest)
	case "paper":
		err = (&PaperCommand{Stderr: stderr}).Run(ctx, rest)
	case "status":
		err = (&StatusCommand{Stdout: stdout, Stderr: stderr}).Run(ctx, rest)
	case "version", "-version", "--version":
		err = (&VersionCommand{Stdout: stdout}).Run(ctx, rest)
	case "halt", "release", "rebalance":
		err = (&ControlCommand{Action: cmd, Stdout: stdout, Stderr: stderr}).Run(ctx, rest)
	case "resync":
		err = (&ResyncCommand{Stdout: stdout, Stderr: stderr}).Run(ctx, rest)
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	default:
		fmt.Fprintf(stderr, "rebalancerd: unknown command %q\n", cmd)
		usage(stderr)
		return exitUsage
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, new(flagError)):
		return exitUsage // the flag package printed the error and the usage
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "rebalancerd: %v\n", err)
		return exitUsage
	default:
		fmt.Fprintln(stderr, err)
		return exitInvalid
	}
}

// parseFlags parses a command's flags; an unknown or malformed flag is a
// bad command line (exit 2), which the flag package has already reported.
func parseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return flagError{err}
}

// flagError is a flag the flag package could not parse.
type flagError struct{ error }

// usageError is a mistake on the command line.
type usageError struct{ msg string }

// Error returns the message.
func (e usageError) Error() string { return e.msg }

func usage(w io.Writer) {
	fmt.Fprint(w, `rebalancerd keeps portfolios on the targets of their investment policy.

Usage:
  rebalancerd check -policy FILE [-holdings FILE] [-prices FILE]
        validate a policy (and holdings and prices against it)
  rebalancerd check -config FILE
        validate the daemon configuration and every policy, model and household it names
  rebalancerd check -model FILE
        validate a model on its own (its households: check -config)
  rebalancerd plan -policy FILE -holdings FILE -prices FILE [-json] [-destination D] [-at TIME]
        print the drift of every sleeve and the orders that rebalance it
        (on the targets in effect at TIME: glide path and tilts);
        -deposit AMOUNT / -withdraw AMOUNT [-account NAME] plan a cash flow
        without selling / without buying
  rebalancerd backtest -policy FILE -history FILE (-initial AMOUNT | -holdings FILE) [-compare] [-json] [-report OUT.html]
        replay a price history through the policy's triggers, planner and tax rules
        ([-from DATE] [-to DATE] [-fee-bps N] [-slippage-bps N] [-carry])
  rebalancerd run -config FILE [-state-dir DIR] [-log-level L] [-log-format F]
        run the daemon: feeds, triggers, orders on NATS; SIGHUP reloads policies
  rebalancerd tail [-config FILE] [-server URL] [-all] [-plans] [-json]
        print the order events as the daemon publishes them
  rebalancerd halt -config FILE -reason TEXT [-by NAME]
        kill switch: stop all publishing now, until released (survives restarts)
  rebalancerd release -config FILE
        release the kill switch
  rebalancerd rebalance -config FILE -policy NAME
        rebalance a policy now, to its destination (trigger "manual")
  rebalancerd resync -config FILE -policy NAME -holdings FILE -reason TEXT [-by NAME]
        replace a policy's ledger with a holdings file, whatever its date:
        the way out of a block on the holdings (see docs/OPERATIONS.md)
  rebalancerd paper [-config FILE] [-server URL] [-price reference|latest]
                    [-fee-bps N] [-slippage-bps N] [-delay D] [-unfilled F]
        paper executor: fill the published orders on paper and report the fills
  rebalancerd status [-config FILE | -url URL] [-policy NAME] [-json]
        print the running daemon's status: sleeves against bands, orders, blocks
  rebalancerd version
        print the version, commit and Go version of this binary

Run 'rebalancerd COMMAND -h' for a command's flags.
`)
}
