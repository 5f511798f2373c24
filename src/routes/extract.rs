//! Request extractors shared by every resource: JSON bodies with a size limit, resource names,
//! the locking query parameters and `If-Match`. Each turns bad input into a 4xx [`ApiError`].

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::{ready, LocalBoxFuture, Ready};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use std::time::Duration;

use crate::db::counters::Concurrency;
use crate::db::fencing::Fence;
use crate::db::idempotency::Idempotency;
use crate::db::locking::{Isolation, LockMode, RowLock, Strength};
use crate::db::TxOptions;
use crate::error::ApiError;

/// How long a request body may take to arrive, whole (app data; [`BodyDeadline::DEFAULT`]
/// when absent).
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub std::time::Duration);

impl BodyDeadline {
    pub const DEFAULT: std::time::Duration = std::time::Duration::from_secs(10);
}

/// Largest JSON body accepted by default.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest resource name.
pub const MAX_NAME_LEN: usize = 128;

/// A JSON body of at most `LIMIT` bytes ([`MAX_BODY_BYTES`] unless a route says otherwise). An empty body reads as `{}`, so that
/// `POST /counters/x/increment` with no body adds 1. Content-Type is not insisted on. The raw
/// bytes are kept for the idempotency fingerprint. Only objects are bodies, and with `ARRAY`
/// also arrays (a batch).
pub struct JsonBody<T, const LIMIT: usize = MAX_BODY_BYTES, const ARRAY: bool = false> {
    pub value: T,
    pub raw: Bytes,
}

impl<T: DeserializeOwned + 'static, const LIMIT: usize, const ARRAY: bool> FromRequest
    for JsonBody<T, LIMIT, ARRAY>
{
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        let deadline = req
            .app_data::<BodyDeadline>()
            .map_or(BodyDeadline::DEFAULT, |d| d.0);
        Box::pin(async move {
            if declared.is_some_and(|n| n > LIMIT) {
                return Err(too_large(LIMIT));
            }
            let mut body = BytesMut::new();
            let read = async {
                while let Some(chunk) = payload.next().await {
                    let chunk = chunk
                        .map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?;
                    if body.len() + chunk.len() > LIMIT {
                        return Err(too_large(LIMIT));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(())
            };
            // A body that trickles in holds a connection and a worker's attention: bounded.
            tokio::time::timeout(deadline, read).await.map_err(|_| {
                ApiError::RequestTimeout(format!(
                    "the body did not arrive within {} ms",
                    deadline.as_millis()
                ))
            })??;
            let text: &[u8] = match body.iter().find(|b| !b.is_ascii_whitespace()) {
                None => b"{}",
                // serde would also read a struct from an array (`[1]`): only objects are bodies.
                Some(b'{') => &body,
                Some(b'[') if ARRAY => &body,
                Some(_) => {
                    return Err(ApiError::BadRequest(
                        "the body must be a JSON object".into(),
                    ))
                }
            };
            let value = serde_json::from_slice(text)
                .map_err(|e| ApiError::BadRequest(format!("malformed JSON body: {e}")))?;
            // PostgreSQL stores no NUL character in text or jsonb: refused here, before any SQL.
            if has_nul_escape(text) {
                return Err(ApiError::Invalid(
                    "text in the body must not contain the NUL character (\\u0000)".into(),
                ));
            }
            Ok(JsonBody {
                value,
                raw: body.freeze(),
            })
        })
    }
}

/// Whether JSON text holds a `\u0000` escape (a NUL character in a string). `\\u0000` is an
/// escaped backslash followed by the text `u0000`, which is fine: the escape counts only after
/// an even number of backslashes.
fn has_nul_escape(json: &[u8]) -> bool {
    const NUL: &[u8] = b"\\u0000";
    json.windows(NUL.len()).enumerate().any(|(i, w)| {
        w == NUL && json[..i].iter().rev().take_while(|b| **b == b'\\').count() % 2 == 0
    })
}

fn too_large(limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!("the body is larger than {limit} bytes"))
}

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

/// A JSON number that must be a signed 64-bit integer: too large is 422 (`invalid`), a
/// fraction is 400.
pub fn int64(field: &str, value: Option<&serde_json::Number>) -> Result<Option<i64>, ApiError> {
    let Some(n) = value else {
        return Ok(None);
    };
    if let Some(v) = n.as_i64() {
        return Ok(Some(v));
    }
    // Integers beyond u64 and exponent forms (1e3) arrive as floats.
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(Some(f as i64)),
        Some(f) if f.fract() == 0.0 || n.is_u64() => Err(ApiError::Invalid(format!(
            "'{field}' is outside the signed 64-bit range"
        ))),
        _ => Err(ApiError::BadRequest(format!(
            "'{field}' must be an integer"
        ))),
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

#[cfg(test)]
mod tests {
    use super::has_nul_escape;

    #[test]
    fn a_nul_escape_is_found_and_an_escaped_backslash_is_not_one() {
        assert!(has_nul_escape(br#"{"a": "\u0000"}"#));
        assert!(has_nul_escape(br#"{"a": "x\u0000"}"#));
        assert!(!has_nul_escape(br#"{"a": "\\u0000"}"#));
        assert!(has_nul_escape(br#"{"a": "\\\u0000"}"#));
        assert!(!has_nul_escape(br#"{"a": "u0000"}"#));
    }
}
