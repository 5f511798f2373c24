//! SQL for multi-counter transactions (`POST /transactions`) and the `transactions` table.
//!
//! Every named row is locked by one `SELECT … WHERE name = ANY($1) ORDER BY name FOR UPDATE`:
//! PostgreSQL locks rows as the sorted result is produced, so any two requests take their locks
//! in the same (ascending name) order and can never deadlock each other.
//!
//! - **atomic**: the ops are applied in memory on the locked values, every bound is checked, and
//!   only then one `UPDATE … FROM unnest(…)` writes every row, pipelined with the record of the
//!   transaction and the `COMMIT`. The first refused op refuses the whole request.
//! - **non-atomic**: each op runs under its own `SAVEPOINT`; the table's CHECK constraints
//!   enforce the bounds, and a refused op is undone with `ROLLBACK TO SAVEPOINT` and reported,
//!   while the others commit (Django's nested `atomic()`).

use std::collections::BTreeMap;

use serde::Serialize;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Json;

use super::counters::{self, Counter};
use super::locking::{LockStatements, RowLock, WaitPolicy};
use super::tx::Tx;
use crate::error::{ApiError, Problem};
use crate::lock_statements;

/// Most ops one transaction may carry.
pub const MAX_OPS: usize = 100;

/// One op of a transaction: add `by` to `counter`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Op {
    pub counter: String,
    pub by: i64,
}

/// What happened to one op.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct OpResult {
    pub counter: String,
    pub applied: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

/// A committed transaction, as answered and as stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Committed {
    pub id: i64,
    pub atomic: bool,
    pub results: Vec<OpResult>,
}

const LOCK: LockStatements = lock_statements!(
    "SELECT name, value, min, max, version FROM counters WHERE name = ANY($1) ORDER BY name"
);
const WRITE_ALL: &str = "UPDATE counters c
        SET value = v.value, version = c.version + 1, updated_at = now()
       FROM unnest($1::text[], $2::bigint[]) AS v(name, value)
      WHERE c.name = v.name";
const ADD_ONE: &str =
    "UPDATE counters SET value = value + $2, version = version + 1, updated_at = now()
     WHERE name = $1 RETURNING value";
const RECORD: &str =
    "INSERT INTO transactions (atomic, ops, results) VALUES ($1, $2, $3) RETURNING id";
const GET: &str =
    "SELECT id, atomic, ops, results, created_at::text FROM transactions WHERE id = $1";

/// Locks every counter named by `ops` in ascending name order. `lock: None` (`lock=none`) still
/// locks them, with a plain `FOR UPDATE`: a multi-row change needs its rows stable.
async fn lock_all(
    tx: &Tx,
    ops: &[Op],
    lock: RowLock,
) -> Result<BTreeMap<String, Counter>, ApiError> {
    let mut names: Vec<&str> = ops.iter().map(|op| op.counter.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let stmt = tx.prepare(lock.pick(&LOCK)).await?;
    let rows = tx
        .client()
        .query(&stmt, &[&names])
        .await
        .map_err(|e| counters::locked_error(e, names.join("', '").as_str()))?;
    tx.locked("transaction", lock.mode_name());
    Ok(rows
        .iter()
        .map(counters::counter)
        .map(|c| (c.name.clone(), c))
        .collect())
}

/// Why the row of `name` was not returned by the locking `SELECT`.
async fn missing(tx: &Tx, name: &str, lock: RowLock) -> ApiError {
    if lock.wait != WaitPolicy::SkipLocked {
        return counters::not_found(name);
    }
    match counters::get(tx.client(), name).await {
        Ok(_) => ApiError::RowSkipped(format!(
            "counter '{name}' is locked by another transaction and was skipped"
        )),
        Err(e) => e,
    }
}

/// Applies every op or none.
pub async fn run_atomic(tx: &Tx, ops: &[Op], lock: RowLock) -> Result<Committed, ApiError> {
    let mut current = lock_all(tx, ops, lock).await?;
    let mut results = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let Some(counter) = current.get_mut(&op.counter) else {
            return Err(name_op(i, missing(tx, &op.counter, lock).await));
        };
        let next = counter.plus(op.by).map_err(|e| name_op(i, e))?;
        results.push(applied(op, counter.value, next));
        counter.value = next;
    }
    let (names, values): (Vec<&str>, Vec<i64>) =
        current.values().map(|c| (c.name.as_str(), c.value)).unzip();
    let (write, record) = (tx.prepare(WRITE_ALL).await?, tx.prepare(RECORD).await?);
    // Serialized straight into the jsonb parameters, without building a `Value` tree first.
    let (ops_json, results_json) = (Json(ops), Json(&results));
    let client = tx.client();
    let (write_params, record_params) = (
        [&names as _, &values as _],
        [&true as _, &ops_json as _, &results_json as _],
    );
    let id = tx
        .commit_with(async {
            let (written, id) = futures_util::join!(
                client.execute(&write, &write_params),
                client.query_one(&record, &record_params),
            );
            written?;
            Ok(id?.get::<_, i64>(0))
        })
        .await?;
    Ok(Committed {
        id,
        atomic: true,
        results,
    })
}

