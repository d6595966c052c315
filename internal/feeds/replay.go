package feeds

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/inputfile"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// ReplayFetcher serves recorded price sets, one per poll, stamped with the
// time of the poll; after the last set it repeats the last one. It exists
// for demonstrations and tests, where prices must look fresh without a
// live source; never use it to trade real money. The file is read once:
//
//	steps:
//	  - {VTI: "285.12", BND: "72.15"}
//	  - {VTI: "301.40", BND: "71.90"}
type ReplayFetcher struct {
	path  string
	clock func() time.Time
	steps [][]Quote

	mu   sync.Mutex
	next int
}

// NewReplayFetcher reads a replay file.
func NewReplayFetcher(path string, clock func() time.Time) (*ReplayFetcher, error) {
	if clock == nil {
		clock = time.Now
	}
	data, err := inputfile.Read(path, strictyaml.MaxFileSize)
	if err != nil {
		return nil, err
	}
	r := &strictyaml.Reader{File: path}
	f := &ReplayFetcher{path: path, clock: clock}
	if root := r.Parse(data); root != nil {
		fields := r.Object(root, "", "steps")
		if n, ok := fields["steps"]; ok {
			for i, item := range r.Sequence(n, "steps") {
				field := fmt.Sprintf("steps[%d]", i)
				var step []Quote
				for _, e := range r.Entries(item, field) {
					p, ok := r.Decimal(e.Value, strictyaml.Join(field, e.Key))
					if !ok {
						continue
					}
					if err := checkPrice(p); err != nil {
						r.Errorf(e.Value, strictyaml.Join(field, e.Key), "%v", err)
						continue
					}
					step = append(step, Quote{Symbol: e.Key, Price: p, Source: "replay:" + path})
				}
				sort.Slice(step, func(a, b int) bool { return step[a].Symbol < step[b].Symbol })
				f.steps = append(f.steps, step)
			}
		} else {
			r.Errorf(root, "steps", "required field is missing")
		}
	}
	if err := r.Errs.Err(); err != nil {
		return nil, err
	}
	if len(f.steps) == 0 {
		return nil, fmt.Errorf("%s: steps: no price set", path)
	}
	return f, nil
}

// Fetch returns the next price set, stamped with the current time.
func (f *ReplayFetcher) Fetch(ctx context.Context) ([]Quote, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	step := f.steps[f.next]
	if f.next < len(f.steps)-1 {
		f.next++
	}
	f.mu.Unlock()
	now := f.clock()
	out := make([]Quote, len(step))
	for i, q := range step {
		q.At = now
		out[i] = q
	}
	return out, nil
}
