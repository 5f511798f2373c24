//! HTTP handlers for jobs: `POST /queues/{queue}/jobs` (enqueue), `POST /queues/{queue}/claim`,
//! `GET/DELETE /jobs/{id}` and `POST /jobs/{id}/{complete,fail,heartbeat,retry}`.
//! Every mutation honours `Idempotency-Key` (POSTs) and `Fencing-Token`; what the routes accept
//! is checked in [`input`].

pub mod docs;
pub(crate) mod input;

use actix_web::dev::Payload;
use actix_web::web::{self, Data, Query};
use actix_web::{FromRequest, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;

use self::input::{
    ClaimBody, CompleteBody, Enqueue, JobId, NoFields, TokenBody, ENQUEUE_BODY_BYTES,
};
use super::extract::{FencingTokens, IdempotencyKey, JsonBody, LockParams, Name};
use super::{method_not_allowed, respond};
use crate::db::jobs::{self, claim, Transition};
use crate::db::notify::{WaitBudget, Wakeups};
use crate::db::statements::Conn;
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
        .service(post(
            "/queues/{queue}/complete",
            web::post().to(complete_batch),
        ))
        .service(
            web::resource("/jobs/{id}")
                .route(web::get().to(get))
                .route(web::delete().to(delete))
                .default_service(web::to(method_not_allowed)),
        )
        .service(post("/jobs/{id}/complete", web::post().to(complete)))
        .service(post("/jobs/{id}/fail", web::post().to(fail)))
        .service(post("/jobs/{id}/heartbeat", web::post().to(heartbeat)))
        .service(post("/jobs/{id}/retry", web::post().to(retry)))
        .service(post("/jobs/{id}/cancel", web::post().to(cancel)));
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

/// Enqueues a job (an object) or a batch of 1…1000 jobs (an array), all or none.
#[utoipa::path(post, path = "/queues/{queue}/jobs", tag = "jobs",
    params(("queue" = String, Path, description = "Queue name", pattern = r"^[A-Za-z0-9._-]{1,128}$"), crate::routes::extract::MutationHeaders),
    request_body(content = docs::EnqueueInput, content_type = "application/json"),
    responses(
        (status = 201, description = "Enqueued (a batch: one entry per job, in order)", body = docs::EnqueuedAny,
         headers(("location" = String))),
        (status = 200, description = "A queued or running job of the queue already has this unique_key", body = docs::Enqueued)))]
pub(crate) async fn enqueue(
    m: Mutation,
    queue: Name,
    body: JsonBody<serde_json::Value, ENQUEUE_BODY_BYTES, true>,
) -> Result<HttpResponse, ApiError> {
    let (db, opts) = m.options(&body.raw)?;
    let (input, queue) = (std::rc::Rc::new(Enqueue::parse(body.value)?), queue.0);
    let reply = db
        .transact(opts, move |tx| {
            let (input, queue) = (input.clone(), queue.clone());
            Box::pin(async move {
                let done = jobs::enqueue(tx, &queue, input.jobs()).await?;
                let entry = |e: &jobs::Enqueued| match e.duplicate {
                    false => serde_json::json!({ "id": e.id }),
                    true => serde_json::json!({ "id": e.id, "duplicate": true }),
                };
                match (&*input, done.first()) {
                    (Enqueue::One(_), Some(e)) if e.duplicate => Reply::json(200, &entry(e)),
                    (Enqueue::One(_), Some(e)) => {
                        Ok(Reply::json(201, &entry(e))?
                            .header("location", format!("/jobs/{}", e.id)))
                    }
                    _ => Reply::json(201, &done.iter().map(entry).collect::<Vec<_>>()),
                }
            })
        })
        .await?;
    Ok(respond(reply))
}

/// Completes a batch of running jobs of the queue, each checked against its current token.
#[utoipa::path(post, path = "/queues/{queue}/complete", tag = "jobs",
    params(("queue" = String, Path, description = "Queue name", pattern = r"^[A-Za-z0-9._-]{1,128}$"), crate::routes::extract::MutationHeaders),
    request_body(content = docs::CompleteRequest, content_type = "application/json"),
    responses((status = 200, description = "One result per job, in order", body = docs::CompleteResults)))]
pub(crate) async fn complete_batch(
    m: Mutation,
    queue: Name,
    body: JsonBody<CompleteBody, { input::CLAIM_BODY_BYTES }>,
) -> Result<HttpResponse, ApiError> {
    let items = body.value.items()?;
    let (db, opts) = m.options(&body.raw)?;
    Ok(respond(db.complete_jobs(queue.0, items, opts).await?))
}

