//! SQL for the `jobs` table: enqueue (one job or a batch, with unique keys), read, the
//! transitions of one job — the token-checked ones a worker makes (complete, fail, heartbeat)
//! and the operator's (retry, delete, cancel) — and batch completion. Claiming, the statement
//! that hands jobs out, lives in [`claim`].
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

use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::locking::{LockStatements, RowLock, WaitPolicy};
use super::tx::Tx;
use crate::db::statements::Conn;
use crate::error::ApiError;
use crate::lock_statements;

/// A job to enqueue, already validated.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub payload: Value,
    pub priority: i32,
    /// RFC 3339 text, parsed by PostgreSQL; `None` is now.
    pub run_at: Option<String>,
    pub max_attempts: i32,
    /// While a job of the queue with this key is queued or running, no other is enqueued.
    pub unique_key: Option<String>,
}

/// What enqueueing one job did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub id: i64,
    /// A queued or running job of the queue already had the job's `unique_key`: `id` is it.
    pub duplicate: bool,
}

/// `jsonb_build_object` renders timestamps as ISO 8601 (RFC 3339) text, so Rust never parses one.
macro_rules! job_json {
    () => {
        "jsonb_build_object('id', id, 'queue', queue, 'state', state, 'payload', payload,
            'priority', priority, 'attempt', attempt, 'max_attempts', max_attempts,
            'run_at', run_at, 'lease_expires_at', lease_expires_at, 'errors', errors,
            'created_at', created_at, 'attempted_at', attempted_at, 'finished_at', finished_at)"
    };
}

/// Inserts a batch of jobs in one statement. Ids are drawn first, in the batch's order, so each
/// input row knows its id whether it was inserted or skipped as the duplicate of a queued or
/// running job with its `unique_key` (the partial unique index decides, under any concurrency).
/// The notification (on [`CHANNEL`](super::notify::CHANNEL)) goes out at `COMMIT`, so a woken
/// claim finds the jobs.
const INSERT: &str = "WITH input AS MATERIALIZED (
        SELECT nextval('jobs_id_seq') AS id, t.*
          FROM unnest($2::jsonb[], $3::int[], $4::int[], $5::text[], $6::text[])
               WITH ORDINALITY AS t(payload, priority, max_attempts, run_at, unique_key, ord)
    ), inserted AS (
        INSERT INTO jobs (id, queue, payload, priority, max_attempts, run_at, unique_key)
        OVERRIDING SYSTEM VALUE
        SELECT id, $1, payload, priority, max_attempts,
               coalesce(run_at::timestamptz, now()), unique_key
          FROM input ORDER BY ord
        ON CONFLICT (queue, unique_key)
           WHERE unique_key IS NOT NULL AND state IN ('queued', 'running') DO NOTHING
        RETURNING id
    )
    SELECT i.id, i.unique_key, ins.id IS NOT NULL, pg_notify('rowlock_jobs', $1)
      FROM input i LEFT JOIN inserted ins USING (id) ORDER BY i.ord";
/// The queued or running jobs holding these unique keys (those an insert was skipped for).
const ACTIVE_KEYS: &str = "SELECT unique_key, id FROM jobs
      WHERE queue = $1 AND unique_key = ANY($2) AND state IN ('queued', 'running')";
const SELECT: &str = concat!("SELECT ", job_json!(), " FROM jobs WHERE id = $1");
const LOCK: LockStatements = lock_statements!("SELECT state FROM jobs WHERE id = $1");
const STATE: &str = "SELECT state FROM jobs WHERE id = $1";

const COMPLETE: &str = "UPDATE jobs
        SET state = 'completed', token = NULL, lease_expires_at = NULL, finished_at = now()
      WHERE id = $1 AND state = 'running' AND token = $2
  RETURNING jsonb_build_object('id', id, 'state', state, 'attempt', attempt,
                               'finished_at', finished_at)";
