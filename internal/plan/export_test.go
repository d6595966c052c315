package plan

import "github.com/rebalancerd/rebalancerd/internal/drift"

// MakeExact is MakeWith with the polish rating every move in decimal
// arithmetic (makeWith), for the tests that compare it with the fast
// rating.
func MakeExact(s *drift.Snapshot, o Options) *Plan { return makeWith(s, o, true) }
