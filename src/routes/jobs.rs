//! HTTP handlers for jobs: `POST /queues/{queue}/jobs` (enqueue), `POST /queues/{queue}/claim`,
//! `GET/DELETE /jobs/{id}` and `POST /jobs/{id}/{complete,fail,heartbeat,retry}`.
//! Every POST takes an `Idempotency-Key`; what the routes accept is checked in [`input`].

mod input;

use actix_web::web::{self, Data, Query};
use actix_web::{HttpRequest, HttpResponse};

use self::input::{ClaimBody, EnqueueBody, JobId, NoFields, TokenBody, ENQUEUE_BODY_BYTES};
use super::extract::{IdempotencyKey, JsonBody, LockParams, Name};
use super::{method_not_allowed, respond};
use crate::db::jobs::{self, claim, Transition};
use crate::db::notify::Wakeups;
use crate::db::{Db, Reply};
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

async fn enqueue(
    req: HttpRequest,
    db: Data<Db>,
    queue: Name,
    params: Query<LockParams>,
    key: IdempotencyKey,
    body: JsonBody<EnqueueBody, ENQUEUE_BODY_BYTES>,
) -> Result<HttpResponse, ApiError> {
    let mut opts = params.tx_options()?;
    opts.idempotency = key.bind(&req, &body.raw, db.idempotency_retention);
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
#[allow(clippy::too_many_arguments)] // one per extractor: the signature is the route's contract
async fn claim(
    req: HttpRequest,
    db: Data<Db>,
    wakeups: Data<Wakeups>,
    queue: Name,
    params: Query<LockParams>,
    key: IdempotencyKey,
    body: JsonBody<ClaimBody>,
) -> Result<HttpResponse, ApiError> {
    let spec = body.value.spec(queue.0)?;
    let mut opts = params.tx_options()?;
    opts.idempotency = key.bind(&req, &body.raw, db.idempotency_retention);
    Ok(respond(claim::claim(&db, &wakeups, spec, opts).await?))
}

async fn get(db: Data<Db>, id: JobId) -> Result<HttpResponse, ApiError> {
    let client = db.pool.get().await?;
    Ok(respond(Reply::json(200, &jobs::get(&client, id.0).await?)?))
}

async fn complete(
    req: HttpRequest,
    db: Data<Db>,
    id: JobId,
    params: Query<LockParams>,
    key: IdempotencyKey,
    body: JsonBody<TokenBody>,
) -> Result<HttpResponse, ApiError> {
    let transition = body.value.complete();
    run(req, db, id, params, key, &body.raw, transition).await
}

async fn fail(
    req: HttpRequest,
    db: Data<Db>,
    id: JobId,
    params: Query<LockParams>,
    key: IdempotencyKey,
    body: JsonBody<TokenBody>,
) -> Result<HttpResponse, ApiError> {
    let transition = body.value.fail();
    run(req, db, id, params, key, &body.raw, transition).await
}

async fn heartbeat(
    req: HttpRequest,
    db: Data<Db>,
    id: JobId,
    params: Query<LockParams>,
    key: IdempotencyKey,
    body: JsonBody<TokenBody>,
) -> Result<HttpResponse, ApiError> {
    let transition = body.value.heartbeat()?;
    run(req, db, id, params, key, &body.raw, transition).await
}

async fn retry(
    req: HttpRequest,
    db: Data<Db>,
    id: JobId,
    params: Query<LockParams>,
    key: IdempotencyKey,
    body: JsonBody<NoFields>,
) -> Result<HttpResponse, ApiError> {
    run(req, db, id, params, key, &body.raw, Transition::Retry).await
}

async fn delete(
    req: HttpRequest,
    db: Data<Db>,
    id: JobId,
    params: Query<LockParams>,
) -> Result<HttpResponse, ApiError> {
    let key = IdempotencyKey(None);
    run(req, db, id, params, key, &[], Transition::Delete).await
}

/// One transition of one job in one transaction: 200 with the job's new state (204 for delete).
async fn run(
    req: HttpRequest,
    db: Data<Db>,
    id: JobId,
    params: Query<LockParams>,
    key: IdempotencyKey,
    raw: &[u8],
    transition: Transition,
) -> Result<HttpResponse, ApiError> {
    let (mut opts, lock, id) = (params.tx_options()?, params.row_lock(), id.0);
    opts.idempotency = key.bind(&req, raw, db.idempotency_retention);
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
