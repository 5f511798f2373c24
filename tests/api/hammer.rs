//! `rowlock hammer`, run in-process against a real rowlock — and against a deliberately racy
//! server, to show that its verification catches lost updates.

use std::process::ExitCode;
use std::time::Duration;

use actix_web::web::{self, Data, Json, Path};
use actix_web::HttpResponse;
use deadpool_postgres::Pool;
use rowlock::hammer::linearizable::{self, Op};
use rowlock::hammer::{self, HammerArgs, LockArg, Verdict};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestServer};

fn hammer_args(address: &str, counter: &str, concurrency: usize, requests: u64) -> HammerArgs {
    let mut args = HammerArgs::new(address);
    args.counter = counter.into();
    args.concurrency = concurrency;
    args.requests = Some(requests);
    args
}

#[tokio::test]
async fn a_fixed_count_run_against_rowlock_passes_both_checks() {
    let app = spawn_app().await;
    let mut args = hammer_args(&app.address, "hot", 16, 500);
    args.check_linearizable = true;

    let report = hammer::execute(&args).await.expect("hammer runs");

    assert_eq!(report.requests, 500);
    assert_eq!(report.statuses.ok, 500);
    assert_eq!(report.acknowledged, 500);
    assert_eq!(report.verification.sum.observed_delta, 500);
    let lin = report.verification.linearizability.expect("checked");
    assert_eq!(lin.operations, 500);
    assert!(lin.linearizable, "{lin:?}");
    assert_eq!(report.verification.verdict, Verdict::Pass);
    // The hammer created the missing counter; the database agrees with the report.
    assert_eq!(app.db_value("hot").await, Some(500));
}

#[tokio::test]
async fn optimistic_increments_spread_over_counters_add_up() {
    let app = spawn_app().await;
    let mut args = hammer_args(&app.address, "spread", 8, 300);
    args.spread = 5;
    args.lock = LockArg::Optimistic;
    args.by = 3;

    let report = hammer::execute(&args).await.expect("hammer runs");

    assert_eq!(report.requests, 300);
    assert_eq!(report.verification.verdict, Verdict::Pass, "{report}");
    assert_eq!(
        report.verification.sum.observed_delta,
        i128::from(report.acknowledged) * 3
    );
    let mut total = 0;
    for i in 0..5 {
        total += app.db_value(&format!("spread-{i}")).await.expect("created");
    }
    assert_eq!(total, report.acknowledged as i64 * 3);
}

#[tokio::test]
async fn a_duration_run_stops_by_itself_and_accounts_for_every_request() {
    let app = spawn_app().await;
    let mut args = HammerArgs::new(&app.address);
    args.counter = "timed".into();
    args.concurrency = 8;
    args.duration = Some(Duration::from_millis(500));
    args.lock = LockArg::Nowait;

    let report = tokio::time::timeout(Duration::from_secs(30), hammer::execute(&args))
        .await
        .expect("the run ends by itself")
        .expect("hammer runs");

    // 423s are expected under nowait; every request is counted under exactly one status.
    assert!(report.requests > 0);
    assert_eq!(
        report.requests,
        report.statuses.ok + report.statuses.locked + report.statuses.unavailable
    );
    assert_eq!(report.statuses.transport_errors, 0);
    assert_eq!(report.verification.verdict, Verdict::Pass, "{report}");
    assert_eq!(
        app.db_value("timed").await,
        Some(report.acknowledged as i64)
    );
}

