//! `rowlock bench counters`: for each `rowlock serve` (pool size × group-commit setting),
//! workload and client count, pgbench (once per workload and client count), the hammer and wrk.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use super::measure;
use super::pgbench::{self, PgbenchResult};
use super::server::Server;
use super::session::{self, Session};
use super::table::{self, on_off, Row};
use super::wrk::{self, Script};
use super::{cpu, mib, targets, BenchArgs, Workload};
use super::{DATABASE, HOT, SPREAD, SPREAD_PREFIX};
use crate::hammer::{self, HammerArgs, LockArg, Verdict};

/// The JSON written to `bench/results/bench-<unix time>.json`.
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

/// Runs the counter benchmark, prints its tables and writes its JSON.
pub(crate) async fn run(args: &BenchArgs) -> Result<std::process::ExitCode> {
    let background = cpu::background_busy(Duration::from_secs(2)).await;
    if background > 0.10 {
        eprintln!(
            "warning: the machine is already {:.0}% busy; the figures will be depressed",
            background * 100.0
        );
    }
    let mut results = session::run_in(args, "counters", async |s| run_on(args, s).await).await?;
    results.background_busy_pct = background * 100.0;
    println!("\n{}", table::render(&results.rows));
    println!("{}", table::render_cpu(&results.rows));
    for t in &results.targets {
        println!("{}", t.line());
    }
    session::write_results(&args.out, "bench", results.unix_time, &results)?;
    Ok(session::exit_code(all_passed(&results.rows)))
}

/// Whether every row's verifications (the hammer's and wrk's) passed.
fn all_passed(rows: &[Row]) -> bool {
    rows.iter().all(|r| {
        r.verification == Verdict::Pass.to_string()
            && r.wrk.as_ref().is_none_or(|w| w.verification == "PASS")
    })
}

/// Creates the counters, then measures every server, workload and client count.
async fn run_on(args: &BenchArgs, session: &Session) -> Result<Results> {
    let admin = create_counters(session).await?;
    let target = session.pgbench_target(DATABASE);
    let url = session.cluster.url(DATABASE);
    let wrk = measure::find_wrk();

    let mut rows = Vec::new();
    let mut peaks = Vec::new();
    let mut baseline = HashMap::new();
    for &pool_size in &args.pool_size {
        for &group in &args.group_commit {
            let group_commit = group.enabled();
            let name = format!("serve-{pool_size}-{}", on_off(group_commit));
            let server = session
                .serve(&url, pool_size, group_commit, &name, &[])
                .await?;
            let run = Run {
                args,
                admin: &admin,
                server: &server,
                dir: &session.dir,
                pool_size,
                group_commit,
            };
            for &workload in &args.workloads {
                for &clients in &args.clients {
                    let key = (workload, clients);
                    if !args.skip_pgbench && !baseline.contains_key(&key) {
                        let _ =
                            baseline.insert(key, run.pgbench(&target, workload, clients).await?);
                    }
                    let mut row = run.hammer(workload, clients, baseline.get(&key)).await?;
                    if let Some(wrk) = &wrk {
                        row.wrk = Some(run.wrk(wrk, workload, clients).await?);
                    }
                    rows.push(row);
                }
            }
            peaks.push(Peak {
                pool_size,
                group_commit,
                vm_hwm_mib: mib(server.memory().hwm_kib),
            });
            server.stop().await?;
        }
    }
    let max_clients = args.clients.iter().copied().max().unwrap_or(0);
    let peak = peaks.iter().map(|p| p.vm_hwm_mib).fold(0.0, f64::max);
    let targets = targets::targets(&rows, max_clients, peak);
    Ok(Results {
        unix_time: session::unix_time(),
        duration_secs: args.duration.as_secs_f64(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        workers: args.workers,
        rows,
        targets,
        rowlock_peak_rss_mib: peaks,
        background_busy_pct: 0.0,
    })
}

/// Creates the benchmark database, its schema and the counters: `hot` and the spread ones.
pub(super) async fn create_counters(session: &Session) -> Result<tokio_postgres::Client> {
    let admin = session.database(DATABASE).await?;
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
    Ok(admin)
}

/// The runs against one `rowlock serve`.
struct Run<'a> {
    args: &'a BenchArgs,
    admin: &'a tokio_postgres::Client,
    server: &'a Server,
    dir: &'a std::path::Path,
    pool_size: usize,
    group_commit: bool,
}

