//! The outcome of a transaction whose `COMMIT` was sent but whose answer was lost with its
//! connection: rowlock never answers 503 ("nothing was applied") for a change that may have
//! committed. The transaction's id (`txid_current()`, read before `COMMIT` was sent) is looked
//! up with `txid_status` on another connection once the database answers again.

use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool};

use crate::error::ApiError;

const STATUS: &str = "SELECT txid_status($1)";

/// What became of transaction `txid` after its connection broke: `Some(true)` committed,
/// `Some(false)` rolled back (or never finished: the server crashed), `None` when that could
/// not be learned within `timeout`.
pub async fn resolve(pool: &Pool, txid: i64, timeout: Duration) -> Option<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(client) = pool.get().await {
            match client.query_one(STATUS, &[&txid]).await {
                Ok(row) => match row.get::<_, Option<String>>(0).as_deref() {
                    Some("committed") => return Some(true),
                    Some("aborted") => return Some(false),
                    // The old session has not noticed yet that its client is gone.
                    Some("in progress") => {}
                    _ => return None,
                },
                // A pooled connection broken by the same failure: drop it, try another.
                Err(_) => {
                    let _ = Object::take(client);
                }
            }
        }
        if Instant::now() >= deadline {
            tracing::error!(
                txid,
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
