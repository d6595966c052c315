// Halt: the kill switch and the NATS connection state, both of which stop
// every publication.

package engine

import (
	"time"

	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/metrics"
)

// Halt is an engaged kill switch: who engaged it, when and why.
type Halt struct {
	Reason string    `json:"reason"`
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at"`
}

// SetHalt engages the kill switch (h not nil) or releases it (nil). While
// it is engaged no plan is made and nothing is published, queued batches
// included; a publish attempt in flight is cancelled (messages already
// handed to NATS may still be stored) and retried under the same ids after
// the release. The caller persists it.
func (e *Engine) SetHalt(h *Halt) {
	defer e.flushDrift() // after the unlock: publishing must not hold the engine
	e.mu.Lock()
	defer e.mu.Unlock()
	e.halt = h
	if h != nil {
		if e.pubCancel != nil {
			e.pubCancel() // an attempt in flight stops; it is retried, same ids, after the release
		}
		e.wakeLocked() // a publisher waiting to retry decides again: a stopping one stops at once
		e.log.Warn("kill switch engaged: publishing halted", zap.String("reason", h.Reason), zap.String("by", h.By))
	} else {
		e.log.Warn("kill switch released: publishing resumes")
		e.wakeLocked()
	}
	for _, name := range e.names {
		e.evaluate(e.policies[name], e.clk.Now())
	}
}

// Halted returns the engaged kill switch, or nil.
func (e *Engine) Halted() *Halt {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.halt
}

// SetNATSConnected records the connection state; while disconnected,
// policies are not planned (their orders could not be published).
func (e *Engine) SetNATSConnected(up bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	changed := e.natsUp != up
	e.natsUp = up
	if changed {
		// Show (or clear) the block at once, not at the next evaluation.
		for _, name := range e.names {
			rt := e.policies[name]
			blocks := make([]Block, 0, len(rt.blocked)+1)
			for _, b := range rt.blocked {
				if b.Reason != metrics.BlockNATSDown {
					blocks = append(blocks, b)
				}
			}
			if !up {
				blocks = append(blocks, Block{metrics.BlockNATSDown, "not connected to NATS"})
			}
			e.setBlocked(rt, blocks)
		}
	}
	if m := e.opts.Metrics; m != nil {
		v := 0.0
		if up {
			v = 1
		}
		m.NATSConnected.Set(v)
	}
}
