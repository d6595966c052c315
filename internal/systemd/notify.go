// Package systemd tells systemd about the daemon's state through sd_notify:
// started, reloading, stopping, a one-line status, and watchdog pings.
//
// Outside systemd (NOTIFY_SOCKET unset) every call does nothing, so the
// daemon runs the same in a terminal, in tests and under Type=notify.
// Notification failures are logged, never returned: systemd acts on a
// missing READY=1 (start timeout) or WATCHDOG=1 (restart) by itself.
package systemd

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"go.uber.org/zap"
)

// Notifier sends sd_notify messages. It is safe for concurrent use.
type Notifier struct {
	log     *zap.Logger
	enabled bool // NOTIFY_SOCKET was set when New ran
}

// New returns a Notifier that sends to $NOTIFY_SOCKET, or does nothing when
// it is unset. A nil log discards the Notifier's logging.
func New(log *zap.Logger) *Notifier {
	if log == nil {
		log = zap.NewNop()
	}
	n := &Notifier{log: log, enabled: os.Getenv("NOTIFY_SOCKET") != ""}
	if !n.enabled {
		log.Debug("NOTIFY_SOCKET not set: not notifying systemd")
	}
	return n
}

// Ready tells systemd that start-up is complete (READY=1), with a status line.
func (n *Notifier) Ready(status string) {
	n.send(daemon.SdNotifyReady, statusLine(status))
}

// Reloading tells systemd that the daemon is reloading its configuration
// (RELOADING=1 with MONOTONIC_USEC, in one message); follow it with Reloaded.
func (n *Notifier) Reloading() {
	// SdNotifyMonotonicUsec ends in a newline, or is empty when the
	// monotonic clock cannot be read.
	n.send(daemon.SdNotifyReloading, strings.TrimSuffix(daemon.SdNotifyMonotonicUsec(), "\n"))
}

// Reloaded tells systemd that a reload finished, successfully or not
// (READY=1), with a status line saying which.
func (n *Notifier) Reloaded(status string) {
	n.send(daemon.SdNotifyReady, statusLine(status))
}

// Stopping tells systemd that the daemon is shutting down (STOPPING=1).
func (n *Notifier) Stopping() {
	n.send(daemon.SdNotifyStopping)
}

// Status sets the one-line status shown by systemctl status (STATUS=...).
func (n *Notifier) Status(status string) {
	n.send(statusLine(status))
}

// RunWatchdog sends WATCHDOG=1 at half the interval systemd asked for
// (WatchdogSec=, seen as WATCHDOG_USEC and WATCHDOG_PID), once at start and
// then on every tick, but only while healthy returns true: when it returns
// false the ping is skipped, with a warning, so that systemd kills and
// restarts a daemon that is wedged. healthy must therefore reflect progress
// of the daemon's own loops (for example a heartbeat they update), not
// merely that this goroutine runs.
//
// RunWatchdog returns when ctx ends, or at once when there is no watchdog
// to feed (no NOTIFY_SOCKET, no or a foreign WATCHDOG_PID, no WATCHDOG_USEC).
func (n *Notifier) RunWatchdog(ctx context.Context, healthy func() bool) {
	if !n.enabled {
		return
	}
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		n.log.Warn("systemd watchdog: bad environment; not sending pings", zap.Error(err))
		return
	}
	if interval <= 0 {
		return
	}
	period := interval / 2
	n.log.Info("systemd watchdog enabled", zap.Duration("timeout", interval), zap.Duration("ping_every", period))
	ticker := time.NewTicker(period)
	defer ticker.Stop()
	for {
		if healthy() {
			n.send(daemon.SdNotifyWatchdog)
		} else {
			n.log.Warn("systemd watchdog: daemon unhealthy, skipping ping; systemd restarts it if this lasts",
				zap.Duration("timeout", interval))
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// send sends the non-empty fields as one datagram, one per line.
func (n *Notifier) send(fields ...string) {
	if !n.enabled {
		return
	}
	var lines []string
	for _, f := range fields {
		if f != "" {
			lines = append(lines, f)
		}
	}
	msg := strings.Join(lines, "\n")
	if _, err := daemon.SdNotify(false, msg); err != nil {
		n.log.Warn("sd_notify failed", zap.String("message", msg), zap.Error(err))
	}
}

// statusLine is a STATUS= field; a status must be one line.
func statusLine(status string) string {
	if status == "" {
		return ""
	}
	return "STATUS=" + strings.NewReplacer("\r", " ", "\n", " ").Replace(status)
}
