// Package nats connects rebalancerd to NATS and JetStream: it runs the
// embedded server used when no NATS URL is configured (StartEmbedded),
// connects to a server (Connect, ConnectEmbedded), and moves the messages
// of package events (Bus): orders and plans out, fills and positions in.
//
// # Durability
//
// Orders move money, so they are never sent with a core NATS publish,
// which is at most once: a message published while the connection is down
// sits in the client's reconnect buffer and may never be sent. Orders and
// plans go to the JetStream stream <PREFIX>_ORDERS, and an order counts as
// published only once the stream has acknowledged it. Each carries its
// order id as Nats-Msg-Id. A publish that fails or times out is retried
// with the same id until acknowledged: a timeout does not mean the message
// was not stored (the ack may be what got lost), and the stream drops a
// second copy of an id it already holds, answering with a duplicate ack.
// On nats-server 2.12.1 or later a plan's orders and its plan event go out
// as one atomic batch (PublishPlanOrders), stored all or none, each
// message still under its id: a retried batch that was stored already is
// refused whole by the server and then confirmed message by message. Every
// message of every publish passes Bus.beforeSend first, the one place
// where a publish can be stopped between two messages.
//
// That dedupe holds only within the stream's Duplicates window (24h here,
// against the server's default of 2 minutes); after it the same id is
// accepted again as a new message. JetStream requires the window to be at
// most MaxAge (30 days here), the time orders are kept for executors and
// audits. The daemon must therefore never re-publish an order older than
// the window: it reconciles it instead. (Dedupe that never expires would
// need a subject per order, with MaxMsgsPerSubject 1; order subjects are per
// account, which is how executors subscribe.)
//
// Executors report fills and positions, possibly with a core publish. The
// stream <PREFIX>_REPORTS captures them even while the daemon is down, and
// the daemon reads them through a durable consumer with explicit acks: a
// report is acknowledged only after the daemon has applied it, so a crash
// in between redelivers it (at least once; reports are idempotent by
// fill_id). A report that can never be parsed is terminated rather than
// redelivered forever.
//
// An acknowledged write is only as durable as the server makes it. Jepsen's
// analysis of NATS 2.12.1 (December 2025) lost acknowledged writes with the
// default sync_interval of 2 minutes, under which a write is acknowledged
// before it reaches the disk. The embedded server therefore fsyncs every
// write (EmbeddedConfig.SyncInterval zero); at a household's few orders per
// rebalance this costs little. For production, use an external cluster with
// file storage (the only storage used here), 3 replicas
// (StreamConfig.Replicas) and sync_interval: always, on nats-server 2.12.3
// or later.
//
// Even then JetStream is the transport, not the books. The daemon keeps
// its own journal of the orders it decided before publishing them, and
// reconciles that journal against the orders stream (what was stored) and
// the reports (what was executed) at start and after outages: an order in
// the journal but not in the stream is published again with the same id
// while within the Duplicates window, and reported as needing attention
// after it.
//
// # Outages
//
// A NATS outage never stops the daemon. Connections retry forever,
// including the first one (RetryOnFailedConnect), with jittered waits.
// NewBus and ConsumeReports retry until their context ends, and
// PublishOrders keeps retrying unacknowledged orders until its context
// ends, then names them in an *UnackedError.
package nats
