package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/state"
)

func newTestLease(t *testing.T, b *Bus, holder string, ttl time.Duration) *Lease {
	t.Helper()
	l, err := NewLease(t.Context(), b, LeaseConfig{Bucket: "TEST_LEASE", Key: "group", Holder: holder, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestLeaseOneHolder: of two instances, one holds the lease; the other
// waits, takes over after Release at once, and after the holder stops
// renewing within the TTL.
func TestLeaseOneHolder(t *testing.T) {
	ts := newTestServer(t)
	const ttl = 2 * time.Second
	a := newTestLease(t, newBus(t, connect(t, ts.url()), fastConfig()), "a", ttl)
	b := newTestLease(t, newBus(t, connect(t, ts.url()), fastConfig()), "b", ttl)

	if err := a.Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !a.Valid() || a.Holder() != "a" {
		t.Fatalf("a: valid %v, holder %q", a.Valid(), a.Holder())
	}
	holdCtx, stopHold := context.WithCancel(t.Context())
	held := make(chan error, 1)
	go func() { held <- a.Hold(holdCtx) }()

	// b cannot acquire while a renews: try for longer than the TTL.
	ctx, cancel := context.WithTimeout(t.Context(), 2*ttl)
	err := b.Acquire(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("b acquired a lease a renews: %v", err)
	}
	if !a.Valid() {
		t.Fatal("a's lease not valid while renewed")
	}

	// a releases: b takes over well within the TTL.
	stopHold()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if err := a.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := b.Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > ttl/2 {
		t.Errorf("takeover after release took %v", d)
	}

	// b dies (stops renewing without releasing): a takes over within the
	// TTL.
	died := time.Now()
	if err := a.Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(died); d > ttl {
		t.Errorf("takeover after the holder died took %v, TTL %v", d, ttl)
	}
	t.Logf("takeover after the holder stopped renewing: %v (TTL %v)", time.Since(died), ttl)

	// b still believes it may hold the lease until its local view
	// expires; its renewal then fails on the revision.
	holdErr := b.Hold(t.Context())
	if !errors.Is(holdErr, ErrLeaseLost) || b.Valid() {
		t.Fatalf("b.Hold after takeover: %v, valid %v", holdErr, b.Valid())
	}
}

// TestLeaseTTLMustMatch: an instance with another lease TTL than the
// group's bucket is refused: it would shorten the holder's lease.
func TestLeaseTTLMustMatch(t *testing.T) {
	ts := newTestServer(t)
	newTestLease(t, newBus(t, connect(t, ts.url()), fastConfig()), "a", 3*time.Second)
	_, err := NewLease(t.Context(), newBus(t, connect(t, ts.url()), fastConfig()),
		LeaseConfig{Bucket: "TEST_LEASE", Key: "group", Holder: "b", TTL: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "does not match the group's") {
		t.Fatalf("a second TTL: %v", err)
	}
}

// TestLeaseLostWhenServerUnreachable: a holder that cannot renew stops
// being valid before the TTL ends, and Hold reports the loss.
func TestLeaseLostWhenServerUnreachable(t *testing.T) {
	ts := newTestServer(t)
	const ttl = 2 * time.Second
	a := newTestLease(t, newBus(t, connect(t, ts.url()), fastConfig()), "a", ttl)
	if err := a.Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	ts.stop()
	stopped := time.Now()
	err := a.Hold(t.Context())
	if !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Hold: %v", err)
	}
	if a.Valid() {
		t.Error("valid after loss")
	}
	// Not valid (not publishing) after 7/15 of the TTL, stepped down once
	// no renewal was confirmed for the TTL: the key has expired by then.
	if d := time.Since(stopped); d >= ttl+a.renewEvery()*2 {
		t.Errorf("loss noticed after %v, TTL %v", d, ttl)
	}
}

// TestStateStoreFencing: state written by one instance is read by the
// next, which fences the first: the old instance can neither journal nor
// save.
func TestStateStoreFencing(t *testing.T) {
	ts := newTestServer(t)
	newStore := func() *StateStore {
		s, err := NewStateStore(t.Context(), newBus(t, connect(t, ts.url()), fastConfig()), StateStoreConfig{Bucket: "TEST_STATE"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := newStore(), newStore()
	at := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)

	if _, ok, err := a.Load("p"); err != nil || ok {
		t.Fatalf("load of a new policy: %v %v", ok, err)
	}
	l := ledger.New("p")
	l.SetBase(at, "h", map[string]*ledger.Account{}, at)
	if err := a.Save(l, true); err != nil {
		t.Fatal(err)
	}
	e := state.Entry{PlanID: "x", At: at.Add(time.Minute), Orders: []events.Order{{OrderID: "x-1"}, {OrderID: "x-2"}}}
	if err := a.Append("p", e); err != nil {
		t.Fatal(err)
	}

	// b takes over: it sees the journaled plan as outbox orders.
	got, ok, err := b.Load("p")
	if err != nil || !ok {
		t.Fatalf("b load: %v %v", ok, err)
	}
	if len(got.Orders) != 2 || got.Orders[0].Status != ledger.Outbox || got.LastPlanID != "x" {
		t.Fatalf("b sees %d orders, last plan %q", len(got.Orders), got.LastPlanID)
	}

	// a, paused through the takeover, is fenced.
	late := state.Entry{PlanID: "y", At: at.Add(2 * time.Minute), Orders: []events.Order{{OrderID: "y-1"}}}
	if err := a.Append("p", late); !errors.Is(err, ErrFenced) {
		t.Fatalf("append by the fenced instance: %v", err)
	}
	if err := a.Save(l, true); !errors.Is(err, ErrFenced) {
		t.Fatalf("save by the fenced instance: %v", err)
	}
	// Nor can it take the key back by reading it again (a reload).
	if _, _, err := a.Load("p"); !errors.Is(err, ErrFenced) {
		t.Fatalf("reload by the fenced instance: %v", err)
	}
	// The holder's own reload claims nothing: its writes still succeed.
	if _, _, err := b.Load("p"); err != nil {
		t.Fatalf("reload by the holder: %v", err)
	}

	// b's save empties the journal; a reload sees the saved ledger.
	got.MarkPublished([]string{"x-1", "x-2"}, at.Add(3*time.Minute))
	if err := b.Save(got, true); err != nil {
		t.Fatal(err)
	}
	again, ok, err := b.Load("p")
	if err != nil || !ok || len(again.Orders) != 2 || again.Orders[0].Status == ledger.Outbox {
		t.Fatalf("reload: ok %v err %v, %d orders", ok, err, len(again.Orders))
	}
	if _, _, err := b.Load("bad.name"); err == nil {
		t.Error("a policy name that is not a key token was accepted")
	}
}

// TestStateStoreHalt: the shared kill switch round-trips and releases.
func TestStateStoreHalt(t *testing.T) {
	ts := newTestServer(t)
	s, err := NewStateStore(t.Context(), newBus(t, connect(t, ts.url()), fastConfig()), StateStoreConfig{Bucket: "TEST_STATE"})
	if err != nil {
		t.Fatal(err)
	}
	type halt struct{ Reason string }
	var h halt
	if ok, err := s.ReadHalt(&h); ok || err != nil {
		t.Fatalf("no halt: %v %v", ok, err)
	}
	if err := s.WriteHalt(halt{"audit"}); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.ReadHalt(&h); !ok || err != nil || h.Reason != "audit" {
		t.Fatalf("halt: %v %v %+v", ok, err, h)
	}
	if err := s.WriteHalt(nil); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.ReadHalt(&h); ok || err != nil {
		t.Fatalf("after release: %v %v", ok, err)
	}
}

// TestStateStoreConcurrentAppends: appends and saves of several policies
// from several goroutines keep every journaled order.
func TestStateStoreConcurrentAppends(t *testing.T) {
	ts := newTestServer(t)
	s, err := NewStateStore(t.Context(), newBus(t, connect(t, ts.url()), fastConfig()), StateStoreConfig{Bucket: "TEST_STATE"})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
	policies := []string{"p1", "p2", "p3"}
	for _, p := range policies {
		if _, _, err := s.Load(p); err != nil {
			t.Fatal(err)
		}
		l := ledger.New(p)
		l.SetBase(at, "h", map[string]*ledger.Account{}, at)
		if err := s.Save(l, true); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for _, p := range policies {
		wg.Go(func() {
			for i := range 10 {
				id := p + "-" + string(rune('a'+i))
				if err := s.Append(p, state.Entry{PlanID: id, At: at, Orders: []events.Order{{OrderID: id + "-1"}}}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for _, p := range policies {
		l, _, err := s.Load(p)
		if err != nil || len(l.Orders) != 10 {
			t.Fatalf("%s: %v, %d orders", p, err, len(l.Orders))
		}
	}
}

// TestLeaseAdoptsALostRenewal: a renewal stored although its reply was
// lost is recognised by the acquisition's token, and its revision taken
// over; a key written by another acquisition ends the lease.
func TestLeaseAdoptsALostRenewal(t *testing.T) {
	ts := newTestServer(t)
	a := newTestLease(t, newBus(t, connect(t, ts.url()), fastConfig()), "a", 2*time.Second)
	if err := a.Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	renewal := func(holder, token string) []byte {
		v, _ := json.Marshal(leaseValue{Holder: holder, Token: token, Acquired: a.acquired.UTC(), Renewed: time.Now().UTC()})
		return v
	}
	a.mu.Lock()
	rev, token := a.rev, a.token
	a.mu.Unlock()
	// Stored; "a" never learns the revision, and its next renewal, expecting
	// rev, is refused.
	lost, err := a.kv.Update(t.Context(), "group", renewal("a", token), rev)
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan error, 1)
	go func() { held <- a.Hold(t.Context()) }()
	checkFor(t, 2*time.Second, func() error {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.rev <= lost {
			return fmt.Errorf("revision %d, the lost renewal was stored at %d", a.rev, lost)
		}
		return nil
	})
	if !a.Valid() {
		t.Fatal("not valid after adopting its own renewal")
	}
	// The same holder name with another token is another acquisition (a
	// restarted "a"): not adopted.
	e, err := a.kv.Get(t.Context(), "group")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.kv.Update(t.Context(), "group", renewal("a", "a/other"), e.Revision()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-held:
		if !errors.Is(err, ErrLeaseLost) || a.Valid() {
			t.Fatalf("Hold after another acquisition wrote the key: %v, valid %v", err, a.Valid())
		}
	case <-time.After(4 * time.Second):
		t.Fatal("Hold kept a lease another acquisition wrote")
	}
}

// TestLeaseKeptThroughNATSRestart is the regression test of a holder
// stepping down from its own lease after a short NATS restart.
//   - flushed: the client buffers the renewals that time out while it
//     reconnects and flushes them together, all expecting the same
//     revision; the first is stored and the others are refused. The
//     holder must recognise the stored one whichever it was.
//   - short-ttl: a 2s lease through a 500ms restart, with the reconnect
//     wait the daemon gives a holder (ReconnectWait); with the client's
//     default of 2s every restart outlasted the lease's life.
func TestLeaseKeptThroughNATSRestart(t *testing.T) {
	for _, tc := range []struct {
		name          string
		ttl, down     time.Duration
		reconnectWait time.Duration
	}{
		{"flushed", 4 * time.Second, 200 * time.Millisecond, time.Second},
		{"short-ttl", 2 * time.Second, 500 * time.Millisecond, ReconnectWait(2 * time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) { testLeaseKeptThroughRestart(t, tc.ttl, tc.down, tc.reconnectWait) })
	}
}

func testLeaseKeptThroughRestart(t *testing.T, ttl, down, reconnectWait time.Duration) {
	ts := newTestServer(t)
	log, logs := testLogger(t)
	nc, err := Connect(ConnConfig{URL: ts.url(), Name: t.Name(), ReconnectWait: reconnectWait}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	a := newTestLease(t, newBus(t, nc, fastConfig()), "a", ttl)
	a.log = log
	if err := a.Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	held := make(chan error, 1)
	go func() { held <- a.Hold(ctx) }()

	// Restart the server right after a confirmed renewal.
	a.mu.Lock()
	first := a.rev
	a.mu.Unlock()
	checkFor(t, ttl, func() error {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.rev == first {
			return errors.New("no renewal yet")
		}
		return nil
	})
	ts.stop()
	stopped := time.Now()
	time.Sleep(down) // the outage itself
	ts.start()

	// The holder keeps the lease: valid again once reconnected, and Hold
	// still running two TTLs later.
	checkFor(t, ttl, func() error {
		if !nc.IsConnected() || !a.Valid() {
			return fmt.Errorf("connected %v, valid %v", nc.IsConnected(), a.Valid())
		}
		return nil
	})
	t.Logf("valid again %v after the server stopped (down %v)", time.Since(stopped).Round(time.Millisecond), down)
	select {
	case err := <-held:
		t.Fatalf("the holder gave up its own lease after a NATS restart: %v", err)
	case <-time.After(2 * ttl):
	}
	t.Logf("renewals flushed on reconnect and adopted: %d",
		logs.FilterMessage("lease: a renewal whose reply was lost was stored; keeping the lease").Len())
	e, err := a.kv.Get(t.Context(), "group")
	if err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	rev := a.rev
	a.mu.Unlock()
	if e.Revision() != rev {
		t.Errorf("key at revision %d, the holder believes %d", e.Revision(), rev)
	}
	cancel()
	if err := <-held; err != nil {
		t.Fatal(err)
	}
}

// TestStateStoreFencedByLeaseTerm is the regression test of an old holder,
// resumed after a pause, evicting the new one: its journal write landed
// between the new holder's read and claim, and the new holder's start
// failed. Now a write is refused without a valid lease, a write that
// passed its check before the pause does not stop the new holder's claim
// (which reads again and keeps the old write's journal entry), and every
// later write of the old holder is fenced.
func TestStateStoreFencedByLeaseTerm(t *testing.T) {
	ts := newTestServer(t)
	const ttl = 2 * time.Second
	la := newTestLease(t, newBus(t, connect(t, ts.url()), fastConfig()), "a", ttl)
	lb := newTestLease(t, newBus(t, connect(t, ts.url()), fastConfig()), "b", ttl)
	newStore := func(term func() (uint64, error)) *StateStore {
		s, err := NewStateStore(t.Context(), newBus(t, connect(t, ts.url()), fastConfig()), StateStoreConfig{Bucket: "TEST_STATE", Term: term})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	at := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
	entry := func(id string) state.Entry {
		return state.Entry{PlanID: id, At: at, Orders: []events.Order{{OrderID: id + "-1"}}}
	}

	// Without the lease nothing is written, not even a claim.
	a := newStore(la.Term)
	if _, _, err := a.Load("p"); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("claim without the lease: %v", err)
	}
	if err := la.Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Load("p"); err != nil {
		t.Fatal(err)
	}
	l := ledger.New("p")
	l.SetBase(at, "h", map[string]*ledger.Account{}, at)
	if err := a.Save(l, true); err != nil {
		t.Fatal(err)
	}
	if err := a.Append("p", entry("x")); err != nil {
		t.Fatal(err)
	}
	termA, err := la.Term()
	if err != nil {
		t.Fatal(err)
	}

	// a pauses (no renewals); b acquires once the key has expired.
	if err := lb.Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	termB, err := lb.Term()
	if err != nil || termB <= termA {
		t.Fatalf("term of b %d (%v), of a %d: terms must grow", termB, err, termA)
	}
	// a, resumed, checks its lease before writing: refused.
	if err := a.Append("p", entry("y")); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("append by the holder whose lease lapsed: %v", err)
	}
	if err := a.WriteJSON("doc", map[string]int{"n": 1}); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("shared document written by the holder whose lease lapsed: %v", err)
	}

	// The worst moment: a passed its check just before its pause, and its
	// write lands between b's read and b's claim.
	paused := newStore(func() (uint64, error) { return termA, nil })
	if _, _, err := paused.Load("p"); err != nil {
		t.Fatal(err)
	}
	b := newStore(lb.Term)
	b.claimRead = func() {
		b.claimRead = nil
		if err := paused.Append("p", entry("z")); err != nil {
			t.Errorf("the interleaved write was not stored: %v", err)
		}
	}
	got, ok, err := b.Load("p")
	if err != nil || !ok {
		t.Fatalf("the new holder's claim failed after an old holder's write: %v %v", ok, err)
	}
	if _, ok := got.Order("x-1"); !ok {
		t.Errorf("the claim lost a journaled plan: %+v", got.Orders)
	}
	if _, ok := got.Order("z-1"); !ok {
		t.Errorf("the claim lost journaled plans: %+v", got.Orders)
	}
	// Every later write of the old holder is fenced; the new holder's
	// succeed.
	if err := paused.Append("p", entry("w")); !errors.Is(err, ErrFenced) {
		t.Fatalf("old holder's write after the claim: %v", err)
	}
	if err := b.Append("p", entry("v")); err != nil {
		t.Fatalf("new holder's write: %v", err)
	}
	// A claim by an older term is refused outright.
	older := newStore(func() (uint64, error) { return termA, nil })
	if _, _, err := older.Load("p"); !errors.Is(err, ErrFenced) {
		t.Fatalf("claim by an older term: %v", err)
	}
}
