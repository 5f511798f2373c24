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