/// Backoff with "equal jitter": half of an exponential ceiling (1 s, 2 s, 4 s … capped at 1 h)
/// plus a random part of the other half, so delays spread out yet always grow with the attempt.
/// The last allowed attempt makes the job `dead`. Waiting claims are told at `COMMIT`: they then
/// sleep until the new `run_at`.
const FAIL: &str = "WITH f AS (
     UPDATE jobs SET
        state = CASE WHEN attempt >= max_attempts THEN 'dead' ELSE 'queued' END,
        run_at = CASE WHEN attempt >= max_attempts THEN run_at ELSE now() + make_interval(
            secs => least(3600, 2 ^ least(attempt - 1, 20)) * (0.5 + random() / 2)) END,
        finished_at = CASE WHEN attempt >= max_attempts THEN now() END,
        errors = rowlock_recent_errors(errors,
            jsonb_build_object('attempt', attempt, 'error', $3::jsonb, 'at', now()), 20),
        token = NULL, lease_expires_at = NULL
      WHERE id = $1 AND state = 'running' AND token = $2
  RETURNING id, queue, state, attempt, run_at)
  SELECT jsonb_build_object('id', id, 'state', state, 'attempt', attempt,
             'run_at', CASE WHEN state = 'queued' THEN run_at END),
         pg_notify('rowlock_jobs', queue)
    FROM f";
const HEARTBEAT: &str = "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3)
      WHERE id = $1 AND state = 'running' AND token = $2
  RETURNING jsonb_build_object('id', id, 'state', state, 'attempt', attempt,
                               'lease_expires_at', lease_expires_at)";
/// A dead job gets `max_attempts` fresh attempts; its past errors are kept.
const RETRY: &str = "WITH r AS (
     UPDATE jobs SET state = 'queued', attempt = 0, run_at = now(), finished_at = NULL
      WHERE id = $1 AND state = 'dead'
  RETURNING id, queue, state, attempt, run_at)
  SELECT jsonb_build_object('id', id, 'state', state, 'attempt', attempt, 'run_at', run_at),
         pg_notify('rowlock_jobs', queue)
    FROM r";
const DELETE: &str = "DELETE FROM jobs WHERE id = $1 AND state = 'queued'
  RETURNING jsonb_build_object('id', id)";
/// A cancelled job's token is stale from then on; its queue's claims are told (a running job
/// that stops counting may make room under `max_running`).
const CANCEL: &str = "WITH c AS (
     UPDATE jobs SET state = 'cancelled', token = NULL, lease_expires_at = NULL,
                     finished_at = now()
      WHERE id = $1 AND state IN ('queued', 'running')
  RETURNING id, queue, state, attempt, finished_at)
  SELECT jsonb_build_object('id', id, 'state', state, 'attempt', attempt,
                            'finished_at', finished_at),
         pg_notify('rowlock_jobs', queue)
    FROM c";
