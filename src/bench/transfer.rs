//! `rowlock bench transfers`: transfers between random pairs of 1,000 accounts, rowlock against
//! pgbench running the same two-row ordered transaction.
//!
//! On a throwaway, durable PostgreSQL with `account-0` … `account-999` (1,000 each, `min: 0`):
//! for each client count, pgbench runs `transfer.sql` ([`super::scripts`]: lock both rows in ascending name
//! order, check the bound, write both, record the transaction) and then `rowlock hammer
//! --workload transfer --accounts 1000` runs the same for the same duration. Balances are reset
//! and the tables vacuumed and checkpointed before each run. Both are measured in transactions
//! that ran to completion per second (refusals of the `min: 0` bound included: they lock and
//! check just the same), and both are verified: the balances' sum must not move. Each
//! group-commit setting gets its own `rowlock serve`; pgbench runs once per client count. After
//! each hammer run, `wrk` posts the same transfers to the same server (verified the same way).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;

use super::measure;
use super::pgbench::{self, PgbenchResult};
use super::server::Server;
use super::session::{self, Session};
use super::table::on_off;
use super::targets::Target;
use super::transfer_table::{self as table, Row};
use super::wrk::{self, Script};
use super::{cpu, mib, BenchArgs};
use crate::hammer::transfer;
use crate::hammer::HammerArgs;
use crate::hammer::WorkloadKind;

const DATABASE: &str = "rowlock_bench_transfers";
/// pgbench's `transfer.sql` picks `random(0, 999)`.
const ACCOUNTS: u32 = 1_000;
const INITIAL: i64 = 1_000;

/// The JSON written to `bench/results/transfers-<unix time>.json`.
#[derive(Debug, Serialize)]
struct Results {
    unix_time: u64,
    duration_secs: f64,
    cpus: usize,
    /// `/proc/loadavg` when the benchmark started: others' work depresses the figures.
    load_average_at_start: String,
    rows: Vec<Row>,
    targets: Vec<Target>,
    /// Every target met.
    target_met: bool,
    /// VmHWM of each `rowlock serve` (one per group-commit setting) at its end, in MiB.
    rowlock_peak_rss_mib: Vec<(bool, f64)>,
}

/// pgbench's run at one client count: its result, transfers committed, verified.
type Baseline = (PgbenchResult, i64, bool);

