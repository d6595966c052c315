package engine

import (
	"context"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/rebalancerd/rebalancerd/internal/clock"
)

// runCalendar calls fire at every firing of sched until ctx ends.
//
// robfig/cron's Cron runner reads the system clock and cannot be given
// another, so the loop that waits for the next firing is written here
// against clock.Clock (which tests control); the cron library still
// parses the schedule and computes every firing (Schedule.Next), and the
// job runs wrapped in chain (cron's Recover and SkipIfStillRunning: a
// panic is logged, and a firing that comes while the previous one still
// runs is skipped).
//
// DST: Next works in the schedule's zone (CRON_TZ=...). On the
// spring-forward day a time in the skipped hour (02:30 in New York) does
// not occur and that day's firing is skipped; on the fall-back day a time
// in the repeated hour (01:30) occurs twice and Next returns both. fire
// receives the firing time and the engine keeps the local wall-clock time
// of the last firing it acted on, so the repeat is ignored.
func runCalendar(ctx context.Context, clk clock.Clock, sched cron.Schedule, chain cron.Chain, fire func(at time.Time)) {
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		at time.Time // the firing the job acts on
	)
	defer wg.Wait()
	job := chain.Then(cron.FuncJob(func() {
		mu.Lock()
		t := at
		mu.Unlock()
		fire(t)
	}))
	for {
		now := clk.Now()
		next := sched.Next(now)
		if next.IsZero() {
			return // never fires again (rejected at parse time; kept as a guard)
		}
		c, stop := clk.After(next.Sub(now))
		select {
		case <-ctx.Done():
			stop()
			return
		case <-c:
		}
		mu.Lock()
		at = next
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			job.Run()
		}()
	}
}

// fireKey is the local wall-clock time of a firing in the schedule's zone,
// to the minute: two firings with the same key are the DST repeat of one.
func fireKey(sched cron.Schedule, at time.Time) string {
	if s, ok := sched.(*cron.SpecSchedule); ok && s.Location != nil {
		at = at.In(s.Location)
	}
	return at.Format("2006-01-02 15:04")
}
