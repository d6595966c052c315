// The timer tick's attention: which households it must look at. It
// walked every household, which held the engine for tens of ms at
// 100,000 households while a quote waited for the lock; it now looks
// only at those whose state asks for it, now or at a time on a heap.

package engine

import (
	"container/heap"
	"slices"
	"time"
)

// attnEntry asks the tick to look at rt at at (in force while rt.attnAt
// is at: a later entry with an earlier time replaces it).
type attnEntry struct {
	at time.Time
	rt *runtime
}

// attnHeap is a min-heap of entries by time (container/heap).
type attnHeap []attnEntry

func (h attnHeap) Len() int           { return len(h) }
func (h attnHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h attnHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *attnHeap) Push(x any)        { *h = append(*h, x.(attnEntry)) }
func (h *attnHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = attnEntry{}
	*h = old[:len(old)-1]
	return x
}

// schedule files the household for the first tick that must look at it,
// from the state the tick decides on (see tick): at every tick while a
// firing is due or it is not quiet; else when its check comes due with
// prices changed, or when its quiet time ends. Called with e.mu held,
// after any change of rt.due, rt.dirty, rt.quietUntil or rt.lastCheck
// (evaluate, offer, refreshBlocks, Load).
func (e *Engine) schedule(rt *runtime) {
	if rt.gone {
		return
	}
	if rt.due != nil || rt.quietUntil.IsZero() {
		if !rt.soon {
			rt.soon = true
			e.soon = append(e.soon, rt)
		}
		return
	}
	at := rt.quietUntil
	if rt.dirty {
		if c := rt.lastCheck.Add(rt.pol.Rebalance.CheckEvery); c.Before(at) {
			at = c
		}
	}
	if !rt.attnAt.IsZero() && !rt.attnAt.After(at) {
		return // an entry as early is on the heap: the tick reschedules then
	}
	rt.attnAt = at
	heap.Push(&e.attn, attnEntry{at: at, rt: rt})
}

// attending returns the households the tick at now must look at, in name
// order: those filed for every tick, and those whose time came. Called
// with e.mu held.
func (e *Engine) attending(now time.Time) []*runtime {
	out := e.tickBuf[:0]
	for _, rt := range e.soon {
		rt.soon = false
		if !rt.gone && !rt.inTick {
			rt.inTick = true
			out = append(out, rt)
		}
	}
	clear(e.soon)
	e.soon = e.soon[:0]
	for len(e.attn) > 0 && !e.attn[0].at.After(now) {
		x := heap.Pop(&e.attn).(attnEntry)
		rt := x.rt
		if rt.gone || !rt.attnAt.Equal(x.at) {
			continue // replaced by an earlier entry, or removed
		}
		rt.attnAt = time.Time{}
		if !rt.inTick {
			rt.inTick = true
			out = append(out, rt)
		}
	}
	slices.SortFunc(out, func(a, b *runtime) int { return a.idx - b.idx })
	for _, rt := range out {
		rt.inTick = false
	}
	if e.walkAll {
		out = append(out[:0], e.rts...)
	}
	e.tickBuf = out[:0:cap(out)]
	return out
}
