//! Group commit under load: the hammer's many clients on one hot counter, mixed lock modes, a
//! flash sale and a transfer storm, each exact (and linearizable where the hammer checks it).

use std::time::Instant;

use futures_util::future::join_all;
use rowlock::hammer::linearizable::{self, Op};
use rowlock::hammer::WorkloadKind;
use rowlock::hammer::{self, transfer, HammerArgs, LockArg, Verdict};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, DEADLOCKS};

async fn sixty_four_clients_on_one_counter(lock: LockArg) {
    let app = spawn_app().await;
    let report = hammer::execute(&app.hot_hammer_args(lock)).await.unwrap();
    assert_eq!(report.statuses.ok, 12_800, "{report}");
    assert_eq!(report.verification.verdict, Verdict::Pass, "{report}");
    let lin = report.verification.linearizability.expect("checked");
    assert!(lin.linearizable, "{lin:?}");
    assert_eq!(app.db_value("hot").await, Some(12_800));
    assert!(app.shared_groups().await > 0.0, "requests were grouped");
}

#[tokio::test]
async fn sixty_four_clients_times_200_waiting_increments_are_exact_and_linearizable() {
    sixty_four_clients_on_one_counter(LockArg::Wait).await;
}

#[tokio::test]
async fn sixty_four_clients_times_200_unlocked_increments_are_exact_and_linearizable() {
    sixty_four_clients_on_one_counter(LockArg::None).await;
}

#[tokio::test]
async fn a_mix_of_wait_and_none_increments_in_groups_is_exact_and_linearizable() {
    let app = spawn_app().await;
    app.create_counter("hot", 0).await;
    let started = Instant::now();
    let clients = (0..64).map(|client| {
        let (http, app) = (app.http.clone(), &app);
        async move {
            let mut ops = Vec::new();
            for i in 0..200 {
                let lock = if (client + i) % 2 == 0 {
                    "wait"
                } else {
                    "none"
                };
                let start_ns = started.elapsed().as_nanos() as u64;
                let r = http
                    .post(app.url(&format!("/counters/hot/increment?lock={lock}")))
                    .json(&json!({"by": 1}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let body: Value = r.json().await.unwrap();
                let end_ns = started.elapsed().as_nanos() as u64;
                let value = body["value"].as_i64().unwrap();
                assert_eq!(body["previous"].as_i64().unwrap(), value - 1);
                ops.push(Op {
                    start_ns,
                    end_ns,
                    value,
                });
            }
            ops
        }
    });
    let ops: Vec<Op> = join_all(clients).await.into_iter().flatten().collect();
    assert_eq!(ops.len(), 12_800);
    let lin = linearizable::check(&ops, 1);
    assert!(lin.linearizable, "{lin:?}");
    assert_eq!(app.db_value("hot").await, Some(12_800));
    assert!(app.shared_groups().await > 0.0, "requests were grouped");
}

#[tokio::test]
async fn a_grouped_flash_sale_sells_exactly_the_stock_in_order() {
    let app = spawn_app().await;
    app.put_counter("stock", json!({"value": 100, "min": 0}))
        .await;
    let buyers: Vec<_> = (0..300)
        .map(|_| app.spawn_post("/counters/stock/increment", json!({"by": -1}), None))
        .collect();
    let mut previous = Vec::new();
    let mut refused = 0;
    for buyer in buyers {
        match buyer.await.unwrap() {
            (200, body) => previous.push(body["previous"].as_i64().unwrap()),
            (409, body) => {
                assert_eq!(body["code"], "bound_violation");
                refused += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!((previous.len(), refused), (100, 200));
    previous.sort_unstable();
    assert_eq!(previous, (1..=100).collect::<Vec<i64>>());
    assert_eq!(app.db_value("stock").await, Some(0));
    assert!(app.shared_groups().await > 0.0, "requests were grouped");
}

#[tokio::test]
async fn a_transfer_storm_through_groups_conserves_the_sum_without_deadlocks() {
    let app = spawn_app().await;
    let mut args = HammerArgs::new(&app.address);
    args.workload = WorkloadKind::Transfer;
    args.transfer.accounts = 10;
    args.transfer.initial = 1_000;
    args.concurrency = 64;
    args.requests = Some(5_000);

    let report = transfer::execute(&args).await.unwrap();

    assert_eq!(report.verdict, Verdict::Pass, "{report}");
    assert_eq!(report.statuses.ok + report.refusals, 5_000, "{report}");
    assert_eq!(report.statuses.unavailable + report.statuses.other, 0);
    let accounts = "FROM counters WHERE name LIKE 'account-%'";
    let sum = app
        .scalar(&format!("SELECT sum(value)::bigint {accounts}"))
        .await;
    assert_eq!(sum, 10_000);
    assert!(app.scalar(&format!("SELECT min(value) {accounts}")).await >= 0);
    assert_eq!(app.scalar(DEADLOCKS).await, 0);
    assert!(app.shared_groups().await > 0.0, "transfers were grouped");
}
