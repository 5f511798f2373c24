//! Request extractors shared by every resource: JSON bodies with a size limit, resource names,
//! the locking query parameters and the mutation headers (`If-Match`, `Fencing-Token`,
//! `Idempotency-Key`). Each turns bad input into a 4xx [`ApiError`](crate::error::ApiError).

mod body;
mod headers;
mod mutation;
mod name;
mod params;

pub use body::{int64, BodyDeadline, JsonBody, MAX_BODY_BYTES};
pub use headers::{
    FencingHeader, FencingTokens, IdempotencyKey, IfMatch, MutationHeaders, MAX_FENCES,
    MAX_IDEMPOTENCY_KEY_LEN,
};
pub use mutation::Mutation;
pub use name::{validate_name, Name, MAX_NAME_LEN};
pub use params::{GroupParam, LockParams, MAX_LOCK_TIMEOUT_MS};
