//! Multi-counter transactions (`POST /transactions`) and the `transactions` table; the
//! statements are [`sql`]'s, the non-atomic path [`each`]'s.
//!
//! Every named row is locked by one `SELECT … WHERE name = ANY($1) ORDER BY name FOR UPDATE`:
//! PostgreSQL locks rows as the sorted result is produced, so any two requests take their locks
//! in the same (ascending name) order and can never deadlock each other.
//!
//! - **atomic**: one statement ([`APPLY_ALL`]) locks the rows, replays the ops on the locked
//!   values in `numeric` (so nothing overflows on the way), and only if every op stays within
//!   its counter's bounds writes every row and records the transaction; with nothing else in its
//!   transaction it is sent without `BEGIN` and `COMMIT`, so a transfer costs one round trip.
//!   rowlock then replays the ops on the same locked values to answer each op's `previous` and
//!   `value`, or to name the refused op, and checks that it reached the database's verdict.
//! - **non-atomic**: each op runs under its own `SAVEPOINT`; the table's CHECK constraints
//!   enforce the bounds, and a refused op is undone with `ROLLBACK TO SAVEPOINT` and reported,
//!   while the others commit (Django's nested `atomic()`).

use std::collections::BTreeMap;

use serde::Serialize;
use tokio_postgres::types::Json;

use super::citus;
use super::counters::sql::{LOCK_ALL, WRITE_ALL};
use super::counters::{self, Counter};
use super::idempotency::Reply;
use super::locking::{RowLock, WaitPolicy};
use super::statements::Conn;
use super::tx::Tx;
use crate::error::{ApiError, Problem};

mod each;
pub(crate) mod sql;

pub use each::run_each;

pub(crate) use sql::APPLY_ALL;
use sql::{GET, RECORD};

/// Most ops one transaction may carry.
pub const MAX_OPS: usize = 100;

/// One op of a transaction: add `by` to `counter`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Op {
    /// The counter's name.
    pub counter: String,
    /// What is added to it (negative to decrement).
    pub by: i64,
}

/// What happened to one op.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct OpResult {
    /// The op's counter.
    pub counter: String,
    /// Whether the op was applied (always, in an atomic transaction that committed).
    pub applied: bool,
    /// The counter's value after the op; `None` when the op was not applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
    /// The counter's value before the op; `None` when the op was not applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<i64>,
    /// Why the op was refused (non-atomic transactions only); `None` when it was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

/// A committed transaction, as answered and as stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Committed {
    /// The transaction's id in the `transactions` table.
    pub id: i64,
    /// Whether it was all-or-none (`atomic: true`) or op by op.
    pub atomic: bool,
    /// One result per op, in the order of the ops.
    pub results: Vec<OpResult>,
}

impl Committed {
    /// The answer to `POST /transactions` (and what an idempotency key stores).
    pub fn reply(&self) -> Result<Reply, ApiError> {
        Reply::json(200, self)
    }
}

