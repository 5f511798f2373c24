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
/// Largest enqueue body: the payload plus room for its envelope and whitespace.
pub const ENQUEUE_BODY_BYTES: usize = 2 * MAX_PAYLOAD_BYTES;
/// Longest lease a claim or heartbeat may ask for (a day); the default is 30 s.
const MAX_LEASE_MS: i64 = 86_400_000;
const DEFAULT_LEASE_MS: i64 = 30_000;
/// Most jobs one claim returns.
const MAX_CLAIM: i64 = 1000;
const MAX_ATTEMPTS: i64 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnqueueBody {
    payload: Option<Value>,
    priority: Option<Number>,
    run_at: Option<String>,
    max_attempts: Option<Number>,
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
        Ok(NewJob {
            payload,
            priority: priority as i32,
            run_at: self.run_at,
            max_attempts: attempts as i32,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    limit: Option<Number>,
    lease_ms: Option<Number>,
    wait_ms: Option<Number>,
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
