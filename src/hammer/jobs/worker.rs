//! The job workload's load: producers that enqueue, and workers that claim, "work", complete —
//! or, at `--crash-rate`, abandon a claimed job (no heartbeat, no completion) so that it must be
//! claimed again once its lease runs out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use rand::Rng;
use serde::Deserialize;
use serde_json::json;

use super::JobsArgs;
use crate::hammer::load::Progress;

/// Long-poll of a worker's claim: long enough not to spin, short enough to notice the end.
const CLAIM_WAIT_MS: u64 = 500;

/// Everything the workers share.
pub(crate) struct Shared {
    pub http: reqwest::Client,
    /// The instances, taken in turn.
    pub bases: crate::hammer::client::Bases,
    pub queue: String,
    pub args: JobsArgs,
    pub started: Instant,
    /// Jobs completed with a 200 so far; the run ends when it reaches `--jobs`.
    pub completed: AtomicU64,
    /// When the last 200 completion came back (micros since `started`).
    pub last_completion_us: AtomicU64,
}

/// What one worker saw.
pub(crate) struct WorkerOut {
    /// Every job this worker completed with a 200.
    pub completed: Vec<i64>,
    pub claim_requests: u64,
    pub claims_with_jobs: u64,
    pub jobs_claimed: u64,
    /// Claimed jobs whose `attempt` was above 1: taken again after a lost lease.
    pub reclaimed: u64,
    pub abandoned: u64,
    /// 409 `stale_token` answers to a completion (expected only when work outlived a lease).
    pub stale_completions: u64,
    pub errors: u64,
    pub claim_latency: Histogram<u64>,
    /// From the enqueue's answer to the completion's.
    pub end_to_end: Histogram<u64>,
}

#[derive(Deserialize)]
struct Claimed {
    id: i64,
    payload: Payload,
    attempt: i32,
    token: String,
}

#[derive(Deserialize)]
struct Payload {
    /// When the job was enqueued, in micros since the run started.
    enqueued_us: u64,
}

/// Jobs per batch enqueue.
const ENQUEUE_BATCH: u64 = 100;