/// The distinct counter names of `ops`, sorted: the order their rows are locked in.
fn lock_order(ops: &[Op]) -> Vec<&str> {
    let mut names: Vec<&str> = ops.iter().map(|op| op.counter.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names
}

fn by_name(rows: &[tokio_postgres::Row]) -> BTreeMap<String, Counter> {
    rows.iter()
        .map(counters::counter)
        .map(|c| (c.name.clone(), c))
        .collect()
}

/// Locks every counter named by `ops` in ascending name order. `lock: None` (`lock=none`) still
/// locks them, with a plain `FOR UPDATE`: a multi-row change needs its rows stable.
async fn lock_all(
    tx: &Tx,
    ops: &[Op],
    lock: RowLock,
) -> Result<BTreeMap<String, Counter>, ApiError> {
    let names = lock_order(ops);
    let rows = match citus::on() {
        // One single-row statement per counter, in the same order.
        true => {
            let stmt = tx.prepare(lock.pick(&counters::LOCK)).await?;
            citus::lock_each(tx.client(), &stmt, &names).await
        }
        false => {
            let stmt = tx.prepare(lock.pick(&LOCK_ALL)).await?;
            tx.client().query(&stmt, &[&names]).await
        }
    };
    let rows = rows.map_err(|e| counters::locked_error(e, &names.join("', '")))?;
    tx.locked("transaction", lock.mode_name());
    Ok(by_name(&rows))
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

/// Applies every op or none, in one statement pipelined with `COMMIT`.
pub async fn run_atomic(tx: &Tx, ops: &[Op], lock: RowLock) -> Result<Committed, ApiError> {
    if citus::on() {
        return run_atomic_in_steps(tx, ops, lock).await;
    }
    let names = lock_order(ops);
    let (op_names, bys): (Vec<&str>, Vec<i64>) =
        ops.iter().map(|op| (op.counter.as_str(), op.by)).unzip();
    let stmt = tx.prepare(lock.pick(&APPLY_ALL)).await?;
    // Serialized straight into the jsonb parameter, without building a `Value` tree first.
    let ops_json = Json(ops);
    let params = [&names as _, &op_names as _, &bys as _, &ops_json as _];
    let rows = tx
        .commit_with(tx.client().query(&stmt, &params))
        .await
        .map_err(|e| counters::locked_error(e, &names.join("', '")))?;
    tx.locked("transaction", lock.mode_name());
    let recorded: Option<i64> = rows.first().and_then(|row| row.get("recorded"));
    match (replay(ops, by_name(&rows)), recorded) {
        (Ok(results), Some(id)) => Ok(Committed {
            id,
            atomic: true,
            results,
        }),
        (Err(Refused::Missing(i)), None) => {
            Err(name_op(i, missing(tx, &ops[i].counter, lock).await))
        }
        (Err(Refused::Bound(i, why)), None) => Err(name_op(i, why)),
        (replayed, recorded) => Err(ApiError::Internal(anyhow::anyhow!(
            "rowlock and the database disagree on transaction {recorded:?}: {replayed:?}"
        ))),
    }
}

/// Applies every op or none on Citus, where one statement cannot lock several rows: the rows are
/// locked one by one in name order, the ops replayed on the locked values here, and only when
/// every op is within its bounds are the rows written and the transaction recorded, with
/// `COMMIT` in the same round trip.
async fn run_atomic_in_steps(tx: &Tx, ops: &[Op], lock: RowLock) -> Result<Committed, ApiError> {
    let current = lock_all(tx, ops, lock).await?;
    let results = match replay(ops, current) {
        Ok(results) => results,
        Err(Refused::Missing(i)) => {
            return Err(name_op(i, missing(tx, &ops[i].counter, lock).await))
        }
        Err(Refused::Bound(i, why)) => return Err(name_op(i, why)),
    };
    // Each counter's value after its last op.
    let last: BTreeMap<&str, i64> = results
        .iter()
        .filter_map(|r| Some((r.counter.as_str(), r.value?)))
        .collect();
    let (names, values): (Vec<&str>, Vec<i64>) = last.into_iter().unzip();
    let (write, record) = (tx.prepare(WRITE_ALL).await?, tx.prepare(RECORD).await?);
    let client = tx.client();
    let (ops_json, results_json) = (Json(ops), Json(&results));
    let record_params = [&true as _, &ops_json as _, &results_json as _];
    let write_params = [&names as _, &values as _];
    let (written, row) = futures_util::join!(
        client.execute(&write, &write_params),
        tx.commit_with(client.query_one(&record, &record_params)),
    );
    let _ = written?;
    Ok(Committed {
        id: row?.get("id"),
        atomic: true,
        results,
    })
}

/// Why an atomic transaction was refused: the index of the op, and what was wrong with it.
#[derive(Debug)]
pub(crate) enum Refused {
    Missing(usize),
    Bound(usize, ApiError),
}

/// Applies `ops` one after another to the locked values: each op's result, or the first refusal.
pub(crate) fn replay(
    ops: &[Op],
    mut current: BTreeMap<String, Counter>,
) -> Result<Vec<OpResult>, Refused> {
    let mut results = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let counter = current.get_mut(&op.counter).ok_or(Refused::Missing(i))?;
        let next = counter.plus(op.by).map_err(|e| Refused::Bound(i, e))?;
        results.push(applied(op, counter.value, next));
        counter.value = next;
    }
    Ok(results)
}

/// A committed transaction as `GET /transactions/{id}` shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StoredTransaction {
    /// The transaction's id.
    pub id: i64,
    /// Whether it was all-or-none or op by op.
    pub atomic: bool,
    /// The ops as the request gave them.
    pub ops: Vec<Op>,
    /// One result per op, as answered when it committed.
    pub results: Vec<OpResult>,
    /// When it committed (database clock).
    pub created_at: String,
}

/// A committed transaction by id.
pub async fn get(client: Conn<'_>, id: i64) -> Result<StoredTransaction, ApiError> {
    let stmt = client.prepare(GET).await?;
    let row = client
        .query_opt(&stmt, &[&id])
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("transaction {id} does not exist")))?;
    fn decode<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, ApiError> {
        Ok(serde_json::from_value(v).map_err(anyhow::Error::from)?)
    }
    Ok(StoredTransaction {
        id: row.get("id"),
        atomic: row.get("atomic"),
        ops: decode(row.get("ops"))?,
        results: decode(row.get("results"))?,
        created_at: row.get("created_at"),
    })
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
pub(crate) fn name_op(index: usize, e: ApiError) -> ApiError {
    let at = |detail: String| format!("op {}: {detail}", index + 1);
    match e {
        ApiError::NotFound(d) => ApiError::NotFound(at(d)),
        ApiError::BoundViolation(d) => ApiError::BoundViolation(at(d)),
        ApiError::Invalid(d) => ApiError::Invalid(at(d)),
        ApiError::RowSkipped(d) => ApiError::RowSkipped(at(d)),
        other => other,
    }
}
