//! A worker's or an operator's transition of one job (complete, fail, heartbeat, retry,
//! cancel): locked as asked, guarded by its state and token, and refused with the reason.

use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::not_found;
use super::sql::{CANCEL, COMPLETE, DELETE, FAIL, HEARTBEAT, LOCK, RETRY, STATE};
use crate::db::locking::{RowLock, WaitPolicy};
use crate::db::tx::Tx;
use crate::error::ApiError;

/// A transition of one job, as a worker or an operator asks for it.
#[derive(Debug, Clone)]
pub enum Transition {
    /// A worker finished the running job: it becomes `completed`.
    Complete {
        /// The token of the worker's claim; stale unless the job is still running under it.
        token: String,
    },
    /// A worker's attempt failed: the job is queued again after a backoff, or `dead` after
    /// its last allowed attempt.
    Fail {
        /// The token of the worker's claim.
        token: String,
        /// What went wrong, kept with the job's recent errors.
        error: Value,
    },
    /// A worker extends the lease of its running job.
    Heartbeat {
        /// The token of the worker's claim.
        token: String,
        /// The new lease, in seconds from now.
        lease_secs: f64,
    },
    /// An operator queues a `dead` job again, with fresh attempts.
    Retry,
    /// An operator deletes a `queued` job.
    Delete,
    /// An operator cancels a `queued` or `running` job; its token is stale from then on.
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
            (Some(found.map(|r| r.get::<_, String>("state"))), row?)
        }
    };
    if let Some(row) = row {
        return Ok(row.get("job"));
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
        Some(row) => Ok(Some(row.get("state"))),
        None if current_state(tx, id).await?.is_some() => Err(ApiError::RowSkipped(format!(
            "job {id} is locked by another transaction and was skipped"
        ))),
        None => Ok(None),
    }
}

async fn current_state(tx: &Tx, id: i64) -> Result<Option<String>, ApiError> {
    let stmt = tx.prepare(STATE).await?;
    let row: Option<Row> = tx.client().query_opt(&stmt, &[&id]).await?;
    Ok(row.map(|r| r.get("state")))
}

/// Why a guarded transition matched no row, given the job's state (`None`: no such job).
pub(super) fn refusal(id: i64, transition: &Transition, state: Option<String>) -> ApiError {
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