#[tokio::test]
async fn the_json_report_parses_and_holds_the_counts() {
    let app = spawn_app().await;
    let dir = std::env::temp_dir().join(format!("rowlock-hammer-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut args = hammer_args(&app.address, "reported", 4, 200);
    args.check_linearizable = true;
    args.json = Some(dir.join("report.json"));
    args.chart = Some(dir.join("chart.svg"));

    let code = hammer::run(args).await.expect("hammer runs");

    assert_eq!(code, ExitCode::SUCCESS);
    let text = std::fs::read_to_string(dir.join("report.json")).expect("JSON written");
    let report: Value = serde_json::from_str(&text).expect("JSON parses");
    assert_eq!(report["requests"], 200);
    assert_eq!(report["acknowledged"], 200);
    assert_eq!(report["statuses"]["200"], 200);
    assert_eq!(report["statuses"]["423"], 0);
    assert_eq!(report["config"]["concurrency"], 4);
    assert_eq!(report["verification"]["verdict"], "PASS");
    assert_eq!(report["verification"]["sum"]["observed_delta"], 200);
    assert_eq!(report["verification"]["linearizability"]["operations"], 200);
    for key in ["p50", "p90", "p99", "p99_9", "max"] {
        assert!(report["latency_ms"][key].is_number(), "latency_ms.{key}");
    }
    let svg = std::fs::read_to_string(dir.join("chart.svg")).expect("chart written");
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn verification_fails_against_a_server_that_loses_updates() {
    let app = spawn_app().await;
    app.create_counter("racy", 0).await;
    let pool = rowlock::db::build_pool(&app.db_url, &crate::helpers::pool_args()).expect("pool");
    let racy = RacyServer::start(pool);
    let mut args = hammer_args(&racy.address, "racy", 16, 300);
    args.check_linearizable = true;

    let report = hammer::execute(&args).await.expect("hammer runs");

    // Every increment was acknowledged, but far fewer reached the database.
    assert_eq!(report.statuses.ok, 300);
    let sum = &report.verification.sum;
    assert_eq!(sum.verdict, Verdict::Fail, "{report}");
    assert!(sum.observed_delta < sum.expected_delta, "{report}");
    let lin = report
        .verification
        .linearizability
        .as_ref()
        .expect("checked");
    assert!(!lin.linearizable && lin.duplicate_values > 0, "{lin:?}");
    assert_eq!(report.verification.verdict, Verdict::Fail);

    // And the command exits non-zero.
    let code = hammer::run(hammer_args(&racy.address, "racy", 16, 100))
        .await
        .expect("hammer runs");
    assert_eq!(code, ExitCode::from(1));
    racy.stop().await;
}

#[test]
fn the_linearizability_checker_accepts_a_valid_history_and_rejects_a_stale_read() {
    let op = |start_ns, end_ns, value| Op {
        start_ns,
        end_ns,
        value,
    };
    // 1 and 2 overlap (either order is fine); 3 starts after both ended and is larger.
    let valid = [op(0, 10, 2), op(5, 12, 1), op(20, 30, 3)];
    assert!(linearizable::check(&valid, 1).linearizable);
    // The last increment started after one that returned 3 had finished, yet returned 2.
    let stale = [op(0, 10, 1), op(11, 20, 3), op(25, 30, 2)];
    let result = linearizable::check(&stale, 1);
    assert!(!result.linearizable);
    assert_eq!(result.order_violations, 1);
}

/// A test-only "counter service" with the classic lost-update bug: it reads the value, awaits,
/// and writes back value + by, with no lock and no transaction around the two.
struct RacyServer;

impl RacyServer {
    fn start(pool: Pool) -> TestServer {
        let data = Data::new(pool);
        TestServer::start(move |cfg| {
            cfg.app_data(data.clone())
                .route("/counters/{name}", web::get().to(racy_get))
                .route("/counters/{name}/increment", web::post().to(racy_increment));
        })
    }
}

async fn racy_get(pool: Data<Pool>, name: Path<String>) -> HttpResponse {
    let client = pool.get().await.expect("connection");
    let row = client
        .query_opt(
            "SELECT value, version FROM counters WHERE name = $1",
            &[&*name],
        )
        .await
        .expect("select");
    match row {
        Some(row) => HttpResponse::Ok().json(json!({
            "name": *name, "value": row.get::<_, i64>(0), "version": row.get::<_, i64>(1)
        })),
        None => HttpResponse::NotFound().finish(),
    }
}

async fn racy_increment(pool: Data<Pool>, name: Path<String>, body: Json<Value>) -> HttpResponse {
    let by = body["by"].as_i64().unwrap_or(1);
    let client = pool.get().await.expect("connection");
    let read: i64 = client
        .query_one("SELECT value FROM counters WHERE name = $1", &[&*name])
        .await
        .expect("read")
        .get(0);
    // The bug: other requests read the same value while this one is between read and write.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let version: i64 = client
        .query_one(
            "UPDATE counters SET value = $2, version = version + 1 WHERE name = $1 RETURNING version",
            &[&*name, &(read + by)],
        )
        .await
        .expect("write")
        .get(0);
    HttpResponse::Ok().json(json!({
        "name": *name, "value": read + by, "previous": read, "version": version
    }))
}

#[tokio::test]
async fn a_run_with_a_500_never_passes_even_when_the_sums_add_up() {
    let app = spawn_app().await;
    app.create_counter("flaky", 0).await;
    let pool = rowlock::db::build_pool(&app.db_url, &crate::helpers::pool_args()).expect("pool");
    let data = Data::new((pool, std::sync::atomic::AtomicU64::new(0)));
    let flaky = TestServer::start(move |cfg| {
        cfg.app_data(data.clone())
            .route("/counters/{name}", web::get().to(flaky_get))
            .route(
                "/counters/{name}/increment",
                web::post().to(flaky_increment),
            );
    });
    let report = hammer::execute(&hammer_args(&flaky.address, "flaky", 4, 100))
        .await
        .expect("hammer runs");
    flaky.stop().await;

    // Every applied increment was acknowledged, so the sums agree; the 500s alone fail it.
    assert_eq!(
        report.verification.sum.observed_delta,
        i128::from(report.acknowledged)
    );
    assert_eq!(
        report.statuses.other_statuses.get(&500),
        Some(&20),
        "{report}"
    );
    assert_eq!(report.verification.verdict, Verdict::Fail, "{report}");
}

type Flaky = Data<(Pool, std::sync::atomic::AtomicU64)>;

async fn flaky_get(state: Flaky, name: Path<String>) -> HttpResponse {
    racy_get(Data::new(state.0.clone()), name).await
}

/// A correct atomic increment, except that every fifth request is a 500 that changes nothing.
async fn flaky_increment(state: Flaky, name: Path<String>, body: Json<Value>) -> HttpResponse {
    let n = state.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if n % 5 == 4 {
        return HttpResponse::InternalServerError().finish();
    }
    let by = body["by"].as_i64().unwrap_or(1);
    let client = state.0.get().await.expect("connection");
    let row = client
        .query_one(
            "UPDATE counters SET value = value + $2, version = version + 1 WHERE name = $1
             RETURNING value, version",
            &[&*name, &by],
        )
        .await
        .expect("write");
    let value: i64 = row.get(0);
    HttpResponse::Ok().json(json!({
        "name": *name, "value": value, "previous": value - by, "version": row.get::<_, i64>(1)
    }))
}
