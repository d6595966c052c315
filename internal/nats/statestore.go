package nats

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
	"github.com/rebalancerd/rebalancerd/internal/state"
)

// ErrFenced is returned by a StateStore write when another instance has
// written the policy's state since this one read it: this instance is no
// longer the one that may plan for the policy.
var ErrFenced = errors.New("state written by another instance")

// ErrStaleTerm is returned by a StateStore write, and by MayPublish, for a
// household whose state this store claimed under an older term of the
// lease than the one this instance holds now: the lease was lost and
// acquired again since, and another instance may have changed the state
// in between. The household must be loaded afresh (Forget, then Load)
// before anything of it is written or published.
var ErrStaleTerm = errors.New("state loaded under an older lease term")

// StateStore keeps each policy's ledger and journal in one key of a
// JetStream key-value bucket, so that another instance can take over a
// policy where a failed one stopped (high availability). It has the
// methods of the daemon's local state store (Load, Save, Append).
//
// Every write is a compare-and-set on the revision this store last read
// or wrote, and Load claims the key by writing it. An instance that lost
// its lease but does not know it yet (a long pause) therefore cannot
// journal or save anything once its successor has loaded the policy: its
// writes fail with ErrFenced, and an order that is not journaled is not
// published.
//
// The state is also fenced with the lease (StateStoreConfig.Term): every
// write first asks for the lease's term, and is refused when this instance
// does not hold the lease with its margin left; the term is stored with the
// value. A claim (Load) is refused when the key carries a newer term, and
// a claim that loses its compare-and-set to an older term's write (an old
// holder resumed after a pause, between the new holder's read and write)
// reads again and claims over it: holding the lease, not winning a write,
// decides who owns the state. The claim records its term: a write under
// a later term (the lease lost and acquired again since) is refused with
// ErrStaleTerm, as MayPublish refuses the policy's messages, until the
// policy is forgotten and loaded afresh.
//
// The shared documents (ReadJSON, WriteJSON) are fenced the same way:
// compare-and-set on the revision last read or written, the term stored
// with the value.
//
// Journal entries are kept beside the ledger in the same value until the
// next Save, so one write makes a plan durable (as durable as the
// server's JetStream storage: file storage, replicas and sync_interval).
type StateStore struct {
	kv        jetstream.KeyValue
	timeout   time.Duration
	onFenced  func(error)
	fencedFor func(policy string, err error)
	term      func() (uint64, error)
	termFor   func(policy string) (uint64, error)
	// claimRead, when set, runs in Load between the read and the claiming
	// write (tests interleave another instance's write there).
	claimRead func()

	mu   sync.Mutex
	keys map[string]*stateKey
	aux  map[string]map[string]*auxKey // by household, then document name

	// claimed holds each policy's claim term, as in keys, under a lock
	// of its own: MayPublish reads it before every message, and mu is
	// held during reads and writes of the bucket.
	claimedMu sync.Mutex
	claimed   map[string]uint64
}

// stateKey is what this store last wrote or read for one policy.
type stateKey struct {
	rev     uint64
	ledger  json.RawMessage
	journal []state.Entry
	// term is the lease term of the claim: every later write must be made
	// under it.
	term uint64
}

// auxKey is what this store last read or wrote of a shared document: its
// revision (0: absent) and the term it was read or written under.
type auxKey struct {
	rev  uint64
	term uint64
}

// auxRecord is a shared document's key as read: the document, and the
// term of the instance that wrote it.
type auxRecord struct {
	Term     uint64
	Document []byte
}

// auxTermField is the field that carries the writer's term in a shared
// document (a JSON object). It sits beside the document's own fields, so
// that a version that does not know it (a document written before the
// documents were fenced has none: term 0), or an instance of such a
// version in the group during a rolling upgrade, reads the document as it
// is: decoders ignore unknown fields.
const auxTermField = "rebalancerd_term"

// withTerm returns the JSON object doc with the term field added. A
// document that is not an object is returned as it is, without a term.
func withTerm(doc []byte, term uint64) []byte {
	if len(doc) < 2 || doc[0] != '{' {
		return doc
	}
	out := make([]byte, 0, len(doc)+32)
	out = append(out, `{"`+auxTermField+`":`...)
	out = strconv.AppendUint(out, term, 10)
	if rest := bytes.TrimSpace(doc[1:]); len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, doc[1:]...)
}

