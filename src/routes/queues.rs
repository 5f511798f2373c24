//! HTTP handlers for queues: `GET /queues/{queue}` (counts by state) and
//! `POST /queues/{queue}/pause`, `/resume`. A paused queue keeps its jobs and takes new ones, but
//! claims on it return nothing until it is resumed.

use actix_web::web::{self, Data};
use actix_web::HttpResponse;

use super::extract::{JsonBody, Mutation, Name};
use super::jobs::input::{NoFields, QueueSettings};
use super::{resource, respond, transact_on};
use crate::db::statements::Conn;
use crate::db::{queues, Db, Reply};
use crate::error::ApiError;

/// Registers `/queues/{queue}` (its settings) and its `pause` and `resume`.
pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    let _ = cfg
        .service(
            resource("/queues/{queue}")
                .route(web::get().to(get))
                .route(web::put().to(put)),
        )
        .service(resource("/queues/{queue}/pause").route(web::post().to(pause)))
        .service(resource("/queues/{queue}/resume").route(web::post().to(resume)));
}

/// Jobs of a queue by state, and whether it is paused.
#[utoipa::path(get, path = "/queues/{queue}", tag = "jobs", params(("queue" = String, Path, description = "Queue name", pattern = r"^[A-Za-z0-9._-]{1,128}$")),
    responses((status = 200, description = "Counts", body = super::jobs::docs::QueueStats)))]
pub(crate) async fn get(db: Data<Db>, queue: Name) -> Result<HttpResponse, ApiError> {
    let client = db.pool.get().await?;
    Ok(respond(Reply::json(
        200,
        &queues::stats(Conn::outside(&client), &queue.0).await?,
    )?))
}

/// Sets the queue's limit on running jobs (`max_running`, null: none).
#[utoipa::path(put, path = "/queues/{queue}", tag = "jobs",
    params(("queue" = String, Path, description = "Queue name", pattern = r"^[A-Za-z0-9._-]{1,128}$"), crate::routes::extract::MutationHeaders),
    request_body(content = super::jobs::docs::QueueSettingsRequest, content_type = "application/json"),
    responses((status = 200, description = "The queue's settings", body = super::jobs::docs::QueueSettings)))]
pub(crate) async fn put(
    m: Mutation,
    queue: Name,
    body: JsonBody<QueueSettings>,
) -> Result<HttpResponse, ApiError> {
    let max_running = body.value.max_running()?;
    let (db, opts) = m.options(&body.raw)?;
    transact_on(&db, opts, queue.0, move |tx, queue| {
        Box::pin(async move {
            let settings = queues::set_max_running(tx, &queue, max_running).await?;
            Reply::json(200, &settings)
        })
    })
    .await
}

/// Pauses a queue: claims return nothing until it is resumed.
#[utoipa::path(post, path = "/queues/{queue}/pause", tag = "jobs",
    params(("queue" = String, Path, description = "Queue name", pattern = r"^[A-Za-z0-9._-]{1,128}$"), crate::routes::extract::MutationHeaders),
    request_body(content = Option<Object>, content_type = "application/json"),
    responses((status = 200, description = "Done", body = super::jobs::docs::QueuePaused)))]
pub(crate) async fn pause(
    m: Mutation,
    queue: Name,
    body: JsonBody<NoFields>,
) -> Result<HttpResponse, ApiError> {
    set_paused(m, queue, body, true).await
}

/// Resumes a paused queue.
#[utoipa::path(post, path = "/queues/{queue}/resume", tag = "jobs",
    params(("queue" = String, Path, description = "Queue name", pattern = r"^[A-Za-z0-9._-]{1,128}$"), crate::routes::extract::MutationHeaders),
    request_body(content = Option<Object>, content_type = "application/json"),
    responses((status = 200, description = "Done", body = super::jobs::docs::QueuePaused)))]
pub(crate) async fn resume(
    m: Mutation,
    queue: Name,
    body: JsonBody<NoFields>,
) -> Result<HttpResponse, ApiError> {
    set_paused(m, queue, body, false).await
}

/// The queue's row is locked by the upsert itself; there is nothing else to lock first.
async fn set_paused(
    m: Mutation,
    queue: Name,
    body: JsonBody<NoFields>,
    paused: bool,
) -> Result<HttpResponse, ApiError> {
    let (db, opts) = m.options(&body.raw)?;
    transact_on(&db, opts, queue.0, move |tx, queue| {
        Box::pin(async move { Reply::json(200, &queues::set_paused(tx, &queue, paused).await?) })
    })
    .await
}
