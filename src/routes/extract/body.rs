//! JSON request bodies: read whole within a size limit and a deadline, objects only, no NUL
//! characters; and the signed 64-bit numbers they carry.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// How long a request body may take to arrive, whole (app data; [`BodyDeadline::DEFAULT`]
/// when absent).
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub std::time::Duration);

impl BodyDeadline {
    /// The deadline when the app sets none: ten seconds.
    pub const DEFAULT: std::time::Duration = std::time::Duration::from_secs(10);
}

/// Largest JSON body accepted by default.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// A JSON body of at most `LIMIT` bytes ([`MAX_BODY_BYTES`] unless a route says otherwise). An empty body reads as `{}`, so that
/// `POST /counters/x/increment` with no body adds 1. Content-Type is not insisted on. The raw
/// bytes are kept for the idempotency fingerprint. Only objects are bodies, and with `ARRAY`
/// also arrays (a batch).
pub struct JsonBody<T, const LIMIT: usize = MAX_BODY_BYTES, const ARRAY: bool = false> {
    /// The body, deserialized.
    pub value: T,
    /// The body as it arrived (an empty one is `{}`), for the idempotency fingerprint.
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
