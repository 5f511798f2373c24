//! `rowlock bench jobs`: job claims, rowlock against pgbench.
//!
//! On a throwaway, durable PostgreSQL: pgbench runs `bench/jobs_claim.sql` (the one-job
//! `SKIP LOCKED` claim transaction) with N clients over a queue filled by SQL; then, on a fresh
//! queue, `rowlock hammer --workload jobs --preload` claims and completes with N workers at
//! `limit=1` and at `limit=10`. Both sides are measured in jobs completed per second, and the
//! hammer verifies every job was completed exactly once.

use std::process::ExitCode;

use anyhow::{Context, Result};

use super::pgbench;
use super::session::{self, Session};
use super::BenchArgs;
use crate::hammer::jobs::JobsReport;
use crate::hammer::WorkloadKind;
use crate::hammer::{HammerArgs, Verdict};

const DATABASE: &str = "rowlock_bench_jobs";
const SCRIPT: &str = include_str!("../../bench/jobs_claim.sql");
/// Jobs pgbench can take: more than it completes in the run (it must never find the queue empty).
const PGBENCH_JOBS: i64 = 1_000_000;
/// Jobs each hammer run enqueues and completes.
const HAMMER_JOBS: u64 = 30_000;

/// Runs the job benchmark and prints its table; fails if a verification failed.
pub(crate) async fn run(args: &BenchArgs) -> Result<ExitCode> {
    let passed = session::run_in(args, "jobs", async |s| run_on(args, s).await).await?;
    Ok(session::exit_code(passed))
}

async fn run_on(args: &BenchArgs, session: &Session) -> Result<bool> {
    let url = session.cluster.url(DATABASE);
    let admin = session.database(DATABASE).await?;
    let target = session.pgbench_target(DATABASE);
    let pool = args.pool_size.first().copied().unwrap_or(32);
    let mut all_passed = true;
    let http = reqwest::Client::new();
    println!("| clients | pgbench jobs/s | rowlock limit=1 jobs/s | × | rowlock limit=10 jobs/s | × | verification |");
    println!("|---|---|---|---|---|---|---|");
    for &clients in &args.clients {
        fill_for_pgbench(&admin).await?;
        eprintln!("pgbench  jobs {clients:>3} clients …");
        let cpu_before = super::cpu::Snapshot::take(None);
        let pg = pgbench::run_script(
            &target,
            "jobs_claim",
            SCRIPT,
            clients,
            args.duration,
            &session.dir,
        )
        .await?;
        let pgbench = pg.tps;
        let pgbench_cpu =
            super::cpu::Snapshot::take(None).since(&cpu_before, pg.transactions, true);
        let group_commit = super::first_group_setting(args);
        let server = session
            .serve(&url, pool, group_commit, &format!("serve-{clients}"), &[])
            .await?;
        let mut reports = Vec::new();
        let mut cpus = Vec::new();
        let mut groups = Vec::new();
        for limit in [1, 10] {
            settle(&admin).await?;
            eprintln!("rowlock  jobs {clients:>3} workers, limit {limit} …");
            let groups_before = ack_groups(&http, &server.url).await;
            let cpu_before = super::cpu::Snapshot::take(Some(server.pid()));
            let report =
                crate::hammer::jobs::execute(&hammer_args(&server.url, clients, limit)).await?;
            cpus.push(super::cpu::Snapshot::take(Some(server.pid())).since(
                &cpu_before,
                report.jobs,
                false,
            ));
            let groups_after = ack_groups(&http, &server.url).await;
            groups.push(
                groups_before
                    .iter()
                    .zip(&groups_after)
                    .map(|(before, after)| super::groups::between(before.as_ref(), after.as_ref()))
                    .collect::<Vec<_>>(),
            );
            reports.push(report);
        }
        server.stop().await?;
        let passed = reports.iter().all(|r| r.verdict == Verdict::Pass);
        all_passed &= passed;
        let (one, ten) = (&reports[0], &reports[1]);
        println!(
            "| {clients} | {pgbench:.0} | {:.0} | {:.2} | {:.0} | {:.2} | {} |",
            one.jobs_per_sec,
            one.jobs_per_sec / pgbench,
            ten.jobs_per_sec,
            ten.jobs_per_sec / pgbench,
            if passed { "PASS" } else { "FAIL" }
        );
        eprintln!(
            "  CPU µs per job, pgbench: postgres {:.0} + pgbench {:.0}",
            pgbench_cpu.postgres_us, pgbench_cpu.client_us
        );
        for ((r, cpu), groups) in reports.iter().zip(&cpus).zip(&groups) {
            print_detail(r);
            for (what, sizes) in ["requests", "acknowledgements"].iter().zip(groups) {
                if let Some(g) = sizes {
                    eprintln!(
                        "    {what} per job group: mean {:.1}, p50 ≤{}, p90 ≤{}, p99 ≤{} ({} groups)",
                        g.mean,
                        super::groups::show(Some(g.p50)),
                        super::groups::show(Some(g.p90)),
                        super::groups::show(Some(g.p99)),
                        g.groups
                    );
                }
            }
            eprintln!(
                "    CPU µs per job (enqueue included): postgres {:.0} + serve {:.0} + hammer {:.0}",
                cpu.postgres_us, cpu.server_us, cpu.client_us
            );
        }
    }
    Ok(all_passed)
}

/// The job groups' request and acknowledgement histograms of `rowlock serve` at `base`.
async fn ack_groups(http: &reqwest::Client, base: &str) -> [Option<super::groups::Scrape>; 2] {
    let scrape = |metric| super::groups::scrape_histogram(http, base, metric);
    [
        scrape("rowlock_job_group_requests").await,
        scrape("rowlock_job_group_acks").await,
    ]
}

fn print_detail(r: &JobsReport) {
    eprintln!(
        "  limit={}: claim p50 {:.2} ms p99 {:.2} ms, end-to-end p50 {:.1} ms p99 {:.1} ms, {:.0} claims/s",
        r.claim_limit, r.claim_latency_ms.p50, r.claim_latency_ms.p99, r.end_to_end_ms.p50,
        r.end_to_end_ms.p99, r.claims_per_sec
    );
}

fn hammer_args(url: &str, workers: usize, limit: u32) -> HammerArgs {
    let mut h = HammerArgs::new(url);
    h.workload = WorkloadKind::Jobs;
    h.jobs.workers = workers as u32;
    h.jobs.jobs = HAMMER_JOBS;
    h.jobs.claim_limit = limit;
    h.jobs.lease_ms = 30_000;
    h.jobs.preload = true;
    h
}

async fn fill_for_pgbench(admin: &tokio_postgres::Client) -> Result<()> {
    admin.batch_execute("TRUNCATE jobs").await?;
    admin
        .batch_execute(&format!(
            "INSERT INTO jobs (queue, payload)
               SELECT 'bench', jsonb_build_object('n', g) FROM generate_series(1, {PGBENCH_JOBS}) g"
        ))
        .await
        .context("cannot fill the queue")?;
    settle(admin).await
}

/// No dead rows and no pending checkpoint are left to the next run.
async fn settle(admin: &tokio_postgres::Client) -> Result<()> {
    admin.batch_execute("VACUUM ANALYZE jobs").await?;
    admin.batch_execute("CHECKPOINT").await?;
    Ok(())
}
