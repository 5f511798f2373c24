//! The headers of a mutation: `If-Match`, `Fencing-Token` and `Idempotency-Key`, and their
//! description for the API document.

use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::{ready, Ready};

use super::validate_name;
use crate::db::fencing::Fence;
use crate::db::idempotency::Idempotency;
use crate::error::ApiError;

/// `If-Match: "<version>"`, as an optional version.
pub struct IfMatch(pub Option<i64>);

impl FromRequest for IfMatch {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(value) = req.headers().get(header::IF_MATCH) else {
            return ready(Ok(IfMatch(None)));
        };
        let parsed = value
            .to_str()
            .ok()
            .map(|v| v.trim().trim_start_matches("W/"))
            .and_then(|v| v.strip_prefix('"')?.strip_suffix('"'))
            .and_then(|v| v.parse::<i64>().ok());
        ready(match parsed {
            Some(version) => Ok(IfMatch(Some(version))),
            None => Err(ApiError::BadRequest(
                "If-Match must be one quoted version, like \"3\"".into(),
            )),
        })
    }
}

/// Most `Fencing-Token` entries one request may carry.
pub const MAX_FENCES: usize = 16;

/// Every `Fencing-Token: <key>=<token>` of the request (several headers, or comma-separated),
/// at most [`MAX_FENCES`].
pub struct FencingTokens(pub Vec<Fence>);

impl FromRequest for FencingTokens {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let mut fences = Vec::new();
        for value in req.headers().get_all("fencing-token") {
            let Ok(value) = value.to_str() else {
                return ready(Err(bad_fence("not ASCII")));
            };
            for pair in value.split(',').map(str::trim) {
                match parse_fence(pair) {
                    Ok(fence) => fences.push(fence),
                    Err(e) => return ready(Err(e)),
                }
                if fences.len() > MAX_FENCES {
                    return ready(Err(ApiError::Invalid(format!(
                        "at most {MAX_FENCES} Fencing-Token entries per request"
                    ))));
                }
            }
        }
        ready(Ok(FencingTokens(fences)))
    }
}

fn parse_fence(pair: &str) -> Result<Fence, ApiError> {
    let (key, token) = pair.split_once('=').ok_or_else(|| bad_fence(pair))?;
    let key = validate_name(key.trim()).map_err(|_| bad_fence(pair))?;
    let token: i64 = token.trim().parse().map_err(|_| bad_fence(pair))?;
    if token < 1 {
        return Err(bad_fence(pair));
    }
    Ok(Fence {
        key: key.to_owned(),
        token,
    })
}

fn bad_fence(what: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "Fencing-Token must be <key>=<token> with a lock name and a positive integer, not '{}'",
        what.chars().take(64).collect::<String>()
    ))
}

/// `Idempotency-Key: <1–255 visible characters>`.
pub struct IdempotencyKey(pub Option<String>);

/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

impl FromRequest for IdempotencyKey {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(value) = req.headers().get("idempotency-key") else {
            return ready(Ok(IdempotencyKey(None)));
        };
        let key = value
            .to_str()
            .ok()
            .filter(|k| (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&k.len()))
            .filter(|k| k.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
        ready(match key {
            Some(key) => Ok(IdempotencyKey(Some(key.to_owned()))),
            None => Err(ApiError::BadRequest(format!(
                "Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ))),
        })
    }
}

impl IdempotencyKey {
    /// Binds the key to the request it came with (method, path and query, body).
    pub fn bind(self, req: &HttpRequest, body: &[u8], retention: Duration) -> Option<Idempotency> {
        let path = req
            .uri()
            .path_and_query()
            .map_or(req.path(), |pq| pq.as_str());
        self.0
            .map(|key| Idempotency::new(key, req.method().as_str(), path, body, retention))
    }
}

/// The headers of a POST mutation, for the API document (read by [`IdempotencyKey`] and
/// [`FencingTokens`]).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // read by utoipa's derive, never constructed
pub struct MutationHeaders {
    /// 1-255 characters: store the response and replay it for retries.
    #[param(rename = "Idempotency-Key")]
    idempotency_key: Option<String>,
    /// `<lock key>=<token>`: refuse the mutation if that lease has moved on.
    #[param(rename = "Fencing-Token")]
    fencing_token: Option<String>,
}

/// The fencing header of a mutation without a body to replay (`DELETE`, `PUT`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // read by utoipa's derive, never constructed
pub struct FencingHeader {
    /// `<lock key>=<token>`: refuse the mutation if that lease has moved on.
    #[param(rename = "Fencing-Token")]
    fencing_token: Option<String>,
}
