//! Group commit: concurrent `lock=wait`/`lock=none` counter changes share one locked
//! transaction, and every request still gets exactly the answer it would have had alone.
//!
//! To put chosen requests into one group, a test holds a counter's row from a plain connection
//! (as an operator in `psql` would), sends one request that waits for it in PostgreSQL, then the
//! requests it wants grouped: they queue in rowlock behind that one (their row is in a group in
//! the database), and `rowlock_group_queued` says when they all have. Releasing the row lets the
//! first group commit and the queued requests go as the next group.

mod answers;
mod load;
mod visibility;