/// Applies each op under its own savepoint; refused ops are reported, the rest commit.
pub async fn run_each(tx: &Tx, ops: &[Op], lock: RowLock) -> Result<Committed, ApiError> {
    let mut current = lock_all(tx, ops, lock).await?;
    let add = tx.prepare(ADD_ONE).await?;
    let client = tx.client();
    let mut results = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let Some(counter) = current.get_mut(&op.counter) else {
            results.push(refused(
                op,
                name_op(i, missing(tx, &op.counter, lock).await),
            ));
            continue;
        };
        let params = [&op.counter as _, &op.by as _];
        let (saved, row, released) = futures_util::join!(
            client.batch_execute("SAVEPOINT rowlock_op"),
            client.query_one(&add, &params),
            client.batch_execute("RELEASE SAVEPOINT rowlock_op"),
        );
        saved?;
        match row {
            Ok(row) => {
                released?;
                let next: i64 = row.get(0);
                results.push(applied(op, counter.value, next));
                counter.value = next;
            }
            Err(e) if is_refusal(&e) => {
                client
                    .batch_execute("ROLLBACK TO SAVEPOINT rowlock_op; RELEASE SAVEPOINT rowlock_op")
                    .await?;
                let why = counter.plus(op.by).err().unwrap_or_else(|| e.into());
                results.push(refused(op, name_op(i, why)));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let record = tx.prepare(RECORD).await?;
    let (ops_json, results_json) = (Json(ops), Json(&results));
    let row = tx
        .commit_with(client.query_one(&record, &[&false, &ops_json, &results_json]))
        .await?;
    Ok(Committed {
        id: row.get(0),
        atomic: false,
        results,
    })
}

/// A committed transaction as `GET /transactions/{id}` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StoredTransaction {
    pub id: i64,
    pub atomic: bool,
    pub ops: Vec<Op>,
    pub results: Vec<OpResult>,
    /// When it committed (database clock).
    pub created_at: String,
}

/// A committed transaction by id.
pub async fn get(
    client: &deadpool_postgres::ClientWrapper,
    id: i64,
) -> Result<StoredTransaction, ApiError> {
    let stmt = client.prepare_cached(GET).await?;
    let row = client
        .query_opt(&stmt, &[&id])
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("transaction {id} does not exist")))?;
    fn decode<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, ApiError> {
        Ok(serde_json::from_value(v).map_err(anyhow::Error::from)?)
    }
    Ok(StoredTransaction {
        id: row.get(0),
        atomic: row.get(1),
        ops: decode(row.get(2))?,
        results: decode(row.get(3))?,
        created_at: row.get(4),
    })
}

/// Errors an op can cause by itself: a bound (CHECK constraint) or an overflow.
fn is_refusal(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(&SqlState::CHECK_VIOLATION) | Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE)
    )
}

fn applied(op: &Op, previous: i64, value: i64) -> OpResult {
    OpResult {
        counter: op.counter.clone(),
        applied: true,
        value: Some(value),
        previous: Some(previous),
        error: None,
    }
}

fn refused(op: &Op, why: ApiError) -> OpResult {
    OpResult {
        counter: op.counter.clone(),
        applied: false,
        value: None,
        previous: None,
        error: Some(why.problem()),
    }
}

/// Prefixes the error's detail with the op it belongs to (ops are numbered from 1).
fn name_op(index: usize, e: ApiError) -> ApiError {
    let at = |detail: String| format!("op {}: {detail}", index + 1);
    match e {
        ApiError::NotFound(d) => ApiError::NotFound(at(d)),
        ApiError::BoundViolation(d) => ApiError::BoundViolation(at(d)),
        ApiError::Invalid(d) => ApiError::Invalid(at(d)),
        ApiError::RowSkipped(d) => ApiError::RowSkipped(at(d)),
        other => other,
    }
}
