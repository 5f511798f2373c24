//! The one error type of rowlock and its one mapping to HTTP.
//!
//! Every failure a request can meet ends up as an [`ApiError`]. Database errors are classified by
//! SQLSTATE in exactly one place (`From<tokio_postgres::Error>`), and every variant maps to a status
//! and a stable problem `code` in exactly one place (`ResponseError`). Clients switch on `code`;
//! `detail` is for humans. A 500 is always a bug in rowlock: it is logged in full and answered with
//! a generic detail so that no SQL or internals leak.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use deadpool_postgres::PoolError;
use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;

/// Seconds a client is asked to wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "1";

/// Everything that can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BoundViolation(String),
    #[error("the transaction kept failing to serialize with concurrent ones")]
    SerializationFailure,
    #[error("the transaction kept deadlocking with concurrent ones")]
    Deadlock,
    #[error("{0}")]
    StaleToken(String),
    #[error("a request with this Idempotency-Key is being processed right now")]
    IdempotencyInFlight,
    #[error("{0}")]
    VersionMismatch(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    LockNotAvailable(String),
    #[error("{0}")]
    RowSkipped(String),
    #[error("{0}")]
    Unavailable(String),
    /// `COMMIT` was sent, its answer was lost, and rowlock could not find out what became of it.
    #[error("{0}")]
    OutcomeUnknown(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    CrossSite(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// The same problem with `prefix` before its detail (the index of a batch item, say).
    pub fn prefixed(self, prefix: &str) -> Self {
        match self {
            Self::BadRequest(d) => Self::BadRequest(format!("{prefix}{d}")),
            Self::Invalid(d) => Self::Invalid(format!("{prefix}{d}")),
            Self::PayloadTooLarge(d) => Self::PayloadTooLarge(format!("{prefix}{d}")),
            other => other,
        }
    }

    /// A lock refusal (`lock=nowait`, a lock timeout) told which resource was locked: `detail`
    /// replaces the generic one; any other error is left as it is.
    pub fn on_lock(self, detail: impl FnOnce() -> String) -> Self {
        match self {
            Self::LockNotAvailable(_) => Self::LockNotAvailable(detail()),
            other => other,
        }
    }

    /// The stable snake_case identifier clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::NotFound(_) => "not_found",
            Self::BoundViolation(_) => "bound_violation",
            Self::SerializationFailure => "serialization_failure",
            Self::Deadlock => "deadlock",
            Self::StaleToken(_) => "stale_token",
            Self::IdempotencyInFlight => "idempotency_in_flight",
            Self::VersionMismatch(_) => "version_mismatch",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::Invalid(_) => "invalid",
            Self::LockNotAvailable(_) => "lock_not_available",
            Self::RowSkipped(_) => "row_skipped",
            Self::Unavailable(_) => "unavailable",
            Self::OutcomeUnknown(_) => "outcome_unknown",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Unauthorized(_) => "unauthorized",
            Self::CrossSite(_) => "cross_site",
            Self::RequestTimeout(_) => "request_timeout",
            Self::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "Bad request",
            Self::NotFound(_) => "Not found",
            Self::BoundViolation(_) => "Bound violation",
            Self::SerializationFailure => "Serialization failure",
            Self::Deadlock => "Deadlock",
            Self::StaleToken(_) => "Stale token",
            Self::IdempotencyInFlight => "Idempotency key in flight",
            Self::VersionMismatch(_) => "Version mismatch",
            Self::PayloadTooLarge(_) => "Payload too large",
            Self::Invalid(_) => "Invalid request",
            Self::LockNotAvailable(_) => "Row is locked",
            Self::RowSkipped(_) => "Row skipped",
            Self::Unavailable(_) => "Service unavailable",
            Self::OutcomeUnknown(_) => "Outcome unknown",
            Self::MethodNotAllowed(_) => "Method not allowed",
            Self::Unauthorized(_) => "Unauthorized",
            Self::CrossSite(_) => "Cross-site request",
            Self::RequestTimeout(_) => "Request timeout",
            Self::Internal(_) => "Internal error",
        }
    }

    /// Whether the whole transaction may be run again (40001, 40P01).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::SerializationFailure | Self::Deadlock)
    }

    /// The same error again, for each request of a group that failed as one. An internal error
    /// is logged here once, in full, and each request gets a generic one.
    pub fn duplicate(&self) -> Self {
        match self {
            Self::BadRequest(d) => Self::BadRequest(d.clone()),
            Self::NotFound(d) => Self::NotFound(d.clone()),
            Self::BoundViolation(d) => Self::BoundViolation(d.clone()),
            Self::SerializationFailure => Self::SerializationFailure,
            Self::Deadlock => Self::Deadlock,
            Self::StaleToken(d) => Self::StaleToken(d.clone()),
            Self::IdempotencyInFlight => Self::IdempotencyInFlight,
            Self::VersionMismatch(d) => Self::VersionMismatch(d.clone()),
            Self::PayloadTooLarge(d) => Self::PayloadTooLarge(d.clone()),
            Self::Invalid(d) => Self::Invalid(d.clone()),
            Self::LockNotAvailable(d) => Self::LockNotAvailable(d.clone()),
            Self::RowSkipped(d) => Self::RowSkipped(d.clone()),
            Self::Unavailable(d) => Self::Unavailable(d.clone()),
            Self::OutcomeUnknown(d) => Self::OutcomeUnknown(d.clone()),
            Self::MethodNotAllowed(d) => Self::MethodNotAllowed(d.clone()),
            Self::Unauthorized(d) => Self::Unauthorized(d.clone()),
            Self::CrossSite(d) => Self::CrossSite(d.clone()),
            Self::RequestTimeout(d) => Self::RequestTimeout(d.clone()),
            Self::Internal(e) => Self::Internal(anyhow::anyhow!("{e:#}")),
        }
    }

    /// The problem document (RFC 9457) for this error.
    pub fn problem(&self) -> Problem {
        let detail = match self {
            // Never leak internals: the full error goes to the log, the client gets this.
            Self::Internal(_) => "rowlock failed to handle this request; see its log".to_owned(),
            other => other.to_string(),
        };
        Problem {
            r#type: format!(
                "https://rowlock.dev/problems/{}",
                self.code().replace('_', "-")
            ),
            title: self.title().to_owned(),
            status: self.status_code().as_u16(),
            detail,
            code: self.code().to_owned(),
        }
    }
}

