//! PostgreSQL crashing (`-m immediate`) under load: rowlock must never answer 503 ("nothing was
//! applied") for a change that committed. Each test runs its own durable cluster, since it
//! crashes it.

use std::time::{Duration, Instant};

use rowlock::hammer::{self, HammerArgs, LockArg, Verdict};
use rowlock::local_cluster::{Durability, LocalCluster};
use rowlock::startup::Application;

use crate::helpers::serve_args;

/// rowlock on `url`; its address and a handle to stop it.
async fn serve_on(url: String, group_commit: bool) -> (String, actix_web::dev::ServerHandle) {
    let mut args = serve_args(url);
    args.group.group_commit = group_commit;
    let app = Application::build(args).await.expect("build rowlock");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    (address, handle)
}

/// Crashes PostgreSQL twice under a 16-client increment load and checks the hammer's sum:
/// every 503 must have changed nothing, so the counters hold the acknowledged increments plus
/// at most the ones of unknown outcome (504 or no answer). Whether a crash lands between a
/// commit's WAL flush and its answer is up to chance; `lost_commit.rs` makes that happen on
/// purpose.
async fn crash_under_load(group_commit: bool, spread: u32) {
    let cluster = durable_cluster().await;
    let url = cluster.url("rowlock");
    let (address, handle) = serve_on(url.clone(), group_commit).await;

    let mut args = HammerArgs::new(&address);
    args.counter = "crash".into();
    args.spread = spread;
    args.concurrency = 16;
    args.duration = Some(Duration::from_secs(10));
    args.lock = LockArg::Wait;
    args.no_progress = true;
    let crashes = async {
        let mut cluster = cluster;
        for round in 1..=2 {
            wait_for_increments(&url, 300 * round).await;
            cluster = tokio::task::spawn_blocking(move || {
                cluster.crash_and_restart().expect("restart PostgreSQL");
                cluster
            })
            .await
            .expect("restart thread");
        }
        cluster
    };
    let (report, cluster) = tokio::join!(hammer::execute(&args), crashes);
    let report = report.expect("hammer runs");

    assert_ne!(report.verification.verdict, Verdict::Fail, "{report}");
    // Never a 500 (a bug by contract): during the outage 503 (nothing applied) or 504.
    let s = &report.statuses;
    assert!(
        s.other_statuses.keys().all(|status| *status == 504),
        "{report}"
    );
    assert!(s.ok > 500, "{report}");
    handle.stop(false).await;
    let _ = tokio::task::spawn_blocking(move || cluster.stop()).await;
}

/// Waits (bounded) until the counters together went up by at least `n`.
async fn wait_for_increments(url: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let total = async {
            let pg = connect_quietly(url).await?;
            pg.query_one(
                "SELECT coalesce(sum(value), 0)::bigint FROM counters WHERE name LIKE 'crash%'",
                &[],
            )
            .await
            .ok()
            .map(|r| r.get::<_, i64>(0))
        }
        .await;
        if total.is_some_and(|t| t >= n) {
            return;
        }
        assert!(Instant::now() < deadline, "the load never reached {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain connection, or `None` while the server is restarting.
async fn connect_quietly(url: &str) -> Option<tokio_postgres::Client> {
    match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Some(client)
        }
        Err(_) => None,
    }
}

#[tokio::test]
async fn a_crash_under_grouped_load_never_hides_an_applied_increment_behind_a_503() {
    crash_under_load(true, 1).await;
}

#[tokio::test]
async fn a_crash_under_load_of_single_transactions_never_hides_an_applied_increment_behind_a_503() {
    crash_under_load(false, 64).await;
}

/// A durable throwaway PostgreSQL of this test's own, with the database `rowlock`.
async fn durable_cluster() -> LocalCluster {
    let cluster =
        tokio::task::spawn_blocking(|| LocalCluster::start_throwaway(Durability::Durable))
            .await
            .expect("cluster thread")
            .expect("start a throwaway PostgreSQL");
    rowlock::db::ensure_database(&cluster.url("postgres"), "rowlock")
        .await
        .expect("create the database");
    cluster
}

/// Restarts PostgreSQL (`fast`, or `immediate` like a crash) while rowlock serves, and checks
/// that no request hangs or gets a 500, and that increments are answered 200 again within 5 s
/// of the server being back.
async fn back_within_five_seconds(immediate: bool) {
    let cluster = durable_cluster().await;
    let (address, handle) = serve_on(cluster.url("rowlock"), true).await;
    let http = reqwest::Client::new();
    let increment = || {
        http.post(format!("{address}/counters/back/increment"))
            .json(&serde_json::json!({"by": 1}))
            .timeout(Duration::from_secs(30))
            .send()
    };
    let created = http
        .put(format!("{address}/counters/back"))
        .json(&serde_json::json!({"value": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(increment().await.unwrap().status(), 200);

    let mut cluster = cluster;
    cluster = tokio::task::spawn_blocking(move || {
        match immediate {
            true => cluster.crash_and_restart(),
            false => cluster.restart_fast(),
        }
        .expect("restart PostgreSQL");
        cluster
    })
    .await
    .expect("restart thread");
    let back = Instant::now();
    loop {
        let status = increment().await.expect("an answer, never a hang").status();
        match status.as_u16() {
            200 => break,
            503 | 504 => {}
            other => panic!("during recovery: {other}"),
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "still not serving 5 s after PostgreSQL came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.stop(false).await;
    let _ = tokio::task::spawn_blocking(move || cluster.stop()).await;
}

#[tokio::test]
async fn after_a_fast_restart_of_postgres_increments_succeed_again_within_5_s() {
    back_within_five_seconds(false).await;
}

#[tokio::test]
async fn after_an_immediate_restart_of_postgres_increments_succeed_again_within_5_s() {
    back_within_five_seconds(true).await;
}
