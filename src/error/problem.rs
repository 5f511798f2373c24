//! Variant → HTTP, in one place: each [`ApiError`] variant's status, stable problem `code` and
//! title, and the RFC 9457 problem document every error response carries.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::{Deserialize, Serialize};

use super::ApiError;

/// Seconds a client is asked to wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "1";

impl ApiError {
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
    /// A URI naming the kind of problem: `https://rowlock.dev/problems/` and the `code` in
    /// kebab-case.
    pub r#type: String,
    /// A short human summary of the kind of problem, the same for every occurrence.
    pub title: String,
    /// The HTTP status code of the response, repeated.
    pub status: u16,
    /// What went wrong this time, for humans; never SQL or internals.
    pub detail: String,
    /// The stable snake_case identifier clients switch on (`bound_violation`, `stale_token`, …).
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
        let builder = builder.content_type("application/problem+json");
        let builder = if matches!(self, Self::Unavailable(_)) {
            builder.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS))
        } else {
            builder
        };
        builder.json(self.problem())
    }
}
