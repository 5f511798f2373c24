//! Group commit: concurrent `lock=wait`/`lock=none` counter changes share one locked
//! transaction, and every request still gets exactly the answer it would have had alone.
//!
//! To put chosen requests into one group, a test holds a counter's row from a plain connection
//! (as an operator in `psql` would), sends one request that waits for it in PostgreSQL, then the
//! requests it wants grouped: they queue in rowlock behind that one (their row is in a group in
//! the database), and `rowlock_group_queued` says when they all have. Releasing the row lets the
//! first group commit and the queued requests go as the next group.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rowlock::hammer::jobs::Workload;
use rowlock::hammer::linearizable::{self, Op};
use rowlock::hammer::{self, transfer, HammerArgs, LockArg, Verdict};
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, spawn_app, spawn_app_with, spawn_one_slot_app, TestApp, DEADLOCKS,
};

fn hot_args(app: &TestApp, lock: LockArg) -> HammerArgs {
    let mut args = HammerArgs::new(&app.address);
    args.counter = "hot".into();
    args.concurrency = 64;
    args.requests = Some(64 * 200);
    args.lock = lock;
    args.check_linearizable = true;
    args
}

async fn sixty_four_clients_on_one_counter(lock: LockArg) {
    let app = spawn_app().await;
    let report = hammer::execute(&hot_args(&app, lock)).await.unwrap();
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
async fn a_request_refused_by_a_bound_leaves_the_rest_of_its_group_applied() {
    let app = spawn_app().await;
    app.put_counter("c", json!({"value": 10, "min": 0})).await;
    let holder = app.hold_row("c").await;
    let first = app.spawn_post("/counters/c/increment", json!({"by": 1}), None);
    app.wait_for_lock_waiters(1).await;
    // 11 - 4 - 4 leaves 3, and the third -4 would go below 0, whatever their order.
    let grouped: Vec<_> = (0..3)
        .map(|_| app.spawn_post("/counters/c/increment", json!({"by": -4}), None))
        .collect();
    app.wait_for_queued(3).await;
    holder.batch_execute("COMMIT").await.unwrap();

    assert_eq!(first.await.unwrap().0, 200);
    let mut answers = Vec::new();
    for g in grouped {
        answers.push(g.await.unwrap());
    }
    let ok: Vec<&Value> = answers
        .iter()
        .filter(|a| a.0 == 200)
        .map(|a| &a.1)
        .collect();
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|a| a.0 == 409)
        .map(|a| &a.1)
        .collect();
    assert_eq!((ok.len(), refused.len()), (2, 1), "{answers:?}");
    assert_eq!(refused[0]["code"], "bound_violation");
    let mut values: Vec<(i64, i64)> = ok
        .iter()
        .map(|b| {
            (
                b["previous"].as_i64().unwrap(),
                b["value"].as_i64().unwrap(),
            )
        })
        .collect();
    values.sort_unstable();
    assert_eq!(values, vec![(7, 3), (11, 7)]);
    assert_eq!(app.db_value("c").await, Some(3));
    // The three were one group.
    assert_eq!(
        app.metric(r#"rowlock_group_size_bucket{le="4.0"}"#).await
            - app.metric(r#"rowlock_group_size_bucket{le="2.0"}"#).await,
        1.0
    );
}

#[tokio::test]
async fn a_transfer_storm_through_groups_conserves_the_sum_without_deadlocks() {
    let app = spawn_app().await;
    let mut args = HammerArgs::new(&app.address);
    args.workload = Workload::Transfer;
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

#[tokio::test]
async fn twenty_concurrent_requests_with_one_key_apply_once_and_replay_byte_for_byte() {
    let app = spawn_app().await;
    app.create_counter("k", 0).await;
    let requests: Vec<_> = (0..20)
        .map(|_| app.spawn_post("/counters/k/increment", json!({"by": 5}), Some("once")))
        .collect();
    let mut applied = None;
    for r in requests {
        match r.await.unwrap() {
            (200, body) => {
                assert!(applied.is_none() || applied.as_ref() == Some(&body));
                applied = Some(body);
            }
            (409, body) => assert_eq!(body["code"], "idempotency_in_flight"),
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(app.db_value("k").await, Some(5));
    let first = applied.expect("one request applied");
    let replay = app
        .http
        .post(app.url("/counters/k/increment"))
        .header("idempotency-key", "once")
        .json(&json!({"by": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let bytes = replay.bytes().await.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), first);
    assert_eq!(app.db_value("k").await, Some(5));
}

#[tokio::test]
async fn two_requests_with_one_key_in_one_group_apply_once() {
    let app = spawn_app().await;
    app.create_counter("k", 0).await;
    let holder = app.hold_row("k").await;
    let first = app.spawn_post("/counters/k/increment", json!({"by": 1}), None);
    app.wait_for_lock_waiters(1).await;
    let same: Vec<_> = (0..2)
        .map(|_| app.spawn_post("/counters/k/increment", json!({"by": 7}), Some("twice")))
        .collect();
    let other_body = app.spawn_post("/counters/k/increment", json!({"by": 8}), Some("other"));
    app.wait_for_queued(3).await;
    holder.batch_execute("COMMIT").await.unwrap();

    assert_eq!(first.await.unwrap().0, 200);
    let mut statuses = Vec::new();
    for r in same {
        let (status, body) = r.await.unwrap();
        if status == 409 {
            assert_eq!(body["code"], "idempotency_in_flight");
        }
        statuses.push(status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 409]);
    assert_eq!(other_body.await.unwrap().0, 200);
    assert_eq!(app.db_value("k").await, Some(16));
    // The key is stored: another body under it is 422, the same body replays.
    assert_problem(
        app.http
            .post(app.url("/counters/k/increment"))
            .header("idempotency-key", "twice")
            .json(&json!({"by": 9}))
            .send()
            .await
            .unwrap(),
        422,
        "invalid",
    )
    .await;
    assert_eq!(app.db_value("k").await, Some(16));
}

#[tokio::test]
async fn a_grouped_request_whose_lock_timeout_runs_out_is_423_and_the_rest_of_its_group_commits() {
    let app = spawn_one_slot_app().await;
    let increment = |query: &str, by: i64| {
        app.http
            .post(app.url(&format!("/counters/x/increment{query}")))
            .json(&json!({ "by": by }))
    };
    let started = Instant::now();
    let requests = vec![increment("?lock_timeout_ms=200", 100), increment("", 1)];
    let (holds_x, mut answers) = app.one_group_waiting_for_x(requests).await;
    let patient = answers.pop().unwrap();
    let (status, problem) = answers.pop().unwrap().await.unwrap();
    assert_eq!(status, 423, "{problem}");
    assert_eq!(problem["code"], "lock_not_available");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The patient one went on waiting for `x` in PostgreSQL, as a group of its own.
    app.wait_for_lock_waiters(1).await;
    holds_x.batch_execute("COMMIT").await.unwrap();
    let (status, body) = patient.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], 1);
    assert_eq!(app.db_value("x").await, Some(1));
}

#[tokio::test]
async fn a_request_queued_behind_a_held_row_gives_up_after_its_lock_timeout() {
    let app = spawn_app().await;
    app.create_counter("x", 0).await;
    let holder = app.hold_row("x").await;
    let waiting = app.spawn_post("/counters/x/increment", json!({"by": 1}), None);
    app.wait_for_lock_waiters(1).await;
    let started = Instant::now();
    assert_problem(
        app.increment("x", "lock_timeout_ms=200", 1).await,
        423,
        "lock_not_available",
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    // A row held elsewhere stalls nobody on other rows.
    app.create_counter("y", 0).await;
    assert_eq!(app.increment("y", "", 1).await.status(), 200);
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(waiting.await.unwrap().0, 200);
    assert_eq!(app.db_value("x").await, Some(1));
}

#[tokio::test]
async fn a_grouped_transfer_and_increments_see_each_other_in_arrival_order() {
    let app = spawn_app().await;
    app.put_counter("alice", json!({"value": 50, "min": 0}))
        .await;
    app.put_counter("bob", json!({"value": 0, "min": 0})).await;
    let holder = app.hold_row("alice").await;
    let first = app.spawn_post("/counters/alice/increment", json!({"by": 10}), None);
    app.wait_for_lock_waiters(1).await;
    let transfer = app.spawn_post(
        "/transactions",
        json!({"ops": [{"counter": "alice", "by": -60}, {"counter": "bob", "by": 60}]}),
        None,
    );
    app.wait_for_queued(1).await;
    let spend = app.spawn_post("/counters/bob/increment", json!({"by": -60}), None);
    app.wait_for_queued(2).await;
    holder.batch_execute("COMMIT").await.unwrap();

    assert_eq!(first.await.unwrap().0, 200);
    let (status, committed) = transfer.await.unwrap();
    assert_eq!(status, 200, "{committed}");
    let (status, spent) = spend.await.unwrap();
    assert_eq!(status, 200, "{spent}");
    assert_eq!(
        (spent["previous"].as_i64(), spent["value"].as_i64()),
        (Some(60), Some(0))
    );
    assert_eq!(app.db_value("alice").await, Some(0));
    assert_eq!(app.db_value("bob").await, Some(0));
    // The transaction was recorded under the id it answered.
    let id = committed["id"].as_i64().unwrap();
    let stored: Value = app
        .http
        .get(app.url(&format!("/transactions/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored["results"], committed["results"]);
}

#[tokio::test]
async fn group_off_and_a_server_without_group_commit_run_each_request_alone() {
    let app = spawn_app().await;
    app.create_counter("x", 0).await;
    let holder = app.hold_row("x").await;
    // group=off: each request holds its own session, and (row concurrency 2) two wait in
    // PostgreSQL; grouped, only one would.
    let alone: Vec<_> = (0..2)
        .map(|_| app.spawn_post("/counters/x/increment?group=off", json!({"by": 1}), None))
        .collect();
    app.wait_for_lock_waiters(2).await;
    holder.batch_execute("COMMIT").await.unwrap();
    for r in alone {
        assert_eq!(r.await.unwrap().0, 200);
    }
    assert_eq!(app.metric("rowlock_group_size_count").await, 0.0);

    let off = spawn_app_with(|args| args.group.group_commit = false).await;
    let report = hammer::execute(&{
        let mut args = hot_args(&off, LockArg::Wait);
        args.requests = Some(2_000);
        args
    })
    .await
    .unwrap();
    assert_eq!(report.verification.verdict, Verdict::Pass, "{report}");
    assert_eq!(off.db_value("hot").await, Some(2_000));
    assert_eq!(off.metric("rowlock_group_size_count").await, 0.0);
}

#[tokio::test]
async fn debug_locks_names_every_request_of_a_waiting_group() {
    let app = spawn_one_slot_app().await;
    let requests = ["grouped-7", "grouped-8"]
        .into_iter()
        .map(|id| {
            app.http
                .post(app.url("/counters/x/increment"))
                .header("x-request-id", id)
                .json(&json!({"by": 1}))
        })
        .collect();
    let (holds_x, grouped) = app.one_group_waiting_for_x(requests).await;
    let body: Value = app
        .http
        .get(app.url("/debug/locks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let waiter = body["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| {
            w["application_name"]
                .as_str()
                .unwrap()
                .starts_with("rowlock/group-")
        })
        .unwrap_or_else(|| panic!("no group session waits: {body}"));
    let mut ids: Vec<&str> = waiter["request_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, vec!["grouped-7", "grouped-8"], "{body}");
    holds_x.batch_execute("COMMIT").await.unwrap();
    for r in grouped {
        assert_eq!(r.await.unwrap().0, 200);
    }
}

#[tokio::test]
async fn groups_see_a_counter_replaced_or_deleted_concurrently_as_it_is_after_that_commit() {
    let app = spawn_app().await;
    app.create_counter("c", 0).await;
    // Replaced (by an operator, in one transaction) while increments wait for it.
    let operator = app.pg().await;
    operator.batch_execute("BEGIN").await.unwrap();
    operator
        .execute(
            "UPDATE counters SET value = 1000, min = 998, version = (SELECT nextval('counter_versions'))
              WHERE name = 'c'",
            &[],
        )
        .await
        .unwrap();
    let first = app.spawn_post("/counters/c/increment", json!({"by": -1}), None);
    app.wait_for_lock_waiters(1).await;
    let queued: Vec<_> = (0..2)
        .map(|_| app.spawn_post("/counters/c/increment", json!({"by": -1}), None))
        .collect();
    app.wait_for_queued(2).await;
    let replaced_version: i64 = operator
        .query_one("SELECT version FROM counters WHERE name = 'c'", &[])
        .await
        .unwrap()
        .get(0);
    operator.batch_execute("COMMIT").await.unwrap();
    let (status, body) = first.await.unwrap();
    assert_eq!(
        (status, body["previous"].as_i64()),
        (200, Some(1000)),
        "{body}"
    );
    assert!(body["version"].as_i64().unwrap() > replaced_version);
    let mut answers = Vec::new();
    for q in queued {
        answers.push(q.await.unwrap());
    }
    // 999 → 998, and one more is below the new min.
    answers.sort_by_key(|a| a.0);
    assert_eq!(answers[0].0, 200, "{answers:?}");
    assert_eq!(answers[1].0, 409, "{answers:?}");
    assert_eq!(app.db_value("c").await, Some(998));

    // Deleted while increments wait for it: 404 for each, nothing recreated.
    operator.batch_execute("BEGIN").await.unwrap();
    operator
        .execute("DELETE FROM counters WHERE name = 'c'", &[])
        .await
        .unwrap();
    let first = app.spawn_post("/counters/c/increment", json!({"by": 1}), None);
    app.wait_for_lock_waiters(1).await;
    let queued: Vec<_> = (0..2)
        .map(|_| app.spawn_post("/counters/c/increment", json!({"by": 1}), None))
        .collect();
    app.wait_for_queued(2).await;
    operator.batch_execute("COMMIT").await.unwrap();
    for r in std::iter::once(first).chain(queued) {
        let (status, body) = r.await.unwrap();
        assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    }
    assert_eq!(app.db_value("c").await, None);
}
