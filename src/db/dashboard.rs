//! What the dashboard (`GET /ui`) shows that no other route lists: the busiest counters, every
//! queue, every held lease. One read per list, none of them locking anything.

use serde::Serialize;
use serde_json::Value;

use crate::db::counters::sql::BUSIEST;
use crate::db::leases::sql::HELD;
use crate::db::queues::sql::LIST;
use crate::db::statements::Conn;
use crate::error::ApiError;

/// A counter as the dashboard lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CounterRow {
    /// The counter's name.
    pub name: String,
    /// Its current value.
    pub value: i64,
    /// Its lower bound; `None` when it has none.
    pub min: Option<i64>,
    /// Its upper bound; `None` when it has none.
    pub max: Option<i64>,
    /// The version of its last write.
    pub version: i64,
    /// When it was last written, as PostgreSQL's JSON rendering of a `timestamptz`.
    #[schema(value_type = String)]
    pub updated_at: Value,
    /// Changes per second through this instance over the last ten seconds.
    pub changes_per_sec: f64,
}

/// A queue as the dashboard lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueRow {
    /// The queue's name.
    pub queue: String,
    /// Whether claims from the queue are paused (`false` for a queue never configured).
    pub paused: bool,
    /// At most this many of its jobs run at once; `None` when there is no cap.
    pub max_running: Option<i32>,
    /// Jobs by state.
    #[schema(value_type = Object)]
    pub counts: Value,
    /// Seconds the oldest queued job has waited since it was enqueued.
    pub oldest_queued_secs: Option<f64>,
    /// Jobs completed in the last minute.
    pub completed_last_minute: i64,
    /// Ids of the newest dead jobs (at most 5).
    pub dead_jobs: Vec<i64>,
}

/// A held lease as the dashboard lists it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LeaseRow {
    /// The lease's key.
    pub key: String,
    /// The owner it is granted to, as given at acquisition.
    pub owner: String,
    /// The fencing token of the current grant.
    pub token: i64,
    /// Milliseconds until the grant expires unless renewed.
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
    let stmt = client.prepare(BUSIEST).await?;
    let names: Vec<&str> = busiest.iter().map(|(n, _)| n.as_str()).collect();
    let rows = client.query(&stmt, &[&names, &search]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let name: String = r.get("name");
            let rate = busiest
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0.0, |(_, rate)| *rate);
            CounterRow {
                value: r.get("value"),
                min: r.get("min"),
                max: r.get("max"),
                version: r.get("version"),
                updated_at: r.get("updated_at"),
                changes_per_sec: rate,
                name,
            }
        })
        .collect())
}

/// Every queue.
pub async fn queues(client: Conn<'_>) -> Result<Vec<QueueRow>, ApiError> {
    let stmt = client.prepare(LIST).await?;
    let rows = client.query(&stmt, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| QueueRow {
            queue: r.get("queue"),
            paused: r.get("paused"),
            max_running: r.get("max_running"),
            counts: r.get("counts"),
            oldest_queued_secs: r.get("oldest_queued_secs"),
            completed_last_minute: r.get("completed_last_minute"),
            dead_jobs: r.get("dead_jobs"),
        })
        .collect())
}

/// Every held lease, with its waiters in this instance (`waiting(key)`).
pub async fn leases(
    client: Conn<'_>,
    waiting: impl Fn(&str) -> usize,
) -> Result<Vec<LeaseRow>, ApiError> {
    let stmt = client.prepare(HELD).await?;
    let rows = client.query(&stmt, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let key: String = r.get("key");
            LeaseRow {
                waiting: waiting(&key),
                owner: r.get("owner"),
                token: r.get("token"),
                expires_in_ms: r.get("expires_in_ms"),
                key,
            }
        })
        .collect())
}
