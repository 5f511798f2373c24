//! rowlock: many clients change the same rows at once, and no update is lost.
//!
//! An HTTP service on PostgreSQL where every mutating request is one transaction that locks its
//! rows (`SELECT … FOR UPDATE`, waiting, `NOWAIT` or `SKIP LOCKED`), mutates them and commits.

// Every public item says what it is, nothing is `pub` that cannot be reached from outside the
// crate, and no returned value (a future, a join handle, a result) is dropped without a word.
#![warn(missing_docs, unreachable_pub, unused_results)]

pub mod activity;
pub mod bench;
pub mod cli;
pub mod db;
pub mod error;
pub mod hammer;
pub mod local_cluster;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod startup;
pub mod telemetry;
