//! The one error type of rowlock and its one mapping to HTTP.
//!
//! Every failure a request can meet ends up as an [`ApiError`]. Database errors are classified by
//! SQLSTATE in exactly one place (`from_db.rs`: `From<tokio_postgres::Error>`, with the table of
//! CHECK constraints a client may run into), and every variant maps to a status and a stable
//! problem `code` in exactly one place (`problem.rs`: `ResponseError`). Clients switch on `code`;
//! `detail` is for humans. A 500 is always a bug in rowlock: it is logged in full and answered with
//! a generic detail so that no SQL or internals leak.

mod from_db;
mod problem;

pub use problem::Problem;

/// Everything that can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `bad_request`: malformed JSON, an unknown parameter value or a bad name.
    #[error("{0}")]
    BadRequest(String),
    /// 404 `not_found`: no such counter, job, queue, lock or transaction.
    #[error("{0}")]
    NotFound(String),
    /// 409 `bound_violation`: the change would take a counter outside `[min, max]`; nothing
    /// changed.
    #[error("{0}")]
    BoundViolation(String),
    /// 409 `serialization_failure`: SQLSTATE 40001, still failing after the server's retries.
    #[error("the transaction kept failing to serialize with concurrent ones")]
    SerializationFailure,
    /// 409 `deadlock`: SQLSTATE 40P01, still failing after the server's retries.
    #[error("the transaction kept deadlocking with concurrent ones")]
    Deadlock,
    /// 409 `stale_token`: a job, lease or fencing token that is no longer the current one.
    #[error("{0}")]
    StaleToken(String),
    /// 409 `idempotency_in_flight`: the same `Idempotency-Key` is being processed right now.
    #[error("a request with this Idempotency-Key is being processed right now")]
    IdempotencyInFlight,
    /// 412 `version_mismatch`: `If-Match` (or an expected version) did not match the row's.
    #[error("{0}")]
    VersionMismatch(String),
    /// 413 `payload_too_large`: a body, job payload or batch over its limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 422 `invalid`: well-formed but meaningless (overflow, `by: 0`, a key reused with another
    /// body).
    #[error("{0}")]
    Invalid(String),
    /// 423 `lock_not_available`: the row was locked and the request asked not to wait
    /// (`lock=nowait`, SQLSTATE 55P03) or its lock timeout ran out.
    #[error("{0}")]
    LockNotAvailable(String),
    /// 423 `row_skipped`: `lock=skip_locked` skipped the one row a single-target route needed.
    #[error("{0}")]
    RowSkipped(String),
    /// 503 `unavailable`, with `Retry-After`: the database is unreachable or no connection came
    /// in time; nothing was applied.
    #[error("{0}")]
    Unavailable(String),
    /// `COMMIT` was sent, its answer was lost, and rowlock could not find out what became of it.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// 405 `method_not_allowed`: the path exists but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 401 `unauthorized`: the route needs `Authorization: Bearer <token>` and got none that
    /// matches.
    #[error("{0}")]
    Unauthorized(String),
    /// 403 `cross_site`: a browser's cross-site request (`Origin` not allowed, or
    /// `Sec-Fetch-Site: cross-site`).
    #[error("{0}")]
    CrossSite(String),
    /// 408 `request_timeout`: the client did not send its whole body in time.
    #[error("{0}")]
    RequestTimeout(String),
    /// 500 `internal`: a bug in rowlock; logged in full, answered with a generic detail.
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
}
