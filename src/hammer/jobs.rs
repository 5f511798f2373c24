//! `rowlock hammer --workload jobs`: the job queue under load, verified.
//!
//! It enqueues `--jobs` jobs on a fresh queue (in batches of 100), runs `--workers` workers that
//! claim (up to `--claim-limit` at a time), "work" and complete — each claim carries the
//! completions of the jobs the worker finished since its last one, so a worker makes one request
//! per batch — abandoning a share `--crash-rate` of their
//! claims so that those are claimed again after `--lease-ms` — and checks at the end that every
//! job was completed exactly once: no job completed twice, none lost, and the server agrees
//! (the queue holds `--jobs` completed jobs and nothing else). It reports claims/s, jobs/s and
//! the claim and end-to-end (enqueue → completion) latency percentiles.

pub mod report;
pub(crate) mod worker;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;

use super::load::{run_clients, Budget, Stop};
use super::report::Percentiles;
use super::workload;
use super::{HammerArgs, Verdict};
pub use report::JobsReport;
use worker::{Shared, WorkerOut};

/// Options of the job workload (`--workload jobs`).
#[derive(Debug, Clone, Args)]
pub struct JobsArgs {
    /// Job workers claiming at once.
    #[arg(long, env = "ROWLOCK_HAMMER_WORKERS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub workers: u32,
    /// Jobs to enqueue and complete.
    #[arg(long = "jobs", env = "ROWLOCK_HAMMER_JOBS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub jobs: u64,
    /// Jobs one claim may take (`limit`).
    #[arg(long, env = "ROWLOCK_HAMMER_CLAIM_LIMIT", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub claim_limit: u32,
    /// Share of claimed jobs a worker abandons (no heartbeat, no completion), 0 … 0.5.
    #[arg(long, env = "ROWLOCK_HAMMER_CRASH_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub crash_rate: f64,
    /// Lease of each claim: how soon an abandoned job is claimable again.
    #[arg(long, env = "ROWLOCK_HAMMER_LEASE_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub lease_ms: u64,
    /// Simulated work per job.
    #[arg(long, env = "ROWLOCK_HAMMER_WORK_MS", default_value_t = 0)]
    pub work_ms: u64,
    /// Enqueue every job before the workers start (measures claiming alone).
    #[arg(long, env = "ROWLOCK_HAMMER_PRELOAD")]
    pub preload: bool,
    /// Queue to use (default: a fresh `hammer-<random>`, so earlier runs cannot interfere).
    #[arg(long, env = "ROWLOCK_HAMMER_QUEUE")]
    pub queue: Option<String>,
}

impl Default for JobsArgs {
    /// The command line's defaults.
    fn default() -> Self {
        crate::cli::defaults()
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=0.5).contains(&r) => Ok(r),
        _ => Err("--crash-rate must be between 0 and 0.5".into()),
    }
}

/// A fresh queue, shared by the workers, and the jobs enqueued before they started.
pub struct Jobs {
    shared: Arc<Shared>,
    preloaded: Vec<i64>,
}

/// What the workers saw, and the jobs enqueued while they ran.
pub struct Output {
    workers: WorkerOut,
    enqueued: Vec<i64>,
    /// From the workers' start to the last completion.
    elapsed_secs: f64,
}

impl Jobs {
    /// Producers enqueueing at once.
    fn producers(&self) -> usize {
        (self.shared.args.workers as usize).clamp(1, 32)
    }
}

impl workload::Workload for Jobs {
    type Output = Output;
    type Report = JobsReport;

    async fn prepare(args: &HammerArgs, http: &reqwest::Client) -> Result<Self> {
        let jobs = args.jobs.clone();
        let queue = jobs
            .queue
            .clone()
            .unwrap_or_else(|| format!("hammer-{:08x}", rand::random::<u32>()));
        let preload = jobs.preload;
        let total = jobs.jobs;
        let this = Self {
            shared: Arc::new(Shared {
                http: http.clone(),
                bases: args.bases(),
                queue,
                args: jobs,
                started: Instant::now(),
                completed: AtomicU64::new(0),
                last_completion_us: AtomicU64::new(0),
            }),
            preloaded: Vec::new(),
        };
        if !preload {
            return Ok(this);
        }
        let preloaded = worker::enqueue(&this.shared, 0, total, this.producers()).await?;
        Ok(Self { preloaded, ..this })
    }

