//! `rowlock hammer`: the load tool that proves no update was lost.
//!
//! Every workload has one shape ([`workload::Workload`]): it prepares what it loads, loads it with
//! virtual clients (one tokio task each, on one keep-alive HTTP client) until the budget is spent
//! or the deadline passes, waits for every answer, and verifies against the server's state that
//! nothing was lost. One runner drives them all, with one progress bar and one exit path.
//!
//! - [`args`]: the options; [`client`]: the HTTP client and the counter calls;
//! - [`load`]: budgets, progress and virtual clients; [`progress`]: the live progress bar;
//! - [`report`]: what every report is made of; [`workload`]: the trait, the runner, the exit;
//! - the workloads: [`counters`] (the default), [`jobs`] (the job queue) and [`transfer`]
//!   (transfers and orders, multi-row transactions).

pub mod args;
pub(crate) mod client;
pub mod counters;
pub mod jobs;
pub(crate) mod load;
pub(crate) mod progress;
pub mod report;
pub mod transfer;
pub(crate) mod workload;

use std::process::ExitCode;

use anyhow::Result;

pub use args::{HammerArgs, LockArg, WorkloadKind};
pub use counters::linearizable;
pub use counters::report::Report;
pub use report::Verdict;

/// Runs the workload `--workload` names, prints its report, writes `--json`/`--chart`, and
/// exits non-zero unless the verification passed (1 for FAIL, 2 for INCONCLUSIVE).
pub async fn run(args: HammerArgs) -> Result<ExitCode> {
    match args.workload {
        WorkloadKind::Counters => workload::run::<counters::Counters>(&args).await,
        WorkloadKind::Jobs => workload::run::<jobs::Jobs>(&args).await,
        WorkloadKind::Transfer | WorkloadKind::Order => {
            workload::run::<transfer::Transfers>(&args).await
        }
    }
}

/// Runs the counter workload and its verification and returns the report, printing nothing (the
/// progress bar aside, unless `no_progress`).
pub async fn execute(args: &HammerArgs) -> Result<Report> {
    workload::execute::<counters::Counters>(args).await
}
