//! `rowlock bench` (hidden; run through `bench/run.sh`): rowlock against the best possible client
//! of the same database, in one run on this machine.
//!
//! It starts a throwaway, durable PostgreSQL (the module the tests use), creates one hot counter
//! and 10,000 spread ones, starts `rowlock serve` on it, and for each workload and client count
//! runs pgbench with rowlock's own transaction and then `rowlock hammer` (in-process) with the
//! same workload, concurrency and duration. Before every run the table is vacuumed and a
//! checkpoint taken, so that neither side inherits the other's dead rows or pays for its
//! checkpoint.

pub mod cpu;
pub mod jobs;
pub mod pgbench;
pub mod server;
pub mod table;
pub mod transfer;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::hammer::{self, HammerArgs, LockArg, Verdict};
use crate::local_cluster::{Durability, LocalCluster, SUPERUSER};
use server::Server;
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
}

/// The JSON written under `bench/results/`.
#[derive(Debug, Serialize)]
struct Results {
    unix_time: u64,
    duration_secs: f64,
    cpus: usize,
    workers: usize,
    rows: Vec<Row>,
    targets: Vec<table::Target>,
    /// VmHWM of each `rowlock serve`, by pool size, at its end.
    rowlock_peak_rss_mib: Vec<(usize, f64)>,
    /// How busy the machine was just before the benchmark started.
    background_busy_pct: f64,
}

