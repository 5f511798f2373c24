//! The one shape of every workload of the hammer — it prepares what it loads, loads it, and
//! verifies that nothing was lost — and the one runner and exit path they all go through.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::Serialize;

use super::load::{Budget, Progress, Stop};
use super::{client, progress, HammerArgs, Verdict};

/// One workload: `--workload counters`, `jobs`, or `transfer`/`order`.
pub(crate) trait Workload: Sized + Send + Sync {
    /// What the load produced, before verification.
    type Output: Send;
    /// What the run measured and concluded.
    type Report: Report;

    /// Sets up what the run loads and reads its state before the run.
    fn prepare(
        args: &HammerArgs,
        http: &reqwest::Client,
    ) -> impl Future<Output = Result<Self>> + Send;

    /// When the load stops issuing requests (and what the progress bar counts to).
    fn stop(&self, args: &HammerArgs) -> Stop {
        Stop::of(args)
    }

    /// The load itself: virtual clients until the budget's stop, each request counted in its
    /// progress.
    fn load(
        &self,
        args: &HammerArgs,
        budget: Budget,
    ) -> impl Future<Output = Result<Self::Output>> + Send;

    /// Reads the state after the run, checks it against what the load saw, and reports.
    fn verify(
        self,
        args: &HammerArgs,
        out: Self::Output,
    ) -> impl Future<Output = Result<Self::Report>> + Send;
}

/// A workload's report: printed, written as `--json`, and judged by its verdict.
pub(crate) trait Report: Display + Serialize {
    fn verdict(&self) -> Verdict;

    /// The `--chart` SVG, for a workload that draws one.
    fn chart(&self, _args: &HammerArgs) -> Option<String> {
        None
    }
}

/// Prepares, loads (with the progress bar unless `--no-progress`) and verifies workload `W`;
/// prints nothing else. Tests and the benchmark call this in-process.
pub(crate) async fn execute<W: Workload>(args: &HammerArgs) -> Result<W::Report> {
    args.validate()?;
    let http = client::http(args)?;
    let workload = W::prepare(args, &http).await?;
    let stop = workload.stop(args);
    let progress = Arc::new(Progress::default());
    let bar = (!args.no_progress).then(|| progress::Bar::start(progress.clone(), stop));
    let out = workload.load(args, Budget { stop, progress }).await;
    if let Some(bar) = bar {
        bar.finish().await;
    }
    workload.verify(args, out?).await
}

/// Runs workload `W`, prints its report, writes `--json` (and `--chart`), and exits 0 on PASS,
/// 1 on FAIL and 2 on INCONCLUSIVE.
pub(crate) async fn run<W: Workload>(args: &HammerArgs) -> Result<ExitCode> {
    let report = execute::<W>(args).await?;
    println!("{report}");
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let (Some(path), Some(svg)) = (&args.chart, report.chart(args)) {
        std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(match report.verdict() {
        Verdict::Pass => ExitCode::SUCCESS,
        Verdict::Fail => ExitCode::from(1),
        Verdict::Inconclusive => ExitCode::from(2),
    })
}
