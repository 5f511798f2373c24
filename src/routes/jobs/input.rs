//! What the job routes accept, and its checks: bodies, the `{id}` of `/jobs/{id}`, and the
//! limits on numbers and payloads. Out-of-range numbers are 422 `invalid`, malformed input 400,
//! an oversized payload 413 — all before any transaction starts.

use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::{ready, Ready};
use serde::Deserialize;
use serde_json::{Number, Value};

use crate::db::jobs::claim::{ClaimSpec, MAX_WAIT};
use crate::db::jobs::{NewJob, Transition};
use crate::error::ApiError;
use crate::routes::extract::int64;

/// Largest job payload (compact JSON).
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Largest enqueue body (one job or a batch of up to [`MAX_BATCH`]).
pub const ENQUEUE_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Largest claim body (it may carry 1,000 completions).
pub const CLAIM_BODY_BYTES: usize = 256 * 1024;
/// Most jobs one enqueue or batch completion names.
pub const MAX_BATCH: usize = 1000;
/// Longest `unique_key`.
pub(super) const MAX_UNIQUE_KEY: usize = 255;
/// Longest lease a claim or heartbeat may ask for (a day); the default is 30 s.
pub(super) const MAX_LEASE_MS: i64 = 86_400_000;
const DEFAULT_LEASE_MS: i64 = 30_000;
/// Most jobs one claim returns.
pub(super) const MAX_CLAIM: i64 = 1000;
pub(super) const MAX_ATTEMPTS: i64 = 1000;
/// Most jobs of a queue that may run at once, when limited.
pub(super) const MAX_RUNNING: i64 = 1_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnqueueBody {
    payload: Option<Value>,
    priority: Option<Number>,
    run_at: Option<String>,
    max_attempts: Option<Number>,
    unique_key: Option<String>,
}

/// An enqueue: one job (an object) or a batch (an array of 1…1000 of them).
pub enum Enqueue {
    One(NewJob),
    Batch(Vec<NewJob>),
}

impl Enqueue {
    /// Reads and checks the body; a bad job of a batch is refused naming its index.
    pub fn parse(body: Value) -> Result<Self, ApiError> {
        let Value::Array(items) = body else {
            return Ok(Self::One(job_from(body)?));
        };
        if items.is_empty() || items.len() > MAX_BATCH {
            return Err(ApiError::Invalid(format!(
                "a batch has 1 to {MAX_BATCH} jobs, not {}",
                items.len()
            )));
        }
        let jobs = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| job_from(item).map_err(|e| e.prefixed(&format!("jobs[{i}]: "))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::Batch(jobs))
    }

    pub fn jobs(&self) -> &[NewJob] {
        match self {
            Self::One(job) => std::slice::from_ref(job),
            Self::Batch(jobs) => jobs,
        }
    }
}

fn job_from(value: Value) -> Result<NewJob, ApiError> {
    if !value.is_object() {
        return Err(ApiError::BadRequest("a job is a JSON object".into()));
    }
    let body: EnqueueBody = serde_json::from_value(value)
        .map_err(|e| ApiError::BadRequest(format!("malformed job: {e}")))?;
    body.job()
}