// termOf returns the term a shared document carries (0 without one).
func termOf(doc []byte) uint64 {
	var t struct {
		Term uint64 `json:"rebalancerd_term"`
	}
	if json.Unmarshal(doc, &t) != nil {
		return 0 // not an object: written without a term
	}
	return t.Term
}

// stateRecord is the value of a policy's key.
type stateRecord struct {
	Ledger  json.RawMessage `json:"ledger,omitempty"`
	Journal []state.Entry   `json:"journal,omitempty"`
	// Term is the lease term of the instance that wrote it (0 without
	// StateStoreConfig.Term).
	Term uint64 `json:"term,omitempty"`
}

// claimAttempts bounds how often Load claims again after losing its
// compare-and-set to an older term's write.
const claimAttempts = 5

// fenced reports err about policy's state to Config.Fenced and
// Config.FencedFor, and returns it.
func (s *StateStore) fenced(policy string, err error) error {
	if s.onFenced != nil {
		s.onFenced(err)
	}
	if s.fencedFor != nil {
		s.fencedFor(policy, err)
	}
	return err
}

// StateStoreConfig configures a StateStore.
type StateStoreConfig struct {
	// Fenced, when set, is called when a read or write finds that another
	// instance has written the state: this instance must step down.
	Fenced func(error)
	// Bucket is the key-value bucket, created if absent.
	Bucket string
	// Replicas of the bucket in a cluster; default 1.
	Replicas int
	// Timeout bounds each read or write; default 5s.
	Timeout time.Duration
	// Term, when set, returns the lease term under which this instance may
	// write (Lease.Term), or an error when it may not; every write of a
	// policy's state or of a shared document carries it. The kill switch
	// (WriteHalt) is not fenced: any instance may engage it.
	Term func() (uint64, error)
	// TermFor, when set, replaces Term with a term per household: that of
	// the lease on the household's partition (Partitions.Term), so that an
	// instance that lost a partition can no longer write the state of its
	// households while it keeps the others. A shared document's household
	// is its name up to the first dot (the engine's documents are named
	// "<policy>.<what>").
	TermFor func(policy string) (uint64, error)
	// FencedFor, when set, is called like Fenced with the household whose
	// state another instance wrote.
	FencedFor func(policy string, err error)
}

