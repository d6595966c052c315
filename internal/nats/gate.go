package nats

// SetGate sets a check that runs immediately before each message the bus
// publishes (orders, plans, alerts, drift events; see beforeSend): while
// it returns an error nothing is sent, and the publishing call fails with
// it (an order publish with an *UnackedError naming what was not sent). A
// high-availability planner gates the bus with its lease, so that an
// instance resumed after a pause sends nothing once its lease has lapsed,
// whatever was in flight when it stopped. nil removes the gate.
func (b *Bus) SetGate(gate func() error) {
	if gate == nil {
		b.gate.Store(nil)
		return
	}
	b.gate.Store(&gate)
}

// SetSubjectGate sets a check like SetGate's that is also given the
// subject of the message about to be sent: a partitioned planner refuses
// the messages of households whose partition it no longer holds. nil
// removes it.
func (b *Bus) SetSubjectGate(gate func(subject string) error) {
	if gate == nil {
		b.subjectGate.Store(nil)
		return
	}
	b.subjectGate.Store(&gate)
}