/// Runs the whole benchmark and prints the table; fails if any verification failed.
pub async fn run(args: BenchArgs) -> Result<ExitCode> {
    if args.jobs {
        return jobs::run(&args).await;
    }
    if args.transfers {
        return transfer::run(&args).await;
    }
    let binary = match &args.rowlock_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("cannot locate the rowlock binary")?,
    };
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
    let outcome = run_on(&args, &binary, &cluster, &url, &work_dir).await;
    tokio::task::spawn_blocking(move || cluster.stop()).await?;
    let _ = std::fs::remove_dir_all(&work_dir);
    let mut results = outcome?;
    results.background_busy_pct = background * 100.0;

    println!("\n{}", table::render(&results.rows));
    println!("{}", table::render_cpu(&results.rows));
    for t in &results.targets {
        println!(
            "[{}] {}: {}",
            if t.met { "met" } else { "NOT MET" },
            t.name,
            t.measured
        );
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

async fn run_on(
    args: &BenchArgs,
    binary: &std::path::Path,
    cluster: &LocalCluster,
    url: &str,
    work_dir: &std::path::Path,
) -> Result<Results> {
    crate::db::ensure_database(&cluster.url("postgres"), DATABASE).await?;
    crate::startup::migrate(url).await?;
    let admin = crate::db::connect(url).await?;
    admin
        .batch_execute(&format!(
            "INSERT INTO counters (name, value) VALUES ('{HOT}', 0);
             INSERT INTO counters (name, value)
               SELECT '{SPREAD_PREFIX}-' || g, 0 FROM generate_series(0, {}) g;",
            SPREAD - 1
        ))
        .await
        .context("cannot create the counters")?;
    // VACUUM cannot share a batch (an implicit transaction) with anything else.
    admin.batch_execute("VACUUM ANALYZE counters").await?;
    let target = pgbench::Target {
        port: cluster.port(),
        user: SUPERUSER,
        database: DATABASE,
    };

    let mut rows = Vec::new();
    let mut peaks = Vec::new();
    let mut baseline = std::collections::HashMap::new();
    for &pool_size in &args.pool_size {
        let log = work_dir.join(format!("serve-{pool_size}.log"));
        let server = Server::start(binary, url, pool_size, args.workers, &log).await?;
        for &workload in &args.workloads {
            for &clients in &args.clients {
                let key = (workload, clients);
                if !args.skip_pgbench && !baseline.contains_key(&key) {
                    settle(&admin).await?;
                    eprintln!("pgbench  {:<6} {clients:>3} clients …", workload.name());
                    let before = total(&admin).await?;
                    let cpu_before = cpu::Snapshot::take(Some(server.pid()));
                    let mut result =
                        pgbench::run(&target, workload, clients, args.duration, work_dir).await?;
                    result.cpu = cpu::Snapshot::take(Some(server.pid())).since(
                        &cpu_before,
                        result.transactions,
                        true,
                    );
                    result.delta = total(&admin).await? - before;
                    baseline.insert(key, result);
                }
                settle(&admin).await?;
                eprintln!(
                    "rowlock  {:<6} {clients:>3} clients, pool {pool_size} …",
                    workload.name()
                );
                let rss = server.sample_rss();
                let cpu_before = cpu::Snapshot::take(Some(server.pid()));
                let report =
                    hammer::execute(&hammer_args(&server.url, workload, clients, args)).await;
                let cpu_after = cpu::Snapshot::take(Some(server.pid()));
                let rss_kib = rss.finish().await;
                let report = report?;
                // Per HTTP request: the increments and the hammer's reads of every counter
                // before and after the run (10,000 each for spread) all cost CPU.
                let reads = 2 * report.verification.sum.counters;
                let cpu = cpu_after.since(&cpu_before, report.requests + reads, false);
                let mut row = row(
                    workload,
                    clients,
                    pool_size,
                    baseline.get(&key),
                    report,
                    rss_kib,
                );
                row.rowlock_cpu = cpu;
                rows.push(row);
            }
        }
        peaks.push((pool_size, mib(server.memory().hwm_kib)));
        server.stop().await?;
    }
    let max_clients = args.clients.iter().copied().max().unwrap_or(0);
    let peak = peaks.first().map_or(0.0, |p| p.1);
    let targets = table::targets(&rows, max_clients, peak);
    Ok(Results {
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        duration_secs: args.duration.as_secs_f64(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        workers: args.workers,
        rows,
        targets,
        rowlock_peak_rss_mib: peaks,
        background_busy_pct: 0.0,
    })
}

fn hammer_args(url: &str, workload: Workload, clients: usize, args: &BenchArgs) -> HammerArgs {
    let mut h = HammerArgs::new(url);
    h.concurrency = clients;
    h.duration = Some(args.duration);
    h.lock = LockArg::Wait;
    match workload {
        Workload::Hot => {
            h.counter = HOT.into();
            h.check_linearizable = true;
        }
        Workload::Spread => {
            h.counter = SPREAD_PREFIX.into();
            h.spread = SPREAD;
        }
    }
    h
}

fn row(
    workload: Workload,
    clients: usize,
    pool_size: usize,
    pgbench: Option<&pgbench::PgbenchResult>,
    report: hammer::Report,
    rss_kib: u64,
) -> Row {
    Row {
        workload: workload.name().into(),
        clients,
        pool_size,
        ratio: pgbench.map(|p| report.throughput / p.tps),
        pgbench: pgbench.cloned(),
        rowlock_rps: report.throughput,
        rowlock_p50_ms: report.latency_ms.p50,
        rowlock_p99_ms: report.latency_ms.p99,
        verification: report.verification.verdict.to_string(),
        rowlock_errors: report.requests - report.statuses.ok,
        rowlock_rss_mib: mib(rss_kib),
        rowlock_cpu: cpu::PerTransaction::default(),
        hammer: hammer::Report {
            // The per-second timeline is noise in the table's JSON.
            timeline: Vec::new(),
            ..report
        },
    }
}

/// Leaves no dead rows and no pending checkpoint to the next run.
async fn settle(admin: &tokio_postgres::Client) -> Result<()> {
    admin.batch_execute("VACUUM counters").await?;
    admin.batch_execute("CHECKPOINT").await?;
    Ok(())
}

async fn total(admin: &tokio_postgres::Client) -> Result<i64> {
    let row = admin
        .query_one("SELECT sum(value)::bigint FROM counters", &[])
        .await?;
    Ok(row.get(0))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("rowlock-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Whether every row's verification passed.
pub fn all_passed(rows: &[Row]) -> bool {
    rows.iter()
        .all(|r| r.verification == Verdict::Pass.to_string())
}
