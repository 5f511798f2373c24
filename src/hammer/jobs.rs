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

pub mod worker;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use super::report::Percentiles;
use super::{HammerArgs, Verdict};
use worker::Shared;

/// What `rowlock hammer` loads: counters (the default), the job queue, or multi-row
/// transactions (transfers between accounts, orders taking stock; see `hammer::transfer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    #[default]
    Counters,
    Jobs,
    Transfer,
    Order,
}

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
    fn default() -> Self {
        Self {
            workers: 16,
            jobs: 10_000,
            claim_limit: 1,
            crash_rate: 0.0,
            lease_ms: 1000,
            work_ms: 0,
            preload: false,
            queue: None,
        }
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=0.5).contains(&r) => Ok(r),
        _ => Err("--crash-rate must be between 0 and 0.5".into()),
    }
}

/// What a job run measured and concluded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobsReport {
    pub queue: String,
    pub workers: u32,
    pub jobs: u64,
    pub claim_limit: u32,
    pub crash_rate: f64,
    pub elapsed_secs: f64,
    pub claim_requests: u64,
    pub claims_per_sec: f64,
    pub jobs_per_sec: f64,
    pub jobs_claimed: u64,
    pub abandoned: u64,
    pub reclaimed: u64,
    pub stale_completions: u64,
    pub errors: u64,
    pub claim_latency_ms: Percentiles,
    pub end_to_end_ms: Percentiles,
    pub completed_twice: Vec<i64>,
    pub lost: Vec<i64>,
    /// The server's counts for the queue after the run.
    pub server_counts: serde_json::Value,
    pub verdict: Verdict,
}

impl std::fmt::Display for JobsReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (c, e) = (&self.claim_latency_ms, &self.end_to_end_ms);
        writeln!(f, "rowlock hammer — jobs on queue '{}'", self.queue)?;
        writeln!(
            f,
            "  {} workers, {} jobs, claim limit {}, crash rate {}",
            self.workers, self.jobs, self.claim_limit, self.crash_rate
        )?;
        writeln!(
            f,
            "  {:.2} s: {:.0} jobs/s, {:.0} claims/s ({} claim requests)",
            self.elapsed_secs, self.jobs_per_sec, self.claims_per_sec, self.claim_requests
        )?;
        writeln!(
            f,
            "  claimed {}, abandoned {}, reclaimed after a lost lease {}, stale completions {}, errors {}",
            self.jobs_claimed, self.abandoned, self.reclaimed, self.stale_completions, self.errors
        )?;
        writeln!(
            f,
            "  claim latency ms: p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
            c.p50, c.p90, c.p99, c.max
        )?;
        writeln!(
            f,
            "  end-to-end ms:    p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
            e.p50, e.p90, e.p99, e.max
        )?;
        writeln!(f, "  server counts: {}", self.server_counts)?;
        write!(
            f,
            "  exactly once: {} completed twice, {} lost → {}",
            self.completed_twice.len(),
            self.lost.len(),
            self.verdict
        )
    }
}

/// Runs the job workload and its verification; prints nothing.
pub async fn execute(args: &HammerArgs) -> Result<JobsReport> {
    args.validate()?;
    let jobs = args.jobs.clone();
    let queue = jobs
        .queue
        .clone()
        .unwrap_or_else(|| format!("hammer-{:08x}", rand::random::<u32>()));
    let connections = jobs.workers as usize * 2;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .timeout(args.timeout)
        .build()
        .context("cannot build the HTTP client")?;
    let shared = Arc::new(Shared {
        http,
        bases: args.bases(),
        queue: queue.clone(),
        args: jobs.clone(),
        started: Instant::now(),
        completed: AtomicU64::new(0),
        last_completion_us: AtomicU64::new(0),
    });
    let producers = (jobs.workers as usize).clamp(1, 32);
    let mut enqueued = Vec::new();
    if jobs.preload {
        enqueued = worker::enqueue(&shared, 0, jobs.jobs, producers).await?;
    }
    // Abandoned jobs come back after their lease; give up once nothing completed for this long.
    let stall = Duration::from_millis(jobs.lease_ms * 5).max(Duration::from_secs(15));
    let started = Instant::now();
    let workers: Vec<_> = (0..jobs.workers)
        .map(|_| tokio::spawn(worker::work(shared.clone(), stall)))
        .collect();
    if !jobs.preload {
        enqueued = worker::enqueue(&shared, 0, jobs.jobs, producers).await?;
    }
    let mut outs = Vec::new();
    for w in workers {
        outs.push(w.await??);
    }
    let last_us = shared
        .last_completion_us
        .load(std::sync::atomic::Ordering::Relaxed);
    let start_us = started.duration_since(shared.started).as_micros() as u64;
    let elapsed_secs = (last_us.saturating_sub(start_us) as f64 / 1e6).max(1e-6);
    let out = worker::merge(outs)?;
    let (completed_twice, lost) = worker::exactly_once(&enqueued, &out.completed);
    let server_counts = server_counts(&shared).await?;
    let server_agrees = server_counts["completed"].as_u64() == Some(jobs.jobs)
        && ["queued", "running", "dead"]
            .iter()
            .all(|s| server_counts[s].as_u64() == Some(0));
    let passed = completed_twice.is_empty()
        && lost.is_empty()
        && out.completed.len() as u64 == jobs.jobs
        && server_agrees;
    Ok(JobsReport {
        queue,
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

/// `GET /queues/{queue}` → its counts by state.
async fn server_counts(shared: &Shared) -> Result<serde_json::Value> {
    let url = format!("{}/queues/{}", shared.bases.next(), shared.queue);
    let stats: serde_json::Value = shared.http.get(url).send().await?.json().await?;
    Ok(stats["counts"].clone())
}

/// Runs, prints the report, writes `--json`; exit code 0 when every job completed exactly once.
pub async fn run(args: HammerArgs) -> Result<std::process::ExitCode> {
    let report = execute(&args).await?;
    println!("{report}");
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(match report.verdict {
        Verdict::Pass => std::process::ExitCode::SUCCESS,
        _ => std::process::ExitCode::from(1),
    })
}
