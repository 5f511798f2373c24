//! `rowlock bench --transfers`: transfers between random pairs of 1,000 accounts, rowlock against
//! pgbench running the same two-row ordered transaction.
//!
//! On a throwaway, durable PostgreSQL with `account-0` … `account-999` (1,000 each, `min: 0`):
//! for each client count, pgbench runs `bench/transfer.sql` (lock both rows in ascending name
//! order, check the bound, write both, record the transaction) and then `rowlock hammer
//! --workload transfer --accounts 1000` runs the same for the same duration. Balances are reset
//! and the tables vacuumed and checkpointed before each run. Both are measured in transactions
//! that ran to completion per second (refusals of the `min: 0` bound included: they lock and
//! check just the same), and both are verified: the balances' sum must not move.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;

use super::pgbench::{self, PgbenchResult};
use super::server::Server;
use super::{cpu, BenchArgs};
use crate::hammer::jobs::Workload;
use crate::hammer::transfer::{self, TransferReport};
use crate::hammer::{HammerArgs, Verdict};
use crate::local_cluster::{Durability, LocalCluster, SUPERUSER};

const DATABASE: &str = "rowlock_bench_transfers";
const SCRIPT: &str = include_str!("../../bench/transfer.sql");
/// `bench/transfer.sql` picks `random(0, 999)`.
const ACCOUNTS: u32 = 1_000;
const INITIAL: i64 = 1_000;
/// The target: rowlock ≥ this × pgbench at the largest client count.
const TARGET_RATIO: f64 = 0.8;

/// One client count, both sides.
#[derive(Debug, Serialize)]
struct Row {
    clients: usize,
    pool_size: usize,
    pgbench: PgbenchResult,
    /// pgbench's transfers that committed (the rest were refused by the bound).
    pgbench_committed: i64,
    /// The balances' sum did not move and none went negative during pgbench's run.
    pgbench_verified: bool,
    /// rowlock transactions answered 200 or 409 `bound_violation`, per second.
    rowlock_tps: f64,
    ratio: f64,
    verification: Verdict,
    rowlock_rss_mib: f64,
    rowlock_cpu: cpu::PerTransaction,
    hammer: TransferReport,
}

/// The JSON written to `bench/results/transfers-<unix time>.json`.
#[derive(Debug, Serialize)]
struct Results {
    unix_time: u64,
    duration_secs: f64,
    cpus: usize,
    /// `/proc/loadavg` when the benchmark started: others' work depresses the figures.
    load_average_at_start: String,
    rows: Vec<Row>,
    target: String,
    target_met: bool,
}

