//! HTTP handlers for jobs: `POST /queues/{queue}/jobs` (enqueue), `GET/DELETE /jobs/{id}` and
//! `POST /jobs/{id}/{complete,fail,heartbeat,retry,cancel}`; the bulk routes of a worker loop
//! (`POST /queues/{queue}/claim`, `/complete`) are in [`worker`]. Every mutation honours
//! `Idempotency-Key` (POSTs) and `Fencing-Token`; what the routes accept is checked in [`input`].

pub mod docs;
pub(crate) mod input;
pub mod worker;

use actix_web::web::{self, Data};
use actix_web::HttpResponse;

use self::input::{Enqueue, JobId, NoFields, TokenBody, ENQUEUE_BODY_BYTES};
use self::worker::{claim, complete_batch};
use super::extract::{JsonBody, LockParams, Mutation, Name};
use super::{resource, respond, transact_on};
use crate::db::jobs::{self, Transition};
use crate::db::statements::Conn;
use crate::db::{Db, Reply};
use crate::error::ApiError;

/// Registers the job routes: enqueue, claim and batch completion on `/queues/{queue}`, and each job's
/// `/jobs/{id}` with its transitions.
pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    let _ = cfg
        .service(resource("/queues/{queue}/jobs").route(web::post().to(enqueue)))
        .service(resource("/queues/{queue}/claim").route(web::post().to(claim)))
        .service(resource("/queues/{queue}/complete").route(web::post().to(complete_batch)))
        .service(
            resource("/jobs/{id}")
                .route(web::get().to(get))
                .route(web::delete().to(delete)),
        )
        .service(resource("/jobs/{id}/complete").route(web::post().to(complete)))
        .service(resource("/jobs/{id}/fail").route(web::post().to(fail)))
        .service(resource("/jobs/{id}/heartbeat").route(web::post().to(heartbeat)))
        .service(resource("/jobs/{id}/retry").route(web::post().to(retry)))
        .service(resource("/jobs/{id}/cancel").route(web::post().to(cancel)));
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
    let input = std::rc::Rc::new(Enqueue::parse(body.value)?);
    transact_on(&db, opts, queue.0, move |tx, queue| {
        let input = input.clone();
        Box::pin(async move {
            let done = jobs::enqueue(tx, &queue, input.jobs()).await?;
            let entry = |e: &jobs::Enqueued| match e.duplicate {
                false => serde_json::json!({ "id": e.id }),
                true => serde_json::json!({ "id": e.id, "duplicate": true }),
            };
            match (&*input, done.first()) {
                (Enqueue::One(_), Some(e)) if e.duplicate => Reply::json(200, &entry(e)),
                (Enqueue::One(_), Some(e)) => {
                    Ok(Reply::json(201, &entry(e))?.header("location", format!("/jobs/{}", e.id)))
                }
                _ => Reply::json(201, &done.iter().map(entry).collect::<Vec<_>>()),
            }
        })
    })
    .await
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
    let lock = m.params().row_lock();
    let (db, opts) = m.options(raw)?;
    Ok(respond(
        db.job_transition(id.0, transition, lock, opts).await?,
    ))
}