/// Enqueues jobs `from..to` in batches (at most `concurrency` batches at once); returns their
/// ids.
pub(crate) async fn enqueue(
    shared: &Shared,
    from: u64,
    to: u64,
    concurrency: usize,
) -> Result<Vec<i64>> {
    use futures_util::{stream, StreamExt, TryStreamExt};
    let url = format!("{}/queues/{}/jobs", shared.bases.next(), shared.queue);
    let batches: Vec<Vec<i64>> = stream::iter((from..to).step_by(ENQUEUE_BATCH as usize))
        .map(|first| {
            let (http, url) = (&shared.http, &url);
            async move {
                let enqueued_us = shared.started.elapsed().as_micros() as u64;
                let body: Vec<serde_json::Value> = (first..to.min(first + ENQUEUE_BATCH))
                    .map(|n| json!({"payload": {"n": n, "enqueued_us": enqueued_us}}))
                    .collect();
                let r = http.post(url).json(&body).send().await?;
                if r.status().as_u16() != 201 {
                    bail!("enqueue answered {}", r.status());
                }
                let created: Vec<serde_json::Value> = r.json().await?;
                created
                    .iter()
                    .map(|c| c["id"].as_i64().context("enqueue answered no id"))
                    .collect::<Result<Vec<i64>>>()
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    Ok(batches.into_iter().flatten().collect())
}

/// The answer to a claim that carried completions.
#[derive(Deserialize)]
struct ClaimedAndCompleted {
    jobs: Vec<Claimed>,
    completed: Vec<ItemResult>,
}

#[derive(Deserialize)]
struct ItemResult {
    id: i64,
    status: u16,
}

/// One worker: claims until every job is completed or nothing has been completed for `stall`.
pub(crate) async fn work(
    shared: Arc<Shared>,
    progress: Arc<Progress>,
    stall: Duration,
) -> Result<WorkerOut> {
    let histogram = || Histogram::<u64>::new_with_bounds(1, 600_000_000, 3);
    let mut out = WorkerOut {
        completed: Vec::new(),
        claim_requests: 0,
        claims_with_jobs: 0,
        jobs_claimed: 0,
        reclaimed: 0,
        abandoned: 0,
        stale_completions: 0,
        errors: 0,
        claim_latency: histogram()?,
        end_to_end: histogram()?,
    };
    let args = &shared.args;
    let claim_url = format!("{}/queues/{}/claim", shared.bases.next(), shared.queue);
    let target = args.jobs;
    // Finished jobs are completed by the worker's next claim: one request per batch.
    let mut finished: Vec<Claimed> = Vec::new();
    while shared.completed.load(Ordering::Relaxed) < target {
        let last_us = shared.last_completion_us.load(Ordering::Relaxed);
        let since_last = shared
            .started
            .elapsed()
            .saturating_sub(Duration::from_micros(last_us));
        if since_last > stall {
            break;
        }
        let sent = Instant::now();
        let complete: Vec<serde_json::Value> = finished
            .iter()
            .map(|j| json!({"id": j.id, "token": j.token}))
            .collect();
        let body = json!({"limit": args.claim_limit, "lease_ms": args.lease_ms,
                          "wait_ms": CLAIM_WAIT_MS, "complete": complete})
        .to_string();
        let r = shared
            .http
            .post(&claim_url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        out.claim_requests += 1;
        let r = match r {
            Ok(r) if r.status().as_u16() == 200 => r,
            Ok(r) if r.status().as_u16() == 204 => continue,
            _ => {
                // The completions, if any, are sent again with the next claim.
                out.errors += 1;
                continue;
            }
        };
        let jobs: Vec<Claimed> = r
            .json::<ClaimedAndCompleted>()
            .await
            .ok()
            .map(|answer| {
                let done = std::mem::take(&mut finished);
                for (job, result) in done.iter().zip(&answer.completed) {
                    if job.id == result.id {
                        completed(&shared, &progress, job, result.status, &mut out);
                    }
                }
                answer.jobs
            })
            .unwrap_or_else(|| {
                out.errors += 1;
                Vec::new()
            });
        if jobs.is_empty() {
            continue;
        }
        out.claim_latency
            .saturating_record(sent.elapsed().as_micros() as u64);
        out.claims_with_jobs += 1;
        for job in jobs {
            out.jobs_claimed += 1;
            out.reclaimed += u64::from(job.attempt > 1);
            if rand::thread_rng().gen_bool(args.crash_rate) {
                // A crashed worker: no heartbeat, no completion; the lease will run out.
                out.abandoned += 1;
                continue;
            }
            if args.work_ms > 0 {
                tokio::time::sleep(Duration::from_millis(args.work_ms)).await;
            }
            finished.push(job);
        }
    }
    // Whatever is still finished but not acknowledged (the run ended, or stalled).
    if !finished.is_empty() {
        let url = format!("{}/queues/{}/complete", shared.bases.next(), shared.queue);
        let complete: Vec<serde_json::Value> = finished
            .iter()
            .map(|j| json!({"id": j.id, "token": j.token}))
            .collect();
        let answer = async {
            let r = shared
                .http
                .post(url)
                .json(&json!({ "jobs": complete }))
                .send()
                .await
                .ok()?;
            r.json::<serde_json::Value>().await.ok()
        }
        .await;
        let results: Vec<ItemResult> = answer
            .and_then(|a| serde_json::from_value(a["results"].clone()).ok())
            .unwrap_or_default();
        for (job, result) in finished.iter().zip(&results) {
            completed(&shared, &progress, job, result.status, &mut out);
        }
        out.errors += (finished.len() - results.len().min(finished.len())) as u64;
    }
    Ok(out)
}

/// Records the answer to the completion of `job`.
fn completed(
    shared: &Shared,
    progress: &Progress,
    job: &Claimed,
    status: u16,
    out: &mut WorkerOut,
) {
    progress.record(status == 200);
    match status {
        200 => {
            let now_us = shared.started.elapsed().as_micros() as u64;
            out.end_to_end
                .saturating_record(now_us.saturating_sub(job.payload.enqueued_us));
            out.completed.push(job.id);
            let _ = shared.completed.fetch_add(1, Ordering::Relaxed);
            let _ = shared
                .last_completion_us
                .fetch_max(now_us, Ordering::Relaxed);
        }
        409 => out.stale_completions += 1,
        _ => out.errors += 1,
    }
}

/// Collects per-worker results into one.
pub(crate) fn merge(outs: Vec<WorkerOut>) -> Result<WorkerOut> {
    let mut outs = outs.into_iter();
    let mut all = outs.next().context("no workers")?;
    for o in outs {
        all.completed.extend(o.completed);
        all.claim_requests += o.claim_requests;
        all.claims_with_jobs += o.claims_with_jobs;
        all.jobs_claimed += o.jobs_claimed;
        all.reclaimed += o.reclaimed;
        all.abandoned += o.abandoned;
        all.stale_completions += o.stale_completions;
        all.errors += o.errors;
        all.claim_latency.add(&o.claim_latency)?;
        all.end_to_end.add(&o.end_to_end)?;
    }
    Ok(all)
}
