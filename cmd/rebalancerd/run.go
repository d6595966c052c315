package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/rebalancerd/rebalancerd/internal/config"
	"github.com/rebalancerd/rebalancerd/internal/inputfile"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// RunCommand runs the daemon until SIGINT or SIGTERM; SIGHUP reloads the
// policies.
type RunCommand struct {
	Stderr io.Writer
}

// Run executes the command.
func (c *RunCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("rebalancerd run", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	configFile := fs.String("config", "", "daemon configuration `file` (YAML)")
	stateDir := fs.String("state-dir", "", "state `directory` (overrides state_dir; under systemd: ${STATE_DIRECTORY})")
	level := fs.String("log-level", "", "log `level`: debug, info, warn or error (overrides log.level)")
	format := fs.String("log-format", "", "log `format`: auto, json or console (overrides log.format)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("run: unexpected argument %q", fs.Arg(0))}
	}
	if *configFile == "" {
		return usageError{"run: -config is required"}
	}
	cfg, err := readConfig(*configFile)
	if err != nil {
		return err
	}
	if *stateDir != "" {
		cfg.StateDir = *stateDir
	}
	if *level != "" {
		if err := config.CheckLogLevel(*level); err != nil {
			return usageError{"run: -log-level: " + err.Error()}
		}
		cfg.Log.Level = *level
	}
	if *format != "" {
		if err := config.CheckLogFormat(*format); err != nil {
			return usageError{"run: -log-format: " + err.Error()}
		}
		cfg.Log.Format = *format
	}
	log, atom, err := newLogger(cfg.Log, c.Stderr)
	if err != nil {
		return err
	}
	defer log.Sync()

	m := &Main{Config: cfg, Log: log, Level: &atom}
	if err := m.Open(ctx); err != nil {
		if ctx.Err() != nil {
			log.Info("stopped before starting", zap.Error(err)) // a standby stopped while waiting
			return nil
		}
		log.Error("start failed", zap.Error(err))
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping")
			err := m.Close()
			if err != nil {
				log.Error("stop", zap.Error(err))
			}
			log.Info("stopped")
			return nil
		case <-hup:
			_ = m.Reload(reasonSIGHUP)
		case err := <-m.Lost():
			if cerr := m.Close(); cerr != nil {
				log.Error("stop", zap.Error(cerr))
			}
			return fmt.Errorf("high availability: %w", err)
		}
	}
}

// readConfig reads and parses the daemon configuration.
func readConfig(file string) (*config.Config, error) {
	data, err := inputfile.Read(file, strictyaml.MaxFileSize)
	if err != nil {
		return nil, err
	}
	return config.Parse(file, data, os.Getenv)
}

// newLogger builds the zap logger: JSON when stderr is not a terminal (as
// under systemd) or when asked, console otherwise.
func newLogger(c config.Log, w io.Writer) (*zap.Logger, zap.AtomicLevel, error) {
	atom := zap.NewAtomicLevel()
	if err := atom.UnmarshalText([]byte(c.Level)); err != nil {
		return nil, atom, err
	}
	format := c.Format
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				format = "console"
			}
		}
	}
	var enc zapcore.Encoder
	if format == "json" {
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	} else {
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		enc = zapcore.NewConsoleEncoder(ec)
	}
	sink := zapcore.Lock(zapcore.AddSync(w))
	// Warnings are what hostile or broken inputs cause (bad price
	// messages, refused reports and control requests): a flood of them is
	// sampled, each message text logging its first warnSampleFirst in a
	// second and then one in warnSampleThereafter, while the metrics
	// (rebalancerd_inputs_rejected_total and the others) count every one.
	// Other levels are not sampled: every rebalance line and every error
	// is logged (the order events on NATS, not the log, are the audit
	// trail).
	warn := zap.LevelEnablerFunc(func(l zapcore.Level) bool { return l == zapcore.WarnLevel && atom.Enabled(l) })
	rest := zap.LevelEnablerFunc(func(l zapcore.Level) bool { return l != zapcore.WarnLevel && atom.Enabled(l) })
	core := zapcore.NewTee(
		zapcore.NewSamplerWithOptions(zapcore.NewCore(enc, sink, warn), time.Second, warnSampleFirst, warnSampleThereafter),
		zapcore.NewCore(enc.Clone(), sink, rest))
	return zap.New(core, zap.ErrorOutput(zapcore.AddSync(w))), atom, nil
}

// The sampling of repeated warnings (see newLogger), zap's production
// defaults: per message text and second, the first 100, then one in 100.
const (
	warnSampleFirst      = 100
	warnSampleThereafter = 100
)
