//! HTTP handlers for jobs: `POST /queues/{queue}/jobs` (enqueue), `POST /queues/{queue}/claim`,
//! `GET/DELETE /jobs/{id}` and `POST /jobs/{id}/{complete,fail,heartbeat,retry}`.
//! Every mutation honours `Idempotency-Key` (POSTs) and `Fencing-Token`; what the routes accept
//! is checked in [`input`].

mod input;

use actix_web::dev::Payload;
use actix_web::web::{self, Data, Query};
use actix_web::{FromRequest, HttpRequest, HttpResponse};
use futures_util::future::LocalBoxFuture;

use self::input::{ClaimBody, EnqueueBody, JobId, NoFields, TokenBody, ENQUEUE_BODY_BYTES};
use super::extract::{FencingTokens, IdempotencyKey, JsonBody, LockParams, Name};
use super::{method_not_allowed, respond};
use crate::db::jobs::{self, claim, Transition};
use crate::db::notify::Wakeups;
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
pub(super) struct Mutation {
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

async fn enqueue(
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
async fn claim(
    m: Mutation,
    wakeups: Data<Wakeups>,
    queue: Name,
    body: JsonBody<ClaimBody>,
) -> Result<HttpResponse, ApiError> {
    let spec = body.value.spec(queue.0)?;
    let (db, opts) = m.options(&body.raw)?;
    Ok(respond(claim::claim(&db, &wakeups, spec, opts).await?))
}

async fn get(db: Data<Db>, id: JobId) -> Result<HttpResponse, ApiError> {
    let client = db.pool.get().await?;
    Ok(respond(Reply::json(200, &jobs::get(&client, id.0).await?)?))
}

async fn complete(
    m: Mutation,
    id: JobId,
    body: JsonBody<TokenBody>,
) -> Result<HttpResponse, ApiError> {
    run(m, id, &body.raw, body.value.complete()).await
}

async fn fail(m: Mutation, id: JobId, body: JsonBody<TokenBody>) -> Result<HttpResponse, ApiError> {
    run(m, id, &body.raw, body.value.fail()).await
}

async fn heartbeat(
    m: Mutation,
    id: JobId,
    body: JsonBody<TokenBody>,
) -> Result<HttpResponse, ApiError> {
    let transition = body.value.heartbeat()?;
    run(m, id, &body.raw, transition).await
}

async fn retry(m: Mutation, id: JobId, body: JsonBody<NoFields>) -> Result<HttpResponse, ApiError> {
    run(m, id, &body.raw, Transition::Retry).await
}

async fn delete(m: Mutation, id: JobId) -> Result<HttpResponse, ApiError> {
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
