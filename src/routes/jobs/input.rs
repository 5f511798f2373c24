//! What the job routes accept, and its checks: bodies, the `{id}` of `/jobs/{id}`, and the
//! limits on numbers and payloads. Out-of-range numbers are 422 `invalid`, malformed input 400,
//! an oversized payload 413 — all before any transaction starts. The enqueue body is read in
//! [`enqueue`], what a worker sends about its jobs in [`ack`]; the limits, the queue settings
//! and the job id are here.

mod ack;
mod enqueue;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::{ready, Ready};
use serde::Deserialize;
use serde_json::Number;

pub(crate) use self::ack::{ClaimBody, CompleteBody, NoFields, TokenBody};
pub(crate) use self::enqueue::Enqueue;
use crate::error::ApiError;
use crate::routes::extract::int64;

/// Largest job payload (compact JSON).
pub(crate) const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// Largest enqueue body (one job or a batch of up to [`MAX_BATCH`]).
pub(crate) const ENQUEUE_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Largest claim body (it may carry 1,000 completions).
pub(crate) const CLAIM_BODY_BYTES: usize = 256 * 1024;
/// Most jobs one enqueue or batch completion names.
pub(crate) const MAX_BATCH: usize = 1000;
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

/// `PUT /queues/{queue}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueueSettings {
    /// Required, `null` lifts the limit.
    #[serde(default, deserialize_with = "present")]
    max_running: Option<Option<Number>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Number>>, D::Error> {
    Option::<Number>::deserialize(d).map(Some)
}

impl QueueSettings {
    pub(crate) fn max_running(&self) -> Result<Option<i32>, ApiError> {
        let Some(limit) = &self.max_running else {
            return Err(ApiError::Invalid(
                "'max_running' is required (a number, or null for no limit)".into(),
            ));
        };
        let limit = within("max_running", limit.as_ref(), 0, -1, MAX_RUNNING)?;
        Ok((limit >= 0).then_some(limit as i32))
    }
}

/// The `{id}` of `/jobs/{id}`: a positive integer.
pub(crate) struct JobId(pub i64);

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