/// Claims always lock with `SKIP LOCKED`; `lock=`/`strength=` do not change that. A waiting
/// claim holds no connection while it waits (see [`claim::claim`]).
/// Claims available jobs with `FOR UPDATE SKIP LOCKED`, long-polling up to `wait_ms`.
#[utoipa::path(post, path = "/queues/{queue}/claim", tag = "jobs",
    params(("queue" = String, Path, description = "Queue name", pattern = r"^[A-Za-z0-9._-]{1,128}$"), crate::routes::extract::MutationHeaders),
    request_body(content = Option<docs::ClaimRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "Claimed jobs; with `complete` in the body, `{jobs, completed}`", body = docs::ClaimAnswer),
        (status = 204, description = "Nothing to claim")))]
pub(crate) async fn claim(
    m: Mutation,
    wakeups: Data<Wakeups>,
    budget: Data<WaitBudget>,
    queue: Name,
    body: JsonBody<ClaimBody, { input::CLAIM_BODY_BYTES }>,
) -> Result<HttpResponse, ApiError> {
    let completions = body.value.completions()?;
    let spec = body.value.spec(queue.0)?;
    let (db, opts) = m.options(&body.raw)?;
    if let Some(group) = db.job_group_for(&opts) {
        let piggy_backed = completions.is_some();
        let (claimed, completed) = claim::claim_in_groups(
            &db,
            group,
            &wakeups,
            &budget,
            spec,
            completions.unwrap_or_default(),
            &opts,
        )
        .await?;
        return match piggy_backed {
            true => both(claimed, &completed),
            false => Ok(respond(claimed)),
        };
    }
    let Some(items) = completions else {
        return Ok(respond(
            claim::claim(&db, &wakeups, &budget, spec, opts).await?,
        ));
    };
    if opts.idempotency.is_none() {
        // One transaction for both (see `claim::complete_and_claim`).
        let (claimed, completed) =
            claim::complete_and_claim(&db, &wakeups, &budget, spec, opts, items).await?;
        return both(claimed, &completed);
    }
    // With an Idempotency-Key the claim may be replayed: the acknowledgements go first, in a
    // transaction of their own (committed whatever the claim finds), then the claim.
    let completed: Vec<serde_json::Value> = match items.is_empty() {
        true => Vec::new(),
        false => {
            let (items, queue) = (std::rc::Rc::new(items), spec.queue.clone());
            let ack = TxOptions {
                request_id: opts.request_id.clone(),
                ..TxOptions::default()
            };
            let reply = db
                .transact(ack, move |tx| {
                    let (items, queue) = (items.clone(), queue.clone());
                    Box::pin(async move {
                        let results = jobs::complete_batch(tx, &queue, &items, true).await?;
                        Reply::json(200, &results)
                    })
                })
                .await?;
            serde_json::from_slice(&reply.body)
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("completion results: {e}")))?
        }
    };
    let claimed = claim::claim(&db, &wakeups, &budget, spec, opts).await?;
    both(claimed, &completed)
}

/// The answer to a claim that carried completions: `{"jobs", "completed"}`, always 200.
fn both(claimed: Reply, completed: &impl serde::Serialize) -> Result<HttpResponse, ApiError> {
    // The claimed jobs' JSON is passed through as it is, not parsed again.
    let body: &[u8] = match claimed.status {
        204 => b"[]",
        _ => &claimed.body,
    };
    let jobs: &serde_json::value::RawValue = serde_json::from_slice(body)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("claimed jobs: {e}")))?;
    let mut reply = Reply::json(
        200,
        &serde_json::json!({ "jobs": jobs, "completed": completed }),
    )?;
    reply.replayed = claimed.replayed;
    Ok(respond(reply))
}

/// A job.
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs", params(("id" = i64, Path, description = "Job id", minimum = 1)),
    responses((status = 200, description = "The job", body = docs::Job)))]
pub(crate) async fn get(db: Data<Db>, id: JobId) -> Result<HttpResponse, ApiError> {
    let client = db.pool.get().await?;
    Ok(respond(Reply::json(
        200,
        &jobs::get(Conn::outside(&client), id.0).await?,
    )?))
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

/// Cancels a queued or running job: its token is stale from then on.
#[utoipa::path(post, path = "/jobs/{id}/cancel", tag = "jobs",
    params(("id" = i64, Path, description = "Job id", minimum = 1), LockParams, crate::routes::extract::MutationHeaders),
    request_body(content = Option<Object>, content_type = "application/json"),
    responses((status = 200, description = "Cancelled", body = docs::JobState)))]
pub(crate) async fn cancel(
    m: Mutation,
    id: JobId,
    body: JsonBody<NoFields>,
) -> Result<HttpResponse, ApiError> {
    run(m, id, &body.raw, Transition::Cancel).await
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
    let lock = m.params.row_lock();
    let (db, opts) = m.options(raw)?;
    Ok(respond(
        db.job_transition(id.0, transition, lock, opts).await?,
    ))
}