/// An RFC 9457 problem document, as every error response carries it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    pub r#type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BoundViolation(_)
            | Self::SerializationFailure
            | Self::Deadlock
            | Self::StaleToken(_)
            | Self::IdempotencyInFlight => StatusCode::CONFLICT,
            Self::VersionMismatch(_) => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::LockNotAvailable(_) | Self::RowSkipped(_) => StatusCode::LOCKED,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::OutcomeUnknown(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::CrossSite(_) => StatusCode::FORBIDDEN,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(e) = self {
            tracing::error!(error = ?e, "request failed inside rowlock");
        }
        let mut builder = HttpResponse::build(self.status_code());
        builder.content_type("application/problem+json");
        if matches!(self, Self::Unavailable(_)) {
            builder.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
        }
        builder.json(self.problem())
    }
}

/// SQLSTATE → error, in one place. Errors that are the client's doing or the database being busy
/// become their own variants; anything else is a bug (or an outage) and stays internal.
impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        let Some(code) = e.code() else {
            // No SQLSTATE: the connection broke or could not be made.
            if e.is_closed() {
                return Self::Unavailable("the database connection was lost".into());
            }
            return Self::Internal(e.into());
        };
        match *code {
            SqlState::LOCK_NOT_AVAILABLE => {
                Self::LockNotAvailable("the row is locked by another transaction".into())
            }
            SqlState::T_R_SERIALIZATION_FAILURE => Self::SerializationFailure,
            SqlState::T_R_DEADLOCK_DETECTED => Self::Deadlock,
            // Citus: a worker refused its part at COMMIT (a deferred constraint, say), so the
            // coordinator rolled the whole transaction back. The worker's own code is lost.
            SqlState::INTERNAL_ERROR
                if e.as_db_error().is_some_and(|d| {
                    d.message()
                        .starts_with("could not commit transaction for shard")
                }) =>
            {
                Self::Unavailable("a node refused the commit; nothing was applied".into())
            }
            SqlState::QUERY_CANCELED => {
                Self::Unavailable("the database did not finish in time (statement timeout)".into())
            }
            // Constraints are told apart by name ([`on_constraint`]); one rowlock does not
            // expect to be violated is a bug.
            SqlState::CHECK_VIOLATION => match e.as_db_error().and_then(violated_constraint) {
                Some(name) => on_constraint(without_shard_suffix(name))
                    .unwrap_or_else(|| Self::Internal(e.into())),
                None => Self::Internal(e.into()),
            },
            // The only timestamp a client sends is a job's `run_at`.
            SqlState::INVALID_DATETIME_FORMAT
            | SqlState::DATETIME_FIELD_OVERFLOW
            | SqlState::INVALID_TIME_ZONE_DISPLACEMENT_VALUE => {
                Self::Invalid("run_at is not a valid RFC 3339 timestamp".into())
            }
            SqlState::NUMERIC_VALUE_OUT_OF_RANGE => {
                Self::Invalid("the change would overflow a signed 64-bit value".into())
            }
            // Class 22 (data exception) and 54000 (program limit): a value the database cannot
            // take, which only client input can bring. Logged in full, answered generically.
            _ if code.code().starts_with("22") || *code == SqlState::PROGRAM_LIMIT_EXCEEDED => {
                tracing::warn!(error = %e, "the database refused a value of the request");
                Self::Invalid("a value in the request cannot be stored (data exception)".into())
            }
            SqlState::ADMIN_SHUTDOWN
            | SqlState::CANNOT_CONNECT_NOW
            | SqlState::TOO_MANY_CONNECTIONS
            | SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT => {
                Self::Unavailable("the database is not accepting work right now".into())
            }
            _ => Self::Internal(e.into()),
        }
    }
}