impl Run<'_> {
    /// pgbench with rowlock's own transaction, verified by the counters' total change.
    async fn pgbench(
        &self,
        target: &pgbench::Target<'_>,
        workload: Workload,
        clients: usize,
    ) -> Result<PgbenchResult> {
        settle(self.admin).await?;
        eprintln!("pgbench  {:<6} {clients:>3} clients …", workload.name());
        let before = total(self.admin).await?;
        let cpu_before = cpu::Snapshot::take(Some(self.server.pid()));
        let duration = self.args.duration;
        let mut result = pgbench::run(target, workload, clients, duration, self.dir).await?;
        result.cpu = cpu::Snapshot::take(Some(self.server.pid())).since(
            &cpu_before,
            result.transactions,
            true,
        );
        result.delta = total(self.admin).await? - before;
        Ok(result)
    }

    /// `rowlock hammer` in-process, with the group sizes of its run.
    async fn hammer(
        &self,
        workload: Workload,
        clients: usize,
        pgbench: Option<&PgbenchResult>,
    ) -> Result<Row> {
        settle(self.admin).await?;
        eprintln!(
            "rowlock  {:<6} {clients:>3} clients, pool {}, group {} …",
            workload.name(),
            self.pool_size,
            on_off(self.group_commit)
        );
        let args = hammer_args(&self.server.url, workload, clients, self.args);
        // Per HTTP request: the increments and the hammer's reads of every counter before and
        // after the run (10,000 each for spread) all cost CPU.
        let requests = |r: &hammer::Report| r.requests + 2 * r.verification.sum.counters;
        let (report, server) =
            measure::around(self.server, hammer::execute(&args), requests).await?;
        Ok(Row {
            workload: workload.name().into(),
            clients,
            pool_size: self.pool_size,
            group_commit: self.group_commit,
            ratio: pgbench.map(|p| report.throughput / p.tps),
            pgbench: pgbench.cloned(),
            rowlock_rps: report.throughput,
            rowlock_p50_ms: report.latency_ms.p50,
            rowlock_p99_ms: report.latency_ms.p99,
            verification: report.verification.verdict.to_string(),
            rowlock_errors: report.requests - report.statuses.ok,
            server,
            wrk: None,
            hammer: hammer::Report {
                // The per-second timeline is noise in the table's JSON.
                timeline: Vec::new(),
                ..report
            },
        })
    }

    /// wrk with the same workload, verified by the counters' total change.
    async fn wrk(&self, wrk: &Path, workload: Workload, clients: usize) -> Result<wrk::WrkResult> {
        settle(self.admin).await?;
        eprintln!("wrk      {:<6} {clients:>3} connections …", workload.name());
        let script = match workload {
            Workload::Hot => Script::Hot,
            Workload::Spread => Script::Spread,
        };
        let before = total(self.admin).await?;
        let duration = self.args.duration;
        let mut result =
            measure::wrk_run(wrk, self.server, script, clients, duration, self.dir).await?;
        result.delta = measure::settled(|| total(self.admin)).await? - before;
        result.verification = wrk::verify_counters(&result, clients).into();
        Ok(result)
    }
}

pub(super) fn hammer_args(
    url: &str,
    workload: Workload,
    clients: usize,
    args: &BenchArgs,
) -> HammerArgs {
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

/// Leaves no dead rows and no pending checkpoint to the next run.
pub(super) async fn settle(admin: &tokio_postgres::Client) -> Result<()> {
    admin.batch_execute("VACUUM counters").await?;
    admin.batch_execute("CHECKPOINT").await?;
    Ok(())
}

/// The counters' total.
pub(super) async fn total(admin: &tokio_postgres::Client) -> Result<i64> {
    let row = admin
        .query_one("SELECT sum(value)::bigint FROM counters", &[])
        .await?;
    Ok(row.get(0))
}
