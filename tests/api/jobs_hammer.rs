//! `rowlock hammer --workload jobs` against a real server: with crashing workers, every job is
//! still completed exactly once, and the hammer's own verification says so.

use rowlock::hammer::WorkloadKind as Workload;
use rowlock::hammer::{HammerArgs, Verdict};

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_jobs_hammer_with_crashing_workers_completes_every_job_exactly_once() {
    let app = spawn_app().await;
    let mut args = HammerArgs::new(app.address.clone());
    args.workload = Workload::Jobs;
    args.jobs.workers = 8;
    args.jobs.jobs = 400;
    args.jobs.claim_limit = 3;
    args.jobs.crash_rate = 0.05;
    args.jobs.lease_ms = 300;
    let report = rowlock::hammer::jobs::execute(&args)
        .await
        .expect("hammer ran");
    assert_eq!(report.verdict, Verdict::Pass, "{report}");
    assert!(
        report.abandoned > 0 && report.reclaimed >= report.abandoned,
        "{report}"
    );
    assert_eq!(report.server_counts["completed"], 400);

    let pg = app.pg().await;
    let row = pg
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'completed'), count(*) FROM jobs",
            &[],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (400, 400));
}

#[tokio::test]
async fn sixteen_workers_over_20000_jobs_in_batches_of_50_with_crashes_complete_each_once() {
    let app = spawn_app().await;
    let mut args = HammerArgs::new(app.address.clone());
    args.workload = Workload::Jobs;
    args.jobs.workers = 16;
    args.jobs.jobs = 20_000;
    // Claims of 50 that carry the previous batch's completions: one request per batch.
    args.jobs.claim_limit = 50;
    args.jobs.crash_rate = 0.05;
    args.jobs.lease_ms = 500;
    let report = rowlock::hammer::jobs::execute(&args)
        .await
        .expect("hammer ran");
    assert_eq!(report.verdict, Verdict::Pass, "{report}");
    assert!(report.abandoned > 0, "{report}");
    assert_eq!(report.server_counts["completed"], 20_000);
    // Batched: far fewer claim requests than jobs.
    assert!(report.claim_requests < 20_000 / 10, "{report}");
    let pg = app.pg().await;
    let row = pg
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'completed'), count(*) FROM jobs",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (20_000, 20_000)
    );
}
