//! What a worker sends about its jobs: claims (with the completions they may carry), batch
//! completions, and the token bodies of `complete`, `fail` and `heartbeat`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Number, Value};

use super::{lease_ms, within, MAX_BATCH, MAX_CLAIM};
use crate::db::jobs::claim::{ClaimSpec, MAX_WAIT};
use crate::db::jobs::Transition;
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClaimBody {
    limit: Option<Number>,
    lease_ms: Option<Number>,
    wait_ms: Option<Number>,
    /// Jobs to complete before claiming (the worker loop's acknowledgements).
    complete: Option<Vec<JobToken>>,
}

/// One `{"id", "token"}` of a batch completion.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobToken {
    id: Number,
    token: String,
}

/// `POST /queues/{queue}/complete`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompleteBody {
    jobs: Vec<JobToken>,
}

impl CompleteBody {
    pub(crate) fn items(&self) -> Result<Vec<(i64, String)>, ApiError> {
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

impl ClaimBody {
    /// What to claim from `queue`, after checking every number.
    pub(crate) fn spec(&self, queue: String) -> Result<ClaimSpec, ApiError> {
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
    pub(crate) fn completions(&self) -> Result<Option<Vec<(i64, String)>>, ApiError> {
        self.complete.as_deref().map(completions).transpose()
    }
}

impl TokenBody {
    pub(crate) fn complete(&self) -> Transition {
        Transition::Complete {
            token: self.token.clone(),
        }
    }

    pub(crate) fn fail(&self) -> Transition {
        Transition::Fail {
            token: self.token.clone(),
            error: capped_error(self.error.clone().unwrap_or(Value::Null)),
        }
    }

    pub(crate) fn heartbeat(&self) -> Result<Transition, ApiError> {
        Ok(Transition::Heartbeat {
            token: self.token.clone(),
            lease_secs: lease_ms(self.lease_ms.as_ref())? as f64 / 1000.0,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    token: String,
    /// `fail` only: why (any JSON, usually a string); kept in the job's `errors`.
    #[serde(default)]
    error: Option<Value>,
    /// `heartbeat` only: the new lease, from now.
    lease_ms: Option<Number>,
}

/// `retry`, `cancel` and a queue's `pause` and `resume` take no fields; the (empty) body still
/// counts for the idempotency fingerprint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoFields {}

/// Longest error a job keeps per attempt, in bytes of JSON; a job keeps its last 20.
pub(crate) const MAX_ERROR_BYTES: usize = 4096;

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
