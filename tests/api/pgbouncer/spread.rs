//! The hammer spread over three instances behind pgbouncer, verifying once for all of them.

use rowlock::hammer::WorkloadKind;
use rowlock::hammer::{self, transfer, HammerArgs, Verdict};

use crate::helpers::{spawn_app, Instances};

#[tokio::test]
async fn the_hammer_spreads_its_requests_over_three_instances_behind_pgbouncer_and_verifies_once() {
    let app = spawn_app().await;
    let bouncer = app.start_pgbouncer().await;
    let servers = Instances::start(3, bouncer.url(), &app.db_url).await;
    let urls = servers.urls();
    let args = |workload: WorkloadKind| {
        let mut args = HammerArgs::new(urls[0].clone());
        args.url = urls.clone();
        args.workload = workload;
        args
    };

    // Counters: one hot counter, exact and linearizable across the instances.
    let mut counters = args(WorkloadKind::Counters);
    counters.counter = "spread-hot".into();
    counters.concurrency = 32;
    counters.requests = Some(1_500);
    counters.check_linearizable = true;
    let report = hammer::execute(&counters)
        .await
        .expect("counters hammer ran");
    assert_eq!(report.verification.verdict, Verdict::Pass, "{report}");
    assert_eq!(report.statuses.ok, 1_500, "{report}");
    assert_eq!(app.db_value("spread-hot").await, Some(1_500));

    // Transfers: the sum of the balances never moves.
    let mut transfers = args(WorkloadKind::Transfer);
    transfers.transfer.accounts = 10;
    transfers.concurrency = 16;
    transfers.requests = Some(600);
    let report = transfer::execute(&transfers)
        .await
        .expect("transfer hammer ran");
    assert_eq!(report.verdict, Verdict::Pass, "{report}");
    assert_eq!(report.checks.sum_before, report.checks.sum_after);

    // Jobs, with crashing workers: every job completed exactly once.
    let mut jobs = args(WorkloadKind::Jobs);
    jobs.jobs.workers = 8;
    jobs.jobs.jobs = 300;
    jobs.jobs.claim_limit = 3;
    jobs.jobs.crash_rate = 0.05;
    jobs.jobs.lease_ms = 300;
    let report = rowlock::hammer::jobs::execute(&jobs)
        .await
        .expect("jobs hammer ran");
    assert_eq!(report.verdict, Verdict::Pass, "{report}");
    assert_eq!(report.server_counts["completed"], 300);

    drop(servers);
    drop(bouncer);
}
