package plan

import "github.com/rebalancerd/rebalancerd/internal/drift"

// MakeExact is MakeWith with the polish rating every move in decimal
// arithmetic (makeWith), for the tests that compare it with the fast
// rating.
func MakeExact(s *drift.Snapshot, o Options) *Plan { return makeWith(s, o, rating{exact: true}) }

// MakePlain is MakeWith with the polish taking none of its shortcuts
// (makeWith), for the tests that compare it with them.
func MakePlain(s *drift.Snapshot, o Options) *Plan { return makeWith(s, o, rating{plain: true}) }
