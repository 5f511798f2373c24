//! SQL for the `counters` table.
//!
//! An increment under a row lock is `SELECT … FOR UPDATE` followed by a guarded `UPDATE`. For
//! `wait` and `nowait`:
//! - alone on its row, both are one statement ([`LOCK_AND_ADD`]) run as a transaction of its
//!   own, without `BEGIN` or `COMMIT` (see [`super::tx::TxOptions::one_statement`]);
//! - otherwise both statements and the `COMMIT` go out in one pipeline: once the `SELECT` holds
//!   the lock the `UPDATE` cannot block, and if the `SELECT` fails the transaction is aborted and
//!   the `COMMIT` becomes a rollback.
//!
//! `skip_locked` locks first and awaits the answer: a skipped row must not be updated, nor
//! waited for.

use serde::Serialize;
use tokio_postgres::Row;

use super::locking::{LockStatements, RowLock, WaitPolicy};
use super::tx::Tx;
use crate::error::ApiError;
use crate::lock_statements;

/// A counter as stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Counter {
    pub name: String,
    pub value: i64,
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub version: i64,
}

/// The outcome of an increment.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Increment {
    pub name: String,
    pub value: i64,
    pub previous: i64,
    pub version: i64,
}

/// The new state of a counter for `PUT`.
#[derive(Debug, Clone, Copy)]
pub struct CounterSpec {
    pub value: i64,
    pub min: Option<i64>,
    pub max: Option<i64>,
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

const LOCK: LockStatements =
    lock_statements!("SELECT name, value, min, max, version FROM counters WHERE name = $1");
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
           SET value = c.value + $2::bigint, version = c.version + 1, updated_at = now()
          FROM locked l
         WHERE c.name = l.name
           AND l.value + $2::bigint::numeric BETWEEN coalesce(l.min, -9223372036854775808)
                                         AND coalesce(l.max, 9223372036854775807)
        RETURNING c.value, c.version
    )
    SELECT l.name, l.value, l.min, l.max, l.version, w.value, w.version
      FROM locked l LEFT JOIN written w ON true"
);
const SELECT: &str = "SELECT name, value, min, max, version FROM counters WHERE name = $1";
/// The bound check is part of the `UPDATE`, so a violating change touches nothing.
const ADD: &str =
    "UPDATE counters SET value = value + $2, version = version + 1, updated_at = now()
     WHERE name = $1
       AND (min IS NULL OR value + $2 >= min) AND (max IS NULL OR value + $2 <= max)
     RETURNING value, version";
const ADD_IF_VERSION: &str =
    "UPDATE counters SET value = value + $2, version = version + 1, updated_at = now()
     WHERE name = $1 AND version = $3
       AND (min IS NULL OR value + $2 >= min) AND (max IS NULL OR value + $2 <= max)
     RETURNING value, version";
const INSERT: &str = "INSERT INTO counters (name, value, min, max) VALUES ($1, $2, $3, $4)
     ON CONFLICT (name) DO UPDATE
        SET value = EXCLUDED.value, min = EXCLUDED.min, max = EXCLUDED.max,
            version = counters.version + 1, updated_at = now()
     RETURNING version";
const REPLACE: &str =
    "UPDATE counters SET value = $2, min = $3, max = $4, version = version + 1, updated_at = now()
     WHERE name = $1 RETURNING version";
const REPLACE_IF_VERSION: &str =
    "UPDATE counters SET value = $2, min = $3, max = $4, version = version + 1, updated_at = now()
     WHERE name = $1 AND version = $5 RETURNING version";
const DELETE: &str = "DELETE FROM counters WHERE name = $1";
const DELETE_IF_VERSION: &str = "DELETE FROM counters WHERE name = $1 AND version = $2";

pub(crate) fn counter(row: &Row) -> Counter {
    Counter {
        name: row.get(0),
        value: row.get(1),
        min: row.get(2),
        max: row.get(3),
        version: row.get(4),
    }
}

/// Reads a counter without locking it.
pub async fn get(
    client: &deadpool_postgres::ClientWrapper,
    name: &str,
) -> Result<Counter, ApiError> {
    let stmt = client.prepare_cached(SELECT).await?;
    client
        .query_opt(&stmt, &[&name])
        .await?
        .map(|r| counter(&r))
        .ok_or_else(|| not_found(name))
}

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