/// Runs the transfer benchmark, prints its table and writes its JSON; fails if a check failed.
pub(crate) async fn run(args: &BenchArgs) -> Result<ExitCode> {
    let load_average_at_start = load_average();
    let (rows, peaks) = session::run_in(args, "transfers", async |s| run_on(args, s).await).await?;
    println!("\n{}", table::render(&rows));
    println!("{}", table::render_cpu(&rows));
    let peak = peaks.iter().map(|p| p.1).fold(0.0, f64::max);
    let targets = table::targets(&rows, peak);
    for t in &targets {
        println!("{}", t.line());
    }
    let passed = rows.iter().all(Row::passed);
    let results = Results {
        unix_time: session::unix_time(),
        duration_secs: args.duration.as_secs_f64(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average_at_start,
        rows,
        target_met: targets.iter().all(|t| t.met),
        targets,
        rowlock_peak_rss_mib: peaks,
    };
    session::write_results(&args.out, "transfers", results.unix_time, &results)?;
    Ok(session::exit_code(passed))
}

/// The rows, and each server's (group commit, VmHWM MiB).
async fn run_on(args: &BenchArgs, session: &Session) -> Result<(Vec<Row>, Vec<(bool, f64)>)> {
    let url = session.cluster.url(DATABASE);
    let admin = session.database(DATABASE).await?;
    admin
        .batch_execute(&format!(
            "INSERT INTO counters (name, value, min)
               SELECT 'account-' || g, {INITIAL}, 0 FROM generate_series(0, {}) g",
            ACCOUNTS - 1
        ))
        .await
        .context("cannot create the accounts")?;
    let target = session.pgbench_target(DATABASE);
    let dir = session.dir.as_path();
    let wrk = measure::find_wrk();
    let pool_size = args.pool_size.first().copied().unwrap_or(32);
    let mut baseline: HashMap<usize, Baseline> = HashMap::new();
    let (mut rows, mut peaks) = (Vec::new(), Vec::new());
    for &group in &args.group_commit {
        let group_commit = group.enabled();
        let name = format!("serve-{}", on_off(group_commit));
        let server = session
            .serve(&url, pool_size, group_commit, &name, &[])
            .await?;
        for &clients in &args.clients {
            if let Entry::Vacant(slot) = baseline.entry(clients) {
                let _ = slot.insert(pgbench(&admin, &target, &server, clients, args, dir).await?);
            }
            let (pg, pgbench_committed, pgbench_verified) = baseline[&clients].clone();

            reset(&admin).await?;
            eprintln!(
                "rowlock  transfer {clients:>3} clients, pool {pool_size}, group {} …",
                on_off(group_commit)
            );
            let args_h = hammer_args(&server.url, clients, args);
            // Per HTTP request, including the hammer's resets and reads before and after.
            let done = |r: &transfer::TransferReport| r.statuses.ok + r.refusals;
            let (report, server_side) =
                measure::around(&server, transfer::execute(&args_h), done).await?;
            let wrk = match &wrk {
                Some(wrk) => Some(wrk_run(&admin, wrk, &server, clients, args, dir).await?),
                None => None,
            };
            rows.push(Row {
                clients,
                pool_size,
                group_commit,
                pgbench_committed,
                pgbench_verified,
                rowlock_tps: report.completed_per_sec,
                ratio: report.completed_per_sec / pg.tps.max(1e-9),
                verification: report.verdict,
                server: server_side,
                wrk,
                pgbench: pg,
                hammer: report,
            });
        }
        peaks.push((group_commit, mib(server.memory().hwm_kib)));
        server.stop().await?;
    }
    Ok((rows, peaks))
}

/// pgbench's run at `clients`, verified: the balances' sum did not move, none is negative.
async fn pgbench(
    admin: &tokio_postgres::Client,
    target: &pgbench::Target<'_>,
    server: &Server,
    clients: usize,
    args: &BenchArgs,
    dir: &Path,
) -> Result<Baseline> {
    reset(admin).await?;
    eprintln!("pgbench  transfer {clients:>3} clients …");
    let (sum, committed) = (state(admin).await?, recorded(admin).await?);
    let cpu_before = cpu::Snapshot::take(Some(server.pid()));
    let mut pg = pgbench::run_script(
        target,
        "transfer",
        &super::scripts::transfer(),
        clients,
        args.duration,
        dir,
    )
    .await?;
    pg.cpu = cpu::Snapshot::take(Some(server.pid())).since(&cpu_before, pg.transactions, true);
    let after = state(admin).await?;
    let pgbench_committed = recorded(admin).await? - committed;
    pg.delta = after.0 - sum.0;
    let verified = pg.delta == 0 && after.1 == 0 && pg.failed == 0;
    Ok((pg, pgbench_committed, verified))
}

/// wrk posting random transfers, verified like pgbench's run.
async fn wrk_run(
    admin: &tokio_postgres::Client,
    wrk: &Path,
    server: &Server,
    clients: usize,
    args: &BenchArgs,
    dir: &Path,
) -> Result<wrk::WrkResult> {
    reset(admin).await?;
    eprintln!("wrk      transfer {clients:>3} connections …");
    let before = state(admin).await?;
    let mut result =
        measure::wrk_run(wrk, server, Script::Transfer, clients, args.duration, dir).await?;
    // Wait for the transfers still in flight when wrk stopped.
    let _ = measure::settled(|| recorded(admin)).await?;
    let after = state(admin).await?;
    result.delta = after.0 - before.0;
    let passed = result.delta == 0 && after.1 == 0;
    result.verification = if passed { "PASS" } else { "FAIL" }.into();
    Ok(result)
}

fn hammer_args(url: &str, clients: usize, args: &BenchArgs) -> HammerArgs {
    let mut h = HammerArgs::new(url);
    h.workload = WorkloadKind::Transfer;
    h.transfer.accounts = ACCOUNTS;
    h.transfer.initial = INITIAL;
    h.concurrency = clients;
    h.duration = Some(args.duration);
    h
}

/// Balances back to `INITIAL`; no dead rows and no pending checkpoint for the next run.
async fn reset(admin: &tokio_postgres::Client) -> Result<()> {
    admin
        .batch_execute(&format!("UPDATE counters SET value = {INITIAL}"))
        .await?;
    admin
        .batch_execute("VACUUM ANALYZE counters, transactions")
        .await?;
    admin.batch_execute("CHECKPOINT").await?;
    Ok(())
}

/// The balances' sum and how many are negative.
async fn state(admin: &tokio_postgres::Client) -> Result<(i64, i64)> {
    let row = admin
        .query_one(
            "SELECT sum(value)::bigint, count(*) FILTER (WHERE value < 0) FROM counters",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Recorded transactions so far.
async fn recorded(admin: &tokio_postgres::Client) -> Result<i64> {
    let row = admin
        .query_one("SELECT count(*) FROM transactions", &[])
        .await?;
    Ok(row.get(0))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