/// CHECK constraints a request may run into, by name, and what the client is told: the tables'
/// own rules are the last line of defence behind rowlock's checks (the bounds of a counter, the
/// alphabet of names, the ranges of numbers). Any other constraint is rowlock's own invariant
/// (`jobs_running_has_lease`, `jobs_state_check`): violating it is a bug, answered 500.
/// The CHECK constraint an error names: its constraint field, or — from a Citus worker, whose
/// error the coordinator passes on without that field — the name in its message (`new row for
/// relation "counters_102008" violates check constraint "counters_value_above_min_102008"`).
fn violated_constraint(e: &tokio_postgres::error::DbError) -> Option<&str> {
    e.constraint().or_else(|| {
        let (_, rest) = e.message().split_once("violates check constraint \"")?;
        rest.split_once('"').map(|(name, _)| name)
    })
}

/// A constraint's name as rowlock's migrations gave it: on Citus, a worker names the constraint
/// of its shard, with the shard's id appended (`counters_value_above_min_102008`).
fn without_shard_suffix(name: &str) -> &str {
    match name.rsplit_once('_') {
        Some((base, id)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name,
    }
}

fn on_constraint(name: &str) -> Option<ApiError> {
    let error = match name {
        "counters_value_above_min" | "counters_value_below_max" => ApiError::BoundViolation(
            "the change would take a counter outside its bounds; nothing changed".into(),
        ),
        "counters_bounds_ordered" => ApiError::Invalid("min must not be above max".into()),
        "counters_name_check" | "jobs_queue_check" | "queues_name_check" | "locks_key_check" => {
            ApiError::BadRequest("names are 1-128 characters of A-Z a-z 0-9 . _ -".into())
        }
        "jobs_max_attempts_check" => {
            ApiError::Invalid("max_attempts must be between 1 and 1000".into())
        }
        "jobs_unique_key_check" => {
            ApiError::Invalid("unique_key must be 1 to 255 characters".into())
        }
        "queues_max_running_check" => {
            ApiError::Invalid("max_running must be between 0 and 1000000".into())
        }
        _ => return None,
    };
    Some(error)
}

/// The pool gives up after its wait timeout: that is back-pressure, answered 503 + Retry-After.
impl From<PoolError> for ApiError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Timeout(_) => {
                Self::Unavailable("no database connection became free in time".into())
            }
            // A connection that cannot be made at all means the database is unreachable.
            PoolError::Backend(e) if e.code().is_none() => {
                Self::Unavailable("the database is unreachable".into())
            }
            PoolError::Backend(e) => e.into(),
            PoolError::Closed => Self::Unavailable("rowlock is shutting down".into()),
            other => Self::Internal(anyhow::anyhow!("pool: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_constraint_maps_as_its_table_constraint() {
        assert_eq!(
            without_shard_suffix("counters_value_above_min_102008"),
            "counters_value_above_min"
        );
        assert_eq!(
            without_shard_suffix("counters_name_check"),
            "counters_name_check"
        );
        assert!(matches!(
            on_constraint(without_shard_suffix("counters_value_below_max_102040")),
            Some(ApiError::BoundViolation(_))
        ));
    }
}
