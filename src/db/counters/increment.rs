//! Increments of a counter (`POST /counters/{name}/increment`).
//!
//! An increment under a row lock is `SELECT … FOR UPDATE` followed by a guarded `UPDATE`. For
//! `wait` and `nowait`:
//! - alone on its row, both are one statement ([`LOCK_AND_ADD`]) run as a transaction of its
//!   own, without `BEGIN` or `COMMIT` (see [`crate::db::tx::TxOptions::one_statement`]);
//! - otherwise both statements and the `COMMIT` go out in one pipeline: once the `SELECT` holds
//!   the lock the `UPDATE` cannot block, and if the `SELECT` fails the transaction is aborted and
//!   the `COMMIT` becomes a rollback.
//!
//! `skip_locked` locks first and awaits the answer: a skipped row must not be updated, nor
//! waited for.

use serde::Serialize;
use tokio_postgres::Row;

use super::{
    bound_violation, counter, get, lock_row, locked_error, not_found, overflow, within, Counter,
    LOCK,
};
use crate::db::idempotency::Reply;
use crate::db::locking::{LockStatements, RowLock, WaitPolicy};
use crate::db::tx::Tx;
use crate::error::ApiError;
use crate::lock_statements;

/// The outcome of an increment.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Increment {
    pub name: String,
    pub value: i64,
    pub previous: i64,
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
    Optimistic { version: i64 },
}

/// `wait` and `nowait` in one statement. `settings` applies the request's `application_name`
/// (`$3`) and `lock_timeout` (`$4`) before the row is locked; `written` adds `by` (`$2`) only
/// within the bounds, checked in `numeric` so the check itself cannot overflow. Answers the row as
/// locked, with the new value and version when it was written; no row when there is none.
const LOCK_AND_ADD: LockStatements = lock_statements!(
    "WITH settings AS MATERIALIZED (
        SELECT set_config('application_name', $3, true), set_config('lock_timeout', $4, true)
    ), locked AS MATERIALIZED (
        SELECT name, value, min, max, version FROM counters
         WHERE name = $1 AND EXISTS (SELECT FROM settings)",
    "), written AS (
        UPDATE counters c
           SET value = c.value + $2::bigint, version = nextval('counter_versions'), updated_at = now()
          FROM locked l
         WHERE c.name = l.name
           AND l.value + $2::bigint::numeric BETWEEN coalesce(l.min, -9223372036854775808)
                                         AND coalesce(l.max, 9223372036854775807)
        RETURNING c.value, c.version
    )
    SELECT l.name, l.value, l.min, l.max, l.version, w.value, w.version
      FROM locked l LEFT JOIN written w ON true"
);
/// The bound check is part of the `UPDATE`, so a violating change touches nothing.
const ADD: &str =
    "UPDATE counters SET value = value + $2, version = nextval('counter_versions'), updated_at = now()
     WHERE name = $1
       AND (min IS NULL OR value + $2 >= min) AND (max IS NULL OR value + $2 <= max)
     RETURNING value, version";
const ADD_IF_VERSION: &str =
    "UPDATE counters SET value = value + $2, version = nextval('counter_versions'), updated_at = now()
     WHERE name = $1 AND version = $3
       AND (min IS NULL OR value + $2 >= min) AND (max IS NULL OR value + $2 <= max)
     RETURNING value, version";
/// Adds `by` to counter `name` under `mode`.
pub async fn increment(
    tx: &Tx,
    name: &str,
    by: i64,
    mode: Concurrency,
) -> Result<Increment, ApiError> {
    match mode {
        Concurrency::Locked(lock) if lock.wait == WaitPolicy::SkipLocked => {
            let current = lock_row(tx, name, lock).await?;
            let add = tx.prepare(ADD).await?;
            let row = tx.client().query_opt(&add, &[&name, &by]).await?;
            finish_locked(&current, by, row)
        }
        Concurrency::Locked(lock) if tx.is_implicit() => {
            let stmt = tx.prepare(lock.pick(&LOCK_AND_ADD)).await?;
            let params = [
                &name as _,
                &by as _,
                &tx.application_name() as _,
                &tx.lock_timeout() as _,
            ];
            let row = tx
                .commit_with(tx.client().query_opt(&stmt, &params))
                .await
                .map_err(|e| locked_error(e, name))?;
            tx.locked("counter", lock.mode_name());
            let row = row.ok_or_else(|| not_found(name))?;
            let current = counter(&row);
            match row.get::<_, Option<i64>>(5) {
                Some(value) => Ok(Increment {
                    name: current.name,
                    value,
                    previous: current.value,
                    version: row.get(6),
                }),
                None => Err(current.plus(by).err().unwrap_or_else(|| {
                    ApiError::Internal(anyhow::anyhow!(
                        "the database refused adding {by} to {current:?} within its bounds"
                    ))
                })),
            }
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
            let current = current
                .map(|r| counter(&r))
                .ok_or_else(|| not_found(name))?;
            finish_locked(&current, by, row?)
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
    let value: i64 = row.get(0);
    Increment {
        name: name.to_owned(),
        value,
        // Cannot overflow: `previous` was stored before the addition.
        previous: value.wrapping_sub(by),
        version: row.get(1),
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
