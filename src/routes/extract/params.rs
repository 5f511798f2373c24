//! The locking query parameters (`lock=`, `strength=`, `lock_timeout_ms=`, `isolation=`,
//! `group=`) and the transaction settings they make.

use serde::Deserialize;

use crate::db::counters::Concurrency;
use crate::db::locking::{Isolation, LockMode, RowLock, Strength};
use crate::db::TxOptions;
use crate::error::ApiError;

/// The locking query parameters every mutating route honours.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LockParams {
    /// How the target rows are locked.
    #[serde(default)]
    #[param(inline)]
    pub lock: LockMode,
    /// `FOR UPDATE` or `FOR NO KEY UPDATE`.
    #[serde(default)]
    #[param(inline)]
    pub strength: Strength,
    /// With `lock=wait` (or `none`): give up after this long with 423.
    #[param(minimum = 1, maximum = 60000)]
    pub lock_timeout_ms: Option<u32>,
    /// Transaction isolation; 40001/40P01 are retried by the server.
    #[serde(default)]
    #[param(inline)]
    pub isolation: Isolation,
    /// `off`: never share a group-commit transaction with other requests.
    #[serde(default)]
    #[param(inline)]
    pub group: GroupParam,
}

/// `group=`: whether a counter change may share a group-commit transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupParam {
    /// Share one when the request qualifies (`lock=wait|none`, read committed, no fencing).
    #[default]
    On,
    /// Run as its own transaction.
    Off,
}

/// Longest `lock_timeout_ms` a request may ask for.
pub const MAX_LOCK_TIMEOUT_MS: u32 = 60_000;

impl LockParams {
    /// Transaction settings, after checking the combination makes sense.
    pub fn tx_options(&self) -> Result<TxOptions, ApiError> {
        if let Some(ms) = self.lock_timeout_ms {
            if !(1..=MAX_LOCK_TIMEOUT_MS).contains(&ms) {
                return Err(ApiError::BadRequest(format!(
                    "lock_timeout_ms must be between 1 and {MAX_LOCK_TIMEOUT_MS}"
                )));
            }
            // nowait and skip_locked never wait, so a timeout would silently mean nothing.
            if matches!(self.lock, LockMode::Nowait | LockMode::SkipLocked) {
                return Err(ApiError::BadRequest(
                    "lock_timeout_ms applies to lock=wait and lock=none only".into(),
                ));
            }
        }
        Ok(TxOptions {
            isolation: self.isolation,
            lock_timeout_ms: self.lock_timeout_ms,
            idempotency: None,
            group: self.group == GroupParam::On,
            request_id: crate::routes::current_request_id(),
            ..TxOptions::default()
        })
    }

    /// The explicit row lock to take, if any.
    pub fn row_lock(&self) -> Option<RowLock> {
        RowLock::from_params(self.lock, self.strength)
    }

    /// How a counter increment protects itself: `If-Match` wins over `lock=`.
    pub fn concurrency(&self, if_match: Option<i64>) -> Concurrency {
        match (if_match, self.row_lock()) {
            (Some(version), _) => Concurrency::Optimistic { version },
            (None, Some(lock)) => Concurrency::Locked(lock),
            (None, None) => Concurrency::Atomic,
        }
    }
}
