//! The shapes of the job and queue routes' bodies, for `/openapi.json` only: the handlers read
//! bodies through [`super::input`] (which reports out-of-range numbers as 422, not 400) and build
//! replies in SQL, so these types describe the JSON rather than produce it.

#![allow(dead_code)] // read by utoipa's derive, never constructed

use serde_json::Value;
use utoipa::ToSchema;

/// `POST /queues/{queue}/jobs`.
#[derive(ToSchema)]
pub struct EnqueueRequest {
    /// Any JSON, at most 256 KiB.
    payload: Value,
    /// Higher is claimed first (default 0).
    priority: Option<i32>,
    /// Not claimable before this RFC 3339 time (default now).
    #[schema(format = DateTime)]
    run_at: Option<String>,
    /// Attempts before the job is `dead` (1-1000, default 5).
    #[schema(minimum = 1, maximum = 1000)]
    max_attempts: Option<i32>,
}

/// A job was enqueued.
#[derive(ToSchema)]
pub struct Enqueued {
    id: i64,
}

/// `POST /queues/{queue}/claim`.
#[derive(ToSchema)]
pub struct ClaimRequest {
    /// Most jobs to claim (1-1000, default 1). Fewer are answered once their payloads reach
    /// 8 MiB of JSON (the first job always is).
    #[schema(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Lease length (default 30000).
    #[schema(minimum = 1, maximum = 86400000)]
    lease_ms: Option<i64>,
    /// Long-poll up to this long when nothing is claimable (0-30000, default 0).
    #[schema(minimum = 0, maximum = 30000)]
    wait_ms: Option<i64>,
}

/// A claimed job: work on it, then complete or fail it with `token` before the lease ends.
#[derive(ToSchema)]
pub struct ClaimedJob {
    id: i64,
    payload: Value,
    attempt: i32,
    token: String,
    lease_expires_at: String,
}

/// `complete`, `fail` and `heartbeat` bodies: the claim's token (and for `fail` the error, for
/// `heartbeat` the new lease).
#[derive(ToSchema)]
pub struct TokenRequest {
    token: String,
    error: Option<Value>,
    #[schema(minimum = 1, maximum = 86400000)]
    lease_ms: Option<i64>,
}

/// A job as stored (without its token).
#[derive(ToSchema)]
pub struct Job {
    id: i64,
    queue: String,
    /// `queued`, `running`, `completed` or `dead`.
    state: String,
    payload: Value,
    priority: i32,
    attempt: i32,
    max_attempts: i32,
    run_at: String,
    lease_expires_at: Option<String>,
    /// One `{attempt, error, at}` per failed attempt.
    errors: Vec<Value>,
    created_at: String,
    attempted_at: Option<String>,
    finished_at: Option<String>,
}

/// A job after a transition: its new state and what changed.
#[derive(ToSchema)]
pub struct JobState {
    id: i64,
    state: Option<String>,
    attempt: Option<i32>,
    run_at: Option<String>,
    lease_expires_at: Option<String>,
    finished_at: Option<String>,
}

/// Jobs of a queue by state.
#[derive(ToSchema)]
pub struct QueueCounts {
    queued: i64,
    running: i64,
    completed: i64,
    dead: i64,
}

/// `GET /queues/{queue}`.
#[derive(ToSchema)]
pub struct QueueStats {
    queue: String,
    paused: bool,
    counts: QueueCounts,
    /// Queued jobs whose `run_at` is due.
    available: i64,
    /// Age of the oldest queued job; null when none is queued.
    oldest_queued_age_ms: Option<i64>,
}

/// After `pause` or `resume`.
#[derive(ToSchema)]
pub struct QueuePaused {
    queue: String,
    paused: bool,
}
