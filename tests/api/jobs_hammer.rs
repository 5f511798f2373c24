//! `rowlock hammer --workload jobs` against a real server: with crashing workers, every job is
//! still completed exactly once, and the hammer's own verification says so.

use rowlock::hammer::WorkloadKind;
use rowlock::hammer::{HammerArgs, Verdict};

use crate::helpers::{spawn_app, TestApp};

/// `rowlock hammer --workload jobs` on `app` with `workers` workers over `jobs` jobs, claiming
/// up to `claim_limit` at a time, 5 % of the claimed jobs abandoned by a crashing worker.
async fn hammer_jobs(
    app: &TestApp,
    workers: u32,
    jobs: u64,
    claim_limit: u32,
    lease_ms: u64,
) -> rowlock::hammer::jobs::JobsReport {
    let mut args = HammerArgs::new(app.address.clone());
    args.workload = WorkloadKind::Jobs;
    args.jobs.workers = workers;
    args.jobs.jobs = jobs;
    args.jobs.claim_limit = claim_limit;
    args.jobs.crash_rate = 0.05;
    args.jobs.lease_ms = lease_ms;
    let report = rowlock::hammer::jobs::execute(&args)
        .await
        .expect("hammer ran");
    assert_eq!(report.verdict, Verdict::Pass, "{report}");
    assert_eq!(report.server_counts["completed"], jobs);
    report
}

/// `(completed, all)` jobs, straight from the database.
async fn completed_of_all(app: &TestApp) -> (i64, i64) {
    let row = app
        .pg()
        .await
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'completed'), count(*) FROM jobs",
            &[],
        )
        .await
        .expect("count jobs");
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn the_jobs_hammer_with_crashing_workers_completes_every_job_exactly_once() {
    let app = spawn_app().await;
    let report = hammer_jobs(&app, 8, 400, 3, 300).await;
    assert!(
        report.abandoned > 0 && report.reclaimed >= report.abandoned,
        "{report}"
    );
    assert_eq!(completed_of_all(&app).await, (400, 400));
}

#[tokio::test]
async fn sixteen_workers_over_20000_jobs_in_batches_of_50_with_crashes_complete_each_once() {
    let app = spawn_app().await;
    // Claims of 50 that carry the previous batch's completions: one request per batch.
    let report = hammer_jobs(&app, 16, 20_000, 50, 500).await;
    assert!(report.abandoned > 0, "{report}");
    // Batched: far fewer claim requests than jobs.
    assert!(report.claim_requests < 20_000 / 10, "{report}");
    assert_eq!(completed_of_all(&app).await, (20_000, 20_000));
}
