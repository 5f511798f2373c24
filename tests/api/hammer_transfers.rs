//! `rowlock hammer --workload transfer|order`, run in-process against a real rowlock — and
//! against a deliberately broken `POST /transactions`, to show that its checks catch lost and
//! half-applied transactions.

use std::process::ExitCode;
use std::time::Duration;

use actix_web::web::{self, Data, Json, Path};
use actix_web::HttpResponse;
use deadpool_postgres::Pool;
use rowlock::hammer::transfer::{self, TransferReport};
use rowlock::hammer::WorkloadKind;
use rowlock::hammer::{HammerArgs, Verdict};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp, TestServer};

fn transfer_args(address: &str, accounts: u32, concurrency: usize, requests: u64) -> HammerArgs {
    let mut args = HammerArgs::new(address);
    args.workload = WorkloadKind::Transfer;
    args.transfer.accounts = accounts;
    args.concurrency = concurrency;
    args.requests = Some(requests);
    args
}

fn order_args(address: &str, items: u32, lines: u32, initial: i64, requests: u64) -> HammerArgs {
    let mut args = HammerArgs::new(address);
    args.workload = WorkloadKind::Order;
    args.transfer.items = items;
    args.transfer.lines = lines;
    args.transfer.initial = initial;
    args.concurrency = 8;
    args.requests = Some(requests);
    args
}

