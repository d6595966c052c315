package main

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	natsgo "github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/inputfile"
	"github.com/rebalancerd/rebalancerd/internal/metrics"
	rnats "github.com/rebalancerd/rebalancerd/internal/nats"
	"github.com/rebalancerd/rebalancerd/internal/state"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// haltFile is where an engaged kill switch is kept, so that it survives a
// restart until released.
func (m *Main) haltFile() string { return filepath.Join(m.Config.StateDir, "halt.json") }

// restoreHalt re-engages a kill switch saved before the last stop.
func (m *Main) restoreHalt() error {
	var h engine.Halt
	var ok bool
	var err error
	if m.kvState != nil {
		ok, err = m.kvState.ReadHalt(&h) // shared by the instances
	} else {
		ok, err = state.ReadJSON(m.haltFile(), &h)
	}
	if err != nil {
		return fmt.Errorf("kill switch state: %w (remove the file only if you mean to release it)", err)
	}
	if ok {
		m.Engine.SetHalt(&h)
	}
	return nil
}

// SetHalt engages (h not nil) or releases the kill switch. A halt takes
// effect at once and is then saved, so that it survives a restart; if the
// save fails the daemon stays halted and the error is returned. A release
// is saved first and takes effect only then: a release that could not be
// saved would be undone by a restart.
func (m *Main) SetHalt(h *engine.Halt) error {
	if h != nil {
		m.Engine.SetHalt(h)
		var err error
		if m.kvState != nil {
			err = m.kvState.WriteHalt(h)
		} else {
			err = state.WriteJSON(m.haltFile(), h)
		}
		if err != nil {
			return fmt.Errorf("halted, but the halt is not saved and would not survive a restart: %w", err)
		}
		return nil
	}
	var err error
	if m.kvState != nil {
		err = m.kvState.WriteHalt(nil)
	} else {
		err = state.RemoveDurably(m.haltFile())
	}
	if err != nil {
		return err
	}
	m.Engine.SetHalt(nil)
	return nil
}

// controlToken reads the control token, if one is configured.
func (m *Main) controlToken() (string, error) {
	if m.Config.ControlTokenFile == "" {
		return "", nil
	}
	if err := rnats.CheckPrivate("control token file", m.Config.ControlTokenFile); err != nil {
		return "", err
	}
	data, err := inputfile.Read(m.Config.ControlTokenFile, inputfile.MaxSecretSize)
	if err != nil {
		return "", fmt.Errorf("control token: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("control token file %s is empty", m.Config.ControlTokenFile)
	}
	return tok, nil
}

// subscribeControl answers kill-switch requests on <prefix>.control.halt
// and <prefix>.control.release, and manual rebalance requests on
// <prefix>.control.rebalance.
func (m *Main) subscribeControl(token string) (*natsgo.Subscription, error) {
	subj := events.Subjects{Prefix: m.Config.NATS.Prefix}
	if token == "" {
		m.Log.Warn("control subjects are protected by NATS permissions only (no control.token_file)",
			zap.String("subject", subj.Control("*")))
	}
	sub, err := m.Conn.Subscribe(subj.Control("*"), func(msg *natsgo.Msg) {
		if m.controlElsewhere(msg) {
			return // the instance holding the household's partition answers
		}
		reply := m.control(msg, token)
		data, _ := json.Marshal(reply)
		if msg.Reply != "" {
			if err := msg.Respond(data); err != nil {
				m.Log.Warn("control reply not sent", zap.Error(err))
			}
		}
	})
	if err != nil {
		return nil, err
	}
	// Subscribe only queues the interest; once the daemon says it has
	// started, a halt must find it, so wait for the server to have it.
	if err := m.Conn.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("register the control subscription with the server: %w", err)
	}
	return sub, nil
}

func (m *Main) control(msg *natsgo.Msg, token string) events.ControlReply {
	action := msg.Subject[strings.LastIndexByte(msg.Subject, '.')+1:]
	reply := events.ControlReply{SchemaVersion: events.SchemaVersion}
	fail := func(reason string, err error) events.ControlReply {
		reply.Error = err.Error()
		if h := m.Engine.Halted(); h != nil {
			reply.Halted, reply.Reason = true, h.Reason
		}
		m.Metrics.InputsRejected.WithLabelValues(metrics.InputControl, reason).Inc()
		m.Log.Warn("control request refused", zap.String("action", action), zap.String("reason", reason), zap.Error(err))
		return reply
	}
	var req events.ControlRequest
	limit := 64 << 10
	if action == events.ControlResync { // carries a holdings file
		limit += strictyaml.MaxFileSize
	}
	if len(msg.Data) > limit {
		return fail("too_large", errors.New("request too large"))
	}
	if err := json.Unmarshal(msg.Data, &req); err != nil {
		return fail("malformed", fmt.Errorf("request is not JSON: %v", err))
	}
	if req.SchemaVersion != events.SchemaVersion {
		return fail("schema_version", fmt.Errorf("schema_version %d, want %d", req.SchemaVersion, events.SchemaVersion))
	}
	if token != "" && subtle.ConstantTimeCompare([]byte(req.Token), []byte(token)) != 1 {
		return fail("wrong_token", errors.New("wrong or missing token"))
	}
	var err error
	switch action {
	case events.ControlHalt:
		if strings.TrimSpace(req.Reason) == "" {
			return fail("missing_field", errors.New("a halt needs a reason"))
		}
		err = m.SetHalt(&engine.Halt{Reason: req.Reason, By: req.By, At: m.Clock.Now().UTC()})
	case events.ControlRelease:
		err = m.SetHalt(nil)
	case events.ControlRebalance:
		err = m.Engine.RebalanceNow(req.Policy)
	case events.ControlResync:
		if strings.TrimSpace(req.Reason) == "" || req.Policy == "" || req.Holdings == "" {
			return fail("missing_field", errors.New("a resync needs a policy, holdings and a reason"))
		}
		err = m.resync(req)
	default:
		return fail("unknown_action", fmt.Errorf("unknown action %q", action))
	}
	if errors.Is(err, engine.ErrRebalanceSkipped) {
		// Not a bad request: the daemon tried and planned nothing.
		m.Log.Warn("manual rebalance not done", zap.String("policy", req.Policy), zap.String("by", req.By), zap.Error(err))
		reply.Error = err.Error()
		if h := m.Engine.Halted(); h != nil {
			reply.Halted, reply.Reason = true, h.Reason
		}
		return reply
	}
	if err != nil {
		return fail("refused", err)
	}
	m.Log.Warn("control request applied", zap.String("action", action), zap.String("by", req.By),
		zap.String("reason", req.Reason), zap.String("policy", req.Policy))
	reply.OK = true
	if h := m.Engine.Halted(); h != nil {
		reply.Halted, reply.Reason = true, h.Reason
	}
	return reply
}
