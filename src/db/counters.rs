//! The `counters` table: reads, `PUT` and `DELETE`; increments in [`increment`], the statements
//! in [`sql`].

use serde::Serialize;
use tokio_postgres::Row;

use super::locking::{RowLock, WaitPolicy};
use super::statements::Conn;
use super::tx::Tx;
use crate::error::ApiError;

pub(crate) mod increment;
pub(crate) mod sql;

pub use increment::{increment, Concurrency, Increment};
pub(crate) use sql::LOCK;
use sql::{DELETE, DELETE_IF_VERSION, INSERT, REPLACE, REPLACE_IF_VERSION, SELECT};

/// A counter as stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Counter {
    /// The counter's name, its primary key.
    pub name: String,
    /// The current value, always within `[min, max]`.
    pub value: i64,
    /// The lowest value allowed; `None` when there is no lower bound.
    pub min: Option<i64>,
    /// The highest value allowed; `None` when there is no upper bound.
    pub max: Option<i64>,
    /// The version of the last write (from the sequence `counter_versions`), sent as its `ETag`.
    pub version: i64,
}

/// The new state of a counter for `PUT`.
#[derive(Debug, Clone, Copy)]
pub struct CounterSpec {
    /// The value to store; it must lie within the new bounds.
    pub value: i64,
    /// The new lower bound; `None` removes it.
    pub min: Option<i64>,
    /// The new upper bound; `None` removes it.
    pub max: Option<i64>,
}

/// A row of [`sql::counter_columns!`].
pub(crate) fn counter(row: &Row) -> Counter {
    Counter {
        name: row.get("name"),
        value: row.get("value"),
        min: row.get("min"),
        max: row.get("max"),
        version: row.get("version"),
    }
}

/// Reads a counter without locking it.
pub async fn get(client: Conn<'_>, name: &str) -> Result<Counter, ApiError> {
    let stmt = client.prepare(SELECT).await?;
    client
        .query_opt(&stmt, &[&name])
        .await?
        .map(|r| counter(&r))
        .ok_or_else(|| not_found(name))
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
    let lock = super::citus::lock_first(lock);
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
        (row.get::<_, i64>("version"), false)
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
            (row.get::<_, i64>("version"), false)
        } else {
            create_or_replace(tx, name, &values).await?
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

/// Creates the counter, or replaces it when it exists after all (`lock=none`, or created
/// concurrently since it was found missing); returns its version and whether it was created.
async fn create_or_replace(
    tx: &Tx,
    name: &str,
    values: &[&(dyn tokio_postgres::types::ToSql + Sync); 4],
) -> Result<(i64, bool), ApiError> {
    let (insert, replace) = (tx.prepare(INSERT).await?, tx.prepare(REPLACE).await?);
    // Each miss means another transaction created, then deleted, the row in between.
    for _ in 0..3 {
        if let Some(row) = tx.client().query_opt(&insert, values).await? {
            return Ok((row.get("version"), true));
        }
        if let Some(row) = tx.client().query_opt(&replace, values).await? {
            return Ok((row.get("version"), false));
        }
    }
    Err(ApiError::Unavailable(format!(
        "counter '{name}' is being created and deleted concurrently; try again"
    )))
}

/// Deletes counter `name`.
pub async fn delete(
    tx: &Tx,
    name: &str,
    lock: Option<RowLock>,
    if_match: Option<i64>,
) -> Result<(), ApiError> {
    if let Some(lock) = lock {
        let _ = lock_row(tx, name, lock).await?;
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
    e.into()
        .on_lock(|| format!("counter '{name}' is locked by another transaction"))
}
