package engine

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/rebalancerd/rebalancerd/internal/clock"
	"github.com/rebalancerd/rebalancerd/internal/policy"
)

// firings runs the calendar of spec on a fake clock from start to end and
// returns the firing times it passed to fire.
func firings(t *testing.T, spec string, start, end time.Time) []time.Time {
	t.Helper()
	sched, err := policy.ParseSchedule(spec)
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(start)
	var mu sync.Mutex
	var got []time.Time
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		runCalendar(ctx, clk, sched, cron.NewChain(), func(at time.Time) {
			mu.Lock()
			got = append(got, at)
			mu.Unlock()
		})
	}()
	// Step a minute at a time, each time after the loop has armed its timer.
	for now := start; now.Before(end); now = now.Add(time.Minute) {
		deadline := time.Now().Add(5 * time.Second)
		for clk.Waiters() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("calendar never armed its timer")
			}
			time.Sleep(time.Millisecond)
		}
		clk.Set(now.Add(time.Minute))
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	return got
}

func TestCalendarDST(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, spec string
		start      time.Time
		want       []string // local times of the firings, with zone
	}{
		{"fall-back repeats 01:30", "CRON_TZ=America/New_York 30 1 * * *",
			time.Date(2026, 11, 1, 0, 0, 0, 0, ny), []string{"2026-11-01 01:30 EDT", "2026-11-01 01:30 EST"}},
		{"spring-forward skips 02:30", "CRON_TZ=America/New_York 30 2 * * *",
			time.Date(2026, 3, 8, 0, 0, 0, 0, ny), []string{}},
		{"ordinary day", "CRON_TZ=America/New_York 30 2 * * *",
			time.Date(2026, 3, 9, 0, 0, 0, 0, ny), []string{"2026-03-09 02:30 EDT"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := firings(t, tt.spec, tt.start.UTC(), tt.start.Add(4*time.Hour).UTC())
			gotS := make([]string, len(got))
			for i, g := range got {
				gotS[i] = g.In(ny).Format("2006-01-02 15:04 MST")
			}
			if fmt.Sprint(gotS) != fmt.Sprint(tt.want) {
				t.Errorf("firings %v, want %v", gotS, tt.want)
			}
			// The two fall-back firings share one wall-clock key: the
			// engine acts on the first only.
			sched, _ := policy.ParseSchedule(tt.spec)
			if len(got) == 2 && fireKey(sched, got[0]) != fireKey(sched, got[1]) {
				t.Errorf("keys %q and %q differ", fireKey(sched, got[0]), fireKey(sched, got[1]))
			}
		})
	}
}

// TestCalendarRecoversPanics: a panic in the job is logged by cron's
// Recover wrapper and the calendar keeps firing.
func TestCalendarRecoversPanics(t *testing.T) {
	sched, err := policy.ParseSchedule("@every 1m")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
	clk := clock.NewFake(start)
	e := New(Options{Clock: clk})
	calls := make(chan int, 10)
	n := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go runCalendar(ctx, clk, sched, e.chain, func(time.Time) {
		n++
		calls <- n
		if n == 1 {
			panic("boom")
		}
	})
	// Fire until the second call: a firing that comes while the panicking
	// one still unwinds is skipped (SkipIfStillRunning), a later one runs.
	deadline := time.After(5 * time.Second)
	for got := 0; got < 2; {
		for clk.Waiters() == 0 {
			time.Sleep(time.Millisecond)
		}
		clk.Advance(time.Minute)
		select {
		case got = <-calls:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no firing ran after the panic in the first one")
		}
	}
}
