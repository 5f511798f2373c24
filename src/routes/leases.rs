//! HTTP handlers for leases: `POST/PUT/DELETE/GET /locks/{key}`.
//!
//! How long to wait is the body's `wait_ms` (`0` = `FOR UPDATE NOWAIT`), so these routes take no
//! `lock=` query parameters.

use actix_web::web::{self, Data};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;

use super::extract::{int64, FencingTokens, IdempotencyKey, JsonBody, Name};
use super::{resource, respond, transact_on};
use crate::db::leases::acquire::{self, Acquisition, MAX_WAIT_MS};
use crate::db::leases::{self, Lease, Leases, LockState};
use crate::db::statements::Conn;
use crate::db::{Db, Reply, TxOptions};
use crate::error::ApiError;

/// Longest `owner`.
const MAX_OWNER_LEN: usize = 128;

/// Registers `/locks/{key}`: look up, acquire, renew and release a lease.
pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    let _ = cfg.service(
        resource("/locks/{key}")
            .route(web::get().to(get))
            .route(web::post().to(acquire))
            .route(web::put().to(renew))
            .route(web::delete().to(release)),
    );
}

/// `POST /locks/{key}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcquireBody {
    /// Who asks: 1-128 characters, one per process.
    owner: Option<String>,
    /// Lease length in milliseconds: 1 up to the configured maximum (default 1 h).
    #[schema(value_type = i64)]
    ttl_ms: Option<serde_json::Number>,
    /// How long to wait for a held lock, 0-30000 ms (default 0: `FOR UPDATE NOWAIT`).
    #[schema(value_type = Option<i64>)]
    wait_ms: Option<serde_json::Number>,
}

/// `PUT /locks/{key}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewBody {
    /// The current token of the live lease.
    #[schema(value_type = i64)]
    token: Option<serde_json::Number>,
    /// New lease length from now, in milliseconds.
    #[schema(value_type = i64)]
    ttl_ms: Option<serde_json::Number>,
}

/// `DELETE /locks/{key}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {
    /// The token of the latest grant.
    #[schema(value_type = i64)]
    token: Option<serde_json::Number>,
}

/// Acquires the lock: 201 with a fencing token, or 423 when someone else holds it (after
/// `wait_ms`).
#[utoipa::path(post, path = "/locks/{key}", tag = "leases",
    params(("key" = String, Path, description = "Lock key", pattern = r"^[A-Za-z0-9._-]{1,128}$"), crate::routes::extract::MutationHeaders),
    request_body(content = AcquireBody, content_type = "application/json"),
    responses((status = 201, description = "Granted and committed", body = Lease,
               headers(("location" = String)))))]
#[allow(clippy::too_many_arguments)] // one per extractor: the signature is the route's contract
pub async fn acquire(
    req: HttpRequest,
    db: Data<Db>,
    leases: Data<Leases>,
    key: Name,
    idempotency: IdempotencyKey,
    fences: FencingTokens,
    body: JsonBody<AcquireBody>,
) -> Result<HttpResponse, ApiError> {
    let request = Acquisition {
        key: key.0,
        owner: owner(body.value.owner.as_deref())?,
        ttl_ms: ttl_ms(body.value.ttl_ms.as_ref(), leases.max_ttl_ms)?,
        wait_ms: wait_ms(body.value.wait_ms.as_ref())?,
    };
    let opts = TxOptions {
        idempotency: idempotency.bind(&req, &body.raw, db.idempotency_retention),
        ..on_lease(&request.key, fences)
    };
    Ok(respond(
        acquire::acquire(&db, &leases, opts, request).await?,
    ))
}

/// Renews the live lease held with the current token.
#[utoipa::path(put, path = "/locks/{key}", tag = "leases",
    params(("key" = String, Path, description = "Lock key", pattern = r"^[A-Za-z0-9._-]{1,128}$"), crate::routes::extract::FencingHeader),
    request_body(content = RenewBody, content_type = "application/json"),
    responses((status = 200, description = "Renewed", body = Lease)))]
pub async fn renew(
    db: Data<Db>,
    leases: Data<Leases>,
    key: Name,
    fences: FencingTokens,
    body: JsonBody<RenewBody>,
) -> Result<HttpResponse, ApiError> {
    let token = token(body.value.token.as_ref())?;
    let ttl_ms = ttl_ms(body.value.ttl_ms.as_ref(), leases.max_ttl_ms)?;
    let opts = on_lease(&key.0, fences);
    transact_on(&db, opts, key.0, move |tx, key| {
        Box::pin(async move { Reply::json(200, &leases::renew(tx, &key, token, ttl_ms).await?) })
    })
    .await
}