async fn db_values(app: &TestApp, prefix: &str) -> Vec<i64> {
    app.pg()
        .await
        .query(
            "SELECT value FROM counters WHERE name LIKE $1 || '-%' ORDER BY name",
            &[&prefix],
        )
        .await
        .expect("read counters")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn a_fixed_count_transfer_run_against_rowlock_passes() {
    let app = spawn_app().await;
    // 200 each and transfers of 1…100: some payers run short and are refused.
    let mut args = transfer_args(&app.address, 10, 16, 500);
    args.transfer.initial = 200;

    let report = transfer::execute(&args).await.expect("hammer runs");

    assert_eq!(report.verdict, Verdict::Pass, "{report}");
    assert_eq!(report.requests, 500);
    // Every transfer was either applied or refused by the min: 0 bound.
    assert_eq!(report.statuses.ok + report.refusals, 500, "{report}");
    assert!(report.refusals > 0, "{report}");
    assert_eq!(report.checks.sum_before, 2_000);
    assert_eq!(report.checks.sum_after, 2_000);
    // The database agrees: the money is all there, nobody is overdrawn, and every acknowledged
    // transfer was recorded once.
    let balances = db_values(&app, "account").await;
    assert_eq!(balances.len(), 10);
    assert_eq!(balances.iter().sum::<i64>(), 2_000);
    assert!(balances.iter().all(|b| *b >= 0), "{balances:?}");
    let recorded: i64 = app
        .pg()
        .await
        .query_one("SELECT count(*) FROM transactions", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(recorded as u64, report.statuses.ok);
}

#[tokio::test]
async fn a_fixed_count_order_run_against_rowlock_passes_while_stock_runs_out() {
    let app = spawn_app().await;
    // 300 orders of 3 lines × 1…5 units want ~2,700 units; 5 items hold 250.
    let args = order_args(&app.address, 5, 3, 50, 300);

    let report = transfer::execute(&args).await.expect("hammer runs");

    assert_eq!(report.verdict, Verdict::Pass, "{report}");
    assert_eq!(report.statuses.ok + report.refusals, 300, "{report}");
    assert!(report.refusals > 0, "stock should have run out: {report}");
    let checks = &report.checks;
    let sold = checks.sum_before - checks.sum_after;
    assert_eq!(sold, -checks.acknowledged_delta, "{report}");
    let stock = db_values(&app, "item").await;
    assert_eq!(
        i128::from(stock.iter().sum::<i64>()),
        250 - sold,
        "{stock:?}"
    );
    assert!(stock.iter().all(|s| *s >= 0), "{stock:?}");
}

#[tokio::test]
async fn the_transfer_command_writes_its_json_report_and_exits_zero() {
    let app = spawn_app().await;
    let path = std::env::temp_dir().join(format!("rowlock-tx-{:016x}.json", rand::random::<u64>()));
    let mut args = transfer_args(&app.address, 4, 4, 100);
    args.json = Some(path.clone());

    let code = rowlock::hammer::run(args).await.expect("hammer runs");

    assert_eq!(code, ExitCode::SUCCESS);
    let text = std::fs::read_to_string(&path).expect("JSON written");
    let _ = std::fs::remove_file(&path);
    let report: TransferReport = serde_json::from_str(&text).expect("JSON parses");
    assert_eq!(report.requests, 100);
    assert_eq!(report.workload, WorkloadKind::Transfer);
    assert_eq!(report.verdict, Verdict::Pass);
    assert!(report.latency_ms.p99 > 0.0);
}

#[tokio::test]
async fn verification_fails_against_a_server_that_transfers_without_locks() {
    let app = spawn_app().await;
    let broken = BrokenServer::start(&app, Bug::LostUpdates);
    let args = transfer_args(&broken.address, 4, 16, 300);

    let report = transfer::execute(&args).await.expect("hammer runs");

    assert_eq!(report.verdict, Verdict::Fail, "{report}");
    assert!(report.checks.mismatched > 0, "{report}");

    let code = rowlock::hammer::run(transfer_args(&broken.address, 4, 16, 100))
        .await
        .expect("hammer runs");
    assert_eq!(code, ExitCode::from(1));
    broken.stop().await;
}

#[tokio::test]
async fn verification_fails_against_a_server_that_half_applies_refused_orders() {
    let app = spawn_app().await;
    let broken = BrokenServer::start(&app, Bug::PartialOrders);
    let args = order_args(&broken.address, 5, 3, 30, 200);

    let report = transfer::execute(&args).await.expect("hammer runs");

    assert_eq!(report.verdict, Verdict::Fail, "{report}");
    assert!(report.refusals > 0, "{report}");
    // Refused orders took stock all the same: more was sold than acknowledged orders took.
    let checks = &report.checks;
    assert!(
        checks.sum_before - checks.sum_after > -checks.acknowledged_delta,
        "{report}"
    );
    broken.stop().await;
}

/// What the test-only server gets wrong.
#[derive(Clone, Copy)]
enum Bug {
    /// Each op reads its counter, awaits, and writes back read + by: no lock, no transaction.
    LostUpdates,
    /// Each op is its own autocommitted, bound-checked `UPDATE`; a refused op answers 409 but
    /// the ops before it stay applied.
    PartialOrders,
}

/// A test-only `GET/PUT /counters/{name}` + `POST /transactions` with one of the [`Bug`]s.
struct BrokenServer;

impl BrokenServer {
    fn start(app: &TestApp, bug: Bug) -> TestServer {
        let pool =
            rowlock::db::build_pool(&app.db_url, &crate::helpers::pool_args()).expect("pool");
        let (pool, bug) = (Data::new(pool), Data::new(bug));
        TestServer::start(move |cfg| {
            cfg.app_data(pool.clone())
                .app_data(bug.clone())
                .route("/counters/{name}", web::get().to(get_counter))
                .route("/counters/{name}", web::put().to(put_counter))
                .route("/transactions", web::post().to(transact));
        })
    }
}

async fn get_counter(pool: Data<Pool>, name: Path<String>) -> HttpResponse {
    let client = pool.get().await.expect("connection");
    let row = client
        .query_opt(
            "SELECT value, min, max, version FROM counters WHERE name = $1",
            &[&*name],
        )
        .await
        .expect("select");
    match row {
        Some(r) => HttpResponse::Ok().json(json!({"name": *name, "value": r.get::<_, i64>(0),
            "min": r.get::<_, Option<i64>>(1), "max": r.get::<_, Option<i64>>(2),
            "version": r.get::<_, i64>(3)})),
        None => HttpResponse::NotFound().finish(),
    }
}

async fn put_counter(pool: Data<Pool>, name: Path<String>, body: Json<Value>) -> HttpResponse {
    let client = pool.get().await.expect("connection");
    let (value, min, max) = (
        body["value"].as_i64(),
        body["min"].as_i64(),
        body["max"].as_i64(),
    );
    client
        .execute(
            "INSERT INTO counters (name, value, min, max) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET value = $2, min = $3, max = $4",
            &[&*name, &value.unwrap_or(0), &min, &max],
        )
        .await
        .expect("upsert");
    HttpResponse::Ok().json(json!({"name": *name}))
}

async fn transact(pool: Data<Pool>, bug: Data<Bug>, body: Json<Value>) -> HttpResponse {
    let client = pool.get().await.expect("connection");
    let mut results = Vec::new();
    for op in body["ops"].as_array().expect("ops") {
        let (name, by) = (
            op["counter"].as_str().expect("counter"),
            op["by"].as_i64().expect("by"),
        );
        let applied = match **bug {
            Bug::LostUpdates => {
                let read: i64 = client
                    .query_one("SELECT value FROM counters WHERE name = $1", &[&name])
                    .await
                    .expect("read")
                    .get(0);
                // The bug: others read the same value while this request sits between the two.
                tokio::time::sleep(Duration::from_millis(1)).await;
                let next = (read + by >= 0).then_some(read + by);
                if let Some(next) = next {
                    client
                        .execute(
                            "UPDATE counters SET value = $2 WHERE name = $1",
                            &[&name, &next],
                        )
                        .await
                        .expect("write");
                }
                next.map(|v| (read, v))
            }
            Bug::PartialOrders => client
                .query_opt(
                    "UPDATE counters SET value = value + $2 WHERE name = $1 AND value + $2 >= 0
                     RETURNING value - $2, value",
                    &[&name, &by],
                )
                .await
                .expect("update")
                .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1))),
        };
        let Some((previous, value)) = applied else {
            return HttpResponse::Conflict()
                .content_type("application/problem+json")
                .json(json!({"status": 409, "code": "bound_violation", "title": "Out of bounds"}));
        };
        results
            .push(json!({"counter": name, "applied": true, "value": value, "previous": previous}));
    }
    HttpResponse::Ok().json(json!({"id": 0, "atomic": true, "results": results}))
}
