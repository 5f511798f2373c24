//! SQL for the `queues` table (a queue's pause state) and the per-queue view of `jobs`.
//!
//! A queue exists implicitly once a job names it; a row in `queues` only records a pause, so
//! enqueueing and claiming never lock anything here.

use serde_json::Value;

use super::tx::Tx;
use crate::db::statements::Conn;
use crate::error::ApiError;

/// Pausing or resuming wakes the queue's waiting claims (resume lets them claim again; pause
/// just sends them back to sleep until their deadline).
pub(crate) const SET_PAUSED: &str = "WITH q AS (
     INSERT INTO queues (name, paused) VALUES ($1, $2)
     ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now()
     RETURNING name, paused)
  SELECT jsonb_build_object('queue', name, 'paused', paused), pg_notify('rowlock_jobs', name)
    FROM q";

/// Sets (or, with NULL, lifts) the queue's limit on running jobs. Waiting claims are told: a
/// higher limit may let them claim.
pub(crate) const SET_MAX_RUNNING: &str = "WITH q AS (
     INSERT INTO queues (name, max_running) VALUES ($1, $2)
     ON CONFLICT (name) DO UPDATE SET max_running = EXCLUDED.max_running, updated_at = now()
     RETURNING name, paused, max_running)
  SELECT jsonb_build_object('queue', name, 'paused', paused, 'max_running', max_running),
         pg_notify('rowlock_jobs', name)
    FROM q";

/// Counts come from `jobs_queue_state`; the age is of the oldest job still waiting to run.
const STATS: &str = "SELECT jsonb_build_object(
     'queue', $1::text,
     'paused', COALESCE((SELECT paused FROM queues WHERE name = $1), false),
     'max_running', (SELECT max_running FROM queues WHERE name = $1),
     'counts', jsonb_build_object(
         'queued', count(*) FILTER (WHERE state = 'queued'),
         'running', count(*) FILTER (WHERE state = 'running'),
         'completed', count(*) FILTER (WHERE state = 'completed'),
         'dead', count(*) FILTER (WHERE state = 'dead'),
         'cancelled', count(*) FILTER (WHERE state = 'cancelled')),
     'available', count(*) FILTER (WHERE state = 'queued' AND run_at <= now()),
     'oldest_queued_age_ms', (extract(epoch FROM now() - min(created_at)
                              FILTER (WHERE state = 'queued')) * 1000)::bigint)
   FROM jobs WHERE queue = $1";

/// Pauses (`true`) or resumes (`false`) `queue`; returns `{"queue", "paused"}`.
pub async fn set_paused(tx: &Tx, queue: &str, paused: bool) -> Result<Value, ApiError> {
    let stmt = tx.prepare(SET_PAUSED).await?;
    let row = tx
        .commit_with(tx.client().query_one(&stmt, &[&queue, &paused]))
        .await?;
    Ok(row.get(0))
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
    Ok(row.get(0))
}

/// Counts by state, whether the queue is paused, and the age of its oldest queued job.
pub async fn stats(client: Conn<'_>, queue: &str) -> Result<Value, ApiError> {
    let stmt = client.prepare(STATS).await?;
    Ok(client.query_one(&stmt, &[&queue]).await?.get(0))
}
