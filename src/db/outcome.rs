//! The outcome of a transaction whose `COMMIT` was sent but whose answer was lost with its
//! connection: rowlock never answers 503 ("nothing was applied") for a change that may have
//! committed. The transaction's id (`txid_current()`, read before `COMMIT` was sent) is looked
//! up with `txid_status` on another connection once the database answers again.
//!
//! An id alone is not enough after a crash: PostgreSQL hands out transaction ids without
//! writing them to WAL, so after crash recovery an id that was given to a transaction that never
//! committed can be given again, to a new transaction that may commit. A transaction that did
//! commit is safe (its commit record is in WAL, so its id is never handed out again). So the id
//! is read together with a mark of the server's crash history — the time its shared statistics
//! were last reset, which crash recovery does and a clean restart does not — and when that mark
//! changed, "committed" cannot be trusted (504), while "aborted" and "in progress" still mean
//! that this transaction did not commit (503).

use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool};

use crate::db::citus;
use crate::db::statements::Conn;
use crate::error::ApiError;

/// The server's crash mark, as a SQL expression (see the module documentation).
macro_rules! crash_mark {
    () => {
        "coalesce((SELECT stats_reset::text FROM pg_stat_wal), '')"
    };
}
pub(crate) use crash_mark;

const STATUS: &str = concat!(
    "SELECT txid_status($1) AS status, ",
    crash_mark!(),
    " AS crash_mark"
);

/// What identifies a transaction to [`resolve`]: its id and the server's crash mark when the id
/// was handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxIdentity {
    /// `txid_current()`, read inside the transaction before its `COMMIT` was sent.
    pub txid: i64,
    /// The server's crash mark when the id was read: a different one now means a crash since.
    pub crash_mark: String,
}

/// What became of transaction `tx` after its connection broke: `Some(true)` committed,
/// `Some(false)` rolled back (or never finished: the server crashed), `None` when that could
/// not be learned within `timeout`.
pub async fn resolve(pool: &Pool, tx: &TxIdentity, timeout: Duration) -> Option<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(pooled) = pool.get().await {
            let client = Conn::outside(&pooled);
            let status = match client.prepare(STATUS).await {
                Ok(stmt) => client.query_one(&stmt, &[&tx.txid]).await,
                Err(e) => Err(e),
            };
            match status {
                Ok(row) => {
                    let crashed = row.get::<_, String>("crash_mark") != tx.crash_mark;
                    match (row.get::<_, Option<String>>("status").as_deref(), crashed) {
                        (Some("committed"), false) => return Some(true),
                        // Perhaps another transaction that was given the same id after the
                        // crash.
                        (Some("committed"), true) => return None,
                        // On Citus a worker may have committed before the coordinator died.
                        (Some("aborted"), _) | (Some("in progress"), true) if citus::on() => {
                            return None
                        }
                        (Some("aborted"), _) | (Some("in progress"), true) => return Some(false),
                        // The old session has not noticed yet that its client is gone.
                        (Some("in progress"), false) => {}
                        _ => return None,
                    }
                }
                // A pooled connection broken by the same failure: drop it, try another.
                Err(_) => {
                    let _ = Object::take(pooled);
                }
            }
        }
        if Instant::now() >= deadline {
            tracing::error!(
                txid = tx.txid,
                "cannot learn whether a transaction's COMMIT succeeded"
            );
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The answer when the transaction was found rolled back.
pub fn rolled_back() -> ApiError {
    ApiError::Unavailable(
        "the database connection was lost before the change committed; nothing was applied".into(),
    )
}

/// The answer when the outcome could not be learned.
pub fn unknown() -> ApiError {
    ApiError::OutcomeUnknown(
        "the database connection was lost after COMMIT was sent and the outcome could not be \
         learned; the change may or may not have been applied (retry only with the same \
         Idempotency-Key, or read first)"
            .into(),
    )
}

/// The answer when the change committed but its result was lost with the connection.
pub fn committed_without_answer() -> ApiError {
    ApiError::OutcomeUnknown(
        "the change committed, but its result was lost with the database connection; read the \
         resource to see it"
            .into(),
    )
}
