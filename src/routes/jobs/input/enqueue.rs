//! `POST /queues/{queue}/jobs`: one job or a batch, each job's payload, priority, `run_at`,
//! attempts and unique key checked.

use serde::Deserialize;
use serde_json::{Number, Value};

use super::{within, MAX_ATTEMPTS, MAX_BATCH, MAX_PAYLOAD_BYTES, MAX_UNIQUE_KEY};
use crate::db::jobs::NewJob;
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnqueueBody {
    payload: Option<Value>,
    priority: Option<Number>,
    run_at: Option<String>,
    max_attempts: Option<Number>,
    unique_key: Option<String>,
}

/// An enqueue: one job (an object) or a batch (an array of 1…1000 of them).
pub(crate) enum Enqueue {
    One(NewJob),
    Batch(Vec<NewJob>),
}

impl Enqueue {
    /// Reads and checks the body; a bad job of a batch is refused naming its index.
    pub(crate) fn parse(body: Value) -> Result<Self, ApiError> {
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

    pub(crate) fn jobs(&self) -> &[NewJob] {
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
    pub(crate) fn job(self) -> Result<NewJob, ApiError> {
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
