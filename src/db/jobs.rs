//! The `jobs` table (its statements are [`sql`]'s): enqueue (one job or a batch, with unique
//! keys), read, the transitions of one job — the token-checked ones a worker makes (complete,
//! fail, heartbeat) and the operator's (retry, delete, cancel) — and batch completion. Claiming
//! lives in [`claim`].
//!
//! Every transition is one guarded statement, `UPDATE … WHERE id = $1 AND state = … [AND token =
//! $2]`, behind the row lock the request asked for (as for counters: the locking `SELECT` and the
//! guarded statement go out in one pipeline with the `COMMIT`). The guard, not the lock, decides:
//! a token that is no longer the current one matches no row, and the refusal is explained from the
//! row as the lock found it — missing is 404, anything else 409 `stale_token` (or 422 for an
//! operator asking for a transition the job's state does not allow).

pub mod claim;
pub mod group;
mod plan;
pub(crate) mod sql;
mod transition;

use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::tx::Tx;
use crate::db::statements::Conn;
use crate::error::ApiError;
use sql::{ACTIVE_KEYS, COMPLETE_BATCH, INSERT, SELECT};
pub use transition::{transition, Transition};

/// A job to enqueue, already validated.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The client's JSON, handed back as is to the worker that claims the job.
    pub payload: Value,
    /// Claims take the highest priority first, then the oldest.
    pub priority: i32,
    /// RFC 3339 text, parsed by PostgreSQL; `None` is now.
    pub run_at: Option<String>,
    /// After this many failed attempts the job is `dead` instead of queued again.
    pub max_attempts: i32,
    /// While a job of the queue with this key is queued or running, no other is enqueued.
    pub unique_key: Option<String>,
}

/// What enqueueing one job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The job's id: the new job's, or the queued or running one's for a duplicate.
    pub id: i64,
    /// A queued or running job of the queue already had the job's `unique_key`: `id` is it.
    pub duplicate: bool,
}

/// Inserts `jobs` into `queue`, all or none (one statement); answers each job's id, in order,
/// and whether it was a duplicate of a queued or running job with its `unique_key`.
pub async fn enqueue(tx: &Tx, queue: &str, jobs: &[NewJob]) -> Result<Vec<Enqueued>, ApiError> {
    let stmt = tx.prepare(INSERT).await?;
    let keyed = jobs.iter().any(|j| j.unique_key.is_some());
    let mut results: Vec<Option<Enqueued>> = vec![None; jobs.len()];
    let mut pending: Vec<usize> = (0..jobs.len()).collect();
    // A skipped job's holder may finish between the insert and the look-up below, freeing the
    // key: such jobs are inserted again (rarely more than once).
    for _ in 0..3 {
        let batch: Vec<&NewJob> = pending.iter().map(|&i| &jobs[i]).collect();
        let payloads: Vec<&Value> = batch.iter().map(|j| &j.payload).collect();
        let priorities: Vec<i32> = batch.iter().map(|j| j.priority).collect();
        let attempts: Vec<i32> = batch.iter().map(|j| j.max_attempts).collect();
        let run_ats: Vec<Option<&str>> = batch.iter().map(|j| j.run_at.as_deref()).collect();
        let keys: Vec<Option<&str>> = batch.iter().map(|j| j.unique_key.as_deref()).collect();
        let params: [&(dyn ToSql + Sync); 6] =
            [&queue, &payloads, &priorities, &attempts, &run_ats, &keys];
        let insert = tx.client().query(&stmt, &params);
        // Without unique keys nothing can be skipped: the insert goes out with the COMMIT.
        let rows = match keyed {
            false => tx.commit_with(insert).await,
            true => insert.await.map_err(ApiError::from),
        }?;
        let mut skipped = Vec::new();
        for (&index, row) in pending.iter().zip(&rows) {
            if row.get::<_, bool>("inserted") {
                results[index] = Some(Enqueued {
                    id: row.get("id"),
                    duplicate: false,
                });
            } else {
                skipped.push(index);
            }
        }
        if skipped.is_empty() {
            break;
        }
        let keys: Vec<&str> = skipped
            .iter()
            .filter_map(|&i| jobs[i].unique_key.as_deref())
            .collect();
        let active = tx.prepare(ACTIVE_KEYS).await?;
        let holders: std::collections::HashMap<String, i64> = tx
            .client()
            .query(&active, &[&queue, &keys])
            .await?
            .iter()
            .map(|r| (r.get("unique_key"), r.get("id")))
            .collect();
        pending.clear();
        for index in skipped {
            match jobs[index].unique_key.as_ref().and_then(|k| holders.get(k)) {
                Some(&id) => {
                    results[index] = Some(Enqueued {
                        id,
                        duplicate: true,
                    })
                }
                None => pending.push(index),
            }
        }
        if pending.is_empty() {
            break;
        }
    }
    results
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or(ApiError::SerializationFailure)
}

/// The answer for one item of a batch completion.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ItemResult {
    /// The job the item named.
    pub id: i64,
    /// 200 completed, 409 stale token, 404 no such job in the queue.
    pub status: u16,
    /// The error code (`stale_token`, `not_found`); `None` for a completed job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
}

/// Completes each `(id, token)` of `queue` whose token is current (one statement, with the
/// `COMMIT` unless `then_commit` is false because more follows in the transaction); each item
/// is answered on its own: 200, 409 `stale_token`, or 404 (no such job in this queue).
pub async fn complete_batch(
    tx: &Tx,
    queue: &str,
    items: &[(i64, String)],
    then_commit: bool,
) -> Result<Vec<ItemResult>, ApiError> {
    let stmt = tx.prepare(COMPLETE_BATCH).await?;
    let ids: Vec<i64> = items.iter().map(|(id, _)| *id).collect();
    let tokens: Vec<&str> = items.iter().map(|(_, t)| t.as_str()).collect();
    let params: [&(dyn ToSql + Sync); 3] = [&queue, &ids, &tokens];
    let query = tx.client().query(&stmt, &params);
    let rows = match then_commit {
        true => tx.commit_with(query).await?,
        false => query.await?,
    };
    Ok(item_results(&rows))
}

/// The per-item answers of [`COMPLETE_BATCH`]'s rows.
pub(crate) fn item_results(rows: &[Row]) -> Vec<ItemResult> {
    rows.iter()
        .map(|row| {
            let (completed, state): (bool, Option<String>) =
                (row.get("completed"), row.get("state"));
            let (status, code) = match (completed, state) {
                (true, _) => (200, None),
                (false, None) => (404, Some("not_found")),
                (false, Some(_)) => (409, Some("stale_token")),
            };
            ItemResult {
                id: row.get("id"),
                status,
                code,
            }
        })
        .collect()
}

/// The whole job as JSON (everything but its token), without locking it.
pub async fn get(client: Conn<'_>, id: i64) -> Result<Value, ApiError> {
    let stmt = client.prepare(SELECT).await?;
    let row = client.query_opt(&stmt, &[&id]).await?;
    row.map(|r| r.get("job")).ok_or_else(|| not_found(id))
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("job {id} does not exist"))
}