/// Runs the transfer benchmark, prints its table and writes its JSON; fails if a check failed.
pub async fn run(args: &BenchArgs) -> Result<ExitCode> {
    let binary = match &args.rowlock_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("cannot locate the rowlock binary")?,
    };
    std::fs::create_dir_all(&args.out)?;
    let load_average_at_start = load_average();
    let dir = std::env::temp_dir().join(format!("rowlock-bench-tx-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    eprintln!("starting a throwaway PostgreSQL …");
    let cluster =
        tokio::task::spawn_blocking(|| LocalCluster::start_throwaway(Durability::Durable))
            .await??;
    let outcome = run_on(args, &binary, &cluster, &dir).await;
    tokio::task::spawn_blocking(move || cluster.stop()).await?;
    let _ = std::fs::remove_dir_all(&dir);
    let rows = outcome?;

    println!("\n{}", render(&rows));
    let max = rows.iter().max_by_key(|r| r.clients);
    let target_met = max.is_some_and(|r| r.ratio >= TARGET_RATIO);
    let target = max.map_or("no rows".into(), |r| {
        format!(
            "transfer, {} clients: rowlock >= {TARGET_RATIO}x pgbench tps: {:.2}x ({:.0} vs {:.0}); p99 {:.2} ms vs {:.2} ms",
            r.clients, r.ratio, r.rowlock_tps, r.pgbench.tps, r.hammer.latency_ms.p99, r.pgbench.p99_ms
        )
    });
    println!("[{}] {target}", if target_met { "met" } else { "NOT MET" });
    let passed = rows
        .iter()
        .all(|r| r.verification == Verdict::Pass && r.pgbench_verified);
    let results = Results {
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        duration_secs: args.duration.as_secs_f64(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average_at_start,
        rows,
        target,
        target_met,
    };
    let json = serde_json::to_string_pretty(&results)? + "\n";
    let path = args
        .out
        .join(format!("transfers-{}.json", results.unix_time));
    std::fs::write(&path, &json)?;
    std::fs::write(args.out.join("transfers-latest.json"), &json)?;
    println!("results written to {}", path.display());
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn run_on(
    args: &BenchArgs,
    binary: &Path,
    cluster: &LocalCluster,
    dir: &Path,
) -> Result<Vec<Row>> {
    let url = cluster.url(DATABASE);
    crate::db::ensure_database(&cluster.url("postgres"), DATABASE).await?;
    crate::startup::migrate(&url).await?;
    let admin = crate::db::connect(&url).await?;
    admin
        .batch_execute(&format!(
            "INSERT INTO counters (name, value, min)
               SELECT 'account-' || g, {INITIAL}, 0 FROM generate_series(0, {}) g",
            ACCOUNTS - 1
        ))
        .await
        .context("cannot create the accounts")?;
    let target = pgbench::Target {
        port: cluster.port(),
        user: SUPERUSER,
        database: DATABASE,
    };
    let pool_size = args.pool_size.first().copied().unwrap_or(32);
    let log = dir.join("serve.log");
    let server = Server::start(binary, &url, pool_size, args.workers, &log).await?;
    let mut rows = Vec::new();
    for &clients in &args.clients {
        reset(&admin).await?;
        eprintln!("pgbench  transfer {clients:>3} clients …");
        let (sum, committed) = (state(&admin).await?, recorded(&admin).await?);
        let cpu_before = cpu::Snapshot::take(Some(server.pid()));
        let mut pg =
            pgbench::run_script(&target, "transfer", SCRIPT, clients, args.duration, dir).await?;
        pg.cpu = cpu::Snapshot::take(Some(server.pid())).since(&cpu_before, pg.transactions, true);
        let after = state(&admin).await?;
        let pgbench_committed = recorded(&admin).await? - committed;
        pg.delta = after.0 - sum.0;
        let pgbench_verified = pg.delta == 0 && after.1 == 0 && pg.failed == 0;

        reset(&admin).await?;
        eprintln!("rowlock  transfer {clients:>3} clients, pool {pool_size} …");
        let rss = server.sample_rss();
        let cpu_before = cpu::Snapshot::take(Some(server.pid()));
        let report = transfer::execute(&hammer_args(&server.url, clients, args)).await;
        let cpu_after = cpu::Snapshot::take(Some(server.pid()));
        let rss_kib = rss.finish().await;
        let report = report?;
        let done = report.statuses.ok + report.refusals;
        rows.push(Row {
            clients,
            pool_size,
            pgbench_committed,
            pgbench_verified,
            rowlock_tps: report.completed_per_sec,
            ratio: report.completed_per_sec / pg.tps.max(1e-9),
            verification: report.verdict,
            rowlock_rss_mib: rss_kib as f64 / 1024.0,
            // Per HTTP request, including the hammer's resets and reads before and after.
            rowlock_cpu: cpu_after.since(&cpu_before, done, false),
            pgbench: pg,
            hammer: report,
        });
    }
    server.stop().await?;
    Ok(rows)
}

fn hammer_args(url: &str, clients: usize, args: &BenchArgs) -> HammerArgs {
    let mut h = HammerArgs::new(url);
    h.workload = Workload::Transfer;
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

fn render(rows: &[Row]) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "{:<8} {:>7} {:>5} {:>12} {:>12} {:>6} {:>13} {:>13} {:>8} {:>9} {:>8}\n",
        "workload",
        "clients",
        "pool",
        "pgbench tps",
        "rowlock tps",
        "ratio",
        "pgbench p99",
        "rowlock p99",
        "verify",
        "refusals",
        "RSS MiB"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<8} {:>7} {:>5} {:>12.0} {:>12.0} {:>6.2} {:>10.2} ms {:>10.2} ms {:>8} {:>9} {:>8.1}",
            "transfer", r.clients, r.pool_size, r.pgbench.tps, r.rowlock_tps, r.ratio,
            r.pgbench.p99_ms, r.hammer.latency_ms.p99,
            if r.verification == Verdict::Pass && r.pgbench_verified { "PASS" } else { "FAIL" },
            r.hammer.refusals, r.rowlock_rss_mib
        );
    }
    out
}
