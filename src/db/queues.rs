//! A queue's settings (the `queues` table) and its view of `jobs`; the statements are [`sql`]'s.
//!
//! A queue exists implicitly once a job names it; a row in `queues` only records a pause, so
//! enqueueing and claiming never lock anything here.

use serde_json::Value;

use super::tx::Tx;
use crate::db::statements::Conn;
use crate::error::ApiError;

pub(crate) mod sql;

use sql::{SET_MAX_RUNNING, SET_PAUSED, STATS};

/// Pauses (`true`) or resumes (`false`) `queue`; returns `{"queue", "paused"}`.
pub async fn set_paused(tx: &Tx, queue: &str, paused: bool) -> Result<Value, ApiError> {
    let stmt = tx.prepare(SET_PAUSED).await?;
    let row = tx
        .commit_with(tx.client().query_one(&stmt, &[&queue, &paused]))
        .await?;
    Ok(row.get("settings"))
}

/// Sets the queue's `max_running` (`None`: no limit); returns the queue's settings.
pub async fn set_max_running(
    tx: &Tx,
    queue: &str,
    max_running: Option<i32>,
) -> Result<Value, ApiError> {
    let stmt = tx.prepare(SET_MAX_RUNNING).await?;
    let row = tx
        .commit_with(tx.client().query_one(&stmt, &[&queue, &max_running]))
        .await?;
    Ok(row.get("settings"))
}

/// Counts by state, whether the queue is paused, and the age of its oldest queued job.
pub async fn stats(client: Conn<'_>, queue: &str) -> Result<Value, ApiError> {
    let stmt = client.prepare(STATS).await?;
    Ok(client.query_one(&stmt, &[&queue]).await?.get("stats"))
}
