//! `rowlock bench` (hidden; run through `bench/run.sh`): rowlock against the best possible client
//! of the same database, in one run on this machine.
//!
//! It starts a throwaway, durable PostgreSQL (the module the tests use), creates one hot counter
//! and 10,000 spread ones, starts `rowlock serve` on it (one per pool size and group-commit
//! setting), and for each workload and client count runs pgbench with rowlock's own transaction
//! (once), then `rowlock hammer` (in-process) and then `wrk` with the same workload, concurrency
//! and duration. Before every run the table is vacuumed and a checkpoint taken, so that neither
//! side inherits the other's dead rows or pays for its checkpoint.

mod counters;
pub mod cpu;
pub mod groups;
pub mod jobs;
pub mod measure;
pub mod pgbench;
mod scaleout;
pub mod scripts;
pub mod server;
pub mod table;
pub mod targets;
pub mod transfer;
mod transfer_table;
pub mod wrk;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::hammer::{self, Verdict};
use crate::local_cluster::{Durability, LocalCluster};
use table::Row;

const DATABASE: &str = "rowlock_bench";
const HOT: &str = "hot";
const SPREAD_PREFIX: &str = "spread";
/// Spread counters; `bench/spread.sql` picks `random(0, 9999)`.
const SPREAD: u32 = 10_000;

/// The two workloads of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Workload {
    /// Every client increments the one counter `hot`.
    Hot,
    /// Each increment goes to a random one of `spread-0` … `spread-9999`.
    Spread,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Self::Hot => "hot",
            Self::Spread => "spread",
        }
    }
}

/// `rowlock serve --group-commit on|off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum GroupSetting {
    On,
    Off,
}

impl GroupSetting {
    pub fn enabled(self) -> bool {
        self == Self::On
    }
}

/// Options of `rowlock bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// How long each pgbench and each hammer run lasts.
    #[arg(long, default_value = "10s", value_parser = hammer::args::parse_duration)]
    pub duration: Duration,
    /// Client counts (pgbench clients = hammer concurrency).
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pub clients: Vec<usize>,
    #[arg(long, value_delimiter = ',', value_enum, default_value = "hot,spread")]
    pub workloads: Vec<Workload>,
    /// rowlock pool sizes; each gets its own `rowlock serve` (a sweep when several are given).
    #[arg(long, value_delimiter = ',', default_value = "32")]
    pub pool_size: Vec<usize>,
    /// Group-commit settings of `rowlock serve`; each (pool size × setting) gets its own server
    /// (pgbench still runs once per workload and client count).
    #[arg(long, value_delimiter = ',', value_enum, default_value = "on,off")]
    pub group_commit: Vec<GroupSetting>,
    /// HTTP workers of `rowlock serve` (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Skip pgbench (for sweeps of rowlock's own settings).
    #[arg(long)]
    pub skip_pgbench: bool,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// The rowlock binary to serve with (default: this one).
    #[arg(long)]
    pub rowlock_bin: Option<PathBuf>,
    /// Benchmark job claims (claim+complete at limit 1 and 10 vs pgbench) instead of counters.
    #[arg(long)]
    pub jobs: bool,
    /// Benchmark transfers between random pairs of 1,000 accounts (rowlock `POST /transactions`
    /// vs pgbench's `bench/transfer.sql`) instead of counters.
    #[arg(long, conflicts_with = "jobs")]
    pub transfers: bool,
    /// Benchmark counters through pgbouncer in transaction mode (one instance direct, one and
    /// three behind pgbouncer, side by side) instead of rowlock against pgbench.
    #[arg(long, conflicts_with_all = ["jobs", "transfers"])]
    pub pgbouncer: bool,
}

/// The JSON written under `bench/results/`.
#[derive(Debug, Serialize)]
struct Results {
    unix_time: u64,
    duration_secs: f64,
    cpus: usize,
    workers: usize,
    rows: Vec<Row>,
    targets: Vec<targets::Target>,
    /// VmHWM of each `rowlock serve` at its end.
    rowlock_peak_rss_mib: Vec<Peak>,
    /// How busy the machine was just before the benchmark started.
    background_busy_pct: f64,
}

/// The peak resident memory of one `rowlock serve`.
#[derive(Debug, Serialize)]
struct Peak {
    pool_size: usize,
    group_commit: bool,
    vm_hwm_mib: f64,
}

/// Runs the whole benchmark and prints the table; fails if any verification failed.
pub async fn run(args: BenchArgs) -> Result<ExitCode> {
    if args.jobs {
        return jobs::run(&args).await;
    }
    if args.transfers {
        return transfer::run(&args).await;
    }
    if args.pgbouncer {
        return scaleout::run(&args).await;
    }
    let binary = rowlock_binary(&args)?;
    std::fs::create_dir_all(&args.out)?;
    let background = cpu::background_busy(Duration::from_secs(2)).await;
    if background > 0.10 {
        eprintln!(
            "warning: the machine is already {:.0}% busy; the figures will be depressed",
            background * 100.0
        );
    }
    let work_dir = tempdir()?;
    eprintln!("starting a throwaway PostgreSQL …");
    let cluster =
        tokio::task::spawn_blocking(|| LocalCluster::start_throwaway(Durability::Durable))
            .await??;
    let url = cluster.url(DATABASE);
    let outcome = counters::run_on(&args, &binary, &cluster, &url, &work_dir).await;
    tokio::task::spawn_blocking(move || cluster.stop()).await?;
    let _ = std::fs::remove_dir_all(&work_dir);
    let mut results = outcome?;
    results.background_busy_pct = background * 100.0;

    println!("\n{}", table::render(&results.rows));
    println!("{}", table::render_cpu(&results.rows));
    for t in &results.targets {
        println!("{}", t.line());
    }
    let path = args.out.join(format!("bench-{}.json", results.unix_time));
    let json = serde_json::to_string_pretty(&results)? + "\n";
    std::fs::write(&path, &json)?;
    std::fs::write(args.out.join("latest.json"), &json)?;
    println!("results written to {}", path.display());
    Ok(if all_passed(&results.rows) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("rowlock-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Whether every row's verifications (the hammer's and wrk's) passed.
pub fn all_passed(rows: &[Row]) -> bool {
    rows.iter().all(|r| {
        r.verification == Verdict::Pass.to_string()
            && r.wrk.as_ref().is_none_or(|w| w.verification == "PASS")
    })
}

/// The rowlock binary to serve with: `--rowlock-bin`, else this one.
pub fn rowlock_binary(args: &BenchArgs) -> Result<PathBuf> {
    match &args.rowlock_bin {
        Some(b) => Ok(b.clone()),
        None => std::env::current_exe().context("cannot locate the rowlock binary"),
    }
}

/// The group-commit setting of servers that do not sweep it (the jobs benchmark): the first.
pub fn first_group_setting(args: &BenchArgs) -> bool {
    args.group_commit.first().is_none_or(|g| g.enabled())
}
