//! HTTP handlers for queues: `GET /queues/{queue}` (counts by state) and
//! `POST /queues/{queue}/pause`, `/resume`. A paused queue keeps its jobs and takes new ones, but
//! claims on it return nothing until it is resumed.

use actix_web::web::{self, Data};
use actix_web::HttpResponse;

use super::extract::{JsonBody, Name};
use super::jobs::input::{NoFields, QueueSettings};
use super::jobs::Mutation;
use super::{method_not_allowed, respond};
use crate::db::statements::Conn;
use crate::db::{queues, Db, Reply};
use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/queues/{queue}")
            .route(web::get().to(get))
            .route(web::put().to(put))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/queues/{queue}/pause")
            .route(web::post().to(pause))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/queues/{queue}/resume")
            .route(web::post().to(resume))
            .default_service(web::to(method_not_allowed)),
    );
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
    let queue = queue.0;
    let reply = db
        .transact(opts, move |tx| {
            let queue = queue.clone();
            Box::pin(async move {
                Reply::json(
                    200,
                    &queues::set_max_running(tx, &queue, max_running).await?,
                )
            })
        })
        .await?;
    Ok(respond(reply))
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
    let queue = queue.0;
    let reply = db
        .transact(opts, move |tx| {
            let queue = queue.clone();
            Box::pin(
                async move { Reply::json(200, &queues::set_paused(tx, &queue, paused).await?) },
            )
        })
        .await?;
    Ok(respond(reply))
}