/// Completes every `(id, token)` of `queue` whose token is current, in one statement; answers
/// every input in order with whether it was completed and, if not, the job's state (none: no
/// such job in this queue).
pub(crate) const COMPLETE_BATCH: &str = "WITH input AS MATERIALIZED (
        SELECT * FROM unnest($2::bigint[], $3::text[]) WITH ORDINALITY AS t(id, token, ord)
    ), done AS (
        UPDATE jobs j
           SET state = 'completed', token = NULL, lease_expires_at = NULL, finished_at = now()
          FROM input i
         -- Jobs are found by id only: the token alone says the job is running (only a running
         -- job has one, `jobs_running_has_lease`), and the queue is compared in a form no index
         -- serves. Otherwise a plan for a queue the statistics do not know yet (a new queue
         -- looks tiny) scans the queue's index, which holds every job and dead entry of the queue.
         WHERE j.id = ANY ($2::bigint[]) AND j.id = i.id AND (j.queue = $1) IS TRUE
           AND j.token = i.token
     RETURNING j.id
    )
    SELECT i.id, d.id IS NOT NULL,
           (SELECT CASE WHEN queue = $1 THEN state END FROM jobs WHERE jobs.id = i.id)
      FROM input i LEFT JOIN done d USING (id) ORDER BY i.ord";

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
            if row.get::<_, bool>(2) {
                results[index] = Some(Enqueued {
                    id: row.get(0),
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
            .map(|r| (r.get(0), r.get(1)))
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
    pub id: i64,
    pub status: u16,
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
            let (completed, state): (bool, Option<String>) = (row.get(1), row.get(2));
            let (status, code) = match (completed, state) {
                (true, _) => (200, None),
                (false, None) => (404, Some("not_found")),
                (false, Some(_)) => (409, Some("stale_token")),
            };
            ItemResult {
                id: row.get(0),
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
    row.map(|r| r.get(0)).ok_or_else(|| not_found(id))
}

/// A transition of one job, as a worker or an operator asks for it.
#[derive(Debug, Clone)]
pub enum Transition {
    Complete { token: String },
    Fail { token: String, error: Value },
    Heartbeat { token: String, lease_secs: f64 },
    Retry,
    Delete,
    Cancel,
}

/// Applies `transition` to job `id` under `lock` (`None`: no explicit lock, the guarded
/// statement alone); returns the reply body.
pub async fn transition(
    tx: &Tx,
    id: i64,
    transition: &Transition,
    lock: Option<RowLock>,
) -> Result<Value, ApiError> {
    let (sql, params): (&'static str, Vec<&(dyn ToSql + Sync)>) = match transition {
        Transition::Complete { token } => (COMPLETE, vec![&id, token]),
        Transition::Fail { token, error } => (FAIL, vec![&id, token, error]),
        Transition::Heartbeat { token, lease_secs } => (HEARTBEAT, vec![&id, token, lease_secs]),
        Transition::Retry => (RETRY, vec![&id]),
        Transition::Delete => (DELETE, vec![&id]),
        Transition::Cancel => (CANCEL, vec![&id]),
    };
    let stmt = tx.prepare(sql).await?;
    let client = tx.client();
    let (found, row) = match lock {
        None => (
            None,
            tx.commit_with(client.query_opt(&stmt, &params)).await?,
        ),
        Some(lock) if lock.wait == WaitPolicy::SkipLocked => {
            let found = lock_job(tx, id, lock).await?;
            (Some(found), client.query_opt(&stmt, &params).await?)
        }
        Some(lock) => {
            let select = tx.prepare(lock.pick(&LOCK)).await?;
            let id_param: [&(dyn ToSql + Sync); 1] = [&id];
            let (found, row) = futures_util::join!(
                client.query_opt(&select, &id_param),
                tx.commit_with(client.query_opt(&stmt, &params)),
            );
            // The SELECT's error is the cause; the guarded one's would be "transaction aborted".
            let found = found.map_err(|e| {
                ApiError::from(e).on_lock(|| format!("job {id} is locked by another transaction"))
            })?;
            (Some(found.map(|r| r.get::<_, String>(0))), row?)
        }
    };
    if let Some(row) = row {
        return Ok(row.get(0));
    }
    let state = match found {
        Some(state) => state,
        // No lock was taken: read the state as it is now to explain the refusal.
        None => current_state(tx, id).await?,
    };
    Err(refusal(id, transition, state))
}

/// Locks job `id` with SKIP LOCKED semantics: a locked job is 423 `row_skipped`.
async fn lock_job(tx: &Tx, id: i64, lock: RowLock) -> Result<Option<String>, ApiError> {
    let stmt = tx.prepare(lock.pick(&LOCK)).await?;
    let row = tx.client().query_opt(&stmt, &[&id]).await?;
    match row {
        Some(row) => Ok(Some(row.get(0))),
        None if current_state(tx, id).await?.is_some() => Err(ApiError::RowSkipped(format!(
            "job {id} is locked by another transaction and was skipped"
        ))),
        None => Ok(None),
    }
}

async fn current_state(tx: &Tx, id: i64) -> Result<Option<String>, ApiError> {
    let stmt = tx.prepare(STATE).await?;
    let row: Option<Row> = tx.client().query_opt(&stmt, &[&id]).await?;
    Ok(row.map(|r| r.get(0)))
}

/// Why a guarded transition matched no row, given the job's state (`None`: no such job).
fn refusal(id: i64, transition: &Transition, state: Option<String>) -> ApiError {
    let Some(state) = state else {
        return not_found(id);
    };
    match transition {
        Transition::Retry => ApiError::Invalid(format!(
            "job {id} is {state}: only a dead job can be retried"
        )),
        Transition::Delete => ApiError::Invalid(format!(
            "job {id} is {state}: only a queued job can be deleted"
        )),
        Transition::Cancel => ApiError::StaleToken(format!(
            "job {id} is {state}: only a queued or running job can be cancelled"
        )),
        _ => ApiError::StaleToken(format!(
            "job {id} is {state} and this token is not its current claim; its lease was lost"
        )),
    }
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("job {id} does not exist"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::notify::CHANNEL;

    #[test]
    fn every_notifying_statement_uses_the_listened_channel() {
        for sql in [
            INSERT,
            FAIL,
            RETRY,
            CANCEL,
            group::ACK,
            crate::db::queues::SET_PAUSED,
        ] {
            assert!(sql.contains(&format!("pg_notify('{CHANNEL}'")), "{sql}");
        }
    }
}