// NewStateStore creates (or updates) the bucket and returns the store.
func NewStateStore(ctx context.Context, b *Bus, cfg StateStoreConfig) (*StateStore, error) {
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	var kv jetstream.KeyValue
	err := b.retry(ctx, "create or update state bucket "+cfg.Bucket, func(ctx context.Context) error {
		var err error
		kv, err = b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      cfg.Bucket,
			Description: "rebalancerd ledgers and journals, shared by the instances of a high-availability group",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.Replicas,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("nats: state bucket %s: %w", cfg.Bucket, err)
	}
	return &StateStore{kv: kv, timeout: cfg.Timeout, onFenced: cfg.Fenced, fencedFor: cfg.FencedFor, term: cfg.Term,
		termFor: cfg.TermFor, keys: map[string]*stateKey{}, aux: map[string]map[string]*auxKey{},
		claimed: map[string]uint64{}}, nil
}

// currentTerm returns the term this instance writes policy's key under,
// or why it may not write.
func (s *StateStore) currentTerm(policy, key string) (uint64, error) {
	var t uint64
	var err error
	switch {
	case s.termFor != nil:
		t, err = s.termFor(policy)
	case s.term != nil:
		t, err = s.term()
	default:
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("state: write %s refused: %w", key, err)
	}
	return t, nil
}

func ledgerKey(policy string) string { return "ledger." + policy }

// Load reads a policy's ledger with its journal replayed, and claims the
// key: any instance that read it before can no longer write it. ok is
// false when the policy has no saved ledger.
func (s *StateStore) Load(policy string) (l *ledger.Ledger, ok bool, err error) {
	if err := checkToken(policy); err != nil {
		return nil, false, fmt.Errorf("state: policy %q: %w", policy, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	key := ledgerKey(policy)
	s.mu.Lock()
	defer s.mu.Unlock()
	for attempt := 1; ; attempt++ {
		l, ok, retry, err := s.loadOnce(ctx, policy, key)
		if !retry {
			return l, ok, err
		}
		if attempt == claimAttempts {
			return nil, false, s.fenced(policy, fmt.Errorf("state: claim %s: %w: lost the compare-and-set %d times: %v", key, ErrFenced, attempt, err))
		}
	}
}

// loadOnce is one read and, if needed, one claim of Load. retry is true
// when the claim lost its compare-and-set to a write of an older term.
// Called with s.mu held.
func (s *StateStore) loadOnce(ctx context.Context, policy, key string) (l *ledger.Ledger, ok, retry bool, err error) {
	var rec stateRecord
	var rev uint64
	e, err := s.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return nil, false, false, fmt.Errorf("state: read %s: %w", key, err)
	default:
		rev = e.Revision()
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			return nil, false, false, fmt.Errorf("state: %s: %w", key, err)
		}
	}
	if len(rec.Ledger) > 0 {
		l = new(ledger.Ledger)
		if err := json.Unmarshal(rec.Ledger, l); err != nil {
			return nil, false, false, fmt.Errorf("state: %s: ledger: %w", key, err)
		}
		if l.Policy != policy {
			return nil, false, false, fmt.Errorf("state: %s holds policy %q", key, l.Policy)
		}
		if l.Accounts == nil {
			l.Accounts = map[string]*ledger.Account{}
		}
		state.Replay(l, rec.Journal)
		ok = true
	}
	term, terr := s.currentTerm(policy, key)
	if known, found := s.keys[policy]; found && (terr != nil || known.term == term) {
		// Read again by the instance that holds it: no new claim, which
		// would take the key back from a successor.
		if known.rev != rev {
			return nil, false, false, s.fenced(policy, fmt.Errorf("state: read %s: %w: revision %d, this instance wrote %d", key, ErrFenced, rev, known.rev))
		}
		return l, ok, false, nil
	}
	if terr != nil {
		return nil, false, false, terr
	}
	// Not known, or claimed under an older term (the lease was lost and
	// acquired again since): claimed anew as it is now.
	if rec.Term > term {
		return nil, false, false, s.fenced(policy, fmt.Errorf("state: claim %s: %w: written in lease term %d, this instance holds term %d", key, ErrFenced, rec.Term, term))
	}
	if s.claimRead != nil {
		s.claimRead()
	}
	// Claim: the same content under a new revision and this term.
	k := &stateKey{rev: rev, ledger: rec.Ledger, journal: rec.Journal, term: term}
	if err := s.writeTerm(ctx, key, k, term); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, false, true, err // read again: the term decides
		}
		return nil, false, false, err
	}
	s.keys[policy] = k
	s.claimedMu.Lock()
	s.claimed[policy] = term
	s.claimedMu.Unlock()
	return l, ok, false, nil
}

// Save replaces a policy's ledger and empties its journal (the ledger
// holds every journaled order). durable is ignored: every write is as
// durable as the bucket.
func (s *StateStore) Save(l *ledger.Ledger, durable bool) error {
	data, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("state: encode %s: %w", l.Policy, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := s.known(l.Policy)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	next := &stateKey{rev: k.rev, ledger: data, term: k.term}
	if err := s.write(ctx, l.Policy, next); err != nil {
		return err
	}
	s.keys[l.Policy] = next
	return nil
}

// Append journals a plan's orders before they are published.
func (s *StateStore) Append(policy string, e state.Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, err := s.known(policy)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	next := &stateKey{rev: k.rev, ledger: k.ledger, journal: append(k.journal[:len(k.journal):len(k.journal)], e), term: k.term}
	if err := s.write(ctx, policy, next); err != nil {
		return err
	}
	s.keys[policy] = next
	return nil
}

// known returns what this store holds of a policy; a policy must be
// loaded (claimed) before it is written. Called with s.mu held.
func (s *StateStore) known(policy string) (*stateKey, error) {
	k, ok := s.keys[policy]
	if !ok {
		return nil, fmt.Errorf("state: policy %s written before it was loaded", policy)
	}
	return k, nil
}

// write stores k under policy's key by compare-and-set on k.rev (create
// when 0) under the current lease term, and sets k.rev to the new
// revision. A compare-and-set that fails means another instance wrote the
// key since: ErrFenced. A write under a term other than the claim's is
// refused (ErrStaleTerm): the state in memory predates a loss of the
// lease, and the key may hold another instance's writes of the meantime.
func (s *StateStore) write(ctx context.Context, policy string, k *stateKey) error {
	key := ledgerKey(policy)
	term, err := s.currentTerm(policy, key)
	if err != nil {
		return err
	}
	if term != k.term {
		return fmt.Errorf("state: write %s refused: %w: claimed in term %d, the lease is now in term %d", key, ErrStaleTerm, k.term, term)
	}
	err = s.writeTerm(ctx, key, k, term)
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return s.fenced(policy, fmt.Errorf("state: write %s: %w: %v", key, ErrFenced, err))
	}
	return err
}

