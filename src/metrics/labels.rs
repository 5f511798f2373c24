//! The label sets rowlock's metrics are broken down by.

use prometheus_client::encoding::EncodeLabelSet;

/// `rowlock_http_requests_total`: finished HTTP requests by route pattern, method and status.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RequestLabels {
    pub(super) route: String,
    pub(super) method: String,
    pub(super) status: u16,
}

/// `rowlock_http_request_duration_seconds`: request latency by route pattern.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteLabels {
    pub(super) route: String,
}

/// `rowlock_problems_total`: error responses by status and problem `code`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ProblemLabels {
    pub(super) status: u16,
    pub(super) code: String,
}

/// `rowlock_lock_wait_seconds`: time to lock rows by resource kind and lock mode.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct LockLabels {
    pub(super) resource: String,
    pub(super) mode: String,
}

/// `rowlock_transaction_retries_total`: transaction retries by reason (`serialization_failure`, `deadlock`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RetryLabels {
    pub(super) reason: String,
}

/// `rowlock_queue_jobs`: jobs by queue and state.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct QueueLabels {
    pub(super) queue: String,
    pub(super) state: String,
}
