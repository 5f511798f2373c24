//! The shapes of the job and queue routes' bodies, for `/openapi.json` only: the handlers read
//! bodies through [`super::input`] (which reports out-of-range numbers as 422, not 400) and build
//! replies in SQL, so these types describe the JSON rather than produce it.

#![allow(dead_code)] // read by utoipa's derive, never constructed

use serde_json::Value;
use utoipa::ToSchema;

/// `POST /queues/{queue}/jobs`.
#[derive(ToSchema, serde::Serialize)]
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
    /// While a job of the queue with this key is queued or running, enqueueing another answers
    /// 200 with that job's id and `duplicate: true`.
    #[schema(min_length = 1, max_length = 255)]
    unique_key: Option<String>,
}

/// One job, or a batch of 1…1000 (all inserted or none).
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
pub enum EnqueueInput {
    /// A single job: a JSON object.
    One(EnqueueRequest),
    /// A batch: a JSON array of 1…1000 jobs.
    Batch(Vec<EnqueueRequest>),
}

/// A job was enqueued (or, with `duplicate`, an active job with its unique key was found).
#[derive(ToSchema, serde::Serialize)]
pub struct Enqueued {
    id: i64,
    duplicate: Option<bool>,
}

/// The answer to one job or to a batch.
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
pub enum EnqueuedAny {
    /// For a single job: one object.
    One(Enqueued),
    /// For a batch: one object per job, in the order sent.
    Batch(Vec<Enqueued>),
}

/// `{"id", "token"}` of a running job.
#[derive(ToSchema)]
pub struct JobToken {
    #[schema(minimum = 1)]
    id: i64,
    token: String,
}

/// `POST /queues/{queue}/complete`.
#[derive(ToSchema)]
pub struct CompleteRequest {
    #[schema(min_items = 1, max_items = 1000)]
    jobs: Vec<JobToken>,
}

/// One job's result in a batch: 200, 404 (`not_found`) or 409 (`stale_token`).
#[derive(ToSchema, serde::Serialize)]
pub struct ItemResult {
    id: i64,
    status: u16,
    code: Option<String>,
}

/// The answer to a batch completion.
#[derive(ToSchema)]
pub struct CompleteResults {
    results: Vec<ItemResult>,
}

/// A claim that also completed jobs (its body had `complete`).
#[derive(ToSchema, serde::Serialize)]
pub struct ClaimedAndCompleted {
    jobs: Vec<ClaimedJob>,
    completed: Vec<ItemResult>,
}

/// The answer to a claim: the claimed jobs, or with `complete` in the body an object that also
/// holds the completions' results.
#[derive(ToSchema, serde::Serialize)]
#[serde(untagged)]
pub enum ClaimAnswer {
    /// Without `complete` in the body: the claimed jobs (none is a 204).
    Jobs(Vec<ClaimedJob>),
    /// With `complete` in the body: the claimed jobs and each completion's result.
    WithCompletions(ClaimedAndCompleted),
}

/// `PUT /queues/{queue}`.
#[derive(ToSchema)]
pub struct QueueSettingsRequest {
    /// At most this many jobs of the queue run at once; null: no limit.
    #[schema(minimum = 0, maximum = 1000000)]
    max_running: Option<i32>,
}

/// A queue's settings.
#[derive(ToSchema)]
pub struct QueueSettings {
    queue: String,
    paused: bool,
    max_running: Option<i32>,
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
    /// Jobs to complete before claiming (at most 1000); the answer is then
    /// `{"jobs", "completed"}`.
    #[schema(max_items = 1000)]
    complete: Option<Vec<JobToken>>,
}

/// A claimed job: work on it, then complete or fail it with `token` before the lease ends.
#[derive(ToSchema, serde::Serialize)]
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
    /// `queued`, `running`, `completed`, `dead` or `cancelled`.
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
    cancelled: i64,
}

/// `GET /queues/{queue}`.
#[derive(ToSchema)]
pub struct QueueStats {
    queue: String,
    paused: bool,
    /// At most this many jobs run at once; null: no limit.
    max_running: Option<i32>,
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

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use utoipa::OpenApi;

    use super::super::input::{
        MAX_ATTEMPTS, MAX_BATCH, MAX_CLAIM, MAX_LEASE_MS, MAX_RUNNING, MAX_UNIQUE_KEY,
    };
    use crate::db::jobs::claim::MAX_WAIT;

    /// The limits `/openapi.json` documents are the ones the handlers enforce.
    #[test]
    fn the_documented_limits_are_the_enforced_ones() {
        let doc = serde_json::to_value(crate::openapi::ApiDoc::openapi()).unwrap();
        let property = |schema: &str, name: &str, key: &str| -> Value {
            doc["components"]["schemas"][schema]["properties"][name][key].clone()
        };
        let number = |v: Value| v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
        let as_f64 = |n: i64| n as f64;
        let cases = [
            (
                "EnqueueRequest",
                "max_attempts",
                "maximum",
                as_f64(MAX_ATTEMPTS),
            ),
            (
                "EnqueueRequest",
                "unique_key",
                "maxLength",
                MAX_UNIQUE_KEY as f64,
            ),
            ("ClaimRequest", "limit", "maximum", as_f64(MAX_CLAIM)),
            ("ClaimRequest", "lease_ms", "maximum", as_f64(MAX_LEASE_MS)),
            (
                "ClaimRequest",
                "wait_ms",
                "maximum",
                MAX_WAIT.as_millis() as f64,
            ),
            ("ClaimRequest", "complete", "maxItems", MAX_BATCH as f64),
            ("CompleteRequest", "jobs", "maxItems", MAX_BATCH as f64),
            (
                "QueueSettingsRequest",
                "max_running",
                "maximum",
                as_f64(MAX_RUNNING),
            ),
        ];
        for (schema, name, key, enforced) in cases {
            let documented = number(property(schema, name, key));
            assert_eq!(documented, enforced, "{schema}.{name}.{key}");
        }
    }
}