// writeTerm stores k under key by compare-and-set on k.rev, recording
// term, and sets k.rev to the new revision. The compare-and-set's error
// is returned as it is.
func (s *StateStore) writeTerm(ctx context.Context, key string, k *stateKey, term uint64) error {
	data, err := json.Marshal(stateRecord{Ledger: k.ledger, Journal: k.journal, Term: term})
	if err != nil {
		return fmt.Errorf("state: encode %s: %w", key, err)
	}
	var rev uint64
	if k.rev == 0 {
		rev, err = s.kv.Create(ctx, key, data)
	} else {
		rev, err = s.kv.Update(ctx, key, data, k.rev)
	}
	if err != nil {
		return fmt.Errorf("state: write %s: %w", key, err)
	}
	k.rev = rev
	return nil
}

// Forget drops what this store knows of policy's key: the instance no
// longer holds the household (its partition went to another instance).
// Loading it again claims the key anew, at the revision its holder left.
func (s *StateStore) Forget(policy string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.keys, policy)
	s.claimedMu.Lock()
	delete(s.claimed, policy)
	s.claimedMu.Unlock()
	delete(s.aux, policy)
}

// ClaimedTerm returns the lease term under which this store claimed
// policy's state; ok is false when it has not (or has forgotten it).
func (s *StateStore) ClaimedTerm(policy string) (term uint64, ok bool) {
	s.claimedMu.Lock()
	defer s.claimedMu.Unlock()
	term, ok = s.claimed[policy]
	return term, ok
}

// MayPublish reports why a message of policy must not be published now,
// or nil: this instance may not write its state (StateStoreConfig.Term
// or TermFor refuses), or it claimed the state under an older term than
// the one it holds now (ErrStaleTerm: what it has in memory predates a
// loss of the lease, and may have been expired, replaced or published by
// another instance in between). A policy whose state is not claimed
// passes the second check.
func (s *StateStore) MayPublish(policy string) error {
	term, err := s.currentTerm(policy, ledgerKey(policy))
	if err != nil {
		return err
	}
	if claimed, ok := s.ClaimedTerm(policy); ok && claimed != term {
		return fmt.Errorf("%s: %w: claimed in term %d, the lease is now in term %d", policy, ErrStaleTerm, claimed, term)
	}
	return nil
}

// Has reports whether the bucket holds a state for policy.
func (s *StateStore) Has(policy string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	_, err := s.kv.Get(ctx, ledgerKey(policy))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("state: read %s: %w", ledgerKey(policy), err)
	}
	return true, nil
}

// ReadJSON decodes the shared document name (key "aux.<name>") into v; ok
// is false when there is none. With WriteJSON it keeps the daemon's other
// state (phase-ins, the correlation watch) where a successor finds it.
//
// Read while this instance may write it (StateStoreConfig.Term or
// TermFor), the document's revision is recorded for WriteJSON's
// compare-and-set; a document written under a newer term than this
// instance's is refused (ErrFenced), as a claim of the ledger is.
func (s *StateStore) ReadJSON(name string, v any) (ok bool, err error) {
	policy, _, _ := strings.Cut(name, ".")
	key := "aux." + name
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	rev, rec, err := s.readAux(ctx, key)
	if err != nil {
		return false, err
	}
	if term, terr := s.currentTerm(policy, key); terr == nil {
		if rec.Term > term {
			delete(s.aux[policy], name)
			return false, s.fenced(policy, fmt.Errorf("state: read %s: %w: written in lease term %d, this instance holds term %d", key, ErrFenced, rec.Term, term))
		}
		s.setAux(policy, name, &auxKey{rev: rev, term: term})
	}
	if rev == 0 {
		return false, nil
	}
	if err := decimaltext.Unmarshal(rec.Document, v); err != nil {
		return false, fmt.Errorf("state: %s: %w", key, err)
	}
	return true, nil
}

