package ledger

import "time"

// MaxResyncs is how many resyncs a ledger remembers (Resyncs).
const MaxResyncs = 16

// ResyncRecord is an operator's replacement of a ledger's holdings
// (Resync): when, by whom, why, from which file, and what the ledger said
// before.
type ResyncRecord struct {
	At     time.Time `json:"at"`
	By     string    `json:"by,omitempty"`
	Reason string    `json:"reason,omitempty"`
	// File and Hash name the holdings file given, AsOf is its as_of.
	File string    `json:"file,omitempty"`
	Hash string    `json:"hash,omitempty"`
	AsOf time.Time `json:"as_of"`
	// PrevAsOf, PrevUnknown and PrevRefused are the ledger's as_of,
	// unknown fills and refused snapshot before the resync.
	PrevAsOf    time.Time `json:"previous_as_of"`
	PrevUnknown []string  `json:"previous_unknown_fills,omitempty"`
	PrevRefused string    `json:"previous_refused_snapshot,omitempty"`
}

// Resync replaces the holdings with accounts as SetBase does, whatever the
// snapshot's date and the ledger's (a ledger dated in the future included),
// and records it in Resyncs (the last MaxResyncs). It is the operator's
// way out of a block on the ledger: unknown fills and a refused snapshot
// are cleared; orders still pending stay pending.
func (l *Ledger) Resync(rec ResyncRecord, accounts map[string]*Account, now time.Time) {
	rec.At, rec.PrevAsOf = now, l.AsOf
	rec.PrevUnknown, rec.PrevRefused = l.Unknown, l.Refused
	l.SetBase(rec.AsOf, rec.Hash, accounts, now)
	l.Resyncs = append(l.Resyncs, rec)
	if n := len(l.Resyncs) - MaxResyncs; n > 0 {
		l.Resyncs = append(l.Resyncs[:0:0], l.Resyncs[n:]...)
	}
}
