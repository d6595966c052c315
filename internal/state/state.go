// Package state persists the daemon's state: each policy's ledger and
// other documents of the engine (the correlation watch's price history,
// phase-in state) in one file in the state directory (Store, a bbolt
// B+tree with group-committed transactions), and the journal of plans
// about to be published in one append-only file beside it (see
// docs/OPERATIONS.md, "State directory").
//
// The journal takes the orders of a new plan before they are published:
// Append returns once the entry is fsynced (unless Options.AsyncJournal),
// so the plan survives a power loss before its first order is published.
// Load replays the journal over the saved ledger, so a crash re-publishes
// those orders under the same ids, which JetStream deduplicates. Once
// JetStream has acknowledged them the daemon saves the ledger, which
// supersedes the entries. What a lost journal entry held, the daemon
// recovers from the orders stream itself.
//
// Dir is the former layout, one file per policy, kept for the migration
// (Store.Migrate) and for benchmarks.
package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
)

// Entry is one journal record: the orders of a plan about to be published,
// and the plan event (events.Plan, encoded) to publish after them.
type Entry struct {
	PlanID string          `json:"plan_id"`
	At     time.Time       `json:"at"`
	Orders []events.Order  `json:"orders"`
	Plan   json.RawMessage `json:"plan,omitempty"`
}

// encode returns the entry as one line of JSON. The plan event is spliced
// in as it is, after a check that it is one line of valid JSON: cheaper
// than letting encoding/json compact it again on the path from a price
// tick to the orders.
func (e Entry) encode() ([]byte, error) {
	plan := e.Plan
	e.Plan = nil
	head, err := json.Marshal(e)
	if err != nil || len(plan) == 0 {
		return head, err
	}
	if bytes.IndexByte(plan, '\n') >= 0 || !json.Valid(plan) {
		return nil, errors.New("plan event is not one line of JSON")
	}
	line := make([]byte, 0, len(head)+len(plan)+10)
	line = append(line, head[:len(head)-1]...) // without its closing brace
	line = append(line, `,"plan":`...)
	line = append(line, plan...)
	return append(line, '}'), nil
}

// Replay adds to l the orders of journal entries its snapshot does not
// hold yet, in journal order, and moves its last rebalance forward to the
// newest of them.
func Replay(l *ledger.Ledger, entries []Entry) {
	for _, e := range entries {
		if len(e.Orders) == 0 {
			continue
		}
		if _, ok := l.Order(e.Orders[0].OrderID); ok {
			continue // in the snapshot already
		}
		l.AddOrders(e.Orders, e.At)
		if len(e.Plan) > 0 {
			l.AddPlan(e.PlanID, e.Plan)
		}
		if e.At.After(l.LastRebalance) {
			l.LastRebalance, l.LastPlanID = e.At, e.PlanID
		}
	}
}
