//! Resource names: the `{name}`, `{queue}` or `{key}` segment of a path.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::{ready, Ready};

use crate::error::ApiError;

/// Longest resource name.
pub const MAX_NAME_LEN: usize = 128;

/// The `{name}` (or `{queue}`, `{key}`) segment of the path: 1–128 characters of
/// `A-Z a-z 0-9 . _ -`.
pub struct Name(pub String);

impl FromRequest for Name {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let raw = req.match_info().iter().next().map(|(_, v)| v).unwrap_or("");
        ready(validate_name(raw).map(|n| Name(n.to_owned())))
    }
}

/// Checks a resource name against the contract.
pub fn validate_name(name: &str) -> Result<&str, ApiError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(allowed) {
        return Err(ApiError::BadRequest(format!(
            "bad name '{}': use 1-{MAX_NAME_LEN} characters of A-Z a-z 0-9 . _ -",
            name.chars().take(MAX_NAME_LEN).collect::<String>()
        )));
    }
    Ok(name)
}
