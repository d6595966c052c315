package nats

import (
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/rebalancerd/rebalancerd/internal/ledger"
)

// termStore is a StateStore whose lease term the test sets, recording
// the households reported to FencedFor.
type termStore struct {
	*StateStore
	term   atomic.Uint64
	fenced atomic.Int32
}

func newTermStore(t *testing.T, ts *testServer, term uint64) *termStore {
	t.Helper()
	s := &termStore{}
	s.term.Store(term)
	var err error
	s.StateStore, err = NewStateStore(t.Context(), newBus(t, connect(t, ts.url()), fastConfig()), StateStoreConfig{Bucket: "TEST_STATE",
		TermFor:   func(string) (uint64, error) { return s.term.Load(), nil },
		FencedFor: func(string, error) { s.fenced.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type doc struct {
	N int `json:"n"`
}

func readDoc(t *testing.T, s *termStore, name string) (doc, error) {
	t.Helper()
	var d doc
	_, err := s.ReadJSON(name, &d)
	return d, err
}

// TestStateStoreDocumentsFenced: the shared documents (phase-ins, the
// correlation watch) are written like the ledger, by compare-and-set
// under the lease term. An instance that lost the household's partition,
// whose write passed the lease check just before a pause, cannot
// overwrite the new holder's document (the old code wrote it with a
// plain put), nor can an instance of an older term that never read it.
func TestStateStoreDocumentsFenced(t *testing.T) {
	ts := newTestServer(t)
	const name = "p.phase"
	a := newTermStore(t, ts, 1)
	if _, err := readDoc(t, a, name); err != nil {
		t.Fatal(err)
	}
	if err := a.WriteJSON(name, doc{1}); err != nil {
		t.Fatal(err)
	}
	// b takes the partition over (a newer term), reads and writes.
	b := newTermStore(t, ts, 2)
	if d, err := readDoc(t, b, name); err != nil || d.N != 1 {
		t.Fatalf("b reads %+v, %v", d, err)
	}
	if err := b.WriteJSON(name, doc{2}); err != nil {
		t.Fatal(err)
	}
	// a, resumed after its lease check, writes: refused.
	if err := a.WriteJSON(name, doc{3}); !errors.Is(err, ErrFenced) {
		t.Fatalf("write by the instance that lost the partition: %v", err)
	}
	if a.fenced.Load() != 1 {
		t.Errorf("FencedFor called %d times, want 1", a.fenced.Load())
	}
	// An instance of the old term that never read the document: refused.
	c := newTermStore(t, ts, 1)
	if err := c.WriteJSON(name, doc{4}); !errors.Is(err, ErrFenced) {
		t.Fatalf("write by an older term over a document it never read: %v", err)
	}
	if _, err := readDoc(t, c, name); !errors.Is(err, ErrFenced) {
		t.Fatalf("read by an older term of a newer term's document: %v", err)
	}
	check := newTermStore(t, ts, 2)
	if d, err := readDoc(t, check, name); err != nil || d.N != 2 {
		t.Fatalf("the document holds %+v (%v), want b's", d, err)
	}

	// b loses the partition and takes it back (term 5): what it read
	// before is stale; written without a new read it is refused, without
	// dropping the partition, and read again it is written.
	b.term.Store(5)
	if err := b.WriteJSON(name, doc{5}); !errors.Is(err, ErrStaleTerm) {
		t.Fatalf("write under a new term of a document read under the old one: %v", err)
	}
	if b.fenced.Load() != 0 {
		t.Errorf("a stale write dropped the partition")
	}
	b.Forget("p")
	if d, err := readDoc(t, b, name); err != nil || d.N != 2 {
		t.Fatalf("b reads %+v, %v", d, err)
	}
	if err := b.WriteJSON(name, doc{6}); err != nil {
		t.Fatal(err)
	}
	// The term is a field beside the document's own: a version that does
	// not know it reads the document as it is.
	e, err := check.kv.Get(t.Context(), "aux."+name)
	if err != nil {
		t.Fatal(err)
	}
	var plain doc
	if err := json.Unmarshal(e.Value(), &plain); err != nil || plain.N != 6 || termOf(e.Value()) != 5 {
		t.Fatalf("stored %s: read as %+v (%v), term %d", e.Value(), plain, err, termOf(e.Value()))
	}

	// A document written before the documents were fenced (the document
	// itself as the value) is read, and written over.
	if _, err := check.kv.Put(t.Context(), "aux.q.phase", []byte(`{"n": 7}`)); err != nil {
		t.Fatal(err)
	}
	if d, err := readDoc(t, b, "q.phase"); err != nil || d.N != 7 {
		t.Fatalf("an unfenced document reads %+v, %v", d, err)
	}
	if err := b.WriteJSON("q.phase", doc{8}); err != nil {
		t.Fatal(err)
	}
	check.term.Store(5)
	if d, err := readDoc(t, check, "q.phase"); err != nil || d.N != 8 {
		t.Fatalf("the document holds %+v (%v) after the write", d, err)
	}
}

// TestStateStoreStaleTerm: a household's state claimed under one term
// of its partition's lease is neither written nor published under a later
// one (the partition was lost and taken back meanwhile), and the refusal
// does not drop the partition; loaded again, it is claimed anew.
func TestStateStoreStaleTerm(t *testing.T) {
	ts := newTestServer(t)
	s := newTermStore(t, ts, 3)
	if _, _, err := s.Load("p"); err != nil {
		t.Fatal(err)
	}
	if err := s.MayPublish("p"); err != nil {
		t.Fatalf("publishing refused under the claim's term: %v", err)
	}
	s.term.Store(9)
	if err := s.Save(ledger.New("p"), false); !errors.Is(err, ErrStaleTerm) {
		t.Fatalf("write under a later term: %v", err)
	}
	if err := s.MayPublish("p"); !errors.Is(err, ErrStaleTerm) {
		t.Fatalf("publishing under a later term: %v", err)
	}
	if s.fenced.Load() != 0 {
		t.Errorf("a stale write dropped the partition")
	}
	if _, _, err := s.Load("p"); err != nil {
		t.Fatal(err)
	}
	if term, ok := s.ClaimedTerm("p"); !ok || term != 9 {
		t.Fatalf("claimed in term %d (%v), want 9", term, ok)
	}
	if err := s.Save(ledger.New("p"), false); err != nil {
		t.Fatal(err)
	}
	if err := s.MayPublish("p"); err != nil {
		t.Fatal(err)
	}
}

// TestWithTerm: the term field is added to objects, empty or not, and
// documents that are not objects are stored as they are.
func TestWithTerm(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`{"n":1}`, `{"rebalancerd_term":7,"n":1}`},
		{`{}`, `{"rebalancerd_term":7}`},
		{`null`, `null`},
		{`[1]`, `[1]`},
	} {
		got := string(withTerm([]byte(tc.doc), 7))
		if got != tc.want {
			t.Errorf("withTerm(%s) = %s, want %s", tc.doc, got, tc.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("withTerm(%s) = %s: not JSON", tc.doc, got)
		}
	}
}
