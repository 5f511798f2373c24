//! HTTP handlers for jobs: `POST /queues/{queue}/jobs` (enqueue), `POST /queues/{queue}/claim`,
//! `GET/DELETE /jobs/{id}` and `POST /jobs/{id}/{complete,fail,heartbeat,retry}`.
//! Every mutation honours `Idempotency-Key` (POSTs) and `Fencing-Token`; what the routes accept
//! is checked in [`input`].

pub mod docs;
mod input;

use actix_web::dev::Payload;
use actix_web::web::{self, Data, Query};
use actix_web::{FromRequest, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;

use self::input::{ClaimBody, EnqueueBody, JobId, NoFields, TokenBody, ENQUEUE_BODY_BYTES};
use super::extract::{FencingTokens, IdempotencyKey, JsonBody, LockParams, Name};
use super::{method_not_allowed, respond};
use crate::db::jobs::{self, claim, Transition};
use crate::db::notify::{WaitBudget, Wakeups};
use crate::db::{Db, Reply, TxOptions};
use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    let post = |path: &str, route: actix_web::Route| {
        web::resource(path.to_owned())
            .route(route)
            .default_service(web::to(method_not_allowed))
    };
    cfg.service(post("/queues/{queue}/jobs", web::post().to(enqueue)))
        .service(post("/queues/{queue}/claim", web::post().to(claim)))
        .service(
            web::resource("/jobs/{id}")
                .route(web::get().to(get))
                .route(web::delete().to(delete))
                .default_service(web::to(method_not_allowed)),
        )
        .service(post("/jobs/{id}/complete", web::post().to(complete)))
        .service(post("/jobs/{id}/fail", web::post().to(fail)))
        .service(post("/jobs/{id}/heartbeat", web::post().to(heartbeat)))
        .service(post("/jobs/{id}/retry", web::post().to(retry)));
}

/// The headers and query parameters every job mutation honours, as one extractor.
pub(crate) struct Mutation {
    req: HttpRequest,
    db: Data<Db>,
    params: Query<LockParams>,
    key: IdempotencyKey,
    fences: FencingTokens,
}

impl FromRequest for Mutation {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        type Parts = (Data<Db>, Query<LockParams>, IdempotencyKey, FencingTokens);
        let parts = Parts::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let (db, params, key, fences) = parts.await?;
            Ok(Mutation {
                req,
                db,
                params,
                key,
                fences,
            })
        })
    }
}

impl Mutation {
    /// Transaction options for a request whose body was `raw`.
    pub(super) fn options(self, raw: &[u8]) -> Result<(Data<Db>, TxOptions), ApiError> {
        let mut opts = self.params.tx_options()?;
        opts.idempotency = self.key.bind(&self.req, raw, self.db.idempotency_retention);
        opts.fences = self.fences.0;
        Ok((self.db, opts))
    }
}

/// Enqueues a job.
#[utoipa::path(post, path = "/queues/{queue}/jobs", tag = "jobs",
    params(("queue" = String, Path, description = "Queue name", pattern = r"^[A-Za-z0-9._-]{1,128}$"), crate::routes::extract::MutationHeaders),
    request_body(content = docs::EnqueueRequest, content_type = "application/json"),
    responses((status = 201, description = "Enqueued", body = docs::Enqueued,
               headers(("location" = String)))))]
pub(crate) async fn enqueue(
    m: Mutation,
    queue: Name,
    body: JsonBody<EnqueueBody, ENQUEUE_BODY_BYTES>,
) -> Result<HttpResponse, ApiError> {
    let (db, opts) = m.options(&body.raw)?;
    let (job, queue) = (body.value.job()?, queue.0);
    let reply = db
        .transact(opts, move |tx| {
            let (job, queue) = (job.clone(), queue.clone());
            Box::pin(async move {
                let id = jobs::enqueue(tx, &queue, &job).await?;
                Ok(Reply::json(201, &serde_json::json!({ "id": id }))?
                    .header("location", format!("/jobs/{id}")))
            })
        })
        .await?;
    Ok(respond(reply))
}

/// Claims always lock with `SKIP LOCKED`; `lock=`/`strength=` do not change that. A waiting
/// claim holds no connection while it waits (see [`claim::claim`]).
/// Claims available jobs with `FOR UPDATE SKIP LOCKED`, long-polling up to `wait_ms`.
#[utoipa::path(post, path = "/queues/{queue}/claim", tag = "jobs",
    params(("queue" = String, Path, description = "Queue name", pattern = r"^[A-Za-z0-9._-]{1,128}$"), crate::routes::extract::MutationHeaders),
    request_body(content = Option<docs::ClaimRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "Claimed jobs", body = Vec<docs::ClaimedJob>),
        (status = 204, description = "Nothing to claim")))]