// readAux reads a shared document's key: its revision (0 when absent)
// and its record.
func (s *StateStore) readAux(ctx context.Context, key string) (rev uint64, rec auxRecord, err error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, rec, nil
	}
	if err != nil {
		return 0, rec, fmt.Errorf("state: read %s: %w", key, err)
	}
	return e.Revision(), auxRecord{Term: termOf(e.Value()), Document: e.Value()}, nil
}

// WriteJSON replaces the shared document name with v, while this
// instance holds the lease (StateStoreConfig.Term or TermFor), like a
// ledger write: by compare-and-set on the revision this store last read
// or wrote, carrying the term. A document this store has not read under
// the current term is read first, and is not overwritten when a newer
// term wrote it. A compare-and-set that fails means another instance
// wrote the document since: ErrFenced (reported to Fenced and FencedFor).
// A document last read or written under an older term of the lease is
// refused (ErrStaleTerm): the household must be loaded afresh.
func (s *StateStore) WriteJSON(name string, v any) error {
	policy, _, _ := strings.Cut(name, ".")
	key := "aux." + name
	term, err := s.currentTerm(policy, key)
	if err != nil {
		return err
	}
	doc, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("state: encode %s: %w", key, err)
	}
	data := withTerm(doc, term)
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.aux[policy][name]
	switch {
	case ok && k.term != term:
		return fmt.Errorf("state: write %s refused: %w: read in term %d, the lease is now in term %d", key, ErrStaleTerm, k.term, term)
	case !ok:
		rev, rec, err := s.readAux(ctx, key)
		if err != nil {
			return err
		}
		if rec.Term > term {
			return s.fenced(policy, fmt.Errorf("state: write %s: %w: written in lease term %d, this instance holds term %d", key, ErrFenced, rec.Term, term))
		}
		k = &auxKey{rev: rev, term: term}
	}
	var rev uint64
	if k.rev == 0 {
		rev, err = s.kv.Create(ctx, key, data)
	} else {
		rev, err = s.kv.Update(ctx, key, data, k.rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		delete(s.aux[policy], name)
		return s.fenced(policy, fmt.Errorf("state: write %s: %w: %v", key, ErrFenced, err))
	}
	if err != nil {
		return fmt.Errorf("state: write %s: %w", key, err)
	}
	s.setAux(policy, name, &auxKey{rev: rev, term: term})
	return nil
}

// setAux records what this store read or wrote of a shared document.
// Called with s.mu held.
func (s *StateStore) setAux(policy, name string, k *auxKey) {
	docs := s.aux[policy]
	if docs == nil {
		docs = map[string]*auxKey{}
		s.aux[policy] = docs
	}
	docs[name] = k
}

// haltKey holds the kill switch shared by the instances.
const haltKey = "control.halt"

// ReadHalt decodes the shared kill switch into v; ok is false when none is
// engaged.
func (s *StateStore) ReadHalt(v any) (ok bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	e, err := s.kv.Get(ctx, haltKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("state: read %s: %w", haltKey, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return false, fmt.Errorf("state: %s: %w", haltKey, err)
	}
	return true, nil
}

// WriteHalt engages the shared kill switch (v not nil) or releases it.
func (s *StateStore) WriteHalt(v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	if v == nil {
		if err := s.kv.Delete(ctx, haltKey); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("state: release %s: %w", haltKey, err)
		}
		return nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("state: encode %s: %w", haltKey, err)
	}
	if _, err := s.kv.Put(ctx, haltKey, data); err != nil {
		return fmt.Errorf("state: write %s: %w", haltKey, err)
	}
	return nil
}
