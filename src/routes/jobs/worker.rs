//! The routes a worker loop calls in bulk: `POST /queues/{queue}/claim` (which may carry the
//! acknowledgements of the jobs it finished) and `POST /queues/{queue}/complete`.

use actix_web::web::Data;
use actix_web::HttpResponse;

use super::docs;
use super::input::{self, ClaimBody, CompleteBody};
use crate::db::jobs::{self, claim};
use crate::db::notify::{WaitBudget, Wakeups};
use crate::db::{Reply, TxOptions};
use crate::error::ApiError;
use crate::routes::extract::{JsonBody, Mutation, Name};
use crate::routes::respond;

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
