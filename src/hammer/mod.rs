//! `rowlock hammer`: the load tool that proves no update was lost.
//!
//! It reads every counter it may touch, hammers them with concurrent increments over one
//! keep-alive HTTP client (one task per virtual client), waits for every answer, reads the
//! counters again and checks that their total change equals the increments the server
//! acknowledged — and, with `--check-linearizable`, that the values a hot counter returned form a
//! linearizable history.
//!
//! - [`args`]: the options; [`client`]: the HTTP calls; [`runner`]: the load itself;
//! - [`verify`] and [`linearizable`]: the two checks; [`report`], [`chart`]: the outputs;
//! - [`progress`]: the live progress bar;
//! - [`jobs`] and [`transfer`]: the job-queue and the transfer/order workloads (`--workload`).

pub mod args;
pub mod chart;
pub mod client;
pub mod jobs;
pub mod linearizable;
pub mod progress;
pub mod report;
pub mod runner;
pub mod transfer;
pub mod verify;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};

pub use args::{HammerArgs, LockArg};
pub use report::Report;
pub use verify::Verdict;

use client::Api;
use report::{Config, Percentiles, TimelinePoint, Verification};
use runner::{Progress, Stop};

/// Runs the load and the verification, prints the report, writes `--json`/`--chart`, and exits
/// non-zero unless the verification passed (1 for FAIL, 2 for INCONCLUSIVE).
pub async fn run(args: HammerArgs) -> Result<ExitCode> {
    match args.workload {
        jobs::Workload::Jobs => return jobs::run(args).await,
        jobs::Workload::Transfer | jobs::Workload::Order => return transfer::run(args).await,
        jobs::Workload::Counters => {}
    }
    let report = execute(&args).await?;
    println!("{report}");
    write_outputs(&args, &report)?;
    Ok(match report.verification.verdict {
        Verdict::Pass => ExitCode::SUCCESS,
        Verdict::Fail => ExitCode::from(1),
        Verdict::Inconclusive => ExitCode::from(2),
    })
}

/// Runs the load and the verification and returns the report, printing nothing (the progress
/// bar aside, unless `no_progress`). Tests and the benchmark call this in-process.
pub async fn execute(args: &HammerArgs) -> Result<Report> {
    args.validate()?;
    let names = args.counter_names();
    let api = Api::new(args, &names)?;
    let before = verify::read_or_create_all(&api, &names)
        .await
        .context("cannot read the counters before the run")?;

    let stop = match (args.requests, args.duration) {
        (_, Some(d)) => Stop::Deadline(Instant::now() + d),
        (Some(n), None) => Stop::Requests(n),
        (None, None) => Stop::Requests(args::DEFAULT_REQUESTS),
    };
    let progress = Arc::new(Progress::default());
    let bar = (!args.no_progress).then(|| progress::Bar::start(progress.clone(), stop));
    // The runner owns its own client; the reads before and after use this one.
    let load_api = Api::new(args, &names)?;
    let out = runner::run(args, load_api, stop, progress).await;
    if let Some(bar) = bar {
        bar.finish().await;
    }
    let out = out?;

    let after = verify::read_all(&api, &names)
        .await
        .context("cannot read the counters after the run")?;
    let acknowledged = out.statuses.ok;
    let sum = verify::sum_check(
        &before,
        &after,
        acknowledged,
        args.by,
        out.statuses.unknown_outcomes,
    );
    let linearizability = args
        .check_linearizable
        .then(|| linearizable::check(&out.history, args.by.signum()));
    let elapsed_secs = out.elapsed.as_secs_f64();
    Ok(Report {
        config: Config::from(args),
        elapsed_secs,
        requests: out.statuses.total(),
        acknowledged,
        optimistic_retries: out.optimistic_retries,
        throughput: acknowledged as f64 / elapsed_secs.max(1e-9),
        latency_ms: Percentiles::of(&out.latency),
        verification: Verification::new(
            sum,
            linearizability,
            out.statuses.other_statuses.get(&500).copied().unwrap_or(0),
        ),
        timeline: TimelinePoint::of(&out.timeline),
        statuses: out.statuses,
    })
}

/// Writes the `--json` report and the `--chart` SVG when asked for.
pub fn write_outputs(args: &HammerArgs, report: &Report) -> Result<()> {
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(report)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.chart {
        let title = format!(
            "rowlock hammer: {} clients, lock={}, {}",
            args.concurrency,
            args.lock.query_value().unwrap_or("optimistic"),
            if args.spread > 1 {
                format!("{} counters", args.spread)
            } else {
                format!("counter '{}'", args.counter)
            }
        );
        std::fs::write(path, chart::svg(&title, &report.timeline))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
