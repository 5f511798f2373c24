//! HTTP handlers for counters: `PUT/GET/DELETE /counters/{name}` and
//! `POST /counters/{name}/increment`.

use actix_web::web::{self, Data, Query};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;

use super::extract::{int64, FencingTokens, IdempotencyKey, IfMatch, JsonBody, LockParams, Name};
use super::{resource, respond, transact_on};
use crate::activity::CounterActivity;
use crate::db::counters::{self, Counter, CounterSpec, Increment};
use crate::db::statements::Conn;
use crate::db::{Db, Reply};
use crate::error::ApiError;

/// Registers `/counters/{name}` and its `increment`.
pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    let _ = cfg
        .service(
            resource("/counters/{name}")
                .route(web::get().to(get))
                .route(web::put().to(put))
                .route(web::delete().to(delete)),
        )
        .service(resource("/counters/{name}/increment").route(web::post().to(increment)));
}

/// `PUT` body. Numbers are checked by hand so that an out-of-range one is a 422, not a 400.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutBody {
    /// Initial value (default 0).
    #[schema(value_type = Option<i64>)]
    value: Option<serde_json::Number>,
    /// Lowest allowed value; null for none.
    #[schema(value_type = Option<i64>)]
    min: Option<serde_json::Number>,
    /// Highest allowed value; null for none.
    #[schema(value_type = Option<i64>)]
    max: Option<serde_json::Number>,
}

impl PutBody {
    fn spec(&self) -> Result<CounterSpec, ApiError> {
        let spec = CounterSpec {
            value: int64("value", self.value.as_ref())?.unwrap_or(0),
            min: int64("min", self.min.as_ref())?,
            max: int64("max", self.max.as_ref())?,
        };
        if let (Some(min), Some(max)) = (spec.min, spec.max) {
            if min > max {
                return Err(ApiError::Invalid(format!("min {min} is above max {max}")));
            }
        }
        let below = spec.min.is_some_and(|min| spec.value < min);
        let above = spec.max.is_some_and(|max| spec.value > max);
        if below || above {
            return Err(ApiError::Invalid(format!(
                "value {} is outside [{}, {}]",
                spec.value,
                spec.min.map_or("-inf".into(), |v| v.to_string()),
                spec.max.map_or("+inf".into(), |v| v.to_string()),
            )));
        }
        Ok(spec)
    }
}

/// `POST …/increment` body (may be omitted: adds 1).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncrementBody {
    /// Amount to add; negative subtracts; not 0 (default 1).
    #[schema(value_type = Option<i64>)]
    by: Option<serde_json::Number>,
}

impl IncrementBody {
    fn by(&self) -> Result<i64, ApiError> {
        match int64("by", self.by.as_ref())? {
            Some(0) => Err(ApiError::Invalid("'by' must not be 0".into())),
            Some(by) => Ok(by),
            None => Ok(1),
        }
    }
}

/// Reads a counter.
#[utoipa::path(get, path = "/counters/{name}", tag = "counters",
    params(("name" = String, Path, description = "Counter name", pattern = r"^[A-Za-z0-9._-]{1,128}$")),
    responses((status = 200, description = "The counter", body = Counter,
               headers(("etag" = String, description = "Quoted version")))))]
pub async fn get(db: Data<Db>, name: Name) -> Result<HttpResponse, ApiError> {
    let client = db.pool.get().await?;
    let counter = counters::get(Conn::outside(&client), &name.0).await?;
    Ok(respond(
        Reply::json(200, &counter)?.header("etag", etag(counter.version)),
    ))
}

/// Creates (201) or replaces (200) a counter.
#[utoipa::path(put, path = "/counters/{name}", tag = "counters",
    params(("name" = String, Path, description = "Counter name", pattern = r"^[A-Za-z0-9._-]{1,128}$"), LockParams, ("If-Match" = Option<String>, Header, description = "Quoted version: optimistic concurrency instead of a row lock"), crate::routes::extract::FencingHeader),
    request_body(content = PutBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = Counter,
         headers(("etag" = String), ("location" = String))),
        (status = 200, description = "Replaced", body = Counter, headers(("etag" = String)))))]
pub async fn put(
    db: Data<Db>,
    name: Name,
    params: Query<LockParams>,
    if_match: IfMatch,
    fences: FencingTokens,
    body: JsonBody<PutBody>,
) -> Result<HttpResponse, ApiError> {
    let (mut opts, spec, lock) = (params.tx_options()?, body.value.spec()?, params.row_lock());
    opts.fences = fences.0;
    transact_on(&db, opts, name.0, move |tx, name| {
        Box::pin(async move {
            let (counter, created) = counters::put(tx, &name, spec, lock, if_match.0).await?;
            let reply = Reply::json(if created { 201 } else { 200 }, &counter)?
                .header("etag", etag(counter.version));
            Ok(match created {
                true => reply.header("location", format!("/counters/{name}")),
                false => reply,
            })
        })
    })
    .await
}

/// Deletes a counter.
#[utoipa::path(delete, path = "/counters/{name}", tag = "counters",
    params(("name" = String, Path, description = "Counter name", pattern = r"^[A-Za-z0-9._-]{1,128}$"), LockParams, ("If-Match" = Option<String>, Header, description = "Quoted version: optimistic concurrency instead of a row lock"), crate::routes::extract::FencingHeader),
    responses((status = 204, description = "Deleted")))]
pub async fn delete(
    db: Data<Db>,
    name: Name,
    params: Query<LockParams>,
    if_match: IfMatch,
    fences: FencingTokens,
) -> Result<HttpResponse, ApiError> {
    let (mut opts, lock) = (params.tx_options()?, params.row_lock());
    opts.fences = fences.0;
    transact_on(&db, opts, name.0, move |tx, name| {
        Box::pin(async move {
            counters::delete(tx, &name, lock, if_match.0).await?;
            Ok(Reply::empty(204))
        })
    })
    .await
}

/// Adds `by` to a counter under the requested lock mode.
#[utoipa::path(post, path = "/counters/{name}/increment", tag = "counters",
    params(("name" = String, Path, description = "Counter name", pattern = r"^[A-Za-z0-9._-]{1,128}$"), LockParams, ("If-Match" = Option<String>, Header, description = "Quoted version: optimistic concurrency instead of a row lock"), crate::routes::extract::MutationHeaders),
    request_body(content = Option<IncrementBody>, content_type = "application/json"),
    responses((status = 200, description = "Applied and committed", body = Increment,
               headers(("etag" = String, description = "Quoted new version")))))]
#[allow(clippy::too_many_arguments)] // one per extractor: the signature is the route's contract
pub async fn increment(
    req: HttpRequest,
    db: Data<Db>,
    name: Name,
    params: Query<LockParams>,
    if_match: IfMatch,
    key: IdempotencyKey,
    fences: FencingTokens,
    body: JsonBody<IncrementBody>,
    activity: Data<CounterActivity>,
) -> Result<HttpResponse, ApiError> {
    let by = body.value.by()?;
    let mut opts = params.tx_options()?;
    opts.idempotency = key.bind(&req, &body.raw, db.idempotency_retention);
    opts.fences = fences.0;
    let mode = params.concurrency(if_match.0);
    let reply = db
        .increment(name.0.clone(), by, mode, params.strength, opts)
        .await?;
    if reply.status == 200 && !reply.replayed {
        activity.record(&name.0);
    }
    Ok(respond(reply))
}

fn etag(version: i64) -> String {
    format!("\"{version}\"")
}
