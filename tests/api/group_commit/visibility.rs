//! What a group sees and shows: arrival order inside it, requests that run alone, `/debug/locks`
//! naming its waiting requests, and rows replaced or deleted concurrently.

use rowlock::hammer::{self, LockArg, Verdict};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, spawn_one_slot_app};

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
    let stored: Value = app.get_json(&format!("/transactions/{id}")).await;
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
        let mut args = off.hot_hammer_args(LockArg::Wait);
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
    let body: Value = app.get_json("/debug/locks").await;
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