pub(crate) async fn claim(
    m: Mutation,
    wakeups: Data<Wakeups>,
    budget: Data<WaitBudget>,
    queue: Name,
    body: JsonBody<ClaimBody>,
) -> Result<HttpResponse, ApiError> {
    let spec = body.value.spec(queue.0)?;
    let (db, opts) = m.options(&body.raw)?;
    Ok(respond(
        claim::claim(&db, &wakeups, &budget, spec, opts).await?,
    ))
}

/// A job.
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs", params(("id" = i64, Path, description = "Job id", minimum = 1)),
    responses((status = 200, description = "The job", body = docs::Job)))]
pub(crate) async fn get(db: Data<Db>, id: JobId) -> Result<HttpResponse, ApiError> {
    let client = db.pool.get().await?;
    Ok(respond(Reply::json(200, &jobs::get(&client, id.0).await?)?))
}

/// Completes a running job (current token only).
#[utoipa::path(post, path = "/jobs/{id}/complete", tag = "jobs",
    params(("id" = i64, Path, description = "Job id", minimum = 1), LockParams, crate::routes::extract::MutationHeaders),
    request_body(content = docs::TokenRequest, content_type = "application/json"),
    responses((status = 200, description = "Done", body = docs::JobState)))]
pub(crate) async fn complete(
    m: Mutation,
    id: JobId,
    body: JsonBody<TokenBody>,
) -> Result<HttpResponse, ApiError> {
    run(m, id, &body.raw, body.value.complete()).await
}

/// Fails a running job: retried with backoff, or dead after max_attempts.
#[utoipa::path(post, path = "/jobs/{id}/fail", tag = "jobs",
    params(("id" = i64, Path, description = "Job id", minimum = 1), LockParams, crate::routes::extract::MutationHeaders),
    request_body(content = docs::TokenRequest, content_type = "application/json"),
    responses((status = 200, description = "Done", body = docs::JobState)))]
pub(crate) async fn fail(
    m: Mutation,
    id: JobId,
    body: JsonBody<TokenBody>,
) -> Result<HttpResponse, ApiError> {
    run(m, id, &body.raw, body.value.fail()).await
}

/// Extends a running job's lease.
#[utoipa::path(post, path = "/jobs/{id}/heartbeat", tag = "jobs",
    params(("id" = i64, Path, description = "Job id", minimum = 1), LockParams, crate::routes::extract::MutationHeaders),
    request_body(content = docs::TokenRequest, content_type = "application/json"),
    responses((status = 200, description = "Done", body = docs::JobState)))]
pub(crate) async fn heartbeat(
    m: Mutation,
    id: JobId,
    body: JsonBody<TokenBody>,
) -> Result<HttpResponse, ApiError> {
    let transition = body.value.heartbeat()?;
    run(m, id, &body.raw, transition).await
}

/// Puts a dead job back in its queue.
#[utoipa::path(post, path = "/jobs/{id}/retry", tag = "jobs",
    params(("id" = i64, Path, description = "Job id", minimum = 1), LockParams, crate::routes::extract::MutationHeaders),
    request_body(content = Option<Object>, content_type = "application/json"),
    responses((status = 200, description = "Queued again", body = docs::JobState)))]
pub(crate) async fn retry(
    m: Mutation,
    id: JobId,
    body: JsonBody<NoFields>,
) -> Result<HttpResponse, ApiError> {
    run(m, id, &body.raw, Transition::Retry).await
}

/// Deletes a queued job.
#[utoipa::path(delete, path = "/jobs/{id}", tag = "jobs",
    params(("id" = i64, Path, description = "Job id", minimum = 1), LockParams, crate::routes::extract::FencingHeader),
    responses((status = 204, description = "Deleted")))]
pub(crate) async fn delete(m: Mutation, id: JobId) -> Result<HttpResponse, ApiError> {
    run(m, id, &[], Transition::Delete).await
}

/// One transition of one job in one transaction: 200 with the job's new state (204 for delete).
async fn run(
    m: Mutation,
    id: JobId,
    raw: &[u8],
    transition: Transition,
) -> Result<HttpResponse, ApiError> {
    let (lock, id) = (m.params.row_lock(), id.0);
    let (db, opts) = m.options(raw)?;
    let reply = db
        .transact(opts, move |tx| {
            let transition = transition.clone();
            Box::pin(async move {
                let done = jobs::transition(tx, id, &transition, lock).await?;
                match transition {
                    Transition::Delete => Ok(Reply::empty(204)),
                    _ => Reply::json(200, &done),
                }
            })
        })
        .await?;
    Ok(respond(reply))
}