/// Releases the lease granted with the latest token.
#[utoipa::path(delete, path = "/locks/{key}", tag = "leases",
    params(("key" = String, Path, description = "Lock key", pattern = r"^[A-Za-z0-9._-]{1,128}$"), crate::routes::extract::FencingHeader),
    request_body(content = ReleaseBody, content_type = "application/json"),
    responses((status = 204, description = "Released")))]
pub async fn release(
    db: Data<Db>,
    key: Name,
    fences: FencingTokens,
    body: JsonBody<ReleaseBody>,
) -> Result<HttpResponse, ApiError> {
    let token = token(body.value.token.as_ref())?;
    let opts = on_lease(&key.0, fences);
    transact_on(&db, opts, key.0, move |tx, key| {
        Box::pin(async move {
            leases::release(tx, &key, token).await?;
            Ok(Reply::empty(204))
        })
    })
    .await
}

/// Shows the lock: holder, token, expiry, and the acquisitions waiting in this instance.
#[utoipa::path(get, path = "/locks/{key}", tag = "leases",
    params(("key" = String, Path, description = "Lock key", pattern = r"^[A-Za-z0-9._-]{1,128}$")),
    responses((status = 200, description = "The lock", body = LockState)))]
pub async fn get(db: Data<Db>, leases: Data<Leases>, key: Name) -> Result<HttpResponse, ApiError> {
    let client = db.pool.get().await?;
    let state = leases::get(Conn::outside(&client), &key.0, leases.waiting(&key.0)).await?;
    Ok(respond(Reply::json(200, &state)?))
}

/// The options of a transaction that changes the lease of `key`: the lease is locked together
/// with the request's fencing tokens, which must still be current.
fn on_lease(key: &str, fences: FencingTokens) -> TxOptions {
    TxOptions {
        fences: fences.0,
        lease: Some(key.to_owned()),
        request_id: crate::routes::current_request_id(),
        ..TxOptions::default()
    }
}

/// Who asks: 1–128 characters without control characters. Not checked for uniqueness: each
/// process should use its own (the same owner acquiring again is a re-grant).
fn owner(owner: Option<&str>) -> Result<String, ApiError> {
    let owner = owner.ok_or_else(|| ApiError::BadRequest("'owner' is required".into()))?;
    let chars = owner.chars().count();
    if chars == 0 || chars > MAX_OWNER_LEN || owner.chars().any(char::is_control) {
        return Err(ApiError::Invalid(format!(
            "'owner' must be 1-{MAX_OWNER_LEN} characters without control characters"
        )));
    }
    Ok(owner.to_owned())
}

/// `ttl_ms`: required, 1 ms up to the configured maximum.
fn ttl_ms(value: Option<&serde_json::Number>, max: u64) -> Result<u64, ApiError> {
    let ttl = int64("ttl_ms", value)?
        .ok_or_else(|| ApiError::BadRequest("'ttl_ms' is required".into()))?;
    match u64::try_from(ttl) {
        Ok(ttl) if (1..=max).contains(&ttl) => Ok(ttl),
        _ => Err(ApiError::Invalid(format!(
            "'ttl_ms' must be between 1 and {max}, not {ttl}"
        ))),
    }
}

/// `wait_ms`: 0 (the default: do not wait) up to [`MAX_WAIT_MS`].
fn wait_ms(value: Option<&serde_json::Number>) -> Result<u64, ApiError> {
    let wait = int64("wait_ms", value)?.unwrap_or(0);
    match u64::try_from(wait) {
        Ok(wait) if wait <= MAX_WAIT_MS => Ok(wait),
        _ => Err(ApiError::Invalid(format!(
            "'wait_ms' must be between 0 and {MAX_WAIT_MS}, not {wait}"
        ))),
    }
}

/// `token`: required; tokens are positive.
fn token(value: Option<&serde_json::Number>) -> Result<i64, ApiError> {
    match int64("token", value)? {
        None => Err(ApiError::BadRequest("'token' is required".into())),
        Some(token) if token < 1 => Err(ApiError::Invalid(format!(
            "'token' must be positive, not {token}"
        ))),
        Some(token) => Ok(token),
    }
}