    /// The bar counts completions up to `--jobs`; the workers stop once all are completed.
    fn stop(&self, _args: &HammerArgs) -> Stop {
        Stop::Requests(self.shared.args.jobs)
    }

    async fn load(&self, _args: &HammerArgs, budget: Budget) -> Result<Output> {
        let progress = budget.progress;
        let shared = &self.shared;
        let jobs = &shared.args;
        // Abandoned jobs come back after their lease; give up once nothing completed for this long.
        let stall = Duration::from_millis(jobs.lease_ms * 5).max(Duration::from_secs(15));
        let started = Instant::now();
        let workers = run_clients(jobs.workers as usize, |_| {
            worker::work(shared.clone(), progress.clone(), stall)
        });
        let (workers, enqueued) = if jobs.preload {
            (workers.await?, Vec::new())
        } else {
            // Enqueue while the workers claim.
            let enqueue = worker::enqueue(shared, 0, jobs.jobs, self.producers());
            let (workers, enqueued) = tokio::join!(workers, enqueue);
            (workers?, enqueued?)
        };
        let last_us = shared.last_completion_us.load(Ordering::Relaxed);
        let start_us = started.duration_since(shared.started).as_micros() as u64;
        Ok(Output {
            workers: worker::merge(workers)?,
            enqueued,
            elapsed_secs: (last_us.saturating_sub(start_us) as f64 / 1e6).max(1e-6),
        })
    }

    async fn verify(self, _args: &HammerArgs, out: Output) -> Result<JobsReport> {
        let (shared, jobs) = (&self.shared, &self.shared.args);
        let enqueued = [self.preloaded, out.enqueued].concat();
        let (elapsed_secs, out) = (out.elapsed_secs, out.workers);
        let (completed_twice, lost) = exactly_once(&enqueued, &out.completed);
        let server_counts = server_counts(shared).await?;
        let server_agrees = server_counts["completed"].as_u64() == Some(jobs.jobs)
            && ["queued", "running", "dead"]
                .iter()
                .all(|s| server_counts[s].as_u64() == Some(0));
        let passed = completed_twice.is_empty()
            && lost.is_empty()
            && out.completed.len() as u64 == jobs.jobs
            && server_agrees;
        Ok(JobsReport {
            queue: shared.queue.clone(),
            workers: jobs.workers,
            jobs: jobs.jobs,
            claim_limit: jobs.claim_limit,
            crash_rate: jobs.crash_rate,
            elapsed_secs,
            claim_requests: out.claim_requests,
            claims_per_sec: out.claims_with_jobs as f64 / elapsed_secs,
            jobs_per_sec: out.completed.len() as f64 / elapsed_secs,
            jobs_claimed: out.jobs_claimed,
            abandoned: out.abandoned,
            reclaimed: out.reclaimed,
            stale_completions: out.stale_completions,
            errors: out.errors,
            claim_latency_ms: Percentiles::of(&out.claim_latency),
            end_to_end_ms: Percentiles::of(&out.end_to_end),
            completed_twice,
            lost,
            server_counts,
            verdict: if passed { Verdict::Pass } else { Verdict::Fail },
        })
    }
}

/// Runs the job workload and its verification and returns the report.
pub async fn execute(args: &HammerArgs) -> Result<JobsReport> {
    workload::execute::<Jobs>(args).await
}

/// `GET /queues/{queue}` → its counts by state.
async fn server_counts(shared: &Shared) -> Result<serde_json::Value> {
    let url = format!("{}/queues/{}", shared.bases.next(), shared.queue);
    let stats: serde_json::Value = shared.http.get(url).send().await?.json().await?;
    Ok(stats["counts"].clone())
}

/// Ids completed more than once, and enqueued ids never completed.
fn exactly_once(enqueued: &[i64], completed: &[i64]) -> (Vec<i64>, Vec<i64>) {
    let mut counts = std::collections::HashMap::<i64, u32>::new();
    for id in completed {
        *counts.entry(*id).or_default() += 1;
    }
    let mut twice: Vec<i64> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    let mut lost: Vec<i64> = enqueued
        .iter()
        .copied()
        .filter(|id| !counts.contains_key(id))
        .collect();
    twice.sort_unstable();
    lost.sort_unstable();
    (twice, lost)
}