impl EnqueueBody {
    pub fn job(self) -> Result<NewJob, ApiError> {
        let payload = self
            .payload
            .ok_or_else(|| ApiError::Invalid("'payload' is required".into()))?;
        let size = serde_json::to_vec(&payload).map_or(usize::MAX, |v| v.len());
        if size > MAX_PAYLOAD_BYTES {
            return Err(ApiError::PayloadTooLarge(format!(
                "the payload is {size} bytes of JSON, more than {MAX_PAYLOAD_BYTES}"
            )));
        }
        if let Some(run_at) = &self.run_at {
            if !looks_like_rfc3339(run_at) {
                return Err(ApiError::Invalid(
                    "run_at must be an RFC 3339 timestamp like 2030-01-01T00:00:00Z".into(),
                ));
            }
        }
        let priority = within(
            "priority",
            self.priority.as_ref(),
            i32::MIN.into(),
            0,
            i32::MAX.into(),
        )?;
        let attempts = within(
            "max_attempts",
            self.max_attempts.as_ref(),
            1,
            5,
            MAX_ATTEMPTS,
        )?;
        if let Some(key) = &self.unique_key {
            if key.is_empty() || key.len() > MAX_UNIQUE_KEY {
                return Err(ApiError::Invalid(format!(
                    "'unique_key' has 1 to {MAX_UNIQUE_KEY} bytes, not {}",
                    key.len()
                )));
            }
        }
        Ok(NewJob {
            payload,
            priority: priority as i32,
            run_at: self.run_at,
            max_attempts: attempts as i32,
            unique_key: self.unique_key,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    limit: Option<Number>,
    lease_ms: Option<Number>,
    wait_ms: Option<Number>,
    /// Jobs to complete before claiming (the worker loop's acknowledgements).
    complete: Option<Vec<JobToken>>,
}

/// One `{"id", "token"}` of a batch completion.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobToken {
    id: Number,
    token: String,
}

/// `POST /queues/{queue}/complete`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteBody {
    jobs: Vec<JobToken>,
}

impl CompleteBody {
    pub fn items(&self) -> Result<Vec<(i64, String)>, ApiError> {
        if self.jobs.is_empty() {
            return Err(ApiError::Invalid("'jobs' names no job".into()));
        }
        completions(&self.jobs)
    }
}

/// Checked `(id, token)` pairs: at most [`MAX_BATCH`], each id positive and named once.
fn completions(items: &[JobToken]) -> Result<Vec<(i64, String)>, ApiError> {
    if items.len() > MAX_BATCH {
        return Err(ApiError::Invalid(format!(
            "at most {MAX_BATCH} jobs at once, not {}",
            items.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let id = within("id", Some(&item.id), 1, 1, i64::MAX)
                .map_err(|e| e.prefixed(&format!("jobs[{i}]: ")))?;
            if !seen.insert(id) {
                return Err(ApiError::Invalid(format!(
                    "jobs[{i}]: job {id} is named twice"
                )));
            }
            Ok((id, item.token.clone()))
        })
        .collect()
}

/// `PUT /queues/{queue}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// Required, `null` lifts the limit.
    #[serde(default, deserialize_with = "present")]
    max_running: Option<Option<Number>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Number>>, D::Error> {
    Option::<Number>::deserialize(d).map(Some)
}

impl QueueSettings {
    pub fn max_running(&self) -> Result<Option<i32>, ApiError> {
        let Some(limit) = &self.max_running else {
            return Err(ApiError::Invalid(
                "'max_running' is required (a number, or null for no limit)".into(),
            ));
        };
        let limit = within("max_running", limit.as_ref(), 0, -1, MAX_RUNNING)?;
        Ok((limit >= 0).then_some(limit as i32))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    token: String,
    /// `fail` only: why (any JSON, usually a string); kept in the job's `errors`.
    #[serde(default)]
    error: Option<Value>,
    /// `heartbeat` only: the new lease, from now.
    lease_ms: Option<Number>,
}

/// `retry` takes no fields; the (empty) body still counts for the idempotency fingerprint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

/// The `{id}` of `/jobs/{id}`: a positive integer.
pub struct JobId(pub i64);

impl FromRequest for JobId {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let raw = req.match_info().get("id").unwrap_or("");
        ready(match raw.parse::<i64>() {
            Ok(id) if id > 0 => Ok(JobId(id)),
            _ => Err(ApiError::BadRequest(format!(
                "bad job id '{}': job ids are positive integers",
                raw.chars().take(32).collect::<String>()
            ))),
        })
    }
}

impl ClaimBody {
    /// What to claim from `queue`, after checking every number.
    pub fn spec(&self, queue: String) -> Result<ClaimSpec, ApiError> {
        let limit = within("limit", self.limit.as_ref(), 1, 1, MAX_CLAIM)?;
        let lease_ms = lease_ms(self.lease_ms.as_ref())?;
        let max_wait = MAX_WAIT.as_millis() as i64;
        let wait_ms = within("wait_ms", self.wait_ms.as_ref(), 0, 0, max_wait)?;
        Ok(ClaimSpec {
            queue,
            limit,
            lease_secs: lease_ms as f64 / 1000.0,
            wait: Duration::from_millis(wait_ms as u64),
        })
    }

    /// The jobs to complete first (`None`: the body had no `complete`).
    pub fn completions(&self) -> Result<Option<Vec<(i64, String)>>, ApiError> {
        self.complete.as_deref().map(completions).transpose()
    }
}

impl TokenBody {
    pub fn complete(&self) -> Transition {
        Transition::Complete {
            token: self.token.clone(),
        }
    }

    pub fn fail(&self) -> Transition {
        Transition::Fail {
            token: self.token.clone(),
            error: capped_error(self.error.clone().unwrap_or(Value::Null)),
        }
    }

    pub fn heartbeat(&self) -> Result<Transition, ApiError> {
        Ok(Transition::Heartbeat {
            token: self.token.clone(),
            lease_secs: lease_ms(self.lease_ms.as_ref())? as f64 / 1000.0,
        })
    }
}

fn lease_ms(n: Option<&Number>) -> Result<i64, ApiError> {
    within("lease_ms", n, 1, DEFAULT_LEASE_MS, MAX_LEASE_MS)
}

/// An optional integer field within `[min, max]` (else 422), `default` when absent.
fn within(
    field: &str,
    n: Option<&Number>,
    min: i64,
    default: i64,
    max: i64,
) -> Result<i64, ApiError> {
    match int64(field, n)? {
        None => Ok(default),
        Some(v) if (min..=max).contains(&v) => Ok(v),
        Some(v) => Err(ApiError::Invalid(format!(
            "'{field}' is {v}; it must be between {min} and {max}"
        ))),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`. Only the shape is checked here; PostgreSQL
/// parses it, and refuses dates that do not exist (also a 422). Checking the shape keeps out
/// PostgreSQL's special words (`infinity`, `epoch`) and local times without an offset.
fn looks_like_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |from: usize, to: usize| {
        b.get(from..to)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let date_time = b.len() >= 20
        && digits(0, 4)
        && b[4] == b'-'
        && digits(5, 7)
        && b[7] == b'-'
        && digits(8, 10)
        && matches!(b[10], b'T' | b't' | b' ')
        && digits(11, 13)
        && b[13] == b':'
        && digits(14, 16)
        && b[16] == b':'
        && digits(17, 19);
    if !date_time {
        return false;
    }
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return false;
        }
        rest = &rest[1 + n..];
    }
    let offset = |o: &[u8]| {
        o.len() == 6
            && matches!(o[0], b'+' | b'-')
            && o[1..3].iter().all(u8::is_ascii_digit)
            && o[3] == b':'
            && o[4..6].iter().all(u8::is_ascii_digit)
    };
    matches!(rest, [b'Z' | b'z']) || offset(rest)
}

/// Longest error a job keeps per attempt, in bytes of JSON; a job keeps its last 20.
pub const MAX_ERROR_BYTES: usize = 4096;

/// `error` as stored: a longer one is kept as the start of its JSON text, marked as cut.
fn capped_error(error: Value) -> Value {
    let text = match &error {
        Value::String(s) if s.len() <= MAX_ERROR_BYTES => return error,
        Value::String(s) => s.clone(),
        other => {
            let json = other.to_string();
            if json.len() <= MAX_ERROR_BYTES {
                return error;
            }
            json
        }
    };
    let mut end = MAX_ERROR_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Value::String(format!(
        "{}… (cut at {MAX_ERROR_BYTES} bytes)",
        &text[..end]
    ))
}
