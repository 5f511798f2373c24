//! Increments of a counter (`POST /counters/{name}/increment`).
//!
//! An increment under a row lock is `SELECT … FOR UPDATE` followed by a guarded `UPDATE`. For
//! `wait` and `nowait` both statements and the `COMMIT` go out in one pipeline: once the `SELECT`
//! holds the lock the `UPDATE` cannot block, and if the `SELECT` fails the transaction is aborted
//! and the `COMMIT` becomes a rollback. The `UPDATE` takes a snapshot of its own, so it decides:
//! a row created after the `SELECT` found none is still updated, and then the answer is the
//! `UPDATE`'s, never a 404 for a change that was made.
//!
//! `skip_locked` locks first and awaits the answer: a skipped row must not be updated, nor
//! waited for.

use serde::Serialize;
use tokio_postgres::Row;

pub(crate) use super::sql::ADD;
use super::sql::{ADD_IF_VERSION, LOCK};
use super::{
    bound_violation, counter, get, lock_row, locked_error, not_found, overflow, within, Counter,
};
use crate::db::citus;
use crate::db::idempotency::Reply;
use crate::db::locking::{RowLock, WaitPolicy};
use crate::db::tx::Tx;
use crate::error::ApiError;

/// The outcome of an increment.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Increment {
    /// The counter incremented.
    pub name: String,
    /// The value after the increment.
    pub value: i64,
    /// The value just before the increment, as seen under its lock (or by its atomic `UPDATE`).
    pub previous: i64,
    /// The version the increment wrote, sent as its `ETag`.
    pub version: i64,
}

impl Increment {
    /// The answer to `POST /counters/{name}/increment` (and what an idempotency key stores).
    pub fn reply(&self) -> Result<Reply, ApiError> {
        Ok(Reply::json(200, self)?.header("etag", format!("\"{}\"", self.version)))
    }
}

/// How an increment protects itself against concurrent writers.
#[derive(Debug, Clone, Copy)]
pub enum Concurrency {
    /// Lock the row with `SELECT … FOR …` first.
    Locked(RowLock),
    /// `lock=none`: the single atomic `UPDATE … RETURNING`.
    Atomic,
    /// `If-Match`: no lock; update only if the version still matches.
    Optimistic {
        /// The version from `If-Match` that the row must still have.
        version: i64,
    },
}

/// Adds `by` to counter `name` under `mode`.
pub async fn increment(
    tx: &Tx,
    name: &str,
    by: i64,
    mode: Concurrency,
) -> Result<Increment, ApiError> {
    let mode = match mode {
        Concurrency::Atomic => match citus::lock_first(None) {
            Some(lock) => Concurrency::Locked(lock),
            None => Concurrency::Atomic,
        },
        other => other,
    };
    match mode {
        Concurrency::Locked(lock) if lock.wait == WaitPolicy::SkipLocked => {
            let current = lock_row(tx, name, lock).await?;
            let add = tx.prepare(ADD).await?;
            let row = tx.client().query_opt(&add, &[&name, &by]).await?;
            finish_locked(&current, by, row)
        }
        Concurrency::Locked(lock) => {
            let (select, add) = (tx.prepare(lock.pick(&LOCK)).await?, tx.prepare(ADD).await?);
            let client = tx.client();
            let (select_params, add_params) = ([&name as _], [&name as _, &by as _]);
            let locking = async {
                let row = client.query_opt(&select, &select_params).await;
                if row.is_ok() {
                    tx.locked("counter", lock.mode_name());
                }
                row
            };
            let (current, row) =
                futures_util::join!(locking, tx.commit_with(client.query_opt(&add, &add_params)),);
            // The SELECT's error is the cause; the UPDATE's would only be "transaction aborted".
            let current = current.map_err(|e| locked_error(e, name))?;
            match (current, row?) {
                // What was written is the answer, even for a row the SELECT did not find yet.
                (_, Some(row)) => Ok(applied(name, by, &row)),
                (Some(current), None) => Err(bound_violation(&counter(&current), by)),
                (None, None) => Err(not_found(name)),
            }
        }
        Concurrency::Atomic => {
            let add = tx.prepare(ADD).await?;
            let row = tx
                .commit_with(tx.client().query_opt(&add, &[&name, &by]))
                .await?;
            tx.locked("counter", "none");
            match row {
                Some(row) => Ok(applied(name, by, &row)),
                None => Err(explain_refusal(tx, name, by, None).await),
            }
        }
        Concurrency::Optimistic { version } => {
            let add = tx.prepare(ADD_IF_VERSION).await?;
            let row = tx
                .commit_with(tx.client().query_opt(&add, &[&name, &by, &version]))
                .await?;
            tx.locked("counter", "optimistic");
            match row {
                Some(row) => Ok(applied(name, by, &row)),
                None => Err(explain_refusal(tx, name, by, Some(version)).await),
            }
        }
    }
}

/// The result of a guarded `UPDATE` after the row was locked: no row means the bounds refused.
fn finish_locked(current: &Counter, by: i64, row: Option<Row>) -> Result<Increment, ApiError> {
    match row {
        Some(row) => Ok(applied(&current.name, by, &row)),
        None => Err(bound_violation(current, by)),
    }
}

fn applied(name: &str, by: i64, row: &Row) -> Increment {
    let value: i64 = row.get("value");
    Increment {
        name: name.to_owned(),
        value,
        // Cannot overflow: `previous` was stored before the addition.
        previous: value.wrapping_sub(by),
        version: row.get("version"),
    }
}

/// Why an unlocked `UPDATE` touched no row. The transaction has ended; this reads the row as it
/// is now, which explains the refusal unless yet another writer changed it in between.
async fn explain_refusal(tx: &Tx, name: &str, by: i64, version: Option<i64>) -> ApiError {
    let current = match get(tx.client(), name).await {
        Ok(current) => current,
        Err(e) => return e,
    };
    match version {
        Some(expected) if current.version != expected => ApiError::VersionMismatch(format!(
            "counter '{name}' is at version {}, not {expected}",
            current.version
        )),
        _ if current.value.checked_add(by).is_none() => overflow(name),
        _ if !within(&current, current.value + by) => bound_violation(&current, by),
        // The bounds allow it now: a concurrent change refused it and was undone since.
        Some(expected) => ApiError::VersionMismatch(format!(
            "counter '{name}' changed concurrently after version {expected}"
        )),
        None => ApiError::BoundViolation(format!(
            "adding {by} to counter '{name}' would have left its bounds when it ran"
        )),
    }
}
