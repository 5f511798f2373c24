//! What the dashboard (`GET /ui`) shows that no other route lists: the busiest counters, every
//! queue, every held lease. One read per list, none of them locking anything.

use serde::Serialize;
use serde_json::Value;

use crate::db::statements::Conn;
use crate::error::ApiError;

/// The counters changed most in the last seconds (`$1`, busiest first), then the most recently
/// changed ones; with a search text (`$2`, empty: none), only names containing it.
const COUNTERS: &str = "SELECT name, value, min, max, version, to_jsonb(updated_at)
      FROM counters
     WHERE strpos(name, $2) > 0
     ORDER BY array_position($1::text[], name) NULLS LAST, updated_at DESC
     LIMIT 20";

/// Every queue (that has jobs or settings): counts by state, how long its oldest queued job has
/// waited, jobs completed in the last minute, and its newest dead jobs.
const QUEUES: &str = "WITH counts AS (
        SELECT queue, state, count(*) AS n FROM jobs GROUP BY queue, state
    ), names AS (
        SELECT queue FROM counts UNION SELECT name FROM queues
    )
    SELECT n.queue, coalesce(q.paused, false), q.max_running,
           coalesce((SELECT jsonb_object_agg(state, c.n) FROM counts c WHERE c.queue = n.queue),
                    '{}'::jsonb),
           (SELECT extract(epoch FROM now() - min(created_at))::float8 FROM jobs
             WHERE queue = n.queue AND state = 'queued'),
           (SELECT count(*) FROM jobs WHERE queue = n.queue AND state = 'completed'
               AND finished_at > now() - interval '1 minute'),
           ARRAY(SELECT id FROM jobs WHERE queue = n.queue AND state = 'dead'
                  ORDER BY id DESC LIMIT 5)
      FROM names n LEFT JOIN queues q ON q.name = n.queue
     ORDER BY n.queue
     LIMIT 100";

/// Held leases: owner, fencing token and time left.
const LEASES: &str = "SELECT key, owner, token,
           (extract(epoch FROM expires_at - now()) * 1000)::float8
      FROM locks WHERE owner IS NOT NULL AND expires_at > now()
     ORDER BY key LIMIT 100";

/// A counter as the dashboard lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CounterRow {
    pub name: String,
    pub value: i64,
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub version: i64,
    #[schema(value_type = String)]
    pub updated_at: Value,
    /// Changes per second through this instance over the last ten seconds.
    pub changes_per_sec: f64,
}

/// A queue as the dashboard lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueRow {
    pub queue: String,
    pub paused: bool,
    pub max_running: Option<i32>,
    /// Jobs by state.
    #[schema(value_type = Object)]
    pub counts: Value,
    /// Seconds the oldest queued job has waited since it was enqueued.
    pub oldest_queued_secs: Option<f64>,
    pub completed_last_minute: i64,
    /// Ids of the newest dead jobs (at most 5).
    pub dead_jobs: Vec<i64>,
}

/// A held lease as the dashboard lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LeaseRow {
    pub key: String,
    pub owner: String,
    pub token: i64,
    pub expires_in_ms: f64,
    /// Acquisitions waiting for it in this instance.
    pub waiting: usize,
}

/// The busiest counters (`busiest`: names and their rates, busiest first), narrowed to names
/// containing `search` when it is not empty.
pub async fn counters(
    client: Conn<'_>,
    busiest: &[(String, f64)],
    search: &str,
) -> Result<Vec<CounterRow>, ApiError> {
    let stmt = client.prepare(COUNTERS).await?;
    let names: Vec<&str> = busiest.iter().map(|(n, _)| n.as_str()).collect();
    let rows = client.query(&stmt, &[&names, &search]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            let rate = busiest
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0.0, |(_, rate)| *rate);
            CounterRow {
                value: r.get(1),
                min: r.get(2),
                max: r.get(3),
                version: r.get(4),
                updated_at: r.get(5),
                changes_per_sec: rate,
                name,
            }
        })
        .collect())
}

/// Every queue.
pub async fn queues(client: Conn<'_>) -> Result<Vec<QueueRow>, ApiError> {
    let stmt = client.prepare(QUEUES).await?;
    let rows = client.query(&stmt, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| QueueRow {
            queue: r.get(0),
            paused: r.get(1),
            max_running: r.get(2),
            counts: r.get(3),
            oldest_queued_secs: r.get(4),
            completed_last_minute: r.get(5),
            dead_jobs: r.get(6),
        })
        .collect())
}

/// Every held lease, with its waiters in this instance (`waiting(key)`).
pub async fn leases(
    client: Conn<'_>,
    waiting: impl Fn(&str) -> usize,
) -> Result<Vec<LeaseRow>, ApiError> {
    let stmt = client.prepare(LEASES).await?;
    let rows = client.query(&stmt, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let key: String = r.get(0);
            LeaseRow {
                waiting: waiting(&key),
                owner: r.get(1),
                token: r.get(2),
                expires_in_ms: r.get(3),
                key,
            }
        })
        .collect())
}