/// Creates or replaces counter `name`; returns it and whether it was created.
pub async fn put(
    tx: &Tx,
    name: &str,
    spec: CounterSpec,
    lock: Option<RowLock>,
    if_match: Option<i64>,
) -> Result<(Counter, bool), ApiError> {
    let client = tx.client();
    let values: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&name, &spec.value, &spec.min, &spec.max];
    let (version, created) = if let Some(expected) = if_match {
        let stmt = tx.prepare(REPLACE_IF_VERSION).await?;
        let row = client
            .query_opt(&stmt, &[values.as_slice(), &[&expected]].concat())
            .await?;
        let row = row.ok_or_else(|| {
            ApiError::VersionMismatch(format!(
                "counter '{name}' does not exist at version {expected}"
            ))
        })?;
        (row.get::<_, i64>(0), false)
    } else {
        let locked_existing = match lock {
            Some(lock) => match lock_row(tx, name, lock).await {
                Ok(_) => true,
                Err(ApiError::NotFound(_)) => false,
                Err(e) => return Err(e),
            },
            None => false,
        };
        if locked_existing {
            let stmt = tx.prepare(REPLACE).await?;
            let row = client.query_one(&stmt, &values).await?;
            (row.get::<_, i64>(0), false)
        } else {
            // Also covers a row created concurrently since, or `lock=none`.
            let stmt = tx.prepare(INSERT).await?;
            let version: i64 = client.query_one(&stmt, &values).await?.get(0);
            // A fresh row starts at version 1; a replaced one is at least 2.
            (version, version == 1)
        }
    };
    let counter = Counter {
        name: name.to_owned(),
        value: spec.value,
        min: spec.min,
        max: spec.max,
        version,
    };
    Ok((counter, created))
}

/// Deletes counter `name`.
pub async fn delete(
    tx: &Tx,
    name: &str,
    lock: Option<RowLock>,
    if_match: Option<i64>,
) -> Result<(), ApiError> {
    if let Some(lock) = lock {
        lock_row(tx, name, lock).await?;
    }
    let deleted = match if_match {
        Some(version) => {
            let stmt = tx.prepare(DELETE_IF_VERSION).await?;
            tx.client().execute(&stmt, &[&name, &version]).await?
        }
        None => {
            let stmt = tx.prepare(DELETE).await?;
            tx.client().execute(&stmt, &[&name]).await?
        }
    };
    if deleted == 1 {
        return Ok(());
    }
    match if_match {
        Some(version) if exists(tx, name).await? => Err(ApiError::VersionMismatch(format!(
            "counter '{name}' is no longer at version {version}"
        ))),
        _ => Err(not_found(name)),
    }
}

/// Locks the row of `name` with `lock`, awaiting the answer.
async fn lock_row(tx: &Tx, name: &str, lock: RowLock) -> Result<Counter, ApiError> {
    let stmt = tx.prepare(lock.pick(&LOCK)).await?;
    let row = tx
        .client()
        .query_opt(&stmt, &[&name])
        .await
        .map_err(|e| locked_error(e, name))?;
    tx.locked("counter", lock.mode_name());
    match row {
        Some(row) => Ok(counter(&row)),
        None if lock.wait == WaitPolicy::SkipLocked && exists(tx, name).await? => {
            Err(ApiError::RowSkipped(format!(
                "counter '{name}' is locked by another transaction and was skipped"
            )))
        }
        None => Err(not_found(name)),
    }
}

async fn exists(tx: &Tx, name: &str) -> Result<bool, ApiError> {
    let stmt = tx.prepare(SELECT).await?;
    Ok(tx.client().query_opt(&stmt, &[&name]).await?.is_some())
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

impl Counter {
    /// The value after adding `by`, or why the change is refused (overflow, bounds).
    pub fn plus(&self, by: i64) -> Result<i64, ApiError> {
        match self.value.checked_add(by) {
            Some(next) if within(self, next) => Ok(next),
            _ => Err(bound_violation(self, by)),
        }
    }
}

fn within(c: &Counter, value: i64) -> bool {
    c.min.is_none_or(|min| value >= min) && c.max.is_none_or(|max| value <= max)
}

pub(crate) fn bound_violation(current: &Counter, by: i64) -> ApiError {
    let Some(target) = current.value.checked_add(by) else {
        return overflow(&current.name);
    };
    let (side, bound) = match (current.min, current.max) {
        (Some(min), _) if target < min => ("below its min", min),
        (_, Some(max)) if target > max => ("above its max", max),
        _ => ("outside its bounds", target),
    };
    ApiError::BoundViolation(format!(
        "adding {by} to counter '{}' ({}) would take it to {target}, {side} {bound}; nothing changed",
        current.name, current.value
    ))
}

fn overflow(name: &str) -> ApiError {
    ApiError::Invalid(format!(
        "the change would overflow counter '{name}' (signed 64-bit)"
    ))
}

pub(crate) fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("counter '{name}' does not exist"))
}

/// Names the counter(s) in "row is locked" errors.
pub(crate) fn locked_error(e: impl Into<ApiError>, name: &str) -> ApiError {
    match e.into() {
        ApiError::LockNotAvailable(_) => {
            ApiError::LockNotAvailable(format!("counter '{name}' is locked by another transaction"))
        }
        other => other,
    }
}
